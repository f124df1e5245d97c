"""The point models on held-out patients against the extrusion baseline and the 1000-point level.

For each slab (10 spread over each test patient's series, and the chest series' 13 point-cloud test
slabs, centres 64-76, which the contour networks never trained on), at one dose:

* **reference**: 10,000 points of the true -500 HU surface of the 16 mm slab
  (:func:`napari_jointrecon.pointcloud.reference_point_cloud`, the full-dose volume);
* **1000 points of the true surface**: 1000 more drawn at random (by area) from that surface, what a
  perfect prediction scores with 1000 points (a level, not a hard floor: evenly spread points
  score a little lower);
* **extrusion**: the low-dose slice's own -500 HU contour (its largest region above -500 HU, at
  full resolution) copied unchanged through the slab, 1000 points taken from it by the contour
  networks' sampler (spread evenly in mm): the cloud that needs no network, the baseline the
  targets are measured against;
* **extrusion of every region inside the body**: the same with every region above -500 HU inside
  the body's outline (the vessels' and airways' cross-sections too): a stronger cloud without a
  network, drawn as the contour networks draw theirs (``regions="body"``);
* every point model through :func:`napari_jointrecon.predict_point_cloud` on the low-dose volume
  (the product's own path: orientation, geometry, millimetres).

Metrics: the mean surface distance in mm (the mean nearest-neighbour distance in each direction,
averaged) and the design's normalised Chamfer distance (squared, summed over the two directions,
z by the 8 mm half-slab and y/x by the half field of view).
"""

from __future__ import annotations

import time

import numpy as np

from ..pointcloud import (_nearest_distances_mm, chamfer_distance, occupancy_points, occupancy_regions,
                          reference_point_cloud, slab_frame)
from ..models.contour import N_PLANES
from .points import CHEST_TEST_CENTRES, POINT_SERIES
from .series import PATIENT_SPLIT

__all__ = ["heldout_point_rows", "heldout_point_markdown", "extrusion_cloud", "BASELINES", "POINTS_SECTION"]

BASELINES = ("surface_1000", "extrusion", "extrusion_body")
#: The heading of the held-out point-cloud section of the results (``jointrecon evaluate --points-only``
#: replaces that section alone).
POINTS_SECTION = "## 3D point clouds on held-out patients"
LABELS = {"surface_1000": "1000 points of the true surface (level)", "input": "low-dose input",
          "extrusion": "extrusion: the slice's -500 HU contour copied through the slab (no network)",
          "extrusion_body": "extrusion of every -500 HU region inside the body's outline (vessels, airways; "
                            "no network)"}


def extrusion_cloud(ct, k: int, slice_hu: np.ndarray, n: int = 1000, *, spread_in: str = "mm",
                    regions: str = "largest") -> np.ndarray:
    """World-mm points of slice ``k``'s own -500 HU body region (``regions="body"``: with every region
    inside its outline, :func:`~napari_jointrecon.pointcloud.occupancy_regions`) copied through the
    slab, thinned by the contour networks' sampler (``spread_in``,
    :func:`~napari_jointrecon.pointcloud.occupancy_points`)."""
    body = occupancy_regions(np.asarray(slice_hu) > -500, regions)
    if body is None:
        raise ValueError(f"slice {k} has nothing above -500 HU")
    frame = slab_frame(ct, k)
    occ = np.repeat(body[None].astype(np.float32), N_PLANES, 0)
    pts = occupancy_points(occ, n, half_extent_mm=frame.half_extent_mm, spread_in=spread_in, regions=regions)
    return frame.normalised_to_world(pts, ct)


def _scores(pred, ref, frame, ct) -> dict[str, float]:
    d_pr, d_rp = _nearest_distances_mm(pred, ref)
    chamfer = float(chamfer_distance(frame.world_to_normalised(pred, ct), frame.world_to_normalised(ref, ct))[0])
    return {"msd_mm": 0.5 * float(d_pr.mean() + d_rp.mean()), "chamfer": chamfer}


def heldout_point_rows(models: list[str], *, dose: float = 0.25, cache_dir="runs/cache", log=print) -> dict:
    """``{group: {"patient", "slabs", "rows": {cloud: {"msd_mm": [...], "chamfer": [...]}}}}``, one
    value per slab; groups: each test series, and ``chest-ct-dicom (point test slabs)``."""
    from ..io import load_ct
    from ..joint import predict_point_cloud
    from ..metrics import psnr
    from .data import shared_data_dir
    from .series import build_series_caches

    groups = [(s, "test") for s in POINT_SERIES if PATIENT_SPLIT[s][1] == "test"] + [("chest-ct-dicom", "train")]
    out = {}
    for rel, split in groups:
        t0 = time.perf_counter()
        ct = load_ct(shared_data_dir() / rel)
        cache = build_series_caches(cache_dir, splits=(split,), stride=1, log=log)[rel]
        low_hu = np.stack([cache.low(k, dose)[0] for k in range(cache.clean.shape[0])]).astype(np.float32)
        low_ct = ct.with_hu(low_hu)
        half = int(np.ceil(8.0 / float(ct.spacing[0]) - 1e-6))
        if rel == "chest-ct-dicom":
            ks, name = list(CHEST_TEST_CENTRES), "chest-ct-dicom (point test slabs)"
        else:
            ks = sorted(set(np.linspace(half, ct.shape[0] - 1 - half, 10).round().astype(int).tolist()))
            name = rel
        rows: dict[str, dict[str, list[float]]] = {}
        for k in ks:
            frame = slab_frame(ct, k)
            ref = reference_point_cloud(ct, k, 10000)
            clouds = {"surface_1000": reference_point_cloud(ct, k, 1000, seed=k + 1),
                      "extrusion": extrusion_cloud(ct, k, low_hu[k]),
                      "extrusion_body": extrusion_cloud(ct, k, low_hu[k], regions="body")}
            images = {"input": low_hu[k]}
            for m in models:
                pred = predict_point_cloud(low_ct, slice_index=k, dose=dose, model=m)
                clouds[m] = pred.points
                if pred.denoised.shape == ct.hu[k].shape:  # the contour networks denoise at full size
                    images[m] = pred.denoised
            for cloud, pts in clouds.items():
                for key, v in _scores(pts, ref, frame, ct).items():
                    rows.setdefault(cloud, {}).setdefault(key, []).append(v)
            for label, img in images.items():  # PSNR of the denoised slice (joint against sequential)
                rows.setdefault(label, {}).setdefault("psnr", []).append(psnr(img, ct.hu[k]))
        out[name] = {"patient": PATIENT_SPLIT[rel][0], "slabs": ks, "rows": rows}
        log(f"  points {name}: " + ", ".join(f"{c} {np.mean(r['msd_mm']):.2f} mm" for c, r in rows.items()
                                             if "msd_mm" in r)
            + f" ({time.perf_counter() - t0:.0f} s)")
    return out


