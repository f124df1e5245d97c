"""Low-dose simulation (``napari_jointrecon.dose``): projector, noise law, calibration, determinism.

Measured values are printed with ``-s`` (``.venv/bin/python -m pytest tests/test_dose.py -q -p no:xvfb
-s``), quoted next to the assertions and in docs/DOSE.md. Everything is seeded, so they are
reproducible.

Orientation note: the project's view at angle theta (``t = x cos + y sin``, rows pointing down) is
scikit-image's ``radon`` view at ``-theta`` (which is its view at ``180 - theta`` with the detector
mirrored); for odd image and detector sizes the two detector centres coincide, so the sinograms can
be compared bin for bin.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.data import shepp_logan_phantom
from skimage.transform import iradon, radon, resize

import napari_jointrecon as nj
from napari_jointrecon.dose import (
    DEFAULT_DOSE_MODEL,
    DOSE_LEVELS,
    ParallelBeamProjector,
    combine_insertion_noise,
    insertion_noise_basis,
    simulate_low_dose,
)
from napari_jointrecon.phantom import make_thorax_phantom
from napari_jointrecon.volume import CTVolume

CHEST_SLICES = slice(60, 64)  # four consecutive 512 x 512 slices (upper chest, mediastinum)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """One thread: the CPUs are shared with other jobs, and two torch threads competing with them
    made this file 1.6x slower (56 s against 34 s, load average 4 on 2 cores)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------------------------------------------------
# helpers


def shepp_logan(n: int, smooth: float = 0.0) -> np.ndarray:
    img = resize(shepp_logan_phantom(), (n, n), anti_aliasing=True).astype(np.float64)
    return ndimage.gaussian_filter(img, smooth) if smooth else img


def inner_disk(n: int, fraction: float = 0.8) -> np.ndarray:
    yy, xx = np.mgrid[:n, :n] - (n - 1) / 2
    return np.hypot(yy, xx) < fraction * (n - 1) / 2


def rms(x) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def local_std(x: np.ndarray, size: int = 11) -> np.ndarray:
    """In-plane ``size`` x ``size`` local standard deviation of every slice of ``(z, y, x)``."""
    x = np.asarray(x, dtype=np.float64)
    m = ndimage.uniform_filter(x, (1, size, size))
    m2 = ndimage.uniform_filter(x * x, (1, size, size))
    return np.sqrt(np.maximum(m2 - m * m, 0.0))


def soft_tissue_mask(hu: np.ndarray) -> np.ndarray:
    """HU in (-100, 150), eroded by 5 pixels in every slice."""
    raw = (hu > -100) & (hu < 150)
    return np.stack([ndimage.binary_erosion(m, iterations=5) for m in raw])


def inserted(n1, n2, dose):
    return combine_insertion_noise(n1, n2, dose).astype(np.float64)


def project(proj: ParallelBeamProjector, img: np.ndarray) -> np.ndarray:
    return proj.forward(torch.as_tensor(img[None], dtype=torch.float32))[0].double().numpy()


def reconstruct(proj: ParallelBeamProjector, sino: np.ndarray) -> np.ndarray:
    return proj.fbp(torch.as_tensor(sino[None], dtype=torch.float32))[0].double().numpy()


# ------------------------------------------------------------------------------------------------
# projector


@pytest.mark.parametrize("n", [64, 128])
def test_forward_projection_preserves_mass_in_every_view(n):
    """Sum over the detector = sum of the image, for each of 360 views.

    Exact (float32 rounding) at 0 and 90 degrees, where the rays follow the pixel grid; within
    0.2 % at other angles, where bilinear samples on the rotated grid only approximate the mass
    (measured worst view: 1.9e-3 at 64 px, 6.0e-4 at 128 px; 1.7e-4 / 4.7e-5 once smoothed).
    """
    proj = ParallelBeamProjector((n, n), 360)
    for smooth, tol in ((0.0, 2e-3), (1.5, 2e-4)):
        img = shepp_logan(n, smooth)
        mass = project(proj, img).sum(axis=1) / img.sum()
        print(f"\n{n} px, smooth {smooth}: worst view mass error {np.abs(mass - 1).max():.2e}")
        assert np.abs(mass[[0, 180]] - 1).max() < 1e-6
        assert np.abs(mass - 1).max() < tol, (smooth, np.abs(mass - 1).max())


