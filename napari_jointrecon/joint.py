"""Joint denoising + 3D point cloud: ``predict_point_cloud`` and the shipped point models.

Point models (weights in ``models/weights/joint/``, one file per training seed, checksums in
``models/weights/joint/card.json``):

* ``joint``: the design's two-branch network, linear point head;
* ``joint_fold``: the same encoder and denoising branch with a deformation decoder;
* ``sequential``: the baseline, a denoiser followed by a separate point regressor trained on
  full-dose slices;
* ``joint_occ``: the encoder and a denoising branch with an occupancy decoder: the network
  predicts which voxels of the slab lie inside the body, and the points are taken from that
  volume's surface (the most accurate of the design's networks; see ``docs/RESULTS.md``);
* ``sequential_occ``: its sequential baseline (denoiser, then an occupancy regressor trained on
  full-dose slices);
* ``contour``: a joint network at 256 x 256 trained across patients whose point branch predicts
  how the denoised slice's own -500 HU contour changes through the slab (:mod:`.models.contour`);
* ``sequential_contour``: its sequential counterpart (the same denoiser trained alone, then the
  occupancy-change network trained on full-dose slices);
* ``contour_ensemble``: the two point decoders on one denoised slice: the joint ``contour``
  network's denoised slice, and the mean of its occupancy and that of ``sequential_contour``'s
  regressor reading that slice.

The default (``DEFAULT_POINT_MODEL``) is the most accurate on the held-out patients
(``docs/RESULTS.md``; a test keeps it so).

The design's networks read a 128 x 128 slice, the contour networks 256 x 256 (area-averaged from
the input, which must be at least 128 x 128) and return 1000 points in the normalised slab frame of :mod:`.pointcloud`, mapped here to
world millimetres with the volume's geometry, so a napari Points layer with no transform lands on
the image layer made with :meth:`CTVolume.layer_kwargs`.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .pointcloud import SLAB_MM, SlabFrame, _largest_region, reference_point_cloud, slab_frame
from .volume import CTVolume

__all__ = ["POINT_MODELS", "MODEL_INPUT_SIZE", "DEFAULT_POINT_MODEL", "PointCloudPrediction", "predict_point_cloud",
           "reference_point_cloud", "load_point_model", "point_model_card", "contour_sampler",
           "JOINT_WEIGHTS_DIR"]

JOINT_WEIGHTS_DIR = Path(__file__).resolve().parent / "models" / "weights" / "joint"
POINT_MODELS = {
    "joint": ("joint",),
    "joint_fold": ("joint_fold",),
    "sequential": ("seq_denoiser", "seq_regressor"),
    "joint_occ": ("joint_occ",),
    "sequential_occ": ("seq_denoiser_dose", "seq_regressor_occ"),
    "contour": ("contour",),
    "sequential_contour": ("seq_contour_denoiser", "seq_contour_regressor"),
    # the joint contour network's denoised slice; its occupancy averaged with the sequential
    # regressor's reading that slice (models/contour.py, contour_probabilities)
    "contour_ensemble": ("contour", "seq_contour_regressor"),
}
#: Side (pixels) of the slice each point model reads (the contour networks draw at twice that).
MODEL_INPUT_SIZE = {name: 256 if "contour" in name else 128 for name in POINT_MODELS}
#: The most accurate point model on the held-out patients (``jointrecon evaluate``; a test keeps it so).
DEFAULT_POINT_MODEL = "sequential_contour"
#: The smallest share of a slice its body (the largest region above -500 HU) may cover. The chest
#: slices the point models learnt from are about a quarter body or more; on a slice of almost
#: nothing the linear-head models would still put out a whole chest.
MIN_BODY_FRACTION = 0.02
_LOADED: dict = {}


class PointCloudPrediction(NamedTuple):
    """``points``: (N, 3) world mm (z, y, x); ``denoised``: the denoised slice in HU (128 x 128 for the
    design's networks, 512 x 512 for the contour networks);
    ``device``: where the networks ran (``"cpu"`` after a GPU ran out of memory)."""

    points: np.ndarray
    denoised: np.ndarray
    device: str = "cpu"


def point_model_card() -> dict:
    path = JOINT_WEIGHTS_DIR / "card.json"
    if not path.exists():
        raise FileNotFoundError(f"no point-model card in {JOINT_WEIGHTS_DIR}: the joint models are not shipped")
    return json.loads(path.read_text())


def contour_sampler() -> dict:
    """How the contour networks' clouds are drawn from their occupancy: ``{"level", "regions", "mirror",
    "outline"}`` (:func:`napari_jointrecon.models.contour.run_contour`), the card's ``contour_sampler``,
    chosen on the validation patients (:func:`napari_jointrecon.training.points.tune_sampler`); the
    0.5 level of the largest region, with the network's outline, where the card has none."""
    chosen = point_model_card().get("contour_sampler") or {}
    return {"level": float(chosen.get("level", 0.5)), "regions": chosen.get("regions", "largest"),
            "mirror": bool(chosen.get("mirror", False)), "outline": chosen.get("outline", "network")}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_point_model(name: str = DEFAULT_POINT_MODEL, seed: int = 0) -> dict:
    """The network(s) of a point model, eval mode on the CPU, checksums verified.

    Returns ``{"model": net}`` or, for a model of several networks, the networks by kind
    (``{"seq_denoiser": net, "seq_regressor": net}``, ``{"contour": net, "seq_contour_regressor": net}``).
    """
    import torch

    from .models.joint import build_model

    if name not in POINT_MODELS:
        raise KeyError(f"unknown point model {name!r}; one of {', '.join(POINT_MODELS)}")
    key = (name, seed)
    if key in _LOADED:
        return _LOADED[key]
    card = point_model_card()
    nets = {}
    for kind in POINT_MODELS[name]:
        fname = f"{kind}_seed{seed}.pt"
        path = JOINT_WEIGHTS_DIR / fname
        expected = card.get("files", {}).get(fname, {}).get("sha256")
        if expected is None:
            raise FileNotFoundError(f"point model {name!r} seed {seed} has no trained weights ({fname})")
        if not path.exists():
            why = ("the wheel ships seed 0, the one the widgets, the API and the commands use; seeds 1 "
                   "and 2, for the three-seed tables of `jointrecon evaluate`, are in the source repository"
                   if seed else "the installation is incomplete")
            raise FileNotFoundError(f"point model {name!r} seed {seed}: {fname} is not in "
                                    f"{JOINT_WEIGHTS_DIR} ({why})")
        if _sha256(path) != expected:
            raise ValueError(f"{path}: checksum does not match the card's; the file is damaged")
        entry = card.get("kinds", {}).get(kind, {})
        net = build_model(kind, **{key: entry[key] for key in ("width", "spacing_input") if key in entry})
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        nets[kind] = net.eval()
    entry = {"model": nets[name]} if len(nets) == 1 else nets
    _LOADED[key] = entry
    return entry


