"""``jointrecon train MODEL``: one training loop, several recipes, resumable, logging to a file.

Recipes (``ModelSpec.recipe``):

* ``supervised``: L1 between the output and the full-dose patch;
* ``teacher_student``: a teacher autoencoder of full-dose patches (L1 + 0.2 (1 - SSIM)) for the
  first quarter of the steps, then a student encoder that sees the low-dose patch and the dose,
  trained with ``lambda_lat MSE(latent, teacher latent) + lambda_rec L1(output, full dose)`` through
  the teacher's frozen decoder;
* ``anatomy``: a tissue-class network (the anatomy prior) learns air/lung/fat/soft tissue/bone on
  full-dose patches first, then is frozen; the denoiser is trained with
  L1 + 0.2 (1 - SSIM) + 0.1 x its perceptual loss;
* ``gan``: L1 + 0.01 x least-squares adversarial loss from a PatchGAN discriminator.

Every ``val_every`` steps the model is scored on the validation slabs (PSNR at the four doses) and
the best state is kept: model selection never sees the test slabs. A checkpoint with everything
needed to resume (step, stage, models, optimisers, sampler state, best state) is written at the same
time.
"""

from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..models.registry import get_spec
from .data import PatchSampler, build_cache, validation_set
from .losses import l1_ssim_loss, lsgan_d_loss, lsgan_g_loss

__all__ = ["TrainConfig", "train", "DEFAULT_CONFIGS", "psnr_model_scale", "COMMITTED_CHECKPOINTS"]

#: A file of this name in a run folder asks the training there to stop after the current step: it
#: validates, writes its checkpoint and ships its best weights like a finished run, and a later
#: ``jointrecon train NAME`` continues the schedule (``touch runs/NAME/STOP``).
STOP_FILE = "STOP"

#: Checkpoints kept in the repository between sessions (one file per model, overwritten): a run
#: without a checkpoint in its folder continues from here (``scripts/save_checkpoint.sh`` copies).
COMMITTED_CHECKPOINTS = Path(__file__).resolve().parents[2] / "checkpoints"


@dataclass
class TrainConfig:
    steps: int = 3000
    batch: int = 16
    patch: int = 96
    lr: float = 1e-3
    seed: int = 0
    val_every: int = 250
    log_every: int = 50
    threads: int = 2
    #: Wall-clock budget of the main stage in seconds: after 20 steps the step count is lowered to
    #: fit it (the learning-rate schedule follows), so every model trains in a known time.
    time_budget_s: float | None = None
    #: Weights (a state dict file, e.g. a shipped ``.pt``) to start from instead of a random init;
    #: the learning-rate schedule starts afresh.
    init: str | None = None
    #: Supervised recipe: loss = L1 + ssim_weight * (1 - SSIM).
    ssim_weight: float = 0.0
    #: ``"chest"``: the chest slabs, torso and phantom with the fixed dose model, dose-conditioned
    #: (``training/data.py``); ``"series"``: every real series split by patient, each with its own
    #: noise level and texture, conditioned on the inserted noise level (``training/series.py``).
    data: str = "chest"
    #: bf16 autocast for the forward pass on the CPU (the residual subtraction stays in fp32).
    bf16: bool = False


#: Steps and time budgets per model. ``unet`` and ``nafnet_anatomy`` train on every real series split
#: by patient, for hours (resumable across sessions). The design baselines get their fair runs on the
#: same split one at a time: ``resnet``, ``nafnet`` (conditioned on the noise to remove, like
#: ``unet``), ``nafnet_nodose``, ``autoencoder`` and ``redcnn`` (96-pixel patches: its full-resolution
#: layers make a step about 0.4 s) have had theirs and stay baselines; ``cncl`` (the GAN recipe, its
#: generator and discriminator in bf16) joined the zoo with its.
DEFAULT_CONFIGS = {
    "unet": TrainConfig(steps=25000, patch=128, val_every=1000, log_every=200, data="series", bf16=True),
    "autoencoder": TrainConfig(steps=12000, patch=128, val_every=1000, log_every=200, data="series", bf16=True),
    "resnet": TrainConfig(steps=15000, patch=128, val_every=1000, log_every=200, data="series", bf16=True),
    "nafnet": TrainConfig(steps=12000, patch=128, val_every=1000, log_every=200, data="series", bf16=True),
    "nafnet_nodose": TrainConfig(steps=12000, patch=128, val_every=1000, log_every=200, data="series",
                                 bf16=True),
    "nafnet_anatomy": TrainConfig(steps=40000, patch=128, val_every=1000, log_every=200, data="series", bf16=True,
                                  time_budget_s=5400),
    "redcnn": TrainConfig(steps=8000, patch=96, val_every=500, log_every=100, data="series", bf16=True),
    "cncl": TrainConfig(steps=8000, patch=128, val_every=500, log_every=100, data="series", bf16=True),
}