def test_forward_projection_equals_skimage_radon():
    """129 px (odd, detector of 185 bins: centres coincide): bin for bin equal to ``radon`` at -theta."""
    n = 129
    img = shepp_logan(n)
    proj = ParallelBeamProjector((n, n), 360)
    assert proj.n_det == 185
    theta = np.arange(360) * 0.5
    ours = project(proj, img)
    sk = radon(img, -theta, circle=True)  # (n, views), zero outside the inscribed circle
    off = (proj.n_det - 1) // 2 - n // 2
    embedded = np.zeros_like(ours)
    embedded[:, off:off + n] = sk.T
    print(f"\nsinogram vs radon(-theta): relative RMS difference {rms(ours - embedded) / rms(embedded):.2e}")
    assert rms(ours - embedded) / rms(embedded) < 1e-5  # measured 2.5e-7
    # the mirrored view at 180 - theta is the same profile
    mirrored = radon(img, 180 - theta[1:], circle=True)[::-1].T
    assert rms(ours[1:, off:off + n] - mirrored) / rms(mirrored) < 1e-5

    # and the project's FBP of scikit-image's sinogram is scikit-image's iradon
    ours_rec = reconstruct(proj, embedded)
    sk_rec = iradon(sk, -theta, filter_name="ramp", circle=True)
    inner = inner_disk(n)
    print(f"FBP of radon's sinogram vs iradon: relative RMS difference "
          f"{rms((ours_rec - sk_rec)[inner]) / rms(sk_rec[inner]):.2e}")
    assert rms((ours_rec - sk_rec)[inner]) / rms(sk_rec[inner]) < 1e-5  # measured 7.7e-7


@pytest.mark.filterwarnings("ignore:Radon transform")
@pytest.mark.parametrize("n", [64, 128])
def test_fbp_round_trip_reproduces_the_image(n):
    """FBP(forward(img)) in the inner 80 % disk, against scikit-image's iradon(radon(img)).

    Measured RMSE (image range 0..1), ours / scikit-image:
    64 px  sharp 0.0445 / 0.0392, smoothed (sigma 1.5 px) 0.0047 / 0.0045;
    128 px sharp 0.0334 / 0.0334, smoothed 0.0053 / 0.0054. Mean preserved within 0.3 % (worst:
    64 px sharp, -0.20 %).
    """
    proj = ParallelBeamProjector((n, n), 360)
    theta = np.arange(360) * 0.5
    inner = inner_disk(n)
    for smooth, tol in ((0.0, 0.05), (1.5, 0.007)):
        img = shepp_logan(n, smooth)
        rec = reconstruct(proj, project(proj, img))
        sk = iradon(radon(img, -theta), -theta, filter_name="ramp")
        err, sk_err = rms((rec - img)[inner]), rms((sk - img)[inner])
        print(f"\n{n} px, smooth {smooth}: round-trip RMSE ours {err:.4f}, scikit-image {sk_err:.4f}, "
              f"mean ratio {rec[inner].mean() / img[inner].mean():.5f}")
        assert err < tol, (smooth, err)
        assert err < 1.2 * sk_err, (smooth, err, sk_err)
        assert abs(rec[inner].mean() / img[inner].mean() - 1) < 3e-3


# ------------------------------------------------------------------------------------------------
# the real chest: calibration and the 1/sqrt(dose) law


@pytest.fixture(scope="module")
def chest(shared_data):
    files = sorted((shared_data / "chest-ct-dicom").glob("*.dcm"))
    ct = nj.load_ct(files[CHEST_SLICES])
    assert ct.shape == (4, 512, 512)
    return ct


@pytest.fixture(scope="module")
def chest_basis(chest):
    pixel_mm = math.sqrt(chest.spacing[1] * chest.spacing[2])
    return insertion_noise_basis(chest.hu, pixel_mm, seed=0)