def _check_slice(img: np.ndarray) -> None:
    from .models.joint import INPUT_SIZE

    if img.ndim != 2:
        raise ValueError(f"expected a 2D slice, got shape {img.shape}")
    if min(img.shape) < INPUT_SIZE:
        raise ValueError(f"the slice is {img.shape[0]} x {img.shape[1]} pixels; the point models need at "
                         f"least {INPUT_SIZE} x {INPUT_SIZE}")
    if not np.all(np.isfinite(img)):
        raise ValueError("the slice has NaN or infinite pixels")
    if float(img.max()) < -500:
        raise ValueError("the slice is all air (nothing above -500 HU): there is no body to reconstruct")
    body = _largest_region(img > -500)
    if body.mean() < MIN_BODY_FRACTION:
        raise ValueError(f"the slice shows almost no body (its largest region above -500 HU covers "
                         f"{100 * body.mean():.1f} % of it, at least {100 * MIN_BODY_FRACTION:g} % "
                         "needed): the point models were trained on chest slices and would invent a body")


class _Orientation(NamedTuple):
    """How a volume's slice turns into the orientation the point models were trained on (that of
    the chest series: array axes along world +z, +y, +x, i.e. feet to head, front to back and the
    patient's right to left): transpose the slice first, then flip its rows and columns; the slab
    runs the other way along z when ``flip_z``."""

    transpose: bool = False
    flip_rows: bool = False
    flip_cols: bool = False
    flip_z: bool = False


