"""Joint denoising + 3D point-cloud networks on a 128 x 128 slice (seed 000/001 design).

``JointNet`` is the two-branch network of the design: a shared convolutional encoder, a denoising
branch of convolutions with batch normalisation and dropout 0.3 (residual output, model scale), and
a reconstruction branch whose last layer is one linear layer to 1000 x 3 point coordinates
(normalised [-1, 1], z y x; see :mod:`napari_jointrecon.pointcloud`). Trained with
1.0 MSE + 1.0 Chamfer.

Variants built from the same parts:

* ``head="fold"``: a deformation decoder instead of the linear layer. A fixed template (the mean
  training shape) is moved point by point by a shared MLP that sees the image's global feature and
  the template point (FoldingNet-style), so the output is a smooth deformation of a plausible shape;
* ``head="occ"``: an occupancy decoder. A second decoder beside the denoising branch predicts, for
  each of ``N_PLANES`` planes across the slab, which pixels lie inside the body's -500 HU surface
  (logits). The points are then taken from that predicted volume's iso-surface
  (:func:`napari_jointrecon.pointcloud.occupancy_points`), so they lie on a surface by
  construction and are spread evenly; trained with binary cross-entropy against the slab's
  area-averaged body mask instead of Chamfer;
* ``dose_input=True``: the dose fraction enters as a second input channel (constant over the
  image), so that the denoising branch can remove as much noise as was added;
* ``denoise=False``: the point regressor of the sequential baseline (encoder + point head);
* ``head=None``: the denoiser of the sequential baseline (encoder + denoising branch).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..pointcloud import INPUT_SIZE

__all__ = ["JointNet", "INPUT_SIZE", "N_POINTS", "N_PLANES", "KINDS", "build_model", "downsample",
           "head_points", "occupancy_head_points", "forward", "run"]

N_POINTS = 1000
#: Planes of the occupancy head across the slab, at normalised z = -1, -0.75, ..., 1 (2 mm apart in
#: the 16 mm slab: the chest series' own slices).
N_PLANES = 9


def _cbr(cin: int, cout: int, stride: int = 1, dropout: float = 0.0) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout),
              nn.ReLU(inplace=True)]
    if dropout:
        layers.append(nn.Dropout2d(dropout))
    return nn.Sequential(*layers)


class SharedEncoder(nn.Module):
    """128 -> 64 -> 32 pixels; returns the features at every scale (for the denoising branch)."""

    def __init__(self, width: int = 16, in_channels: int = 1):
        super().__init__()
        self.s1 = nn.Sequential(_cbr(in_channels, width), _cbr(width, width))
        self.s2 = nn.Sequential(_cbr(width, 2 * width, stride=2), _cbr(2 * width, 2 * width))
        self.s3 = nn.Sequential(_cbr(2 * width, 3 * width, stride=2), _cbr(3 * width, 3 * width))

    def forward(self, x):
        f1 = self.s1(x)
        f2 = self.s2(f1)
        f3 = self.s3(f2)
        return f1, f2, f3


class DenoiseBranch(nn.Module):
    """Convolutions with batch normalisation and dropout 0.3, upsampling back to the input size."""

    def __init__(self, width: int = 16, dropout: float = 0.3):
        super().__init__()
        self.up3 = _cbr(3 * width, 2 * width, dropout=dropout)
        self.up2 = _cbr(4 * width, width, dropout=dropout)
        self.out = nn.Sequential(_cbr(2 * width, width), nn.Conv2d(width, 1, 3, padding=1))
        # start as the identity (zero residual), so training can only move away from the input
        # where that lowers the loss
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def forward(self, x, feats):
        f1, f2, f3 = feats
        y = F.interpolate(self.up3(f3), scale_factor=2, mode="bilinear", align_corners=False)
        y = F.interpolate(self.up2(torch.cat([y, f2], 1)), scale_factor=2, mode="bilinear",
                          align_corners=False)
        return x + self.out(torch.cat([y, f1], 1))


class GlobalFeature(nn.Module):
    """32 x 32 features -> a 256-vector (16 channels on a 4 x 4 grid: keeps where things are)."""

    def __init__(self, width: int = 16, channels: int = 16):
        super().__init__()
        self.reduce = _cbr(3 * width, channels, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.dim = channels * 16

    def forward(self, f3):
        return self.pool(self.reduce(f3)).flatten(1)


class LinearPointHead(nn.Module):
    """The design's reconstruction branch: one linear layer to ``n_points`` x 3."""

    def __init__(self, dim: int, n_points: int = N_POINTS):
        super().__init__()
        self.n_points = n_points
        self.linear = nn.Linear(dim, n_points * 3)

    def forward(self, g):
        return self.linear(g).view(-1, self.n_points, 3)


