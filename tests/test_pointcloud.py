"""Point clouds: metrics on analytic shapes, frames and their inverse maps, surfaces, the joint models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import napari_jointrecon as nj
from napari_jointrecon import pointcloud as pc
from napari_jointrecon.cli import main as cli_main


def _sphere(n: int, r: float, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, 3))
    return r * v / np.linalg.norm(v, axis=1, keepdims=True)


# --- metrics --------------------------------------------------------------------------------------

def test_chamfer_of_concentric_spheres_is_twice_the_squared_gap():
    a = _sphere(800, 1.0)
    b = a * 1.25  # same directions: every nearest neighbour is the radial partner
    assert pc.chamfer_distance(a, b)[0].item() == pytest.approx(2 * 0.25 ** 2, rel=1e-4)
    assert pc.chamfer_distance(a, b, squared=False)[0].item() == pytest.approx(2 * 0.25, rel=1e-4)
    assert pc.chamfer_distance(a, a)[0].item() == pytest.approx(0.0, abs=1e-6)


def test_chamfer_matches_brute_force_batched_and_differentiable():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(3, 700, 3, generator=g, requires_grad=True)
    b = torch.rand(3, 2500, 3, generator=g)
    d = torch.cdist(a.detach().double(), b.double()) ** 2
    expected = d.min(2).values.mean(1) + d.min(1).values.mean(1)
    got = pc.chamfer_distance(a, b)
    assert torch.allclose(got.double(), expected, rtol=1e-4)
    for i in range(3):  # the batch is the same as item by item
        assert got[i].item() == pytest.approx(pc.chamfer_distance(a[i].detach(), b[i])[0].item(), rel=1e-5)
    got.sum().backward()
    assert a.grad is not None and torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0


def test_chamfer_keeps_its_precision_far_from_the_origin():
    # world millimetres of a scan can be hundreds of mm from the origin; float32 |a|^2 + |b|^2 - 2ab
    # there picks wrong neighbours unless the sets are centred first
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(3)
    a = rng.normal(size=(3000, 3)) * 20 + 650
    b = rng.normal(size=(4000, 3)) * 20 + 650
    exact = (cKDTree(b).query(a)[0] ** 2).mean() + (cKDTree(a).query(b)[0] ** 2).mean()
    assert abs(pc.chamfer_distance(a, b)[0].item() - exact) < 1e-5 * exact


def test_chamfer_in_mm_scales_each_axis():
    a = np.zeros((1, 3))
    b = np.array([[0.5, 0.0, 0.0]])  # half a normalised unit along z
    assert pc.chamfer_distance(a, b, squared=False, scale=(8.0, 250.0, 250.0))[0].item() == pytest.approx(8.0)
    b = np.array([[0.0, 0.0, 0.1]])
    assert pc.chamfer_distance(a, b, squared=False, scale=(8.0, 250.0, 250.0))[0].item() == pytest.approx(50.0)


def test_f_score_on_shifted_grids():
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, 6)] * 3, indexing="ij"), -1).reshape(-1, 3)
    tau = 0.1
    assert pc.f_score(grid, grid + [0.4 * tau, 0, 0], tau)[0].item() == pytest.approx(1.0)
    assert pc.f_score(grid, grid + [0.15, 0, 0], tau)[0].item() == pytest.approx(0.0)
    # half of the prediction is far away: precision 1/2, recall 1 -> F = 2/3
    pred = np.concatenate([grid, grid + 5.0])
    assert pc.f_score(pred, grid, tau)[0].item() == pytest.approx(2 / 3, rel=1e-5)


def test_earth_movers_distance_of_a_translation_is_its_length():
    a = _sphere(200, 1.0, seed=3)
    t = np.array([0.03, -0.04, 0.0])
    perm = np.random.default_rng(1).permutation(len(a))
    assert pc.earth_movers_distance(a, a[perm]) == pytest.approx(0.0, abs=1e-12)
    assert pc.earth_movers_distance(a, (a + t)[perm]) == pytest.approx(0.05, rel=1e-6)
    with pytest.raises(ValueError, match="equal size"):
        pc.earth_movers_distance(a, a[:10])


def test_metrics_refuse_bad_shapes():
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        pc.chamfer_distance(np.zeros((5, 2)), np.zeros((5, 3)))
    with pytest.raises(ValueError, match="empty"):
        pc.chamfer_distance(np.zeros((0, 3)), np.zeros((5, 3)))


# --- frames, surfaces -----------------------------------------------------------------------------

def _oblique_volume(hu: np.ndarray, spacing=(2.0, 0.8, 0.7)) -> nj.CTVolume:
    c, s = np.cos(0.3), np.sin(0.3)
    direction = np.array([[1.0, 0, 0], [0, c, -s], [0, s, c]])
    return nj.CTVolume(hu, spacing=spacing, origin=(-40.0, 12.0, -7.5), direction=direction)


def test_frame_round_trips_through_indices_and_world_mm():
    ct = _oblique_volume(np.zeros((20, 64, 80), np.float32))
    frame = pc.slab_frame(ct, 10)
    p = np.random.default_rng(0).uniform(-1, 1, (500, 3))
    assert np.allclose(frame.index_to_normalised(frame.normalised_to_index(p)), p)
    world = frame.normalised_to_world(p, ct)
    assert np.allclose(frame.world_to_normalised(world, ct), p)
    # the normalised origin is the centre of the slice; the image edges are -1/+1; z +-1 is +-8 mm
    centre = ct.index_to_world(np.array([10.0, 31.5, 39.5]))
    assert np.allclose(frame.normalised_to_world(np.zeros((1, 3)), ct)[0], centre)
    assert np.allclose(frame.normalised_to_index(np.array([[0, -1, 1]]))[0], [10, -0.5, 79.5])
    top = frame.normalised_to_world(np.array([[1.0, 0, 0]]), ct)[0]
    assert np.linalg.norm(top - centre) == pytest.approx(pc.SLAB_MM / 2)


def test_surface_of_a_cylinder_lies_on_its_radius_inside_the_slab():
    z, y, x = np.mgrid[0:30, 0:96, 0:96]
    spacing = (1.0, 1.5, 1.5)
    r_mm = 40.0
    radius = np.hypot((y - 47.5) * 1.5, (x - 47.5) * 1.5)
    hu = np.where(radius < r_mm, 0.0, -1000.0).astype(np.float32)
    hu[:, 90:, :] = 200.0  # a "table" not connected to the body: dropped
    ct = nj.CTVolume(hu, spacing=spacing)
    pts = pc.reference_point_cloud(ct, 15, 5000)
    assert pts.shape == (5000, 3)
    r = np.hypot(pts[:, 1] - 47.5 * 1.5, pts[:, 2] - 47.5 * 1.5)
    assert np.abs(r - r_mm).max() < 1.5  # within a voxel of the analytic surface
    assert pts[:, 0].min() >= 15 - 8 - 1e-6 and pts[:, 0].max() <= 15 + 8 + 1e-6
    assert pts[:, 0].max() - pts[:, 0].min() > 14  # spans the slab
    # area-weighted: the points cover the cylinder evenly in angle
    angles = np.arctan2(pts[:, 1] - 47.5 * 1.5, pts[:, 2] - 47.5 * 1.5)
    counts = np.histogram(angles, bins=8, range=(-np.pi, np.pi))[0]
    assert counts.min() > 0.8 * counts.mean()


@pytest.mark.parametrize("sz", [1.25, 2.0, 3.0, 5.0])
def test_reference_slab_is_16_mm_whatever_the_slice_spacing(sz):
    """The slab takes the fewest slices that reach 8 mm to either side and its surface is cut
    there: 16 mm at every spacing (whole slices alone would give 15 mm at 1.25 mm, 18 mm at 3 mm)."""
    n = 41
    z, y, x = np.mgrid[0:n, 0:64, 0:64]
    # a cone: its radius changes with z, so a slab too thick or too thin changes the surface
    radius_mm = 20.0 + 0.5 * (z - n // 2) * sz
    hu = np.where(np.hypot(y - 31.5, x - 31.5) * 1.5 < radius_mm, 0.0, -1000.0).astype(np.float32)
    ct = nj.CTVolume(hu, spacing=(sz, 1.5, 1.5))
    k = n // 2
    pts = pc.reference_point_cloud(ct, k, 4000)
    dz = pts[:, 0] - k * sz
    assert np.abs(dz).max() <= 8.0 + 1e-6 and dz.min() < -7.0 and dz.max() > 7.0
    lo, hi = pc.slab_bounds(n, k, sz)
    assert (hi - lo) * sz >= 16.0 and (hi - lo - 2) * sz < 16.0
    normalised = pc.surface_points(hu, ct.spacing, k, 2000)
    assert np.abs(normalised[:, 0]).max() <= 1.0 + 1e-6 and np.abs(normalised[:, 0]).max() > 0.85


def test_surface_errors_are_clear():
    air = nj.CTVolume(np.full((20, 64, 64), -1000, np.float32))
    with pytest.raises(ValueError, match="no tissue"):
        pc.reference_point_cloud(air, 10)
    body = nj.CTVolume(np.zeros((20, 64, 64), np.float32) - 1000 + 1000 * (np.arange(64) > 10)[None, None])
    with pytest.raises(ValueError, match="slab"):
        pc.reference_point_cloud(body, 1)
    with pytest.raises(TypeError):
        pc.reference_point_cloud(np.zeros((20, 64, 64)), 10)
    for n in (0, -5, 2.5, True):
        with pytest.raises(ValueError, match="n_points"):
            pc.reference_point_cloud(body, 10, n)


def test_reference_cloud_lands_on_the_minus_500_surface_of_the_chest(shared_data):
    from scipy.ndimage import map_coordinates

    ct = nj.load_ct(shared_data / "chest-ct-dicom")
    pts = nj.reference_point_cloud(ct, 70, 2000)
    idx = ct.world_to_index(pts)
    hu = map_coordinates(ct.hu, idx.T, order=1)
    assert np.median(np.abs(hu + 500)) < 150  # on the iso-surface (trilinear, between voxels)
    assert np.all((idx[:, 0] >= 66 - 1e-6) & (idx[:, 0] <= 74 + 1e-6))


# --- the joint models -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def chest(shared_data):
    return nj.load_ct(shared_data / "chest-ct-dicom")


@pytest.fixture(scope="module")
def low_chest(chest):
    """The chest at 25 % dose on the point-cloud test slabs (slices 60-80; the rest full dose)."""
    hu = chest.hu.copy()
    hu[60:81] = nj.simulate_low_dose(chest.hu[60:81], 0.25, seed=1234, spacing=chest.spacing)
    return chest.with_hu(hu)


def test_point_models_are_shipped_with_checksums_and_cards():
    from napari_jointrecon.joint import (JOINT_WEIGHTS_DIR, MODEL_INPUT_SIZE, POINT_MODELS, load_point_model,
                                         point_model_card)

    card = point_model_card()
    assert set(card["models"]) == set(POINT_MODELS)
    for name in POINT_MODELS:
        # the design's networks: three training seeds (their table's mean and spread); the contour networks: one
        for seed in ((0, 1, 2) if MODEL_INPUT_SIZE[name] == 128 else (0,)):
            assert load_point_model(name, seed)
    with pytest.raises(FileNotFoundError, match="no trained weights"):
        load_point_model("contour", 1)
    runs = card["contour_training"]["runs"]
    assert {"contour_seed0.pt", "seq_contour_denoiser_seed0.pt", "seq_contour_regressor_seed0.pt"} <= set(runs)
    # each run's validation curve: its own, or a refit's (not validated) its recipe's run's
    assert all(r["steps_done"] >= 1000 and r["wall_time_s"] > 0 for r in runs.values())
    assert all(r["history"] or r["recipe_run"]["history"] and r["config"]["train_on"] == "train+val"
               for r in runs.values())
    sizes = [f["bytes"] for f in card["files"].values()]
    assert max(sizes) <= 10e6
    total = sum(p.stat().st_size for p in JOINT_WEIGHTS_DIR.parent.rglob("*.pt"))
    assert total <= 60e6
    assert "results" in card and "10%" in card["results"]["chest_test"]


@pytest.mark.parametrize("model", ["joint", "joint_fold", "sequential", "joint_occ", "sequential_occ"])
def test_trained_model_beats_the_mean_shape_on_test_slices(chest, low_chest, model):
    from napari_jointrecon.joint import JOINT_WEIGHTS_DIR

    template = torch.load(JOINT_WEIGHTS_DIR / "mean_shape.pt", weights_only=True).numpy()
    mine, floor = [], []
    for k in (64, 70, 76):  # point-cloud test slabs
        frame = pc.slab_frame(chest, k)
        ref = frame.world_to_normalised(nj.reference_point_cloud(chest, k, 10000), chest)
        pred = nj.predict_point_cloud(low_chest, slice_index=k, dose=0.25, model=model)
        assert pred.points.shape == (1000, 3) and pred.denoised.shape == (128, 128)
        mine.append(pc.chamfer_distance(frame.world_to_normalised(pred.points, chest), ref)[0].item())
        floor.append(pc.chamfer_distance(template, ref)[0].item())
    assert np.mean(mine) < np.mean(floor), (mine, floor)
    if model == "joint":
        assert sum(m < f for m, f in zip(mine, floor)) >= 2, (mine, floor)


def test_predicted_cloud_is_placed_on_the_anatomy_in_world_mm(chest, low_chest):
    k = 70
    pred = nj.predict_point_cloud(low_chest, slice_index=k, dose=0.25)
    ref = nj.reference_point_cloud(chest, k, 10000)
    d_mm = pc.chamfer_distance(pred.points, ref, squared=False)[0].item() / 2
    assert d_mm < 15  # mean distance to the true surface, in millimetres
    # the same slice as a bare array (the slice's own frame) gives the same shape, shifted
    bare = nj.predict_point_cloud(low_chest.hu[k], dose=0.25, spacing=chest.spacing[1:])
    origin = chest.index_to_world(np.array([k, 0.0, 0.0]))
    assert np.allclose(bare.points + origin, pred.points, atol=1e-3)
    # the default model's denoised slice is the same anatomy in HU at full size, closer to
    # the full dose than the input (its correction is made at 256 x 256 and enlarged: it removes
    # the coarse part of the noise; docs/RESULTS.md has its PSNR on the held-out patients)
    from napari_jointrecon.metrics import psnr

    assert pred.denoised.shape == chest.hu[k].shape
    assert psnr(pred.denoised, chest.hu[k]) > psnr(low_chest.hu[k], chest.hu[k])


def test_prediction_is_deterministic(low_chest):
    a = nj.predict_point_cloud(low_chest, slice_index=68, dose=0.25)
    b = nj.predict_point_cloud(low_chest, slice_index=68, dose=0.25)
    assert np.array_equal(a.points, b.points) and np.array_equal(a.denoised, b.denoised)


@pytest.mark.parametrize("image, match", [
    (np.full((256, 256), -1000.0), "all air"),
    (np.pad(np.zeros((30, 30)), 113, constant_values=-1000.0), "almost no body"),
    (np.zeros((100, 256)), "at least 128"),
    (np.where(np.eye(256) > 0, np.nan, 0.0), "NaN"),
    (np.zeros((256, 256, 3)), "RGB"),
    (np.zeros((4, 5, 6, 7)), "shape"),
])
def test_bad_input_gets_a_clear_error(image, match):
    with pytest.raises(ValueError, match=match):
        nj.predict_point_cloud(image, dose=0.25)


def test_gpu_out_of_memory_falls_back_to_the_cpu(low_chest):
    """A device that runs out of memory: the cloud is made on the CPU, says so, and is the CPU's."""
    from unittest import mock

    from napari_jointrecon import inference
    from napari_jointrecon import joint as joint_api

    real, devices = joint_api._run_device, []

    def fake_run(nets, x, dev, **kwargs):
        devices.append(dev)
        if dev == "cuda":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(nets, x, dev, **kwargs)

    with mock.patch.object(inference, "select_device", return_value="cuda"), \
            mock.patch.object(joint_api, "_run_device", side_effect=fake_run), \
            pytest.warns(RuntimeWarning, match="out of memory"):
        pred = nj.predict_point_cloud(low_chest, slice_index=70, dose=0.25, model="joint_occ")
    assert devices == ["cuda", "cpu"] and pred.device == "cpu"
    cpu = nj.predict_point_cloud(low_chest, slice_index=70, dose=0.25, model="joint_occ", device="cpu")
    assert cpu.device == "cpu" and np.array_equal(pred.points, cpu.points)
    nets = joint_api.load_point_model("joint_occ")
    assert all(p.device.type == "cpu" for net in nets.values() for p in net.parameters())