@pytest.fixture(scope="module")
def chest_regions(chest):
    """Soft tissue, and its flattest 10 % in both slices of each adjacent pair.

    "Flattest" is judged on the image smoothed by a 2 px Gaussian (11 x 11 local std), whose own
    noise is about 2 HU, so the choice hardly depends on the noise that is then measured there.
    """
    hu = chest.hu.astype(np.float64)
    mask = soft_tissue_mask(hu)
    structure = local_std(ndimage.gaussian_filter(hu, (0, 2, 2)))
    pair_mask = mask[1:] & mask[:-1]
    pair_structure = np.maximum(structure[1:], structure[:-1])
    flat = pair_mask & (pair_structure <= np.percentile(pair_structure[pair_mask], 10))
    return mask, flat


def slice_difference_noise(vol: np.ndarray, flat: np.ndarray) -> float:
    """Noise from adjacent-slice differences ``(s[k+1] - s[k]) / sqrt(2)``: RMS of the 11 x 11 local
    std over ``flat``. Anatomy that is the same in both slices cancels; independent noise does not."""
    vol = np.asarray(vol, dtype=np.float64)
    diff = (vol[1:] - vol[:-1]) / math.sqrt(2)
    return float(np.sqrt(np.mean(local_std(diff)[flat] ** 2)))


def test_chest_inserted_noise_follows_inverse_sqrt_dose(chest, chest_basis, chest_regions):
    """sqrt(sigma_full^2 + sigma_inserted(a)^2) / sigma_full = 1/sqrt(a) within 10 %.

    sigma_full = std of the model's full-dose noise n1 + n2 over eroded soft tissue (17.5 HU);
    the inserted std divided by sqrt((1-a)/a) is 17.55 / 17.55 / 17.58 / 17.67 HU at 70/50/25/10 %
    (the electronic-noise term grows slightly faster than (1-a)/a). Measured ratios
    1.196 / 1.415 / 2.005 / 3.185 against 1.195 / 1.414 / 2 / 3.162.
    """
    n1, n2 = chest_basis
    mask, _ = chest_regions
    sigma_full = float(np.std((n1 + n2)[mask]))
    assert 10.0 < sigma_full < 20.0, sigma_full
    implied = []
    for a in DOSE_LEVELS[::-1]:  # 0.7, 0.5, 0.25, 0.1
        s_ins = float(np.std(inserted(n1, n2, a)[mask]))
        implied.append(s_ins / math.sqrt((1 - a) / a))
        ratio = math.hypot(sigma_full, s_ins) / sigma_full
        print(f"\nchest {a:.0%}: inserted {s_ins:.2f} HU, / sqrt((1-a)/a) = {implied[-1]:.2f} HU, "
              f"sigma_full {sigma_full:.2f} HU, ratio {ratio:.3f} (1/sqrt(a) = {1 / math.sqrt(a):.3f})")
        assert abs(ratio * math.sqrt(a) - 1) < 0.10, (a, ratio)
    assert all(10.0 < s < 20.0 for s in implied), implied
    assert max(implied) / min(implied) < 1.03, implied


