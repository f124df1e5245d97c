"""The diffusion denoiser: network and schedule, a tiny training run (resumable, exported into a
temporary weights folder), sampling shapes and seeds, uncertainty, a 2D slice, cancel, CLI routing."""

from __future__ import annotations

import json
import math
import threading
import time

import numpy as np
import pytest
import torch

from napari_jointrecon.dose import insertion_noise_basis
from napari_jointrecon.models import registry
from napari_jointrecon.models.diffusion import (DiffusionUNet3D, SamplerSettings, Schedule, _fold, _unfold,
                                                ddim_timesteps, estimate_seconds, gaussian_window, iter_sample_volume,
                                                patch_grid, sample_batch)
from napari_jointrecon.phantom import make_thorax_phantom

TINY = dict(steps=6, batch=2, patch=32, depth=4, val_every=3, log_every=3, val_crop=32, val_depth=2,
            sample_steps=3, t_start=30, time_budget_s=None)


@pytest.fixture(scope="module")
def tiny_series():
    """Phantom 'series' with textured noise of their own level: one for training, one for validation."""
    from napari_jointrecon.noise import apply_texture
    from napari_jointrecon.training.series import SeriesCache

    v = make_thorax_phantom(4.0, z_extent_mm=40, seed=1)
    n1, _ = insertion_noise_basis(v.hu, 4.0, seed=0)

    def make(name, split, sl, sd, cutoff):
        tex = apply_texture(n1[sl], cutoff)
        return SeriesCache(name, split, v.hu[sl].astype(np.float32), (tex * (sd / tex.std())).astype(np.float16),
                           sd, cutoff, 0.2, list(range(sl.start, sl.stop)))

    return {"a": make("a", "train", slice(0, 6), 12.0, 0.1), "b": make("b", "val", slice(6, 10), 30.0, None)}


@pytest.fixture(scope="module")
def shipped(tmp_path_factory, tiny_series):
    """A tiny trained and exported diffusion model in a temporary weights folder (the real one
    is left alone); yields the run folder."""
    from napari_jointrecon.training.diffusion import DiffusionConfig, export_diffusion, train_diffusion

    root = tmp_path_factory.mktemp("diffusion")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(registry, "WEIGHTS_DIR", root / "weights")
        registry.load_model.cache_clear()
        train_diffusion(root / "run", config=DiffusionConfig(**TINY), caches=tiny_series)
        export_diffusion(root / "run")
        yield root / "run"
    registry.load_model.cache_clear()


def _phantom_low(shape_z=6, seed=3):
    v = make_thorax_phantom(4.0, z_extent_mm=4.0 * shape_z, seed=seed)
    return v.hu[:, 4:-4, 2:-6] + np.random.default_rng(0).normal(0, 40, v.hu[:, 4:-4, 2:-6].shape).astype(np.float32)


# network, schedule, patches --------------------------------------------------------------------------------

def test_schedule_is_the_designs_linear_betas():
    s = Schedule()
    betas = 1 - s.alpha_bar[1:] / s.alpha_bar[:-1]
    assert s.T == 1000 and float(1 - s.alpha_bar[0]) == pytest.approx(1e-4, rel=1e-3)
    assert float(betas[-1]) == pytest.approx(0.02, rel=1e-3)
    assert np.allclose(np.diff(betas.numpy()), (0.02 - 1e-4) / 999, rtol=1e-2)
    assert ddim_timesteps(100, 10) == [100, 90, 80, 70, 60, 50, 40, 30, 20, 10]


@pytest.mark.parametrize("depth", [1, 3, 8])
def test_network_predicts_noise_of_the_input_shape(depth):
    net = DiffusionUNet3D(8).eval()
    x = torch.randn(2, 1, depth, 32, 48)
    with torch.no_grad():
        eps = net(x, x, torch.tensor([5.0, 90.0]), torch.tensor([0.01, 0.05]))
    assert eps.shape == x.shape and torch.isfinite(eps).all()
    assert torch.equal(_unfold(_fold(x)), x)


def test_patches_cover_the_volume_with_overlap_and_a_centred_window():
    boxes = patch_grid((70, 130, 64), (64, 64, 64), 16)
    cover = np.zeros((70, 130, 64), int)
    for box in boxes:
        assert all(s.stop - s.start == 64 for s in box)
        cover[box] += 1
    assert cover.min() >= 1 and cover.max() >= 2
    w = gaussian_window((5, 64, 64))
    assert w.shape == (5, 64, 64) and w[2, 31:33, 31:33].min() > 0.9 and w.min() > 0
    assert patch_grid((1, 40, 40), (64, 64, 64), 16) == [(slice(0, 1), slice(0, 40), slice(0, 40))]


