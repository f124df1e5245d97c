"""Ship a trained model: weights into ``models/weights/NAME.pt`` and its card ``NAME.json``."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import torch

from ..models.registry import card_path, get_spec, weights_path
from .data import PHANTOM_TRAIN_SEEDS, SPLITS, TORSO_FILES

__all__ = ["export_model", "count_flops", "tune_estimate"]


def count_flops(model: torch.nn.Module, size: int = 512) -> int:
    """Floating-point operations of one forward pass on a ``size`` x ``size`` slice."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, 1, size, size)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.eval()(x, torch.full((1,), 0.25))
    return int(counter.get_total_flops())


def _series_card(card: dict, summary: dict) -> None:
    """The card of a model trained on the patient split and conditioned on the noise level."""
    from statistics import median

    from .series import PATIENT_SPLIT

    series = summary["series"]
    card["dose_conditioned"] = False
    card["conditioning"] = "noise"
    card["conditioning_input"] = "noise level to remove, HU / 1000 (flat soft tissue, napari_jointrecon/noise.py)"
    # the fallback level for a given dose when an image has no flat soft tissue to measure
    card["typical_full_dose_sd"] = round(median(v["full_dose_noise_hu"] for v in series.values()
                                                if v["split"] == "train"), 2)
    card.setdefault("estimate_factor", 1.0)
    training = card["training"]
    training["split"] = "patient"
    training["data"] = {s: f"{split} (patient {patient})" + (
        f": {series[s]['slices']} slices, full-dose noise {series[s]['full_dose_noise_hu']} HU, "
        f"texture cut-off {series[s]['texture_cutoff']}" if s in series else "")
        for s, (patient, split) in PATIENT_SPLIT.items()}
    training["doses"] = ("10/25/50/70 % (80 %) and uniform 5-100 % (20 %); inserted noise = each series' "
                         "own full-dose noise x sqrt((1 - dose) / dose), with its texture")
    training["validation_curve"] = summary["history"]


def ship_weights(name: str, run_dir: str | Path):
    """Copy a run's ``best.pt`` into the package as ``name``'s weights (checked by loading them into
    the registered network first). Returns ``(summary, model, target, old card)``: the run's summary,
    the loaded network, the weights file and the card that was there before (or ``{}``)."""
    run_dir = Path(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    state = torch.load(run_dir / "best.pt", map_location="cpu", weights_only=True)
    model = get_spec(name).build()
    model.load_state_dict(state)
    target = weights_path(name)
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save({k: v.contiguous() for k, v in state.items()}, target)
    old = json.loads(card_path(name).read_text()) if card_path(name).exists() else {}
    return summary, model, target, old


def export_model(name: str, run_dir: str | Path) -> Path:
    """Copy ``run_dir/best.pt`` into the package and write the model card (training facts).

    Measured test results are added to the card by ``jointrecon evaluate``.
    """
    run_dir = Path(run_dir)
    spec = get_spec(name)
    summary, model, target, old = ship_weights(name, run_dir)
    card = {
        "name": name,
        "title": spec.title,
        "architecture": spec.description,
        "module": type(model).__module__ + "." + type(model).__name__,
        "dose_conditioned": bool(getattr(model, "dose_conditioned", False)),
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "flops_per_512_slice": count_flops(model),
        "weights": target.name,
        "weights_bytes": target.stat().st_size,
        "sha256": hashlib.sha256(target.read_bytes()).hexdigest(),
        "training": {
            "recipe": spec.recipe,
            "data": {
                "chest-ct-dicom": f"volume slices (feet to head) {SPLITS['train'].start}-{SPLITS['train'].stop - 1} "
                                  f"(validation {SPLITS['val'].start}-{SPLITS['val'].stop - 1}, "
                                  f"test {SPLITS['test'].start}-{SPLITS['test'].stop - 1}, never seen)",
                "torso-ct-nifti": ", ".join(TORSO_FILES) + " (all slices)",
                "phantom": f"seeds {', '.join(map(str, PHANTOM_TRAIN_SEEDS))} at 1 mm",
            },
            "doses": "10/25/50/70 % (80 %) and uniform 5-100 % (20 %), projection-domain noise",
            "steps": summary["steps"],
            "best_step": summary["best_step"],
            "best_validation_psnr_mean_db": round(summary["best_val_psnr_mean"], 3),
            "wall_time_s": summary["wall_time_s"],
            "config": summary["config"],
            "machine": "2 CPU cores (AMD EPYC), torch CPU build",
        },
    }
    if summary.get("stopped_early"):
        card["training"]["planned_steps"] = summary["planned_steps"]
        card["training"]["stopped_early"] = (
            f"stopped at step {summary['steps']} of the {summary['planned_steps']} planned (the session's "
            "time); `jointrecon train` continues the schedule from the committed checkpoint")
    init = summary.get("init")
    if init:
        training = card["training"]
        training["warm_start"] = init
        training["total_steps"] = training["steps"] + (init.get("steps") or 0)
        training["total_wall_time_s"] = round(training["wall_time_s"] + (init.get("wall_time_s") or 0), 1)
    if summary["config"].get("data") == "series":
        _series_card(card, summary)
    for key in ("results", "speed"):
        if key in old:
            card[key] = old[key]
    card_path(name).write_text(json.dumps(card, indent=2) + "\n")
    shutil.copy(run_dir / "summary.json", run_dir / "exported_summary.json")
    return target


def tune_estimate(name: str, cache_dir: str | Path = "runs/cache", log=print) -> float:
    """Choose a noise-conditioned model's ``estimate_factor`` (the share of the measured noise that
    "estimate from the image" removes; :func:`~napari_jointrecon.training.heldout.tune_estimate_factor`)
    and write it, with the scores behind it, into its card."""
    from ..models.registry import load_model
    from .heldout import tune_estimate_factor

    factor, scores = tune_estimate_factor(name, cache_dir, log=log)
    card = json.loads(card_path(name).read_text())
    card["estimate_factor"] = factor
    card["estimate_factor_psnr_db"] = scores
    card_path(name).write_text(json.dumps(card, indent=2) + "\n")
    load_model.cache_clear()
    return factor
