"""Benchmark: speed of every model at 512 x 512 on 2 CPU threads, and the memory of a volume run.

Prints slices/s (warm-up, median of 5 runs of a 4-slice batch; classical methods: one slice, median
of 3), the ratio to RED-CNN measured in the same run, and the peak resident memory of denoising the
whole 141-slice chest series with the default model (target: at most 2 x its float32 size + 0.5 GB),
in a process of its own that starts from the saved HU array (reading the DICOM series is measured
apart, in another process).
Learned models are timed three times in the same run: as ``nj.denoise`` runs them by default on
the CPU (the "runtime" column: bf16 autocast for networks trained so on a CPU with native bf16,
else ONNX Runtime; the "slices/s" column and the RED-CNN ratio), in torch's eager fp32 mode
(``runtime="torch"``), and through ``torch.compile`` (``compile=True``), with the time of the
first compiled call (compiling plus the 4 slices; shorter when inductor's disk cache already
holds the kernels). The largest differences from the eager output are printed too. A failed
export or compile is printed as such, not timed.

    .venv/bin/python benchmarks/bench_models.py [--skip-memory] [--models unet redcnn ...]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import napari_jointrecon as nj

REPO = Path(__file__).resolve().parents[1]
CHEST = REPO.parent / "shared" / "data" / "chest-ct-dicom"


def _slices() -> np.ndarray:
    """The 4 timed 512 x 512 slices (soft tissue with 30 HU of noise)."""
    return np.random.default_rng(0).normal(0, 30, (4, 512, 512)).astype(np.float32) - 100


def speed(name: str, kind: str, *, compile: bool = False, runtime: str = "auto") -> tuple[float, float, np.ndarray]:
    """(slices/s, seconds of the warm-up call, the warm-up output)."""
    x = _slices()
    n, runs = (4, 5) if kind == "learned" else (1, 3)
    messages = []
    t0 = time.perf_counter()
    first = nj.denoise(x[:n], model=name, dose=0.25, device="cpu", compile=compile, runtime=runtime,
                       progress=lambda p: p.message and messages.append(p.message))
    warmup = time.perf_counter() - t0
    if messages:
        raise RuntimeError("; ".join(messages))
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        nj.denoise(x[:n], model=name, dose=0.25, device="cpu", compile=compile, runtime=runtime)
        times.append(time.perf_counter() - t0)
    return n / statistics.median(times), warmup, first


def _peak_mb() -> float:
    """Peak resident memory of this process in MB.

    Linux's VmHWM, which starts afresh in every executed program; ``ru_maxrss`` would carry the
    parent's peak over into the child processes below.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_load(path: str) -> None:
    """Child process: read the chest series, save its HU to ``path`` (.npy), print the read's peak."""
    ct = nj.load_ct(CHEST)
    np.save(path, ct.hu)
    print(f"memory: reading the chest DICOM series ({ct.shape}) peaks at {_peak_mb():.0f} MB RSS "
          "(in its own process, torch imported)")


