"""Point clouds of a CT slice and their metrics (``../shared/EVALUATION.md``, "Point clouds").

The target shape for slice ``k`` is the -500 HU iso-surface (air/tissue: body outline and lungs) of
the patient's body inside a slab of ``SLAB_MM`` centred on the slice, from
:func:`skimage.measure.marching_cubes` with the voxel spacing. Objects outside the body (the table,
cables) are dropped: only the largest connected region above -500 HU is kept.

**Slab thickness: 16 mm** (9 slices at 2 mm). Thick enough to give the surface a real 3D extent
that still follows from a single slice (the trunk changes little over +-8 mm), and thin enough to
leave training targets when every target slab must stay 10 mm away from the validation and test
slabs of the single chest series (a 32 mm slab would leave almost none; see
:mod:`napari_jointrecon.training.joint` for the splits). At other slice spacings the surface is
taken from the fewest slices that reach 8 mm to either side and cut at +-8 mm, so the slab is
16 mm wide at any spacing, as the predicted clouds are.

Coordinates come in three frames, all in napari's (z, y, x) order:

* voxel indices of the volume (fractional);
* normalised ``[-1, 1]`` per axis: y and x by the image field of view (the image's edges are -1
  and +1), z by the slab's half-thickness (the slice itself is 0);
* world millimetres, through the volume's affine (:meth:`CTVolume.index_to_world`), which is where
  napari draws a layer made with :meth:`CTVolume.layer_kwargs`.

:class:`SlabFrame` converts between them. Metrics (pure torch, batched): Chamfer distance
(squared nearest-neighbour distances, mean per direction, summed: the pytorch3d convention) on
normalised coordinates, the same in millimetres but not squared, F-score at a distance threshold
(Tatarchenko et al. 2019), and the earth mover's distance for small sets of equal size (scipy).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .volume import CTVolume

__all__ = ["SLAB_MM", "LEVEL_HU", "TRAIN_POINTS", "EVAL_POINTS", "SlabFrame", "slab_frame",
           "surface_mesh", "sample_surface", "surface_points", "reference_point_cloud",
           "chamfer_distance", "f_score", "earth_movers_distance", "point_metrics", "BOX_SIZE",
           "farthest_point_sample", "spread_points", "occupancy_points", "occupancy_regions",
           "OCCUPANCY_REGIONS", "fill_holes", "body_mask", "slab_bounds", "slab_z_range", "INPUT_SIZE"]

SLAB_MM = 16.0
LEVEL_HU = -500.0
TRAIN_POINTS = 1000
#: Side (pixels) of the slice the point networks see (:mod:`napari_jointrecon.models.joint`): kept here,
#: without torch, so that the 3D point cloud dock can check a layer on napari's main thread.
INPUT_SIZE = 128
EVAL_POINTS = 10000
#: Side of the normalised box [-1, 1]: F-score thresholds are fractions of it (1 % = 0.02).
BOX_SIZE = 2.0


@dataclass(frozen=True)
class SlabFrame:
    """The normalised frame of one slice of a volume (or of a lone 2D slice)."""

    slice_index: float
    rows: int
    cols: int
    spacing: tuple[float, float, float]
    slab_mm: float = SLAB_MM

    @property
    def half_extent_mm(self) -> np.ndarray:
        """Millimetres per normalised unit along (z, y, x)."""
        sz, sy, sx = self.spacing
        return np.array([self.slab_mm / 2, self.rows * sy / 2, self.cols * sx / 2])

    def index_to_normalised(self, idx: np.ndarray) -> np.ndarray:
        idx = np.asarray(idx, dtype=np.float64)
        sz, sy, sx = self.spacing
        out = np.empty_like(idx)
        out[..., 0] = (idx[..., 0] - self.slice_index) * sz / (self.slab_mm / 2)
        out[..., 1] = (idx[..., 1] - (self.rows - 1) / 2) / (self.rows / 2)
        out[..., 2] = (idx[..., 2] - (self.cols - 1) / 2) / (self.cols / 2)
        return out

    def normalised_to_index(self, p: np.ndarray) -> np.ndarray:
        p = np.asarray(p, dtype=np.float64)
        sz, sy, sx = self.spacing
        out = np.empty_like(p)
        out[..., 0] = self.slice_index + p[..., 0] * (self.slab_mm / 2) / sz
        out[..., 1] = (self.rows - 1) / 2 + p[..., 1] * self.rows / 2
        out[..., 2] = (self.cols - 1) / 2 + p[..., 2] * self.cols / 2
        return out

    def normalised_to_world(self, p: np.ndarray, ct: CTVolume | None = None) -> np.ndarray:
        """World millimetres (z, y, x). Without a volume, the slice's own frame: voxel (k, 0, 0) at 0."""
        idx = self.normalised_to_index(p)
        if ct is not None:
            return ct.index_to_world(idx)
        return (idx - np.array([self.slice_index, 0.0, 0.0])) * np.asarray(self.spacing)

    def world_to_normalised(self, points: np.ndarray, ct: CTVolume | None = None) -> np.ndarray:
        points = np.asarray(points, dtype=np.float64)
        if ct is not None:
            idx = ct.world_to_index(points)
        else:
            idx = points / np.asarray(self.spacing) + np.array([self.slice_index, 0.0, 0.0])
        return self.index_to_normalised(idx)