def test_bad_dose_model_and_slice(low_chest):
    with pytest.raises(ValueError, match="dose"):
        nj.predict_point_cloud(low_chest, slice_index=10, dose=25)
    with pytest.raises(KeyError, match="unknown point model"):
        nj.predict_point_cloud(low_chest, slice_index=10, dose=0.25, model="nope")
    with pytest.raises(ValueError, match="outside"):
        nj.predict_point_cloud(low_chest, slice_index=500, dose=0.25)


def _restored(ct, order, flips):
    """``ct`` stored another way: array axes permuted by ``order`` and reversed where ``flips``,
    with the geometry that keeps every voxel at the same place in the patient."""
    hu = ct.hu.transpose(order)
    corner = np.zeros(3)
    direction = ct.direction[:, list(order)].copy()
    for axis, flip in enumerate(flips):
        if flip:
            hu = np.flip(hu, axis)
            corner[order[axis]] = ct.shape[order[axis]] - 1
            direction[:, axis] *= -1
    return nj.CTVolume(np.ascontiguousarray(hu), spacing=tuple(ct.spacing[i] for i in order),
                       origin=tuple(ct.index_to_world(corner)), direction=direction)


@pytest.mark.parametrize("order, flips, model", [
    ((0, 1, 2), (False, True, True), "joint"),   # as NIfTI stores it (RAS): rows and columns reversed
    ((0, 2, 1), (False, False, False), "joint_occ"),  # rows and columns swapped
    ((0, 1, 2), (True, False, False), "joint"),  # slices from head to feet
    ((0, 2, 1), (False, True, False), "contour"),  # swapped and one axis reversed, at 256 and 512 pixels
])
def test_prediction_does_not_depend_on_how_the_volume_is_stored(low_chest, order, flips, model):
    k = 70
    other = _restored(low_chest, order, flips)
    k_other = other.shape[0] - 1 - k if flips[0] else k
    assert np.allclose(other.index_to_world(np.array([[k_other, 3.0, 5.0]]))[0, 0],
                       low_chest.index_to_world(np.array([[k, 0.0, 0.0]]))[0, 0])
    a = nj.predict_point_cloud(low_chest, slice_index=k, dose=0.25, model=model)
    b = nj.predict_point_cloud(other, slice_index=k_other, dose=0.25, model=model)
    # the networks see the same slice, so the cloud is the same in the patient, to rounding
    assert np.abs(a.points - b.points).max() < 1e-3
    # and the denoised slice comes back in the volume's own storage order
    den = a.denoised.T if order[1:] == (2, 1) else a.denoised
    den = den[::-1 if flips[1] else 1, ::-1 if flips[2] else 1]
    assert np.allclose(den, b.denoised, atol=1e-3)


def test_point_models_need_axial_slices(low_chest):
    coronal = _restored(low_chest, (1, 0, 2), (False, False, False))
    with pytest.raises(ValueError, match="axial"):
        nj.predict_point_cloud(coronal, slice_index=200, dose=0.25)


def test_arguments_of_predict_point_cloud_are_checked(low_chest):
    img = low_chest.hu[70]
    for spacing in ((np.nan, 1.0), (0.0, 0.0), (-1.0, -1.0), (2.0, 0.977, 0.977), 1.0):
        with pytest.raises(ValueError, match="spacing"):
            nj.predict_point_cloud(img, dose=0.25, spacing=spacing)
    with pytest.raises(ValueError, match="whole number"):
        nj.predict_point_cloud(low_chest, slice_index=70.5, dose=0.25)
    with pytest.raises(ValueError, match="single 2D slice"):
        nj.predict_point_cloud(img, slice_index=70, dose=0.25)
    with pytest.raises(ValueError, match="dose must be a number"):
        nj.predict_point_cloud(img, dose=True)
    # numpy numbers are numbers
    a = nj.predict_point_cloud(low_chest, slice_index=np.int64(70), dose=np.float32(0.25))
    b = nj.predict_point_cloud(low_chest, slice_index=70, dose=0.25)
    assert np.array_equal(a.points, b.points)


def test_cli_writes_ply_and_csv(tmp_path, chest_dir):
    ply, csv = tmp_path / "cloud.ply", tmp_path / "ref.csv"
    assert cli_main(["pointcloud", str(chest_dir), "--slice", "70", "--dose", "25", "-o", str(ply)]) == 0
    text = ply.read_text().splitlines()
    assert text[0] == "ply" and "element vertex 1000" in text and len(text) == 1000 + 8
    assert cli_main(["pointcloud", str(chest_dir), "--slice", "70", "--reference", "--points", "3000",
                     "-o", str(csv)]) == 0
    data = np.loadtxt(csv, delimiter=",", skiprows=1)
    assert data.shape == (3000, 3)
    assert cli_main(["pointcloud", str(chest_dir), "--slice", "70", "-o", str(csv)]) == 2  # exists
    assert cli_main(["pointcloud", str(chest_dir), "-o", str(tmp_path / "x.txt")]) == 2
    assert cli_main(["pointcloud", str(chest_dir), "-o", str(tmp_path / "missing" / "p.ply")]) == 2
    assert cli_main(["pointcloud", str(chest_dir), "--reference", "--points", "0",
                     "-o", str(tmp_path / "none.csv")]) == 2
    assert not (tmp_path / "none.csv").exists()


def _tiny_joint_data():
    """Six synthetic 128 x 128 slabs (discs of growing radius) for training, two for validation."""
    from napari_jointrecon.training.joint import JointData

    g = torch.Generator().manual_seed(0)
    n = 6
    clean = torch.rand(n, 128, 128, generator=g) * 0.1 + 0.45
    yy, xx = np.mgrid[0:128, 0:128]
    discs = [(np.hypot(yy - 64, xx - 64) < 30 + 2 * k).astype(np.float32) for k in range(n)]
    occupancy = torch.from_numpy(np.stack(discs))[:, None].expand(-1, 9, -1, -1).clone()
    data = JointData(clean=clean, low=(clean + 0.05 * torch.randn(4, 2, n, 128, 128, generator=g)),
                     points=torch.rand(n, 1500, 3, generator=g) * 2 - 1, centres=list(range(n)),
                     frames=[pc.SlabFrame(float(k), 512, 512, (2.0, 1.0, 1.0)) for k in range(n)],
                     occupancy=occupancy)
    val = JointData(clean=clean[:2], low=data.low[:, :1, :2], points=data.points[:2],
                    centres=[0, 1], frames=data.frames[:2], occupancy=occupancy[:2])
    return data, val


def test_joint_occ_decoder_learns_at_its_own_rate(tmp_path, monkeypatch):
    from napari_jointrecon.training import joint as J

    data, val = _tiny_joint_data()
    template = torch.zeros(1000, 3)
    torch.manual_seed(0)
    start = J.build_model("joint_occ").state_dict()
    monkeypatch.setattr(J, "OCC_LR_SCALE", 0.0)  # a frozen decoder shows the scale is applied
    J.train_joint("joint_occ", tmp_path, train=data, val=val, template=template,
                  config=J.JointConfig(steps=3, threads=1))
    end = torch.load(tmp_path / "weights.pt", weights_only=True)
    moved = {k: not torch.equal(start[k], end[k]) for k in start if start[k].is_floating_point()}
    assert not any(v for k, v in moved.items() if k.startswith("points.") and "running" not in k)
    assert any(v for k, v in moved.items() if k.startswith("encoder.") and "running" not in k)


