"""Image quality metrics, following ``EVALUATION.md``.

* PSNR and SSIM on HU clipped to [-1000, 1000] and mapped to [0, 1] (``data_range=1``), and on the
  abdomen window [-160, 240] HU (``data_range=400``);
* SSIM with scikit-image's ``structural_similarity`` and Wang et al.'s settings (Gaussian weights,
  sigma 1.5, population covariance);
* RMSE in HU on unclipped values, inside the body mask (HU > -500 after a 5 px closing) and over
  the whole image;
* reference-free: noise standard deviation in a region, and contrast-to-noise ratio of two regions.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

__all__ = ["normalise", "psnr", "ssim", "rmse_hu", "body_mask", "image_metrics", "noise_std", "cnr",
           "ABDOMEN_WINDOW"]

ABDOMEN_WINDOW = (-160.0, 240.0)


def _check(a: np.ndarray, b: np.ndarray) -> None:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if a.ndim != 2:
        raise ValueError(f"metrics are computed per 2D slice, got shape {a.shape}")
    for name, x in (("image", a), ("reference", b)):
        if not np.isfinite(x).all():
            raise ValueError(f"the {name} has NaN or infinite pixels")


def _region(hu: np.ndarray, mask, what: str) -> np.ndarray:
    """The finite HU of ``hu`` inside ``mask`` (same shape), with clear errors."""
    hu, mask = np.asarray(hu, dtype=np.float64), np.asarray(mask, dtype=bool)
    if mask.shape != hu.shape:
        raise ValueError(f"the {what} is {mask.shape}, the image {hu.shape}: they must match")
    values = hu[mask]
    if not np.isfinite(values).all():
        raise ValueError(f"the image has NaN or infinite pixels in the {what}")
    return values


def normalise(hu: np.ndarray) -> np.ndarray:
    """HU clipped to [-1000, 1000] and mapped linearly to [0, 1]."""
    return (np.clip(np.asarray(hu, dtype=np.float64), -1000.0, 1000.0) + 1000.0) / 2000.0


def _window(hu: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    return np.clip(np.asarray(hu, dtype=np.float64), *window)


def psnr(test_hu: np.ndarray, ref_hu: np.ndarray, *, window: tuple[float, float] | None = None) -> float:
    """PSNR in dB: on the [0, 1] normalisation (default) or on an HU window (data_range = width)."""
    _check(test_hu, ref_hu)
    if window is None:
        return float(peak_signal_noise_ratio(normalise(ref_hu), normalise(test_hu), data_range=1.0))
    return float(peak_signal_noise_ratio(_window(ref_hu, window), _window(test_hu, window),
                                         data_range=window[1] - window[0]))


def ssim(test_hu: np.ndarray, ref_hu: np.ndarray, *, window: tuple[float, float] | None = None) -> float:
    """SSIM (Gaussian weights, sigma 1.5, population covariance) on the same scales as :func:`psnr`."""
    _check(test_hu, ref_hu)
    if window is None:
        a, b, rng = normalise(test_hu), normalise(ref_hu), 1.0
    else:
        a, b, rng = _window(test_hu, window), _window(ref_hu, window), window[1] - window[0]
    return float(structural_similarity(b, a, data_range=rng, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False))


def body_mask(hu: np.ndarray) -> np.ndarray:
    """HU > -500 after a 5-pixel closing (holes filled), per EVALUATION.md."""
    mask = np.asarray(hu) > -500
    # padded, so that the closing's erosion does not eat the body where it touches the image's
    # edge (a closing never removes foreground; unpadded with a background border it would)
    closed = ndimage.binary_closing(np.pad(mask, 6), structure=np.ones((3, 3)), iterations=5,
                                    border_value=0)[6:-6, 6:-6]
    return ndimage.binary_fill_holes(closed | mask)


def rmse_hu(test_hu: np.ndarray, ref_hu: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Root mean square error in HU (unclipped), optionally inside a mask."""
    _check(test_hu, ref_hu)
    diff = np.asarray(test_hu, dtype=np.float64) - np.asarray(ref_hu, dtype=np.float64)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != diff.shape:
            raise ValueError(f"the mask is {mask.shape}, the images {diff.shape}: they must match")
        if not mask.any():
            raise ValueError("the mask is empty")
        diff = diff[mask]
    return float(np.sqrt(np.mean(diff ** 2)))


def image_metrics(test_hu: np.ndarray, ref_hu: np.ndarray) -> dict[str, float]:
    """Every reference metric of the protocol for one slice."""
    mask = body_mask(ref_hu)
    return {
        "psnr": psnr(test_hu, ref_hu),
        "ssim": ssim(test_hu, ref_hu),
        "psnr_abdomen": psnr(test_hu, ref_hu, window=ABDOMEN_WINDOW),
        "ssim_abdomen": ssim(test_hu, ref_hu, window=ABDOMEN_WINDOW),
        "rmse_body_hu": rmse_hu(test_hu, ref_hu, mask) if mask.any() else float("nan"),
        "rmse_hu": rmse_hu(test_hu, ref_hu),
    }


def noise_std(hu: np.ndarray, mask: np.ndarray) -> float:
    """Standard deviation in HU inside a (homogeneous) region."""
    values = _region(hu, mask, "region")
    if values.size < 2:
        raise ValueError("the region needs at least two pixels")
    return float(values.std(ddof=1))


def cnr(hu: np.ndarray, roi: np.ndarray, background: np.ndarray) -> float:
    """Contrast-to-noise ratio |mean(roi) - mean(background)| / std(background)."""
    a = _region(hu, roi, "ROI")
    b = _region(hu, background, "background")
    if a.size < 1 or b.size < 2:
        raise ValueError("each region needs pixels (the background at least two)")
    sd = b.std(ddof=1)
    if sd == 0:  # a noise-free background (e.g. air of a phantom): unbounded CNR
        return float("inf") if a.mean() != b.mean() else 0.0
    return float(abs(a.mean() - b.mean()) / sd)