def run_logger(path: Path):
    """``log(msg)``: a time-stamped line printed and appended to a run's log file."""
    def log(msg: str) -> None:
        line = f"{time.strftime('%H:%M:%S')} {msg}"
        print(line, flush=True)
        with open(path, "a") as fh:
            fh.write(line + "\n")

    return log


def psnr_model_scale(out: torch.Tensor, clean: torch.Tensor) -> float:
    """PSNR on [-1000, 1000] HU mapped to [0, 1] (model scale clipped to [0, 1]), data_range 1."""
    mse = F.mse_loss(out.clamp(0, 1), clean.clamp(0, 1)).item()
    return 10 * math.log10(1.0 / max(mse, 1e-12))


@torch.no_grad()
def _validate(model, val) -> dict[str, float]:
    """Validation PSNR per dose: ``val`` holds ``(low, clean, dose)`` (chest data, the model
    conditioned on the dose) or ``(low, clean, level, dose, series)`` (series data, conditioned on
    the inserted noise level; the PSNR is the mean over the series)."""
    model.eval()
    per_dose: dict[str, list[float]] = {}
    for item in val:
        low, clean, cond = item[:3]
        dose = item[3] if len(item) > 3 else cond
        d = torch.full((low.shape[0],), cond)
        out = torch.cat([model(low[i:i + 8], d[i:i + 8]) for i in range(0, low.shape[0], 8)])
        per_dose.setdefault(f"{int(round(dose * 100))}", []).append(psnr_model_scale(out, clean))
    model.train()
    return {k: float(np.mean(v)) for k, v in per_dose.items()}


def _aux_steps(recipe: str, steps: int) -> int:
    """Steps of a recipe's auxiliary network before the main one (teacher, tissue network)."""
    return {"teacher_student": min(steps // 4, 500), "anatomy": min(300, steps)}.get(recipe, 0)


def _lr(step: int, total: int, base: float, warmup: int = 100) -> float:
    """Linear warm-up over ``warmup`` steps, then cosine decay to 2 % of ``base``."""
    warm = min(1.0, (step + 1) / warmup)
    return base * warm * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(step / total, 1.0))))


def _init_record(path: str) -> dict:
    """What a warm start began from: the file, and the steps and time of the card beside it."""
    record = {"weights": Path(path).name}
    card = Path(path).with_suffix(".json")
    if card.exists():
        training = json.loads(card.read_text()).get("training", {})
        record["steps"] = training.get("total_steps", training.get("steps"))
        record["wall_time_s"] = training.get("total_wall_time_s", training.get("wall_time_s"))
    return record


