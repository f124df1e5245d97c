"""Accuracy of ``dose.estimate_dose`` on chest slabs not used for its fit (the table in docs/DOSE.md).

    python benchmarks/bench_dose_estimate.py [--cache runs/cache]

For the validation (100-114) and test (120-140) slabs at 10/25/50/70/100 % dose (projection-domain
noise from the noise caches, built on first use), prints the nearest level and the continuous
estimate for each whole slab.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cache", default="runs/cache")
    args = parser.parse_args(argv)

    from napari_jointrecon.dose import DOSE_LEVELS, estimate_dose
    from napari_jointrecon.training.data import build_cache

    caches = build_cache(args.cache, only=("chest_val", "chest_test"), log=lambda _msg: None)
    print("| true dose | validation slabs (100-114) | test slabs (120-140) |")
    print("| --- | --- | --- |")
    for dose in list(DOSE_LEVELS) + [1.0]:
        cells = []
        for name in ("chest_val", "chest_test"):
            cache = caches[name]
            n = cache.clean.shape[0]
            vol = cache.clean if dose == 1.0 else np.stack([cache.low(k, 0, dose) for k in range(n)])
            nearest, raw = estimate_dose(vol)
            cells.append(f"{nearest * 100:g} % ({raw * 100:.1f} %)")
        print(f"| {dose * 100:g} % | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