def memory_run(path: str) -> None:
    """Child process: denoise the saved volume with the default model, print the peak RSS."""
    torch.set_num_threads(2)
    hu = np.load(path)
    default = next(c["name"] for c in nj.list_models() if c["default"])
    before = _peak_mb()
    t0 = time.perf_counter()
    out = nj.denoise(hu, model=default, dose=0.25, device="cpu")
    elapsed = time.perf_counter() - t0
    peak = _peak_mb()
    volume_mb = hu.nbytes / 2 ** 20
    print(f"memory: {default} on {hu.shape} ({volume_mb:.0f} MB float32) in {elapsed:.1f} s "
          f"({hu.shape[0] / elapsed:.1f} slices/s); peak RSS {peak:.0f} MB (before denoising, with "
          f"torch imported and the volume loaded: {before:.0f} MB); target <= 2 x {volume_mb:.0f} + 512 "
          f"= {2 * volume_mb + 512:.0f} MB -> {'met' if peak <= 2 * volume_mb + 512 else 'NOT met'}")
    assert out.shape == hu.shape


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--models", nargs="*")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile timings")
    parser.add_argument("--memory-load", help=argparse.SUPPRESS)
    parser.add_argument("--memory-run", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_load:
        memory_load(args.memory_load)
        return 0
    if args.memory_run:
        memory_run(args.memory_run)
        return 0
    torch.set_num_threads(2)
    from napari_jointrecon.inference import cpu_bf16_supported, trained_bf16

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, native bf16: {cpu_bf16_supported()}")
    cards = {c["name"]: c for c in nj.list_models()}
    names = args.models or list(cards)
    results, eager, compiled = {}, {}, {}
    for name in names:
        results[name], _, default_out = speed(name, cards[name]["kind"])
        if cards[name]["kind"] != "learned":
            continue
        rate, _, plain = speed(name, "learned", runtime="torch")
        eager[name] = (rate, float(np.abs(default_out - plain).max()))
        if not args.no_compile:
            try:
                rate, first, out = speed(name, "learned", compile=True)
                compiled[name] = (rate, first, float(np.abs(out - plain).max()))
            except RuntimeError as exc:
                print(f"{name}: {exc}")
    base = results.get("redcnn")
    print(f"{'model':16s} {'kind':9s} {'runtime':11s} {'slices/s':>9s} {'x RED-CNN':>9s} {'params':>9s} {'GFLOPs':>7s} "
          f"{'eager/s':>8s} {'x eager':>7s} {'|diff| HU':>9s} "
          f"{'compiled/s':>10s} {'x eager':>7s} {'1st call s':>10s} {'|diff| HU':>9s}")
    for name in names:
        card = cards[name]
        ratio = f"{results[name] / base:9.2f}" if base else f"{'-':>9s}"
        params = f"{card['parameters']:9,d}" if "parameters" in card else f"{'-':>9s}"
        flops = f"{card['flops_per_512_slice'] / 1e9:7.1f}" if "flops_per_512_slice" in card else f"{'-':>7s}"
        if name in eager:
            rate, diff = eager[name]
            plain = f"{rate:8.2f} {results[name] / rate:7.2f} {diff:9.2e}"
        else:
            plain = f"{'-':>8s} {'-':>7s} {'-':>9s}"
        if name in compiled:
            rate, first, diff = compiled[name]
            comp = f"{rate:10.2f} {rate / eager[name][0]:7.2f} {first:10.1f} {diff:9.2e}"
        else:
            comp = f"{'-':>10s} {'-':>7s} {'-':>10s} {'-':>9s}"
        flag = " (default)" if card["default"] else ""
        used = (nj.select_runtime("auto", "cpu", trained_bf16=trained_bf16(name))
                if card["kind"] == "learned" else "classical")
        print(f"{name:16s} {card['kind']:9s} {used:11s} {results[name]:9.2f} {ratio} {params} {flops} {plain} "
              f"{comp}{flag}")
    default = next((n for n in names if cards[n]["default"]), None)
    if default is not None and cards[default].get("conditioning") == "noise":
        from napari_jointrecon.noise import noise_sd

        x, times = _slices(), []
        for _ in range(5):
            t0 = time.perf_counter()
            noise_sd(x)
            times.append(time.perf_counter() - t0)
        print(f"noise measure of a 4-slice call with a dose (its conditioning): {statistics.median(times) * 1000:.0f} ms "
              f"(median of 5) of the {4 / results[default] * 1000:.0f} ms of a 4-slice call of {default}")
    print(f"peak RSS of this process: {_peak_mb():.0f} MB")
    if not args.skip_memory:  # fresh processes, so that one peak does not hide another
        with tempfile.TemporaryDirectory() as tmp:
            path = str(Path(tmp) / "chest_hu.npy")
            subprocess.run([sys.executable, __file__, "--memory-load", path], check=True)
            subprocess.run([sys.executable, __file__, "--memory-run", path], check=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
