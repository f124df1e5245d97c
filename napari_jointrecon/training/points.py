"""Training of the contour point networks (:mod:`napari_jointrecon.models.contour`) across patients.

Data: every chest and abdomen series of ``series.PATIENT_SPLIT`` whose slices are at least
``INPUT_SIZE`` pixels (the two torso volumes are 101 x 122 and 126 x 120 crops, and the head series
is neither chest nor abdomen), split by patient as the denoisers are. The chest series
``chest-ct-dicom`` is a training series, but its point-cloud test slabs (centres 64-76, the
:data:`~napari_jointrecon.training.joint.POINT_SPLITS` test of the design's networks) and 10 mm
beyond their targets stay out of training: centres 55-85 are never trained on.

Each slab (centre slice ``k``, every slice whose 16 mm slab lies inside its series) gives:

* the full-dose slice and its unit noise (the series' textured noise of
  :func:`~napari_jointrecon.training.series.build_series_caches` with ``stride=1``) at 512 x 512
  (``OUTPUT_SIZE``); a dose ``a`` adds ``sqrt((1 - a) / a)`` times the noise; the network reads
  them area-averaged 2x;
* the occupancy target at 512 x 512: ``N_PLANES`` planes 2 mm apart across the slab, the HU linearly
  interpolated between the series' slices (as marching cubes interpolates), thresholded at
  -500 HU, the body's largest connected region kept (as the reference surface keeps it).

All slices are turned to the orientation the point models read (:func:`napari_jointrecon.joint._to_model`,
slabs from feet to head). Augmentation: left-right mirroring, the sign of the noise, random crops
of ``crop`` pixels of the network's 256 (``2 crop`` of the 512); doses 10/25/50/70 % (one time in
five uniform in 5-100 %); with ``augment``, half the crops turned by up to 10 degrees and scaled by
up to 10 % (patients differ in size and lie; the slice and its targets are resampled, the noise is
added as the series has it, so that its texture is the scanner's). Loss: the normalised MSE of the
denoised slice (area-averaged to 256) plus the binary cross-entropy of the occupancy logits at 512;
with ``outline="slice"`` (the product draws with the slice's own outline and the network's occupancy
only inside it: :func:`~napari_jointrecon.models.contour.keep_slice_outline`) the cross-entropy
counts ``OUTSIDE_WEIGHT`` outside the slice's outline, and validation draws the clouds that way.

Validation (model selection): the validation patients' slabs at 25 % (``VAL_SLABS`` per series):
the mean surface distance in mm (mean nearest-neighbour distance in each direction, averaged) of
1000 points from the predicted occupancy (spread evenly in mm, as the product draws them) against
10,000 reference points of the true slab surface, and the PSNR of the denoised slice
(area-averaged to 256 x 256). A refit (``train_on="train+val"``) trains a recipe chosen that way on the
validation patients too (every slab centre of their series), for its steps, and keeps its last step;
the test patients stay out of both.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..dose import DOSE_LEVELS
from ..models.contour import (N_PLANES, OUTLINE_MARGIN_PX, OUTLINES, OUTPUT_SIZE, SURFACE_KINDS, _outline,
                              build_contour, keep_slice_outline)
from ..pointcloud import (EVAL_POINTS, LEVEL_HU, SLAB_MM, SlabFrame, _largest_region, chamfer_distance,
                          occupancy_points, slab_bounds, surface_points)
from .joint import normalised_mse
from .series import PATIENT_SPLIT, build_series_caches
from .train import STOP_FILE, _lr, run_logger

__all__ = ["POINT_SERIES", "CHEST_TEST_CENTRES", "PointSlabs", "PointConfig", "build_point_slabs", "plane_targets",
           "occupancy_loss",
           "train_points", "surface_distance_mm", "DEFAULT_POINT_CONFIG", "tune_sampler", "SAMPLER_LEVELS"]

#: Series of the point data (chest and abdomen, at least 256 x 256).
POINT_SERIES = tuple(s for s in PATIENT_SPLIT if s.startswith(("chest-ct-dicom", "ct-series/")) and "head" not in s)
#: The chest series' point-cloud test slabs, and the centres kept out of training around them.
CHEST_TEST_CENTRES = tuple(range(64, 77))
CHEST_EXCLUDED = range(55, 86)
#: Validation slabs per validation series (spread over the series; every slab centre where a series
#: has fewer). With 6 per series, a run's validation curve jumped by about 0.05 mm from one check to
#: the next late in training, as much as the differences between runs; with 24, by about 0.02 mm.
VAL_SLABS = 24


def plane_offsets_mm() -> np.ndarray:
    return np.linspace(-SLAB_MM / 2, SLAB_MM / 2, N_PLANES)


def plane_targets(hu: np.ndarray, spacing_z: float, centre: int) -> np.ndarray:
    """``(N_PLANES, H, W)`` body occupancy (0/1) of the slab around ``centre`` at full resolution."""
    slab_bounds(hu.shape[0], centre, spacing_z)  # a clear error where the slab leaves the volume
    planes = []
    for off in plane_offsets_mm():
        f = centre + off / spacing_z
        i0 = min(int(math.floor(f)), hu.shape[0] - 1)
        w = f - i0
        img = hu[i0].astype(np.float32)
        if w > 1e-6:
            img = (1 - w) * img + w * hu[i0 + 1].astype(np.float32)
        planes.append(img)
    inside = np.stack(planes) > LEVEL_HU
    body = _largest_region(inside)
    if body is None:
        raise ValueError(f"no body in the slab around slice {centre}")
    return body


def _resize(a: np.ndarray, size: int = OUTPUT_SIZE) -> np.ndarray:
    """``(..., H, W)`` -> ``(..., size, size)``: unchanged at that size, else area averaging
    (larger) or bilinear (smaller)."""
    if a.shape[-2:] == (size, size):
        return np.asarray(a, dtype=np.float32)
    t = torch.as_tensor(np.ascontiguousarray(a), dtype=torch.float32)
    lead = t.shape[:-2]
    t = t.reshape(-1, 1, *t.shape[-2:])
    mode = dict(mode="area") if min(t.shape[-2:]) >= size else dict(mode="bilinear", align_corners=False)
    t = F.interpolate(t, size=(size, size), **mode)
    return t.reshape(*lead, size, size).numpy()


@dataclass
class PointSlabs:
    """One split's slabs, in the point models' orientation (module docstring)."""

    clean: np.ndarray          # (n, 512, 512) float32 HU
    noise: np.ndarray          # (n, 512, 512) float16 HU, unit (full-dose level) noise
    occupancy: np.ndarray      # (n, N_PLANES, 512, 512) uint8, 255 = inside
    series: list[str]
    centres: list[int]
    half_extent_mm: np.ndarray  # (n, 3)
    reference: np.ndarray | None = None  # (n, EVAL_POINTS, 3) normalised, validation only

    def low(self, i: int, dose: float, sign: float = 1.0) -> np.ndarray:
        return self.clean[i] + sign * math.sqrt((1 - dose) / dose) * self.noise[i].astype(np.float32)

    def inner(self, i: int) -> np.ndarray:
        """``(512, 512)`` bool: where the product keeps the network's occupancy when it draws with the
        slice's outline (:func:`~napari_jointrecon.models.contour.keep_slice_outline`): inside the
        full-dose slice's filled -500 HU outline, shrunk by ``OUTLINE_MARGIN_PX``."""
        from scipy import ndimage

        cache = self.__dict__.setdefault("_inner", {})
        if i not in cache:
            cache[i] = ndimage.binary_erosion(_outline(self.clean[i] > LEVEL_HU), iterations=OUTLINE_MARGIN_PX)
        return cache[i]


