"""The noise of the scan in front of us (noise.py), the series' own noise in training (series.py),
and what a model is told about it (inference.conditioning_for)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import napari_jointrecon as nj
from napari_jointrecon import inference, noise
from napari_jointrecon.dose import DOSE_LEVELS


def _body(noise_img: np.ndarray) -> np.ndarray:
    """A soft-tissue disk (40 HU) in air, plus the given noise."""
    h, w = noise_img.shape
    yy, xx = np.mgrid[0:h, 0:w]
    disk = (yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (0.42 * h) ** 2
    return np.where(disk, 40.0, -1000.0).astype(np.float32) + noise_img


def _textured(shape, sd, cutoff, seed=0):
    z = noise.apply_texture(np.random.default_rng(seed).standard_normal(shape).astype(np.float32), cutoff)
    return z * (sd / z.std())


@pytest.mark.parametrize("cutoff", [None, 0.25])
def test_noise_sd_reads_white_and_fine_grained_noise(cutoff):
    assert noise.noise_sd(_body(_textured((256, 256), 20.0, cutoff))) == pytest.approx(20.0, rel=0.08)


def test_noise_sd_reads_coarse_grain_somewhat_low_and_in_order():
    """16-pixel patches with their plane removed miss part of very coarse grain (documented in
    noise.py); training and inference use the same measure, so the conditioning stays consistent."""
    reads = [noise.noise_sd(_body(_textured((256, 256), 20.0, c))) for c in (0.25, 0.12, 0.08)]
    assert 0.8 * 20 < reads[1] < 0.95 * 20 and 0.65 * 20 < reads[2] < reads[1] < reads[0]


def test_noise_sd_without_soft_tissue_says_so():
    with pytest.raises(noise.NoTissueError, match="no flat soft tissue"):
        noise.noise_sd(np.full((64, 64), -1000.0, np.float32))
    with pytest.raises(ValueError, match="finite"):
        noise.noise_sd(np.full((64, 64), np.nan, np.float32))


def test_texture_filter_moves_the_nps_to_lower_frequencies():
    z = np.random.default_rng(1).standard_normal((8, 64, 64)).astype(np.float32)
    means = [noise.nps_mean_frequency(noise._detrend(noise.apply_texture(z, c)[:, :32, :32]))
             for c in (None, 0.3, 0.15, 0.07)]
    assert all(a > b for a, b in zip(means, means[1:]))
    assert noise.texture_filter((8, 8), None) is None


def test_added_noise_adds_in_variance_on_a_real_scan(shared_data):
    """On real anatomy the measured level of 30 HU of added noise is 30 HU (within 12 %)."""
    hu = nj.load_ct(shared_data / "ct-series" / "philips-bigbore-B-abdomen").hu[10:30:6]
    base = noise.noise_sd(hu)
    added = noise.noise_sd(hu + _textured(hu.shape, 30.0, 0.15, seed=2))
    assert math.sqrt(added ** 2 - base ** 2) == pytest.approx(30.0, rel=0.12)


@pytest.mark.parametrize("series", ["philips-bigbore-B-abdomen", "siemens-sensation10-B70f-chest"])
def test_inserted_noise_follows_the_dose_law_with_the_series_texture(shared_data, series):
    """EVALUATION.md: noise grows as 1/sqrt(dose) from the series' own level, with its NPS."""
    from napari_jointrecon.training.series import SeriesCache, fit_texture, quantum_noise

    vol = nj.load_ct(shared_data / "ct-series" / series)
    clean = np.ascontiguousarray(vol.hu[[12, 20]])
    raw = quantum_noise(clean, float(vol.spacing[1]), seed=0)
    cutoff, sd_full, scale, f_series = fit_texture(clean, raw)
    cache = SeriesCache(series, "test", clean, (noise.apply_texture(raw, cutoff) * scale).astype(np.float16),
                        sd_full, cutoff, f_series, [12, 20])
    assert sd_full == pytest.approx(noise.noise_sd(clean), rel=0.1)
    for dose in DOSE_LEVELS:
        low = np.stack([cache.low(k, dose)[0] for k in range(2)])
        assert noise.noise_sd(low) / sd_full == pytest.approx(1 / math.sqrt(dose), rel=0.12), dose
        assert cache.low(0, dose)[1] == pytest.approx(sd_full * math.sqrt((1 - dose) / dose))
    inserted = cache.noise.astype(np.float32)
    corners = {k: noise.flat_patches(clean[k], noise.NPS_PATCH, fraction=0.5) for k in range(2)}
    f_inserted = noise.nps_mean_frequency(np.concatenate(
        [noise.patch_stack(inserted[k], c, noise.NPS_PATCH) for k, c in corners.items()]))
    assert f_inserted == pytest.approx(f_series, rel=0.15)


