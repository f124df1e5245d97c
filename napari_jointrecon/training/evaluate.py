"""``jointrecon evaluate``: the results table of every model on the test split -> docs/RESULTS.md.

Real scans: chest test slabs (slices 120-140, 21 full 512 x 512 slices) with projection-domain noise
inserted at 10/25/50/70 % (seed ``TEST_SEED``); the reference is the full-dose scan, itself noisy,
which caps the attainable PSNR gain at 10 log10(1/dose) dB. Phantom: the thorax phantom with seed 7
(never trained on) at 1 mm with exact Poisson noise, against its noise-free self (no cap).
"""

from __future__ import annotations

import json
import platform
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..dose import DOSE_LEVELS, simulate_low_dose
from ..inference import denoise, select_runtime
from ..metrics import image_metrics
from ..models.registry import card_path, list_models, read_card
from ..phantom import make_thorax_phantom
from .data import PHANTOM_TEST_SEED, SPLITS, TEST_SEED, build_cache

__all__ = ["evaluate", "measure_speed"]

_METRICS = ("psnr", "ssim", "psnr_abdomen", "ssim_abdomen", "rmse_body_hu", "rmse_hu")
#: Slow methods are scored on every n-th test slice (the table says how many); gains are always
#: computed against the input on the same slices.
SLICE_STRIDE = {"bm3d": 3}


def measure_speed(name: str, size: int = 512, runs: int = 5, threads: int = 2) -> float:
    """Slices per second at ``size`` x ``size`` on the CPU (warm-up, median of ``runs``)."""
    import torch

    torch.set_num_threads(threads)
    x = np.random.default_rng(0).normal(0, 30, (4, size, size)).astype(np.float32)
    n = 4 if read_card(name) else 1  # classical methods: one slice per run
    denoise(x[:n], model=name, dose=0.25, device="cpu")
    times = []
    for _ in range(runs if n == 4 else 1):
        t0 = time.perf_counter()
        denoise(x[:n], model=name, dose=0.25, device="cpu")
        times.append(time.perf_counter() - t0)
    return n / statistics.median(times)


#: Changes when a metric's definition changes, so that cached rows are computed again (2: the body
#: mask no longer loses the body where it touches the image's edge).
METRICS_VERSION = 2


def _row_key(name: str) -> str:
    """Identifies a model's current version (its weights' checksum, or the classical settings) and
    that of the metrics."""
    card = read_card(name)
    if card is not None:
        from ..inference import trained_bf16

        # the runtime that nj.denoise chooses here (bf16 autocast or fp32) is part of the result
        key = card["sha256"][:16] + " " + select_runtime("auto", "cpu", trained_bf16=trained_bf16(name))
    elif name == "input":
        key = "input"
    else:
        from ..models import classical

        key = "classical-" + json.dumps(classical.FACTORS.get(name, {}), sort_keys=True)
    return f"{key} metrics-{METRICS_VERSION}"


def _rows(names, low_by_dose, clean, log, tag: str, row_cache: Path | None):
    table = {}
    for name in ["input"] + names:
        cached = row_cache / f"{tag}_{name}.json" if row_cache else None
        key = _row_key(name)
        if cached is not None and cached.exists():
            saved = json.loads(cached.read_text())
            if saved["key"] == key:
                table[name] = {float(d): {m: (v if m.startswith("_") else tuple(v)) for m, v in r.items()}
                               for d, r in saved["rows"].items()}
                log(f"  {name}: rows reused from {cached}")
                continue
        table[name] = {}
        idx = list(range(0, clean.shape[0], SLICE_STRIDE.get(name, 1)))
        for dose, low in low_by_dose.items():
            t0 = time.perf_counter()
            out = low[idx] if name == "input" else denoise(low[idx], model=name, dose=dose, device="cpu")
            per_slice = [image_metrics(out[i], clean[k]) for i, k in enumerate(idx)]
            table[name][dose] = {m: (float(np.mean([p[m] for p in per_slice])),
                                     float(np.std([p[m] for p in per_slice]))) for m in _METRICS}
            table[name][dose]["_psnr"] = [p["psnr"] for p in per_slice]
            table[name][dose]["_idx"] = idx
            log(f"  {name} {dose * 100:g}%: PSNR {table[name][dose]['psnr'][0]:.2f} "
                f"SSIM {table[name][dose]['ssim'][0]:.4f} ({time.perf_counter() - t0:.0f} s)")
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            cached.write_text(json.dumps({"key": key, "rows": {str(d): r for d, r in table[name].items()}}))
    return table


