"""Low-dose CT simulation in the projection domain (``../shared/EVALUATION.md``).

Two methods, both seeded and both working slice by slice on a parallel-beam geometry:

* ``"insert"`` (real full-dose scans, which already carry noise): only the missing noise is added,
  ``p_low = p + z * sqrt((1-a)/a * exp(p)/I0 * (1 + (1+a)/a * s2*exp(p)/I0))`` and
  ``image_low = image + FBP(p_low) - FBP(p)`` (Yu et al. 2012; Zeng et al. 2015);
* ``"poisson"`` (noise-free phantoms): counts ``N ~ Poisson(a*I0*exp(-p)) + N(0, s2)``, clamped at 1,
  ``p_low = -ln(N / (a*I0))`` and ``image_low = image + FBP(p_low) - FBP(p)``.

Only the noise goes through filtered back-projection (the reconstruction is linear), so the anatomy
keeps its full sharpness and no view-aliasing artefact of the phantom itself appears.

The projector is a torch implementation (bilinear ray sampling and voxel-driven back-projection),
checked against scikit-image's ``radon``/``iradon`` in the tests (the same sinograms, to 3e-7, for
odd sizes). Per operation it is about as fast as scikit-image on one thread; a simulated slice costs
less than scikit-image's ``radon`` + ``iradon`` because the line integrals that set the noise
variance are computed at half resolution (they are smooth) and interpolated; the noise is
back-projected at full resolution (timings: ``benchmarks/bench_dose.py``, docs/DOSE.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F

from .dose_levels import DOSE_LEVELS
from .volume import CTVolume

__all__ = [
    "estimate_dose",
    "simulate_low_dose",
    "iter_simulate_low_dose",
    "insertion_noise_basis",
    "combine_insertion_noise",
    "ParallelBeamProjector",
    "DoseModel",
    "DEFAULT_DOSE_MODEL",
    "DOSE_LEVELS",
    "MU_WATER",
]

#: Linear attenuation of water at about 70 keV, per mm.
MU_WATER = 0.0192


@dataclass(frozen=True)
class DoseModel:
    """Scanner noise parameters.

    Attributes
    ----------
    i0 : float
        Incident photons per detector bin and view at full dose.
    s2 : float
        Electronic noise variance (counts squared).
    n_views : int
        Views over 180 degrees.
    """

    i0: float = 1.3e6
    s2: float = 10.0
    n_views: int = 360


#: Calibrated on the real chest series (docs/DOSE.md, tests/test_dose.py): the simulated full-dose
#: noise is 17.5 HU (std over soft tissue, 512 x 512 slices at 0.98 mm); at the flattest
#: soft-tissue pixels 18.7 HU against 20.3 HU measured on the real scan (8 % low).
DEFAULT_DOSE_MODEL = DoseModel()


def _ramp_filter(size: int, device, dtype) -> torch.Tensor:
    """Ram-Lak filter in the Fourier domain, built from its spatial form (as scikit-image does)."""
    n = np.concatenate((np.arange(1, size / 2 + 1, 2, dtype=int), np.arange(size / 2 - 1, 0, -2, dtype=int)))
    f = np.zeros(size)
    f[0] = 0.25
    f[1::2] = -1 / (np.pi * n) ** 2
    return torch.as_tensor(2 * np.real(np.fft.fft(f)), device=device, dtype=dtype)


class ParallelBeamProjector:
    """Parallel-beam forward projection and filtered back-projection for ``(H, W)`` images.

    Geometry: views evenly spaced over [0, pi), a detector of ``n_det`` bins of one pixel centred
    on the image centre, rays through the whole (unmasked) square image. Line integrals are in
    pixel units: multiply by the pixel size for mm.

    Parameters
    ----------
    shape : (int, int)
        Image shape.
    n_views : int
        Number of views over 180 degrees.
    device : torch.device or str
    """

    def __init__(self, shape: tuple[int, int], n_views: int = 360, device: str | torch.device = "cpu"):
        self.shape = (int(shape[0]), int(shape[1]))
        self.n_views = int(n_views)
        self.device = torch.device(device)
        h, w = self.shape
        self.n_det = int(math.ceil(math.hypot(h, w))) + 2
        theta = torch.arange(self.n_views, dtype=torch.float64) * math.pi / self.n_views
        self.cos = torch.cos(theta).float().to(self.device)
        self.sin = torch.sin(theta).float().to(self.device)
        self.filter = _ramp_filter(max(64, 2 ** int(math.ceil(math.log2(2 * self.n_det)))),
                                   self.device, torch.float32)

    # ------------------------------------------------------------------------------------------
    def forward(self, image: torch.Tensor, chunk: int = 6) -> torch.Tensor:
        """Sinograms ``(B, n_views, n_det)`` of images ``(B, H, W)`` (sums of bilinear samples)."""
        h, w = self.shape
        b = image.shape[0]
        d = self.n_det
        t = torch.arange(d, device=self.device, dtype=torch.float32) - (d - 1) / 2
        s = t  # samples along each ray, one pixel apart
        out = torch.empty(b, self.n_views, d, device=self.device, dtype=torch.float32)
        img = image[:, None].float()
        for a0 in range(0, self.n_views, chunk):
            c, si = self.cos[a0:a0 + chunk, None, None], self.sin[a0:a0 + chunk, None, None]
            # ray coordinates -> image coordinates (x along columns, y along rows), centred
            x = t[None, None, :] * c - s[None, :, None] * si
            y = t[None, None, :] * si + s[None, :, None] * c
            grid = torch.stack([x / ((w - 1) / 2 if w > 1 else 1), y / ((h - 1) / 2 if h > 1 else 1)], -1)
            n = grid.shape[0]
            grid = grid.reshape(1, n * d, d, 2).expand(b, -1, -1, -1)
            samples = F.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
            out[:, a0:a0 + n] = samples.reshape(b, n, d, d).sum(dim=2)
        return out

    def filter_sinogram(self, sino: torch.Tensor) -> torch.Tensor:
        size = self.filter.shape[0]
        padded = F.pad(sino, (0, size - sino.shape[-1]))
        filtered = torch.fft.ifft(torch.fft.fft(padded, dim=-1) * self.filter, dim=-1).real
        return filtered[..., : sino.shape[-1]]

    def backproject(self, sino: torch.Tensor, rows_per_chunk: int = 12) -> torch.Tensor:
        """Unfiltered back-projection of ``(B, n_views, n_det)`` onto ``(B, H, W)``.

        Every pixel samples each view's profile at its detector coordinate (bilinear, through
        ``grid_sample``, which is several times faster here than gathering by index).
        """
        h, w = self.shape
        b, n_views, d = sino.shape
        x = torch.arange(w, device=self.device, dtype=torch.float32) - (w - 1) / 2
        view_rows = torch.linspace(-1, 1, n_views, device=self.device) if n_views > 1 else \
            torch.zeros(1, device=self.device)
        out = torch.empty(b, h, w, device=self.device, dtype=torch.float32)
        img = sino[:, None].float()
        for r0 in range(0, h, rows_per_chunk):
            y = torch.arange(r0, min(r0 + rows_per_chunk, h), device=self.device,
                             dtype=torch.float32) - (h - 1) / 2
            t = x[None, :, None] * self.cos + y[:, None, None] * self.sin  # (rows, w, views)
            grid = torch.stack([t / ((d - 1) / 2), view_rows.expand_as(t)], dim=-1)
            grid = grid.reshape(1, -1, n_views, 2).expand(b, -1, -1, -1)
            samples = F.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
            out[:, r0:r0 + y.shape[0]] = samples.sum(dim=-1).reshape(b, -1, w)
        return out

    def fbp(self, sino: torch.Tensor) -> torch.Tensor:
        """Filtered back-projection (ramp filter) of sinograms in pixel units -> images."""
        return self.backproject(self.filter_sinogram(sino)) * (math.pi / (2 * self.n_views))


@lru_cache(maxsize=8)
def _projector(shape: tuple[int, int], n_views: int, device: str) -> ParallelBeamProjector:
    return ParallelBeamProjector(shape, n_views, device)


def _line_integrals(mu: torch.Tensor, pixel_mm: float, n_views: int, device: str) -> torch.Tensor:
    """Line integrals (dimensionless) on the full-resolution detector, computed at half resolution."""
    h, w = mu.shape[-2:]
    full = _projector((h, w), n_views, device)
    if min(h, w) >= 64:
        small = F.avg_pool2d(mu[:, None], 2, ceil_mode=True)[:, 0]
        proj = _projector(tuple(small.shape[-2:]), max(n_views // 3, 16), device)
        p = proj.forward(small) * (2 * pixel_mm)
        p = F.interpolate(p[:, None], size=(n_views, full.n_det), mode="bilinear",
                          align_corners=True)[:, 0]
    else:
        p = full.forward(mu) * pixel_mm
    return p.clamp_(min=0.0)


def _as_hu_stack(ct_or_hu) -> tuple[np.ndarray, tuple[float, float], bool]:
    if isinstance(ct_or_hu, CTVolume):
        return ct_or_hu.hu, ct_or_hu.spacing[1:], False
    hu = np.asarray(ct_or_hu)
    if hu.ndim == 2:
        return hu[None], (1.0, 1.0), True
    if hu.ndim == 3:
        return hu, (1.0, 1.0), False
    raise ValueError(f"expected a 2D slice or a 3D (z, y, x) volume in HU, got shape {hu.shape}")


def _mu(hu: np.ndarray, device) -> torch.Tensor:
    chunk = torch.as_tensor(np.asarray(hu, dtype=np.float32), device=device)
    return MU_WATER * (1.0 + chunk.clamp(min=-1000.0) / 1000.0)


def _to_hu(delta_mu_pixel: torch.Tensor, pixel_mm: float) -> np.ndarray:
    """FBP of line-integral noise (per pixel) -> HU."""
    return (1000.0 / MU_WATER * delta_mu_pixel / pixel_mm).cpu().numpy()


def _normal(shape, seed: int, first_index: int, stream: int, device) -> torch.Tensor:
    """Standard normal fields, one per slice, seeded by (seed, slice index, stream)."""
    return torch.stack([
        torch.as_tensor(np.random.default_rng([seed, first_index + i, stream]).standard_normal(
            shape[1:], dtype=np.float32), device=device)
        for i in range(shape[0])
    ])


def insertion_noise_basis(hu: np.ndarray, pixel_mm: float, *, seed: int = 0, first_index: int = 0,
                          model: DoseModel = DEFAULT_DOSE_MODEL, device: str = "cpu"
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Two noise images (HU) from which the inserted noise of any dose follows.

    The inserted projection noise has variance ``c1(a) v1 + c2(a) v2`` with ``v1 = exp(p)/I0``,
    ``v2 = s2 exp(2p)/I0^2``, ``c1 = (1-a)/a`` and ``c2 = (1-a)(1+a)/a^2``. With independent normal
    fields ``z1, z2``, ``FBP(z1 sqrt(v1)) sqrt(c1) + FBP(z2 sqrt(v2)) sqrt(c2)`` has exactly that
    distribution, so one pair of back-projections serves every dose (see
    :func:`combine_insertion_noise`).
    """
    proj = _projector(tuple(hu.shape[-2:]), model.n_views, str(device))
    p = _line_integrals(_mu(hu, device), pixel_mm, model.n_views, str(device))
    e = torch.exp(p)
    z1 = _normal(p.shape, seed, first_index, 0, device)
    z2 = _normal(p.shape, seed, first_index, 1, device)
    both = torch.cat([z1 * torch.sqrt(e / model.i0), z2 * math.sqrt(model.s2) * e / model.i0])
    images = _to_hu(proj.fbp(both), pixel_mm)
    n = p.shape[0]
    return images[:n], images[n:]


