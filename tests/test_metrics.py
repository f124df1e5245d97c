"""Image metrics of the protocol (../shared/EVALUATION.md): definitions, body mask, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from napari_jointrecon import metrics as M


@pytest.fixture
def pair():
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:96, 0:96]
    ref = np.where(np.hypot(y - 47.5, x - 47.5) < 35, 40.0, -1000.0)
    return ref + rng.normal(0, 20, ref.shape), ref


def test_psnr_ssim_rmse_follow_their_definitions(pair):
    test, ref = pair
    a, b = M.normalise(test), M.normalise(ref)
    assert M.psnr(test, ref) == pytest.approx(peak_signal_noise_ratio(b, a, data_range=1.0))
    assert M.ssim(test, ref) == pytest.approx(structural_similarity(  # the protocol's SSIM settings
        b, a, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False))
    assert M.rmse_hu(test, ref) == pytest.approx(np.sqrt(np.mean((test - ref) ** 2)))


def test_body_mask_keeps_tissue_at_the_image_edge():
    """A closing never removes foreground: tissue touching the edge (a tight field of view, a
    crop) stays in the mask."""
    assert M.body_mask(np.full((64, 64), 40.0)).all()
    hu = np.full((64, 64), -1000.0)
    hu[:, :20] = 40.0  # the body fills the left part and runs off the image
    hu[30:33, 5:8] = -900.0  # a small air pocket inside: filled
    mask = M.body_mask(hu)
    assert mask[:, :20].all() and not mask[:, 30:].any()


def test_bad_input_gets_a_clear_error(pair):
    test, ref = pair
    nan = test.copy()
    nan[3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        M.image_metrics(nan, ref)
    with pytest.raises(ValueError, match="NaN"):
        M.psnr(test, np.where(ref > 0, np.inf, ref))
    small = np.ones((10, 10), bool)
    for call in (lambda: M.noise_std(test, small), lambda: M.cnr(test, small, small),
                 lambda: M.rmse_hu(test, ref, small)):
        with pytest.raises(ValueError, match="must match"):
            call()
    roi = np.zeros(test.shape, bool)
    roi[40:50, 40:50] = True
    with pytest.raises(ValueError, match="NaN"):
        M.noise_std(nan, np.ones(test.shape, bool))
    assert M.noise_std(test, roi) == pytest.approx(test[roi].std(ddof=1))