class FoldPointHead(nn.Module):
    """Deformation decoder: template + MLP([global feature, template point])."""

    def __init__(self, dim: int, n_points: int = N_POINTS, hidden: int = 128):
        super().__init__()
        self.register_buffer("template", torch.zeros(n_points, 3))
        self.mlp = nn.Sequential(
            nn.Conv1d(dim + 3, hidden, 1), nn.ReLU(inplace=True),
            nn.Conv1d(hidden, hidden, 1), nn.ReLU(inplace=True),
            nn.Conv1d(hidden, 3, 1))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, g):
        b, n = g.shape[0], self.template.shape[0]
        t = self.template.t()[None].expand(b, 3, n)
        z = torch.cat([g[:, :, None].expand(b, g.shape[1], n), t], 1)
        return (t + self.mlp(z)).transpose(1, 2)


class OccupancyHead(nn.Module):
    """A decoder like the denoising branch (no dropout, no residual): slab occupancy logits.

    Output ``(B, N_PLANES, 128, 128)``: plane ``i`` is the slab at normalised z = -1 + 2 i / (N_PLANES - 1).
    """

    def __init__(self, width: int = 16, planes: int = N_PLANES):
        super().__init__()
        self.up3 = _cbr(3 * width, 2 * width)
        self.up2 = _cbr(4 * width, width)
        self.out = nn.Sequential(_cbr(2 * width, width), nn.Conv2d(width, planes, 3, padding=1))

    def forward(self, feats):
        f1, f2, f3 = feats
        y = F.interpolate(self.up3(f3), scale_factor=2, mode="bilinear", align_corners=False)
        y = F.interpolate(self.up2(torch.cat([y, f2], 1)), scale_factor=2, mode="bilinear",
                          align_corners=False)
        return self.out(torch.cat([y, f1], 1))


class JointNet(nn.Module):
    """Input ``(B, 1, 128, 128)`` in model scale; returns ``(denoised or None, points or None)``.

    With ``head="occ"`` the second output is the occupancy logits ``(B, N_PLANES, 128, 128)``, not
    points: :func:`run` turns them into points.
    """

    def __init__(self, *, head: str | None = "linear", denoise: bool = True, width: int = 16,
                 n_points: int = N_POINTS, dose_input: bool = False):
        super().__init__()
        if head not in ("linear", "fold", "occ", None):
            raise ValueError(f"unknown point head {head!r}")
        if head is None and not denoise:
            raise ValueError("a network needs a denoising branch, a point head, or both")
        self.head_kind = head
        self.dose_input = dose_input
        self.encoder = SharedEncoder(width, in_channels=2 if dose_input else 1)
        self.denoise = DenoiseBranch(width) if denoise else None
        if head == "occ":
            self.feature = None
            self.points = OccupancyHead(width)
        elif head is not None:
            self.feature = GlobalFeature(width)
            self.points = (LinearPointHead if head == "linear" else FoldPointHead)(self.feature.dim, n_points)
        else:
            self.feature = self.points = None

    def set_template(self, template: torch.Tensor) -> None:
        if isinstance(self.points, FoldPointHead):
            self.points.template.copy_(template)
        elif isinstance(self.points, LinearPointHead):  # start from the mean shape
            with torch.no_grad():
                self.points.linear.bias.copy_(template.reshape(-1))

    def forward(self, x, dose=None):
        """``dose``: fractions ``(B,)``, needed when the network takes the dose as an input (a
        second input channel, constant over the image); ignored otherwise."""
        if self.dose_input:
            if dose is None:
                raise ValueError("this network takes the dose as an input: pass the dose fraction")
            dose = torch.as_tensor(dose, dtype=x.dtype, device=x.device).reshape(-1, 1, 1, 1)
            feats = self.encoder(torch.cat([x, dose.expand(x.shape[0], 1, *x.shape[2:])], 1))
        else:
            feats = self.encoder(x)
        den = self.denoise(x, feats) if self.denoise is not None else None
        if self.points is None:
            pts = None
        elif self.feature is None:
            pts = self.points(feats)
        else:
            pts = self.points(self.feature(feats[2]))
        return den, pts


KINDS = ("joint", "joint_fold", "seq_denoiser", "seq_regressor", "joint_occ", "seq_denoiser_dose",
         "seq_regressor_occ")