def test_the_two_kernels_of_one_scan_get_their_own_texture(shared_data):
    """The sharp B70f and the smooth B40f reconstructions of one scan: the sharp one's noise is finer."""
    f = {}
    for series in ("siemens-sensation10-B70f-chest", "siemens-sensation10-B40f-chest"):
        hu = nj.load_ct(shared_data / "ct-series" / series).hu[15]
        f[series] = noise.nps_mean_frequency(noise.patch_stack(
            hu, noise.flat_patches(hu, noise.NPS_PATCH, fraction=0.5), noise.NPS_PATCH))
    assert f["siemens-sensation10-B70f-chest"] > 1.8 * f["siemens-sensation10-B40f-chest"]


NOISE_CARD = {"conditioning": "noise", "estimate_factor": 0.9, "typical_full_dose_sd": 20.0}


def test_conditioning_of_a_noise_model(monkeypatch):
    monkeypatch.setattr("napari_jointrecon.models.registry.read_card", lambda name: NOISE_CARD)
    img = _body(_textured((128, 128), 40.0, 0.2))
    sd = noise.noise_sd(img)
    given = inference.conditioning_for("x", img, 0.25)
    assert given.noise_sd == pytest.approx(sd)
    assert given.level_hu == pytest.approx(sd * math.sqrt(0.75)) and given.value == pytest.approx(given.level_hu / 1000)
    assert not given.estimated and given.label() == "25%" and "25% dose" in given.describe()
    est = inference.conditioning_for("x", img, "estimate")
    assert est.estimated and est.dose is None and est.level_hu == pytest.approx(0.9 * sd)
    assert inference.conditioning_for("x", img, None) == est
    air = np.full((64, 64), -1000.0, np.float32)
    fallback = inference.conditioning_for("x", air, 0.25)  # no tissue: the card's typical level
    assert fallback.noise_sd is None and fallback.level_hu == pytest.approx(20.0 * math.sqrt(3))
    with pytest.raises(ValueError, match="cannot estimate the noise.*give the dose"):
        inference.conditioning_for("x", air, "estimate")
    for bad in (0.0, 1.5, float("nan"), "half"):
        with pytest.raises(ValueError, match="dose"):
            inference.conditioning_for("x", img, bad)


def test_conditioning_of_a_dose_model_and_a_classical_filter():
    from napari_jointrecon.dose import estimate_dose

    img = _body(_textured((128, 128), 40.0, None))
    assert inference.conditioning_for("tv", img, 0.5).value == 0.5
    est = inference.conditioning_for("tv", img, "estimate")
    assert est.estimated and est.value == estimate_dose(img)[0] and est.noise_sd is None


@pytest.mark.parametrize("shape,size", [((512, 512), 16), ((203, 170), 16), ((100, 131), 32)])
def test_flat_patches_choose_as_sliding_windows_over_the_smoothed_slice_do(shape, size):
    """The block shortcut of flat_patches gives the patches a direct sliding-window computation gives."""
    from numpy.lib.stride_tricks import sliding_window_view
    from scipy import ndimage

    img = _body(np.random.default_rng(3).normal(0, 25, shape).astype(np.float32))
    img[: shape[0] // 3, : shape[1] // 4] += 250.0  # a brighter corner: some windows leave soft tissue
    got = noise.flat_patches(img, size, fraction=0.5)
    smooth = ndimage.gaussian_filter(img, noise.SELECT_SIGMA).astype(np.float64)
    win = sliding_window_view(smooth, (size, size))[:: size // 2, :: size // 2]
    ok = (win.min(axis=(2, 3)) > -200) & (win.max(axis=(2, 3)) < 300)
    sd = win.std(axis=(2, 3))
    cands = sorted((sd[i, j], i * (size // 2), j * (size // 2)) for i, j in zip(*np.nonzero(ok)))
    want = [(y, x) for _, y, x in cands[:max(min(len(cands), 4), int(len(cands) * 0.5))][:64]]
    assert len(got) == len(want) >= 4 and set(got) == set(want)
    with pytest.raises(ValueError, match="even"):
        noise.flat_patches(img, 15)


def test_detrend_removes_a_plane_exactly():
    yy, xx = np.mgrid[0:16, 0:16].astype(np.float32)
    rng = np.random.default_rng(0)
    residual = rng.normal(0, 1, (3, 16, 16)).astype(np.float32)
    residual = noise._detrend(residual)  # a residual with no plane in it stays as it is
    planes = np.stack([a + b * yy + c * xx for a, b, c in rng.normal(0, 50, (3, 3))])
    assert np.allclose(noise._detrend(planes + residual), residual, atol=1e-3)