def test_chest_simulated_full_dose_noise_matches_the_real_noise(chest, chest_basis, chest_regions):
    """The calibration (I0 = 1.3e6, s2 = 10, 360 views) against the real scan's own noise.

    Measured: real noise as the 10th percentile of the 11 x 11 local std over eroded soft tissue:
    22.0 HU (above the 10-20 HU target). That estimator includes anatomy and depends on where the
    noise is low or the image flat (on the simulated noise it gives 14.0 HU, against a global std
    of 17.5 HU), so it is not compared with the simulation (ratio 0.80, recorded only).
    Like for like, at the same flattest pixels and with the same adjacent-slice-difference
    estimator: real 20.3 HU, simulated 18.7 HU, ratio 0.92 (within 15 %); the global simulated std
    (17.5 HU) is 0.86 of it. The simulated noise is therefore about 8 % *below* the real noise.
    """
    n1, n2 = chest_basis
    mask, flat = chest_regions
    hu = chest.hu.astype(np.float64)
    real_p10 = float(np.percentile(local_std(hu)[mask], 10))
    assert 15.0 < real_p10 < 25.0, real_p10  # measured 22.0
    sim_global = float(np.std((n1 + n2)[mask]))
    assert 10.0 < sim_global < 20.0, sim_global  # 17.5
    real = slice_difference_noise(hu, flat)
    sim = slice_difference_noise(n1 + n2, flat)
    sim_p10 = float(np.percentile(local_std(n1 + n2)[mask], 10))
    print(f"\nchest full dose: real p10 local std {real_p10:.2f} HU (simulated {sim_p10:.2f} HU), "
          f"simulated global std {sim_global:.2f} HU (ratio {sim_global / real_p10:.3f}); at the {flat.sum()} flattest pixels, slice differences: "
          f"real {real:.2f} HU, simulated {sim:.2f} HU (ratio {sim / real:.3f}), global/real "
          f"{sim_global / real:.3f}")
    assert 10.0 < real < 25.0, real  # 20.3
    assert abs(sim / real - 1) < 0.15, (sim, real)  # 18.7 / 20.3 = 0.92
    assert abs(sim_global / real - 1) < 0.15, (sim_global, real)  # 0.86


def test_chest_low_dose_images_follow_inverse_sqrt_dose(chest, chest_basis, chest_regions):
    """End to end on the images: noise of the simulated low-dose slices / noise of the real ones.

    Same flattest pixels, same adjacent-slice-difference estimator. Measured 1.183 / 1.381 / 1.913
    / 2.990 at 70/50/25/10 % against 1.195 / 1.414 / 2 / 3.162 (-1.0 / -2.4 / -4.3 / -5.4 %): the
    shortfall is the calibration's 8 % deficit of simulated full-dose noise, amplified by (1-a)/a.
    """
    n1, n2 = chest_basis
    _, flat = chest_regions
    hu = chest.hu.astype(np.float64)
    real = slice_difference_noise(hu, flat)
    for a in DOSE_LEVELS[::-1]:
        ratio = slice_difference_noise(hu + inserted(n1, n2, a), flat) / real
        print(f"\nchest images {a:.0%}: low/full noise {ratio:.3f} (1/sqrt(a) = {1 / math.sqrt(a):.3f}, "
              f"{100 * (ratio * math.sqrt(a) - 1):+.1f} %)")
        assert abs(ratio * math.sqrt(a) - 1) < 0.10, (a, ratio)


def test_volume_simulation_is_the_noise_basis_combination(chest):
    """``simulate_low_dose`` on a volume (in batches of 2, so slice seeds cross a batch boundary)
    equals ``hu + combine_insertion_noise(*insertion_noise_basis(hu), a)`` slice by slice.

    On the central 256 x 256 of three chest slices (the full slices would double the run time).
    """
    crop = CTVolume(hu=chest.hu[:3, 128:384, 128:384].copy(), spacing=chest.spacing,
                    origin=chest.origin, source_format=chest.source_format)
    pixel_mm = math.sqrt(chest.spacing[1] * chest.spacing[2])
    low = simulate_low_dose(crop, 0.25, seed=5, batch=2)
    expected = crop.hu + combine_insertion_noise(*insertion_noise_basis(crop.hu, pixel_mm, seed=5), 0.25)
    assert isinstance(low, CTVolume) and "(insert," in low.notes[0]
    assert low.hu.dtype == np.float32 and low.hu.shape == crop.hu.shape
    assert np.abs(low.hu - expected).max() < 1e-3  # HU
    assert np.std(low.hu - crop.hu) > 5.0  # noise was added (13.6 HU: the crop is less attenuating)


# ------------------------------------------------------------------------------------------------
# the noise-free phantom, Poisson counts