def train(name: str, out_dir: str | Path, *, cache_dir: str | Path = "runs/cache",
          config: TrainConfig | None = None, resume: bool = True, log_file: str | Path | None = None,
          caches: dict | None = None, fallback_checkpoint: str | Path | None = None) -> dict:
    """Train one registered model; returns a summary (also written to ``out_dir/summary.json``).

    ``caches`` (name -> NoiseCache, with ``chest_train`` and ``chest_val``) replaces the caches built
    from the shared data, for smoke tests. ``fallback_checkpoint``: where to resume from when
    ``out_dir`` has no checkpoint (``jointrecon train`` passes the committed ``checkpoints/NAME.pt``).
    """
    spec = get_spec(name)
    if spec.kind != "learned":
        raise ValueError(f"{name} is classical: nothing to train")
    cfg = config or DEFAULT_CONFIGS.get(name, TrainConfig())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log = run_logger(Path(log_file) if log_file else out / "train.log")

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    data_info = None
    if cfg.data == "series":
        from .series import SeriesPatchSampler, build_series_caches, series_eval_set

        if caches is None:
            caches = build_series_caches(cache_dir, log=log)
        val = series_eval_set(caches, "val")
        sampler = SeriesPatchSampler(caches, patch=cfg.patch, seed=cfg.seed)
        data_info = {c.name: {"split": c.split, "slices": len(c.slices), "full_dose_noise_hu": round(c.sd_full, 2),
                              "nps_mean_cycles_per_px": round(c.f_series, 4), "texture_cutoff": c.cutoff}
                     for c in caches.values()}
    else:
        if caches is None:
            caches = build_cache(cache_dir, log=log)
        val = validation_set(caches)
        sampler = PatchSampler(caches, patch=cfg.patch, seed=cfg.seed)

    model = spec.build()
    if cfg.bf16:
        model = model.to(memory_format=torch.channels_last)
    state = {"step": 0, "best": -1.0, "best_state": None, "elapsed": 0.0, "history": []}
    aux: dict[str, torch.nn.Module] = {}
    if spec.recipe == "teacher_student":
        from ..models.nafnet import NAFNet

        aux["teacher"] = NAFNet(16, dose_conditioned=False, residual=False)
    elif spec.recipe == "anatomy":
        from ..models.anatomy import TissueNet

        aux["tissue"] = TissueNet()
    elif spec.recipe == "gan":
        from ..models.cncl import PatchDiscriminator

        aux["disc"] = PatchDiscriminator()
    aux_steps = _aux_steps(spec.recipe, cfg.steps)

    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    aux_opt = {k: torch.optim.Adam(m.parameters(), lr=cfg.lr if k != "disc" else 2e-4,
                                   betas=(0.9, 0.999) if k != "disc" else (0.5, 0.999))
               for k, m in aux.items()}
    ckpt = out / "checkpoint.pt"
    source = ckpt if ckpt.exists() or fallback_checkpoint is None else Path(fallback_checkpoint)
    if resume and source.exists():
        saved = torch.load(source, map_location="cpu", weights_only=False)
        model.load_state_dict(saved["model"])
        opt.load_state_dict(saved["opt"])
        for k in aux:
            aux[k].load_state_dict(saved["aux"][k])
            aux_opt[k].load_state_dict(saved["aux_opt"][k])
        state = saved["state"]
        sampler.rng.bit_generator.state = saved["sampler"]
        if "torch_rng" in saved:
            torch.set_rng_state(saved["torch_rng"])
        log(f"resumed {name} at step {state['step']} from {source}")
    else:
        if cfg.init:
            model.load_state_dict(torch.load(cfg.init, map_location="cpu", weights_only=True))
            state["init"] = _init_record(cfg.init)
        log(f"training {name} ({spec.recipe}) with {asdict(cfg)}; "
            f"{sum(p.numel() for p in model.parameters())} parameters")

    def save_checkpoint():
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(),
                    "aux": {k: m.state_dict() for k, m in aux.items()},
                    "aux_opt": {k: o.state_dict() for k, o in aux_opt.items()},
                    "state": state, "sampler": sampler.rng.bit_generator.state,
                    "torch_rng": torch.get_rng_state(), "config": asdict(cfg)},
                   ckpt.with_suffix(".tmp"))
        ckpt.with_suffix(".tmp").replace(ckpt)  # never a half-written checkpoint

    student_ready = False
    main_steps = state.get("main_steps", cfg.steps)
    total = main_steps + aux_steps
    t_start = time.perf_counter() - state["elapsed"]
    model.train()
    running = []
    stop_file = out / STOP_FILE
    stopped = False
    while state["step"] < total:
        if stop_file.exists() and state["step"] > aux_steps:
            # a stop asked for between steps: validate, checkpoint, and end like a finished run
            # (the checkpoint still continues the schedule to ``total``: jointrecon train NAME)
            stop_file.unlink()
            log(f"stop requested at step {state['step']}/{total}")
            if not state["history"] or state["history"][-1]["step"] != state["step"]:
                scores = _validate(model, val)
                mean = float(np.mean(list(scores.values())))
                state["history"].append({"step": state["step"], **scores})
                if mean > state["best"]:
                    state["best"], state["best_state"], state["best_step"] = mean, copy.deepcopy(model.state_dict()), state["step"]
                log("val PSNR " + " ".join(f"{k}%:{v:.2f}" for k, v in scores.items())
                    + f" mean {mean:.2f} (best {state['best']:.2f})")
            state["elapsed"] = time.perf_counter() - t_start
            save_checkpoint()
            stopped = True
            break
        step = state["step"]
        low, clean, dose = sampler.sample(cfg.batch)
        if cfg.bf16:
            low = low.contiguous(memory_format=torch.channels_last)
        in_aux = step < aux_steps
        main_step = step - aux_steps
        if spec.recipe == "teacher_student" and in_aux:
            teacher = aux["teacher"]
            for g in aux_opt["teacher"].param_groups:
                g["lr"] = _lr(step, aux_steps, cfg.lr)
            loss = l1_ssim_loss(teacher(clean), clean)
            aux_opt["teacher"].zero_grad()
            loss.backward()
            aux_opt["teacher"].step()
        elif spec.recipe == "anatomy" and in_aux:
            from ..models.anatomy import tissue_labels

            tissue = aux["tissue"]
            loss = F.cross_entropy(tissue(clean), tissue_labels(clean))
            aux_opt["tissue"].zero_grad()
            loss.backward()
            aux_opt["tissue"].step()
        else:
            if main_step == 0:
                state["main_t0"] = time.perf_counter()
            if main_step == 20 and cfg.time_budget_s and "main_steps" not in state:
                per_step = (time.perf_counter() - state["main_t0"]) / 20
                main_steps = max(100, min(cfg.steps, int(cfg.time_budget_s / per_step)))
                state["main_steps"] = main_steps
                total = main_steps + aux_steps
                log(f"{per_step:.3f} s per step: {main_steps} main steps fit the "
                    f"{cfg.time_budget_s:.0f} s budget")
            for g in opt.param_groups:
                g["lr"] = _lr(main_step, main_steps, cfg.lr)
            if spec.recipe == "teacher_student":
                teacher = aux["teacher"]
                if not student_ready:
                    if main_step == 0:  # the student starts from the teacher (encoder and decoder)
                        model.load_state_dict(teacher.state_dict(), strict=False)
                    for m in model.decoder_modules():
                        for p in m.parameters():
                            p.requires_grad_(False)
                    teacher.eval()
                    student_ready = True
                with torch.no_grad():
                    target_latent = teacher.encode(clean)
                latent = model.encode(low, dose)
                loss_lat = sum(F.mse_loss(a, b) for a, b in zip(latent, target_latent)) / len(latent)
                loss = 0.5 * loss_lat + 1.0 * F.l1_loss(model.decode(low, latent), clean)
            elif spec.recipe == "anatomy":
                tissue = aux["tissue"].eval()
                for p in tissue.parameters():
                    p.requires_grad_(False)
                if cfg.bf16:
                    with torch.autocast("cpu", dtype=torch.bfloat16):
                        pred = model(low, dose).float()
                else:
                    pred = model(low, dose)
                loss = l1_ssim_loss(pred, clean) + 0.1 * tissue.perceptual(pred, clean)
            elif spec.recipe == "gan":
                disc = aux["disc"]
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
                    pred = model(low, dose).float()
                    d_loss = lsgan_d_loss(disc(clean).float(), disc(pred.detach()).float())
                aux_opt["disc"].zero_grad()
                d_loss.backward()
                aux_opt["disc"].step()
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
                    adv = lsgan_g_loss(disc(pred).float())
                loss = F.l1_loss(pred, clean) + 0.01 * adv
            elif cfg.ssim_weight > 0:
                loss = l1_ssim_loss(model(low, dose), clean, ssim_weight=cfg.ssim_weight)
            elif cfg.bf16:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    pred = model(low, dose)  # the residual subtraction x - noise promotes to fp32
                loss = F.l1_loss(pred.float(), clean)
            else:
                loss = F.l1_loss(model(low, dose), clean)
            opt.zero_grad()
            loss.backward()
            opt.step()
        running.append(loss.item())
        state["step"] += 1
        step = state["step"]
        if step % cfg.log_every == 0:
            state["elapsed"] = time.perf_counter() - t_start
            log(f"step {step}/{total} loss {np.mean(running):.5f} "
                f"({'aux' if in_aux else 'main'}) {state['elapsed']:.0f} s")
            running = []
        if step > aux_steps and ((step - aux_steps) % cfg.val_every == 0 or step >= total):
            scores = _validate(model, val)
            mean = float(np.mean(list(scores.values())))
            state["history"].append({"step": step, **scores})
            if mean > state["best"]:
                state["best"] = mean
                state["best_state"] = copy.deepcopy(model.state_dict())
                state["best_step"] = step
            state["elapsed"] = time.perf_counter() - t_start
            log("val PSNR " + " ".join(f"{k}%:{v:.2f}" for k, v in scores.items())
                + f" mean {mean:.2f} (best {state['best']:.2f})")
            save_checkpoint()
    summary = {
        "model": name, "recipe": spec.recipe, "config": asdict(cfg), "steps": state["step"],
        "planned_steps": total, "stopped_early": stopped,
        "best_step": state.get("best_step"), "best_val_psnr_mean": state["best"],
        "wall_time_s": round(state["elapsed"], 1), "history": state["history"],
    }
    if state.get("init"):
        summary["init"] = state["init"]
    if data_info is not None:
        summary["series"] = data_info
    torch.save(state["best_state"], out / "best.pt")
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    log(f"done: best validation PSNR {state['best']:.2f} at step {state.get('best_step')}")
    return summary