def _fmt(v, digits):
    return f"{v[0]:.{digits}f} ± {v[1]:.{digits}f}"


def _markdown(title, table, cards, speeds, note, seen: frozenset = frozenset()):
    names = list(table)
    lines = [f"### {title}", "", note, ""]
    for dose in DOSE_LEVELS:
        cap = 10 * np.log10(1 / dose)
        lines += [f"**{dose * 100:g} % dose**" + (f" (Wiener cap on the gain: {cap:.1f} dB)" if "chest" in title else ""),
                  "",
                  "| model | kind | PSNR (dB) | gain (dB) | SSIM | PSNR abd. (dB) | SSIM abd. | RMSE body (HU) | RMSE (HU) | params | slices/s |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | ---: | ---: |"]
        base = table["input"][dose]
        n_all = len(base["_idx"])
        for name in names:
            r = table[name][dose]
            ref = [base["_psnr"][base["_idx"].index(k)] for k in r["_idx"]]
            gain = float(np.mean(np.array(r["_psnr"]) - np.array(ref)))
            label = name if len(r["_idx"]) == n_all else f"{name} ({len(r['_idx'])} of {n_all} slices)"
            if name in seen:
                label += " (trained on this patient)"
            card = cards.get(name, {})
            kind = "low-dose input" if name == "input" else card.get("kind", "")
            params = f"{card['parameters']:,}" if card.get("parameters") else ""
            speed = f"{speeds[name]:.2f}" if name in speeds else ""
            lines.append(
                f"| {label} | {kind} | {_fmt(r['psnr'], 2)} | {gain:+.2f} | {_fmt(r['ssim'], 4)} | "
                f"{_fmt(r['psnr_abdomen'], 2)} | {_fmt(r['ssim_abdomen'], 4)} | {_fmt(r['rmse_body_hu'], 1)} | "
                f"{_fmt(r['rmse_hu'], 1)} | {params} | {speed} |")
        lines.append("")
    return lines