def combine_insertion_noise(n1: np.ndarray, n2: np.ndarray, dose: float) -> np.ndarray:
    """The HU noise to add for a dose fraction, from :func:`insertion_noise_basis`."""
    c1 = (1 - dose) / dose
    c2 = (1 - dose) * (1 + dose) / dose ** 2
    return (math.sqrt(c1) * n1 + math.sqrt(c2) * n2).astype(np.float32)


def simulate_low_dose(
    ct_or_hu,
    dose: float,
    *,
    seed: int = 0,
    spacing: tuple[float, ...] | float | None = None,
    method: str | None = None,
    model: DoseModel = DEFAULT_DOSE_MODEL,
    device: str = "cpu",
    batch: int = 4,
):
    """Simulate a scan at a fraction ``dose`` of the full dose.

    Parameters
    ----------
    ct_or_hu : CTVolume or numpy.ndarray
        A CT volume, or a 2D slice / 3D ``(z, y, x)`` volume in HU.
    dose : float
        Dose fraction in (0, 1] (0.25 = 25 %).
    seed : int
        The same image, dose and seed give the same noise.
    spacing : float or tuple, optional
        Pixel spacing in mm for arrays (``(y, x)``, ``(z, y, x)`` or one number; default 1 mm); a
        CTVolume brings its own.
    method : {"insert", "poisson"}, optional
        ``"insert"`` for real (already noisy) full-dose scans, ``"poisson"`` for noise-free images.
        By default ``"poisson"`` for the noise-free phantom (as made or read back from a file it
        was written to: :func:`~napari_jointrecon.phantom.is_noise_free_phantom`) and ``"insert"``
        otherwise.
    model : DoseModel
        Incident counts, electronic noise and number of views.
    device : str
        Torch device for the projector.
    batch : int
        Slices projected together.

    Returns
    -------
    Same type as the input: a CTVolume (same geometry, a note saying what was done) or an array of
    the same shape, float32 HU.

    Raises
    ------
    ValueError
        For a dose outside (0, 1], non-finite voxels, or an array that is not 2D or 3D.
    """
    gen = iter_simulate_low_dose(ct_or_hu, dose, seed=seed, spacing=spacing, method=method, model=model,
                                 device=device, batch=batch)
    while True:
        try:
            next(gen)
        except StopIteration as stop:
            return stop.value