def write_checkpoint_card(name: str, checkpoint: str | Path | None = None, *,
                          cards_dir: str | Path = COMMITTED_CHECKPOINTS) -> Path:
    """``checkpoints/NAME.json``: the committed checkpoint's card, refreshed from the checkpoint itself
    (step, best step, wall time, planned steps, configuration, validation curve). Fields written by
    hand (what it is, the shipped weights, test results) are kept.

    Every trainer here (``train``, the diffusion and the contour point trainers) stores its progress
    as ``state`` (``step``, ``elapsed``, ``history``, ``best_step``) and its ``config``.
    """
    path = Path(checkpoint) if checkpoint else COMMITTED_CHECKPOINTS / f"{name}.pt"
    ck = torch.load(path, map_location="cpu", weights_only=False)
    state, config = ck["state"], ck.get("config", {})
    card_path = Path(cards_dir) / f"{name}.json"
    card = json.loads(card_path.read_text()) if card_path.exists() else {}
    from ..models.registry import get_spec

    try:  # the registry's models: their recipe's auxiliary steps come first
        aux = _aux_steps(get_spec(name).recipe, config["steps"])
    except (KeyError, ValueError):  # the point networks are not in the registry
        aux = 0
    # main steps: planned from a time budget where the run had one, else the configured ones
    planned = state.get("main_steps") or config.get("steps")
    planned = planned + aux if planned is not None else None
    card.update({"checkpoint": path.name, "step": state["step"], "planned_steps": planned,
                 "best_step": state.get("best_step"), "wall_time_s": round(float(state.get("elapsed", 0.0)), 1),
                 "config": config, "validation_curve": state.get("history", [])})
    if isinstance(state.get("best"), float):  # the denoisers' trainers keep their best validation mean
        card["best_validation_psnr_mean_db"] = round(state["best"], 3)
    card.setdefault("what", f"training state of {name}; the training command resumes from it")
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    return card_path
