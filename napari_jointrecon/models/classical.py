"""Classical denoisers: non-local means, total variation and BM3D, with the strength set from the image.

Each runner ``RUNNERS[name](hu, dose)`` takes a 2D slice in HU and the dose fraction (or ``None``
when unknown) and returns the denoised slice in HU (float32, same shape). The methods work on the
normalised scale ``u = (HU + 1000) / 2000`` (not clipped, so bone above 1000 HU is kept).

The strength is driven by the noise of the image itself. :func:`estimate_noise` measures the noise
in soft tissue, and each method's parameter (NLM ``h``, TV ``weight``, BM3D ``sigma_psd``) is
``factor * sigma`` on the normalised scale. The factor comes from a per-dose table tuned on the
validation slices (see :data:`FACTORS` and ``docs/CLASSICAL.md``), interpolated in log dose and
held constant outside 10-70 %. When the dose is unknown, an effective dose is inferred from the
measured noise relative to the full-dose noise of the chest series (:func:`effective_dose`).

Why a per-dose factor and not one factor: the metric scores against a real full-dose reference that
carries its own noise, so the best output removes only the noise that the lower dose added. That
share of the measured noise shrinks as the dose rises (all of it is native noise at full dose), so
the best factor falls 3-7x from 10 % to 70 %.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from scipy import ndimage

__all__ = [
    "FACTORS",
    "FULL_DOSE_NOISE_HU",
    "RUNNERS",
    "denoise_bm3d",
    "denoise_nlm",
    "denoise_tv",
    "effective_dose",
    "estimate_noise",
    "factor_for",
]

HU_OFFSET = 1000.0
HU_SCALE = 2000.0

#: Parameter = factor * estimated sigma (normalised scale), per dose fraction. Found by a grid search
#: maximising the mean PSNR ([-1000, 1000] HU -> [0, 1], data_range=1) against the full-dose slice on
#: chest VALIDATION slices 100, 104, 108, 112, 114 (full 512 x 512 slices for NLM and TV, centre
#: 256 x 256 crops for BM3D), simulate_low_dose(..., seed=1234) at 10/25/50/70 %; the test slices
#: 120-140 were never used. Tables and the script: docs/CLASSICAL.md.
FACTORS: dict[str, dict[float, float]] = {
    "nlm": {0.10: 1.3, 0.25: 1.0, 0.50: 0.7, 0.70: 0.3},
    "tv": {0.10: 1.0, 0.25: 0.6, 0.50: 0.3, 0.70: 0.15},
    "bm3d": {0.10: 2.0, 0.25: 1.25, 0.50: 0.85, 0.70: 0.6},
}

#: Median of :func:`estimate_noise` over the full-dose chest validation slices 100-114 (HU); used to
#: infer an effective dose when none is given.
FULL_DOSE_NOISE_HU = 17.4

#: Factors tuned on the validation patients (``jointrecon tune-classical``, training/heldout.py)
#: replace the chest table when they ship; the file also says how they were found.
TUNED_FILE = Path(__file__).resolve().parent / "classical_factors.json"
if TUNED_FILE.exists():
    _tuned = json.loads(TUNED_FILE.read_text())
    FACTORS = {m: {float(d): float(f) for d, f in t.items()} for m, t in _tuned["factors"].items()}
    FULL_DOSE_NOISE_HU = float(_tuned["full_dose_noise_hu"])

#: Below this estimated noise (normalised scale, 0.02 HU) an image counts as noise-free.
_SIGMA_FLOOR = 1e-5
#: Std of a unit Gaussian truncated to [-3, 3].
_TRUNC3 = math.sqrt(1.0 - 6.0 * math.exp(-4.5) / math.sqrt(2.0 * math.pi) / math.erf(3.0 / math.sqrt(2.0)))


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


def _robust_std(x: np.ndarray) -> float:
    """Standard deviation of the bulk of ``x``: the MAD, refined by the std within 3 MADs.

    The MAD alone moves in steps on integer-valued CT data; the std of the values within 3 MADs of
    the median, corrected for the truncation of a Gaussian at 3 sigma, varies continuously.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    med = np.median(x)
    mad = 1.4826 * np.median(np.abs(x - med))
    if mad <= 0:
        return float(np.std(x))
    kept = x[np.abs(x - med) < 3.0 * mad]
    return float(np.std(kept) / _TRUNC3)