def test_sampling_is_seeded_and_samples_differ():
    net = DiffusionUNet3D(8).eval()
    vol = _phantom_low()

    def run(seed, samples=2, eta=0.0):
        settings = SamplerSettings(steps=2, t_start=20, patch=32, overlap=8, eta=eta)
        gen = iter_sample_volume(net, vol, 0.04, samples=samples, seed=seed, settings=settings)
        steps = []
        try:
            while True:
                steps.append(next(gen))
        except StopIteration as stop:
            return stop.value, steps

    (m1, s1), steps = run(0)
    (m2, s2), _ = run(0)
    (m3, _), _ = run(1)
    assert m1.shape == s1.shape == vol.shape and m1.dtype == np.float32
    assert np.array_equal(m1, m2) and np.array_equal(s1, s2)
    assert not np.array_equal(m1, m3)
    assert (s1 >= 0).all() and s1.max() > 0
    # progress: one report per network call, patch and sample named
    assert steps[-1].done == steps[-1].total == len(steps) and steps[0].describe().startswith("patch 1/")
    # samples share network calls: the same samples drawn one per call
    from napari_jointrecon.models import diffusion

    assert steps[0].describe().startswith("patch 1/") and "samples 1-2/2" in steps[0].describe()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(diffusion, "BATCH_VOXELS", 1)
        (o1, os1), one_by_one = run(0)
    assert len(one_by_one) == 2 * len(steps) and "sample 1/2" in one_by_one[0].describe()
    np.testing.assert_allclose(o1, m1, atol=0.05)
    np.testing.assert_allclose(os1, s1, atol=0.05)
    # with DDIM's eta > 0 every step draws seeded noise too
    (e1, _), _ = run(0, eta=1.0)
    (e2, _), _ = run(0, eta=1.0)
    assert np.array_equal(e1, e2) and not np.array_equal(e1, m1)


def test_expected_time_grows_with_samples_steps_and_volume():
    base = estimate_seconds((64, 64, 64), samples=1, seconds_per_eval_64=1.0)
    assert base == pytest.approx(10.0)  # 10 steps of one 64^3 patch at 1 s a step
    assert estimate_seconds((64, 64, 64), samples=8, seconds_per_eval_64=1.0) == pytest.approx(80.0)
    assert estimate_seconds((64, 64, 64), samples=1, settings=SamplerSettings(steps=5, t_start=100),
                            seconds_per_eval_64=1.0) == pytest.approx(5.0)
    assert estimate_seconds((141, 512, 512), samples=1, seconds_per_eval_64=1.0) > 300 * base


def test_a_diffusion_model_without_weights_stays_invisible(monkeypatch, tmp_path):
    import shutil

    for f in ("unet.pt", "unet.json", "diffusion.json"):  # a card alone is not a model
        shutil.copy(registry.WEIGHTS_DIR / f, tmp_path / f)
    monkeypatch.setattr(registry, "WEIGHTS_DIR", tmp_path)
    names = [c["name"] for c in registry.list_models()]
    assert "unet" in names and "diffusion" not in names


# training ---------------------------------------------------------------------------------------------------

def test_volume_sampler_gives_boxes_with_their_noise_level(tiny_series):
    from napari_jointrecon.training.diffusion import VolumePatchSampler

    s = VolumePatchSampler(tiny_series, patch=32, depth=4, thin_fraction=0.5, seed=0)
    depths = set()
    for _ in range(8):
        low, clean, level = s.sample(3)
        assert low.shape == clean.shape and low.shape[0] == 3 and low.shape[-2:] == (32, 32)
        depths.add(low.shape[2])
        assert torch.all(level >= 0) and torch.all(level <= 12.0 * np.sqrt(0.95 / 0.05) / 1000 + 1e-6)
    assert 4 in depths and depths & {1, 2, 3}  # full and thin batches