def test_phantom_poisson_noise_follows_inverse_sqrt_dose():
    """std(low - phantom) in flat 40 HU soft tissue (eroded 3 px), 2.5 mm pixels, 4 slices.

    Measured 3.68 / 4.35 / 5.09 / 7.34 / 11.56 HU at 100/70/50/25/10 %: ratios
    1.182 / 1.383 / 1.994 / 3.142 against 1.195 / 1.414 / 2 / 3.162. Mean within 0.15 HU of 0.
    """
    ph = make_thorax_phantom(2.5, z_extent_mm=10.0, texture=False)
    assert ph.shape == (4, 128, 128)
    flat = np.stack([ndimage.binary_erosion(m, iterations=3) for m in np.abs(ph.hu - 40.0) < 0.5])
    assert flat.sum() > 1500
    sigma = {}
    for a in (1.0, *DOSE_LEVELS[::-1]):
        low = simulate_low_dose(ph, a, seed=1)  # a generated volume: "poisson" by default
        assert "poisson" in low.notes[0]
        noise = (low.hu - ph.hu)[flat]
        assert abs(float(noise.mean())) < 1.0, (a, noise.mean())
        sigma[a] = float(noise.std())
        print(f"\nphantom {a:.0%}: noise std {sigma[a]:.2f} HU, mean {noise.mean():+.3f} HU, "
              f"ratio {sigma[a] / sigma[1.0]:.3f} (1/sqrt(a) = {1 / math.sqrt(a):.3f})")
    assert 2.0 < sigma[1.0] < 6.0, sigma  # the phantom's own full-dose noise
    for a in DOSE_LEVELS:
        assert abs(sigma[a] / sigma[1.0] * math.sqrt(a) - 1) < 0.10, (a, sigma)


# ------------------------------------------------------------------------------------------------
# determinism, types, geometry


@pytest.fixture(scope="module")
def small():
    """A 64 x 64 x 3 phantom at 5 mm (fast), with mild texture."""
    return make_thorax_phantom(5.0, z_extent_mm=15.0, seed=3)


def test_same_seed_same_noise_other_seed_other_noise(small):
    img = small.hu[1].copy()
    before = img.copy()
    for method in ("insert", "poisson"):
        a = simulate_low_dose(img, 0.25, seed=7, spacing=5.0, method=method)
        b = simulate_low_dose(img, 0.25, seed=7, spacing=5.0, method=method)
        c = simulate_low_dose(img, 0.25, seed=8, spacing=5.0, method=method)
        assert np.array_equal(a, b)
        noise_a, noise_c = a - img, c - img
        assert np.std(noise_a) > 0.5
        assert np.corrcoef(noise_a.ravel(), noise_c.ravel())[0, 1] < 0.2
    assert np.array_equal(img, before)  # the input is not modified


def test_slices_get_their_own_noise_and_a_2d_slice_is_slice_zero(small):
    twin = np.stack([small.hu[1], small.hu[1]])
    low = simulate_low_dose(twin, 0.25, seed=0, spacing=5.0)
    n0, n1 = low[0] - twin[0], low[1] - twin[1]
    assert np.corrcoef(n0.ravel(), n1.ravel())[0, 1] < 0.2  # seeded by (seed, slice index)
    single = simulate_low_dose(twin[0], 0.25, seed=0, spacing=5.0)
    assert np.abs(single - low[0]).max() < 1e-3


def test_full_dose_insert_returns_the_input():
    hu = np.random.default_rng(0).normal(0, 30, (2, 32, 32)).astype(np.float32)
    out = simulate_low_dose(hu, 1.0, method="insert")
    assert out is not hu and np.array_equal(out, hu)
    ct = CTVolume(hu=hu, spacing=(2.0, 0.7, 0.7))
    assert np.array_equal(simulate_low_dose(ct, 1.0).hu, hu)