_SPACING_Z: dict[str, float] = {}


def slab_spacing(data: PointSlabs) -> torch.Tensor:
    """The slice spacing (mm) of each slab's series."""
    from ..io import load_ct
    from .data import shared_data_dir

    for rel in set(data.series) - set(_SPACING_Z):
        _SPACING_Z[rel] = float(load_ct(shared_data_dir() / rel).spacing[0])
    return torch.tensor([_SPACING_Z[rel] for rel in data.series], dtype=torch.float32)


def _oriented(rel: str):
    """The series' volume (for its geometry), its orientation against the one the point models read,
    and the function that turns a slice to it."""
    from ..io import load_ct
    from ..joint import _orientation, _to_model
    from .data import shared_data_dir

    vol = load_ct(shared_data_dir() / rel)
    return vol, _orientation(vol.direction), _to_model


def build_point_slabs(split: str, *, cache_dir: str | Path = "runs/cache", out_dir: str | Path = "runs/points_data512",
                      log=print) -> PointSlabs:
    """The slabs of a split (``"train"``, ``"val"``, ``"test"`` or ``"chest_test"``; ``"val_all"``: every
    slab centre of the validation patients' series, for a run that trains on them too,
    :attr:`PointConfig.train_on`), cached on disk."""
    if split not in ("train", "val", "val_all", "test", "chest_test"):
        raise ValueError(f"unknown point-slab split {split!r}")
    path = Path(out_dir) / (f"val{VAL_SLABS}.npz" if split == "val" else f"{split}.npz")
    if path.exists():
        with np.load(path, allow_pickle=False) as z:
            return PointSlabs(z["clean"], z["noise"], z["occupancy"], z["series"].tolist(), z["centres"].tolist(),
                              z["half_extent_mm"], z["reference"] if "reference" in z else None)
    which = {"chest_test": "train", "val_all": "val"}.get(split, split)
    names = [s for s in POINT_SERIES if PATIENT_SPLIT[s][1] == which]
    if split == "chest_test":
        names = ["chest-ct-dicom"]
    caches = build_series_caches(cache_dir, splits=(which,), stride=1, log=log)
    clean, noise, occ, series, centres, ext, refs = [], [], [], [], [], [], []
    t0 = time.perf_counter()
    for rel in names:
        cache = caches[rel]
        vol, orient, to_model = _oriented(rel)
        if vol.shape[1] < OUTPUT_SIZE // 2 or vol.shape[2] < OUTPUT_SIZE // 2:
            continue
        hu = np.stack([to_model(s, orient) for s in cache.clean])
        nz = np.stack([to_model(s.astype(np.float32), orient) for s in cache.noise])
        if orient.flip_z:
            hu, nz = hu[::-1].copy(), nz[::-1].copy()
        sz = float(vol.spacing[0])
        half = int(math.ceil(SLAB_MM / 2 / sz - 1e-6))
        spacing = (sz, float(vol.spacing[2 if orient.transpose else 1]), float(vol.spacing[1 if orient.transpose else 2]))
        valid = list(range(half, hu.shape[0] - half))
        if split == "chest_test":
            ks = list(CHEST_TEST_CENTRES)
        elif which == "train":
            ks = [k for k in valid if not (rel == "chest-ct-dicom" and k in CHEST_EXCLUDED)]
        elif split == "val_all":
            ks = valid
        else:
            ks = sorted(set(np.linspace(valid[0], valid[-1], VAL_SLABS if which == "val" else 10).round().astype(int)))
        for k in ks:
            body = plane_targets(hu, sz, k)
            clean.append(_resize(hu[k]))
            noise.append(_resize(nz[k]).astype(np.float16))
            occ.append(np.round(_resize(body.astype(np.float32)) * 255).astype(np.uint8))
            frame = SlabFrame(float(k), hu.shape[1], hu.shape[2], spacing)
            ext.append(frame.half_extent_mm)
            series.append(rel)
            centres.append(k)
            if split in ("val", "test", "chest_test"):  # the splits clouds are measured on
                refs.append(surface_points(hu, spacing, k, EVAL_POINTS, seed=k))
        log(f"point slabs {split}: {rel} {len(ks)} slabs ({time.perf_counter() - t0:.0f} s)")
    data = PointSlabs(np.stack(clean), np.stack(noise), np.stack(occ), series, centres, np.stack(ext),
                      np.stack(refs).astype(np.float32) if refs else None)
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = {} if data.reference is None else {"reference": data.reference}
    np.savez(path, clean=data.clean, noise=data.noise, occupancy=data.occupancy, series=np.array(series),
             centres=np.array(centres), half_extent_mm=data.half_extent_mm, **extra)
    return data


def surface_distance_mm(pred: np.ndarray, ref: np.ndarray, half_extent_mm) -> float:
    """Mean surface distance in mm (nearest-neighbour distances, mean per direction, averaged) of
    two normalised point sets."""
    return 0.5 * float(chamfer_distance(pred, ref, squared=False, scale=half_extent_mm)[0])


