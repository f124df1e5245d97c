"""Speed of one point-cloud prediction (slice in, cloud out) on 2 CPU threads, per point model.

    python benchmarks/bench_pointcloud.py

Input: a 512 x 512 slice of the real chest series at 25 % dose; the time covers the whole API call
(area downsampling to the model's 128 or 256 pixels, the network, the points from its output, the map to
world millimetres). Warm-up, then the
median of 20 runs. The reference cloud's extraction (marching cubes + sampling) is timed beside it.
Target: at most 0.5 s per prediction.
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _time(fn, runs: int = 20) -> float:
    fn()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> int:
    import torch

    import napari_jointrecon as nj

    torch.set_num_threads(2)
    shared = Path(os.environ.get("JOINTRECON_SHARED_DATA", REPO.parent / "shared" / "data"))
    chest = nj.load_ct(shared / "chest-ct-dicom")
    low = nj.simulate_low_dose(chest, 0.25, seed=0)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, 2 threads")
    from napari_jointrecon.joint import POINT_MODELS

    for model in POINT_MODELS:
        t = _time(lambda: nj.predict_point_cloud(low, slice_index=70, dose=0.25, model=model))
        print(f"{model:18s} {t * 1000:7.1f} ms per prediction ({'meets' if t <= 0.5 else 'misses'} the 0.5 s target)")
    t = _time(lambda: nj.reference_point_cloud(chest, 70, 10000), runs=5)
    print(f"{'reference':18s} {t * 1000:7.1f} ms (marching cubes on the 16 mm slab + 10,000 samples)")
    print(f"peak resident memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