def test_joint_training_smoke(tmp_path):
    from napari_jointrecon.training.joint import KINDS, OCCUPANCY_FAMILY, JointConfig, mean_shape, train_joint

    data, val = _tiny_joint_data()
    template = mean_shape(data, steps=20)
    assert template.shape == (1000, 3)
    for kind in KINDS:
        summary = train_joint(kind, tmp_path / kind, train=data, val=val, template=template,
                              config=JointConfig(steps=4, val_every=2, threads=1))
        assert (tmp_path / kind / "weights.pt").exists()
        if kind in OCCUPANCY_FAMILY:  # validated every 100 steps (here only at the end), best kept
            assert len(summary["history"]) == 1 and "objective" in summary["history"][0]
            assert summary["kept_step"] == 4
        else:
            assert len(summary["history"]) == 2
        assert summary["parameters"] > 0
    # the evaluation and its table run on these nets; the floor row is the true points themselves
    from napari_jointrecon.training.joint import build_model
    from napari_jointrecon.training.joint_eval import evaluate_joint, joint_results_markdown

    def net(kind):
        m = build_model(kind)
        m.load_state_dict(torch.load(tmp_path / kind / "weights.pt", weights_only=True))
        return m.eval()

    models = {"joint": [{"model": net("joint")}],
              "sequential": [{"seq_denoiser": net("seq_denoiser"), "seq_regressor": net("seq_regressor")}],
              "sequential_occ": [{"seq_denoiser_dose": net("seq_denoiser_dose"),
                                  "seq_regressor_occ": net("seq_regressor_occ")}]}
    spread = torch.from_numpy(np.stack([pc.farthest_point_sample(p.numpy(), 1000) for p in val.points]))
    results = evaluate_joint(models, template, val, levels={"surface_spread": spread}, log=lambda *_: None)
    rows = results["10%"]
    assert list(rows) == ["input", "mean_shape", "surface_spread", "joint", "sequential", "sequential_occ"]
    assert rows["sequential_occ"]["chamfer"][0] > 0
    assert 0 < rows["surface_spread"]["chamfer"][0] < rows["mean_shape"]["chamfer"][0]
    assert rows["joint"]["seeds"] == 1 and rows["joint"]["psnr"][1] == 0.0
    lines = joint_results_markdown(results, {"kinds": {}}, seeds=1)
    assert sum("evenly spread points (reference level)" in line for line in lines) == 4  # one per dose


def test_true_surface_reference_levels_on_the_chest(chest):
    from napari_jointrecon.training.joint_eval import surface_levels

    k = 70
    frame = pc.slab_frame(chest, k)
    ref = frame.world_to_normalised(nj.reference_point_cloud(chest, k, 10000), chest)
    levels = surface_levels([k])
    random, spread = levels["surface_random"][0], levels["surface_spread"][0]
    assert random.shape == spread.shape == (1000, 3)
    c_random = pc.chamfer_distance(random, ref)[0].item()
    c_spread = pc.chamfer_distance(spread, ref)[0].item()
    # both lie on the reference surface (small), drawn apart from it (not zero); spreading helps
    assert 0 < c_spread < c_random < 0.012, (c_spread, c_random)


def test_farthest_point_sample_spreads_evenly():
    rng = np.random.default_rng(0)
    pts = rng.uniform(-1, 1, (5000, 3))
    even = pc.farthest_point_sample(pts, 200)
    assert even.shape == (200, 3) and len({tuple(p) for p in even}) == 200  # distinct
    pool = {tuple(p) for p in pts}
    assert all(tuple(e) in pool for e in even)  # taken from the pool, not made up
    random = pts[rng.choice(5000, 200, replace=False)]

    def gap(sample):  # the largest distance from a pool point to the sample
        return np.sqrt(((pts[:, None] - sample[None]) ** 2).sum(-1).min(1)).max()

    assert gap(even) < 0.7 * gap(random)
    # an evenly spread sample of a surface covers it better than a random one of the same size
    assert pc.chamfer_distance(even, pts)[0] < pc.chamfer_distance(random, pts)[0]
    with pytest.raises(ValueError, match="cannot take"):
        pc.farthest_point_sample(pts[:3], 4)


def test_spread_points_quantise_a_sample_better_than_farthest_point_sampling():
    # a sample of a sphere whose upper half carries 3x the density: the n points should follow the
    # density (more above), stay on the sphere, and cover the sample better
    rng = np.random.default_rng(1)
    v = rng.normal(size=(20000, 3))
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    keep = (v[:, 0] > 0) | (rng.random(len(v)) < 1 / 3)
    pts = v[keep]
    fps = pc.farthest_point_sample(pts, 300)
    spread = pc.spread_points(pts, 300)
    assert spread.shape == (300, 3) and len({tuple(p) for p in spread}) == 300  # distinct
    pool = {tuple(p) for p in pts}
    assert all(tuple(p) in pool for p in spread)  # on the sample, so on the sphere
    assert np.allclose(np.linalg.norm(spread, axis=1), 1.0)
    # farthest-point sampling ignores the density (half above); k-means quantisation moves points
    # towards it (asymptotically density ** 0.5 on a surface: 63 % above for 3:1)
    assert abs((fps[:, 0] > 0).mean() - 0.5) < 0.02
    assert 0.53 < (spread[:, 0] > 0).mean() < 0.64
    # the quantisation term of the Chamfer distance (sample -> points) and the whole Chamfer drop
    d_fps = ((pts[:, None] - fps[None]) ** 2).sum(-1).min(1).mean()
    d_spread = ((pts[:, None] - spread[None]) ** 2).sum(-1).min(1).mean()
    assert d_spread < 0.9 * d_fps, (d_spread, d_fps)
    assert pc.chamfer_distance(spread, pts)[0] < pc.chamfer_distance(fps, pts)[0]
    assert np.array_equal(spread, pc.spread_points(pts, 300))  # deterministic
    with pytest.raises(ValueError, match="cannot take"):
        pc.spread_points(pts[:3], 4)


def test_untrained_denoising_branch_starts_as_the_identity():
    from napari_jointrecon.models.joint import JointNet

    net = JointNet(head="fold").eval()
    x = torch.rand(2, 1, 128, 128)
    den, pts = net(x)
    assert torch.equal(den, x) and pts.shape == (2, 1000, 3)


def test_occupancy_points_lie_on_the_predicted_surface_evenly():
    # a cylinder of radius 40 pixels through all 9 planes, soft-edged like an area-averaged mask,
    # and a small separate blob that must be dropped (as the reference drops the table)
    from napari_jointrecon.training.joint import downsample

    yy, xx = np.mgrid[0:512, 0:512]
    disc = (np.hypot(yy - 255.5, xx - 255.5) < 160).astype(np.float32)
    disc[20:40, 20:40] = 1.0
    prob = downsample(disc).numpy()[None].repeat(9, 0)
    pts = pc.occupancy_points(prob, 1000, seed=3)
    assert pts.shape == (1000, 3) and len({tuple(p) for p in pts}) == 1000
    r = np.hypot(pts[:, 1], pts[:, 2])
    assert np.abs(r - 160 / 256).max() < 1 / 64  # within a 128-grid pixel of the true radius
    assert pts[:, 0].min() > -1 - 1e-9 and pts[:, 0].max() < 1 + 1e-9 and np.ptp(pts[:, 0]) > 1.8
    counts = np.histogram(np.arctan2(pts[:, 1], pts[:, 2]), bins=8, range=(-np.pi, np.pi))[0]
    assert counts.min() > 0.9 * counts.mean()  # spread evenly round the surface
    assert np.array_equal(pts, pc.occupancy_points(prob, 1000, seed=3))
    with pytest.raises(ValueError, match="empty"):
        pc.occupancy_points(np.zeros((9, 128, 128)), 1000)
    with pytest.raises(ValueError, match="fills the whole slab"):
        pc.occupancy_points(np.ones((9, 128, 128)), 1000)
    with pytest.raises(ValueError, match="NaN"):
        pc.occupancy_points(np.where(prob > 0, np.nan, 0.0), 1000)
    with pytest.raises(ValueError, match="planes"):
        pc.occupancy_points(prob[0], 1000)


def test_occupancy_target_of_the_chest_gives_its_surface(chest):
    from napari_jointrecon.training.joint import downsample, slab_occupancy

    k = 70
    occ = slab_occupancy(chest.hu, chest.spacing, k)
    assert occ.shape == (9, 128, 128) and 0 <= float(occ.min()) and float(occ.max()) <= 1
    # the middle plane is the slice's own body mask (above -500 HU), area-averaged
    mid = downsample((chest.hu[k] > -500).astype(np.float32))
    inside = occ[4] > 0.5
    assert float((mid[inside] > 0.5).float().mean()) > 0.99
    # the true occupancy's iso-surface, sampled as the head samples, lies on the reference surface:
    # close to the evenly spread true-surface level (about 0.005 on these slabs)
    frame = pc.slab_frame(chest, k)
    ref = frame.world_to_normalised(nj.reference_point_cloud(chest, k, 10000), chest)
    pts = pc.occupancy_points(occ.numpy(), 1000, half_extent_mm=frame.half_extent_mm)
    assert pc.chamfer_distance(pts, ref)[0].item() < 0.008


def test_normalised_mse_is_the_mse_on_the_identity_scale():
    from napari_jointrecon.training.joint import normalised_mse

    g = torch.Generator().manual_seed(0)
    ref = torch.rand(2, 1, 32, 32, generator=g)
    noisy = ref + torch.tensor([0.3, 0.01])[:, None, None, None] * torch.randn(2, 1, 32, 32, generator=g)
    assert normalised_mse(noisy, ref, noisy).item() == pytest.approx(1.0)  # the identity
    halfway = ref + 0.5 * (noisy - ref)
    assert normalised_mse(halfway, ref, noisy).item() == pytest.approx(0.25, rel=1e-5)
    assert normalised_mse(ref, ref, noisy).item() == 0.0
    # each image weighs by its squared error, as in the MSE: cleaning the noisy image does nearly
    # everything, cleaning the nearly clean one almost nothing
    only_noisy_cleaned = torch.cat([ref[:1], noisy[1:]])
    only_clean_cleaned = torch.cat([noisy[:1], ref[1:]])
    assert normalised_mse(only_noisy_cleaned, ref, noisy).item() < 0.01
    assert normalised_mse(only_clean_cleaned, ref, noisy).item() > 0.99
    mse = torch.nn.functional.mse_loss
    assert normalised_mse(only_noisy_cleaned, ref, noisy).item() == pytest.approx(
        (mse(only_noisy_cleaned, ref) / mse(noisy, ref)).item(), rel=1e-5)


def test_kept_step_follows_the_job_of_each_network():
    from napari_jointrecon.training.joint import PSNR_SLACK_DB, kept_step

    # a point network: the lowest validation Chamfer (the earlier step on a tie)
    assert kept_step([{"step": 100, "chamfer": 0.0040}, {"step": 200, "chamfer": 0.0038},
                      {"step": 300, "chamfer": 0.0038}, {"step": 400, "chamfer": 0.0041}]) == 200
    # a denoiser: the highest validation PSNR
    assert kept_step([{"step": 100, "psnr": 50.0}, {"step": 200, "psnr": 51.0}, {"step": 300, "psnr": 50.9}]) == 200
    # the joint network: the lowest Chamfer among the steps within PSNR_SLACK_DB of its best PSNR
    history = [{"step": 100, "psnr": 50.0, "chamfer": 0.0036},  # best points, denoising too weak
               {"step": 200, "psnr": 51.0 - PSNR_SLACK_DB / 2, "chamfer": 0.0038},
               {"step": 300, "psnr": 51.0, "chamfer": 0.0041}]
    assert kept_step(history) == 200
    with pytest.raises(ValueError):
        kept_step([])


def test_dose_input_is_required_and_used(low_chest):
    from napari_jointrecon.models.joint import JointNet

    with pytest.raises(ValueError, match="dose"):
        JointNet(head="occ", dose_input=True)(torch.rand(1, 1, 128, 128))
    # the shipped joint_occ removes more noise when told the dose is lower
    weak = nj.predict_point_cloud(low_chest, slice_index=70, dose=0.7, model="joint_occ").denoised
    strong = nj.predict_point_cloud(low_chest, slice_index=70, dose=0.1, model="joint_occ").denoised
    from napari_jointrecon.training.joint import downsample

    low = downsample(low_chest.hu[70]).numpy()
    assert np.abs(strong - low).mean() > np.abs(weak - low).mean()