@dataclass
class PointConfig:
    steps: int = 3000
    batch: int = 8
    crop: int = 128
    lr: float = 1e-3
    seed: int = 0
    val_every: int = 250
    checkpoint_every_s: float = 300.0
    threads: int = 2
    #: the encoder's width (:func:`~napari_jointrecon.models.contour.build_contour`)
    width: int = 16
    #: half the crops turned by up to ``AUGMENT_DEGREES`` and scaled by up to ``AUGMENT_SCALE``
    #: (the slice and its targets; the noise is added untouched, so that its texture stays the series')
    augment: bool = False
    #: the series' slice spacing as an input of the networks that draw the surface
    #: (:class:`~napari_jointrecon.models.contour.ContourNet`)
    spacing_input: bool = False
    #: the outline the run's clouds are validated with (:data:`~napari_jointrecon.models.contour.OUTLINES`):
    #: ``"slice"`` draws them as the product does with the slice's outline, and weighs the occupancy
    #: loss by ``OUTSIDE_WEIGHT`` outside :meth:`PointSlabs.inner`, where the product does not use it
    outline: str = "network"
    #: ``"train"``, or ``"train+val"``: a refit on the training and the validation patients (every
    #: slab centre of their series) with a recipe chosen on validation; it is not validated (the
    #: validation patients are its training data) and keeps its last step
    train_on: str = "train"
    #: what the sequential regressor reads in training (:data:`REGRESSOR_INPUTS`): the full-dose
    #: slices (the design's sequential baseline), or its denoiser's output on the low-dose slices, as
    #: it reads in the product
    regressor_input: str = "full_dose"


DEFAULT_POINT_CONFIG = PointConfig()
#: What a run trains on (:attr:`PointConfig.train_on`).
TRAIN_ON = ("train", "train+val")
#: What the sequential regressor reads in training (:attr:`PointConfig.regressor_input`).
REGRESSOR_INPUTS = ("full_dose", "denoised")
#: The affine augmentation's largest turn (degrees) and relative scale (:attr:`PointConfig.augment`).
AUGMENT_DEGREES = 10.0
AUGMENT_SCALE = 0.1
#: What a run's checkpoint must share with the configuration that resumes it.
ARCHITECTURE_FIELDS = ("width", "augment", "spacing_input", "crop", "batch", "outline", "train_on",
                       "regressor_input")
#: The occupancy loss's weight outside the slice's outline in a run validated with it (``outline="slice"``):
#: small, not 0, so that the network's own outline (where it ends inside the slice's, the product
#: draws tissue) stays learnt.
OUTSIDE_WEIGHT = 0.1
_M = lambda hu: (torch.as_tensor(hu, dtype=torch.float32) + 1000.0) / 2000.0  # noqa: E731