def estimate_noise(hu: np.ndarray) -> float:
    """Noise standard deviation of a CT slice, in HU, measured in soft tissue.

    A robust std (:func:`_robust_std`) of the finest diagonal Haar detail over the 2x2 blocks that
    lie inside the body (HU > -500 after a 5 px closing) and in soft tissue (-300..300 HU after a
    5x5 median), eroded by 2 px to keep off edges. Falls back to the whole image when fewer than 256
    such blocks exist. CT noise is correlated, so this reads about 0.8 of the pixel std; the tuned
    factors absorb that.
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
        return _robust_std(hh[blocks])
    return _robust_std(hh)


def effective_dose(sigma_hu: float) -> float:
    """The dose fraction whose noise matches ``sigma_hu``: ``(FULL_DOSE_NOISE_HU / sigma_hu)**2``, at most 1."""
    if sigma_hu <= 0:
        return 1.0
    return float(min(1.0, (FULL_DOSE_NOISE_HU / sigma_hu) ** 2))


def _check_dose(dose) -> float | None:
    if dose is None:
        return None
    dose = float(dose)
    if not (0.0 < dose <= 1.0) or not math.isfinite(dose):
        raise ValueError(f"dose must be a fraction in (0, 1] (0.25 for 25 %), or None; got {dose}")
    return dose


def factor_for(method: str, dose: float | None, sigma_hu: float | None = None) -> float:
    """The tuned factor of ``method`` at ``dose`` (log-dose interpolation, constant outside the table).

    With ``dose=None`` the dose is inferred from ``sigma_hu`` by :func:`effective_dose`.
    """
    dose = _check_dose(dose)
    if dose is None:
        dose = effective_dose(sigma_hu) if sigma_hu is not None else 0.25
    table = FACTORS[method]
    ds = sorted(table)
    return float(np.interp(math.log(dose), np.log(ds), [table[d] for d in ds]))


def _strength(method: str, hu: np.ndarray, dose, factor) -> float | None:
    """``factor * sigma`` on the normalised scale, or None for a noise-free image."""
    dose = _check_dose(dose)
    sigma_hu = estimate_noise(hu)
    if sigma_hu / HU_SCALE < _SIGMA_FLOOR:
        return None
    f = factor_for(method, dose, sigma_hu) if factor is None else float(factor)
    return f * sigma_hu / HU_SCALE


def denoise_nlm(hu: np.ndarray, dose: float | None = None, *, factor: float | None = None,
                patch_size: int = 5, patch_distance: int = 6) -> np.ndarray:
    """Non-local means (scikit-image, fast mode, 5x5 patches, 13x13 search); ``h = factor * sigma``.

    scikit-image's ``sigma`` argument (which subtracts 2 sigma^2 from patch distances) is left at 0:
    with it, even a tiny ``h`` smooths every patch within the noise level, over-smoothing at 50-70 %.
    """
    from skimage.restoration import denoise_nl_means

    hu = _check(hu)
    strength = _strength("nlm", hu, dose, factor)
    if strength is None:
        return hu.copy()
    out = denoise_nl_means(_to_unit(hu), patch_size=patch_size, patch_distance=patch_distance,
                           h=strength, sigma=0.0, fast_mode=True, preserve_range=True)
    return _to_hu(out)


def denoise_tv(hu: np.ndarray, dose: float | None = None, *, factor: float | None = None) -> np.ndarray:
    """Chambolle total variation (scikit-image); ``weight = factor * sigma``."""
    from skimage.restoration import denoise_tv_chambolle

    hu = _check(hu)
    strength = _strength("tv", hu, dose, factor)
    if strength is None:
        return hu.copy()
    out = denoise_tv_chambolle(_to_unit(hu), weight=strength)
    return _to_hu(out)


def denoise_bm3d(hu: np.ndarray, dose: float | None = None, *, factor: float | None = None) -> np.ndarray:
    """BM3D (the ``bm3d`` package, both stages); ``sigma_psd = factor * sigma``."""
    import bm3d

    hu = _check(hu)
    strength = _strength("bm3d", hu, dose, factor)
    if strength is None:
        return hu.copy()
    out = bm3d.bm3d(_to_unit(hu), sigma_psd=strength)
    return _to_hu(out)


RUNNERS = {"nlm": denoise_nlm, "tv": denoise_tv, "bm3d": denoise_bm3d}