def test_occupancy_error_by_plane_on_chest_slabs(chest, low_chest, monkeypatch):
    from napari_jointrecon.joint import load_point_model
    from napari_jointrecon.training import joint as J

    centres = [68, 72]
    clean = (J.downsample(chest.hu[centres]) + 1000.0) / 2000.0
    low = ((J.downsample(low_chest.hu[centres]) + 1000.0) / 2000.0)[None, None].expand(4, 1, -1, -1, -1)
    data = J.JointData(
        clean=clean, low=low, centres=centres,
        points=torch.from_numpy(np.stack([pc.surface_points(chest.hu, chest.spacing, c, 4000, seed=c)
                                          for c in centres])).float(),
        frames=[pc.slab_frame(chest, c) for c in centres],
        occupancy=torch.stack([J.slab_occupancy(chest.hu, chest.spacing, c) for c in centres]))
    from napari_jointrecon.training import joint_eval

    monkeypatch.setitem(joint_eval.PLANE_GROUPS, "all planes", tuple(range(9)))
    for name in ("joint_occ", "sequential_occ"):
        err = joint_eval.occupancy_plane_errors(load_point_model(name), data, 0.25)
        assert err["wrong"].shape == (9,) and 0 <= err["wrong"].min() and err["wrong"].max() < 0.1
        # the input slice's own plane is the best predicted, the outermost ones the worst
        assert err["wrong"][4] < min(err["wrong"][[0, 8]])
        # replacing every plane by the true one gives the true occupancy's own score
        assert err["mixed"]["all planes"] == err["true"]
        assert err["mixed"]["outer planes 0, 1, 7, 8"] < err["model"]
        assert 0 < err["true"] < err["model"] < 0.01
    with pytest.raises(ValueError, match="not one of the levels"):
        joint_eval.occupancy_plane_errors(load_point_model("joint_occ"), data, 0.3)


# --- the contour point networks (models/contour.py, training/points.py) -------------------------

def test_untrained_contour_network_is_the_extrusion_of_its_input():
    from napari_jointrecon.models.contour import N_PLANES, build_contour

    rng = np.random.default_rng(0)
    hu = np.full((64, 64), -1000.0)
    hu[16:48, 12:40] = 40 + rng.normal(0, 20, (32, 28))
    hu[24:30, 20:26] = -850.0  # an airway inside the body
    x = (torch.tensor(hu, dtype=torch.float32)[None, None] + 1000) / 2000
    expected = torch.from_numpy(hu > -500)
    with torch.no_grad():
        den, logits = build_contour("contour").eval()(x, torch.tensor([0.25]))
        _, reg_logits = build_contour("seq_contour_regressor").eval()(x)
        den_only, none = build_contour("seq_contour_denoiser").eval()(x, torch.tensor([0.25]))
    assert torch.equal(den, x) and torch.equal(den_only, x) and none is None
    for out in (logits, reg_logits):
        assert out.shape == (1, N_PLANES, 64, 64)
        assert all(torch.equal(plane, expected) for plane in torch.sigmoid(out)[0] > 0.5)
    with pytest.raises(ValueError, match="dose"):
        build_contour("contour")(x)
    with pytest.raises(ValueError, match="unknown contour kind"):
        build_contour("contour_xl")


def test_plane_targets_are_the_slab_body_plane_by_plane():
    from napari_jointrecon.training.points import plane_targets

    yy, xx = np.mgrid[:96, :96]
    r = np.hypot(yy - 48, xx - 48)
    hu = np.stack([np.where(r <= 20 + z, 40.0, -1000.0) for z in range(21)])  # a cone, 2 mm slices
    hu[:, 2:6, 2:6] = 40.0  # the table: outside the body's region, dropped
    body = plane_targets(hu, 2.0, 10)
    assert body.shape == (9, 96, 96)
    for j in range(9):  # at 2 mm spacing the planes are the slices 6-14
        assert np.array_equal(body[j], r <= 20 + 6 + j)
    # at 4 mm spacing the planes between two slices interpolate them (as marching cubes does)
    coarse = hu[::2]
    body4 = plane_targets(coarse, 4.0, 5)
    mid = ((coarse[5] + coarse[6]) / 2 > -500) & (r <= 40)
    assert np.array_equal(body4[5], mid)
    with pytest.raises(ValueError, match="slab"):
        plane_targets(hu, 2.0, 2)


def test_occupancy_points_spread_in_mm_lower_the_distance_in_mm():
    yy, xx = np.mgrid[:128, :128]
    occ = np.repeat((np.hypot(yy - 64, xx - 64) <= 40)[None].astype(np.float32), 9, 0)
    ext = np.array([8.0, 192.0, 192.0])
    ref = pc.occupancy_points(occ, 5000, half_extent_mm=ext, spread_in="mm", pool_factor=4)
    in_mm = pc.occupancy_points(occ, 300, half_extent_mm=ext, spread_in="mm")
    in_norm = pc.occupancy_points(occ, 300, half_extent_mm=ext)
    d_mm = pc.chamfer_distance(in_mm, ref, squared=False, scale=ext)[0].item()
    d_norm = pc.chamfer_distance(in_norm, ref, squared=False, scale=ext)[0].item()
    assert d_mm < d_norm
    with pytest.raises(ValueError, match="spread_in"):
        pc.occupancy_points(occ, 10, spread_in="px")


def _body_with_vessel_and_table() -> np.ndarray:
    """9 planes of 128 x 128: a body (a ring around a lung), a vessel in the lung, a table below."""
    yy, xx = np.mgrid[:128, :128]
    r = np.hypot(yy - 60, xx - 64)
    plane = (r <= 45) & ~(r <= 30)           # the body's wall around the lung
    plane |= np.hypot(yy - 60, xx - 72) <= 4  # a vessel inside the lung, not joined to the wall
    plane |= (yy >= 115) & (yy <= 120)        # the table, outside the body
    return np.repeat(plane[None], 9, 0)


def test_fill_holes_is_scipys_binary_fill_holes():
    from scipy import ndimage

    rng = np.random.default_rng(3)
    masks = [np.zeros((6, 6), bool), np.ones((6, 6), bool), np.zeros((0, 4), bool)]
    for shape in ((128, 128), (9, 48, 48), (1, 40)):
        for level in (0.3, 0.5, 0.7):  # blobs with holes, holes in holes, and holes open to the edge
            masks.append(ndimage.gaussian_filter(rng.random(shape), 1.5) > np.quantile(rng.random(64), level) * 0.1 + 0.45)
    cube = np.ones((7, 7, 7), bool)
    cube[2:5, 2:5, 2:5] = False  # a hollow cube: one hole in 3D, none on any of its planes alone
    diagonal = np.ones((5, 5), bool)
    diagonal[1, 1] = diagonal[0, 0] = False  # touches the outside only through a corner: still a hole
    masks += [cube, diagonal, np.array([True, False, True]), np.array([False, True, False])]
    ring = np.zeros((32, 32), bool)
    ring[4:28, 4:28] = True
    ring[8:24, 8:24] = False
    ring[12:20, 12:20] = True  # an island in the hole
    masks.append(ring)
    for mask in masks:
        assert np.array_equal(pc.fill_holes(mask), ndimage.binary_fill_holes(mask)), mask.shape
    assert pc.fill_holes(ring)[8:24, 8:24].all() and pc.fill_holes(cube).all() and pc.fill_holes(diagonal)[1, 1]


def test_occupancy_regions_keep_the_vessels_inside_the_body_but_not_the_table():
    inside = _body_with_vessel_and_table()
    largest = pc.occupancy_regions(inside, "largest")
    body = pc.occupancy_regions(inside, "body")
    assert largest[:, 60, 72].sum() == 0 and body[:, 60, 72].all()  # the vessel
    assert not body[:, 117].any() and not largest[:, 117].any()      # the table
    assert (largest <= body).all() and (body <= inside).all()
    assert pc.occupancy_regions(inside[4], "body")[60, 72] and not pc.occupancy_regions(inside[4])[60, 72]
    assert pc.occupancy_regions(np.zeros((2, 8, 8), bool), "body") is None
    with pytest.raises(ValueError, match="regions"):
        pc.occupancy_regions(inside, "all")
    ext = np.array([8.0, 192.0, 192.0])
    pts = {rg: pc.occupancy_points(inside.astype(np.float32), 400, half_extent_mm=ext, spread_in="mm", regions=rg)
           for rg in ("largest", "body")}
    near_vessel = {rg: int((np.hypot((p[:, 1] + 1) * 64 - 0.5 - 60, (p[:, 2] + 1) * 64 - 0.5 - 72) < 6).sum())
                   for rg, p in pts.items()}
    assert near_vessel["largest"] == 0 and near_vessel["body"] > 5, near_vessel


def test_occupancy_points_follow_the_iso_level():
    """On a soft occupancy (1 at the centre, falling to 0 at 100 pixels) the cloud lies where the
    occupancy crosses the level: further out for a lower level."""
    yy, xx = np.mgrid[:128, :128]
    prob = np.clip(1.0 - np.hypot(yy - 64, xx - 64) / 100.0, 0, 1).astype(np.float32)
    prob = np.repeat(prob[None], 9, 0)
    for level in (0.6, 0.7):
        pts = pc.occupancy_points(prob, 300, level=level)
        radius = np.hypot((pts[:, 1] + 1) * 64 - 0.5 - 64, (pts[:, 2] + 1) * 64 - 0.5 - 64)
        assert np.allclose(radius, 100.0 * (1.0 - level), atol=1.5), (level, radius.min(), radius.max())
    with pytest.raises(ValueError, match="iso level"):
        pc.occupancy_points(prob, 10, level=1.0)


def test_tune_sampler_scores_every_candidate_on_validation_and_the_product_draws_with_the_card(
        tmp_path, monkeypatch, capsys):
    import shutil

    from napari_jointrecon import joint
    from napari_jointrecon.joint import contour_sampler, point_model_card
    from napari_jointrecon.training import points as tp

    data = _tiny_slabs(2)
    monkeypatch.setattr(tp, "build_point_slabs", lambda split, **kw: data if split == "val" else None)
    # the shipped joint network as if trained on the training patients alone (a refit is not tuned)
    weights = tmp_path / "joint"
    weights.mkdir()
    for kind in ("contour", "seq_contour_regressor"):  # the sequential denoiser left out: its model is not scored
        shutil.copyfile(joint.JOINT_WEIGHTS_DIR / f"{kind}_seed0.pt", weights / f"{kind}_seed0.pt")
    card = point_model_card()
    for kind in ("contour", "seq_contour_regressor"):
        card["contour_training"]["runs"][f"{kind}_seed0.pt"]["config"]["train_on"] = "train"
    (weights / "card.json").write_text(json.dumps(card))
    shipped = joint.JOINT_WEIGHTS_DIR
    monkeypatch.setattr(joint, "JOINT_WEIGHTS_DIR", weights)
    monkeypatch.setattr(joint, "_LOADED", {})
    logs = []
    chosen = tp.tune_sampler(write=False, log=logs.append, processes=2)
    scores = chosen["validation_msd_mm"]
    from napari_jointrecon.models.contour import OUTLINES

    # mirrored or not, the network's outline or the slice's
    assert len(scores) == 2 * len(tp.SAMPLER_LEVELS) * len(pc.OCCUPANCY_REGIONS) * len(OUTLINES)
    key = f"{chosen['regions']} {chosen['level']:g} {chosen['outline']}" + (" mirror" if chosen["mirror"] else "")
    assert scores[key] == min(scores.values())
    assert any(scores[k] != scores[k.replace(" network", " slice")] for k in scores if " network" in k)
    assert all(np.isfinite(v) for v in scores.values()) and logs[-1].startswith("contour sampler:")
    # every contour model whose weights are there, drawn with the choice: the joint network as scored above
    models = chosen["models_validation_msd_mm"]
    assert set(models) == {"contour", "contour_ensemble"} and models["contour"] == scores[key]
    assert np.isfinite(models["contour_ensemble"]) and models["contour_ensemble"] != models["contour"]
    # a network refit on the validation patients is not scored on them
    card["contour_training"]["runs"]["seq_contour_regressor_seed0.pt"]["config"]["train_on"] = "train+val"
    (weights / "card.json").write_text(json.dumps(card))
    skipped = []
    assert set(tp._contour_models_msd(data, 0.25, chosen, None, skipped.append)) == {"contour"}
    assert any("contour_ensemble: not scored" in line for line in skipped)
    card["contour_training"]["runs"]["seq_contour_regressor_seed0.pt"]["config"]["train_on"] = "train"
    (weights / "card.json").write_text(json.dumps(card))
    card_file = weights / "card.json"
    card_before = card_file.read_bytes()
    capsys.readouterr()
    # the command, its slabs scored in this process: the same scores and choice, the card untouched
    assert cli_main(["tune-points", "--dry-run", "--processes", "1"]) == 0
    assert card_file.read_bytes() == card_before
    printed = capsys.readouterr().out.splitlines()
    assert [line for line in printed if line.startswith("  ")] == [line for line in logs if line.startswith("  ")]
    with pytest.raises(ValueError, match="processes"):
        tp.tune_sampler(write=False, processes=0)
    # what the widgets, the CLI and predict_point_cloud draw with: the shipped card's choice
    card = point_model_card()["contour_sampler"]
    assert contour_sampler() == {"level": card["level"], "regions": card["regions"], "mirror": card["mirror"],
                                 "outline": card.get("outline", "network")}
    assert card["regions"] in pc.OCCUPANCY_REGIONS and card["level"] in tp.SAMPLER_LEVELS
    assert "validation" in card["chosen_on"]
    assert card == json.loads((shipped / "card.json").read_text())["contour_sampler"]
    # the shipped joint network is a refit on the validation patients: it is not tuned on them
    monkeypatch.setattr(joint, "JOINT_WEIGHTS_DIR", shipped)
    if point_model_card()["contour_training"]["runs"]["contour_seed0.pt"]["config"].get("train_on") == "train+val":
        with pytest.raises(ValueError, match="trained on the validation patients too"):
            tp.tune_sampler(write=False)