def iter_simulate_low_dose(ct_or_hu, dose: float, *, seed: int = 0, spacing=None, method: str | None = None,
                           model: DoseModel = DEFAULT_DOSE_MODEL, device: str = "cpu", batch: int = 4,
                           first_index: int = 0):
    """:func:`simulate_low_dose` as a generator: yields ``(slices done, total)`` after each batch and
    returns the result (``StopIteration.value``), for progress bars and cancelling between batches.
    The arguments are checked before the first batch. ``first_index``: the volume index of the
    first slice given, so that slices simulated apart get the noise they get in the whole volume."""
    dose = float(dose)
    if not (0.0 < dose <= 1.0) or not math.isfinite(dose):
        raise ValueError(f"dose must be a fraction in (0, 1] (0.25 for 25 %), got {dose}")
    hu, pixel, squeeze = _as_hu_stack(ct_or_hu)
    if spacing is not None and not isinstance(ct_or_hu, CTVolume):
        sp = np.atleast_1d(np.asarray(spacing, dtype=float))
        pixel = (float(sp[-2]), float(sp[-1])) if sp.size >= 2 else (float(sp[0]),) * 2
    if not np.all(np.isfinite(hu)):
        raise ValueError("the image has NaN or infinite voxels")
    if min(hu.shape[-2:]) < 8:
        raise ValueError(f"slices of {hu.shape[-2:]} pixels are too small to simulate a CT scan")
    if method is None:
        from .phantom import is_noise_free_phantom

        method = "poisson" if is_noise_free_phantom(ct_or_hu) else "insert"
    if method not in ("insert", "poisson"):
        raise ValueError(f"method must be 'insert' or 'poisson', got {method!r}")
    pixel_mm = float(np.sqrt(pixel[0] * pixel[1]))

    out = np.array(hu, dtype=np.float32, copy=True)
    total = hu.shape[0]
    yield 0, total
    if method == "insert":
        if dose < 1.0:
            for k0 in range(0, hu.shape[0], batch):
                n1, n2 = insertion_noise_basis(hu[k0:k0 + batch], pixel_mm, seed=seed,
                                               first_index=first_index + k0, model=model, device=device)
                out[k0:k0 + batch] += combine_insertion_noise(n1, n2, dose)
                yield min(k0 + batch, total), total
    else:
        proj = _projector(tuple(hu.shape[-2:]), model.n_views, str(device))
        for k0 in range(0, hu.shape[0], batch):
            p = _line_integrals(_mu(hu[k0:k0 + batch], device), pixel_mm, model.n_views, str(device))
            noise = _normal(p.shape, seed, first_index + k0, 0, device)
            counts = torch.stack([
                torch.as_tensor(np.random.default_rng([seed, first_index + k0 + i, 2]).poisson(
                    (dose * model.i0 * torch.exp(-p[i])).cpu().numpy().astype(np.float64)
                ).astype(np.float32), device=device)
                for i in range(p.shape[0])
            ]) + noise * math.sqrt(model.s2)
            delta_p = -torch.log(counts.clamp(min=1.0) / (dose * model.i0)) - p
            out[k0:k0 + batch] += _to_hu(proj.fbp(delta_p), pixel_mm)
            yield min(k0 + batch, total), total
    if isinstance(ct_or_hu, CTVolume):
        note = (f"simulated {dose * 100:g}% dose ({method}, I0={model.i0:g}, s2={model.s2:g}, "
                f"{model.n_views} views, seed {seed})")
        return ct_or_hu.with_hu(out, notes=[note],
                                series_description=f"{ct_or_hu.series_description} {dose * 100:g}% dose".strip())
    return out[0] if squeeze else out


