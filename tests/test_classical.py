"""Classical denoisers (models/classical.py) on real chest slices from the VALIDATION range.

The chest series' volume index k (ascending z, as ``load_chest`` and the splits use it) is not the
file name's number: the files are numbered from the top, so volume slice 100 is ``00-slice040.dcm``.
The helper below picks files by their z position, exactly as the loader orders them, and never
touches the test slices 120-140.
"""

from __future__ import annotations

import itertools
from functools import lru_cache
from pathlib import Path

import numpy as np
import pydicom
import pytest
from skimage.metrics import peak_signal_noise_ratio

import napari_jointrecon as nj
from napari_jointrecon.dose import simulate_low_dose
from napari_jointrecon.models import classical
from napari_jointrecon.training.data import SPLITS

VAL_SLICES = (100, 107)
DOSE = 0.25
SEED = 0
CROP = np.s_[128:384, 128:384]  # centre 256 x 256, for BM3D

# PSNR gain in dB ([-1000, 1000] HU -> [0, 1]) at 25 % dose, seed 0, asserted somewhat below the
# measured gains (slices 100 / 107): NLM 2.20 / 2.11, TV 2.79 / 2.68, BM3D 2.03 (slice 107, 256 crop).
# the factors are tuned on the validation patients (other kernels and noise textures than this chest
# slice's ramp-filtered noise), so the gains here are what a filter tuned elsewhere gives
MIN_GAIN_DB = {"nlm": 1.0, "tv": 1.0, "bm3d": 0.1}  # measured 1.2-1.4, 1.2-1.4, 0.2


def psnr(hu, ref):
    def unit(a):
        return (np.clip(a, -1000, 1000) + 1000) / 2000

    return peak_signal_noise_ratio(unit(ref), unit(hu), data_range=1.0)


@lru_cache(maxsize=1)
def _validation_case(chest_dir: str):
    files = sorted(Path(chest_dir).glob("*.dcm"))
    z = [float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]) for f in files]
    by_z = [files[i] for i in np.argsort(z)]  # volume index -> file, as load_ct orders slices
    assert len(by_z) == 141 and all(k in SPLITS["val"] for k in VAL_SLICES)
    vol = nj.load_ct([by_z[k] for k in VAL_SLICES])
    full = np.ascontiguousarray(vol.hu, dtype=np.float32)
    low = simulate_low_dose(full, DOSE, seed=SEED, spacing=vol.spacing[1:])
    return full, low


@pytest.fixture
def case(chest_dir):
    return _validation_case(str(chest_dir))


def _images(method, full, low):
    if method == "bm3d":  # slow: one 256 x 256 crop
        return [full[1][CROP]], [low[1][CROP]]
    return list(full), list(low)


@pytest.mark.parametrize("method", ["nlm", "tv", "bm3d"])
def test_runner_denoises_real_low_dose(case, method):
    full, low = case
    fulls, lows = _images(method, full, low)
    gains = []
    for ref, noisy in zip(fulls, lows):
        out = classical.RUNNERS[method](noisy, DOSE)
        assert out.shape == noisy.shape and out.dtype == np.float32
        assert np.all(np.isfinite(out))
        assert abs(float(np.mean(out)) - float(np.mean(noisy))) < 5.0  # HU level kept
        gains.append(psnr(out, ref) - psnr(noisy, ref))
    assert min(gains) > MIN_GAIN_DB[method], f"{method}: PSNR gains {np.round(gains, 2)} dB"


@pytest.mark.parametrize("method", ["nlm", "tv"])
def test_unknown_dose_uses_the_noise(case, method):
    """dose=None infers the dose from the measured noise and still denoises."""
    full, low = case
    sigma = classical.estimate_noise(low[0])
    assert 0.12 < classical.effective_dose(sigma) < 0.6  # measured 0.41
    out = classical.RUNNERS[method](low[0], None)
    # measured NLM 1.95, TV 2.57 dB
    assert psnr(out, full[0]) - psnr(low[0], full[0]) > MIN_GAIN_DB[method] - 0.5


def test_noise_estimate_follows_dose(case):
    full, low = case
    ratios = [classical.estimate_noise(lo) / classical.estimate_noise(fu) for fu, lo in zip(full, low)]
    # ideal 1/sqrt(0.25) = 2 for the pixel std; the Haar estimate sees a little less of the inserted noise
    assert all(1.6 < r < 2.2 for r in ratios), ratios
    assert all(10 < classical.estimate_noise(fu) < 30 for fu in full)


@pytest.mark.parametrize("method", ["nlm", "tv", "bm3d"])
def test_noise_free_images_stay_unchanged(method):
    flat = np.full((128, 128), 40.0, np.float32)
    yy, xx = np.mgrid[:128, :128].astype(np.float32)
    body = np.where((yy - 64) ** 2 + (xx - 64) ** 2 < 50 ** 2, 40.0 + 0.5 * xx, -1000.0).astype(np.float32)
    for image in (flat, body):
        out = classical.RUNNERS[method](image, DOSE)
        assert out.shape == image.shape and out.dtype == np.float32
        assert np.max(np.abs(out - image)) < 0.5


@pytest.mark.parametrize("method", ["nlm", "tv", "bm3d"])
def test_deterministic(case, method):
    _, low = case
    crop = low[1][192:320, 192:320]
    a = classical.RUNNERS[method](crop, DOSE)
    b = classical.RUNNERS[method](crop.copy(), DOSE)
    if method == "bm3d":
        # the bm3d library's threads add up in an order that depends on scheduling: on a busy
        # machine 1 % of the pixels differed by 1e-4 HU between two runs
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-2)
    else:
        np.testing.assert_array_equal(a, b)


def test_factor_table_and_bad_input():
    for method in classical.RUNNERS:
        f = [classical.factor_for(method, d) for d in (0.05, 0.1, 0.25, 0.5, 0.7, 1.0)]
        assert all(v > 0 for v in f) and f[0] == f[1] and f[-1] == f[-2]
        assert all(a >= b for a, b in itertools.pairwise(f))  # weaker at higher dose
    with pytest.raises(ValueError, match="2D"):
        classical.denoise_tv(np.zeros((4, 16, 16), np.float32), DOSE)
    with pytest.raises(ValueError, match="NaN"):
        classical.denoise_nlm(np.full((32, 32), np.nan, np.float32), DOSE)
    with pytest.raises(ValueError, match="dose"):
        classical.denoise_tv(np.random.default_rng(0).normal(0, 20, (64, 64)).astype(np.float32), 1.5)