def test_the_slice_outline_replaces_the_networks_and_keeps_what_it_predicts_inside():
    from scipy import ndimage

    from napari_jointrecon.models.contour import keep_slice_outline

    yy, xx = np.mgrid[:128, :128]
    r = np.hypot(yy - 64, xx - 64)
    hole = np.hypot(yy - 64, xx - 50)
    # the slice: a body of radius 40 (40 HU) with a lung of radius 8 (-800 HU); model scale
    hu = np.where(r < 40, 40.0, -1000.0)
    hu[hole < 8] = -800.0
    den = (hu + 1000.0) / 2000.0
    # the network: its outline widens to 46 through the slab (or narrows to 34), its lung shrinks to
    # nothing, and a new one of radius 6 appears on the last plane
    for radius in (46, 34):
        prob = np.zeros((9, 128, 128), np.float32)
        for k in range(9):
            plane = (r < 40 + (radius - 40) * k / 8).astype(np.float32)
            plane[hole < 8 * (1 - k / 8)] = 0.0
            if k == 8:
                plane[np.hypot(yy - 64, xx - 75) < 6] = 0.0
            prob[k] = 0.05 + 0.9 * plane
        kept = keep_slice_outline(prob, den) > 0.5
        filled = np.stack([ndimage.binary_fill_holes(p) for p in kept])
        assert all(np.array_equal(f, r < 40) for f in filled)  # the slice's outline on every plane
        inner = ndimage.binary_erosion(r < min(40, radius), iterations=3)
        # inside it, the network's lung (shrinking) and the new one
        assert all(np.array_equal(kept[k] & inner, (prob[k] > 0.5) & inner) for k in range(9))
        assert not kept[8][np.hypot(yy - 64, xx - 75) < 5].any() and kept[8][hole < 4].all()
        if radius == 34:  # where the network's outline ends inside the slice's: tissue, no inner surface
            assert kept[8][(r > 35) & (r < 39)].all()
    # a lung of the slice in that band, which the network says has closed on the far planes: tissue
    hu2 = np.where(r < 40, 40.0, -1000.0)
    band_lung = np.hypot(yy - 64, xx - 98) < 2.5  # 32-36 pixels from the centre
    hu2[band_lung] = -800.0
    prob = np.stack([0.05 + 0.9 * (r < 40 - 6 * k / 8) * ~(band_lung & (k < 2)) for k in range(9)]).astype(np.float32)
    kept = keep_slice_outline(prob, (hu2 + 1000.0) / 2000.0) > 0.5
    assert kept[8][band_lung].all() and not kept[0][band_lung].any()
    # a slice without a body keeps the network's occupancy as it is
    assert np.array_equal(keep_slice_outline(prob, np.zeros((128, 128))), prob)


def test_run_contour_draws_with_the_slice_outline():
    import torch

    from napari_jointrecon.models.contour import run_contour

    from napari_jointrecon.models.contour import build_contour

    nets = {"model": build_contour("contour", width=8).eval()}  # untrained: the slice's extrusion
    yy, xx = np.mgrid[:64, :64]
    # a body whose edge falls from 40 HU at 20 pixels to -1000 HU at 28 (-500 HU at 24.2)
    hu = np.interp(np.hypot(yy - 31.5, xx - 31.5), [20.0, 28.0], [40.0, -1000.0])
    img = torch.from_numpy(((hu + 1000.0) / 2000.0).astype(np.float32))
    x, full = torch.nn.functional.avg_pool2d(img[None, None], 2), img[None, None]
    clouds = [run_contour(nets, x, full, dose=[0.25], n_points=200, outline=outline)[1]
              for outline in ("network", "slice")]
    assert clouds[1].shape == (1, 200, 3) and torch.isfinite(clouds[1]).all()
    assert torch.equal(*clouds)  # an untrained network draws the slice's own outline already
    # a network that shrinks the body on every plane: its cloud moves inward, the slice's outline stays
    with torch.no_grad():
        nets["model"].points.head[-1].bias.fill_(-3.0)
    radii = {}
    for outline in ("network", "slice"):
        pts = run_contour(nets, x, full, dose=[0.25], n_points=200, outline=outline)[1][0].numpy()
        radii[outline] = np.median(np.hypot((pts[:, 1] + 1) * 32 - 0.5 - 31.5, (pts[:, 2] + 1) * 32 - 0.5 - 31.5))
    assert radii["slice"] == pytest.approx(24.2, abs=0.7) and radii["network"] < 23.0, radii
    with pytest.raises(ValueError, match="outline must be one of"):
        run_contour(nets, x, full, dose=[0.25], outline="patient")


def test_extrusion_cloud_copies_the_slice_contour_through_the_slab(chest):
    from scipy import ndimage

    from napari_jointrecon.training.points_eval import extrusion_cloud

    k = 70
    pts = extrusion_cloud(chest, k, chest.hu[k])
    assert pts.shape == (1000, 3)
    with_vessels = chest.world_to_index(extrusion_cloud(chest, k, chest.hu[k], regions="body"))
    idx = chest.world_to_index(pts)
    assert np.abs(idx[:, 0] - k).max() <= 8.0 / chest.spacing[0] + 1e-6
    assert np.ptp(idx[:, 0]) > 0.8 * 16.0 / chest.spacing[0]  # spread through the whole slab
    body = pc._largest_region(chest.hu[k] > -500)
    edge = body ^ ndimage.binary_erosion(body)
    dist = ndimage.distance_transform_edt(~edge)
    on = dist[np.clip(np.round(idx[:, 1]).astype(int), 0, 511), np.clip(np.round(idx[:, 2]).astype(int), 0, 511)]
    assert np.median(on) <= 1.0 and on.max() <= 3.0  # on the slice's own contour, whatever the plane
    # regions="body": the vessels' cross-sections in the lungs too (regions apart from the body's own)
    islands = ndimage.binary_dilation(pc.occupancy_regions(chest.hu[k] > -500, "body") & ~body) & (dist > 3)
    assert islands.any()

    def on_islands(idx):
        return int(islands[np.clip(np.round(idx[:, 1]).astype(int), 0, 511),
                           np.clip(np.round(idx[:, 2]).astype(int), 0, 511)].sum())

    assert on_islands(idx) == 0 and on_islands(with_vessels) > 0


def _tiny_slabs(n: int = 3):
    """Synthetic slabs at the contour networks' output size: discs that grow through the slab."""
    from napari_jointrecon.models.contour import N_PLANES, OUTPUT_SIZE
    from napari_jointrecon.training.points import PointSlabs

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:OUTPUT_SIZE, :OUTPUT_SIZE]
    r = np.hypot(yy - 256, xx - 256)
    clean = np.stack([np.where(r <= 120 + 10 * i, 40.0, -1000.0) for i in range(n)]).astype(np.float32)
    occ = np.stack([np.stack([(r <= 120 + 10 * i + 2 * (j - 4)) for j in range(N_PLANES)]) for i in range(n)])
    ext = np.tile([8.0, 192.0, 192.0], (n, 1))
    ref = np.stack([pc.occupancy_points(o.astype(np.float32), 2000, half_extent_mm=e, pool_factor=2)
                    for o, e in zip(occ, ext)]).astype(np.float32)
    return PointSlabs(clean, rng.normal(0, 20, clean.shape).astype(np.float16), (occ * 255).astype(np.uint8),
                      ["synthetic"] * n, list(range(n)), ext, ref)


def test_contour_training_resumes_where_it_stopped(tmp_path, monkeypatch):
    from napari_jointrecon.training import points as tp

    data = _tiny_slabs()
    monkeypatch.setattr(tp, "build_point_slabs", lambda split, **kw: data)
    cfg = tp.PointConfig(steps=4, batch=2, crop=64, val_every=2)
    whole = tp.train_points("contour", tmp_path / "whole", config=cfg)
    assert [h["step"] for h in whole["history"]] == [2, 4] and whole["steps_done"] == 4
    assert all(np.isfinite(h["msd_mm"]) and h["psnr"] > 0 for h in whole["history"])
    part = tmp_path / "part"
    part.mkdir()
    (part / "STOP").touch()  # stops cleanly after the first step, with a checkpoint
    first = tp.train_points("contour", part, config=cfg)
    assert first["steps_done"] == 1 and not (part / "STOP").exists()
    resumed = tp.train_points("contour", part, config=cfg)
    assert resumed["steps_done"] == 4 and resumed["history"] == whole["history"]
    a = torch.load(tmp_path / "whole" / "checkpoint.pt", weights_only=False)["model"]
    b = torch.load(part / "checkpoint.pt", weights_only=False)["model"]
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert (part / "best.pt").exists() and "resumed contour at step 1" in (part / "train.log").read_text()


def test_a_resumed_run_chooses_its_best_step_again_when_its_validation_changed(tmp_path, monkeypatch):
    from napari_jointrecon.training import points as tp

    data, fewer = _tiny_slabs(3), _tiny_slabs(2)
    monkeypatch.setattr(tp, "build_point_slabs", lambda split, **kw: data)
    (tmp_path / "STOP").touch()  # stop after the first step
    tp.train_points("contour", tmp_path, config=tp.PointConfig(steps=4, batch=2, crop=64, val_every=1, width=8))
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=False)["state"]
    assert state["val_slabs"] == 3 and state["best_step"] == 1
    monkeypatch.setattr(tp, "build_point_slabs", lambda split, **kw: data if split == "train" else fewer)
    summary = tp.train_points("contour", tmp_path, config=tp.PointConfig(steps=4, batch=2, crop=64, val_every=1,
                                                                         width=8))
    assert "the validation set changed (3 -> 2 slabs)" in (tmp_path / "train.log").read_text()
    # the step validated on three slabs is no yardstick: the best is one of those measured on two
    assert summary["val_slabs"] == 2 and summary["best_step"] in (2, 3, 4)
    best = next(h for h in summary["history"] if h["step"] == summary["best_step"])
    assert best["msd_mm"] == min(h["msd_mm"] for h in summary["history"] if h["step"] > 1)