def test_tiny_training_run_resumes_and_exports(shipped, tiny_series):
    from napari_jointrecon.training.diffusion import DiffusionConfig, train_diffusion

    summary = json.loads((shipped / "summary.json").read_text())
    assert summary["steps"] == 6 and [h["step"] for h in summary["history"]] == [3, 6]
    assert np.isfinite(summary["best_val_psnr_mean"]) and set(summary["history"][0]) == {"step", "10", "25", "50", "70"}
    saved = torch.load(shipped / "checkpoint.pt", weights_only=False)
    assert {"model", "ema", "opt", "state", "sampler", "torch_rng", "config"} <= set(saved)
    again = train_diffusion(shipped, config=DiffusionConfig(**TINY), caches=tiny_series)
    assert "resumed diffusion at step 6" in (shipped / "train.log").read_text()
    assert again["history"] == summary["history"]
    card = registry.read_card("diffusion")
    assert card["conditioning"] == "noise" and card["sampling"]["steps"] == 3 and card["sampling"]["t_start"] == 30
    assert card["training"]["split"] == "patient" and card["sha256"]
    assert "diffusion" in [c["name"] for c in registry.list_models()]


def test_a_stop_file_ends_a_diffusion_run_resumably(tmp_path, tiny_series):
    from napari_jointrecon.training.diffusion import DiffusionConfig, train_diffusion
    from napari_jointrecon.training.train import STOP_FILE

    run = tmp_path / "run"
    run.mkdir()
    (run / STOP_FILE).touch()  # there from the start: the run stops after its first step
    first = train_diffusion(run, config=DiffusionConfig(**TINY), caches=tiny_series)
    assert first["stopped_early"] and first["steps_done"] == 1 and first["steps"] == 6
    assert not (run / STOP_FILE).exists() and "stop requested at step 1/6" in (run / "train.log").read_text()
    done = train_diffusion(run, config=DiffusionConfig(**TINY), caches=tiny_series)
    assert not done["stopped_early"] and done["steps_done"] == 6
    assert [h["step"] for h in done["history"]] == [1, 3, 6]  # validated where it stopped, too
    assert (run / "best.pt").exists()


# inference: nj.denoise_with_uncertainty ----------------------------------------------------------------------

def test_uncertainty_has_the_input_shape_is_nonnegative_and_seeded(shipped):
    import napari_jointrecon as nj

    low = _phantom_low()
    r1 = nj.denoise_with_uncertainty(low, dose=0.25, samples=3, seed=0, device="cpu")
    r2 = nj.denoise_with_uncertainty(low, dose=0.25, samples=3, seed=0, device="cpu")
    r3 = nj.denoise_with_uncertainty(low, dose=0.25, samples=3, seed=5, device="cpu")
    mean, sd = r1.mean, r1.sd
    assert mean.shape == sd.shape == low.shape and mean.dtype == sd.dtype == np.float32
    assert (sd >= 0).all() and sd.max() > 0 and np.isfinite(mean).all()
    assert np.array_equal(mean, r2.mean) and np.array_equal(sd, r2.sd)
    assert not np.array_equal(mean, r3.mean)
    assert r1.samples == 3 and r1.conditioning.level_hu is not None
    # nj.denoise returns the mean of the card's samples (denoise_samples, seed 0)
    n = registry.read_card("diffusion")["sampling"]["denoise_samples"]
    assert n == SamplerSettings().denoise_samples == 4
    same = nj.denoise_with_uncertainty(low, dose=0.25, samples=n, seed=0, device="cpu")
    assert np.array_equal(nj.denoise(low, model="diffusion", dose=0.25, device="cpu"), same.mean)
    one = nj.denoise_with_uncertainty(low, dose=0.25, samples=1, seed=0, device="cpu")
    assert np.all(one.sd == 0)


def test_a_2d_slice_is_a_thin_volume(shipped):
    import napari_jointrecon as nj

    low = _phantom_low()[2]
    res = nj.denoise_with_uncertainty(low, dose=0.25, samples=2, seed=0, device="cpu")
    assert res.mean.shape == res.sd.shape == low.shape and (res.sd >= 0).all()
    assert nj.denoise(low, model="diffusion", dose=0.25, device="cpu").shape == low.shape


def test_a_volume_keeps_its_geometry_and_says_what_was_done(shipped):
    import napari_jointrecon as nj
    from napari_jointrecon.volume import CTVolume

    low = _phantom_low()
    ct = CTVolume(low, spacing=(4.0, 0.8, 0.8), origin=(1.0, 2.0, 3.0))
    res = nj.denoise_with_uncertainty(ct, dose=0.25, samples=2, seed=0, device="cpu")
    assert isinstance(res.mean, CTVolume) and isinstance(res.sd, CTVolume)
    assert res.sd.spacing == ct.spacing and res.mean.origin == ct.origin
    assert "2 sample(s)" in res.sd.notes[-1] and "standard deviation" in res.sd.notes[-1]