def slab_frame(ct: CTVolume, slice_index: int, slab_mm: float = SLAB_MM) -> SlabFrame:
    return SlabFrame(float(slice_index), ct.shape[1], ct.shape[2],
                     tuple(float(s) for s in ct.spacing), float(slab_mm))


def slab_bounds(n_slices: int, slice_index: int, spacing_z: float, slab_mm: float = SLAB_MM) -> tuple[int, int]:
    """First and last slice of the slab around ``slice_index``: the fewest that reach ``slab_mm / 2``
    to either side (9 slices at 2 mm, 7 at 3 mm: the surface is then cut to the slab, see
    :func:`slab_z_range`); a clear error near the ends."""
    half = int(math.ceil(slab_mm / 2 / spacing_z - 1e-6))
    lo, hi = slice_index - half, slice_index + half
    if not 0 <= slice_index < n_slices:
        raise ValueError(f"slice {slice_index} is outside the volume (0-{n_slices - 1})")
    if lo < 0 or hi >= n_slices:
        raise ValueError(
            f"the {slab_mm:g} mm slab around slice {slice_index} needs slices {lo} to {hi}, but the "
            f"volume has 0-{n_slices - 1}: choose a slice at least {half} slices from either end")
    return lo, hi


def slab_z_range(slice_index: float, spacing_z: float, slab_mm: float = SLAB_MM) -> tuple[float, float]:
    """The slab's ends in (fractional) slice indices: exactly ``slab_mm`` wide, whatever the spacing."""
    half = slab_mm / 2 / spacing_z
    return slice_index - half, slice_index + half


def _largest_region(mask: np.ndarray) -> np.ndarray | None:
    """The largest connected region of a boolean mask (None if the mask is empty)."""
    from scipy import ndimage

    labels, n = ndimage.label(mask)
    if n == 0:
        return None
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """``scipy.ndimage.binary_fill_holes`` with its default structure, the same mask: the background
    labelled once (``ndimage.label``, the same connectivity) and every part of it that does not reach
    the array's edge filled, instead of the background grown from the edge to convergence; several
    times faster on a 512 x 512 slice (a contour network's cloud fills about 20)."""
    from scipy import ndimage

    mask = np.asarray(mask, dtype=bool)
    if mask.size == 0:
        return mask.copy()
    labels, n = ndimage.label(~mask)
    reaches_edge = np.zeros(n + 1, dtype=bool)
    for axis in range(mask.ndim):
        reaches_edge[np.take(labels, 0, axis=axis)] = True
        reaches_edge[np.take(labels, -1, axis=axis)] = True
    reaches_edge[0] = False  # the mask itself
    return ~reaches_edge[labels]


def body_mask(slab: np.ndarray, slice_index: int, *, level: float = LEVEL_HU) -> np.ndarray:
    """The largest connected region above ``level`` in a slab: the body without table or cables."""
    body = _largest_region(slab > level)
    if body is None:
        raise ValueError(f"no tissue above {level:g} HU in the slab around slice {slice_index}")
    if body.sum() < 64:
        raise ValueError(f"no body in the slab around slice {slice_index} (only {body.sum()} voxels "
                         f"above {level:g} HU)")
    return body


