"""Evaluation of the design's joint point networks and their baselines on the chest test slabs.

:func:`evaluate_shipped` (run by ``jointrecon evaluate``) scores the shipped networks of
:mod:`napari_jointrecon.training.joint` (mean over three training seeds) with the seed paper's
Table 1 layout (:func:`joint_results_markdown`), beside reference levels taken from the true surface
(:func:`surface_levels`); :func:`occupancy_plane_errors` shows where an occupancy model's error lies
(``scripts/occupancy_error_by_plane.py``). The contour networks' held-out table is in
:mod:`napari_jointrecon.training.points_eval`.
"""

from __future__ import annotations

import json

import numpy as np
import torch

from ..dose import DOSE_LEVELS
from ..models.joint import INPUT_SIZE, N_POINTS, JointNet
from ..models.joint import forward as _forward
from ..models.joint import occupancy_head_points as _occupancy_points
from ..models.joint import run as _run
from ..pointcloud import EVAL_POINTS, SLAB_MM, chamfer_distance, point_metrics, spread_points, surface_points
from .data import load_chest
from .joint import JointData

__all__ = ["surface_levels", "occupancy_plane_errors", "evaluate_joint", "joint_results_markdown",
           "evaluate_shipped", "PLANE_GROUPS"]

def _mean_std(values) -> tuple[float, float]:
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def surface_levels(centres: list[int], n_points: int = N_POINTS, *,
                   seed_offset: int = 100_000) -> dict[str, torch.Tensor]:
    """``n_points`` on the true surface of each slab, drawn independently of the reference.

    ``surface_random``: an area-weighted random sample (the first ``n_points`` of a 20x larger
    one, whose points are independent draws); ``surface_spread``: the same larger sample thinned
    by :func:`~napari_jointrecon.pointcloud.spread_points`, the sampler of the occupancy models.
    Scored against the reference they say what a prediction of exactly the right shape would score
    with that many points: reference levels, not a hard floor.
    """
    chest = load_chest()
    pools = [surface_points(chest.hu, chest.spacing, c, 20 * n_points, seed=seed_offset + c) for c in centres]
    return {"surface_random": torch.from_numpy(np.stack([pool[:n_points] for pool in pools])).float(),
            "surface_spread": torch.from_numpy(np.stack([spread_points(pool, n_points)
                                                         for pool in pools])).float()}


PLANE_GROUPS = {"input plane 4": (4,), "planes 3-5": (3, 4, 5), "outer planes 0, 1, 7, 8": (0, 1, 7, 8)}


@torch.no_grad()
def occupancy_plane_errors(nets: dict[str, JointNet], data: JointData, dose: float) -> dict:
    """Where an occupancy model's point error lies, plane by plane (``scripts/occupancy_error_by_plane.py``).

    ``nets``: ``{"model": joint_occ}`` or ``{"seq_denoiser_dose": ..., "seq_regressor_occ": ...}``;
    ``data``: slabs with their true occupancy, read at ``dose`` (one of the four levels). Returns the
    mean Chamfer of the model's points (``model``) and of the true occupancy's through the same
    sampler (``true``), the fraction of misclassified pixels per plane (``wrong``), and the Chamfer
    when the planes of each :data:`PLANE_GROUPS` group are replaced by the true ones (``mixed``).
    """
    if data.occupancy is None:
        raise ValueError("the slabs have no true occupancy")
    level = [i for i, d in enumerate(DOSE_LEVELS) if abs(d - dose) < 1e-9]
    if not level:
        raise ValueError(f"dose {dose!r} is not one of the levels {', '.join(f'{d:g}' for d in DOSE_LEVELS)}")
    x = data.low[level[0], 0][:, None]
    _, logits, _ = _forward(nets, x, torch.full((x.shape[0],), float(dose)))
    pred = torch.sigmoid(logits).numpy()
    true = data.occupancy.numpy()
    extents = [f.half_extent_mm for f in data.frames]

    def chamfer(occ) -> float:
        return float(chamfer_distance(_occupancy_points(occ, extents), data.points).mean())

    mixed = {}
    for name, planes in PLANE_GROUPS.items():
        m = pred.copy()
        m[:, list(planes)] = true[:, list(planes)]
        mixed[name] = chamfer(m)
    return {"model": chamfer(pred), "true": chamfer(true),
            "wrong": ((pred > 0.5) != (true > 0.5)).mean(axis=(0, 2, 3)), "mixed": mixed}