def test_other_models_and_bad_arguments_are_refused(shipped):
    import napari_jointrecon as nj

    low = _phantom_low()
    with pytest.raises(ValueError, match="diffusion"):
        nj.denoise_with_uncertainty(low, model="tv", dose=0.25)
    with pytest.raises(ValueError, match="samples"):
        nj.denoise_with_uncertainty(low, dose=0.25, samples=0)
    with pytest.raises(ValueError, match="t_start"):
        nj.denoise_with_uncertainty(low, dose=0.25, steps=5, t_start=900)
    with pytest.raises(ValueError, match="NaN"):
        nj.denoise_with_uncertainty(np.full((2, 16, 16), np.nan, np.float32), dose=0.25)


def test_cancel_stops_within_a_second(shipped):
    """Cancelled from another thread (as the widget does) mid-run: the run raises Cancelled soon
    after, and reports progress per network call before."""
    import napari_jointrecon as nj
    from napari_jointrecon.inference import Cancelled

    low = np.random.default_rng(0).normal(0, 40, (16, 64, 64)).astype(np.float32)
    flag = threading.Event()
    seen = []
    when = {}

    def progress(p):
        seen.append(p)
        if len(seen) == 2:
            threading.Timer(0.05, lambda: (when.setdefault("t", time.perf_counter()), flag.set())).start()

    with pytest.raises(Cancelled):
        nj.denoise_with_uncertainty(low, dose=0.25, samples=8, device="cpu", progress=progress, cancel=flag.is_set)
    assert time.perf_counter() - when["t"] < 1.0
    per_call = sample_batch((16, 64, 64), 8, low.nbytes)  # samples side by side in a call
    assert per_call > 1 and "samples 1-" in seen[0].detail
    assert seen[0].unit == "steps" and "patch 1/1" in seen[0].detail and seen[0].total == math.ceil(8 / per_call) * 3
    assert len(seen) < seen[0].total


def test_generator_closes_cleanly(shipped):
    from napari_jointrecon.inference import iter_denoise

    gen = iter_denoise(_phantom_low(), model="diffusion", dose=0.25, device="cpu")
    first = next(gen)
    assert first.unit == "steps" and first.done == 1
    gen.close()


def test_expected_seconds_uses_the_card(shipped):
    from napari_jointrecon.inference import expected_seconds

    one = expected_seconds((16, 64, 64), samples=1)
    assert expected_seconds((16, 64, 64), samples=8) == pytest.approx(8 * one)
    assert expected_seconds((16, 64, 64), samples=1, device="cuda") < one


# evaluation and the command line --------------------------------------------------------------------------

def test_calibration_counts_errors_within_the_predicted_sd():
    from napari_jointrecon.training.diffusion_eval import calibration

    rng = np.random.default_rng(0)
    ref = np.full((64, 64), 40.0, np.float32)
    sd = np.full_like(ref, 10.0)
    mean = ref + rng.normal(0, 10.0, ref.shape).astype(np.float32)
    c = calibration(mean, sd, ref)
    assert c["within_1sd"] == pytest.approx(0.683, abs=0.03) and c["within_2sd"] == pytest.approx(0.954, abs=0.02)
    assert c["rmse_hu"] == pytest.approx(10.0, rel=0.05) and c["mean_sd_hu"] == pytest.approx(10.0)


def test_cli_routes_train_diffusion(monkeypatch, tmp_path):
    from napari_jointrecon import cli
    from napari_jointrecon.training import diffusion

    calls = {}
    monkeypatch.setattr(diffusion, "train_diffusion", lambda out, **kw: calls.update(out=out, **kw))
    assert cli.main(["train", "diffusion", "--steps", "7", "--time-budget-s", "60", "--no-export",
                     "--out", str(tmp_path / "d")]) == 0
    assert calls["config"].steps == 7 and calls["config"].time_budget_s == 60 and calls["config"].depth == 8
    assert calls["out"] == str(tmp_path / "d") and calls["fallback_checkpoint"] is None
    assert cli.main(["train", "diffusion", "--init", "x.pt"]) == 2  # refused, with a message
    assert cli.main(["tune-uncertainty", "unet"]) == 2  # only a diffusion model has an SD to fit