def surface_mesh(hu: np.ndarray, spacing, slice_index: int, *, slab_mm: float = SLAB_MM,
                 level: float = LEVEL_HU) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (in voxel indices of ``hu``, z y x) and faces of the body's iso-surface in the slab."""
    from skimage.measure import marching_cubes

    hu = np.asarray(hu)
    if hu.ndim != 3:
        raise ValueError(f"a point cloud needs a 3D volume, got an array of shape {hu.shape}")
    lo, hi = slab_bounds(hu.shape[0], int(slice_index), float(spacing[0]), slab_mm)
    slab = np.asarray(hu[lo:hi + 1], dtype=np.float32)
    if not np.isfinite(slab).all():
        raise ValueError("the slab contains NaN or infinite values")
    body = body_mask(slab, slice_index, level=level)
    slab = np.where(body | (slab <= level), slab, np.float32(-1000.0))
    verts, faces, _, _ = marching_cubes(slab, level=level, spacing=tuple(float(s) for s in spacing))
    verts = verts / np.asarray(spacing, dtype=np.float64)
    verts[:, 0] += lo
    return verts, faces


def sample_surface(verts: np.ndarray, faces: np.ndarray, n: int, *, spacing=(1.0, 1.0, 1.0),
                   seed: int = 0, z_range: tuple[float, float] | None = None) -> np.ndarray:
    """``n`` points drawn uniformly by area (measured in mm) on a triangle mesh; same frame as ``verts``.

    ``z_range``: keep only the part of the surface between these z (same frame), e.g. a slab's
    ends (:func:`slab_z_range`); points beyond are drawn again. Where the whole mesh lies inside,
    the points are those drawn without it.
    """
    rng = np.random.default_rng(seed)
    scale = np.asarray(spacing, dtype=np.float64)
    tri = verts[faces] * scale
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    if z_range is not None:  # triangles wholly outside can never give a point
        zs = verts[faces][:, :, 0]
        area = np.where((zs.max(axis=1) < z_range[0]) | (zs.min(axis=1) > z_range[1]), 0.0, area)
    if not area.sum() > 0:
        raise ValueError("the surface is empty")
    out, have = [], 0
    while have < n:
        m = n if not out else 2 * (n - have) + 64
        pick = rng.choice(len(faces), size=m, p=area / area.sum())
        u, v = rng.random((2, m))
        flip = u + v > 1
        u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
        a, b, c = tri[pick, 0], tri[pick, 1], tri[pick, 2]
        p = (a + u[:, None] * (b - a) + v[:, None] * (c - a)) / scale
        if z_range is not None:
            p = p[(p[:, 0] >= z_range[0] - 1e-9) & (p[:, 0] <= z_range[1] + 1e-9)]
        out.append(p[:n - have])
        have += len(out[-1])
    return np.concatenate(out)


def surface_points(hu: np.ndarray, spacing, slice_index: int, n: int, *, seed: int = 0,
                   slab_mm: float = SLAB_MM) -> np.ndarray:
    """``n`` points on the slab's iso-surface, normalised to [-1, 1] (z, y, x)."""
    verts, faces = surface_mesh(hu, spacing, slice_index, slab_mm=slab_mm)
    idx = sample_surface(verts, faces, n, spacing=spacing, seed=seed,
                         z_range=slab_z_range(slice_index, float(spacing[0]), slab_mm))
    frame = SlabFrame(float(slice_index), hu.shape[1], hu.shape[2], tuple(map(float, spacing)), slab_mm)
    return frame.index_to_normalised(idx)


def farthest_point_sample(points: np.ndarray, n: int, *, start: int = 0) -> np.ndarray:
    """``n`` of ``points`` (N, 3), each the farthest from those already taken: an even spread."""
    pts = np.asarray(points, dtype=np.float64)
    if not 0 < n <= len(pts):
        raise ValueError(f"cannot take {n} of {len(pts)} points")
    cols = [np.ascontiguousarray(pts[:, k]) for k in range(pts.shape[1])]  # column-wise: ~10x faster
    chosen = np.empty(n, dtype=np.int64)
    chosen[0] = start
    dist = np.full(len(pts), np.inf)
    new, tmp = np.empty(len(pts)), np.empty(len(pts))
    for i in range(n):
        if i:
            chosen[i] = int(np.argmax(dist))
        j = chosen[i]
        new.fill(0.0)
        for col in cols:
            np.subtract(col, col[j], out=tmp)
            np.square(tmp, out=tmp)
            new += tmp
        np.minimum(dist, new, out=dist)
    return np.asarray(points)[chosen]


