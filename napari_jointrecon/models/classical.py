"""Classical denoisers: non-local means, total variation and BM3D, with the strength set from the image.

Each runner takes a 2D slice in HU and the dose fraction and returns the denoised slice in HU
(float32, same shape). The methods work on the normalised scale ``u = (HU + 1000) / 2000`` (not
clipped, so bone above 1000 HU is kept). Their strength is driven by the noise of the image itself:
:func:`estimate_noise` measures the noise standard deviation in soft tissue, and each method's
parameter is ``FACTOR * sigma`` with a factor per method tuned on the validation slices (see
``docs/CLASSICAL.md``). The dose is not needed; when given it picks a per-dose factor from the same
tuning (interpolated in log dose), which is a small refinement.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

__all__ = ["RUNNERS", "estimate_noise", "denoise_nlm", "denoise_tv", "denoise_bm3d", "FACTORS"]

HU_OFFSET = 1000.0
HU_SCALE = 2000.0

#: Factors, parameter = factor * estimated sigma (normalised scale). Placeholder, replaced by tuning.
FACTORS: dict[str, dict] = {
    "nlm": {"default": 0.8, "by_dose": {}},
    "tv": {"default": 1.0, "by_dose": {}},
    "bm3d": {"default": 1.0, "by_dose": {}},
}

#: Below this estimated noise (normalised scale, 0.02 HU) an image counts as noise-free.
_SIGMA_FLOOR = 1e-5


def _to_unit(hu: np.ndarray) -> np.ndarray:
    return (np.asarray(hu, dtype=np.float32) + HU_OFFSET) / HU_SCALE


def _to_hu(u: np.ndarray) -> np.ndarray:
    return (np.asarray(u, dtype=np.float32) * HU_SCALE - HU_OFFSET).astype(np.float32)


def _check(hu) -> np.ndarray:
    arr = np.asarray(hu, dtype=np.float32)
    if arr.ndim != 2:
        raise ValueError(f"expected a 2D slice, got shape {arr.shape}")
    if min(arr.shape) < 8:
        raise ValueError(f"a slice of {arr.shape} pixels is too small to denoise")
    if not np.all(np.isfinite(arr)):
        raise ValueError("the slice has NaN or infinite values")
    return arr


def _haar_hh(a: np.ndarray) -> np.ndarray:
    """Finest diagonal Haar detail (orthonormal: white noise of std s gives std s)."""
    h, w = (a.shape[0] // 2) * 2, (a.shape[1] // 2) * 2
    a = a[:h, :w]
    return 0.5 * (a[0::2, 0::2] - a[0::2, 1::2] - a[1::2, 0::2] + a[1::2, 1::2])


def _mad(x: np.ndarray) -> float:
    x = np.asarray(x, dtype=np.float64).ravel()
    return float(1.4826 * np.median(np.abs(x - np.median(x))))


def estimate_noise(hu: np.ndarray) -> float:
    """Noise standard deviation of a CT slice, in HU, measured in soft tissue.

    The robust MAD of the finest diagonal Haar detail over 2x2 blocks that lie inside the body (HU >
    -500 after a 5 px closing) and in soft tissue (-300..300 HU after a 5x5 median), eroded by 2 px
    to keep off edges. Falls back to the whole image when fewer than 256 such blocks exist.
    """
    hu = _check(hu)
    smooth = ndimage.median_filter(hu, size=5)
    body = ndimage.binary_closing(hu > -500, structure=np.ones((5, 5), bool))
    soft = body & (smooth > -300) & (smooth < 300)
    soft = ndimage.binary_erosion(soft, structure=np.ones((5, 5), bool))
    hh = _haar_hh(hu)
    h, w = hh.shape
    m = soft[:2 * h, :2 * w]
    blocks = m[0::2, 0::2] & m[0::2, 1::2] & m[1::2, 0::2] & m[1::2, 1::2]
    if blocks.sum() >= 256:
        return _mad(hh[blocks])
    return _mad(hh)


def _factor(method: str, dose: float | None) -> float:
    table = FACTORS[method]
    by_dose = table.get("by_dose") or {}
    if dose is None or not by_dose:
        return float(table["default"])
    dose = float(dose)
    if not (0.0 < dose <= 1.0) or not math.isfinite(dose):
        raise ValueError(f"dose must be a fraction in (0, 1] (0.25 for 25 %), got {dose}")
    ds = sorted(by_dose)
    x = np.log([d for d in ds])
    y = np.array([by_dose[d] for d in ds])
    return float(np.interp(math.log(dose), x, y))


def _sigma_unit(hu: np.ndarray) -> float:
    return estimate_noise(hu) / HU_SCALE


def denoise_nlm(hu: np.ndarray, dose: float | None = None, *, factor: float | None = None,
                sigma_factor: float = 0.0, patch_size: int = 5, patch_distance: int = 6) -> np.ndarray:
    """Non-local means (scikit-image, fast mode); ``h = factor * sigma``, the estimated sigma given too."""
    from skimage.restoration import denoise_nl_means

    hu = _check(hu)
    sigma = _sigma_unit(hu)
    if sigma < _SIGMA_FLOOR:
        return hu.copy()
    f = _factor("nlm", dose) if factor is None else float(factor)
    out = denoise_nl_means(_to_unit(hu), patch_size=patch_size, patch_distance=patch_distance,
                           h=f * sigma, sigma=sigma_factor * sigma, fast_mode=True, preserve_range=True)
    return _to_hu(out)


def denoise_tv(hu: np.ndarray, dose: float | None = None, *, factor: float | None = None) -> np.ndarray:
    """Chambolle total variation (scikit-image); ``weight = factor * sigma``."""
    from skimage.restoration import denoise_tv_chambolle

    hu = _check(hu)
    sigma = _sigma_unit(hu)
    if sigma < _SIGMA_FLOOR:
        return hu.copy()
    f = _factor("tv", dose) if factor is None else float(factor)
    out = denoise_tv_chambolle(_to_unit(hu), weight=f * sigma)
    return _to_hu(out)


def denoise_bm3d(hu: np.ndarray, dose: float | None = None, *, factor: float | None = None) -> np.ndarray:
    """BM3D (the ``bm3d`` package, both stages); ``sigma_psd = factor * sigma``."""
    import bm3d

    hu = _check(hu)
    sigma = _sigma_unit(hu)
    if sigma < _SIGMA_FLOOR:
        return hu.copy()
    f = _factor("bm3d", dose) if factor is None else float(factor)
    out = bm3d.bm3d(_to_unit(hu), sigma_psd=f * sigma)
    return _to_hu(out)


RUNNERS = {"nlm": denoise_nlm, "tv": denoise_tv, "bm3d": denoise_bm3d}
