"""``jointrecon train diffusion``: the conditional diffusion denoiser on the patient split, resumable.

Data: every real series split by patient (``training/series.py``, ``PATIENT_SPLIT``), each with its
own noise level and texture, in caches of *contiguous* slices (``build_series_caches(stride=1)``,
``runs/cache/series_*_z1.npz``; the 2D models' caches keep every second slice, which would teach a
3D model the wrong distance between neighbouring slices). Most ``ct-series`` hold only 30-40
slices, so 64-slice patches are impossible: training patches are 64 x 64 in-plane and ``depth``
(8) slices deep, and one batch in four is a thin slab of 1-4 slices, so that a single slice (a 2D
input, a thin volume) is a case the network has seen. The network is fully convolutional in depth
and its attention is in-plane, so 64^3 inference patches use the same weights.

Objective: DDPM's epsilon MSE (``models/diffusion.py``), with ``x0`` the full-dose patch, the
low-dose patch and the inserted noise level (HU / 1000) as conditions, and t drawn in
1 .. ``T_TRAIN_MAX`` (sampling starts at ``t_start`` = 100, so larger t would never be used). An
exponential moving average of the weights (EMA, 0.999) is what is validated and shipped.

Validation (model selection, never the test patients): every ``val_every`` steps the EMA network
samples centre boxes of the validation patients at the four doses with the default sampler (one
sample); the best mean PSNR is kept. A checkpoint with everything needed to continue (weights, EMA,
optimiser, step, the step count fitted to the time budget, sampler and torch RNG states, the
validation curve, the best state) is written atomically after every validation and every
``checkpoint_every_s`` seconds; ``jointrecon train diffusion`` continues from
``runs/diffusion/checkpoint.pt``, else from ``checkpoints/diffusion.pt``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..dose import DOSE_LEVELS
from ..metrics import psnr
from ..models.diffusion import (DEFAULT_SAMPLER, SIZE_MULTIPLE, T_TRAIN_MAX, SamplerSettings, Schedule,
                                iter_sample_volume, to_diffusion)
from ..models.registry import card_path, get_spec
from .data import PatchSampler
from .series import SeriesCache
from .train import STOP_FILE, _lr, run_logger

__all__ = ["DiffusionConfig", "DEFAULT_CONFIG", "VolumePatchSampler", "diffusion_val_set", "train_diffusion",
           "export_diffusion", "count_flops_3d"]

NAME = "diffusion"
#: Batches thinner than this run in fp32 even with ``bf16`` (see the training loop).
BF16_MIN_DEPTH = 4


@dataclass
class DiffusionConfig:
    steps: int = 30000
    batch: int = 8
    patch: int = 64
    #: slices of a training patch (series with fewer contiguous slices are used in thin batches)
    depth: int = 8
    #: share of batches that are thin slabs of 1-4 slices
    thin_fraction: float = 0.25
    lr: float = 5e-4
    seed: int = 0
    val_every: int = 500
    log_every: int = 50
    checkpoint_every_s: float = 300.0
    threads: int = 2
    #: wall-clock budget (s): after 20 steps the step count is lowered to fit it (the learning-rate
    #: schedule follows); the time of earlier sessions counts
    time_budget_s: float | None = 9000.0
    bf16: bool = True
    ema: float = 0.999
    #: validation boxes: in-plane side and depth
    val_crop: int = 128
    val_depth: int = 8
    #: the sampler the card ships (steps, start) and validation uses
    sample_steps: int = 10
    t_start: int = 100
    eta: float = 0.0
    #: z-stride of the training caches (1: contiguous slices)
    stride: int = 1


#: Sized to train in about 2.5 hours on 2 CPU cores (time budget 9000 s; 1-2 s per step of 8
#: patches of 8 x 64 x 64 in bf16), resumable across sessions.
DEFAULT_CONFIG = DiffusionConfig()


def _to_diffusion(a: list[np.ndarray]) -> torch.Tensor:
    return to_diffusion(torch.from_numpy(np.stack(a)[:, None].astype(np.float32)))


class VolumePatchSampler:
    """Random training boxes ``(low, clean, level)`` in the diffusion scale, ``(B, 1, D, P, P)``;
    ``level``: the inserted noise in HU / 1000.

    Each batch has one depth: ``depth`` slices, or (``thin_fraction`` of batches) 1-4. Every series
    deep enough is drawn equally often, then a box with at least 30 % tissue in its middle slice, a
    dose (10/25/50/70 %, one time in five uniform in 5-100 %), an in-plane turn and flip, a flip in
    depth and the noise's sign.
    """

    def __init__(self, caches: dict[str, SeriesCache], *, patch: int = 64, depth: int = 8, thin_fraction: float = 0.25,
                 seed: int = 0, continuous_fraction: float = 0.2):
        self.sources = [c for c in caches.values() if c.split == "train"]
        if not self.sources:
            raise ValueError("no training series")
        self.patch, self.depth, self.thin_fraction = patch, depth, thin_fraction
        self.rng = np.random.default_rng(seed)
        self.continuous_fraction = continuous_fraction

    dose = PatchSampler.dose

    def sample(self, batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        depth = int(self.rng.integers(1, 5)) if self.rng.random() < self.thin_fraction else self.depth
        eligible = [s for s in self.sources if s.clean.shape[0] >= depth]
        if not eligible:
            depth = min(s.clean.shape[0] for s in self.sources)
            eligible = self.sources
        lows, cleans, levels = [], [], []
        p = self.patch
        for _ in range(batch):
            src = eligible[int(self.rng.integers(len(eligible)))]
            n, h, w = src.clean.shape
            ps = min(p, h, w)
            for _try in range(10):
                k = int(self.rng.integers(n - depth + 1))
                y, x = int(self.rng.integers(h - ps + 1)), int(self.rng.integers(w - ps + 1))
                box = np.s_[k:k + depth, y:y + ps, x:x + ps]
                if (src.clean[k + depth // 2, y:y + ps, x:x + ps] > -500).mean() > 0.3:
                    break
            dose = self.dose()
            factor = math.sqrt((1.0 - dose) / dose)
            sign = 1.0 if self.rng.integers(2) else -1.0
            clean = src.clean[box]
            low = clean + (sign * factor) * src.noise[box].astype(np.float32)
            turns, flip, zflip = int(self.rng.integers(4)), bool(self.rng.integers(2)), bool(self.rng.integers(2))
            low, clean = np.rot90(low, turns, axes=(1, 2)), np.rot90(clean, turns, axes=(1, 2))
            if flip:
                low, clean = low[:, :, ::-1], clean[:, :, ::-1]
            if zflip:
                low, clean = low[::-1], clean[::-1]
            if ps < p:
                pad = ((0, 0), (0, p - ps), (0, p - ps))
                low = np.pad(low, pad, constant_values=-1000.0)
                clean = np.pad(clean, pad, constant_values=-1000.0)
            lows.append(np.ascontiguousarray(low))
            cleans.append(np.ascontiguousarray(clean))
            levels.append(src.sd_full * factor / 1000.0)
        return _to_diffusion(lows), _to_diffusion(cleans), torch.tensor(levels, dtype=torch.float32)


def diffusion_val_set(caches: dict[str, SeriesCache], *, crop: int = 128, depth: int = 8):
    """Fixed ``(low_hu, clean_hu, level, dose, series)`` boxes: the centre ``depth`` slices and
    ``crop`` pixels of every validation series, at the four doses (noise seeded as in evaluation)."""
    items = []
    for c in caches.values():
        if c.split != "val":
            continue
        n, h, w = c.clean.shape
        d = min(depth, n)
        k0 = (n - d) // 2
        s = min(crop, h, w)
        box = np.s_[k0:k0 + d, (h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
        clean = np.ascontiguousarray(c.clean[box], dtype=np.float32)
        for dose in DOSE_LEVELS:
            factor = math.sqrt((1.0 - dose) / dose)
            low = clean + factor * c.noise[box].astype(np.float32)
            items.append((low, clean, c.sd_full * factor / 1000.0, dose, c.name))
    return items


def _sample_mean(net, low: np.ndarray, level: float, settings: SamplerSettings, bf16: bool) -> np.ndarray:
    gen = iter_sample_volume(net, low, level, samples=1, seed=0, settings=settings, autocast=bf16)
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        return stop.value[0]


def _validate(net, val, settings: SamplerSettings, bf16: bool) -> dict[str, float]:
    """Mean PSNR ([-1000, 1000] HU -> [0, 1]) per dose over the slices of one sample of every
    validation box."""
    per_dose: dict[str, list[float]] = {}
    for low, clean, level, dose, _series in val:
        out = _sample_mean(net, low, level, settings, bf16)
        per_dose.setdefault(f"{int(round(dose * 100))}", []).extend(psnr(o, c) for o, c in zip(out, clean))
    return {k: float(np.mean(v)) for k, v in per_dose.items()}


def _settings(cfg: DiffusionConfig) -> SamplerSettings:
    return SamplerSettings(steps=cfg.sample_steps, t_start=cfg.t_start, eta=cfg.eta)


def train_diffusion(out_dir: str | Path, *, cache_dir: str | Path = "runs/cache", config: DiffusionConfig | None = None,
                    resume: bool = True, caches: dict | None = None, fallback_checkpoint: str | Path | None = None,
                    log_file: str | Path | None = None) -> dict:
    """Train the diffusion denoiser; returns a summary (also ``out_dir/summary.json``; the best EMA
    weights in ``out_dir/best.pt``).

    ``caches`` (name -> :class:`~napari_jointrecon.training.series.SeriesCache`, with train and val
    splits) replaces the contiguous-slice caches built from the shared data, for smoke tests.
    ``fallback_checkpoint``: where to continue from when ``out_dir`` has no checkpoint.
    """
    cfg = config or DiffusionConfig(**asdict(DEFAULT_CONFIG))
    if cfg.patch % SIZE_MULTIPLE or cfg.val_crop % SIZE_MULTIPLE:
        raise ValueError(f"--patch ({cfg.patch}) and the validation crop ({cfg.val_crop}) must be multiples of "
                         f"{SIZE_MULTIPLE}")
    spec = get_spec(NAME)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log = run_logger(Path(log_file) if log_file else out / "train.log")

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    if caches is None:
        from .series import build_series_caches

        caches = build_series_caches(cache_dir, splits=("train", "val"), stride=cfg.stride, log=log)
    sampler = VolumePatchSampler(caches, patch=cfg.patch, depth=cfg.depth, thin_fraction=cfg.thin_fraction,
                                 seed=cfg.seed)
    val = diffusion_val_set(caches, crop=cfg.val_crop, depth=cfg.val_depth)
    data_info = {c.name: {"split": c.split, "slices": len(c.slices), "full_dose_noise_hu": round(c.sd_full, 2),
                          "nps_mean_cycles_per_px": round(c.f_series, 4), "texture_cutoff": c.cutoff}
                 for c in caches.values()}
    schedule = Schedule()
    settings = _settings(cfg)

    model = spec.build()
    ema = copy.deepcopy(model).eval()
    for p in ema.parameters():
        p.requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    state = {"step": 0, "best": -1.0, "best_state": None, "elapsed": 0.0, "history": []}
    ckpt = out / "checkpoint.pt"
    source = ckpt if ckpt.exists() or fallback_checkpoint is None else Path(fallback_checkpoint)
    if resume and source.exists():
        saved = torch.load(source, map_location="cpu", weights_only=False)
        model.load_state_dict(saved["model"])
        ema.load_state_dict(saved["ema"])
        opt.load_state_dict(saved["opt"])
        state = saved["state"]
        sampler.rng.bit_generator.state = saved["sampler"]
        torch.set_rng_state(saved["torch_rng"])
        log(f"resumed {NAME} at step {state['step']} from {source}")
    else:
        log(f"training {NAME} with {asdict(cfg)}; {sum(p.numel() for p in model.parameters())} parameters")

    def save_checkpoint() -> None:
        state["elapsed"] = time.perf_counter() - t_start
        torch.save({"model": model.state_dict(), "ema": ema.state_dict(), "opt": opt.state_dict(), "state": state,
                    "sampler": sampler.rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                    "config": asdict(cfg)}, ckpt.with_suffix(".tmp"))
        ckpt.with_suffix(".tmp").replace(ckpt)  # never a half-written checkpoint

    total = state.get("main_steps", cfg.steps)
    t_start = time.perf_counter() - state["elapsed"]
    last_save = time.perf_counter()
    session_t0, session_step0 = time.perf_counter(), state["step"]
    model.train()
    running: list[float] = []
    while state["step"] < total:
        step = state["step"]
        if step - session_step0 == 20 and cfg.time_budget_s and "main_steps" not in state:
            per_step = (time.perf_counter() - session_t0) / 20
            left = cfg.time_budget_s - (time.perf_counter() - t_start)
            total = max(100, min(cfg.steps, step + int(left / per_step)))
            state["main_steps"] = total
            log(f"{per_step:.3f} s per step: {total} steps fit the {cfg.time_budget_s:.0f} s budget")
        for g in opt.param_groups:
            g["lr"] = _lr(step, total, cfg.lr)
        low, clean, level = sampler.sample(cfg.batch)
        t = torch.randint(0, T_TRAIN_MAX, (low.shape[0],))
        noise = torch.randn_like(clean)
        x_t = schedule.diffuse(clean, t, noise)
        # thin batches in fp32: torch 2.13's oneDNN bf16 conv3d backward gives NaN weight gradients
        # on 2-slice inputs (tests/test_diffusion.py keeps an eye on it)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16 and low.shape[2] >= BF16_MIN_DEPTH):
            pred = model(x_t, low, t.float(), level)
        loss = F.mse_loss(pred.float(), noise)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        if torch.isfinite(norm):
            opt.step()
            decay = min(cfg.ema, (1 + step) / (10 + step))
            with torch.no_grad():
                for pe, pm in zip(ema.parameters(), model.parameters()):
                    pe.lerp_(pm, 1 - decay)
            running.append(loss.item())
        else:  # a step that would poison every weight is skipped, and counted
            state["skipped"] = state.get("skipped", 0) + 1
            log(f"step {step}: non-finite gradient (batch of {low.shape[2]} slices), skipped "
                f"({state['skipped']} so far)")
        state["step"] = step = step + 1
        if step % cfg.log_every == 0:
            log(f"step {step}/{total} loss {np.mean(running) if running else float('nan'):.5f} "
                f"{time.perf_counter() - t_start:.0f} s")
            running = []
        stop = (out / STOP_FILE).exists()  # stop cleanly: validate, checkpoint; a rerun continues the schedule
        if stop:
            log(f"stop requested at step {step}/{total}")
            (out / STOP_FILE).unlink()
        if step % cfg.val_every == 0 or step >= total or stop:
            scores = _validate(ema, val, settings, cfg.bf16)
            mean = float(np.mean(list(scores.values())))
            state["history"].append({"step": step, **scores})
            if mean > state["best"]:
                state["best"], state["best_step"] = mean, step
                state["best_state"] = copy.deepcopy(ema.state_dict())
            log("val PSNR " + " ".join(f"{k}%:{v:.2f}" for k, v in scores.items())
                + f" mean {mean:.2f} (best {state['best']:.2f})")
            save_checkpoint()
            last_save = time.perf_counter()
        elif time.perf_counter() - last_save > cfg.checkpoint_every_s:
            save_checkpoint()
            last_save = time.perf_counter()
        if stop:
            break
    state["elapsed"] = time.perf_counter() - t_start
    summary = {"model": NAME, "recipe": spec.recipe, "config": asdict(cfg), "steps": total,
               "steps_done": state["step"], "stopped_early": state["step"] < total,
               "best_step": state.get("best_step"), "best_val_psnr_mean": state["best"],
               "wall_time_s": round(state["elapsed"], 1), "history": state["history"], "series": data_info,
               "skipped_steps": state.get("skipped", 0)}
    torch.save(state["best_state"], out / "best.pt")
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    log(f"done: best validation PSNR {state['best']:.2f} at step {state.get('best_step')}")
    return summary


def count_flops_3d(model: torch.nn.Module, size: int = 64) -> int:
    """Floating-point operations of one network evaluation on a ``size``^3 patch."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, 1, size, size, size)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.eval()(x, x, torch.full((1,), 50.0), torch.full((1,), 0.03))
    return int(counter.get_total_flops())