def spread_points(points: np.ndarray, n: int, *, iterations: int = 10) -> np.ndarray:
    """``n`` of ``points`` (N, 3) that stand for all of them: farthest-point sampling, then Lloyd
    iterations (k-means: each of the ``n`` moves to the mean of the points nearest to it), then each
    back onto the nearest of ``points``.

    Farthest-point sampling spreads the ``n`` points out; the Lloyd iterations make them quantise
    the sample, so that where ``points`` are denser (an area-weighted sample of a surface: more
    area) more of the ``n`` go, and the mean squared distance from ``points`` to the nearest of the
    ``n`` (the second term of the Chamfer distance) drops. The means lie inside curved surfaces;
    moving each back onto the nearest point of the sample not yet taken keeps all ``n`` on the
    surface the sample comes from, and distinct.
    """
    import torch
    from scipy.spatial import cKDTree

    workers = torch.get_num_threads()  # the k-d tree queries on as many threads as torch is given
    pts = np.asarray(points, dtype=np.float64)
    centres = farthest_point_sample(pts, n)
    for _ in range(iterations):
        # the assignment step of scipy.cluster.vq.kmeans2, by a k-d tree (3x faster at 20,000 x 1000);
        # a centre that no point is nearest to stays where it is, as with kmeans2(missing="warn")
        _, label = cKDTree(centres).query(pts, workers=workers)
        count = np.bincount(label, minlength=n)
        sums = np.stack([np.bincount(label, weights=pts[:, k], minlength=n) for k in range(pts.shape[1])], 1)
        kept = count > 0
        centres[kept] = sums[kept] / count[kept, None]
    # back onto the sample, each to the nearest point not yet taken (n distinct points)
    _, near = cKDTree(pts).query(centres, k=min(8, len(pts)), workers=workers)
    near = near.reshape(n, -1)
    chosen, taken = np.empty(n, dtype=np.int64), set()
    for i, row in enumerate(near):
        chosen[i] = next((int(j) for j in row if j not in taken), int(row[0]))
        taken.add(chosen[i])
    return np.asarray(points)[chosen]


#: What :func:`occupancy_points` keeps of a predicted occupancy: ``"largest"``, its largest connected
#: region (as the reference surface keeps the body); ``"body"``, every region inside the outline of
#: the largest one (plane by plane, its holes filled): the airways' and the vessels' walls too, which
#: in the true slab join the body through branches the prediction need not draw, but not the table.
OCCUPANCY_REGIONS = ("largest", "body")


def occupancy_regions(inside: np.ndarray, regions: str = "largest") -> np.ndarray | None:
    """The part of a boolean occupancy ``(planes, rows, cols)`` (or one plane) that a cloud is drawn
    from (:data:`OCCUPANCY_REGIONS`); None where it is empty."""
    if regions not in OCCUPANCY_REGIONS:
        raise ValueError(f"regions must be one of {', '.join(OCCUPANCY_REGIONS)}, got {regions!r}")
    body = _largest_region(inside)
    if body is None or regions == "largest":
        return body
    planes = body if body.ndim == 3 else body[None]
    outline = np.stack([fill_holes(p) for p in planes]).reshape(body.shape)
    return inside & outline


