"""The diffusion denoiser on the held-out patients: the mean's quality, the uncertainty's calibration, speed.

The 2D models' held-out rows score eight slices spread over each test series; a 3D model needs the
slices around each of them. For every scored slice the ``context`` slices on each side are read
from the series, noise is inserted into them as the test caches insert it (projection-domain
quantum noise with the series' own texture cut-off and level, another seed), and the scored
slice itself keeps exactly the test cache's noise, so every row below sees the same input slice.
Sampling costs minutes per 512 x 512 slice on two cores, so the comparison is made on the centre
``crop`` x ``crop`` pixels of every ``slice_stride``-th scored slice, for every row alike: the input,
the zoo's default network, the classical filters (tuned on the validation patients), total
variation tuned on these very crops (an oracle: the best factor of its grid per series and dose),
and the mean of ``samples`` posterior samples.

Calibration: the share of body voxels (HU > -500 after a closing) whose error (the mean minus the
full-dose reference) lies within 1 and 2 predicted standard deviations (the samples' SD). The
reference is the full-dose scan, which is what the model was trained to sample (its noise is part
of the answer), so no correction for the reference's noise is made. For Gaussian errors and a
perfect SD, 68 % and 95 % are expected (slightly less with 8 samples: the SD is itself estimated).
"""

from __future__ import annotations

import json
import math
import statistics
import time
from pathlib import Path

import numpy as np

from ..dose import DOSE_LEVELS
from ..metrics import body_mask
from .heldout import GRIDS, _table
from .series import EVAL_SEED, PATIENT_SPLIT, SeriesCache, build_series_caches, quantum_noise

__all__ = ["DIFFUSION_EVAL", "context_stack", "calibration", "diffusion_heldout", "diffusion_markdown",
           "seconds_per_patch", "diffusion_card_results", "diffusion_verdict", "diffusion_status",
           "tune_sd_scale"]

#: The held-out comparison's settings (see the module's docstring).
DIFFUSION_EVAL = {"crop": 256, "context": 2, "slice_stride": 2, "samples": 8}
#: Rows computed beside the diffusion model on the same crops (those available).
BASELINES = ("unet", "tv", "nlm", "bm3d")
TUNED_HERE = "tv (tuned on these crops)"


