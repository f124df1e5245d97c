"""Benchmark: low-dose simulation of one real 512x512 chest slice, against scikit-image.

Times, per slice (torch limited to 2 threads, then to 1; after a warm-up, median of 5 runs):

* ``simulate_low_dose`` ("insert", 25 % dose) on one slice of ../shared/data/chest-ct-dicom;
* its parts: the line integrals (half resolution, 120 views, interpolated to 360), the two seeded
  normal fields, and the filtered back-projection of the two noise sinograms (360 views);
* the same work as scikit-image does it, for an equal comparison: one full-resolution forward
  projection (360 views) and one FBP with the project's projector;

and, once (it takes seconds), scikit-image's ``radon`` + ``iradon`` (360 views, ramp filter) of the
same slice, printed as a ratio to the project's equal-work time. One torch thread is measured as
well because on CPUs shared with other jobs it can be the faster setting. The load average is
printed: the numbers are only comparable at similar load.

    .venv/bin/python benchmarks/bench_dose.py [FOLDER] [SLICE]
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

import napari_jointrecon as nj
from napari_jointrecon import dose as D

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO.parent / "shared" / "data" / "chest-ct-dicom"


def median_time(fn, runs: int = 5) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    index = int(sys.argv[2]) if len(sys.argv) > 2 else 60
    torch.set_num_threads(2)
    files = sorted(folder.glob("*.dcm"))
    ct = nj.load_ct([files[index]])
    hu = ct.hu[0]
    pixel_mm = float(np.sqrt(ct.spacing[1] * ct.spacing[2]))
    model = D.DEFAULT_DOSE_MODEL
    print(f"slice {files[index].name}: {hu.shape[0]}x{hu.shape[1]} at {pixel_mm:.4g} mm; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")

    from skimage.transform import iradon, radon

    theta = np.arange(model.n_views) * 180.0 / model.n_views
    img = (D.MU_WATER * (1 + np.clip(hu.astype(np.float64), -1000, None) / 1000)) * pixel_mm
    t0 = time.perf_counter()
    sino = radon(img, theta, circle=False)
    t_radon = time.perf_counter() - t0
    t0 = time.perf_counter()
    iradon(sino, theta, filter_name="ramp", circle=False, output_size=hu.shape[0])
    t_iradon = time.perf_counter() - t0
    t_sk = t_radon + t_iradon
    print(f"scikit-image radon {t_radon:.3f} s + iradon {t_iradon:.3f} s = {t_sk:.3f} s (one run, "
          f"load average {os.getloadavg()[0]:.2f})")

    mu = D._mu(hu[None], "cpu")
    proj = D._projector(hu.shape, model.n_views, "cpu")
    p = D._line_integrals(mu, pixel_mm, model.n_views, "cpu")
    two = torch.randn(2, *p.shape[1:])
    for threads in (2, 1):
        torch.set_num_threads(threads)
        print(f"--- torch threads = {threads} (load average {os.getloadavg()[0]:.2f})")
        t_total = median_time(lambda: D.simulate_low_dose(hu, 0.25, seed=0, spacing=ct.spacing[1:]))
        t_line = median_time(lambda: D._line_integrals(mu, pixel_mm, model.n_views, "cpu"))
        t_rng = median_time(lambda: (D._normal(p.shape, 0, 0, 0, "cpu"), D._normal(p.shape, 0, 0, 1, "cpu")))
        t_fbp2 = median_time(lambda: proj.fbp(two))
        t_fwd_full = median_time(lambda: proj.forward(mu))
        t_fbp1 = median_time(lambda: proj.fbp(two[:1]))
        ours_equal = t_fwd_full + t_fbp1
        print(f"simulate_low_dose (insert, 25 %), per slice: {t_total:7.3f} s  (median of 5)")
        print(f"  line integrals (256x256, 120 views -> 360): {t_line:7.3f} s")
        print(f"  two normal fields (360 x {proj.n_det}):          {t_rng:7.3f} s")
        print(f"  FBP of the two noise sinograms:            {t_fbp2:7.3f} s")
        print(f"project's projector, full-res forward (360 views) {t_fwd_full:.3f} s + one FBP {t_fbp1:.3f} s "
              f"= {ours_equal:.3f} s")
        print(f"ratio scikit-image / project, same work (forward + FBP): {t_sk / ours_equal:.2f}x")
        print(f"ratio scikit-image radon+iradon / one simulate_low_dose slice: {t_sk / t_total:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
