"""The contour point network: a joint denoiser whose point branch moves the slice's own contour.

The slab surface a point model must draw (:mod:`napari_jointrecon.pointcloud`: the -500 HU surface
of a 16 mm slab) is, near the slice, the slice's own -500 HU contour. Copying that contour through
the slab unchanged (the *extrusion*) is already a strong prediction; what one slice cannot show
directly is how the surface changes 2 to 8 mm away. So this network does not draw the surface from
nothing. Its occupancy logits for each of the ``N_PLANES`` planes across the slab are

    base + delta(plane),   base = (denoised HU + 500) / BASE_HU

where ``base`` is the denoised slice's own occupancy logit (0 at -500 HU: the extrusion of its
contour) and ``delta`` is the branch's prediction of the change, initialised to zero, so that an
untrained network *is* the extrusion of the denoised slice.

The contour is drawn at full resolution (``2 * INPUT_SIZE`` = 512 pixels): the network reads the
slice at 256 x 256, and its outputs are brought to 512 x 512 the way that keeps the slice's own
detail: the denoised slice at 512 is the 512-pixel input plus the network's correction (denoised
minus input at 256) enlarged bilinearly, and ``delta`` is enlarged bilinearly. (Drawn at 256 pixels,
even the extrusion alone lies further from the true surface than at 512.) The points come from an iso-surface
of the predicted occupancy (:func:`napari_jointrecon.pointcloud.occupancy_points`), so they lie on
a surface by construction; they are spread evenly in millimetres (``spread_in="mm"``), as they are
drawn. How they are drawn is the point models' card's ``contour_sampler``, chosen on the validation
patients (``jointrecon tune-points``): the iso level, every region inside the body's outline (so the
vessels and airways the slab has are drawn even where the prediction does not join them to the
body), the mean of the network on the slice and on its mirror image (:func:`contour_predict`), and
whose outline of the body is drawn: the network's, or the denoised slice's own copied through the
slab with the network's prediction kept inside it (:func:`keep_slice_outline`).

One encoder serves both outputs (the design's joint network): a U-Net of four scales at
``INPUT_SIZE`` = 256 pixels (2x area averaging of a 512 x 512 slice), the dose fraction as a second
input channel, a denoising decoder (residual, starts as the identity) and the occupancy-change
decoder. A network with ``spacing_input`` also reads the series' slice spacing (a third channel, in
units of ``SPACING_UNIT_MM``): the true slab surface runs straight between the series' slices, as
marching cubes draws it, so how far it changes through the slab depends on how far apart they are
(2 to 8 mm in the training data); the point models' card says which networks read it. The
sequential counterpart is the same denoiser trained alone, then the same network without a
denoising decoder (``denoise=False``) trained on full-dose slices (or, with the training option
``regressor_input="denoised"``, on its denoiser's output of low-dose ones), whose ``base`` is its
input's. The ensemble (:func:`contour_probabilities`) reads the joint network's denoised slice with
both point decoders and averages their occupancy.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["ContourNet", "INPUT_SIZE", "OUTPUT_SIZE", "N_PLANES", "BASE_HU", "CONTOUR_KINDS", "SURFACE_KINDS",
           "build_contour", "contour_forward", "contour_probabilities", "contour_predict", "ENSEMBLE_KINDS",
           "to_sizes", "run_contour", "OUTLINES", "OUTLINE_MARGIN_PX", "keep_slice_outline"]

#: Pixels of the slice the network reads (area-averaged from the input).
INPUT_SIZE = 256
#: Pixels of the denoised slice and the occupancy planes the points are drawn from.
OUTPUT_SIZE = 2 * INPUT_SIZE
#: Planes across the 16 mm slab, 2 mm apart (normalised z = -1, -0.75, ..., 1).
N_PLANES = 9
#: HU per unit of the base logit: the slice's own occupancy is sigmoid((HU + 500) / BASE_HU).
BASE_HU = 100.0
#: Millimetres per unit of the slice-spacing input (a network with ``spacing_input``).
SPACING_UNIT_MM = 10.0
CONTOUR_KINDS = ("contour", "seq_contour_denoiser", "seq_contour_regressor")
#: The kinds that draw the surface: only they can read the slice spacing (``spacing_input``).
SURFACE_KINDS = ("contour", "seq_contour_regressor")
#: Whose outline of the body a cloud is drawn with (:func:`keep_slice_outline`): the network's, or
#: the slice's own, copied through the slab.
OUTLINES = ("network", "slice")
#: Pixels (of the 512) the slice's outline is shrunk by before the network's occupancy is kept
#: inside it, so that the outline's surface stays the slice's where the two meet.
OUTLINE_MARGIN_PX = 2


def _cbr(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


class _Decoder(nn.Module):
    """32 -> 256 pixels with skip connections; ``out`` channels, last layer zero (starts at 0)."""

    def __init__(self, widths: tuple[int, ...], out: int):
        super().__init__()
        w1, w2, w3, w4 = widths
        self.up4 = _cbr(w4, w3)
        self.up3 = _cbr(2 * w3, w2)
        self.up2 = _cbr(2 * w2, w1)
        self.head = nn.Sequential(_cbr(2 * w1, w1), nn.Conv2d(w1, out, 3, padding=1))
        nn.init.zeros_(self.head[-1].weight)
        nn.init.zeros_(self.head[-1].bias)

    @staticmethod
    def _up(y, like):
        return F.interpolate(y, size=like.shape[-2:], mode="bilinear", align_corners=False)

    def forward(self, feats):
        f1, f2, f3, f4 = feats
        y = self._up(self.up4(f4), f3)
        y = self._up(self.up3(torch.cat([y, f3], 1)), f2)
        y = self._up(self.up2(torch.cat([y, f2], 1)), f1)
        return self.head(torch.cat([y, f1], 1))


class ContourNet(nn.Module):
    """Input ``(B, 1, H, W)`` in model scale ((HU + 1000) / 2000), ``H`` and ``W`` divisible by 8;
    returns ``(denoised or None, occupancy logits (B, N_PLANES, H, W) or None)``, both at
    ``2 H x 2 W`` when ``forward`` is given the slice at that size too (``full``)."""

    #: the point output is occupancy logits (:func:`napari_jointrecon.models.joint.head_points`),
    #: whose points are spread evenly in millimetres
    head_kind = "occ"
    spread_in = "mm"

    def __init__(self, *, denoise: bool = True, points: bool = True, dose_input: bool = True,
                 width: int = 16, planes: int = N_PLANES, spacing_input: bool = False):
        super().__init__()
        if not (denoise or points):
            raise ValueError("a network needs a denoising decoder, a point decoder, or both")
        self.dose_input = dose_input
        #: the series' slice spacing as an input channel: the true slab surface runs straight
        #: between the series' slices (as marching cubes draws it), so how it changes through the
        #: slab depends on how far apart they are (2 to 8 mm in the data)
        self.spacing_input = spacing_input
        widths = (width, 2 * width, 3 * width, 4 * width)
        cin = 1 + int(dose_input) + int(spacing_input)
        self.s1 = nn.Sequential(_cbr(cin, widths[0]), _cbr(widths[0], widths[0]))
        self.s2 = nn.Sequential(_cbr(widths[0], widths[1], 2), _cbr(widths[1], widths[1]))
        self.s3 = nn.Sequential(_cbr(widths[1], widths[2], 2), _cbr(widths[2], widths[2]))
        self.s4 = nn.Sequential(_cbr(widths[2], widths[3], 2), _cbr(widths[3], widths[3]),
                                nn.Conv2d(widths[3], widths[3], 3, padding=2, dilation=2, bias=False),
                                nn.BatchNorm2d(widths[3]), nn.ReLU(inplace=True))
        self.denoise = _Decoder(widths, 1) if denoise else None
        self.points = _Decoder(widths, planes) if points else None

    def forward(self, x, dose=None, full=None, spacing=None):
        """``full``: the same slice at ``2 H x 2 W`` (model scale); with it, the denoised slice and
        the logits come at that size (module docstring). ``spacing``: the series' slice spacing in
        mm, per slice or one for all (a network with ``spacing_input`` needs it)."""
        inputs = [x]
        for name, value, scale, needed in (("dose fraction", dose, 1.0, self.dose_input),
                                           ("slice spacing in mm", spacing, SPACING_UNIT_MM, self.spacing_input)):
            if not needed:
                continue
            if value is None:
                raise ValueError(f"this network takes the {name} as an input: pass it")
            v = torch.as_tensor(value, dtype=x.dtype, device=x.device).reshape(-1, 1, 1, 1) / scale
            inputs.append(v.expand(x.shape[0], 1, *x.shape[2:]))
        inp = torch.cat(inputs, 1) if len(inputs) > 1 else x
        f1 = self.s1(inp)
        f2 = self.s2(f1)
        f3 = self.s3(f2)
        f4 = self.s4(f3)
        feats = (f1, f2, f3, f4)
        residual = self.denoise(feats) if self.denoise is not None else None
        if full is None:
            den = x + residual if residual is not None else None
            image = den if den is not None else x
        else:
            den = full + _up(residual, full) if residual is not None else None
            image = den if den is not None else full
        if self.points is None:
            return den, None
        delta = self.points(feats)
        if full is not None:
            delta = _up(delta, full)
        base = (image * 2000.0 - 500.0) / BASE_HU  # (HU + 500) / BASE_HU with HU = 2000 v - 1000
        return den, base + delta


def _up(y, like):
    return F.interpolate(y, size=like.shape[-2:], mode="bilinear", align_corners=False)


def to_sizes(img) -> tuple[torch.Tensor, torch.Tensor]:
    """A model-scale slice ``(B, 1, H, W)`` at the network's size and at the output size (area
    averaging where it is larger, bilinear where smaller)."""
    def resize(t, size):
        if min(t.shape[-2:]) >= size:
            return F.interpolate(t, size=(size, size), mode="area")
        return F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)

    return resize(img, INPUT_SIZE), resize(img, OUTPUT_SIZE)


def contour_forward(nets: dict, x, full, dose=None, spacing=None):
    """One contour model or its sequential pair on a batch: ``(denoised at full size, logits at
    full size)``. ``nets``: ``{"model": net}`` or ``{"seq_contour_denoiser": ..., "seq_contour_regressor": ...}``;
    ``spacing``: the slice spacing in mm, for the networks that read it."""
    if "model" in nets:
        return nets["model"](x, dose, full=full, spacing=spacing)
    den_full, _ = nets["seq_contour_denoiser"](x, dose, full=full)
    den_small = F.interpolate(den_full, size=x.shape[-2:], mode="area")
    return den_full, nets["seq_contour_regressor"](den_small, full=den_full, spacing=spacing)[1]


#: The kinds of the ensemble ``contour_ensemble`` (:func:`contour_probabilities`).
ENSEMBLE_KINDS = ("contour", "seq_contour_regressor")


def contour_probabilities(nets: dict, x, full, dose=None, spacing=None):
    """``(denoised at full size, occupancy probabilities at full size or None)`` of a batch.
    ``nets``: as for :func:`contour_forward`, or the ensemble ``{"contour": joint network,
    "seq_contour_regressor": regressor}``: the joint network's denoised slice, and the mean of the
    joint network's occupancy and the sequential regressor's, which reads that denoised slice (two
    point decoders on one denoised slice; on the validation patients the mean beat each alone)."""
    if set(nets) == set(ENSEMBLE_KINDS):
        den, logits = nets["contour"](x, dose, full=full, spacing=spacing)
        second = nets["seq_contour_regressor"](F.interpolate(den, size=x.shape[-2:], mode="area"), full=den,
                                               spacing=spacing)[1]
        return den, 0.5 * (torch.sigmoid(logits.float()) + torch.sigmoid(second.float()))
    den, logits = contour_forward(nets, x, full, dose, spacing)
    return den, None if logits is None else torch.sigmoid(logits.float())


def contour_predict(nets: dict, x, full, dose=None, *, mirror: bool = False, spacing=None):
    """``(denoised at full size, occupancy probabilities at full size)`` of a batch (None for a
    denoiser alone); ``nets``: as for :func:`contour_probabilities`. ``mirror``: the mean of the
    networks on the slices and on their left-right mirror images (mirrored back), as they were
    trained on both (the point models' card's ``contour_sampler`` says whether the product does;
    chosen on validation)."""
    if not mirror:
        return contour_probabilities(nets, x, full, dose, spacing)
    # the slices and their mirror images in one batch: one pass of the networks
    n = x.shape[0]

    def twice(v):
        return None if v is None else torch.as_tensor(v, dtype=x.dtype, device=x.device).reshape(-1).expand(n).repeat(2)

    den, prob = contour_probabilities(nets, torch.cat([x, x.flip(-1)]), torch.cat([full, full.flip(-1)]),
                                      twice(dose), twice(spacing))
    den = 0.5 * (den[:n] + den[n:].flip(-1))
    if prob is None:
        return den, None
    return den, 0.5 * (prob[:n] + prob[n:].flip(-1))


def _outline(mask):
    """The filled outer boundary of the largest connected region of a 2D mask (all False if empty)."""
    from ..pointcloud import _largest_region, fill_holes

    region = _largest_region(mask)
    return np.zeros_like(mask) if region is None else fill_holes(region)


def keep_slice_outline(prob, denoised, level: float = 0.5):
    """Occupancy probabilities ``(planes, H, W)`` whose outline of the body is the slice's own.

    The body's outer outline through a 16 mm slab depends on the patient's build (the flanks narrow
    above the hips, widen to the shoulders), which one slice of a few training patients cannot teach;
    on the validation patients the networks' predicted change of the outline lost to the slice's
    own outline copied through the slab (the extrusion's), while what they predict inside the body
    (lungs, airways, gas and vessels that come and go through the slab) won. So: the slice's
    occupancy ``sigmoid((HU + 500) / BASE_HU)`` of the ``denoised`` slice (``(H, W)``, model scale),
    with the network's ``prob`` kept on each plane where the network's own outline there and the
    slice's (shrunk by ``OUTLINE_MARGIN_PX``) both hold; inside the slice's outline where the network's
    own ends, tissue (the network says the slice's lungs or gas do not reach there on that plane).
    ``level``: the iso level the cloud is drawn at."""
    from scipy import ndimage

    prob = np.asarray(prob, dtype=np.float32)
    base = 1.0 / (1.0 + np.exp(-(np.asarray(denoised, dtype=np.float32) * 2000.0 - 500.0) / BASE_HU))
    outline = _outline(base > level)
    if not outline.any():  # no body in the slice: nothing to keep
        return prob
    inner = ndimage.binary_erosion(outline, iterations=OUTLINE_MARGIN_PX)
    out = np.repeat(base[None], prob.shape[0], axis=0)
    box = ndimage.find_objects(inner.astype(np.uint8))
    if not box:  # a body thinner than the margin: the slice's occupancy alone
        return out
    # only inside the slice's outline does the network's occupancy count: its box, with a margin
    box = tuple(slice(max(b.start - 8, 0), b.stop + 8) for b in box[0])
    inside = inner[box]
    for k, plane in enumerate(prob[(slice(None), *box)]):
        keep = inside & _outline(plane > level)
        out[(k, *box)] = np.where(keep, plane, np.where(inside, np.float32(1.0), base[box]))
    return out


def build_contour(kind: str, width: int = 16, spacing_input: bool = False) -> ContourNet:
    """A contour kind (:data:`CONTOUR_KINDS`) of encoder ``width`` (the first scale's channels), with
    the slice spacing as an input where ``spacing_input`` (not the sequential denoiser's: it draws no
    surface); the point models' card records each trained kind's."""
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"width must be a whole number of channels, got {width!r}")
    spacing_input = spacing_input and kind in SURFACE_KINDS
    if kind == "contour":
        return ContourNet(width=width, spacing_input=spacing_input)
    if kind == "seq_contour_denoiser":
        return ContourNet(points=False, width=width)
    if kind == "seq_contour_regressor":
        return ContourNet(denoise=False, dose_input=False, width=width, spacing_input=spacing_input)
    raise ValueError(f"unknown contour kind {kind!r}; one of {', '.join(CONTOUR_KINDS)}")


@torch.no_grad()
def run_contour(nets: dict, x, full, *, extents=None, dose=None, n_points: int = 1000, level: float = 0.5,
                regions: str = "largest", mirror: bool = False, spacing=None, outline: str = "network"):
    """Denoised slices (full size) and ``(B, n_points, 3)`` normalised points of a batch: the ``level``
    iso-surface of the predicted occupancy (its ``regions``:
    :func:`napari_jointrecon.pointcloud.occupancy_regions`; ``mirror``: :func:`contour_predict`;
    ``outline``: :data:`OUTLINES`, ``"slice"`` keeps the slice's own, :func:`keep_slice_outline`),
    spread evenly in millimetres. The product draws with the point models' card's
    ``contour_sampler`` (tuned on validation)."""
    from ..pointcloud import occupancy_points

    if outline not in OUTLINES:
        raise ValueError(f"outline must be one of {', '.join(OUTLINES)}, got {outline!r}")
    d = None if dose is None else torch.as_tensor(dose, dtype=torch.float32).reshape(-1).to(x.device)
    den, prob = contour_predict(nets, x, full, d, mirror=mirror, spacing=spacing)
    prob = prob.cpu().numpy()
    if outline == "slice":  # the slice's outline: the denoised slice's, or the input's for a regressor alone
        slices = (den if den is not None else full)[:, 0].float().cpu().numpy()
        prob = np.stack([keep_slice_outline(p, s, level) for p, s in zip(prob, slices)])
    pts = [occupancy_points(p, n_points, half_extent_mm=None if extents is None else extents[k], spread_in="mm",
                            level=level, regions=regions)
           for k, p in enumerate(prob)]
    return den, torch.from_numpy(np.stack(pts)).float()