def _crop(a: np.ndarray, crop: int) -> np.ndarray:
    h, w = a.shape[-2:]
    c = min(crop, h, w)
    return a[..., (h - c) // 2:(h - c) // 2 + c, (w - c) // 2:(w - c) // 2 + c]


def context_stack(cache: SeriesCache, k: int, context: int, volume_hu: np.ndarray,
                  pixel_mm: float) -> tuple[np.ndarray, np.ndarray, int]:
    """``(clean, unit_noise, centre)`` for the ``k``-th slice of a test cache with ``context``
    neighbours each side (clipped at the series' ends): full-dose slices in HU and noise at the
    series' full-dose level with its texture; the centre slice has exactly the cache's noise."""
    from ..noise import apply_texture

    z = int(cache.slices[k])
    z0, z1 = max(0, z - context), min(volume_hu.shape[0], z + context + 1)
    clean = np.ascontiguousarray(volume_hu[z0:z1], dtype=np.float32)
    centre = z - z0
    clean[centre] = cache.clean[k]
    raw = quantum_noise(clean, pixel_mm, seed=EVAL_SEED + 1, first_index=z0)
    tex = apply_texture(raw, cache.cutoff)
    scale = float(cache.noise[k].astype(np.float32).std() / max(tex[centre].std(), 1e-6))
    noise = (tex * scale).astype(np.float32)
    noise[centre] = cache.noise[k].astype(np.float32)
    return clean, noise, centre


def calibration(mean: np.ndarray, sd: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """Shares of body voxels whose error lies within 1 and 2 predicted SDs, the mean predicted SD
    and the RMSE there (HU)."""
    mask = body_mask(ref)
    err = np.abs(mean - ref)[mask]
    s = sd[mask]
    return {"within_1sd": float(np.mean(err <= s)), "within_2sd": float(np.mean(err <= 2 * s)),
            "mean_sd_hu": float(s.mean()), "rmse_hu": float(np.sqrt(np.mean(err ** 2)))}


def seconds_per_patch(model: str = "diffusion", *, runs: int = 3, threads: int = 2, size: int = 64) -> dict:
    """Seconds for one sample of a ``size``^3 patch at the default steps on the CPU (warm-up, median
    of ``runs``), and the seconds per network call."""
    import torch

    from ..inference import denoise_with_uncertainty

    torch.set_num_threads(threads)
    rng = np.random.default_rng(0)
    vol = (rng.normal(0, 30, (size, size, size)) + np.where(rng.random((1, size, size)) > 0.2, 40.0, -1000.0)
           ).astype(np.float32)
    calls = []
    denoise_with_uncertainty(vol, model=model, dose=0.25, samples=1, device="cpu", progress=calls.append)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        denoise_with_uncertainty(vol, model=model, dose=0.25, samples=1, device="cpu")
        times.append(time.perf_counter() - t0)
    per_patch = statistics.median(times)
    return {"s_per_64cube_patch_2threads": round(per_patch, 3),
            "s_per_64cube_eval_2threads": round(per_patch / max(len(calls), 1), 4), "steps": len(calls),
            "runtime": calls[-1].runtime if calls else ""}


def _baseline_runs(names_available: list[str]) -> list[str]:
    return [n for n in BASELINES if n in names_available]


def diffusion_heldout(name: str, *, available: list[str], cache_dir: str | Path = "runs/cache",
                      row_cache: Path | None = None, row_key=None, settings: dict | None = None, log=print) -> dict:
    """Rows per test series and dose on the crops (see the module's docstring); ``available``: the
    models that can run (the baselines are taken from it). Rows are cached in ``row_cache``."""
    from ..inference import denoise
    from ..models import classical
    from ..models.registry import read_card

    cfg = {**DIFFUSION_EVAL, **(settings or {})}
    caches = build_series_caches(cache_dir, splits=("test",), log=log)
    # what makes the rows: the sampler and the SD's scale (not nj.denoise's sample count, nor the notes)
    sampling = json.dumps({k: v for k, v in ((read_card(name) or {}).get("sampling") or {}).items()
                           if k not in ("denoise_samples", "why")}, sort_keys=True)
    baselines = _baseline_runs(available)
    rows: dict[str, dict] = {}
    for series, c in caches.items():
        idx = list(range(0, c.clean.shape[0], cfg["slice_stride"]))
        tag = f"diffusion_{series.replace('/', '__')}"
        keys = {label: f"{row_key(label) if row_key else label} {json.dumps(cfg, sort_keys=True)}"
                for label in ["input", *baselines, TUNED_HERE, name]}
        keys[name] += f" {sampling}"
        cached = row_cache / f"{tag}.json" if row_cache else None
        saved = json.loads(cached.read_text()) if cached is not None and cached.exists() else {}
        if saved and all(saved.get("keys", {}).get(label) == key for label, key in keys.items()):
            rows[series] = saved["rows"]
            for r in rows[series]["table"].values():
                for d in list(r):
                    r[float(d)] = r.pop(d)
            for d in list(rows[series]["calibration"]):
                rows[series]["calibration"][float(d)] = rows[series]["calibration"].pop(d)
            log(f"  {series}: diffusion rows reused from {cached}")
            continue
        contexts = _contexts(series, c, idx, cfg["context"])
        clean = np.stack([_crop(c.clean[k], cfg["crop"]) for k in idx])
        table: dict[str, dict] = {label: {} for label in keys}
        calib: dict[float, dict] = {}
        positions = list(range(len(idx)))
        for dose in DOSE_LEVELS:
            lows = _low_stacks(contexts, dose, cfg["crop"])
            centre_low = np.stack([lows[k][contexts[k][2]] for k in idx])
            table["input"][dose] = _table(centre_low, clean, positions)
            for b in baselines:
                t0 = time.perf_counter()
                out = denoise(centre_low, model=b, dose=dose, device="cpu")
                table[b][dose] = _table(out, clean, positions)
                log(f"  {series} {b} {dose * 100:g}%: PSNR {table[b][dose]['psnr'][0]:.2f} "
                    f"({time.perf_counter() - t0:.0f} s)")
            grid = {f: [classical.denoise_tv(s, dose, factor=f) for s in centre_low] for f in GRIDS["tv"]}
            best = max(grid, key=lambda f: float(np.mean([_psnr(o, r) for o, r in zip(grid[f], clean)])))
            table[TUNED_HERE][dose] = _table(np.stack(grid[best]), clean, positions)
            table[TUNED_HERE][dose]["factor"] = best
            t0 = time.perf_counter()
            means, sds = _posterior_centres(name, lows, contexts, dose, cfg["samples"])
            seconds = time.perf_counter() - t0
            table[name][dose] = _table(np.stack(means), clean, positions)
            per = [calibration(m, s, r) for m, s, r in zip(means, sds, clean)]
            calib[dose] = {key: float(np.mean([p[key] for p in per])) for key in per[0]}
            calib[dose]["seconds_per_slice"] = seconds / len(idx)
            log(f"  {series} {name} {dose * 100:g}%: PSNR {table[name][dose]['psnr'][0]:.2f} "
                f"within 1 SD {calib[dose]['within_1sd']:.2f} ({seconds:.0f} s)")
        rows[series] = {"table": table, "calibration": calib, "slices": [int(c.slices[k]) for k in idx],
                        "patient": PATIENT_SPLIT[series][0], "sd_full": c.sd_full, "cutoff": c.cutoff}
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            cached.write_text(json.dumps({"keys": keys, "rows": rows[series]}))
    return rows


def _contexts(series: str, cache: SeriesCache, idx: list[int], context: int) -> dict:
    """:func:`context_stack` of each scored slice ``idx`` of a series' cache."""
    from ..io import load_ct
    from .data import shared_data_dir

    volume = load_ct(shared_data_dir() / series)
    pixel = float(math.sqrt(volume.spacing[1] * volume.spacing[2]))
    return {k: context_stack(cache, k, context, volume.hu, pixel) for k in idx}


def _low_stacks(contexts: dict, dose: float, crop: int) -> dict:
    """The crop stacks at ``dose``: the full dose plus the unit noise scaled by the 1/sqrt(dose) law."""
    factor = math.sqrt((1.0 - dose) / dose)
    return {k: _crop(cl + factor * nz, crop) for k, (cl, nz, _) in contexts.items()}


def _posterior_centres(name: str, lows: dict, contexts: dict, dose: float, samples: int
                       ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The mean and predicted SD (seed 0) of each crop stack's centre slice."""
    from ..inference import denoise_with_uncertainty

    means, sds = [], []
    for k, low in lows.items():
        res = denoise_with_uncertainty(low, model=name, dose=dose, samples=samples, seed=0, device="cpu")
        means.append(res.mean[contexts[k][2]])
        sds.append(res.sd[contexts[k][2]])
    return means, sds


#: The SD's scale is fitted on every ``VALIDATION_STRIDE``-th slice of the validation caches.
VALIDATION_STRIDE = 4
#: The share of errors a perfect Gaussian SD holds within one SD.
ONE_SD = 0.6827


def tune_sd_scale(name: str = "diffusion", *, cache_dir: str | Path = "runs/cache", settings: dict | None = None,
                  write: bool = True, log=print) -> dict:
    """Fit the factor that turns the samples' SD into the predicted uncertainty, on the validation
    patients (never the test patients): the 68.3 % quantile, over the body voxels of the
    validation crops at every dose, of the mean's error divided by the samples' SD, so that 68.3 %
    of those errors lie within one predicted SD. The crops are made as for the held-out rows (see
    the module's docstring), from every :data:`VALIDATION_STRIDE`-th slice. With ``write`` the
    card's ``sampling.sd_scale`` and ``uncertainty_fit`` are set. Returns the fit."""
    from ..models.registry import card_path, get_spec, read_card

    if get_spec(name).recipe != "diffusion":
        raise ValueError(f"{name} gives one answer, not posterior samples: only a diffusion model has an SD to fit")
    cfg = {**DIFFUSION_EVAL, **(settings or {})}
    card = read_card(name)
    if card is None:
        raise FileNotFoundError(f"model {name!r} has no shipped card to fit the uncertainty of")
    current = float((card.get("sampling") or {}).get("sd_scale", 1.0))
    caches = build_series_caches(cache_dir, splits=("val",), log=log)
    ratios, per_dose = [], {}
    t0 = time.perf_counter()
    for series, c in caches.items():
        idx = list(range(0, c.clean.shape[0], VALIDATION_STRIDE))
        contexts = _contexts(series, c, idx, cfg["context"])
        for dose in DOSE_LEVELS:
            lows = _low_stacks(contexts, dose, cfg["crop"])
            means, sds = _posterior_centres(name, lows, contexts, dose, cfg["samples"])
            for k, m, sd in zip(idx, means, sds, strict=True):
                ref = _crop(c.clean[k], cfg["crop"]).astype(np.float32)
                mask = body_mask(ref)
                z = np.abs(m - ref)[mask] / np.maximum(sd[mask] / current, 1e-3)
                ratios.append(z)
                per_dose.setdefault(dose, []).append(z)
            log(f"  {series} {dose * 100:g}%: {len(idx)} crops ({time.perf_counter() - t0:.0f} s)")
    z = np.concatenate(ratios)
    scale = float(np.quantile(z, ONE_SD))
    fit = {"sd_scale": round(scale, 4), "fitted_on": sorted(caches), "slices_per_series": len(idx),
           "voxels": int(z.size), "settings": cfg,
           "within_1sd_unscaled": round(float(np.mean(z <= 1.0)), 4),
           "within_1sd_by_dose": {f"{d * 100:g}%": round(float(np.mean(np.concatenate(v) <= scale)), 4)
                                  for d, v in per_dose.items()},
           "within_2sd": round(float(np.mean(z <= 2 * scale)), 4)}
    log(f"SD scale {scale:.3f}: {fit['within_1sd_unscaled'] * 100:.1f} % of the validation errors lay within one "
        f"SD of the samples, {ONE_SD * 100:.1f} % within {scale:.2f} SD")
    if write:
        card.setdefault("sampling", {})["sd_scale"] = fit["sd_scale"]
        card["uncertainty_fit"] = fit
        path = card_path(name)
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(card, indent=2) + "\n")
        tmp.replace(path)
    return fit


def _psnr(out: np.ndarray, ref: np.ndarray) -> float:
    from ..metrics import psnr

    return psnr(out, ref)


def _gain(table: dict, label: str, dose: float, key: str = "_psnr") -> float:
    return float(np.mean(np.array(table[label][dose][key]) - np.array(table["input"][dose][key])))


def diffusion_markdown(name: str, rows: dict, speed: dict | None, settings: dict | None = None) -> list[str]:
    """The diffusion section of docs/RESULTS.md."""
    cfg = {**DIFFUSION_EVAL, **(settings or {})}
    fmt = lambda v, n: f"{v[0]:.{n}f} ± {v[1]:.{n}f}"  # noqa: E731
    lines = ["### Diffusion denoiser with uncertainty (held-out patients, 3D context)", "",
             f"`{name}`: the mean of {cfg['samples']} posterior samples (seed 0) and their per-voxel SD. Each scored "
             f"slice is denoised with {cfg['context']} neighbouring slices on each side (noise inserted into them "
             "as into the test caches; the scored slice has exactly the test cache's noise). For time, every row "
             f"here is scored on the centre {cfg['crop']} x {cfg['crop']} pixels of one test slice in "
             f"{cfg['slice_stride']} (`napari_jointrecon/training/diffusion_eval.py`); `{TUNED_HERE}` is an oracle: total "
             "variation with the best factor of its grid for these crops, per series and dose.", ""]
    labels = list(next(iter(rows.values()))["table"])
    lines += ["**Mean PSNR gain over the input (dB) on the crops, averaged over the test patients**", "",
              "| row | " + " | ".join(f"{d * 100:g} %" for d in DOSE_LEVELS) + " |",
              "| --- | " + " | ".join("---:" for _ in DOSE_LEVELS) + " |"]
    for label in labels:
        if label == "input":
            continue
        lines.append(f"| {label} | " + " | ".join(
            f"{np.mean([_gain(r['table'], label, d) for r in rows.values()]):+.2f}" for d in DOSE_LEVELS) + " |")
    lines += ["", "**Calibration of the predicted SD** (body voxels of the crops; the share whose error "
              "lies within 1 and 2 SDs; 68 % / 95 % for a perfect Gaussian SD)", "",
              "| series | dose | within 1 SD | within 2 SD | mean SD (HU) | RMSE of the mean (HU) | s / slice crop |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for series, r in rows.items():
        for d in DOSE_LEVELS:
            c = r["calibration"][d]
            lines.append(f"| `{series}` | {d * 100:g} % | {c['within_1sd'] * 100:.1f} % | {c['within_2sd'] * 100:.1f} % | "
                         f"{c['mean_sd_hu']:.1f} | {c['rmse_hu']:.1f} | {c['seconds_per_slice']:.0f} |")
    lines.append("")
    for series, r in rows.items():
        table = r["table"]
        lines += [f"#### `{series}` on crops (patient {r['patient']}; slices {r['slices']})", ""]
        for d in DOSE_LEVELS:
            lines += [f"**{d * 100:g} % dose**", "",
                      "| row | PSNR (dB) | gain (dB) | SSIM | PSNR abd. (dB) | SSIM abd. | RMSE body (HU) |",
                      "| --- | --- | --- | --- | --- | --- | --- |"]
            for label, by_dose in table.items():
                row = by_dose[d]
                extra = f" (factor {row['factor']:g})" if "factor" in row else ""
                lines.append(f"| {label}{extra} | {fmt(row['psnr'], 2)} | {_gain(table, label, d):+.2f} | "
                             f"{fmt(row['ssim'], 4)} | {fmt(row['psnr_abdomen'], 2)} | {fmt(row['ssim_abdomen'], 4)} | "
                             f"{fmt(row['rmse_body_hu'], 1)} |")
            lines.append("")
    if speed:
        lines += [f"Speed (`benchmarks/bench_diffusion.py` has the comparison with the default U-Net): one sample of a "
                  f"64^3 patch at the default steps takes {speed['s_per_64cube_patch_2threads']:.1f} s on 2 CPU "
                  f"threads ({speed['steps']} network calls of {speed['s_per_64cube_eval_2threads']:.2f} s, "
                  f"{speed.get('runtime') or 'torch'}).", ""]
    return lines


def diffusion_card_results(name: str, rows: dict, when: str) -> dict:
    """The card's ``results`` for the diffusion model."""
    return {
        "measured_by": f"jointrecon evaluate, {when}",
        "format": "metric: [mean, std] over the test crops; calibration: shares of body voxels",
        "settings": DIFFUSION_EVAL,
        "heldout_crops": {
            series: {label: {f"{d * 100:g}%": {m: [round(v, 4) for v in r["table"][label][d][m]]
                                               for m in ("psnr", "ssim", "psnr_abdomen", "ssim_abdomen", "rmse_body_hu")}
                             for d in DOSE_LEVELS} for label in r["table"]}
            for series, r in rows.items()},
        "calibration": {series: {f"{d * 100:g}%": {k: round(v, 4) for k, v in r["calibration"][d].items()}
                                 for d in DOSE_LEVELS} for series, r in rows.items()},
    }


def diffusion_verdict(card: dict) -> dict:
    """The card's ``heldout_verdict`` (see :func:`~napari_jointrecon.training.heldout.heldout_verdict`),
    from its ``results``: the mean's gain on the held-out crops against the best classical filter
    tuned on validation, and against the input (on average and for each patient)."""
    from .heldout import mean_gains, verdict_of

    crops = card["results"]["heldout_crops"]
    doses = [f"{d * 100:g}%" for d in DOSE_LEVELS]
    labels = [label for label in next(iter(crops.values())) if label != "input"
              and all(label in r for r in crops.values())]
    each = [{label: {d: r[label][d]["psnr"][0] - r["input"][d]["psnr"][0] for d in doses} for label in labels}
            for r in crops.values()]
    return verdict_of(card["name"], mean_gains(each), card["results"].get("measured_by", ""), each)


def diffusion_status(card: dict) -> str:
    """The card's one-line verdict, from its ``results`` (:func:`diffusion_card_results`) and
    ``heldout_verdict`` (:func:`diffusion_verdict`): the mean's gain on the held-out crops against
    the input and the classical filters tuned on validation, and the calibration of its SD."""
    from ..models.registry import model_role

    calib = card["results"]["calibration"]
    v = card.get("heldout_verdict") or diffusion_verdict(card)
    doses = [f"{d * 100:g}%" for d in DOSE_LEVELS]
    shares = [x["within_1sd"] * 100 for r in calib.values() for x in r.values()]
    pooled = [float(np.mean([r[d]["within_1sd"] for r in calib.values()])) * 100 for d in doses]
    t = card.get("training", {})
    role = "In the zoo" if model_role(card) == "zoo" else "Design baseline, not in the zoo"
    return (f"{role}: trained on every real series split by patient ({t.get('steps')} steps, "
            f"{t.get('wall_time_s', 0) / 60:.0f} min); on the held-out crops its mean beats the best classical "
            f"filter at {v['beats_best_classical']} of {len(doses)} doses and its input at "
            f"{len(doses) - v['worse_than_input']}; {min(pooled):.0f}-{max(pooled):.0f} % "
            f"of the errors lie within one predicted SD (averaged over the patients; {min(shares):.0f}-"
            f"{max(shares):.0f} % per patient and dose).")