def build_model(kind: str, **options) -> nn.Module:
    """A point network of ``kind``; ``options``: the contour kinds' ``width`` and ``spacing_input``
    (:func:`~napari_jointrecon.models.contour.build_contour`; the design's networks take none)."""
    from .contour import CONTOUR_KINDS, build_contour

    if kind in CONTOUR_KINDS:
        return build_contour(kind, **options)
    if options:
        raise ValueError(f"the design's network {kind!r} has a fixed architecture (no {', '.join(options)})")
    if kind == "joint":
        return JointNet(head="linear")
    if kind == "joint_fold":
        return JointNet(head="fold")
    if kind == "seq_denoiser":
        return JointNet(head=None)
    if kind == "seq_regressor":
        return JointNet(head="linear", denoise=False)
    if kind == "joint_occ":
        return JointNet(head="occ", dose_input=True)
    if kind == "seq_denoiser_dose":
        return JointNet(head=None, dose_input=True)
    if kind == "seq_regressor_occ":
        return JointNet(head="occ", denoise=False)
    raise ValueError(f"unknown kind {kind!r}; one of {', '.join(KINDS)}")


def downsample(hu: np.ndarray | torch.Tensor, size: int = INPUT_SIZE) -> torch.Tensor:
    """``(..., H, W)`` -> ``(..., size, size)`` by area averaging (4x4 means for 512 x 512); a
    smaller image is enlarged bilinearly."""
    x = torch.as_tensor(hu, dtype=torch.float32)
    lead = x.shape[:-2]
    x = x.reshape(-1, 1, *x.shape[-2:])
    if min(x.shape[-2:]) >= size:
        y = F.interpolate(x, size=(size, size), mode="area")
    else:
        y = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return y.reshape(*lead, size, size)


def head_points(net: JointNet, out: torch.Tensor, extents=None, *, strict: bool = True) -> torch.Tensor:
    """A point head's output as points: occupancy logits go through their iso-surface.

    An empty (or full) predicted occupancy raises, unless ``strict=False`` (validation during
    training, when an early network may predict nothing): its points are then all at the slab's
    centre, scored as the miss they are.
    """
    if net.head_kind != "occ":
        return out
    return occupancy_head_points(torch.sigmoid(out).cpu().numpy(), extents, strict=strict,
                                 spread_in=getattr(net, "spread_in", "normalised"))


def occupancy_head_points(prob: np.ndarray, extents=None, *, strict: bool = True,
                          spread_in: str = "normalised") -> torch.Tensor:
    """``(B, N_POINTS, 3)`` points from occupancies ``(B, planes, H, W)`` (:func:`head_points`);
    ``spread_in``: the frame the points are spread evenly in (:func:`~napari_jointrecon.pointcloud.occupancy_points`)."""
    from ..pointcloud import occupancy_points

    pts = []
    for k, p in enumerate(prob):
        ext = None if extents is None else extents[k]
        if not strict and ((p > 0.5).all() or not (p > 0.5).any()):
            pts.append(np.zeros((N_POINTS, 3)))
            continue
        pts.append(occupancy_points(p, N_POINTS, half_extent_mm=ext, spread_in=spread_in))
    return torch.from_numpy(np.stack(pts)).float()


def forward(kinds_models: dict, x: torch.Tensor, dose=None):
    """One model or the sequential pair on a batch: ``(denoised, raw point output, point network)``
    (the raw output of an occupancy head is its logits)."""
    denoiser = next((kinds_models[k] for k in ("seq_denoiser", "seq_denoiser_dose", "seq_contour_denoiser")
                     if k in kinds_models), None)
    if denoiser is None:
        den, raw = kinds_models["model"](x, dose)
        return den, raw, kinds_models["model"]
    den, _ = denoiser(x, dose)
    regressor = next(kinds_models[k] for k in ("seq_regressor", "seq_regressor_occ", "seq_contour_regressor")
                     if k in kinds_models)
    return den, regressor(den)[1], regressor


@torch.no_grad()
def run(kinds_models: dict, x: torch.Tensor, chunk: int = 32, extents=None, strict: bool = True,
         dose=None):
    """Denoised images and points for a stack, through one model or the sequential pair.

    ``extents``: per image, the millimetres per normalised unit (:attr:`SlabFrame.half_extent_mm`),
    used by occupancy heads to sample their surface by area; default a 16 mm slab, 500 mm field.
    ``dose``: per image, the dose fraction (networks with a dose input need it).
    """
    dens, ptss = [], []
    dose = None if dose is None else torch.as_tensor(dose, dtype=torch.float32).reshape(-1)
    for i in range(0, x.shape[0], chunk):
        xi = x[i:i + chunk]
        di = None if dose is None else dose[i:i + chunk].to(xi.device)
        ext = None if extents is None else extents[i:i + chunk]
        den, pts, net = forward(kinds_models, xi, di)
        if pts is not None:
            pts = head_points(net, pts, ext, strict=strict)
        dens.append(den)
        ptss.append(pts)
    return (torch.cat(dens) if dens[0] is not None else None,
            torch.cat(ptss) if ptss[0] is not None else None)