def test_a_regressor_can_train_on_its_denoisers_output_of_low_dose_slices(tmp_path, monkeypatch):
    from napari_jointrecon.models.contour import build_contour
    from napari_jointrecon.training import points as tp

    data = _tiny_slabs(3)
    monkeypatch.setattr(tp, "build_point_slabs", lambda split, **kw: data)
    torch.manual_seed(1)
    den = build_contour("seq_contour_denoiser", 8)
    for module in den.modules():  # batch-norm statistics unlike a fresh layer's, so that training mode shows
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
    torch.save(den.state_dict(), tmp_path / "den.pt")
    den.eval()
    sampled, seen = [], []
    original = tp._sample
    monkeypatch.setattr(tp, "_sample", lambda *a, **k: sampled.append((k, original(*a, **k))) or sampled[-1][1])
    net_inputs = lambda module, args, kwargs: seen.append((args[0].clone(), kwargs["full"].clone()))  # noqa: E731
    original_build = tp.build_contour

    def build(kind, *a, **k):
        net = original_build(kind, *a, **k)
        if kind == "seq_contour_regressor":
            net.register_forward_pre_hook(net_inputs, with_kwargs=True)
        return net

    monkeypatch.setattr(tp, "build_contour", build)
    cfg = tp.PointConfig(steps=3, batch=2, crop=64, val_every=2, width=8, outline="slice", regressor_input="denoised")
    summary = tp.train_points("seq_contour_regressor", tmp_path / "reg", config=cfg, denoiser=tmp_path / "den.pt")
    assert summary["config"]["regressor_input"] == "denoised" and summary["steps_done"] == 3
    training = [batch for kwargs, batch in sampled]
    assert all(kwargs == {"full_dose": False} for kwargs, _ in sampled)
    assert any(float(d) < 1.0 for batch in training for d in batch[4])  # low-dose slices, not full-dose ones
    # what it read at each step: the denoiser's output (in its evaluation mode, also after a validation)
    for step in (0, 2):
        x, full, dose = training[step][0], training[step][1], training[step][4]
        with torch.no_grad():
            expected = den(x, dose, full=full)[0]
        got_x, got_full = seen[[i for i, (a, _) in enumerate(seen) if a.shape[0] == 2][step]]
        assert torch.allclose(got_full, expected, atol=1e-6)
        assert torch.allclose(got_x, torch.nn.functional.interpolate(expected, size=x.shape[-2:], mode="area"), atol=1e-6)
    with pytest.raises(ValueError, match="regressor_input must be one of"):
        tp.train_points("seq_contour_regressor", tmp_path / "bad", config=tp.PointConfig(regressor_input="low"),
                        denoiser=tmp_path / "den.pt")
    with pytest.raises(ValueError, match="pass denoiser="):
        tp.train_points("seq_contour_regressor", tmp_path / "bad", config=cfg)
    # another architecture than the full-dose regressor's: a run of one does not resume the other
    assert not tp._same_architecture(summary["config"], tp.PointConfig(outline="slice", crop=64, batch=2, width=8),
                                     "seq_contour_regressor")
    assert tp._same_architecture({"regressor_input": "denoised"}, tp.PointConfig(), "contour")


def test_a_run_validated_with_the_slice_outline_weighs_its_loss_inside_it(tmp_path, monkeypatch):
    from napari_jointrecon.models.contour import build_contour, keep_slice_outline
    from napari_jointrecon.training import points as tp

    data = _tiny_slabs(2)
    for augment in (False, True):
        cfg = tp.PointConfig(batch=16, crop=128, outline="slice", augment=augment)
        x, full, clean, occ, dose, picked, weight = tp._sample(data, np.random.default_rng(0), cfg, full_dose=False)
        assert set(np.unique(weight.numpy()).tolist()) == {np.float32(tp.OUTSIDE_WEIGHT).item(), 1.0}
        # full weight exactly inside the slice's outline shrunk by the margin, crop by crop (mirrored,
        # turned or not): the crop's body (at the crop's 2x2 averaged scale) holds all of it
        body = (torch.nn.functional.interpolate(clean, scale_factor=2, mode="nearest")[:, 0] * 2000 - 1000) > -500
        inside = weight[:, 0] == 1
        assert not bool((inside & ~body).any())
        assert float(inside.sum()) > 0.8 * float(body.sum())
    yy, xx = np.mgrid[:512, :512]
    expected = np.hypot(yy - 256, xx - 256) <= 130 - 2  # slab 1's disc of 130 px, shrunk by the 2 px margin
    assert abs(int(data.inner(1).sum()) - int(expected.sum())) < 0.01 * expected.sum()
    assert data.inner(1) is data.inner(1)  # computed once per slab
    with pytest.raises(ValueError, match="outline must be one of"):
        tp.train_points("contour", tmp_path / "bad", config=tp.PointConfig(steps=1, outline="both"))
    # trained and validated as the product draws: the clouds of the slice's outline
    monkeypatch.setattr(tp, "build_point_slabs", lambda split, **kw: data)
    drawn_with = []
    monkeypatch.setattr(tp, "keep_slice_outline", lambda *a: drawn_with.append(a) or keep_slice_outline(*a))
    cfg = tp.PointConfig(steps=2, batch=2, crop=64, val_every=2, width=8, outline="slice")
    summary = tp.train_points("contour", tmp_path / "run", config=cfg)
    assert len(drawn_with) == 2  # one validation of two slabs
    net = build_contour("contour", 8)
    net.load_state_dict(torch.load(tmp_path / "run" / "best.pt", weights_only=True))
    den, prob = tp.predict_slabs({"model": net.eval()}, data, 0.25, full_size=True)
    drawn = [tp._msd(keep_slice_outline(prob[k].numpy(), den[k, 0].numpy()), data, k) for k in range(2)]
    assert summary["history"][0]["msd_mm"] == pytest.approx(float(np.mean(drawn)), rel=1e-6)
    # a run's outline is part of what a resumed run must share
    with pytest.raises(ValueError, match="outline"):
        tp.train_points("contour", tmp_path / "run", config=tp.PointConfig(steps=4, batch=2, crop=64, width=8))


def test_a_refit_trains_on_the_validation_patients_too_keeps_its_last_step_and_its_recipes_sampler(
        tmp_path, monkeypatch):
    import shutil

    from napari_jointrecon import joint
    from napari_jointrecon.training import points as tp
    from napari_jointrecon.training.points_eval import _training_text

    train, val_all = _tiny_slabs(2), _tiny_slabs(3)
    val_all.series = ["validation"] * 3
    asked = []
    monkeypatch.setattr(tp, "build_point_slabs",
                        lambda split, **kw: asked.append(split) or {"train": train, "val_all": val_all}[split])
    picked = []
    original = tp._sample
    monkeypatch.setattr(tp, "_sample", lambda data, *a, **k: picked.append(data) or original(data, *a, **k))
    cfg = tp.PointConfig(steps=3, batch=4, crop=64, val_every=1, width=8, outline="slice", train_on="train+val")
    for kind in ("contour", "seq_contour_regressor"):  # the regressor needs no denoiser: nothing is validated
        summary = tp.train_points(kind, tmp_path / kind, config=cfg)
        assert summary["history"] == [] and summary["best_step"] == 3 and summary["val_slabs"] == 0
        assert summary["train_series"] == ["synthetic", "validation"] and summary["train_slabs"] == 5
        best = torch.load(tmp_path / kind / "best.pt", weights_only=True)
        last = torch.load(tmp_path / kind / "checkpoint.pt", weights_only=False)["model"]
        assert all(torch.equal(best[k], last[k]) for k in last)  # the last step, not a validated one
    assert set(asked) == {"train", "val_all"}  # the 24 validation slabs are never read
    assert len(picked[0].centres) == 5
    with pytest.raises(ValueError, match="train_on must be one of"):
        tp.train_points("contour", tmp_path / "bad", config=tp.PointConfig(steps=1, train_on="all"))
    # exported, it keeps the sampler its recipe's run was given on validation, which cannot be tuned again
    weights = tmp_path / "joint"
    weights.mkdir()
    shutil.copyfile(joint.JOINT_WEIGHTS_DIR / "card.json", weights / "card.json")
    monkeypatch.setattr(joint, "JOINT_WEIGHTS_DIR", weights)
    from dataclasses import asdict, replace

    card = json.loads((weights / "card.json").read_text())
    sampler = card["contour_sampler"]
    # a sampler chosen for another recipe (the shipped network's), or none: refused, the card untouched
    before = (weights / "card.json").read_bytes()
    with pytest.raises(ValueError, match="chosen for a network trained with"):
        tp.export_contour(tmp_path)
    assert (weights / "card.json").read_bytes() == before and not (weights / "contour_seed0.pt").exists()
    card["contour_training"]["runs"]["contour_seed0.pt"]["config"] = asdict(replace(cfg, train_on="train"))
    (weights / "card.json").write_text(json.dumps({k: v for k, v in card.items() if k != "contour_sampler"}))
    with pytest.raises(ValueError, match="no contour_sampler"):
        tp.export_contour(tmp_path)
    assert not (weights / "contour_seed0.pt").exists()
    # the recipe's run on the training patients was tuned: the refit is drawn with its sampler
    (weights / "card.json").write_text(json.dumps(card))
    tp.export_contour(tmp_path)
    card = json.loads((weights / "card.json").read_text())
    assert ({k: v for k, v in card["contour_sampler"].items() if k not in ("refit", "models_validation_msd_mm")}
            == {k: v for k, v in sampler.items() if k not in ("refit", "models_validation_msd_mm")})
    assert "refit on the training and validation patients" in card["contour_sampler"]["refit"]
    runs = card["contour_training"]["runs"]
    assert runs["contour_seed0.pt"]["config"]["train_on"] == "train+val"
    # its validation curve is its recipe's run's, the run it replaced; the regressor replaced another recipe's
    assert runs["contour_seed0.pt"]["recipe_run"]["config"] == asdict(replace(cfg, train_on="train"))
    assert "recipe_run" not in runs["seq_contour_regressor_seed0.pt"]
    # the validation figures of the models whose networks changed go; the refit of a scored recipe keeps its
    assert set(card["contour_sampler"]["models_validation_msd_mm"]) == {"contour"}
    assert {"contour", "seq_contour_regressor"} <= set(_training_text().rstrip(".").split(": ")[-1].split(", "))
    with pytest.raises(ValueError, match="trained on the validation patients too"):
        tp.tune_sampler(write=False)


def test_contour_networks_come_in_widths_and_the_card_says_which():
    from napari_jointrecon.joint import point_model_card
    from napari_jointrecon.models.contour import ContourNet, build_contour
    from napari_jointrecon.models.joint import build_model

    def count(net):
        return sum(p.numel() for p in net.parameters())

    assert count(build_contour("contour")) == count(ContourNet(width=16))
    assert count(build_model("contour", width=32)) == count(ContourNet(width=32)) > 3 * count(ContourNet(width=16))
    assert build_contour("seq_contour_regressor", 24).s1[0][0].out_channels == 24
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="width"):
            build_contour("contour", bad)
    with pytest.raises(ValueError, match="fixed architecture"):
        build_model("joint", width=32)
    # the networks are built as the card says they were trained (load_point_model)
    card = point_model_card()
    net = nj.joint.load_point_model("contour")["model"]
    assert net.s1[0][0].out_channels == card["kinds"]["contour"].get("width", 16)


def test_load_point_model_builds_the_width_and_inputs_the_card_records(tmp_path, monkeypatch):
    import hashlib
    import json

    from napari_jointrecon import joint
    from napari_jointrecon.models.contour import build_contour

    card = json.loads((joint.JOINT_WEIGHTS_DIR / "card.json").read_text())
    torch.save(build_contour("contour", 8, spacing_input=True).state_dict(), tmp_path / "contour_seed0.pt")
    card["files"]["contour_seed0.pt"] = {"sha256": hashlib.sha256((tmp_path / "contour_seed0.pt").read_bytes())
                                         .hexdigest()}
    card["kinds"]["contour"].update(width=8, spacing_input=True)
    (tmp_path / "card.json").write_text(json.dumps(card))
    monkeypatch.setattr(joint, "JOINT_WEIGHTS_DIR", tmp_path)
    monkeypatch.setattr(joint, "_LOADED", {})
    net = joint.load_point_model("contour")["model"]
    assert net.s1[0][0].out_channels == 8 and net.s1[0][0].in_channels == 3 and net.spacing_input


def test_mirrored_prediction_is_the_mean_of_the_slice_and_its_mirror_image():
    from napari_jointrecon.models.contour import build_contour, contour_forward, contour_predict

    torch.manual_seed(0)
    full = torch.rand(2, 1, 128, 128)
    x = torch.nn.functional.avg_pool2d(full, 2)
    dose = torch.tensor([0.25, 0.5])
    joint = build_contour("contour", 8).eval()
    torch.nn.init.normal_(joint.points.head[-1].weight, std=0.1)  # a change that is not symmetric
    seq = {"seq_contour_denoiser": build_contour("seq_contour_denoiser", 8).eval(),
           "seq_contour_regressor": build_contour("seq_contour_regressor", 8).eval()}
    torch.nn.init.normal_(seq["seq_contour_regressor"].points.head[-1].weight, std=0.1)
    with torch.no_grad():
        for nets in ({"model": joint}, seq):
            den, prob = contour_predict(nets, x, full, dose, mirror=True)
            d1, l1 = contour_forward(nets, x, full, dose)
            d2, l2 = contour_forward(nets, x.flip(-1), full.flip(-1), dose)
            torch.testing.assert_close(den, 0.5 * (d1 + d2.flip(-1)))
            torch.testing.assert_close(prob, 0.5 * (torch.sigmoid(l1) + torch.sigmoid(l2).flip(-1)))
            plain = contour_predict(nets, x, full, dose)[1]
            assert not torch.allclose(plain, prob)  # the mirror image says something else


