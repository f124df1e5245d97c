"""Held-out patients: the classical filters' tuning on the validation patients, and the test tables.

The patients of ``series.PATIENT_SPLIT``: validation series choose the classical filters' strength
(:func:`tune_classical`, a grid search per dose, written to ``models/classical_factors.json``) and
the factor of the noise estimate (:func:`tune_estimate_factor`); the test series (one Siemens, one
GE patient) are scored by :func:`heldout_rows` for ``jointrecon evaluate``. Noise is inserted as in
training (each series' own level and texture, ``training/series.py``) with the evaluation seed.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from ..dose import DOSE_LEVELS
from ..metrics import image_metrics, psnr
from ..models import classical
from .series import EVAL_SEED, PATIENT_SPLIT, SeriesCache, build_series_caches

__all__ = ["GRIDS", "tune_classical", "tune_estimate_factor", "choose_estimate_factor", "heldout_rows", "heldout_markdown",
           "ESTIMATED"]

#: Factor grids of the classical filters' search (parameter = factor * the image's noise).
GRIDS = {
    "tv": (0.1, 0.2, 0.3, 0.4, 0.6, 0.8, 1.0, 1.3, 1.7, 2.2, 3.0, 4.0, 5.5),
    "nlm": (0.3, 0.5, 0.7, 0.9, 1.1, 1.3, 1.6, 2.0, 2.5, 3.2),
    "bm3d": (0.5, 0.75, 1.0, 1.4, 2.0, 2.6, 3.4, 4.5, 6.0),
}
#: BM3D (about 4-6 s per 256 x 256 crop on 2 cores) is tuned on every fourth validation slice.
TUNE_STRIDE = {"bm3d": 4}
#: Rows of a noise-conditioned model run with the noise estimate instead of the dose.
ESTIMATED = " (estimated)"
_METRICS = ("psnr", "ssim", "psnr_abdomen", "ssim_abdomen", "rmse_body_hu", "rmse_hu")


def _crop(a: np.ndarray, crop: int | None) -> np.ndarray:
    if crop is None:
        return a
    h, w = a.shape[-2:]
    return a[..., (h - crop) // 2:(h + crop) // 2, (w - crop) // 2:(w + crop) // 2]


def _val(cache_dir, log) -> dict[str, SeriesCache]:
    return build_series_caches(cache_dir, splits=("val",), log=log)


def tune_classical(cache_dir: str | Path = "runs/cache", *, methods=("tv", "nlm", "bm3d"), crop: int = 256,
                   log=print, write: bool = True) -> dict:
    """Grid-search each classical filter's factor per dose on the validation patients.

    Score: mean PSNR ([-1000, 1000] HU -> [0, 1]) against the full-dose slices, over every
    validation slice (centre crops of ``crop`` pixels). Writes ``models/classical_factors.json``
    with the factors, the grid's scores and the data used.
    """
    caches = _val(cache_dir, log)
    slices = [(c, k) for c in caches.values() for k in range(c.clean.shape[0])]
    factors: dict[str, dict[str, float]] = {}
    scores: dict[str, dict[str, dict[str, float]]] = {}
    for method in methods:
        run = classical.RUNNERS[method]
        factors[method], scores[method] = {}, {}
        used = slices[::TUNE_STRIDE.get(method, 1)]
        for dose in DOSE_LEVELS:
            t0 = time.perf_counter()
            pairs = [(_crop(c.low(k, dose)[0], crop), _crop(c.clean[k], crop)) for c, k in used]
            grid = {}
            for f in GRIDS[method]:
                grid[f] = float(np.mean([psnr(run(low, dose, factor=f), ref) for low, ref in pairs]))
            best = max(grid, key=grid.get)
            factors[method][f"{dose:g}"] = best
            scores[method][f"{dose:g}"] = {f"{f:g}": round(v, 3) for f, v in grid.items()}
            log(f"  {method} {dose * 100:g}%: best factor {best:g} ({grid[best]:.2f} dB; input "
                f"{np.mean([psnr(lo, ref) for lo, ref in pairs]):.2f} dB) in {time.perf_counter() - t0:.0f} s")
    full = [classical.estimate_noise(c.clean[k]) for c, k in slices]
    result = {
        "made_by": f"jointrecon tune-classical, {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC}",
        "data": {"validation series": sorted(caches), "slices per series": len(slices) // max(len(caches), 1),
                 "slice stride per method": TUNE_STRIDE, "crop": crop, "noise seed": EVAL_SEED,
                 "noise": "each series' own level and texture (training/series.py)"},
        "score": "mean PSNR, [-1000, 1000] HU -> [0, 1], against the full-dose slice",
        "factors": factors,
        "full_dose_noise_hu": round(float(np.median(full)), 2),
        "grid_psnr_db": scores,
    }
    if write:
        # methods tuned apart (e.g. in parallel runs) add to the file instead of replacing it
        if classical.TUNED_FILE.exists():
            old = json.loads(classical.TUNED_FILE.read_text())
            for key in ("factors", "grid_psnr_db"):
                result[key] = {**old.get(key, {}), **result[key]}
        classical.TUNED_FILE.write_text(json.dumps(result, indent=2) + "\n")
        log(f"wrote {classical.TUNED_FILE}")
    return result


def tune_estimate_factor(model: str, cache_dir: str | Path = "runs/cache", *, crop: int = 320,
                         grid=(0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.2, 1.3), log=print) -> tuple[float, dict]:
    """The factor ``k`` of a noise-conditioned model's estimate: remove ``k x`` the measured noise.

    "Estimate from the image" is for a scan whose dose nobody knows. Two kinds of truth score the
    grid, and :func:`choose_estimate_factor` takes the best mean of the two: thorax phantoms (seeds
    1 and 2, which the patient-split models never saw) with Poisson noise at the four doses, scored
    against the noise-free phantom (where all the noise should go), and the validation patients at
    the four doses, scored against their full dose (real anatomy and kernels, whose reference keeps
    its native noise). Returns ``(k, scores)``.
    """
    from ..dose import simulate_low_dose
    from ..inference import _run_torch_batch
    from ..models.registry import load_model
    from ..noise import noise_sd
    from ..phantom import make_thorax_phantom

    net = load_model(model)
    phantoms = [make_thorax_phantom(1.0, z_extent_mm=6, seed=s) for s in (1, 2)]
    cases = {"phantom": [(simulate_low_dose(p, d, seed=EVAL_SEED, method="poisson").hu, p.hu)
                         for p in phantoms for d in DOSE_LEVELS]}
    caches = _val(cache_dir, log)
    cases["validation patients"] = [(np.stack([c.low(k, d)[0] for k in range(c.clean.shape[0])]), c.clean)
                                    for c in caches.values() for d in DOSE_LEVELS]
    scores: dict[str, dict[str, float]] = {name: {} for name in cases}
    for k_factor in grid:
        for name, pairs in cases.items():
            vals = []
            for low, ref in pairs:
                level = k_factor * noise_sd(low)
                out = _run_torch_batch(net, _crop(low, crop), level / 1000.0, "cpu")
                vals.append(np.mean([psnr(o, r) for o, r in zip(out, _crop(ref, crop))]))
            scores[name][f"{k_factor:g}"] = round(float(np.mean(vals)), 3)
        log(f"  estimate factor {k_factor:g}: mean PSNR " + ", ".join(f"{n} {v[f'{k_factor:g}']:.2f} dB"
                                                                  for n, v in scores.items()))
    return choose_estimate_factor(scores), scores


def choose_estimate_factor(scores: dict[str, dict[str, float]]) -> float:
    """The grid value with the best mean PSNR over the kinds of truth in ``scores``."""
    keys = next(iter(scores.values())).keys()
    return float(max(keys, key=lambda k: float(np.mean([by_k[k] for by_k in scores.values()]))))


def _table(out: np.ndarray, clean: np.ndarray, idx) -> dict:
    per_slice = [image_metrics(out[i], clean[k]) for i, k in enumerate(idx)]
    row = {m: (float(np.mean([p[m] for p in per_slice])), float(np.std([p[m] for p in per_slice])))
           for m in _METRICS}
    row["_psnr"] = [p["psnr"] for p in per_slice]
    row["_psnr_abdomen"] = [p["psnr_abdomen"] for p in per_slice]
    row["_idx"] = list(idx)
    return row


def heldout_rows(names: list[str], *, cache_dir: str | Path = "runs/cache", row_cache: Path | None = None,
                 row_key=None, slice_stride: dict | None = None, log=print) -> dict:
    """Per test series and dose: the metrics of the input and of each model (whole 512 x 512 slices).

    Noise-conditioned models get a second row, ``NAME (estimated)``, run with the noise estimate
    instead of the dose. Rows are cached in ``row_cache`` under ``row_key(name)``.
    """
    from ..inference import denoise
    from ..models.registry import read_card

    caches = build_series_caches(cache_dir, splits=("test",), log=log)
    rows: dict[str, dict] = {}
    for series, c in caches.items():
        clean = c.clean
        lows = {d: np.stack([c.low(k, d)[0] for k in range(clean.shape[0])]) for d in DOSE_LEVELS}
        table: dict[str, dict] = {}
        runs = [("input", "input", None)]
        for name in names:
            card = read_card(name) or {}
            runs.append((name, name, "dose"))
            if card.get("conditioning") == "noise":
                runs.append((name + ESTIMATED, name, "estimate"))
        for label, name, how in runs:
            tag = series.replace("/", "__")
            cached = row_cache / f"heldout_{tag}_{label.replace(' ', '_')}.json" if row_cache else None
            key = row_key(name) if (row_key and name != "input") else "input"
            if cached is not None and cached.exists():
                saved = json.loads(cached.read_text())
                if saved["key"] == key:
                    table[label] = {float(d): r for d, r in saved["rows"].items()}
                    continue
            table[label] = {}
            idx = list(range(0, clean.shape[0], (slice_stride or {}).get(name, 1)))
            for dose in DOSE_LEVELS:
                t0 = time.perf_counter()
                low = lows[dose][idx]
                out = low if how is None else denoise(low, model=name, dose=dose if how == "dose" else "estimate",
                                                      device="cpu")
                table[label][dose] = _table(out, clean, idx)
                log(f"  {series} {label} {dose * 100:g}%: PSNR {table[label][dose]['psnr'][0]:.2f} "
                    f"({time.perf_counter() - t0:.0f} s)")
            if cached is not None:
                cached.parent.mkdir(parents=True, exist_ok=True)
                cached.write_text(json.dumps({"key": key, "rows": {str(d): r for d, r in table[label].items()}}))
        rows[series] = {"table": table, "sd_full": c.sd_full, "cutoff": c.cutoff, "slices": c.slices,
                        "patient": PATIENT_SPLIT[series][0]}
    return rows


def _gain(table, name, dose, key="_psnr") -> float:
    base, r = table["input"][dose], table[name][dose]
    ref = [base[key][base["_idx"].index(k)] for k in r["_idx"]]
    return float(np.mean(np.array(r[key]) - np.array(ref)))


def patient_gains(rows: dict) -> dict[str, dict[str, dict[float, float]]]:
    """Mean PSNR gain over the input per test patient (series), row and dose."""
    return {series: {name: {d: _gain(r["table"], name, d) for d in DOSE_LEVELS} for name in r["table"]
                     if name != "input"} for series, r in rows.items()}


def mean_gains(each: list[dict[str, dict]]) -> dict[str, dict]:
    """``{row: {dose: gain}}`` averaged over the patients of ``each`` (one such dict per patient)."""
    return {name: {d: float(np.mean([g[name][d] for g in each])) for d in each[0][name]} for name in each[0]}


def heldout_summary(rows: dict) -> dict[str, dict[float, float]]:
    """Mean PSNR gain over the input per row and dose, averaged over the test patients."""
    return mean_gains(list(patient_gains(rows).values()))


def heldout_markdown(rows: dict, cards: dict) -> list[str]:
    """The held-out section of docs/RESULTS.md."""
    fmt = lambda v, n: f"{v[0]:.{n}f} ± {v[1]:.{n}f}"  # noqa: E731
    lines = ["### Held-out patients (test split by patient)", "",
             "Whole series kept out of training, model selection and the classical filters' tuning "
             "(`napari_jointrecon/training/series.py`, `PATIENT_SPLIT`). Training: "
             + ", ".join(f"`{s}`" for s, (_, sp) in PATIENT_SPLIT.items() if sp == "train")
             + ". Validation: " + ", ".join(f"`{s}`" for s, (_, sp) in PATIENT_SPLIT.items() if sp == "val")
             + ". Test (below): " + ", ".join(f"`{s}`" for s, (_, sp) in PATIENT_SPLIT.items() if sp == "test")
             + ". Noise inserted with each series' own level and texture (1/sqrt(dose) law from the "
               f"series' full-dose noise; seed {EVAL_SEED}); the reference is the full-dose scan, which "
               "carries its own noise (Wiener cap on the gain: 10 log10(1/dose) dB). "
               f"`{'`, `'.join(n for n in next(iter(rows.values()))['table'] if n.endswith(ESTIMATED))}`: "
               "the same model told nothing about the dose (the noise estimate decides).", ""]
    summary = heldout_summary(rows)
    classical_names = [n for n in summary if cards.get(n, {}).get("kind") == "classical"]
    lines += ["**Mean PSNR gain over the input (dB), averaged over the test patients**", "",
              "| model | kind | " + " | ".join(f"{d * 100:g} %" for d in DOSE_LEVELS) + " |",
              "| --- | --- | " + " | ".join("---:" for _ in DOSE_LEVELS) + " |"]
    for name, gains in summary.items():
        base = name.replace(ESTIMATED, "")
        lines.append(f"| {name} | {cards.get(base, {}).get('kind', '')} | "
                     + " | ".join(f"{gains[d]:+.2f}" for d in DOSE_LEVELS) + " |")
    if classical_names:
        best = {d: max(summary[n][d] for n in classical_names) for d in DOSE_LEVELS}
        lines += ["", "Best classical filter per dose: "
                  + ", ".join(f"{d * 100:g} % {max(classical_names, key=lambda n: summary[n][d])} {best[d]:+.2f} dB"
                              for d in DOSE_LEVELS) + "."]
    lines.append("")
    for series, r in rows.items():
        table = r["table"]
        lines += [f"#### `{series}` (patient {r['patient']}; full-dose noise {r['sd_full']:.1f} HU, "
                  f"texture cut-off {r['cutoff'] if r['cutoff'] is not None else 'none (ramp)'}; "
                  f"slices {r['slices']})", ""]
        for dose in DOSE_LEVELS:
            lines += [f"**{dose * 100:g} % dose**", "",
                      "| model | PSNR (dB) | gain (dB) | SSIM | PSNR abd. (dB) | gain abd. (dB) | SSIM abd. | "
                      "RMSE body (HU) |",
                      "| --- | --- | --- | --- | --- | --- | --- | --- |"]
            n_all = len(table["input"][dose]["_idx"])
            for name, by_dose in table.items():
                row = by_dose[dose]
                label = name if len(row["_idx"]) == n_all else f"{name} ({len(row['_idx'])} of {n_all} slices)"
                lines.append(f"| {label} | {fmt(row['psnr'], 2)} | {_gain(table, name, dose):+.2f} | "
                             f"{fmt(row['ssim'], 4)} | {fmt(row['psnr_abdomen'], 2)} | "
                             f"{_gain(table, name, dose, '_psnr_abdomen'):+.2f} | {fmt(row['ssim_abdomen'], 4)} | "
                             f"{fmt(row['rmse_body_hu'], 1)} |")
            lines.append("")
    return lines


README_BEGIN = "<!-- model table: made by jointrecon evaluate -->"
README_END = "<!-- end of model table -->"


#: The classical filters a learned model's verdict is judged against (tuned on validation).
CLASSICAL = ("nlm", "tv", "bm3d")


def verdict_of(name: str, gains: dict[str, dict], measured_by: str = "",
               per_patient: list[dict[str, dict]] | None = None) -> dict:
    """A verdict from mean gains over the input (``{row: {dose: dB}}``, the same doses for every
    row): at how many doses ``name`` beats the best of the :data:`CLASSICAL` rows there, and at how
    many it is worse than its input: on average, or for any one patient of ``per_patient`` (the
    same gains patient by patient); ``doses`` 0 where ``name`` or every classical row is missing."""
    classical = [n for n in gains if n in CLASSICAL]
    doses = list(gains.get(name, {})) if classical else []
    each = [g[name] for g in per_patient or [] if name in g]
    verdict = {"doses": len(doses),
               "beats_best_classical": sum(gains[name][d] > max(gains[c][d] for c in classical) for d in doses),
               "worse_than_input": sum(gains[name][d] < 0 or any(g[d] < 0 for g in each) for d in doses)}
    if measured_by:
        verdict["measured_by"] = measured_by
    return verdict


def heldout_verdict(name: str, rows: dict, when: str = "") -> dict:
    """How a model fares on the held-out patients (the card's ``heldout_verdict``, which decides
    :func:`~napari_jointrecon.models.registry.model_role`): :func:`verdict_of` its mean gains, and
    worse than its input at a dose where it is so for any one patient."""
    each = list(patient_gains(rows).values())
    return verdict_of(name, mean_gains(each), f"jointrecon evaluate, {when}" if when else "", each)


def model_status(name: str, card: dict) -> str:
    """The card's one-line verdict, from its ``training`` and ``heldout_verdict``: whether the
    model is in the zoo, and how it fares on the held-out patients against the best classical
    filter (tuned on validation)."""
    from ..models.registry import model_role

    v = card.get("heldout_verdict") or {}
    wins, worse, doses = v.get("beats_best_classical", 0), v.get("worse_than_input", 0), v.get("doses", 0)
    verdict = (f"on the held-out patients it beats the best classical filter at {wins} of {doses} doses"
               + (f" and is worse than its input at {worse}" if worse else "")) if doses else \
        "not yet measured on the held-out patients (run jointrecon evaluate)"
    t = card.get("training", {})
    steps = t.get("total_steps", t.get("steps"))
    minutes = t.get("total_wall_time_s", t.get("wall_time_s", 0)) / 60
    if model_role(card) == "zoo":
        return f"In the zoo: trained on every real series split by patient ({steps} steps, {minutes:.0f} min); {verdict}."
    if t.get("split") == "patient":
        return (f"Design baseline, not in the zoo: trained on every real series split by patient ({steps} steps, "
                f"{minutes:.0f} min); {verdict}. Kept selectable as the design's documented baseline; do not "
                "use it for reading.")
    return (f"Design baseline, not in the zoo: trained {minutes:.0f} min on one patient with the design's chest "
            f"recipe, not yet retrained on the patient split; {verdict}. Kept selectable for the design's "
            "comparison; do not use it for reading.")


def readme_model_table(rows: dict, cards: dict, speeds: dict[str, float], when: str) -> list[str]:
    """The README's table of every model: held-out gain per dose, against the best classical filter,
    how it was trained, and its speed."""
    summary = heldout_summary(rows)
    classical_names = [n for n in summary if cards.get(n, {}).get("kind") == "classical"]
    best = {d: max(summary[n][d] for n in classical_names) for d in DOSE_LEVELS} if classical_names else {}
    lines = [README_BEGIN, "",
             f"Measured by `jointrecon evaluate` ({when}) on the held-out test patients "
             f"({', '.join(f'`{s}`' for s in rows)}): mean PSNR gain over the low-dose input in dB at "
             "10 / 25 / 50 / 70 % dose (`docs/RESULTS.md` has every metric per patient); **bold**: "
             "beats the best classical filter at that dose (tuned on the validation patients).", "",
             "| model | role | gain 10 / 25 / 50 / 70 % (dB) | beats the best classical filter | training | slices/s |",
             "| --- | --- | --- | --- | --- | ---: |"]
    from ..models.registry import ROLE_ORDER

    rows = sorted(summary.items(), key=lambda item: ROLE_ORDER.index(cards.get(item[0].replace(ESTIMATED, ""), {})
                                                                     .get("role", "design baseline")))  # stable
    for name, gains in rows:
        base = name.replace(ESTIMATED, "")
        card = cards.get(base, {})
        learned = card.get("kind") == "learned"
        cells = [f"**{gains[d]:+.2f}**" if learned and best and gains[d] > best[d] else f"{gains[d]:+.2f}"
                 for d in DOSE_LEVELS]
        wins = sum(gains[d] > best[d] for d in DOSE_LEVELS) if best and learned else None
        verdict = "" if wins is None else ("at every dose" if wins == len(DOSE_LEVELS)
                                           else f"at {wins} of {len(DOSE_LEVELS)} doses")
        training = ""
        if learned:
            t = card.get("training", {})
            split = "every real series, split by patient" if t.get("split") == "patient" else "chest recipe (one patient)"
            minutes = t.get("total_wall_time_s", t.get("wall_time_s", 0)) / 60
            training = f"{split}; {t.get('total_steps', t.get('steps'))} steps, {minutes:.0f} min"
        speed = f"{speeds[base]:.1f}" if base in speeds and name == base else ""
        label = f"`{base}`" + (" (noise estimated)" if name.endswith(ESTIMATED) else "")
        from ..models.registry import model_role

        role = model_role(card) if card else ""
        lines.append(f"| {label} | {role} | {' / '.join(cells)} | {verdict} | {training} | {speed} |")
    lines += ["", README_END]
    return lines


def write_readme_table(readme: str | Path, lines: list[str]) -> bool:
    """Replace the table between the markers in the README (False when the markers are missing)."""
    path = Path(readme)
    text = path.read_text()
    if README_BEGIN not in text or README_END not in text:
        return False
    head, rest = text.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    path.write_text(head + "\n".join(lines) + tail)
    return True