def test_heldout_rows_calibration_and_markdown(shipped, tiny_series, monkeypatch, tmp_path):
    """The evaluation's diffusion section on a stand-in test series (a phantom), with its cache of rows."""
    from napari_jointrecon.training import data, diffusion_eval
    from napari_jointrecon.training.series import SeriesCache
    from napari_jointrecon.volume import CTVolume

    series = "ct-series/siemens-biograph40-B30f-abdomen"
    v = make_thorax_phantom(4.0, z_extent_mm=40, seed=2)
    src = tiny_series["b"]
    test = SeriesCache(series, "test", v.hu[[3, 6]].astype(np.float32), src.noise[:2], src.sd_full, src.cutoff, 0.2,
                       [3, 6])
    monkeypatch.setattr(diffusion_eval, "build_series_caches", lambda *a, **k: {series: test})
    monkeypatch.setattr(data, "shared_data_dir", lambda: tmp_path)
    monkeypatch.setattr("napari_jointrecon.io.load_ct", lambda path: CTVolume(v.hu, spacing=(4.0, 4.0, 4.0)))
    settings = {"crop": 48, "context": 1, "slice_stride": 1, "samples": 2}
    logs = []
    rows = diffusion_eval.diffusion_heldout("diffusion", available=["tv"], row_cache=tmp_path, settings=settings,
                                           log=logs.append)
    r = rows[series]
    assert set(r["table"]) == {"input", "tv", diffusion_eval.TUNED_HERE, "diffusion"}
    assert len(r["table"]["diffusion"][0.25]["_psnr"]) == 2
    c = r["calibration"][0.1]
    assert 0 <= c["within_1sd"] <= c["within_2sd"] <= 1 and c["mean_sd_hu"] >= 0
    text = "\n".join(diffusion_eval.diffusion_markdown("diffusion", rows, None, settings))
    assert "within 1 SD" in text and "| diffusion |" in text and "tv (tuned on these crops) (factor" in text
    card = {"name": "diffusion", "kind": "learned", "training": {"split": "patient", "steps": 6, "wall_time_s": 60.0},
            "results": diffusion_eval.diffusion_card_results("diffusion", rows, "now")}
    verdict = diffusion_eval.diffusion_verdict(card)
    assert verdict["doses"] == 4 and 0 <= verdict["beats_best_classical"] <= 4
    assert verdict["measured_by"] == "jointrecon evaluate, now"
    # the verdict decides the role: the zoo only when it beats the best classical filter and its input at every dose
    for wins, worse, head in ((4, 0, "In the zoo"), (3, 0, "Design baseline, not in the zoo"),
                              (4, 1, "Design baseline, not in the zoo")):
        card["heldout_verdict"] = dict(verdict, beats_best_classical=wins, worse_than_input=worse)
        status = diffusion_eval.diffusion_status(card)
        assert status.startswith(f"{head}: trained on every real series split by patient (6 steps, 1 min)")
        assert f"at {wins} of 4 doses and its input at {4 - worse};" in status and "within one predicted SD" in status
    again = diffusion_eval.diffusion_heldout("diffusion", available=["tv"], row_cache=tmp_path, settings=settings,
                                            log=logs.append)
    assert any("reused" in line for line in logs)
    assert again[series]["calibration"][0.1] == pytest.approx(c)