def occupancy_points(prob: np.ndarray, n: int, *, half_extent_mm=None, seed: int = 0,
                     pool_factor: int = 20, spread_in: str = "normalised", level: float = 0.5,
                     regions: str = "largest") -> np.ndarray:
    """``n`` points on the ``level`` iso-surface of a slab occupancy ``(planes, rows, cols)``, normalised.

    Plane ``i`` lies at normalised z = -1 + 2 i / (planes - 1); pixel ``(r, c)`` at the normalised
    y, x of :class:`SlabFrame` for a ``rows`` x ``cols`` image. ``regions`` (:func:`occupancy_regions`):
    as for the reference surface, only the largest connected region above ``level`` (``"largest"``),
    or every region inside its outline (``"body"``). ``pool_factor * n`` points are drawn by area
    (measured in mm with ``half_extent_mm``, :attr:`SlabFrame.half_extent_mm`; default a 16 mm
    slab and a 500 mm field of view) and thinned to ``n`` by :func:`spread_points` in the normalised
    frame, the frame the Chamfer distance is measured in: there z is stretched about 31 times
    against y and x (8 mm against 250 mm per unit), so in millimetres the points lie closer together
    along z than across. ``spread_in="mm"`` thins them in millimetres instead: evenly spread on the
    surface as drawn, which lowers the mean surface distance in mm of any surface (the contour
    networks' sampler, and that of their extrusion baseline) and raises the normalised Chamfer.
    """
    if spread_in not in ("normalised", "mm"):
        raise ValueError(f"spread_in must be 'normalised' or 'mm', got {spread_in!r}")
    from skimage.measure import marching_cubes

    prob = np.asarray(prob, dtype=np.float32)
    if prob.ndim != 3 or min(prob.shape) < 2:
        raise ValueError(f"an occupancy must be (planes, rows, cols) with at least 2 of each, got {prob.shape}")
    if not np.isfinite(prob).all():
        raise ValueError("the occupancy has NaN or infinite values")
    if not 0.0 < level < 1.0:
        raise ValueError(f"the iso level must lie between 0 and 1, got {level!r}")
    planes, rows, cols = prob.shape
    inside = prob > level
    body = occupancy_regions(inside, regions)
    if body is None:
        raise ValueError("the predicted occupancy is empty: no body to take points from")
    if inside.all():
        raise ValueError("the predicted occupancy fills the whole slab: no surface to take points from")
    vol = np.where(body | ~inside, prob, np.float32(0.0))
    unit = np.array([2.0 / (planes - 1), 2.0 / rows, 2.0 / cols])  # normalised units per index step
    ext = np.asarray(half_extent_mm if half_extent_mm is not None else (SLAB_MM / 2, 250.0, 250.0),
                     dtype=np.float64)
    step_mm = unit * ext
    verts, faces, _, _ = marching_cubes(vol, level=level, spacing=tuple(step_mm))
    idx = sample_surface(verts / step_mm, faces, pool_factor * n, spacing=step_mm, seed=seed)
    norm = np.empty_like(idx)
    norm[:, 0] = idx[:, 0] * unit[0] - 1.0
    norm[:, 1] = (idx[:, 1] - (rows - 1) / 2) / (rows / 2)
    norm[:, 2] = (idx[:, 2] - (cols - 1) / 2) / (cols / 2)
    if spread_in == "mm":
        return spread_points(norm * ext, n) / ext
    return spread_points(norm, n)


def reference_point_cloud(ct: CTVolume, slice_index: int, n_points: int = EVAL_POINTS, *,
                          seed: int = 0, slab_mm: float = SLAB_MM) -> np.ndarray:
    """``(n_points, 3)`` points in world millimetres (z, y, x) on the -500 HU surface of the slab."""
    if not isinstance(ct, CTVolume):
        raise TypeError("reference_point_cloud needs a CTVolume (its geometry places the points)")
    if isinstance(n_points, bool) or not isinstance(n_points, (int, np.integer)) or n_points < 1:
        raise ValueError(f"n_points must be a whole number of at least 1, got {n_points!r}")
    verts, faces = surface_mesh(ct.hu, ct.spacing, slice_index, slab_mm=slab_mm)
    idx = sample_surface(verts, faces, int(n_points), spacing=ct.spacing, seed=seed,
                         z_range=slab_z_range(slice_index, float(ct.spacing[0]), slab_mm))
    return ct.index_to_world(idx)


# --- metrics --------------------------------------------------------------------------------------

def _as_batch(x):
    import torch

    t = torch.as_tensor(np.asarray(x, dtype=np.float32)) if not isinstance(x, torch.Tensor) else x
    if t.ndim == 2:
        t = t[None]
    if t.ndim != 3 or t.shape[-1] != 3:
        raise ValueError(f"point sets must be (N, 3) or (B, N, 3), got {tuple(t.shape)}")
    return t.float()


def _nearest(a, b, chunk: int = 2048):
    """Indices of the nearest neighbours: of each point of ``a`` in ``b`` and of each of ``b`` in ``a``.

    One pass over the (chunked) matrix of squared distances |a|^2 + |b|^2 - 2 a.b, without
    gradients; the distances themselves are then recomputed exactly for the matched pairs, so the
    backward pass touches only N + M pairs (far cheaper than differentiating through the matrix).
    """
    import torch

    with torch.no_grad():
        # about a common centre: raw world coordinates (hundreds of mm) lose precision in float32
        centre = torch.cat([a, b], 1).mean(1, keepdim=True)
        a, b = a - centre, b - centre
        bb = (b * b).sum(-1)[:, None, :]
        best_ba = torch.full(b.shape[:2], float("inf"), dtype=a.dtype, device=a.device)
        idx_ba = torch.zeros(b.shape[:2], dtype=torch.long, device=a.device)
        idx_ab = []
        for i in range(0, a.shape[1], chunk):
            ai = a[:, i:i + chunk]
            d2 = torch.baddbmm(bb, ai, b.transpose(1, 2), alpha=-2)
            d2 += (ai * ai).sum(-1)[..., None]
            idx_ab.append(d2.argmin(dim=2))
            v, j = d2.min(dim=1)
            better = v < best_ba
            best_ba = torch.where(better, v, best_ba)
            idx_ba = torch.where(better, j + i, idx_ba)
    return torch.cat(idx_ab, dim=1), idx_ba