#: Noise calibration of :func:`estimate_dose`: scikit-image's wavelet noise estimate (median over
#: the chest training slabs) at full dose, and its fitted power law sigma ~ dose ** -0.667 over
#: 10-100 % (``jointrecon`` training split, projection-domain noise).
_SIGMA_FULL_DOSE = 6.3
_SIGMA_EXPONENT = 0.667


def estimate_dose(hu) -> tuple[float, float]:
    """Estimate the dose level of a scan from its noise: ``(nearest level, continuous estimate)``.

    The noise is measured with :func:`skimage.restoration.estimate_sigma` on up to 9 slices and
    mapped to a dose with the power law fitted on the chest training slabs. Noise depends on the
    patient's size as much as on the dose, so this gives the *noise-equivalent* dose level (which is
    what the dose-conditioned models need), snapped to 10/25/50/70/100 % in log space.
    """
    from skimage.restoration import estimate_sigma

    arr = np.asarray(hu.hu if hasattr(hu, "hu") else hu, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or not np.all(np.isfinite(arr)):
        raise ValueError("estimate_dose needs a finite 2D slice or 3D volume in HU")
    picks = np.unique(np.linspace(0, arr.shape[0] - 1, min(9, arr.shape[0])).round().astype(int))
    sigma = float(np.median([estimate_sigma(np.clip(arr[k], -1024, 3071)) for k in picks]))
    if sigma <= 0:
        return 1.0, 1.0
    dose = float(np.clip((_SIGMA_FULL_DOSE / sigma) ** (1 / _SIGMA_EXPONENT), 0.01, 1.0))
    levels = np.array(list(DOSE_LEVELS) + [1.0])
    nearest = float(levels[np.argmin(np.abs(np.log(levels) - np.log(dose)))])
    return nearest, dose