def test_affine_crop_turns_and_scales_about_the_crop_centre():
    import math

    from napari_jointrecon.training.points import _affine_crop

    a = np.random.default_rng(0).random((3, 512, 512)).astype(np.float32)
    np.testing.assert_allclose(_affine_crop(a, 100, 60, 256, 0.0, 1.0), a[:, 100:356, 60:316], atol=1e-6)
    quarter = _affine_crop(a, 128, 128, 256, math.pi / 2, 1.0)
    np.testing.assert_allclose(quarter, np.rot90(a[:, 128:384, 128:384], 1, (1, 2)), atol=1e-5)
    # scaled by 2 about the centre of the slice: the whole slice, each pixel the mean of a 2 x 2 block
    whole = _affine_crop(a, 128, 128, 256, 0.0, 2.0)
    blocks = a.reshape(3, 256, 2, 256, 2).mean(axis=(2, 4))
    np.testing.assert_allclose(whole[:, 1:-1, 1:-1], blocks[:, 1:-1, 1:-1], atol=1e-4)
    assert (_affine_crop(a, 0, 0, 256, 0.0, 1.1)[:, :2, :2] == 0).all()  # outside the slice: zeros
    # a slice that is not square: turned a quarter about the crop's centre all the same
    b = np.random.default_rng(1).random((1, 300, 500)).astype(np.float32)
    np.testing.assert_allclose(_affine_crop(b, 20, 150, 256, math.pi / 2, 1.0),
                               np.rot90(b[:, 20:276, 150:406], 1, (1, 2)), atol=1e-4)


def test_augmented_crops_keep_the_noise_untouched_and_the_targets_in_range(monkeypatch):
    from napari_jointrecon.training import points as tp

    data = _tiny_slabs(2)
    data.noise[:] = np.random.default_rng(1).normal(0, 20, data.noise.shape).astype(np.float16)
    turned = []
    original = tp._affine_crop
    monkeypatch.setattr(tp, "_affine_crop", lambda *a: turned.append(a[-2:]) or original(*a))
    cfg = tp.PointConfig(batch=32, crop=64, augment=True)
    x, full, clean, occ, dose, picked, weight = tp._sample(data, np.random.default_rng(0), cfg, full_dose=False)
    assert weight.shape == (32, 1, 128, 128) and bool((weight == 1).all())  # no weights by default
    assert len(picked) == 32 and set(picked) <= {0, 1}
    assert full.shape == (32, 1, 128, 128) and occ.shape == (32, 9, 128, 128)
    assert 0.0 <= occ.min() and occ.max() <= 1.0
    # about half the crops turned and scaled, within the limits
    assert 8 <= len(turned) <= 24
    assert all(abs(np.degrees(angle)) <= tp.AUGMENT_DEGREES and abs(scale - 1) <= tp.AUGMENT_SCALE
               for angle, scale in turned)
    # the noise is added as the series has it, turned crop or not: its level is the dose's
    # (resampling it with the slice would have smoothed it); here averaged 2 x 2, half its SD
    noise = (x - clean)[:, 0] * 2000
    for j in range(32):
        d = float(dose[j])
        k = (1 - d) ** 0.5 / d ** 0.5
        assert float(noise[j].std()) == pytest.approx(0.5 * 20 * k, rel=0.12), j
    # the slice and its targets are turned together: the middle plane is the slice's own body
    body = (torch.nn.functional.interpolate(clean, scale_factor=2, mode="nearest")[:, 0] * 2000 - 1000) > -500
    agree = (body == (occ[:, 4] > 0.5)).float().mean(dim=(1, 2))
    assert float(agree.min()) > 0.97, agree.min()
    n = len(turned)
    tp._sample(data, np.random.default_rng(0), tp.PointConfig(batch=32, crop=64), full_dose=False)
    assert len(turned) == n  # without augment, none is


def test_networks_can_read_the_slice_spacing(tmp_path, monkeypatch):
    from napari_jointrecon.models.contour import build_contour, contour_predict
    from napari_jointrecon.training import points as tp

    full = torch.rand(2, 1, 64, 64)
    x = torch.nn.functional.avg_pool2d(full, 2)
    net = build_contour("contour", 8, spacing_input=True).eval()
    assert net.s1[0][0].in_channels == 3  # the slice, the dose, the spacing
    assert build_contour("seq_contour_regressor", 8, spacing_input=True).s1[0][0].in_channels == 2
    assert build_contour("seq_contour_denoiser", 8, spacing_input=True).s1[0][0].in_channels == 2
    with pytest.raises(ValueError, match="slice spacing"):
        net(x, torch.tensor([0.25, 0.25]), full=full)
    torch.nn.init.normal_(net.points.head[-1].weight, std=0.1)
    with torch.no_grad():
        thin = contour_predict({"model": net}, x, full, 0.25, spacing=2.0, mirror=True)[1]
        thick = contour_predict({"model": net}, x, full, 0.25, spacing=torch.tensor([8.0, 8.0]))[1]
        assert thin.shape == thick.shape == (2, 9, 64, 64) and not torch.allclose(thin, thick)
        # per slice, mirrored in one batch: each slice with its own spacing
        mixed = contour_predict({"model": net}, x, full, 0.25, spacing=torch.tensor([2.0, 8.0]), mirror=True)[1]
        alone = contour_predict({"model": net}, x[1:], full[1:], 0.25, spacing=8.0, mirror=True)[1]
        torch.testing.assert_close(mixed[:1], thin[:1])
        torch.testing.assert_close(mixed[1:], alone)
    # trained and validated with each slab's own spacing
    data = _tiny_slabs()
    data.series[:] = ["thin", "thick", "thin"]
    monkeypatch.setattr(tp, "build_point_slabs", lambda split, **kw: data)
    monkeypatch.setitem(tp._SPACING_Z, "thin", 2.5)
    monkeypatch.setitem(tp._SPACING_Z, "thick", 8.0)
    picks = []
    sample = tp._sample
    monkeypatch.setattr(tp, "_sample", lambda *a, **kw: (lambda out: picks.append(out[5]) or out)(sample(*a, **kw)))
    seen = []
    forward = type(net).forward
    monkeypatch.setattr(type(net), "forward", lambda self, *a, spacing=None, **kw: (
        seen.append(None if spacing is None else torch.as_tensor(spacing).flatten().tolist())
        or forward(self, *a, spacing=spacing, **kw)))
    cfg = tp.PointConfig(steps=2, batch=2, crop=64, val_every=2, width=8, spacing_input=True)
    summary = tp.train_points("contour", tmp_path / "run", config=cfg)
    assert summary["steps_done"] == 2 and np.isfinite(summary["history"][-1]["msd_mm"])
    expected = {0: 2.5, 1: 8.0, 2: 2.5}
    # training: each crop with its own slab's spacing; validation: the slabs in order
    assert seen[:2] == [[expected[i] for i in p] for p in picks]
    assert [2.5, 8.0, 2.5] in seen[2:]


def test_a_run_resumes_only_with_its_own_architecture(tmp_path, monkeypatch):
    from napari_jointrecon.training import points as tp

    data = _tiny_slabs()
    monkeypatch.setattr(tp, "build_point_slabs", lambda split, **kw: data)
    cfg = tp.PointConfig(steps=2, batch=2, crop=64, val_every=2, width=8)
    tp.train_points("contour", tmp_path / "run", config=cfg)
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)
    assert state["config"]["width"] == 8 and state["model"]["s1.0.0.weight"].shape[0] == 8
    with pytest.raises(ValueError, match="trained with"):
        tp.train_points("contour", tmp_path / "run", config=tp.PointConfig(steps=4, batch=2, crop=64, width=16))
    for other in (dict(batch=4, crop=64), dict(batch=2, crop=32)):  # nor with other crops or batches
        with pytest.raises(ValueError, match="trained with"):
            tp.train_points("contour", tmp_path / "run", config=tp.PointConfig(steps=4, width=8, **other))
    with pytest.raises(ValueError, match="crop must be a multiple of 8"):
        tp.train_points("contour", tmp_path / "bad", config=tp.PointConfig(steps=4, crop=300))
    # a committed checkpoint of another architecture is not resumed: the run starts afresh
    committed = tmp_path / "committed"
    committed.mkdir()
    (committed / "contour.pt").write_bytes((tmp_path / "run" / "checkpoint.pt").read_bytes())
    monkeypatch.setattr("napari_jointrecon.training.train.COMMITTED_CHECKPOINTS", committed)
    tp.train_contour_all(tmp_path / "fresh", kinds=("contour",),
                         config=tp.PointConfig(steps=2, batch=2, crop=64, val_every=2, augment=True, width=8))
    log = (tmp_path / "fresh" / "contour" / "train.log").read_text()
    assert "resumed" not in log
    tp.train_contour_all(tmp_path / "same", kinds=("contour",), config=cfg)  # same architecture: resumed
    assert "resumed contour at step 2" in (tmp_path / "same" / "contour" / "train.log").read_text()
    # a finished run of another architecture is neither skipped as done nor exported as this one
    with pytest.raises(ValueError, match="train into another folder"):
        tp.train_contour_all(tmp_path / "same", kinds=("contour",),
                             config=tp.PointConfig(steps=2, batch=2, crop=64, width=16))
    # a committed variant (checkpoints/contour_VARIANT.pt) is found by its architecture
    (committed / "contour.pt").rename(committed / "contour_narrow.pt")
    tp.train_contour_all(tmp_path / "variant", kinds=("contour",), config=cfg)
    assert "resumed contour at step 2" in (tmp_path / "variant" / "contour" / "train.log").read_text()
    # a run of another seed is neither resumed from a committed checkpoint nor skipped as done
    from dataclasses import replace

    tp.train_contour_all(tmp_path / "seed1", kinds=("contour",), config=replace(cfg, seed=1))
    assert "resumed" not in (tmp_path / "seed1" / "contour" / "train.log").read_text()
    assert torch.load(tmp_path / "seed1" / "contour" / "checkpoint.pt", weights_only=False)["config"]["seed"] == 1
    with pytest.raises(ValueError, match="seed 0, not 1: train into another folder"):
        tp.train_contour_all(tmp_path / "same", kinds=("contour",), config=replace(cfg, seed=1))
    with pytest.raises(ValueError, match="a run of seed 0, not 1"):  # nor resumed where it stopped
        tp.train_points("contour", tmp_path / "run", config=replace(cfg, steps=4, seed=1))
    # the command's options reach the run's configuration
    seen = {}
    monkeypatch.setattr(tp, "train_contour_all", lambda out, **kw: seen.update(kw))
    assert cli_main(["train-contour", "--out", str(tmp_path / "cli"), "--kinds", "contour", "--crop", "192",
                     "--batch", "4", "--width", "8", "--outline", "slice", "--train-on", "train+val",
                     "--regressor-input", "denoised", "--seed", "2", "--no-export"]) == 0
    assert (seen["config"].crop, seen["config"].batch, seen["config"].width, seen["config"].seed) == (192, 4, 8, 2)
    assert (seen["config"].outline, seen["config"].train_on) == ("slice", "train+val")
    assert seen["config"].regressor_input == "denoised"


def test_the_occupancy_loss_weighs_each_pixel_on_every_plane():
    from napari_jointrecon.training.points import OUTSIDE_WEIGHT, occupancy_loss

    torch.manual_seed(0)
    logits, occ = torch.randn(2, 9, 8, 8), (torch.rand(2, 9, 8, 8) > 0.5).float()
    plain = torch.nn.functional.binary_cross_entropy_with_logits(logits, occ)
    assert occupancy_loss(logits, occ, torch.ones(2, 1, 8, 8)).item() == pytest.approx(plain.item(), rel=1e-6)
    weight = torch.ones(2, 1, 8, 8)
    weight[:, :, :, 4:] = OUTSIDE_WEIGHT  # the right half outside the slice's outline
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, occ, reduction="none")
    expected = (bce[..., :4].sum() + OUTSIDE_WEIGHT * bce[..., 4:].sum()) / (9 * (64 + OUTSIDE_WEIGHT * 64))
    assert occupancy_loss(logits, occ, weight).item() == pytest.approx(expected.item(), rel=1e-6)
    # a wrong pixel outside costs a tenth of the same wrong pixel inside
    worse_in, worse_out = logits.clone(), logits.clone()
    worse_in[0, :, 0, 0] += 20 * (1 - 2 * occ[0, :, 0, 0])
    worse_out[0, :, 0, 7] += 20 * (1 - 2 * occ[0, :, 0, 7])
    base = occupancy_loss(logits, occ, weight)
    gain_in = occupancy_loss(worse_in, occ, weight) - base
    gain_out = occupancy_loss(worse_out, occ, weight) - base
    assert 0 < gain_out < 0.2 * gain_in