def _gather(points, idx):
    return points.gather(1, idx[..., None].expand(-1, -1, 3))


def _pair_distances(a, b, *, squared: bool):
    """Nearest-neighbour distances a->b (B, N) and b->a (B, M)."""
    idx_ab, idx_ba = _nearest(a, b)
    d_ab = ((a - _gather(b, idx_ab)) ** 2).sum(-1)
    d_ba = ((b - _gather(a, idx_ba)) ** 2).sum(-1)
    if not squared:
        d_ab, d_ba = d_ab.sqrt(), d_ba.sqrt()
    return d_ab, d_ba


def chamfer_distance(a, b, *, squared: bool = True, scale=None):
    """Chamfer distance per batch item: mean NN distance a->b plus mean NN distance b->a.

    ``squared=True`` (the training loss and the normalised metric) squares the distances first.
    ``scale`` (3 numbers) multiplies the coordinates first, e.g. :attr:`SlabFrame.half_extent_mm` to
    turn normalised coordinates into millimetres. Accepts torch tensors (differentiable) or arrays;
    returns a tensor of shape (B,).
    """
    import torch

    a, b = _as_batch(a), _as_batch(b)
    if a.shape[1] == 0 or b.shape[1] == 0:
        raise ValueError("Chamfer distance of an empty point set")
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"batch sizes differ: {a.shape[0]} and {b.shape[0]}")
    if scale is not None:
        s = torch.as_tensor(np.asarray(scale, dtype=np.float32))
        a, b = a * s, b * s
    d_ab, d_ba = _pair_distances(a, b, squared=squared)
    return d_ab.mean(dim=1) + d_ba.mean(dim=1)


def _nearest_distances_mm(a_mm: np.ndarray, b_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest-neighbour distances (not squared) of two point sets already in mm: a->b and b->a."""
    import torch

    a_mm, b_mm = np.asarray(a_mm, dtype=np.float64), np.asarray(b_mm, dtype=np.float64)
    centre = np.concatenate([a_mm, b_mm]).mean(axis=0)  # near the origin: float32 keeps its precision
    with torch.no_grad():
        d_ab, d_ba = _pair_distances(_as_batch(a_mm - centre), _as_batch(b_mm - centre), squared=False)
    return d_ab[0].numpy().astype(np.float64), d_ba[0].numpy().astype(np.float64)


def f_score(pred, ref, threshold: float):
    """F-score at ``threshold`` (precision: predicted points near the reference; recall: the converse)."""
    import torch

    pred, ref = _as_batch(pred), _as_batch(ref)
    with torch.no_grad():
        d_pr, d_rp = _pair_distances(pred, ref, squared=False)
    precision = (d_pr < threshold).float().mean(dim=1)
    recall = (d_rp < threshold).float().mean(dim=1)
    denom = precision + recall
    return torch.where(denom > 0, 2 * precision * recall / denom.clamp_min(1e-12), torch.zeros_like(denom))


def earth_movers_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean matched distance of the optimal one-to-one assignment (equal sizes; small sets only)."""
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial.distance import cdist

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2 or a.shape[1] != 3:
        raise ValueError(f"EMD needs two (N, 3) sets of equal size, got {a.shape} and {b.shape}")
    if len(a) > 5000:
        raise ValueError(f"EMD is for small sets (at most 5000 points), got {len(a)}")
    cost = cdist(a, b)
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].mean())


def point_metrics(pred_normalised: np.ndarray, ref_normalised: np.ndarray,
                  frame: SlabFrame | None = None) -> dict[str, float]:
    """Chamfer (normalised, squared), Chamfer in mm (with a frame), F-score at 1 % and 5 % of the box."""
    out = {
        "chamfer": float(chamfer_distance(pred_normalised, ref_normalised)[0]),
        "f1": float(f_score(pred_normalised, ref_normalised, 0.01 * BOX_SIZE)[0]),
        "f5": float(f_score(pred_normalised, ref_normalised, 0.05 * BOX_SIZE)[0]),
    }
    if frame is not None:
        out["chamfer_mm"] = float(chamfer_distance(pred_normalised, ref_normalised, squared=False,
                                                   scale=frame.half_extent_mm)[0])
    return out