def evaluate_joint(models: dict[str, list[dict[str, JointNet]]], template: torch.Tensor,
                   test: JointData, *, levels: dict[str, torch.Tensor] | None = None, log=print) -> dict:
    """Metrics per method and dose: mean over test slabs per training seed, then mean/std over seeds.

    ``models`` maps a method name to one entry per seed: ``{"model": net}`` or the sequential pair
    ``{"seq_denoiser": net, "seq_regressor": net}``. ``levels``: named point sets taken from the
    true surfaces (:func:`surface_levels`), scored as rows of their own.
    """
    from ..metrics import psnr, ssim

    to_hu = lambda t: t.numpy() * 2000.0 - 1000.0  # noqa: E731
    clean_hu = to_hu(test.clean)
    n = test.clean.shape[0]
    results: dict = {}

    def image_scores(den_hu):
        return (float(np.mean([psnr(den_hu[k], clean_hu[k]) for k in range(n)])),
                float(np.mean([ssim(den_hu[k], clean_hu[k]) for k in range(n)])))

    def point_scores(pts):
        ms = [point_metrics(pts[k].numpy(), test.points[k].numpy(), test.frames[k]) for k in range(n)]
        return {key: float(np.mean([m[key] for m in ms])) for key in ms[0]}

    for di, dose in enumerate(DOSE_LEVELS):
        key = f"{int(round(dose * 100))}%"
        low = test.low[di, 0]
        rows = {}
        p, s = image_scores(to_hu(low))
        rows["input"] = {"psnr": (p, 0.0), "ssim": (s, 0.0)}
        shape_pts = template[None].expand(n, -1, -1)
        rows["mean_shape"] = {k: (v, 0.0) for k, v in point_scores(shape_pts).items()}
        for name, pts in (levels or {}).items():
            rows[name] = {k: (v, 0.0) for k, v in point_scores(pts).items()}
        for method, seeds in models.items():
            per_seed = []
            for entry in seeds:
                den, pts = _run(entry, low[:, None], extents=[f.half_extent_mm for f in test.frames],
                                dose=torch.full((n,), float(dose)))
                scores = point_scores(pts)
                scores["psnr"], scores["ssim"] = image_scores(to_hu(den[:, 0]))
                per_seed.append(scores)
            rows[method] = {k: _mean_std([s[k] for s in per_seed]) for k in per_seed[0]}
            rows[method]["seeds"] = len(per_seed)
            log(f"  {key} {method}: " + ", ".join(f"{k} {v[0]:.4f}" for k, v in rows[method].items()
                                                    if isinstance(v, tuple)))
        results[key] = rows
    return results