def _orientation(direction: np.ndarray) -> _Orientation:
    """The :class:`_Orientation` of a volume from its direction matrix (nearest axis for oblique
    volumes, such as a tilted gantry); a volume whose slices are not axial gets a clear error."""
    d = np.abs(np.asarray(direction, dtype=float))
    if [int(np.argmax(d[:, c])) == 0 for c in range(3)] != [True, False, False]:
        raise ValueError("the point models work on axial slices, and this volume's slices are not "
                         "axial (its first array axis does not run feet to head)")
    transpose = d[2, 1] > d[1, 1]  # the rows run along world x rather than y
    row_axis, col_axis = (2, 1) if transpose else (1, 2)
    signed = np.asarray(direction, dtype=float)
    return _Orientation(transpose=bool(transpose), flip_rows=bool(signed[1, row_axis] < 0),
                        flip_cols=bool(signed[2, col_axis] < 0), flip_z=bool(signed[0, 0] < 0))


def _to_model(img: np.ndarray, o: _Orientation) -> np.ndarray:
    img = img.T if o.transpose else img
    return np.ascontiguousarray(img[::-1 if o.flip_rows else 1, ::-1 if o.flip_cols else 1])


def _from_model(img: np.ndarray, o: _Orientation) -> np.ndarray:
    img = img[::-1 if o.flip_rows else 1, ::-1 if o.flip_cols else 1]
    return np.ascontiguousarray(img.T if o.transpose else img)


def _points_from_model(p: np.ndarray, o: _Orientation) -> np.ndarray:
    """Normalised points of the model's orientation -> those of the volume's own array axes."""
    p = p * np.array([-1.0 if o.flip_z else 1.0, -1.0 if o.flip_rows else 1.0, -1.0 if o.flip_cols else 1.0])
    return p[:, [0, 2, 1]] if o.transpose else p


