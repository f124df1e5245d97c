"""The noise of the scan in front of us: its level and its texture, measured from the image.

A dose fraction is relative to a protocol the plugin cannot know; the noise in the image is what a
model must remove. Both quantities come from flat soft-tissue patches of the image
(``EVALUATION.md``: reference-free quantities for a scan of unknown dose):

* :func:`flat_patches` finds square patches that lie in soft tissue (no air, lung, bone or edge)
  and have the least structure after smoothing;
* :func:`noise_sd` is the median standard deviation of those patches after removing a fitted plane
  (HU); unlike a wavelet estimate it sees the low-frequency grain of a smooth kernel as well as the
  fine grain of a sharp one;
* :func:`radial_nps` and :func:`nps_mean_frequency` describe the texture (noise power spectrum);
* :func:`texture_filter` is the in-plane low-pass that turns ramp-filtered FBP noise into the
  noise of a smoother reconstruction kernel: for parallel-beam FBP, apodising the ramp filter with
  a window ``W(f)`` multiplies the image noise's spectrum by ``|W(f)|^2`` (central slice theorem), so
  filtering the noise image is the same as reconstructing it with that kernel.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy import ndimage

__all__ = ["flat_patches", "patch_stack", "noise_sd", "radial_nps", "nps_mean_frequency",
           "texture_filter", "apply_texture", "PATCH", "NPS_PATCH", "NoTissueError"]

#: Side of the patches (pixels) for the noise level, and the share of the flattest soft-tissue
#: patches kept (at most 64 a slice). Small, very flat patches keep anatomy out of the level: on
#: five real series (chest, Philips B, Siemens B40f and B70f, GE STANDARD) 30 HU of added textured
#: noise reads back as 28.7-30 HU, and 90 HU as 86-90 HU. The texture needs larger patches
#: (:data:`NPS_PATCH`). The price: the coarse grain of a very smooth kernel reads low (white noise
#: reads within 2 %, a 0.12 cycles/px Gaussian cut-off about 0.85x). Training
#: (``training/series.py``) and inference use this same measure, so the conditioning agrees.
PATCH = 16
FLATTEST = 0.1
NPS_PATCH = 32
#: Patches are chosen on the image smoothed with this Gaussian (pixels): enough to suppress the
#: noise itself (so that a noisier scan is not measured only where its noise happens to be low).
SELECT_SIGMA = 6.0
_SOFT = (-200.0, 300.0)


class NoTissueError(ValueError):
    """The image has no flat soft tissue to measure noise in."""


def flat_patches(hu2d: np.ndarray, size: int = PATCH, max_patches: int = 64,
                 fraction: float = FLATTEST) -> list[tuple[int, int]]:
    """Top-left corners of flat soft-tissue patches of a 2D slice in HU: of the patches (half
    overlapping) that lie wholly in -200..300 HU after smoothing, the ``fraction`` with the least
    smoothed structure (at least four), at most ``max_patches``. ``size`` is even and positive."""
    if size <= 0 or size % 2:
        raise ValueError(f"the patch size must be even and positive, got {size}")
    img = np.asarray(hu2d, dtype=np.float32)
    h, w = img.shape
    if h < size or w < size:
        return []
    smooth = ndimage.gaussian_filter(img, SELECT_SIGMA)
    # the patches start every half patch, so each is 2 x 2 blocks of a half patch: their extremes,
    # mean and spread come from the blocks' (the same values as sliding filters, a fraction of the work)
    step = size // 2
    nb_y, nb_x = h // step, w // step
    blocks = smooth[:nb_y * step, :nb_x * step].reshape(nb_y, step, nb_x, step)
    b_lo, b_hi = blocks.min(axis=(1, 3)), blocks.max(axis=(1, 3))
    b_sum = blocks.sum(axis=(1, 3), dtype=np.float64)
    b_sq = np.square(blocks, dtype=np.float64).sum(axis=(1, 3))

    def window(b, reduce):
        return reduce(reduce(b[:-1, :-1], b[1:, :-1]), reduce(b[:-1, 1:], b[1:, 1:]))

    lo, hi = window(b_lo, np.minimum), window(b_hi, np.maximum)
    mean = window(b_sum, np.add) / (size * size)
    structure = np.sqrt(np.maximum(window(b_sq, np.add) / (size * size) - mean * mean, 0.0))
    ny, nx = (h - size) // step + 1, (w - size) // step + 1
    ok = (lo[:ny, :nx] > _SOFT[0]) & (hi[:ny, :nx] < _SOFT[1])
    iy, ix = np.nonzero(ok)
    order = np.lexsort((ix, iy, structure[:ny, :nx][ok]))  # least structure first, then row, column
    keep = order[:max(min(len(order), 4), int(len(order) * fraction))][:max_patches]
    return [(int(iy[i]) * step, int(ix[i]) * step) for i in keep]


@lru_cache(maxsize=8)
def _plane_fit(s: int) -> tuple[np.ndarray, np.ndarray]:
    """The plane basis ``a`` (``(s * s, 3)``: 1, row, column) of an ``s x s`` patch and its
    pseudo-inverse (``(3, s * s)``), read-only."""
    yy, xx = np.mgrid[0:s, 0:s].astype(np.float64)
    a = np.stack([np.ones(s * s), yy.ravel(), xx.ravel()], 1)
    pinv = np.linalg.pinv(a)
    a.setflags(write=False)
    pinv.setflags(write=False)
    return a, pinv


def _detrend(patches: np.ndarray) -> np.ndarray:
    """Remove a least-squares plane from each patch ``(n, s, s)``."""
    n, s, _ = patches.shape
    a, pinv = _plane_fit(s)
    flat = patches.reshape(n, -1).astype(np.float64)
    return (flat - (flat @ pinv.T) @ a.T).reshape(n, s, s).astype(np.float32)


def patch_stack(img2d: np.ndarray, corners, size: int = PATCH) -> np.ndarray:
    """The detrended patches of ``img2d`` at ``corners`` (from :func:`flat_patches`)."""
    if not corners:
        return np.zeros((0, size, size), np.float32)
    return _detrend(np.stack([img2d[y:y + size, x:x + size] for y, x in corners]))


def _pick_slices(hu: np.ndarray, count: int) -> np.ndarray:
    return np.unique(np.linspace(0, hu.shape[0] - 1, min(count, hu.shape[0])).round().astype(int))


def noise_sd(hu, max_slices: int = 9) -> float:
    """Noise standard deviation (HU) of a 2D slice or 3D ``(z, y, x)`` volume in HU.

    The median over flat soft-tissue patches of up to ``max_slices`` slices of each patch's
    standard deviation after removing a plane. Raises :class:`NoTissueError` when no slice has a
    flat soft-tissue patch (an image of air, lung or bone only, or smaller than a patch).
    """
    arr = np.asarray(hu.hu if hasattr(hu, "hu") else hu, dtype=np.float32)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or not np.all(np.isfinite(arr)):
        raise ValueError("noise_sd needs a finite 2D slice or 3D volume in HU")
    sds = []
    for k in _pick_slices(arr, max_slices):
        corners = flat_patches(arr[k])
        if corners:
            sds.append(patch_stack(arr[k], corners).std(axis=(1, 2)))
    if not sds:
        raise NoTissueError(f"no flat soft tissue (-200..300 HU, {PATCH} x {PATCH} pixels) to measure the "
                            "noise in")
    return float(np.median(np.concatenate(sds)))


def radial_nps(patches: np.ndarray, bins: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Radial noise power spectrum of detrended patches: ``(frequencies in cycles/pixel, power)``."""
    n, s, _ = patches.shape
    win = np.outer(np.hanning(s), np.hanning(s)).astype(np.float32)
    spec = (np.abs(np.fft.fft2(patches * win)) ** 2).mean(axis=0)
    fy = np.fft.fftfreq(s)[:, None]
    fx = np.fft.fftfreq(s)[None, :]
    fr = np.sqrt(fy * fy + fx * fx)
    edges = np.linspace(0, 0.5, bins + 1)
    idx = np.clip(np.digitize(fr.ravel(), edges) - 1, 0, bins)
    power = np.bincount(idx, weights=spec.ravel(), minlength=bins + 1)[:bins]
    count = np.bincount(idx, minlength=bins + 1)[:bins]
    return 0.5 * (edges[1:] + edges[:-1]), power / np.maximum(count, 1)


