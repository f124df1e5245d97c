"""An anatomical thorax phantom in HU, the project's own sample data.

Deterministic from a seed and generated in about a second at 1 mm. It has what the rest of the
project needs to be exercised on: a body outline with fat and muscle, two lungs with branching
vessel trees and a few nodules, heart and aorta, a segmented spine, ribs and sternum, and mild
correlated texture. It is noise-free, so it serves as a clean reference for dose simulation.
"""

from __future__ import annotations

import re

import numpy as np
from scipy import ndimage

from .volume import CTVolume

__all__ = ["make_thorax_phantom", "TISSUE_HU", "PHANTOM_STUDY", "is_noise_free_phantom"]

#: The phantom's study description (kept by the DICOM, NIfTI, MetaImage and NRRD writers).
PHANTOM_STUDY = "napari-jointrecon sample data"
#: Its series description as made ("Thorax phantom (seed 0)", the sample data's
#: "Thorax phantom 2.5 mm (seed 0)"); a simulated or denoised copy gets more after it.
_PHANTOM_SERIES = re.compile(r"Thorax phantom( [\d.]+ mm)? \(seed \d+\)")


def is_noise_free_phantom(volume) -> bool:
    """Whether ``volume`` is the noise-free phantom: as made, or read back from a file it was
    written to (its series and study descriptions survive the writers). Dose simulation then
    draws Poisson counts instead of adding the noise a real scan lacks."""
    if not isinstance(volume, CTVolume) or not _PHANTOM_SERIES.fullmatch(volume.series_description or ""):
        return False
    return volume.source_format == "generated" or volume.study_description == PHANTOM_STUDY

#: Nominal HU of the phantom's tissues.
TISSUE_HU = {
    "air": -1000.0,
    "lung": -850.0,
    "fat": -100.0,
    "soft_tissue": 40.0,
    "muscle": 50.0,
    "blood": 45.0,
    "vessel": 40.0,
    "nodule": 30.0,
    "spinal_canal": 15.0,
    "disc": 80.0,
    "cancellous_bone": 300.0,
    "cortical_bone": 800.0,
    "rib": 650.0,
}

_FOV_MM = 320.0


def _ellipse(x, y, cx, cy, ax, ay):
    return ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 <= 1.0


def _draw_capsule(vol, p0, p1, radius, grid_axes, value, inside=None):
    """Set voxels within ``radius`` of the segment p0-p1 (mm, z/y/x) to ``value``."""
    zs, ys, xs = grid_axes
    lo = np.minimum(p0, p1) - radius
    hi = np.maximum(p0, p1) + radius
    sl = []
    for axis, (a, b) in zip((zs, ys, xs), zip(lo, hi)):
        i0 = max(int(np.searchsorted(axis, a)), 0)
        i1 = min(int(np.searchsorted(axis, b, side="right")), len(axis))
        if i1 <= i0:
            return
        sl.append(slice(i0, i1))
    z, y, x = np.meshgrid(zs[sl[0]], ys[sl[1]], xs[sl[2]], indexing="ij")
    pts = np.stack([z, y, x], axis=-1)
    d = p1 - p0
    t = np.clip(((pts - p0) @ d) / max(float(d @ d), 1e-9), 0.0, 1.0)
    dist = np.linalg.norm(pts - (p0 + t[..., None] * d), axis=-1)
    hit = dist <= radius
    if inside is not None:
        hit &= inside[tuple(sl)]
    vol[tuple(sl)][hit] = value


def _vessel_tree(rng, start, direction, length, radius, depth, segments):
    end = start + direction * length
    segments.append((start, end, radius))
    if depth == 0:
        return
    for sign in (-1.0, 1.0):
        # Rotate the direction by a random angle about a random axis orthogonal to it.
        axis = np.cross(direction, rng.normal(size=3))
        axis /= np.linalg.norm(axis) + 1e-12
        angle = sign * rng.uniform(0.35, 0.7)
        new = (direction * np.cos(angle) + np.cross(axis, direction) * np.sin(angle)
               + axis * (axis @ direction) * (1 - np.cos(angle)))
        new /= np.linalg.norm(new)
        _vessel_tree(rng, end, new, length * rng.uniform(0.7, 0.85), radius * 0.72, depth - 1,
                     segments)


