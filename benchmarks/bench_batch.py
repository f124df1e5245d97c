"""Benchmark: the overhead of the Dask engine of ``jointrecon batch``, and the memory of its workers.

Eight studies of 512 x 512 x 40 (slabs of the real chest series, written as NIfTI) are denoised
with one model at 25 % dose:

* baseline: ``nj.denoise`` alone on each study, in this process, with torch on all the cores
  (studies already in memory, nothing written; warm-up first): the sum over the studies; and the
  same in a new process, its first call included (importing torch, exporting the network), which
  the batch's fresh workers pay too;
* batch: a LocalCluster started, ``nj.batch`` run on it (reading each study, denoising, writing
  ``.nii.gz``, the noise estimate, ``results.csv`` and ``summary.md``), and the cluster closed,
  for several cluster shapes (worker processes x threads, torch threads per task);
* memory only: two studies simulated at 25 % and measured against the full dose (the task that
  holds the most volumes), in the default shape.

The ratio batch / baseline is the engine's overhead (target: at most 1.3 with the default shape).
Runs alternate baseline and batches so that the load of a shared machine falls on both; each
figure is the median over ``--repeats``. Peak memory: the largest peak resident set of any worker
process (target: below 2 x the largest study's float32 size + 1 GB).

    .venv/bin/python benchmarks/bench_batch.py [--model unet] [--repeats 3] [--studies 8]
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch

import napari_jointrecon as nj
from napari_jointrecon import testdata
from napari_jointrecon.batch import local_cluster_size, parent_environ_kept

REPO = Path(__file__).resolve().parents[1]


def _peak_rss() -> int:
    """Peak resident memory of the calling process in bytes (Linux: ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def make_studies(folder: Path, n: int, slices: int) -> list[Path]:
    """``n`` slabs of ``slices`` slices of the chest series, as NIfTI files (whole HU, int16)."""
    root = testdata.locate(REPO)
    if root is None:
        raise SystemExit(testdata.not_found_message(REPO))
    ct = nj.load_ct(root / "chest-ct-dicom")
    step = (ct.shape[0] - slices) / max(n - 1, 1)
    paths = []
    for k in range(n):
        first = int(round(k * step))
        slab = dataclasses.replace(ct, hu=ct.hu[first:first + slices].copy(), source_files=(), notes=[])
        paths.append(nj.write_nifti(slab, folder / f"study{k + 1:02d}.nii.gz"))
    return paths


COLD = """
import sys, time
import napari_jointrecon as nj
volumes = [nj.load_ct(p) for p in sys.argv[2:]]
t0 = time.perf_counter()
for volume in volumes:
    nj.denoise(volume, model=sys.argv[1], dose=0.25, device="cpu")
print(time.perf_counter() - t0)
"""


def cold_baseline(paths, model: str) -> float:
    """The same in a new process, its first call included (importing torch, exporting the
    network), as a batch's fresh workers pay them: the engine's overhead without the model's."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", COLD, model, *map(str, paths)], check=True,
                          capture_output=True, text=True)
    return float(done.stdout.split()[-1])


def baseline(volumes, model: str) -> float:
    t0 = time.perf_counter()
    for volume in volumes:
        nj.denoise(volume, model=model, dose=0.25, device="cpu")
    return time.perf_counter() - t0


def run_batch(inputs, out: Path, model: str, workers: int, threads_per_worker: int,
              torch_threads: int, **options) -> tuple[float, int, object]:
    """(seconds from starting the cluster to closing it, the largest worker peak RSS, the table)."""
    from distributed import Client, LocalCluster

    t0 = time.perf_counter()
    # as nj.batch's own cluster: the nanny's OMP_NUM_THREADS=1 must not reach the next baseline's process
    with parent_environ_kept():
        cluster = LocalCluster(n_workers=workers, threads_per_worker=threads_per_worker, processes=True,
                               dashboard_address=":0", silence_logs=logging.ERROR)
        try:
            with Client(cluster, set_as_default=False) as client:
                table = nj.batch(inputs, out, models=[model], device="cpu", client=client,
                                 threads=torch_threads, **({"dose": 0.25} | options))
                peak = max(client.run(_peak_rss).values())
        finally:
            cluster.close()
    return time.perf_counter() - t0, peak, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="unet")
    parser.add_argument("--studies", type=int, default=8)
    parser.add_argument("--slices", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    cores = len(os.sched_getaffinity(0))
    torch.set_num_threads(cores)
    default = local_cluster_size(args.studies, cores=cores)
    shapes = {  # name -> (worker processes, threads per worker, torch threads per task)
        "default: {} worker(s) x {} thread(s), torch {}".format(*default): default,
        f"{cores} workers x 1 thread, torch 1": (cores, 1, 1),
        f"1 worker x 1 thread, torch {cores}": (1, 1, cores),
    }
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        tmp = Path(tmp)
        inputs = tmp / "studies"
        inputs.mkdir()
        paths = make_studies(inputs, args.studies, args.slices)
        volumes = [nj.load_ct(p) for p in paths]
        largest = max(v.hu.nbytes for v in volumes)
        nj.denoise(volumes[0], model=args.model, dose=0.25, device="cpu")  # warm-up (export, caches)
        times: dict[str, list[float]] = {"baseline": [], "cold": []}
        peaks: dict[str, list[int]] = {}
        inside: dict[str, list[tuple[float, float]]] = {}  # (denoising, whole tasks) summed over the studies
        for r in range(args.repeats):
            times["baseline"].append(baseline(volumes, args.model))
            times["cold"].append(cold_baseline(paths, args.model))
            print(f"repeat {r + 1}: baseline {times['baseline'][-1]:.1f} s, in a new process "
                  f"{times['cold'][-1]:.1f} s", flush=True)
            for name, (workers, per_worker, torch_threads) in shapes.items():
                seconds, peak, table = run_batch(inputs, tmp / f"out-{r}-{workers}-{per_worker}-{torch_threads}",
                                                 args.model, workers, per_worker, torch_threads)
                assert (table.status == "ok").all(), table[table.status != "ok"].error.tolist()
                times.setdefault(name, []).append(seconds)
                peaks.setdefault(name, []).append(peak)
                inside.setdefault(name, []).append((table.seconds.sum(), table.task_seconds.sum()))
                print(f"repeat {r + 1}: {name}: {seconds:.1f} s, worker peak {peak / 2**20:.0f} MiB", flush=True)
        # memory only: the heaviest task, 25 % simulated from the full dose and measured against it,
        # two studies side by side in the default worker
        _, measured_peak, table = run_batch(paths[:2], tmp / "out-reference", args.model, *default,
                                            dose=None, simulate=0.25, reference_from_input=True)
        assert (table.status == "ok").all(), table[table.status != "ok"].error.tolist()

    base = statistics.median(times["baseline"])
    cold = statistics.median(times["cold"])
    n_slices = args.studies * args.slices
    limit = 2 * largest + 2**30
    print()
    print(f"machine: {platform.node()} ({platform.machine()}), {cores} cores, load average "
          f"{os.getloadavg()[0]:.1f}; torch {torch.__version__}; model {args.model}, 25 % dose; "
          f"{args.studies} studies of {args.slices} x 512 x 512 ({n_slices} slices); median of {args.repeats}")
    print("denoising / task: the sums over the tasks of their denoising time and of their whole time "
          "(reading, denoising, writing, noise estimate)")
    print("ratio: to nj.denoise after a warm-up / in a new process (its first call included)")
    print(f"{'run':52s} {'seconds':>8s} {'slices/s':>9s} {'ratio':>11s} {'worker peak MiB':>16s} "
          f"{'denoising / task s':>19s}")
    print(f"{'nj.denoise alone, torch ' + str(cores) + ' threads (sum)':52s} {base:8.1f} {n_slices / base:9.2f}")
    print(f"{'the same in a new process':52s} {cold:8.1f} {n_slices / cold:9.2f}")
    for name in shapes:
        t = statistics.median(times[name])
        d, w = (statistics.median(v) for v in zip(*inside[name], strict=True))
        print(f"{'batch, ' + name:52s} {t:8.1f} {n_slices / t:9.2f} {f'{t / base:.2f} / {t / cold:.2f}':>11s} "
              f"{max(peaks[name]) / 2**20:16.0f} {f'{d:.1f} / {w:.1f}':>19s}")
    print(f"default shape, 2 studies simulated at 25 % and measured against the full dose: worker peak "
          f"{measured_peak / 2**20:.0f} MiB")
    print(f"targets: ratio <= 1.3 (default shape); worker peak < 2 x {largest / 2**20:.0f} MiB + 1 GiB "
          f"= {limit / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