def predict_point_cloud(ct_or_slice, *, slice_index: int | None = None, dose: float,
                        model: str = DEFAULT_POINT_MODEL, device: str = "auto",
                        spacing: tuple[float, float] | None = None, seed: int = 0) -> PointCloudPrediction:
    """Denoise one slice and predict the 3D point cloud of the body surface around it.

    Parameters
    ----------
    ct_or_slice : CTVolume, or a 2D ``(y, x)`` / 3D ``(z, y, x)`` array in HU
        A volume needs ``slice_index`` (default: the middle slice).
    dose : float
        The dose fraction of the scan (0.25 for 25 %). The point models were trained on all four
        dose levels together; ``joint_occ`` and the denoiser of ``sequential_occ`` take it as an
        input, the others ignore it (it is checked all the same).
    model : {"contour_ensemble", "contour", "sequential_contour", "joint", "joint_fold", "sequential", "joint_occ", "sequential_occ"}
    device : {"auto", "cuda", "mps", "cpu"}
        As :func:`napari_jointrecon.denoise`; a GPU out of memory falls back to the CPU.
    spacing : (dy, dx) in mm, optional
        Pixel spacing for a bare array (default 1 mm; its slices are taken as 1 mm apart); a
        CTVolume brings its own geometry, slice spacing included, which the contour networks read. A bare
        array is taken as stored in the orientation the models were trained on (that of DICOM
        axial slices: rows from the front to the back, columns from the patient's right to left); a
        CTVolume stored otherwise (a NIfTI file in RAS order, transposed slices, slices from head to
        feet) is turned to it for the networks, and the points and the denoised slice are turned back.
    seed : int
        Which training seed's weights to use (0, 1 or 2 for the design's networks; the contour
        networks have seed 0).

    Returns
    -------
    PointCloudPrediction
        ``points`` (1000, 3) in world millimetres, z y x (napari's order); for a bare 2D slice, the
        slice's own frame: pixel (0, 0) at y = x = 0 and the slice at z = 0. ``denoised``: the
        denoised slice in HU, 128 x 128 for the design's networks, 512 x 512 for the contour
        networks, across the field of view.
    """

    from .inference import select_device
    from .models.joint import downsample

    if isinstance(dose, bool) or not isinstance(dose, numbers.Real):
        raise ValueError(f"dose must be a number, the fraction of the full dose (0.25 for 25 %), got {dose!r}")
    dose = float(dose)
    if not (math.isfinite(dose) and 0.0 < dose <= 1.0):
        raise ValueError(f"dose must be a fraction in (0, 1] (0.25 for 25 %), got {dose!r}")
    if slice_index is not None and (isinstance(slice_index, bool) or not isinstance(slice_index, numbers.Integral)):
        raise ValueError(f"slice_index must be a whole number, got {slice_index!r}")
    ct = ct_or_slice if isinstance(ct_or_slice, CTVolume) else None
    arr = ct.hu if ct is not None else np.asarray(ct_or_slice)
    if ct is None and arr.ndim == 3 and arr.shape[-1] in (3, 4) and arr.shape[0] > 4:
        raise ValueError(f"an array of shape {arr.shape} looks like an RGB(A) picture, not CT in HU")
    if arr.ndim == 3:
        k = arr.shape[0] // 2 if slice_index is None else int(slice_index)
        if not 0 <= k < arr.shape[0]:
            raise ValueError(f"slice {k} is outside the volume (0-{arr.shape[0] - 1})")
        img = np.asarray(arr[k], dtype=np.float32)
    elif arr.ndim == 2:
        if slice_index not in (None, 0):
            raise ValueError(f"slice_index {slice_index} was given for a single 2D slice")
        k, img = 0, np.asarray(arr, dtype=np.float32)
    else:
        raise ValueError(f"expected a CT volume or a 2D slice, got an array of shape {arr.shape}")
    _check_slice(img)
    if ct is not None:
        frame = slab_frame(ct, k)
        orient = _orientation(ct.direction)
    else:
        if spacing is None:
            dy, dx = 1.0, 1.0
        else:
            sp = np.asarray(spacing, dtype=float).ravel() if np.ndim(spacing) == 1 else np.array([])
            if sp.shape != (2,) or not (np.isfinite(sp).all() and (sp > 0).all()):
                raise ValueError(f"spacing must be two positive pixel sizes in mm, (dy, dx), got {spacing!r}")
            dy, dx = float(sp[0]), float(sp[1])
        frame = SlabFrame(float(k), img.shape[0], img.shape[1], (1.0, dy, dx), SLAB_MM)
        orient = _Orientation()
    nets = load_point_model(model, seed)
    ext = frame.half_extent_mm
    model_ext = np.array([ext[0], ext[2], ext[1]]) if orient.transpose else ext  # by the model's axes
    if MODEL_INPUT_SIZE[model] == 128:  # the design's networks
        x = (downsample(_to_model(img, orient), MODEL_INPUT_SIZE[model])[None, None] + 1000.0) / 2000.0
        den, pts, used = _run_on(nets, x, select_device(device), extents=[model_ext], dose=[dose])
    else:  # the contour networks: read at 256, draw at 512
        import torch

        from .models.contour import to_sizes

        x, full = to_sizes((torch.from_numpy(_to_model(img, orient))[None, None] + 1000.0) / 2000.0)
        # the slice spacing, for the networks that read it (a bare array's frame has slices 1 mm apart)
        spacing = [float(frame.spacing[0])]
        den, pts, used = _run_on(nets, x, select_device(device), extents=[model_ext], dose=[dose], full=full,
                                 spacing=spacing, **contour_sampler())
    normalised = _points_from_model(pts[0].double().cpu().numpy(), orient)
    points = frame.normalised_to_world(normalised, ct)
    denoised = _from_model(den[0, 0].cpu().numpy(), orient) * 2000.0 - 1000.0
    return PointCloudPrediction(points.astype(np.float64), denoised.astype(np.float32), used)


def _run_on(nets: dict, x, dev: str, **kwargs):
    """The networks on ``dev``: ``(denoised, points, device used)``; a GPU that runs out of memory
    falls back to the CPU with a warning. The networks are left on the CPU."""
    from .inference import _is_oom

    try:
        return (*_run_device(nets, x, dev, **kwargs), dev)
    except RuntimeError as exc:
        if dev == "cpu" or not _is_oom(exc):
            raise
        warnings.warn(f"{dev} ran out of memory; the point cloud was predicted on the CPU", RuntimeWarning,
                      stacklevel=3)
        return (*_run_device(nets, x, "cpu", **kwargs), "cpu")
    finally:
        for net in nets.values():
            net.to("cpu")


def _run_device(nets: dict, x, dev: str, full=None, **kwargs):
    nets = {key: net.to(dev) for key, net in nets.items()}
    if full is not None:
        from .models.contour import run_contour

        return run_contour(nets, x.to(dev), full.to(dev), **kwargs)
    from .models.joint import run

    return run(nets, x.to(dev), **kwargs)
