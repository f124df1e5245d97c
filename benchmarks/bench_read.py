"""Benchmark: the project's DICOM reader against SimpleITK's ImageSeriesReader, in one run.

Reads ../shared/data/chest-ct-dicom (141 slices of 512x512) with both, checks that HU and geometry
are identical, and prints the median times (after a warm-up, 5 runs each, interleaved) and the
ratio. Target: ratio <= 1.5.

    .venv/bin/python benchmarks/bench_read.py [FOLDER]
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

import napari_jointrecon as nj

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO.parent / "shared" / "data" / "chest-ct-dicom"


def read_sitk(folder: Path):
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


def main() -> int:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    ours, theirs = nj.load_ct(folder), read_sitk(folder)  # warm-up (imports, file cache)
    ref = sitk.GetArrayFromImage(theirs).astype(np.float32)
    same_hu = np.array_equal(ours.hu, ref)
    same_geometry = (
        np.allclose(ours.spacing, theirs.GetSpacing()[::-1])
        and np.allclose(ours.origin, theirs.GetOrigin()[::-1])
        and np.allclose(ours.direction, np.array(theirs.GetDirection()).reshape(3, 3)[::-1, ::-1])
    )
    t_ours, t_sitk = [], []
    for _ in range(5):
        t0 = time.perf_counter()
        nj.load_ct(folder)
        t_ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        read_sitk(folder)
        t_sitk.append(time.perf_counter() - t0)
    a, b = statistics.median(t_ours), statistics.median(t_sitk)
    print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores, "
          f"Python {platform.python_version()}, SimpleITK {sitk.Version.VersionString()}")
    print(f"data: {folder} -> {ours.shape} voxels")
    print(f"HU identical: {same_hu}; geometry identical: {same_geometry}")
    print(f"napari_jointrecon.load_ct: median {a:.3f} s  (runs: {', '.join(f'{t:.3f}' for t in t_ours)})")
    print(f"SimpleITK ImageSeriesReader: median {b:.3f} s  (runs: {', '.join(f'{t:.3f}' for t in t_sitk)})")
    print(f"ratio load_ct / SimpleITK: {a / b:.2f} (target <= 1.5)")
    print(f"peak resident memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    return 0 if same_hu and same_geometry else 1


if __name__ == "__main__":
    sys.exit(main())