def make_thorax_phantom(
    spacing: float | tuple[float, float, float] = 1.0,
    *,
    z_extent_mm: float = 120.0,
    seed: int = 0,
    texture: bool = True,
) -> CTVolume:
    """Generate the thorax phantom.

    Parameters
    ----------
    spacing : float or (z, y, x) tuple
        Voxel size in mm; the field of view is 320 mm square, so 1 mm gives 320 x 320 slices.
    z_extent_mm : float
        Length of the volume along z.
    seed : int
        Seeds vessel branching, nodule positions and texture: the same seed gives the same volume.
    texture : bool
        Add mild correlated tissue texture (about 8 HU in soft tissue, 25 HU in lung).

    Returns
    -------
    CTVolume
        ``source_format == "generated"``; ``notes`` describe the vessels and nodules.
    """
    if np.isscalar(spacing):
        spacing = (float(spacing),) * 3
    sz, sy, sx = (float(s) for s in spacing)
    if min(sz, sy, sx) <= 0:
        raise ValueError(f"spacing must be positive, got {spacing}")
    nz = max(int(round(z_extent_mm / sz)), 1)
    ny, nx = int(round(_FOV_MM / sy)), int(round(_FOV_MM / sx))
    rng = np.random.default_rng(seed)
    zs = (np.arange(nz) - (nz - 1) / 2) * sz
    ys = (np.arange(ny) - (ny - 1) / 2) * sy
    xs = (np.arange(nx) - (nx - 1) / 2) * sx
    y2, x2 = np.meshgrid(ys, xs, indexing="ij")
    half_z = max(z_extent_mm / 2, 1e-6)

    hu = np.full((nz, ny, nx), TISSUE_HU["air"], dtype=np.float32)
    lung_mask = np.zeros(hu.shape, dtype=bool)
    for k, z in enumerate(zs):
        u = z / half_z  # -1 (inferior) .. 1 (superior)
        s = hu[k]
        body_ax, body_ay = 150.0 - 8.0 * u ** 2, 105.0 - 6.0 * u ** 2
        s[_ellipse(x2, y2, 0, 0, body_ax, body_ay)] = TISSUE_HU["fat"]
        s[_ellipse(x2, y2, 0, 0, body_ax - 14, body_ay - 12)] = TISSUE_HU["muscle"]
        s[_ellipse(x2, y2, 0, 0, body_ax - 24, body_ay - 20)] = TISSUE_HU["soft_tissue"]
        # Lungs: larger towards the base, separated by the mediastinum.
        lung_ay = 70.0 + 8.0 * (1 - u)
        for side in (-1.0, 1.0):
            cx = side * (62.0 + 3.0 * (1 - u))
            lung = _ellipse(x2, y2, cx, 2.0, 50.0 + 4.0 * (1 - u), lung_ay)
            lung &= ~_ellipse(x2, y2, 0, -20, 42, 55)  # mediastinum notch
            s[lung] = TISSUE_HU["lung"]
            lung_mask[k] |= lung
        # Heart in the lower part, aorta descending beside the spine, ascending in front.
        if u < 0.35:
            heart_r = np.sqrt(max(1 - ((u + 0.45) / 0.8) ** 2, 0))
            s[_ellipse(x2, y2, 18, -22, 52 * heart_r, 42 * heart_r)] = TISSUE_HU["blood"]
        s[_ellipse(x2, y2, 22, 52, 12, 12)] = TISSUE_HU["blood"]
        if u > -0.2:
            s[_ellipse(x2, y2, 8, -30, 14, 14)] = TISSUE_HU["blood"]
        # Spine: vertebral bodies with discs, cortical shell, spinal canal.
        in_disc = (z % 28.0) < 5.0
        vb = _ellipse(x2, y2, 0, 70, 20, 17)
        s[vb] = TISSUE_HU["cortical_bone"]
        s[_ellipse(x2, y2, 0, 70, 16.5, 13.5)] = TISSUE_HU["disc" if in_disc else "cancellous_bone"]
        s[_ellipse(x2, y2, 0, 97, 12, 10) & ~_ellipse(x2, y2, 0, 97, 7, 6)] = TISSUE_HU["cortical_bone"]
        s[_ellipse(x2, y2, 0, 97, 7, 6)] = TISSUE_HU["spinal_canal"]
        # Sternum in front.
        if u > -0.6:
            s[(np.abs(x2) < 14) & (y2 > -body_ay + 8) & (y2 < -body_ay + 20)] = TISSUE_HU["cortical_bone"]
        # Ribs: bands of an elliptic ring inside the chest wall, open in front.
        if (z % 22.0) < 9.0:
            ring = _ellipse(x2, y2, 0, 0, body_ax - 16, body_ay - 14) & ~_ellipse(
                x2, y2, 0, 0, body_ax - 23, body_ay - 21)
            s[ring & (y2 > -body_ay * 0.55)] = TISSUE_HU["rib"]

    # Vessel trees from each hilum, kept inside the lungs.
    segments: list = []
    for side in (-1.0, 1.0):
        start = np.array([0.0, 0.0, side * 38.0])
        for direction in ([0.6, -0.2, side * 0.8], [-0.6, 0.1, side * 0.8], [0.0, 0.6, side * 0.8],
                          [0.1, -0.6, side * 0.7]):
            d = np.asarray(direction, dtype=float)
            _vessel_tree(rng, start, d / np.linalg.norm(d), 30.0, 4.5, 5, segments)
    axes = (zs, ys, xs)
    for p0, p1, radius in segments:
        _draw_capsule(hu, p0, p1, max(radius, 0.6 * min(sy, sx)), axes,
                      TISSUE_HU["vessel"], inside=lung_mask)

    # Nodules at random positions well inside the lungs.
    lung_idx = np.argwhere(ndimage.binary_erosion(lung_mask, iterations=max(int(8 / sy), 1)))
    nodules = []
    if len(lung_idx):
        for index in rng.choice(len(lung_idx), size=min(4, len(lung_idx)), replace=False):
            centre = np.array([zs[lung_idx[index][0]], ys[lung_idx[index][1]], xs[lung_idx[index][2]]])
            radius = float(rng.uniform(3.0, 7.0))
            _draw_capsule(hu, centre, centre, radius, axes, TISSUE_HU["nodule"])
            nodules.append((centre, radius))

    if texture:
        noise = rng.standard_normal(hu.shape, dtype=np.float32)
        noise = ndimage.gaussian_filter(noise, sigma=1.2 / np.array([sz, sy, sx]) * 1.0, truncate=2.5)
        noise /= max(float(noise.std()), 1e-6)
        body = hu > -500
        hu += noise * np.where(lung_mask & (hu < -500), 25.0, np.where(body, 8.0, 0.0)).astype(np.float32)

    origin = tuple(float(a[0]) for a in axes)
    return CTVolume(
        hu=hu,
        spacing=(sz, sy, sx),
        origin=origin,
        modality="CT",
        series_description=f"Thorax phantom (seed {seed})",
        study_description=PHANTOM_STUDY,
        source=f"make_thorax_phantom(spacing={spacing}, seed={seed})",
        source_format="generated",
        notes=[
            f"generated thorax phantom, seed {seed}: {len(segments)} vessel segments, "
            f"{len(nodules)} nodules (radii "
            + ", ".join(f"{r:.1f}" for _, r in nodules) + " mm); noise-free"
        ],
        meta={"PatientName": "Phantom^Thorax", "PatientID": f"PHANTOM-{seed}"},
    )