def occupancy_loss(logits: torch.Tensor, occ: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy of occupancy ``logits`` ``(B, planes, H, W)`` against ``occ``, each pixel
    weighted by ``weight`` ``(B, 1, H, W)`` on every plane: the weighted mean (the plain mean where all
    weights are 1). With :data:`OUTSIDE_WEIGHT` outside the slice's outline, a pixel there counts a
    tenth of one inside it; the batch's total weight normalises, so the loss stays on the scale of a
    mean however much of a crop lies outside."""
    bce = F.binary_cross_entropy_with_logits(logits, occ, reduction="none")
    return (bce * weight).sum() / (weight.sum() * bce.shape[1])


def _is_refit(config: dict) -> bool:
    """Whether a run's ``config`` trained on the validation patients too (:attr:`PointConfig.train_on`)."""
    return config.get("train_on", "train") != "train"


def _joined(a: PointSlabs, b: PointSlabs) -> PointSlabs:
    """The slabs of ``a`` and ``b`` together (training slabs: no reference clouds)."""
    return PointSlabs(np.concatenate([a.clean, b.clean]), np.concatenate([a.noise, b.noise]),
                      np.concatenate([a.occupancy, b.occupancy]), a.series + b.series, a.centres + b.centres,
                      np.concatenate([a.half_extent_mm, b.half_extent_mm]))


def _affine_crop(planes: np.ndarray, y0: int, x0: int, c: int, angle: float, scale: float) -> np.ndarray:
    """``(C, c, c)`` of full-size ``planes`` ``(C, H, W)``: the crop at ``(y0, x0)`` turned by ``angle``
    (radians) and scaled by ``scale`` (more than 1: more of the slice, smaller) about its centre,
    bilinear, zero outside."""
    h, w = planes.shape[-2:]
    cos, sin = math.cos(angle) * scale, math.sin(angle) * scale
    theta = torch.tensor([[[cos * c / w, -sin * c / w, (2 * x0 + c) / w - 1.0],
                           [sin * c / h, cos * c / h, (2 * y0 + c) / h - 1.0]]], dtype=torch.float32)
    t = torch.from_numpy(np.ascontiguousarray(planes, dtype=np.float32))[None]
    grid = F.affine_grid(theta, [1, t.shape[1], c, c], align_corners=False)
    return F.grid_sample(t, grid, mode="bilinear", padding_mode="zeros", align_corners=False)[0].numpy()


def _sample(data: PointSlabs, rng: np.random.Generator, cfg: PointConfig, *, full_dose: bool):
    """``(x at 256-scale, x at full size, clean at 256-scale, occupancy at full size, doses, slab
    indices, occupancy loss weights at full size)`` of a batch of crops (the weights: 1, or with
    ``cfg.outline == "slice"`` ``OUTSIDE_WEIGHT`` outside :meth:`PointSlabs.inner`)."""
    fulls, cleans, occs, doses, picked, weights = [], [], [], [], [], []
    inner_loss = cfg.outline == "slice"
    n = data.clean.shape[0]
    c = 2 * cfg.crop
    for _ in range(cfg.batch):
        i = int(rng.integers(n))
        picked.append(i)
        if full_dose:
            dose = 1.0
        else:
            dose = float(rng.choice(DOSE_LEVELS)) if rng.random() >= 0.2 else float(rng.uniform(0.05, 1.0))
        sign = (1.0 if rng.integers(2) else -1.0) if dose < 1.0 else 1.0
        y0, x0 = (2 * int(rng.integers((OUTPUT_SIZE - c) // 2 + 1)) for _ in range(2))
        sl = np.s_[y0:y0 + c, x0:x0 + c]
        if cfg.augment and rng.random() < 0.5:
            angle = math.radians(float(rng.uniform(-AUGMENT_DEGREES, AUGMENT_DEGREES)))
            scale = float(rng.uniform(1.0 - AUGMENT_SCALE, 1.0 + AUGMENT_SCALE))
            # outside the slice: air (-1000 HU), no body
            planes = [data.clean[i][None] + 1000.0, data.occupancy[i].astype(np.float32)]
            if inner_loss:
                planes.append(data.inner(i)[None].astype(np.float32))
            turned = _affine_crop(np.concatenate(planes), y0, x0, c, angle, scale)
            clean, occ = turned[0] - 1000.0, turned[1:1 + N_PLANES]
            inner = turned[-1] > 0.5 if inner_loss else None
        else:
            clean, occ = data.clean[i][sl], data.occupancy[i][:, y0:y0 + c, x0:x0 + c]
            inner = data.inner(i)[sl] if inner_loss else None
        low = clean
        if dose < 1.0:
            low = clean + sign * math.sqrt((1 - dose) / dose) * data.noise[i][sl].astype(np.float32)
        if rng.integers(2):  # left-right mirror
            low, clean, occ = low[:, ::-1], clean[:, ::-1], occ[:, :, ::-1]
            inner = None if inner is None else inner[:, ::-1]
        weights.append(np.ones(clean.shape, np.float32) if inner is None
                       else np.where(inner, np.float32(1.0), np.float32(OUTSIDE_WEIGHT)))
        fulls.append(np.ascontiguousarray(low))
        cleans.append(np.ascontiguousarray(clean))
        occs.append(np.ascontiguousarray(occ))
        doses.append(dose)
    full = _M(np.stack(fulls))[:, None]
    clean = F.avg_pool2d(_M(np.stack(cleans))[:, None], 2)
    occ_t = (torch.from_numpy(np.stack(occs)).float() / 255.0).clamp_(0.0, 1.0)
    return (F.avg_pool2d(full, 2), full, clean, occ_t, torch.tensor(doses), picked,
            torch.from_numpy(np.stack(weights))[:, None])


@torch.no_grad()
def predict_slabs(nets: dict, data: PointSlabs, dose: float, *, mirror: bool = False, spacing=None,
                  full_size: bool = False):
    """Denoised slices (model scale, area-averaged to 256, or at 512 with ``full_size``) and occupancy
    probabilities (512, None for a denoiser alone) of every slab at ``dose``; ``nets`` as for
    :func:`~napari_jointrecon.models.contour.contour_probabilities`, or a denoiser alone as ``{"model": net}``;
    ``mirror``: :func:`~napari_jointrecon.models.contour.contour_predict`; ``spacing``: each slab's
    slice spacing (:func:`slab_spacing`), for networks that read it."""
    from ..models.contour import contour_predict

    dens, probs = [], []
    for i in range(0, len(data.centres), 4):
        idx = range(i, min(i + 4, len(data.centres)))
        full = _M(np.stack([data.low(j, dose) for j in idx]))[:, None]
        x = F.avg_pool2d(full, 2)
        d = torch.full((x.shape[0],), float(dose))
        den, prob = contour_predict(nets, x, full, d, mirror=mirror,
                                    spacing=None if spacing is None else spacing[list(idx)])
        dens.append(den if full_size else F.avg_pool2d(den, 2))
        probs.append(prob)
    return torch.cat(dens), (torch.cat(probs) if probs[0] is not None else None)


def _msd(prob: np.ndarray, data: PointSlabs, i: int, level: float = 0.5, regions: str = "largest") -> float:
    """Mean surface distance (mm) of slab ``i``'s cloud drawn from ``prob`` at ``level`` from ``regions``."""
    return _msd_to(prob, data.reference[i], data.half_extent_mm[i], level, regions)


def _msd_to(prob: np.ndarray, reference: np.ndarray, half_extent_mm, level: float, regions: str) -> float:
    if not (prob > level).any() or (prob > level).all():
        return float("inf")
    pts = occupancy_points(prob, 1000, half_extent_mm=half_extent_mm, spread_in="mm", level=level, regions=regions)
    return surface_distance_mm(pts, reference, half_extent_mm)


def _reads_spacing(nets: dict) -> bool:
    return any(getattr(net, "spacing_input", False) for net in nets.values())


def validate(nets: dict, data: PointSlabs, *, dose: float = 0.25, outline: str = "network") -> dict[str, float]:
    """Mean surface distance (mm) and PSNR at 256 x 256 of ``nets`` on ``data`` at ``dose``. The
    clouds are drawn as training has always drawn them (the 0.5 level of the largest region), so
    that a resumed run's validation curve goes on comparably, with the network's own ``outline``
    or the slice's (:func:`~napari_jointrecon.models.contour.keep_slice_outline`); :func:`tune_sampler`
    chooses the product's sampler afterwards."""
    from .train import psnr_model_scale

    for net in nets.values():
        net.eval()
    den, prob = predict_slabs(nets, data, dose, spacing=slab_spacing(data) if _reads_spacing(nets) else None,
                              full_size=True)
    out = {"psnr": psnr_model_scale(F.avg_pool2d(den, 2), F.avg_pool2d(_M(data.clean)[:, None], 2))}
    if prob is not None:
        probs = [prob[i].numpy() if outline == "network" else keep_slice_outline(prob[i].numpy(), den[i, 0].numpy())
                 for i in range(prob.shape[0])]
        out["msd_mm"] = float(np.mean([_msd(p, data, i) for i, p in enumerate(probs)]))
    for net in nets.values():
        net.train()
    return out


def _architecture(config: dict, kind: str = "contour") -> dict:
    defaults = asdict(PointConfig())
    arch = {k: config.get(k, defaults[k]) for k in ARCHITECTURE_FIELDS}
    arch["spacing_input"] = bool(arch["spacing_input"]) and kind in SURFACE_KINDS
    if kind not in SURFACE_KINDS:  # a denoiser alone draws no cloud: its loss and validation know no outline
        arch["outline"] = "network"
    if kind != "seq_contour_regressor":
        arch["regressor_input"] = "full_dose"
    return arch


def _same_architecture(config: dict, cfg: PointConfig, kind: str = "contour") -> bool:
    return _architecture(config, kind) == _architecture(asdict(cfg), kind)


def train_points(kind: str, out_dir: str | Path, *, config: PointConfig | None = None, cache_dir="runs/cache",
                 denoiser: str | Path | None = None, log=None) -> dict:
    """Train one contour kind; resumable from ``out_dir/checkpoint.pt``; the best validation step's
    weights go to ``out_dir/best.pt`` and a summary to ``out_dir/summary.json``.

    ``kind``: ``"contour"`` (joint: normalised MSE + cross-entropy), ``"seq_contour_denoiser"``
    (normalised MSE) or ``"seq_contour_regressor"`` (cross-entropy on full-dose slices, or with
    ``regressor_input="denoised"`` on ``denoiser``'s output of low-dose ones; validated on the output
    of ``denoiser``, the trained sequential denoiser's ``best.pt``).
    """
    cfg = config or PointConfig()
    if not (isinstance(cfg.crop, int) and 8 <= cfg.crop <= OUTPUT_SIZE // 2 and cfg.crop % 8 == 0):
        raise ValueError(f"crop must be a multiple of 8 from 8 to {OUTPUT_SIZE // 2} pixels of the network's "
                         f"input, got {cfg.crop!r}")
    if not (isinstance(cfg.batch, int) and cfg.batch >= 1):
        raise ValueError(f"batch must be at least 1 crop, got {cfg.batch!r}")
    if cfg.outline not in OUTLINES:
        raise ValueError(f"outline must be one of {', '.join(OUTLINES)}, got {cfg.outline!r}")
    if kind not in SURFACE_KINDS:  # a denoiser alone: no occupancy loss to weigh, no cloud to draw
        cfg = replace(cfg, outline="network")
    if cfg.train_on not in TRAIN_ON:
        raise ValueError(f"train_on must be one of {', '.join(TRAIN_ON)}, got {cfg.train_on!r}")
    if cfg.regressor_input not in REGRESSOR_INPUTS:
        raise ValueError(f"regressor_input must be one of {', '.join(REGRESSOR_INPUTS)}, got {cfg.regressor_input!r}")
    if kind != "seq_contour_regressor":
        cfg = replace(cfg, regressor_input="full_dose")
    reads_denoised = cfg.regressor_input == "denoised"
    if kind == "seq_contour_regressor" and (reads_denoised or cfg.train_on == "train"):
        if denoiser is None:
            raise ValueError("the sequential regressor is validated on (or trained on) its denoiser's output: "
                             "pass denoiser=")
        if not Path(denoiser).exists():
            raise FileNotFoundError(f"the sequential regressor's denoiser {denoiser} does not exist: train it first")
    refit = cfg.train_on == "train+val"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log = log or run_logger(out / "train.log")
    torch.set_num_threads(cfg.threads)
    train = build_point_slabs("train", cache_dir=cache_dir, log=log)
    if refit:  # the validation patients are training data: nothing to validate on
        train, val = _joined(train, build_point_slabs("val_all", cache_dir=cache_dir, log=log)), None
    else:
        val = build_point_slabs("val", cache_dir=cache_dir, log=log)
    val_slabs = 0 if val is None else len(val.centres)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    net = build_contour(kind, cfg.width, cfg.spacing_input)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    state = {"step": 0, "elapsed": 0.0, "history": [], "best_step": None, "val_slabs": val_slabs}
    ck = out / "checkpoint.pt"
    if ck.exists():
        saved = torch.load(ck, map_location="cpu", weights_only=False)
        if not _same_architecture(saved.get("config", {}), cfg, kind):
            raise ValueError(f"{ck} was trained with {_architecture(saved.get('config', {}), kind)}, not "
                             f"{_architecture(asdict(cfg), kind)}: resume it with its own, or train into another folder")
        saved_seed = saved.get("config", {}).get("seed", 0)
        if saved_seed != cfg.seed:
            raise ValueError(f"{ck} is a run of seed {saved_seed}, not {cfg.seed}: resume it with its own, or train "
                             "into another folder")
        net.load_state_dict(saved["model"])
        opt.load_state_dict(saved["optimizer"])
        state = saved["state"]
        rng.bit_generator.state = saved["rng"]
        torch.set_rng_state(saved["torch_rng"])
        log(f"resumed {kind} at step {state['step']}")
        if state.get("val_slabs") != val_slabs:  # validated on another set: its best is no yardstick
            log(f"the validation set changed ({state.get('val_slabs', 'unrecorded')} -> {val_slabs} slabs): "
                "the best step is chosen again from here")
            state["best_step"], state["val_slabs"] = None, val_slabs
    train_spacing = slab_spacing(train) if net.spacing_input else None
    nets = {"model": net}
    den_net = None
    if kind == "seq_contour_regressor" and (reads_denoised or not refit):
        den_net = build_contour("seq_contour_denoiser", cfg.width)
        den_net.load_state_dict(torch.load(denoiser, map_location="cpu", weights_only=True))
        den_net.eval()
        nets = {"seq_contour_denoiser": den_net, "seq_contour_regressor": net}
    metric = "psnr" if kind == "seq_contour_denoiser" else "msd_mm"

    def better(h, best):
        return best is None or (h[metric] > best[metric] if metric == "psnr" else h[metric] < best[metric])

    def save_checkpoint():
        tmp = ck.with_suffix(".tmp")
        torch.save({"model": net.state_dict(), "optimizer": opt.state_dict(), "state": state,
                    "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(), "config": asdict(cfg),
                    "kind": kind}, tmp)
        tmp.replace(ck)

    net.train()
    t_start, last_ck = time.perf_counter() - state["elapsed"], time.perf_counter()
    while state["step"] < cfg.steps:
        step = state["step"]
        for group in opt.param_groups:
            group["lr"] = _lr(step, cfg.steps, cfg.lr, warmup=100)
        x, full, y, occ, dose, picked, weight = _sample(
            train, rng, cfg, full_dose=kind == "seq_contour_regressor" and not reads_denoised)
        if kind == "seq_contour_regressor" and reads_denoised:  # the denoiser's output, as in the product
            den_net.eval()  # validation leaves the networks it was given in training mode
            with torch.no_grad():
                full = den_net(x, dose, full=full)[0]
                x = F.interpolate(full, size=x.shape[-2:], mode="area")
        spacing = train_spacing[picked] if net.spacing_input else None
        den, logits = net(x, dose if net.dose_input else None, full=full, spacing=spacing)
        loss = torch.zeros(())
        if den is not None:
            loss = loss + normalised_mse(F.avg_pool2d(den, 2), y, x)
        if logits is not None:
            loss = loss + occupancy_loss(logits, occ, weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
        state["step"] = step + 1
        state["elapsed"] = time.perf_counter() - t_start
        if state["step"] % 50 == 0:
            log(f"{kind} step {state['step']}/{cfg.steps} loss {float(loss.detach()):.5f} {state['elapsed']:.0f} s")
        if refit and state["step"] == cfg.steps:  # a refit keeps its last step
            state["best_step"] = state["step"]
            torch.save(net.state_dict(), out / "best.pt")
            save_checkpoint()
            last_ck = time.perf_counter()
        elif not refit and (state["step"] % cfg.val_every == 0 or state["step"] == cfg.steps):
            h = {"step": state["step"], **validate(nets, val, outline=cfg.outline)}
            best = next((x for x in state["history"] if x["step"] == state["best_step"]), None)
            state["history"].append(h)
            if better(h, best):
                state["best_step"] = h["step"]
                torch.save(net.state_dict(), out / "best.pt")
            log(f"{kind} val step {h['step']}: " + " ".join(f"{k} {v:.3f}" for k, v in h.items() if k != "step")
                + f" (best step {state['best_step']})")
            save_checkpoint()
            last_ck = time.perf_counter()
        elif time.perf_counter() - last_ck > cfg.checkpoint_every_s:
            save_checkpoint()
            last_ck = time.perf_counter()
        if (out / STOP_FILE).exists():  # stop cleanly; a rerun continues the schedule
            (out / STOP_FILE).unlink()
            log(f"stop requested at step {state['step']}")
            save_checkpoint()
            break
    if refit and state["step"] < cfg.steps:
        log(f"the refit stopped before its last step ({state['step']}/{cfg.steps}): it has no weights to export "
            "until it is resumed to the end")
    summary = {"kind": kind, "config": asdict(cfg), "steps_done": state["step"], "best_step": state["best_step"],
               "wall_time_s": round(state["elapsed"], 1), "history": state["history"],
               "parameters": sum(p.numel() for p in net.parameters()), "train_slabs": len(train.centres),
               "train_series": sorted(set(train.series)), "val_series": sorted(set(val.series)) if val else [],
               "val_slabs": val_slabs}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def train_contour_all(out_root: str | Path = "runs/points", *, kinds=("contour", "seq_contour_denoiser",
                                                                     "seq_contour_regressor"),
                      config: PointConfig | None = None, cache_dir="runs/cache") -> None:
    """Train the kinds in order (the sequential regressor after its denoiser), each resumable: from
    its run's checkpoint, else from the committed ``checkpoints/KIND.pt``; a finished run is skipped."""
    import shutil

    from .train import COMMITTED_CHECKPOINTS

    root = Path(out_root)
    cfg = config or PointConfig()
    for kind in kinds:
        out = root / kind
        summary = out / "summary.json"
        if summary.exists():
            done = json.loads(summary.read_text())
            if not _same_architecture(done.get("config", {}), cfg, kind):
                raise ValueError(f"{out} holds a {kind} run trained with "
                                 f"{_architecture(done.get('config', {}), kind)}, not "
                                 f"{_architecture(asdict(cfg), kind)}: train into another folder")
            done_seed = done.get("config", {}).get("seed", 0)
            if done_seed != cfg.seed:
                raise ValueError(f"{out} holds a {kind} run of seed {done_seed}, not {cfg.seed}: train into another "
                                 "folder")
            if done["steps_done"] >= cfg.steps:
                continue
        # a committed run of this architecture: checkpoints/KIND.pt, or KIND_VARIANT.pt for another
        committed = [p for p in sorted(COMMITTED_CHECKPOINTS.glob(f"{kind}*.pt"))
                     if p.stem == kind or p.stem.startswith(f"{kind}_")]
        if not (out / "checkpoint.pt").exists() and committed:
            configs = {p: torch.load(p, map_location="cpu", weights_only=False).get("config", {}) for p in committed}
            same = [p for p, config in configs.items()
                    if _same_architecture(config, cfg, kind) and config.get("seed", 0) == cfg.seed]
            if same:
                out.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(same[0], out / "checkpoint.pt")
            else:
                print(f"no committed {kind} run was trained with {_architecture(asdict(cfg), kind)} and seed "
                      f"{cfg.seed} ({', '.join(p.name for p in committed)} differ): {kind} starts afresh")
        train_points(kind, out, config=cfg, cache_dir=cache_dir,
                     denoiser=root / "seq_contour_denoiser" / "best.pt" if kind == "seq_contour_regressor" else None)


CONTOUR_ARCHITECTURES = {
    "contour": "U-Net encoder of four scales at 256 x 256 (conv-BN-ReLU, widths {widths}, a dilated "
               "convolution at 32 x 32), the dose fraction as a second input channel; a denoising decoder "
               "(residual output, starts as the identity) and an occupancy-change decoder to 9 planes across "
               "the slab, added to the denoised slice's own occupancy logit (HU + 500) / 100 at 512 x 512 (the "
               "512-pixel input plus the network's correction, and the change, enlarged bilinearly); points: "
               "0.5 iso-surface, 20,000 drawn by area, thinned to 1000 evenly in mm by farthest-point sampling "
               "and 10 Lloyd iterations (models/contour.py)",
    "seq_contour_denoiser": "The contour network's encoder and denoising decoder, trained alone (normalised MSE).",
    "seq_contour_regressor": "The contour network's encoder and occupancy-change decoder without a dose input, "
                             "trained alone (cross-entropy) on full-dose slices; at test time it reads the "
                             "sequential denoiser's output.",
}


#: The samplers :func:`tune_sampler` tries: the iso level of the predicted occupancy, and its regions.
SAMPLER_LEVELS = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6)


def _sampler_scores(prob: np.ndarray, den: np.ndarray, reference: np.ndarray, half_extent_mm) -> dict[str, float]:
    """One slab's mean surface distance (mm) for every outline, level and regions of :func:`tune_sampler`."""
    from ..pointcloud import OCCUPANCY_REGIONS

    scores = {}
    for outline in OUTLINES:
        for level in SAMPLER_LEVELS:
            p = prob if outline == "network" else keep_slice_outline(prob, den, level)
            for regions in OCCUPANCY_REGIONS:
                scores[f"{regions} {level:g} {outline}"] = _msd_to(p, reference, half_extent_mm, level, regions)
    return scores


def _drawn_msd(prob: np.ndarray, den: np.ndarray, reference: np.ndarray, half_extent_mm, level: float,
               regions: str, outline: str) -> float:
    """One slab's mean surface distance (mm) of the cloud drawn as the product draws it."""
    p = prob if outline == "network" else keep_slice_outline(prob, den, level)
    return _msd_to(p, reference, half_extent_mm, level, regions)


def _contour_models_msd(data: PointSlabs, dose: float, sampler: dict, pool, log) -> dict[str, float]:
    """The mean surface distance (mm) on ``data`` of every contour point model whose weights are
    there and whose networks were trained on the training patients alone (not a refit on ``data``'s),
    each drawn with ``sampler``: which of them validation prefers."""
    from ..joint import JOINT_WEIGHTS_DIR, POINT_MODELS, load_point_model, point_model_card

    runs = point_model_card().get("contour_training", {}).get("runs", {})
    out = {}
    for name, kinds in POINT_MODELS.items():
        if "contour" not in name or not all((JOINT_WEIGHTS_DIR / f"{k}_seed0.pt").exists() for k in kinds):
            continue
        refit = [k for k in kinds if _is_refit(runs.get(f"{k}_seed0.pt", {}).get("config", {}))]
        if refit:
            log(f"  {name}: not scored ({', '.join(refit)} trained on the validation patients too)")
            continue
        nets = load_point_model(name)
        den, prob = predict_slabs(nets, data, dose, mirror=sampler["mirror"], full_size=True,
                                  spacing=slab_spacing(data) if _reads_spacing(nets) else None)
        n = prob.shape[0]
        args = ([prob[i].numpy() for i in range(n)], [den[i, 0].numpy() for i in range(n)], data.reference,
                data.half_extent_mm, [sampler["level"]] * n, [sampler["regions"]] * n, [sampler["outline"]] * n)
        per_slab = list(pool.map(_drawn_msd, *args) if pool else map(_drawn_msd, *args))
        out[name] = round(float(np.mean(per_slab)), 4)
        log(f"  {name} drawn so: {out[name]:.3f} mm")
    return out


def _single_threaded_torch():
    torch.set_num_threads(1)


def tune_sampler(*, dose: float = 0.25, cache_dir="runs/cache", out_dir="runs/points_data512",
                 write: bool = True, processes: int = 1, log=print) -> dict:
    """Choose how the contour networks' clouds are drawn (the card's ``contour_sampler``,
    :func:`napari_jointrecon.joint.contour_sampler`): of every iso level (:data:`SAMPLER_LEVELS`),
    regions (:data:`~napari_jointrecon.pointcloud.OCCUPANCY_REGIONS`), mirror averaging
    (:func:`~napari_jointrecon.models.contour.contour_predict`) and outline
    (:data:`~napari_jointrecon.models.contour.OUTLINES`), the one with the lowest mean
    surface distance on the validation patients' slabs at ``dose``, for the shipped joint network
    (``contour``). Its sequential counterpart is drawn the same way, so that the two differ only in
    their networks. The slabs are scored in ``processes`` worker processes (1: in
    this one; more are started with ``spawn``, so a script that asks for them needs the
    ``if __name__ == "__main__":`` guard; ``jointrecon tune-points`` uses 2). Returns the choice, the score of every
    candidate and, drawn with the choice, the mean surface distance of every contour point model
    whose weights are there (``models_validation_msd_mm``: which of them validation prefers)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from ..joint import JOINT_WEIGHTS_DIR, load_point_model, point_model_card

    if isinstance(processes, bool) or not isinstance(processes, int) or processes < 1:
        raise ValueError(f"processes must be a whole number of at least 1, got {processes!r}")
    model = "contour"
    trained = point_model_card().get("contour_training", {})
    if _is_refit(trained.get("runs", {}).get(f"{model}_seed0.pt", {}).get("config", {})):
        raise ValueError("the shipped contour network was trained on the validation patients too: its sampler "
                         "cannot be chosen on them (it keeps the one chosen for its recipe's run)")

    data = build_point_slabs("val", cache_dir=cache_dir, out_dir=out_dir, log=log)
    nets = load_point_model(model)
    scores = {}
    pool = None if processes == 1 else ProcessPoolExecutor(
        processes, mp_context=multiprocessing.get_context("spawn"), initializer=_single_threaded_torch)
    try:
        for mirror in (False, True):
            den, prob = predict_slabs(nets, data, dose, mirror=mirror, full_size=True,
                                      spacing=slab_spacing(data) if _reads_spacing(nets) else None)
            tasks = [(prob[i].numpy(), den[i, 0].numpy(), data.reference[i], data.half_extent_mm[i])
                     for i in range(prob.shape[0])]
            per_slab = list(pool.map(_sampler_scores, *zip(*tasks)) if pool else
                            (_sampler_scores(*t) for t in tasks))
            for key in per_slab[0]:
                key_m = key + (" mirror" if mirror else "")
                scores[key_m] = round(float(np.mean([s[key] for s in per_slab])), 4)
                log(f"  {key_m:30s} {scores[key_m]:.3f} mm")
        best = min(scores, key=scores.get)
        regions, level, outline, *mirror = best.split()
        chosen = {"level": float(level), "regions": regions, "mirror": bool(mirror), "outline": outline,
                  "model": model, "dose": dose,
                  "validation_msd_mm": scores,
                  "chosen_on": f"the validation patients' slabs ({len(data.centres)}, "
                               f"{', '.join(sorted(set(data.series)))})"}
        chosen["models_validation_msd_mm"] = _contour_models_msd(data, dose, chosen, pool, log)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    if write:
        card_file = JOINT_WEIGHTS_DIR / "card.json"
        card = json.loads(card_file.read_text())
        card["contour_sampler"] = chosen
        card_file.write_text(json.dumps(card, indent=2) + "\n")
    log(f"contour sampler: {best} ({scores[best]:.3f} mm; the 0.5 level of the largest region, as trained: "
        f"{scores.get('largest 0.5 network', float('nan')):.3f} mm)")
    return chosen


#: What a refit shares with the run its sampler was chosen for (besides :data:`ARCHITECTURE_FIELDS`).
RECIPE_FIELDS = ("steps", "lr", "seed")


def _check_refit_sampler(card: dict, config: dict) -> None:
    """A refit of the joint network is drawn with the sampler chosen on validation for its recipe's run
    on the training patients: the card must hold that sampler, for a network of the same recipe."""
    if "contour_sampler" not in card:
        raise ValueError("the card has no contour_sampler to draw the refit with: export the recipe's run on the "
                         "training patients and run jointrecon tune-points first")
    tuned = card.get("contour_training", {}).get("runs", {}).get("contour_seed0.pt", {}).get("config", {})
    if _recipe(tuned) != _recipe(config):
        raise ValueError(f"the card's contour_sampler was chosen for a network trained with {_recipe(tuned)}, not "
                         f"the refit's {_recipe(config)}: export the recipe's run and tune it first")


def _recipe(config: dict, kind: str = "contour") -> dict:
    """A run's recipe: its architecture and schedule, whatever patients it trained on."""
    defaults = asdict(PointConfig())
    recipe = {**_architecture(config, kind), **{k: config.get(k, defaults[k]) for k in RECIPE_FIELDS}}
    recipe.pop("train_on")
    return recipe


def export_contour(out_root: str | Path = "runs/points", kinds=None) -> Path:
    """Copy the best weights of each trained contour kind (of ``kinds``, default all) into the package
    as ``KIND_seedSEED.pt``, the run's seed, and record them, with their training, in the point models'
    card. The point models use seed 0; a run of another seed is exported beside it, for comparison."""
    import hashlib

    from ..joint import JOINT_WEIGHTS_DIR, POINT_MODELS

    root = Path(out_root)
    card_file = JOINT_WEIGHTS_DIR / "card.json"
    card = json.loads(card_file.read_text())
    runs = card.setdefault("contour_training", {"runs": {}})
    contour_summary = root / "contour" / "summary.json"
    exported = tuple(CONTOUR_ARCHITECTURES) if kinds is None else tuple(kinds)
    if "contour" in exported and (root / "contour" / "best.pt").exists() and contour_summary.exists():
        # checked before anything is written; a run of another seed is drawn by no model
        config = json.loads(contour_summary.read_text())["config"]
        if _is_refit(config) and not config.get("seed", 0):
            _check_refit_sampler(card, config)
    for kind in exported:
        best = root / kind / "best.pt"
        if not (best.exists() and (root / kind / "summary.json").exists()):  # not trained, or still training
            continue
        summary = json.loads((root / kind / "summary.json").read_text())
        state = torch.load(best, map_location="cpu", weights_only=True)
        seed = int(summary["config"].get("seed", 0))
        fname = f"{kind}_seed{seed}.pt"
        target = JOINT_WEIGHTS_DIR / fname
        tmp = target.with_suffix(".tmp")
        torch.save({k: v.contiguous() for k, v in state.items()}, tmp)
        tmp.replace(target)
        data = target.read_bytes()
        card["files"][fname] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
        # val_slabs: runs from before it was recorded have none
        entry = {k: summary[k] for k in ("steps_done", "best_step", "wall_time_s", "history", "train_slabs",
                                         "train_series", "val_series", "config", "val_slabs") if k in summary}
        if _is_refit(summary["config"]):
            # a refit has no validation curve of its own: its recipe's run on the training patients has,
            # where that is the run this one replaces
            prev = runs["runs"].get(fname, {})
            if _is_refit(prev.get("config", {})):
                prev = prev.get("recipe_run", {})
            if prev and _recipe(prev["config"], kind) == _recipe(summary["config"], kind):
                entry["recipe_run"] = prev
        runs["runs"][fname] = entry
        if seed:  # used by no point model: how they are built, their validation figures and sampler stay
            continue
        width = int(summary["config"].get("width", 16))
        widths = "/".join(str(k * width) for k in (1, 2, 3, 4))
        card["kinds"][kind] = {"architecture": CONTOUR_ARCHITECTURES[kind].format(widths=widths),
                               "parameters": summary["parameters"], "width": width}
        if kind == "seq_contour_regressor" and summary["config"].get("regressor_input") == "denoised":
            card["kinds"][kind]["architecture"] = card["kinds"][kind]["architecture"].replace(
                "on full-dose slices", "on the sequential denoiser's output of low-dose slices")
        if summary["config"].get("spacing_input") and kind in SURFACE_KINDS:
            card["kinds"][kind]["spacing_input"] = True
            card["kinds"][kind]["architecture"] += "; the series' slice spacing as a further input channel"
        if "recipe_run" not in entry:  # another network than the one scored: its models' figures go
            scored = card.get("contour_sampler", {}).get("models_validation_msd_mm", {})
            for name in [name for name in scored if kind in POINT_MODELS.get(name, ())]:
                del scored[name]
        if kind == "contour" and _is_refit(summary["config"]):
            # a refit on the validation patients cannot be tuned on them: it is drawn as its recipe's run was
            if "contour_sampler" in card:
                card["contour_sampler"]["refit"] = ("chosen for the same recipe trained on the training patients "
                                                    "alone; the shipped network is its refit on the training and "
                                                    "validation patients")
        elif kind == "contour" and card.pop("contour_sampler", None) is not None:
            print("the contour network changed: its sampler is chosen again by jointrecon tune-points")
    for name, model_kinds in POINT_MODELS.items():
        if all(f"{k}_seed0.pt" in card["files"] for k in model_kinds):
            card["models"][name] = list(model_kinds)
    runs["data"] = ("chest and abdomen series of the patient split (training/points.py): every slab centre of "
                    "the training patients' series (chest-ct-dicom without centres 55-85), read at 256 x 256 "
                    "(2x area averaging), occupancy targets at 512 x 512, doses 10/25/50/70 % (one in five uniform "
                    "in 5-100 %), the series' own textured noise, left-right mirroring and the noise's sign, random "
                    "crops (each run's config: `batch` crops of `crop` pixels of the 256 per step); a run whose "
                    "config has `augment` turned and scaled half its crops (up to 10 degrees and 10 %, the slice and "
                    "its targets; the noise added untouched); kept at the best validation step (mean surface "
                    "distance at 25 % on the validation patients' slabs, each run's `val_slabs`, the clouds drawn "
                    "with the run's `outline`: the network's own, or the slice's, when the occupancy loss also "
                    "counted a tenth outside the slice's outline; the sequential denoiser at its best PSNR); a run "
                    "whose config has `train_on` train+val is the refit of a recipe chosen that way on the training "
                    "and the validation patients (every slab centre of their series), not validated, kept at its "
                    "last step; a sequential regressor whose config has `regressor_input` denoised trained on its "
                    "denoiser's output of the low-dose slices, not on the full-dose ones")
    runs["seeds"] = sorted({int(run.get("config", {}).get("seed", 0)) for run in runs["runs"].values()})
    card_file.write_text(json.dumps(card, indent=2) + "\n")
    return card_file