def joint_results_markdown(results: dict, card: dict, *, seeds: int) -> list[str]:
    """The seed paper's Table 1 layout, one table per dose."""
    def cell(v, digits):
        if v is None:
            return ""
        mean, std = v
        return f"{mean:.{digits}f} ± {std:.{digits}f}"

    lines = ["## Joint denoising + 3D point cloud", "",
             f"Chest test slabs centred on volume slices 64-76 (13 slices, mid-chest; 128 x 128 after 4x "
             f"area averaging; why not the denoising test slabs: `napari_jointrecon/training/joint.py`). Targets: the -500 HU body surface of a {SLAB_MM:g} mm slab, "
             f"{EVAL_POINTS} points; predictions: {N_POINTS} points. Chamfer: squared, mean per "
             "direction, summed, on normalised coordinates (z by the 8 mm half-slab, y/x by the "
             "250 mm half field of view); Chamfer mm: the same, not squared, in millimetres; F-score "
             f"at 1 % and 5 % of the normalised box (0.02 and 0.10: {0.02 * SLAB_MM / 2:g} and {0.10 * SLAB_MM / 2:g} mm "
             "along z, 5 and 25 mm across, so F@1% mostly measures how well the points follow the "
             "surface in z). PSNR/SSIM on [-1000, 1000] HU at "
             f"128 x 128 against the downsampled full dose. Learned rows: mean ± std over {seeds} "
             f"training seeds (each the mean over the test slabs). Reference levels for the points: {N_POINTS} "
             "points taken from the very surface the reference comes from, at random (area-weighted) or "
             "evenly spread (20,000 random ones thinned by the occupancy models' sampler: farthest-point "
             "sampling, then 10 k-means iterations, each point moved back onto the nearest of the 20,000), drawn independently of "
             f"the reference: what a prediction of exactly the right shape scores with {N_POINTS} points.",
             ""]
    names = {"input": "low-dose input", "mean_shape": "mean training shape",
             "surface_random": f"true surface, {N_POINTS} random points (reference level)",
             "surface_spread": f"true surface, {N_POINTS} evenly spread points (reference level)",
             "sequential": "sequential (denoiser -> regressor)", "joint": "joint (design, linear head)",
             "joint_fold": "joint + deformation decoder",
             "sequential_occ": "sequential, occupancy regressor (denoiser -> regressor)",
             "joint_occ": "joint + occupancy decoder"}
    for dose, rows in results.items():
        lines += [f"**{dose} dose**", "",
                  "| method | PSNR (dB) | SSIM | Chamfer | Chamfer (mm) | F@1% | F@5% |",
                  "| --- | --- | --- | --- | --- | --- | --- |"]
        for key, row in rows.items():
            lines.append(f"| {names.get(key, key)} | {cell(row.get('psnr'), 2)} | {cell(row.get('ssim'), 4)} | "
                         f"{cell(row.get('chamfer'), 4)} | {cell(row.get('chamfer_mm'), 2)} | "
                         f"{cell(row.get('f1'), 3)} | {cell(row.get('f5'), 3)} |")
        lines.append("")
    learned = [(dose, key) for dose, rows in results.items() for key, row in rows.items() if row.get("seeds")]
    worse = [(dose, key) for dose, key in learned if results[dose][key]["psnr"][0] < results[dose]["input"]["psnr"][0]]
    if worse:
        first = next(iter(results))
        by_method: dict[str, list[str]] = {}
        for dose, key in worse:
            by_method.setdefault(key, []).append(dose)
        listed = "; ".join(f"{names.get(k, k)} at {', '.join(d)}" for k, d in by_method.items())
        lines += [f"Note: at 128 x 128 the 4 x 4 area averaging already removes most of the noise (input "
                  f"{results[first]['input']['psnr'][0]:.1f} dB at {first}), and {len(worse)} of {len(learned)} "
                  f"method/dose cells score below their input ({listed}). The design's networks have no dose "
                  "input; trained with the plain MSE, where the 10 % images carry about 20 times the noise "
                  "power of the 70 % ones, they remove about as much noise at every dose, too much where "
                  "little was added. The occupancy models take the dose as an input, which keeps them "
                  "close to their input where little noise was added.", ""]
    pairs = [(j, q) for j, q in (("joint", "sequential"), ("joint_occ", "sequential"), ("joint_occ", "sequential_occ"))
             if all(j in rows and q in rows for rows in results.values())]
    if pairs:
        lines += ["**Joint against sequential** (target: Chamfer at most 0.5 x the sequential one, PSNR "
                  "within 0.5 dB of it; means over the seeds):", "",
                  "| joint | sequential | dose | Chamfer ratio | PSNR joint - sequential (dB) | both met |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for j, q in pairs:
            for dose, rows in results.items():
                ratio = rows[j]["chamfer"][0] / rows[q]["chamfer"][0]
                gap = rows[j]["psnr"][0] - rows[q]["psnr"][0]
                met = "yes" if ratio <= 0.5 and gap >= -0.5 else "no"
                lines.append(f"| {names.get(j, j)} | {names.get(q, q)} | {dose} | {ratio:.3f} | {gap:+.2f} | {met} |")
        lines.append("")
    kinds = card.get("kinds", {})
    lines.append("Parameters: " + ", ".join(f"{k} {v['parameters']:,}" for k, v in kinds.items()) + ".")
    lines.append("")
    return lines


def evaluate_shipped(*, seeds=(0, 1, 2), cache_dir="runs/cache", log=print) -> tuple[dict, list[str]]:
    """Evaluate the shipped point models on the test slabs; returns (results, markdown lines)."""
    from ..joint import JOINT_WEIGHTS_DIR, load_point_model, point_model_card

    torch.set_num_threads(2)
    test = JointData.build("test", cache_dir=cache_dir, log=log)
    template = torch.load(JOINT_WEIGHTS_DIR / "mean_shape.pt", weights_only=True)
    from ..joint import MODEL_INPUT_SIZE, POINT_MODELS

    # the design's networks (128 x 128, three seeds); the contour networks have their own held-out
    # table (training/points_eval.py)
    models = {name: [load_point_model(name, s) for s in seeds] for name in POINT_MODELS
              if MODEL_INPUT_SIZE[name] == INPUT_SIZE}
    results = evaluate_joint(models, template, test, levels=surface_levels(test.centres), log=log)
    card = point_model_card()
    card["results"] = {
        "measured_by": "jointrecon evaluate",
        "format": "metric: [mean, std] over training seeds (each the mean over the 13 test slabs)",
        "chest_test": {dose: {k: {m: list(v) for m, v in row.items() if isinstance(v, tuple)}
                              for k, row in rows.items()} for dose, rows in results.items()},
    }
    (JOINT_WEIGHTS_DIR / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    return results, joint_results_markdown(results, card, seeds=len(seeds))