def test_sd_scale_is_fitted_on_validation_and_scales_the_uncertainty(shipped, tiny_series, monkeypatch, tmp_path):
    """The SD's scale: the 68 % quantile of error / SD on the validation crops, written to the card,
    and applied by denoise_with_uncertainty; refitting with it applied gives the same scale."""
    import napari_jointrecon as nj
    from napari_jointrecon.training import data, diffusion_eval
    from napari_jointrecon.volume import CTVolume

    v = make_thorax_phantom(4.0, z_extent_mm=40, seed=1)
    monkeypatch.setattr(diffusion_eval, "build_series_caches", lambda *a, **k: {"b": tiny_series["b"]})
    monkeypatch.setattr(data, "shared_data_dir", lambda: tmp_path)
    monkeypatch.setattr("napari_jointrecon.io.load_ct", lambda path: CTVolume(v.hu, spacing=(4.0, 4.0, 4.0)))
    monkeypatch.setattr(diffusion_eval, "VALIDATION_STRIDE", 2)
    settings = {"crop": 48, "context": 1, "slice_stride": 1, "samples": 3}
    card_file = registry.card_path("diffusion")
    saved = card_file.read_text()
    low = _phantom_low()
    before = nj.denoise_with_uncertainty(low, dose=0.25, samples=3, seed=0, device="cpu")
    try:
        fit = diffusion_eval.tune_sd_scale("diffusion", settings=settings, log=lambda *_: None)
        assert fit["sd_scale"] > 0 and fit["fitted_on"] == ["b"] and fit["slices_per_series"] == 2
        assert set(fit["within_1sd_by_dose"]) == {"10%", "25%", "50%", "70%"}
        card = registry.read_card("diffusion")
        assert card["sampling"]["sd_scale"] == fit["sd_scale"] and card["uncertainty_fit"]["voxels"] == fit["voxels"]
        after = nj.denoise_with_uncertainty(low, dose=0.25, samples=3, seed=0, device="cpu")
        assert np.array_equal(after.mean, before.mean)
        np.testing.assert_allclose(after.sd, before.sd * fit["sd_scale"], rtol=1e-5, atol=1e-5)
        again = diffusion_eval.tune_sd_scale("diffusion", settings=settings, write=False, log=lambda *_: None)
        assert again["sd_scale"] == pytest.approx(fit["sd_scale"], rel=1e-3)
    finally:
        card_file.write_text(saved)


# the Denoise widget -----------------------------------------------------------------------------------------

@pytest.mark.gui
def test_denoise_widget_adds_the_mean_and_its_sd_and_states_the_time(shipped, make_napari_viewer, qtbot):
    from napari_jointrecon.widgets.denoise import DenoiseWidget

    viewer = make_napari_viewer()
    low = _phantom_low(shape_z=10)  # (10, 72, 72)
    ct = viewer.add_image(low, name="ct", scale=(4.0, 0.8, 0.8), translate=(5.0, 1.0, 2.0))
    widget = DenoiseWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Denoise")
    qtbot.waitUntil(lambda: not widget.loading, timeout=120000)
    widget.layer_box.value = ct
    widget.model_box.value = "tv"
    assert widget.samples_spin.native.isHidden() and widget.expected.value == ""
    widget.scope_box.value = "box"  # a box is for the diffusion model only
    assert not widget.run_button.enabled and "diffusion" in widget.run_button.tooltip
    widget.model_box.value = "diffusion"
    widget.dose_box.value = 0.25
    widget.samples_spin.value = 2
    assert not widget.samples_spin.native.isHidden() and widget.run_button.enabled
    assert widget.expected.value.startswith("Expected: about") and "2 sample(s)" in widget.expected.value
    viewer.dims.set_point(0, float(ct.data_to_world((4, 0, 0))[0]))
    viewer.cursor.position = tuple(ct.data_to_world((4, 60, 10)))
    z0, z1, y0, y1, x0, x1 = widget._box(ct)
    assert (z1 - z0, y1 - y0, x1 - x0) == (10, 64, 64) and y0 == 8 and x0 == 0
    worker = widget.run()
    assert worker is not None, widget.status.value
    qtbot.waitUntil(lambda: not widget.running, timeout=120000)
    mean, sd = viewer.layers[-2], viewer.layers[-1]
    assert mean.name == "ct · diffusion 25%" and sd.name == "ct · diffusion 25% · SD"
    assert sd.colormap.name == "inferno" and (sd.data >= 0).all() and sd.data.max() > 0
    expected = nj_uncertainty(low[z0:z1, y0:y1, x0:x1], reference=low[z0:z1])  # noise measured on whole slices
    np.testing.assert_allclose(mean.data, expected.mean, atol=1e-3)
    np.testing.assert_allclose(sd.data, expected.sd, atol=1e-3)
    # the box lands where it was cut from the input
    np.testing.assert_allclose(mean.data_to_world((0, 0, 0)), ct.data_to_world((z0, y0, x0)))
    assert "SD over 2 samples" in widget.status.value and widget.progress.value == widget.progress.max


def nj_uncertainty(hu, reference=None):
    import napari_jointrecon as nj

    return nj.denoise_with_uncertainty(hu, model="diffusion", dose=0.25, samples=2, seed=0, device="cpu",
                                       noise_reference=reference)