def test_types_shapes_and_geometry_are_preserved(small):
    # 2D in -> 2D out, 3D in -> 3D out, float32 HU (also for int16 input)
    s2d = small.hu[0]
    out2d = simulate_low_dose(s2d, 0.5, spacing=(5.0, 5.0))
    assert isinstance(out2d, np.ndarray) and out2d.shape == s2d.shape and out2d.dtype == np.float32
    as_int = np.round(small.hu).astype(np.int16)
    out3d = simulate_low_dose(as_int, 0.5, spacing=small.spacing)
    assert out3d.shape == as_int.shape and out3d.dtype == np.float32

    # CTVolume in -> CTVolume out, same geometry, a note
    low = simulate_low_dose(small, 0.25, seed=2)
    assert isinstance(low, CTVolume)
    assert low.hu.shape == small.hu.shape and low.hu.dtype == np.float32
    assert low.spacing == small.spacing and low.origin == small.origin
    assert np.array_equal(low.direction, small.direction)
    assert low.source_format == small.source_format
    note = f"simulated 25% dose (poisson, I0={DEFAULT_DOSE_MODEL.i0:g}, s2=10, 360 views, seed 2)"
    assert low.notes == [note]
    assert low.series_description.endswith("25% dose")
    assert np.array_equal(small.hu, make_thorax_phantom(5.0, z_extent_mm=15.0, seed=3).hu)
    # a real (non-generated) volume defaults to "insert"
    real_like = CTVolume(hu=small.hu.copy(), spacing=small.spacing, source_format="dicom")
    assert "(insert," in simulate_low_dose(real_like, 0.5).notes[0]


# ------------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize("dose", [0.0, -0.25, 1.5, float("nan"), float("inf")])
def test_bad_dose_is_a_value_error(dose):
    with pytest.raises(ValueError, match=r"dose must be a fraction in \(0, 1\]"):
        simulate_low_dose(np.zeros((32, 32), np.float32), dose)


def test_nan_voxels_are_a_value_error():
    hu = np.zeros((32, 32), np.float32)
    hu[5, 5] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite voxels"):
        simulate_low_dose(hu, 0.5)


@pytest.mark.parametrize("shape", [(2, 2, 16, 16), (16,), ()])
def test_not_2d_or_3d_is_a_value_error(shape):
    with pytest.raises(ValueError, match=r"expected a 2D slice or a 3D \(z, y, x\) volume"):
        simulate_low_dose(np.zeros(shape, np.float32), 0.5)


@pytest.mark.parametrize("shape", [(1, 1), (4, 1, 1), (1, 512)])
def test_tiny_images_are_a_value_error(shape):
    with pytest.raises(ValueError, match="too small to simulate a CT scan"):
        simulate_low_dose(np.zeros(shape, np.float32), 0.5)


def test_unknown_method_is_a_value_error():
    with pytest.raises(ValueError, match=r"method must be 'insert' or 'poisson', got 'gauss'"):
        simulate_low_dose(np.zeros((32, 32), np.float32), 0.5, method="gauss")


def _drain(gen):
    """The values a generator yields and the value it returns."""
    steps = []
    while True:
        try:
            steps.append(next(gen))
        except StopIteration as stop:
            return steps, stop.value


@pytest.mark.parametrize("method", ["insert", "poisson"])
def test_iterated_simulation_reports_progress_and_a_slice_alone_gets_its_volume_noise(method):
    from napari_jointrecon.dose import iter_simulate_low_dose

    hu = make_thorax_phantom(2.5, z_extent_mm=25, seed=2).hu[:, ::2, ::2].copy()  # 10 slices, 128 x 128
    sp = (2.5, 5.0, 5.0)
    steps, whole = _drain(iter_simulate_low_dose(hu, 0.25, seed=5, spacing=sp, method=method, batch=4))
    assert steps == [(0, 10), (4, 10), (8, 10), (10, 10)]
    assert np.array_equal(whole, nj.simulate_low_dose(hu, 0.25, seed=5, spacing=sp, method=method))
    _, alone = _drain(iter_simulate_low_dose(hu[6:7], 0.25, seed=5, spacing=sp, method=method, first_index=6))
    np.testing.assert_allclose(alone[0], whole[6], atol=1e-3)
    one = nj.simulate_low_dose(hu[6:7], 0.25, seed=5, spacing=sp, method=method)
    assert not np.allclose(one[0], whole[6], atol=1.0)  # without first_index it is slice 0's noise
    with pytest.raises(ValueError, match="dose"):
        next(iter_simulate_low_dose(hu, 1.5))