def nps_mean_frequency(patches: np.ndarray) -> float:
    """Power-weighted mean radial frequency (cycles/pixel) of the patches' NPS: low = smooth kernel."""
    f, p = radial_nps(patches)
    # the frequency-weighted (2D) spectrum: power of a ring grows with its radius
    ring = p * f
    return float((f * ring).sum() / max(ring.sum(), 1e-12))


def texture_filter(shape: tuple[int, int], cutoff: float | None) -> np.ndarray | None:
    """Fourier-domain radial Gaussian low-pass ``exp(-(f / cutoff)^2 / 2)`` (cycles/pixel), or None."""
    if cutoff is None or not math.isfinite(cutoff):
        return None
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.rfftfreq(shape[1])[None, :]
    return np.exp(-0.5 * (fy * fy + fx * fx) / cutoff ** 2).astype(np.float32)


def apply_texture(noise: np.ndarray, cutoff: float | None) -> np.ndarray:
    """Noise images ``(..., H, W)`` reconstructed with the smoother kernel of :func:`texture_filter`."""
    filt = texture_filter(noise.shape[-2:], cutoff)
    if filt is None:
        return np.asarray(noise, dtype=np.float32)
    out = np.fft.irfft2(np.fft.rfft2(np.asarray(noise, dtype=np.float32)) * filt, s=noise.shape[-2:])
    return out.astype(np.float32)