@pytest.mark.parametrize("model", ["contour", "sequential_contour", "contour_ensemble"])
def test_contour_model_predicts_a_cloud_on_the_anatomy(chest, low_chest, model):
    from napari_jointrecon.training.points_eval import extrusion_cloud

    k = 70  # a point test slab, never trained on
    pred = nj.predict_point_cloud(low_chest, slice_index=k, dose=0.25, model=model)
    assert pred.points.shape == (1000, 3) and pred.denoised.shape == (512, 512)
    ref = nj.reference_point_cloud(chest, k, 10000)
    msd = pc.chamfer_distance(pred.points, ref, squared=False)[0].item() / 2
    base = pc.chamfer_distance(extrusion_cloud(chest, k, low_chest.hu[k]), ref, squared=False)[0].item() / 2
    assert msd < 1.5 * base and msd < 6.0, (msd, base)


def test_the_ensemble_denoises_as_the_joint_network_and_averages_two_point_decoders():
    from napari_jointrecon.models.contour import build_contour, contour_predict, contour_probabilities

    torch.manual_seed(0)
    joint_net, regressor = build_contour("contour", 8).eval(), build_contour("seq_contour_regressor", 8).eval()
    for net in (joint_net, regressor):  # the decoders start as the identity and the extrusion: move them
        for p in net.parameters():
            p.data.add_(0.05 * torch.randn_like(p))
    full = torch.rand(2, 1, 64, 64) * 0.4 + 0.4
    x = torch.nn.functional.avg_pool2d(full, 2)
    dose = torch.tensor([0.25, 0.5])
    nets = {"contour": joint_net, "seq_contour_regressor": regressor}
    with torch.no_grad():
        den, prob = contour_probabilities(nets, x, full, dose)
        den_joint, logits = joint_net(x, dose, full=full)
        second = regressor(torch.nn.functional.interpolate(den_joint, size=(32, 32), mode="area"), full=den_joint)[1]
        mirrored = contour_predict(nets, x, full, dose, mirror=True)
        mirror_joint = contour_predict({"model": joint_net}, x, full, dose, mirror=True)
    assert torch.equal(den, den_joint)
    assert torch.allclose(prob, 0.5 * (torch.sigmoid(logits) + torch.sigmoid(second)), atol=1e-6)
    assert not torch.allclose(prob, torch.sigmoid(logits), atol=1e-3)
    assert torch.allclose(mirrored[0], mirror_joint[0], atol=1e-6)  # mirrored too: the joint network's slice
    with torch.no_grad():
        flipped = contour_probabilities(nets, x.flip(-1), full.flip(-1), dose)[1]
    assert torch.allclose(mirrored[1], 0.5 * (prob + flipped.flip(-1)), atol=1e-6)


def test_default_point_model_is_the_most_accurate_on_held_out_patients():
    from napari_jointrecon.cli import heldout_point_distances
    from napari_jointrecon.joint import DEFAULT_POINT_MODEL, POINT_MODELS, point_model_card

    held = heldout_point_distances(point_model_card())
    measured = {m: d for m, d in held.items() if m in POINT_MODELS}
    assert set(measured) == set(POINT_MODELS), "run `jointrecon evaluate` to measure every point model"
    assert DEFAULT_POINT_MODEL == min(measured, key=measured.get), measured
    assert {"extrusion", "surface_1000"} <= set(held)


def test_contour_model_puts_points_on_the_lungs_vessels_and_airways(chest, low_chest):
    """Inside the chest the -500 HU surface bounds the lungs, their vessels and the airways: the
    contour model's cloud has about as large a share of its points there as the reference."""
    from scipy import ndimage

    k = 70
    filled = ndimage.binary_fill_holes(pc._largest_region(chest.hu[k] > -500))
    depth = ndimage.distance_transform_edt(filled) * chest.spacing[1]  # mm from the body's outline

    def inner_share(points):
        idx = np.clip(np.round(chest.world_to_index(points)[:, 1:]).astype(int), 0, 511)
        return float((depth[idx[:, 0], idx[:, 1]] > 15.0).mean())

    ref = inner_share(nj.reference_point_cloud(chest, k, 10000))
    pred = inner_share(nj.predict_point_cloud(low_chest, slice_index=k, dose=0.25, model="contour").points)
    assert ref > 0.3 and abs(pred - ref) < 0.15, (pred, ref)


def test_evaluate_points_only_replaces_the_point_section_alone(tmp_path, monkeypatch):
    import shutil

    from napari_jointrecon import joint
    from napari_jointrecon.training import evaluate as ev
    from napari_jointrecon.training import points_eval

    results = {"ct-series/a": {"patient": "A", "slabs": [4, 8], "rows": {
        "surface_1000": {"msd_mm": [1.0, 1.2], "chamfer": [0.001, 0.001]},
        "extrusion": {"msd_mm": [2.0, 2.0], "chamfer": [0.003, 0.003]},
        "contour": {"msd_mm": [1.5, 1.7], "chamfer": [0.002, 0.002]}}}}
    monkeypatch.setattr(points_eval, "heldout_point_rows", lambda models, **kw: results)
    weights = tmp_path / "joint"
    weights.mkdir()
    shutil.copyfile(joint.JOINT_WEIGHTS_DIR / "card.json", weights / "card.json")
    monkeypatch.setattr(joint, "JOINT_WEIGHTS_DIR", weights)
    out = tmp_path / "RESULTS.md"
    before = "# Results\n\n## Denoising\n\nrows\n\n"
    after = "## Model cards\n\ncards\n"
    out.write_text(before + "## 3D point clouds on held-out patients\n\nold table\n\n" + after)
    assert cli_main(["evaluate", "--points-only", "--output", str(out)]) == 0
    text = out.read_text()
    assert text.startswith(before) and text.endswith(after) and "old table" not in text
    assert "Made by `jointrecon evaluate --points-only` on" in text
    assert "| contour | 1.60 | 0.80 | 0.0020 |" in text
    card = json.loads((weights / "card.json").read_text())
    assert card["results"]["heldout"]["groups"]["ct-series/a"]["rows"]["contour"]["msd_mm"] == [1.5, 1.7]
    assert card["results"]["heldout"]["measured_by"].startswith("jointrecon evaluate --points-only, 2")
    # the section last in the file
    out.write_text(before + "## 3D point clouds on held-out patients\n\nold table\n")
    ev.evaluate_points(out)
    text = out.read_text()
    assert text.startswith(before) and "old table" not in text and text.endswith("|\n")
    with pytest.raises(SystemExit, match="leave out --models and --no-cards"):
        cli_main(["evaluate", "--points-only", "--no-cards", "--output", str(out)])
    # a file without the section: a clear message, the file untouched
    out.write_text(before + after)
    with pytest.raises(ValueError, match="no '## 3D point clouds on held-out patients' section"):
        ev.evaluate_points(out)
    assert out.read_text() == before + after


def test_held_out_point_table_and_the_distances_the_cli_prints():
    from napari_jointrecon.cli import heldout_point_distances
    from napari_jointrecon.training.points_eval import heldout_point_markdown

    def group(patient, ext, model):
        return {"patient": patient, "slabs": [4, 8],
                "rows": {"surface_1000": {"msd_mm": [1.0, 1.2], "chamfer": [0.001, 0.001]},
                         "extrusion": {"msd_mm": [ext, ext], "chamfer": [0.003, 0.003]},
                         "contour": {"msd_mm": [model, model], "chamfer": [0.002, 0.002], "psnr": [40.0, 42.0]},
                         "sequential_contour": {"msd_mm": [3.0, 3.0], "chamfer": [0.004, 0.004], "psnr": [39.0, 41.0]},
                         "input": {"psnr": [35.0, 36.0]}}}

    results = {"ct-series/a": group("A", 2.0, 1.6), "chest-ct-dicom (point test slabs)": group("C", 4.0, 3.0)}
    md = "\n".join(heldout_point_markdown(results))
    assert "| contour | 1.60 | 3.00 | 0.80 / 0.75 | 0.0020 |" in md
    assert "extrusion" in md and "1000 points of the true surface" in md
    assert "| contour | 41.00 | 41.00 |" in md and "| low-dose input | 35.50 | 35.50 |" in md
    # beside it, the contour models on the validation patients, drawn as tuned (the card's, by tune-points)
    from napari_jointrecon.joint import point_model_card

    models = point_model_card()["contour_sampler"]["models_validation_msd_mm"]
    assert set(models) == {"contour", "sequential_contour", "contour_ensemble"}
    assert all(f"{name} {msd:.3f} mm" in md for name, msd in models.items())
    # the CLI's figures: held-out patients only (the chest series is a training patient of the denoisers)
    held = heldout_point_distances({"results": {"heldout": {"groups": results}}})
    assert held["contour"] == pytest.approx(1.6) and held["extrusion"] == pytest.approx(2.0)
    assert "input" not in held


def test_a_run_of_another_seed_is_exported_beside_seed_0_and_changes_no_point_model(tmp_path, monkeypatch):
    import shutil
    from dataclasses import replace

    from napari_jointrecon import joint
    from napari_jointrecon.training import points as tp

    train, val_all = _tiny_slabs(2), _tiny_slabs(2)
    monkeypatch.setattr(tp, "build_point_slabs", lambda split, **kw: {"train": train, "val_all": val_all}[split])
    cfg = tp.PointConfig(steps=2, batch=2, crop=64, width=8, outline="slice", train_on="train+val", seed=1)
    weights = tmp_path / "joint"
    weights.mkdir()
    for name in ("card.json", "seq_contour_regressor_seed0.pt"):
        shutil.copyfile(joint.JOINT_WEIGHTS_DIR / name, weights / name)
    monkeypatch.setattr(joint, "JOINT_WEIGHTS_DIR", weights)
    before = json.loads((weights / "card.json").read_text())
    shipped = (weights / "seq_contour_regressor_seed0.pt").read_bytes()
    tp.train_points("seq_contour_regressor", tmp_path / "s1" / "seq_contour_regressor", config=cfg)
    # a contour run in the same folder is not exported when only the regressor is asked for
    shutil.copytree(tmp_path / "s1" / "seq_contour_regressor", tmp_path / "s1" / "contour")
    tp.export_contour(tmp_path / "s1", kinds=("seq_contour_regressor",))
    card = json.loads((weights / "card.json").read_text())
    runs = card["contour_training"]["runs"]
    assert runs["seq_contour_regressor_seed1.pt"]["config"]["seed"] == 1
    exported = weights / "seq_contour_regressor_seed1.pt"
    assert card["files"][exported.name]["bytes"] == exported.stat().st_size
    assert not (weights / "contour_seed1.pt").exists() and not (weights / "contour_seed0.pt").exists()
    # the shipped seed 0, the models, their sampler and validation figures stay as they were
    assert (weights / "seq_contour_regressor_seed0.pt").read_bytes() == shipped
    seed0 = "seq_contour_regressor_seed0.pt"
    assert runs[seed0] == before["contour_training"]["runs"][seed0]
    assert card["contour_sampler"] == before["contour_sampler"] and card["models"] == before["models"]
    assert card["kinds"] == before["kinds"]  # seed 0 is built as before (the seed-1 run was narrower)
    assert card["contour_training"]["seeds"] == [0, 1]
    # a joint network's refit of seed 1 is drawn by no model: it needs no sampler chosen for its recipe
    tp.export_contour(tmp_path / "s1", kinds=("contour",))
    card = json.loads((weights / "card.json").read_text())
    assert "contour_seed1.pt" in card["files"] and not (weights / "contour_seed0.pt").exists()
    assert card["contour_sampler"] == before["contour_sampler"] and card["kinds"] == before["kinds"]