def _cards_section(names, cards) -> list[str]:
    lines = ["## Model cards", "",
             "From `napari_jointrecon/models/weights/NAME.json` (written by `jointrecon train`). Validation: "
             "chest slices 100-114 for the chest recipe; the validation patients (`siemens-B31f-chest`, "
             "`ge-revolution-LUNG-abdomen`, centre 320 x 320 crops) for the patient split.", "",
             "| model | parameters | GFLOPs / 512² slice | recipe | data | steps | wall time (min) | best val. PSNR (dB) |",
             "| --- | ---: | ---: | --- | --- | ---: | ---: | ---: |"]
    curves = []
    for name in names:
        card = read_card(name)
        if card is None:
            continue
        t = card["training"]
        data = "patient split" if t.get("split") == "patient" else "chest recipe"
        lines.append(f"| {name} | {card['parameters']:,} | {card['flops_per_512_slice'] / 1e9:.1f} | "
                     f"{t['recipe']} | {data} | {t.get('total_steps', t['steps'])} | "
                     f"{t.get('total_wall_time_s', t['wall_time_s']) / 60:.1f} | "
                     f"{t['best_validation_psnr_mean_db']:.2f} |")
        if t.get("validation_curve"):
            curves.append((name, t))
    lines.append("")
    for name, t in curves:
        curve = t["validation_curve"]
        doses = [k for k in curve[0] if k != "step"]
        every = max(1, len(curve) // 12)
        shown = curve[::every] + ([curve[-1]] if (len(curve) - 1) % every else [])
        lines += [f"Validation curve of `{name}` (PSNR in dB on the validation patients; kept: step "
                  f"{t['best_step']}):", "",
                  "| step | " + " | ".join(f"{d} %" for d in doses) + " | mean |",
                  "| ---: | " + " | ".join("---:" for _ in doses) + " | ---: |"]
        for h in shown:
            lines.append(f"| {h['step']} | " + " | ".join(f"{h[d]:.2f}" for d in doses)
                         + f" | {np.mean([h[d] for d in doses]):.2f} |")
        lines.append("")
    return lines


def _runtimes(names: list[str], cards: dict) -> dict[str, list[str]]:
    """The learned models by the runtime ``nj.denoise`` gives them on this CPU."""
    from ..inference import trained_bf16

    labels = {"bf16": "bf16 autocast (trained so, native bf16 here)", "onnxruntime": "ONNX Runtime (fp32)",
              "torch": "torch (fp32)"}
    out: dict[str, list[str]] = {}
    for n in names:
        if cards.get(n, {}).get("kind") == "learned":
            out.setdefault(labels[select_runtime("auto", "cpu", trained_bf16=trained_bf16(n))], []).append(n)
    return out


def heldout_points_section(*, cache_dir, when: str, log=print, command: str = "jointrecon evaluate",
                           dated: bool = False) -> list[str]:
    """The point models against the extrusion baseline on held-out patients at 25 %; the results go
    into the point models' card (``results.heldout``), where the CLI and the tests read them."""
    from ..joint import JOINT_WEIGHTS_DIR, POINT_MODELS, point_model_card
    from .points_eval import heldout_point_markdown, heldout_point_rows

    card = point_model_card()
    models = [m for m in POINT_MODELS if all(f"{k}_seed0.pt" in card["files"] for k in POINT_MODELS[m])]
    results = heldout_point_rows(models, dose=0.25, cache_dir=cache_dir, log=log)
    card.setdefault("results", {})["heldout"] = {
        "measured_by": f"{command}, {when}", "dose": "25%",
        "format": "per group (held-out patient's series, or the chest point test slabs): per cloud, the mean "
                  "surface distance (mm) and the normalised Chamfer, one value per slab",
        "groups": {g: {"patient": r["patient"], "slabs": [int(k) for k in r["slabs"]],
                       "rows": {c: {m: [round(v, 5) for v in vals] for m, vals in row.items()}
                                for c, row in r["rows"].items()}} for g, r in results.items()}}
    (JOINT_WEIGHTS_DIR / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    return heldout_point_markdown(results, dose=0.25, made_by=f"`{command}`" + (f" on {when}" if dated else ""))


def evaluate_points(out_md: str | Path = "docs/RESULTS.md", *, cache_dir: str | Path = "runs/cache",
                    log=print) -> Path:
    """Measure the point models on the held-out patients again and replace only that section of
    ``out_md`` (and the point models' card's results): for a new point network or sampler, without
    evaluating every denoiser again. The rest of the file stays as the last full evaluation wrote it."""
    from .points_eval import POINTS_SECTION

    path = Path(out_md)

    def section_bounds(text: str) -> tuple[int, int]:
        start = text.find("\n" + POINTS_SECTION + "\n")
        if start < 0:
            raise ValueError(f"{out_md} has no '{POINTS_SECTION}' section: run a full `jointrecon evaluate` first")
        end = text.find("\n## ", start + 1)
        return start + 1, (len(text) if end < 0 else end + 1)

    section_bounds(path.read_text() if path.exists() else "")  # before minutes of measuring
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = heldout_points_section(cache_dir=cache_dir, when=when, log=log,
                                   command="jointrecon evaluate --points-only", dated=True)
    section = "\n".join(lines).rstrip("\n") + "\n"
    text = path.read_text()  # as it is now
    start, end = section_bounds(text)
    new = text[:start] + section + ("\n" + text[end:] if end < len(text) else "")
    tmp = path.with_suffix(".tmp")
    tmp.write_text(new)
    tmp.replace(path)
    log(f"wrote the point-cloud section of {out_md}")
    return path


def evaluate(out_md: str | Path = "docs/RESULTS.md", *, cache_dir: str | Path = "runs/cache",
             models: list[str] | None = None, log=print, update_cards: bool = True,
             row_cache: str | Path | None = "runs/eval", joint: bool = True,
             readme: str | Path | None = "README.md") -> dict:
    """Evaluate every available model (or ``models``) and write the results file.

    Rows are kept in ``row_cache`` keyed by the model's weights checksum (or classical settings),
    so a re-run only evaluates what changed.
    """
    row_cache = Path(row_cache) if row_cache else None
    cards = {c["name"]: c for c in list_models()}
    names = models or list(cards)
    # diffusion models (shipped ones only: list_models hides a model without weights) have their
    # own held-out section with 3D context and calibration (training/diffusion_eval.py)
    from ..models.registry import get_spec

    diffusion = [n for n in names if get_spec(n).recipe == "diffusion" and n in cards]
    names = [n for n in names if n not in diffusion]
    test = build_cache(cache_dir, log=log, only=("chest_test",))["chest_test"]
    clean = test.clean
    low_by_dose = {d: np.stack([test.low(k, 0, d) for k in range(clean.shape[0])]) for d in DOSE_LEVELS}
    log(f"chest test slabs: {clean.shape}")
    chest = _rows(names, low_by_dose, clean, log, "chest", row_cache)

    from .heldout import heldout_markdown, heldout_rows

    log("held-out patients:")
    held = heldout_rows(names, cache_dir=cache_dir, row_cache=row_cache, row_key=_row_key,
                        slice_stride=SLICE_STRIDE, log=log)
    # models trained on the patient split saw every chest slice: their chest rows are marked
    seen = frozenset(n for n in names if (read_card(n) or {}).get("training", {}).get("split") == "patient")

    phantom = make_thorax_phantom(1.0, z_extent_mm=12, seed=PHANTOM_TEST_SEED)
    ph_low = {d: simulate_low_dose(phantom, d, seed=TEST_SEED).hu for d in DOSE_LEVELS}
    log(f"phantom test: {phantom.shape}")
    ph = _rows(names, ph_low, phantom.hu, log, "phantom", row_cache)

    speeds = {}
    for name in names:
        cached = row_cache / f"speed_{name}.json" if row_cache else None
        # the speed depends on the runtime nj.denoise picks on the CPU, too
        key = _row_key(name)
        if cached is not None and cached.exists() and json.loads(cached.read_text())["key"] == key:
            speeds[name] = json.loads(cached.read_text())["speed"]
        else:
            speeds[name] = measure_speed(name)
            if cached is not None:
                cached.write_text(json.dumps({"key": key, "speed": speeds[name]}))
        log(f"  speed {name}: {speeds[name]:.2f} slices/s")

    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    from ..models.registry import model_role
    from .heldout import heldout_verdict

    # the held-out verdict decides a learned model's role (zoo or design baseline) in every table;
    # judged only against every classical filter there is (an evaluation of some models keeps the
    # verdicts the cards have)
    classical = [n for n, c in cards.items() if c["kind"] == "classical"]
    if all(n in names for n in classical):
        for name in names:
            if cards[name]["kind"] == "learned":
                cards[name]["heldout_verdict"] = heldout_verdict(name, held, when)
                cards[name]["role"] = model_role(cards[name])
    else:
        log(f"  not every classical filter was evaluated ({', '.join(n for n in classical if n not in names)} "
            "missing): the cards keep their held-out verdicts")
    lines = [
        "# Results",
        "",
        f"Made by `jointrecon evaluate` on {when} ({platform.machine()}, 2 CPU threads). "
        "Metrics follow `../shared/EVALUATION.md`: PSNR/SSIM on HU clipped to [-1000, 1000] and "
        "mapped to [0, 1] (data_range 1), and on the abdomen window [-160, 240] HU (data_range 400); "
        "SSIM with Gaussian weights (sigma 1.5); RMSE in HU inside the body mask and over the whole "
        "slice. Values are mean ± std over test slices. Speed: 512 x 512 slices per second on 2 CPU "
        "threads (warm-up, median of 5), as `nj.denoise` runs them by default on this CPU, and so are "
        "the metrics: " + "; ".join(f"{rt}: {', '.join(f'`{n}`' for n in ns)}" for rt, ns in _runtimes(names, cards).items())
        + " (eager-torch and compiled figures: `docs/BENCHMARKS.md`).",
        "",
        "## Denoising",
        "",
    ]
    lines += heldout_markdown(held, cards)
    diffusion_rows, diffusion_speed = {}, {}
    if diffusion:
        from .diffusion_eval import diffusion_heldout, diffusion_markdown, seconds_per_patch

        for name in diffusion:
            log(f"diffusion model {name} on the held-out patients:")
            diffusion_rows[name] = diffusion_heldout(name, available=list(cards), cache_dir=cache_dir,
                                                     row_cache=row_cache, row_key=_row_key, log=log)
            diffusion_speed[name] = seconds_per_patch(name)
            log(f"  speed {name}: {diffusion_speed[name]['s_per_64cube_patch_2threads']:.2f} s per 64^3 patch")
            lines += diffusion_markdown(name, diffusion_rows[name], diffusion_speed[name])
    lines += _markdown(
        "Real chest CT (test split)", chest, cards, speeds,
        f"`chest-ct-dicom` slices {SPLITS['test'].start}-{SPLITS['test'].stop - 1} "
        f"({clean.shape[0]} slices of 512 x 512, never used for training or model selection of the "
        f"models trained on the chest recipe); noise inserted in the projection domain with the fixed "
        f"dose model (seed {TEST_SEED}); reference: the full-dose scan.", seen)
    lines += _markdown(
        "Noise-free thorax phantom", ph, cards, {},
        f"Phantom seed {PHANTOM_TEST_SEED} (not trained on), {phantom.shape[0]} slices of "
        f"{phantom.shape[1]} x {phantom.shape[2]} at 1 mm, Poisson noise (seed {TEST_SEED}); "
        "reference: the noise-free phantom.")
    if joint and (Path(__file__).resolve().parents[1] / "models" / "weights" / "joint" / "card.json").exists():
        from .joint_eval import evaluate_shipped

        log("joint point models:")
        _, joint_lines = evaluate_shipped(cache_dir=cache_dir, log=log)
        lines += joint_lines
        log("point models on held-out patients:")
        lines += heldout_points_section(cache_dir=cache_dir, when=when, log=log)
    lines += _cards_section(names + diffusion, cards)
    Path(out_md).parent.mkdir(parents=True, exist_ok=True)
    Path(out_md).write_text("\n".join(lines) + "\n")
    log(f"wrote {out_md}")
    if readme is not None:
        from .heldout import readme_model_table, write_readme_table

        if write_readme_table(readme, readme_model_table(held, cards, speeds, when)):
            log(f"wrote the model table of {readme}")

    if update_cards:
        from .diffusion_eval import diffusion_card_results, diffusion_status, diffusion_verdict

        for name in diffusion:
            card = read_card(name)
            card["results"] = diffusion_card_results(name, diffusion_rows[name], when)
            card["speed"] = diffusion_speed[name]
            card["heldout_verdict"] = diffusion_verdict(card)
            card["status"] = diffusion_status(card)
            card_path(name).write_text(json.dumps(card, indent=2) + "\n")
        for name in names:
            if cards[name]["kind"] != "learned":
                continue
            card = read_card(name)
            card["results"] = {
                "measured_by": f"jointrecon evaluate, {when}",
                "format": "metric: [mean, std] over test slices",
                "chest_test": {f"{d * 100:g}%": {m: [round(v, 4) for v in chest[name][d][m]] for m in _METRICS}
                               for d in DOSE_LEVELS},
                "chest_test_input": {f"{d * 100:g}%": {m: [round(v, 4) for v in chest["input"][d][m]]
                                                       for m in _METRICS} for d in DOSE_LEVELS},
                "phantom_test": {f"{d * 100:g}%": {m: [round(v, 4) for v in ph[name][d][m]] for m in _METRICS}
                                 for d in DOSE_LEVELS},
                "heldout_test": {
                    series: {label: {f"{d * 100:g}%": {m: [round(v, 4) for v in r["table"][label][d][m]]
                                                        for m in _METRICS} for d in DOSE_LEVELS}
                             for label in ("input", name, name + " (estimated)") if label in r["table"]}
                    for series, r in held.items()},
            }
            card["speed"] = {"slices_per_s_512_2threads": round(speeds[name], 3)}
            from .heldout import model_status

            if "heldout_verdict" in cards[name]:
                card["heldout_verdict"] = cards[name]["heldout_verdict"]
            card["status"] = model_status(name, card)
            card_path(name).write_text(json.dumps(card, indent=2) + "\n")
    return {"chest": chest, "phantom": ph, "speeds": speeds, "heldout": held, "diffusion": diffusion_rows}