def export_diffusion(run_dir: str | Path) -> Path:
    """Copy ``run_dir/best.pt`` into the package and write the model card (training facts, the
    sampler's settings). Measured results are added by ``jointrecon evaluate``."""
    from .export import _series_card, ship_weights

    run_dir = Path(run_dir)
    spec = get_spec(NAME)
    summary, model, target, old = ship_weights(NAME, run_dir)
    cfg = summary["config"]
    flops = count_flops_3d(model)
    card = {
        "name": NAME,
        "title": spec.title,
        "architecture": spec.description,
        "module": type(model).__module__ + "." + type(model).__name__,
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "flops_per_64cube_eval": flops,
        # a 64^3 patch has the voxels of one 512 x 512 slice: one sample at the default steps
        "flops_per_512_slice": flops * cfg["sample_steps"],
        "weights": target.name,
        "weights_bytes": target.stat().st_size,
        "sha256": hashlib.sha256(target.read_bytes()).hexdigest(),
        "sampling": {"steps": cfg["sample_steps"], "t_start": cfg["t_start"], "eta": cfg["eta"],
                     "denoise_samples": DEFAULT_SAMPLER.denoise_samples, "patch": 64, "overlap": 16,
                     "why": "DDIM from the low-dose image diffused to t_start (CoreDiff-style) instead of 50 "
                            "steps from pure noise at T = 1000: 5x fewer network calls per sample"},
        "training": {
            "recipe": spec.recipe,
            "objective": f"epsilon MSE, T = 1000 linear betas 1e-4..0.02, t drawn in 1..{T_TRAIN_MAX}",
            "patches": f"{cfg['patch']} x {cfg['patch']} in-plane, {cfg['depth']} contiguous slices "
                       f"({cfg['thin_fraction']:.0%} of batches 1-4 slices)",
            "steps": summary.get("steps_done", summary["steps"]),
            "planned_steps": summary["steps"],
            "best_step": summary["best_step"],
            "best_validation_psnr_mean_db": round(summary["best_val_psnr_mean"], 3),
            "wall_time_s": summary["wall_time_s"],
            "config": cfg,
            "machine": "2 CPU cores (AMD EPYC), torch CPU build",
        },
    }
    _series_card(card, summary)
    card["training"]["validation"] = (f"one sample (EMA weights) of the centre {cfg['val_depth']} slices x "
                                      f"{cfg['val_crop']}^2 pixels of each validation patient at the four doses")
    for key in ("results", "speed", "status", "estimate_factor"):
        if key in old:
            card[key] = old[key]
    card_path(NAME).write_text(json.dumps(card, indent=2) + "\n")
    return target
