"""Benchmark: seconds per 64^3 patch of the diffusion denoiser at the default steps, on 2 CPU threads.

Prints, side by side in one run (the machine is shared, so ratios are what compare): one sample of
a 64^3 patch with the default sampler (``steps`` DDIM network calls) in fp32 and, on a CPU with
native bf16, in bf16 autocast (what ``auto`` picks for a network trained so); the default U-Net on
the same voxels (one 512 x 512 slice = 64^3 voxels, as ``nj.denoise`` runs it by default and in
eager fp32) and the ratio; the patch count and expected time of a whole 512 x 512 x 141 chest
(default overlap) for one sample and for the 8 samples of ``denoise_with_uncertainty``; the peak
resident memory, the cores and the load average. Warm-up, then the median of ``--runs`` (5).

The network's speed does not depend on its weights: without shipped weights the untrained network
is timed (and said so). ``--chest`` also runs the whole chest series once (minutes to an hour).

    .venv/bin/python benchmarks/bench_diffusion.py [--runs 5] [--steps 10] [--chest]
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import time
from pathlib import Path

import numpy as np
import torch

import napari_jointrecon as nj
from napari_jointrecon.inference import cpu_bf16_supported
from napari_jointrecon.models.diffusion import (SamplerSettings, ddim_timesteps, estimate_seconds, iter_sample_volume,
                                                patch_grid)
from napari_jointrecon.models.registry import get_spec, load_model, read_card, weights_path

REPO = Path(__file__).resolve().parents[1]
CHEST = REPO.parent / "shared" / "data" / "chest-ct-dicom"


def _run(gen):
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        return stop.value


def _median_time(fn, runs: int) -> float:
    fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--steps", type=int, help="DDIM steps (default: the card's, else 10)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--chest", action="store_true", help="also denoise the whole chest series once")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    shipped = weights_path("diffusion").exists()
    net = load_model("diffusion") if shipped else get_spec("diffusion").build().eval()
    settings = SamplerSettings.from_card(read_card("diffusion"), steps=args.steps)
    steps = len(ddim_timesteps(settings.t_start, settings.steps))
    rng = np.random.default_rng(0)
    patch = (rng.normal(0, 30, (64, 64, 64)) - 100).astype(np.float32)
    print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores, "
          f"{args.threads} torch threads; load average {os.getloadavg()[0]:.2f} "
          f"(other processes share these cores); torch {torch.__version__}")
    print(f"diffusion: {'shipped weights' if shipped else 'untrained network (no weights shipped yet)'}, "
          f"{sum(p.numel() for p in net.parameters()):,} parameters; {steps} DDIM steps from t={settings.t_start}")

    def sample(autocast: bool):
        return _run(iter_sample_volume(net, patch, 0.05, samples=1, seed=0, settings=settings, autocast=autocast))

    results = {"fp32": _median_time(lambda: sample(False), args.runs)}
    if cpu_bf16_supported():
        results["bf16"] = _median_time(lambda: sample(True), args.runs)
    slice512 = patch.reshape(1, 512, 512)
    unet = {"default": _median_time(lambda: nj.denoise(slice512, model="unet", dose=0.25, device="cpu"), args.runs),
            "torch fp32": _median_time(lambda: nj.denoise(slice512, model="unet", dose=0.25, device="cpu",
                                                          runtime="torch"), args.runs)}
    for name, t in results.items():
        print(f"diffusion {name}: {t:.2f} s per 64^3 patch (one sample, {steps} steps; {t / steps:.3f} s per "
              f"network call); {t / unet['default']:.0f}x the default unet's {unet['default']:.3f} s on the same "
              f"voxels (one 512^2 slice), {t / unet['torch fp32']:.0f}x its eager fp32 {unet['torch fp32']:.3f} s")
    auto = results.get("bf16", results["fp32"])
    shape = (141, 512, 512)
    boxes = patch_grid(shape, (settings.patch,) * 3, settings.overlap)
    for samples in (1, 8):
        est = estimate_seconds(shape, samples=samples, settings=settings, seconds_per_eval_64=auto / steps)
        print(f"whole chest {shape}: {len(boxes)} patches (overlap {settings.overlap}), {samples} sample(s): "
              f"about {est / 60:.0f} min at the auto runtime's speed")
    if args.chest and CHEST.exists():
        vol = nj.load_ct(CHEST)
        t0 = time.perf_counter()
        _run(iter_sample_volume(net, vol.hu, 0.05, samples=1, seed=0, settings=settings, autocast="bf16" in results))
        print(f"whole chest {vol.shape}: {(time.perf_counter() - t0) / 60:.1f} min for one sample (measured)")
    print(f"peak resident memory: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