def _sampler_text() -> str:
    from ..joint import contour_sampler

    sampler = contour_sampler()
    regions = "every region inside the body" if sampler["regions"] == "body" else "the largest region"
    return (f"iso level {sampler['level']:g}, {regions}"
            + (", the mean of the network on the slice and on its mirror image" if sampler["mirror"] else "")
            + (", the body's outline the slice's own (the network's occupancy kept inside it)"
               if sampler["outline"] == "slice" else ""))


def _validation_text() -> str:
    """The contour models' mean surface distance on the validation patients, drawn with the sampler."""
    from ..joint import point_model_card

    models = point_model_card().get("contour_sampler", {}).get("models_validation_msd_mm", {})
    if not models:
        return ""
    return (" Drawn with that sampler on the validation patients' slabs, the networks trained on the training "
            "patients alone (`jointrecon tune-points`): "
            + ", ".join(f"{name} {msd:.3f} mm" for name, msd in sorted(models.items(), key=lambda kv: kv[1]))
            + ".")


def _training_text() -> str:
    """What the shipped contour networks were trained on, where it is more than the training patients."""
    from ..joint import point_model_card
    from .points import _is_refit

    runs = point_model_card().get("contour_training", {}).get("runs", {})
    refits = sorted(name.removesuffix("_seed0.pt") for name, run in runs.items()  # the shipped networks: seed 0
                    if name.endswith("_seed0.pt") and _is_refit(run.get("config", {})))
    if not refits:
        return ""
    return (f" Refit on the training and the validation patients (their recipe, and the sampler, chosen on "
            f"validation by the same recipe's run on the training patients alone): {', '.join(refits)}.")


def heldout_point_markdown(results: dict, *, dose: float = 0.25, labels: dict | None = None,
                           made_by: str = "`jointrecon evaluate`") -> list[str]:
    labels = {**LABELS, **(labels or {})}
    groups = list(results)
    clouds = [c for c in next(iter(results.values()))["rows"] if c != "input"]
    lines = [POINTS_SECTION, "",
             f"Made by {made_by} (`napari_jointrecon/training/points_eval.py`). {dose * 100:g} % dose; "
             "each patient's slabs spread over its series, 16 mm slabs, the reference 10,000 points of the "
             "full-dose -500 HU surface; every cloud 1000 points. Mean surface distance in mm (mean "
             "nearest-neighbour distance in each direction, averaged; lower is better), mean over the slabs; "
             "ratio: to the extrusion baseline's. Chamfer: the design's normalised Chamfer (squared, both "
             "directions summed), mean over all slabs. The chest series' point test slabs (centres 64-76) belong "
             "to a training patient of the denoisers; the contour networks left centres 55-85 out of training. "
             "The contour networks' clouds are drawn as the product draws them, with the point models' card's "
             "`contour_sampler` (chosen on the validation patients by `jointrecon tune-points`: "
             + _sampler_text() + ")." + _validation_text() + _training_text(),
             "",
             "| cloud | " + " | ".join(f"{g} ({results[g]['patient']}, {len(results[g]['slabs'])} slabs), mm"
                                       for g in groups) + " | ratio to extrusion | Chamfer |",
             "| --- | " + " | ".join("---" for _ in groups) + " | --- | --- |"]
    for c in clouds:
        cells = []
        ratios = []
        for g in groups:
            r = results[g]["rows"]
            m = float(np.mean(r[c]["msd_mm"]))
            ratio = m / float(np.mean(r["extrusion"]["msd_mm"]))
            ratios.append(ratio)
            cells.append(f"{m:.2f}")
        cham = float(np.mean([v for g in groups for v in results[g]["rows"][c]["chamfer"]]))
        lines.append(f"| {labels.get(c, c)} | " + " | ".join(cells) + " | "
                     + " / ".join(f"{x:.2f}" for x in ratios) + f" | {cham:.4f} |")
    lines.append("")
    denoised = [c for c in next(iter(results.values()))["rows"] if "psnr" in results[groups[0]]["rows"][c]]
    if len(denoised) > 1:
        lines += ["The denoised slice of the networks that denoise at full size (joint against sequential), "
                  "PSNR in dB on [-1000, 1000] HU against the full-dose slice, mean over the slabs:", "",
                  "| | " + " | ".join(groups) + " |", "| --- | " + " | ".join("---" for _ in groups) + " |"]
        for c in denoised:
            lines.append(f"| {labels.get(c, c)} | "
                         + " | ".join(f"{np.mean(results[g]['rows'][c]['psnr']):.2f}" for g in groups) + " |")
        lines.append("")
    return lines
