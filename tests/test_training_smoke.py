"""Tiny training runs of every recipe (a few steps on phantom patches), resumable and exportable."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_jointrecon.dose import insertion_noise_basis
from napari_jointrecon.phantom import make_thorax_phantom
from napari_jointrecon.training.data import NoiseCache, PatchSampler
from napari_jointrecon.training.train import TrainConfig, train


@pytest.fixture(scope="module")
def tiny_caches():
    v = make_thorax_phantom(2.5, z_extent_mm=20, seed=1)
    n1, n2 = insertion_noise_basis(v.hu, 2.5, seed=0)
    make = lambda name, sl: NoiseCache(name, v.hu[sl], n1[None, sl], n2[None, sl], False)  # noqa: E731
    return {"chest_train": make("chest_train", slice(0, 5)), "chest_val": make("chest_val", slice(6, 8))}


def test_sampler_gives_model_scale_patches_with_doses(tiny_caches):
    sampler = PatchSampler(tiny_caches, patch=32, seed=0)
    low, clean, dose = sampler.sample(8)
    assert low.shape == clean.shape == (8, 1, 32, 32) and dose.shape == (8,)
    assert torch.all((dose > 0) & (dose <= 1))
    assert (low - clean).abs().mean() > 0  # noise was added
    assert clean.min() >= -0.01 and clean.max() < 1.5


@pytest.mark.parametrize("name", ["unet", "nafnet", "nafnet_anatomy", "cncl", "autoencoder"])
def test_every_recipe_runs_resumes_and_improves_on_nothing_else(tmp_path, tiny_caches, name):
    cfg = TrainConfig(steps=8, batch=2, patch=32, val_every=4, log_every=4)
    summary = train(name, tmp_path / name, config=cfg, caches=tiny_caches)
    extra = {"nafnet": 8 // 4, "nafnet_anatomy": 8}.get(name, 0)
    assert summary["steps"] == 8 + extra
    assert (tmp_path / name / "best.pt").exists() and (tmp_path / name / "checkpoint.pt").exists()
    log = (tmp_path / name / "train.log").read_text()
    assert "val PSNR" in log and "done" in log
    assert np.isfinite(summary["best_val_psnr_mean"])
    # resuming a finished run does no more steps and keeps the summary
    again = train(name, tmp_path / name, config=cfg, caches=tiny_caches)
    assert "resumed" in (tmp_path / name / "train.log").read_text()
    assert again["steps"] == summary["steps"]
    assert json.loads((tmp_path / name / "summary.json").read_text())["model"] == name


def test_results_table_rows_and_gains(tmp_path):
    from napari_jointrecon.dose import simulate_low_dose
    from napari_jointrecon.training import evaluate as ev

    v = make_thorax_phantom(4.0, z_extent_mm=12, seed=3)
    lows = {d: simulate_low_dose(v, d, seed=1).hu for d in (0.1, 0.25, 0.5, 0.7)}
    logs = []
    table = ev._rows(["tv"], lows, v.hu, logs.append, "t", tmp_path)
    assert set(table) == {"input", "tv"}
    assert table["tv"][0.1]["psnr"][0] != table["input"][0.1]["psnr"][0]  # a real, different row
    for dose in lows:
        assert len(table["input"][dose]["_psnr"]) == v.shape[0]
        assert table["input"][dose]["psnr"][0] > 0
    # rows are cached by the model's version and reused
    again = ev._rows(["tv"], lows, v.hu, logs.append, "t", tmp_path)
    assert any("reused" in line for line in logs)
    assert again["tv"][0.25]["psnr"] == pytest.approx(table["tv"][0.25]["psnr"])
    lines = ev._markdown("Phantom", table, {"tv": {"kind": "classical"}}, {"tv": 3.0}, "note")
    text = "\n".join(lines)
    assert "| tv | classical |" in text and "| input | low-dose input |" in text
    gain = table["tv"][0.1]["psnr"][0] - table["input"][0.1]["psnr"][0]
    assert f"{gain:+.2f}" in text


@pytest.fixture(scope="module")
def tiny_series():
    """Two tiny 'series' (phantom slices with textured noise of their own level), one per split."""
    from napari_jointrecon.noise import apply_texture
    from napari_jointrecon.training.series import SeriesCache

    v = make_thorax_phantom(2.5, z_extent_mm=20, seed=1)
    n1, _ = insertion_noise_basis(v.hu, 2.5, seed=0)

    def make(name, split, sl, sd, cutoff):
        tex = apply_texture(n1[sl], cutoff)
        return SeriesCache(name, split, v.hu[sl], (tex * (sd / tex.std())).astype(np.float16), sd, cutoff, 0.2,
                           list(range(sl.start, sl.stop)))

    return {"a": make("a", "train", slice(0, 5), 12.0, 0.1), "b": make("b", "val", slice(6, 8), 30.0, None)}


def test_series_sampler_conditions_on_the_inserted_noise(tiny_series):
    from napari_jointrecon.training.series import SeriesPatchSampler

    sampler = SeriesPatchSampler(tiny_series, patch=32, seed=0)
    low, clean, level = sampler.sample(16)
    assert low.shape == clean.shape == (16, 1, 32, 32)
    # the level is the inserted noise (HU / 1000) of the training series: 12 HU x sqrt((1 - a) / a)
    assert torch.all(level >= 0) and torch.all(level <= 12.0 * np.sqrt(0.95 / 0.05) / 1000 + 1e-6)
    residual = ((low - clean) * 2000).flatten(1).std(dim=1)  # HU
    inside = level > 0.002
    ratio = residual[inside] / (level[inside] * 1000)
    assert float(ratio.median()) == pytest.approx(1.0, rel=0.35)  # patches of a spatially varying noise


@pytest.mark.parametrize("name", ["unet", "cncl"])  # cncl: the GAN recipe's generator and discriminator
def test_series_training_runs_in_bf16_and_resumes(tmp_path, tiny_series, name, monkeypatch):
    from napari_jointrecon.models.cncl import PatchDiscriminator

    scores = []
    forward = PatchDiscriminator.forward
    monkeypatch.setattr(PatchDiscriminator, "forward", lambda self, x: scores.append(forward(self, x)) or scores[-1])
    cfg = TrainConfig(steps=6, batch=2, patch=32, val_every=3, log_every=3, data="series", bf16=True)
    summary = train(name, tmp_path / name, config=cfg, caches=tiny_series)
    if name == "cncl":  # the discriminator ran under bf16 autocast too
        assert scores and all(s.dtype == torch.bfloat16 for s in scores)
    assert summary["steps"] == 6 and np.isfinite(summary["best_val_psnr_mean"])
    assert set(summary["series"]) == {"a", "b"} and summary["series"]["b"]["split"] == "val"
    assert [h["step"] for h in summary["history"]] == [3, 6] and set(summary["history"][0]) == {"step", "10", "25", "50", "70"}
    saved = torch.load(tmp_path / name / "checkpoint.pt", weights_only=False)
    assert {"model", "opt", "state", "sampler", "torch_rng", "config"} <= set(saved)
    again = train(name, tmp_path / name, config=cfg, caches=tiny_series)
    assert f"resumed {name} at step 6" in (tmp_path / name / "train.log").read_text()
    assert again["history"] == summary["history"]


def test_a_stop_file_ends_the_run_resumably(tmp_path, tiny_series):
    """``touch runs/NAME/STOP``: the run validates, checkpoints and ends like a finished one; the
    next call continues the same schedule to its planned end. (The anatomy recipe, in bf16.)"""
    from napari_jointrecon.training.train import STOP_FILE

    cfg = TrainConfig(steps=6, batch=2, patch=32, val_every=4, log_every=1, data="series", bf16=True)
    run = tmp_path / "nafnet_anatomy"
    run.mkdir()
    # the file is there from the start: the run stops at the first main step (after the tissue network's)
    (run / STOP_FILE).touch()
    first = train("nafnet_anatomy", run, config=cfg, caches=tiny_series)
    assert not (run / STOP_FILE).exists()
    assert first["stopped_early"] and first["steps"] < first["planned_steps"] == 6 + 6
    assert first["history"][-1]["step"] == first["steps"] and np.isfinite(first["best_val_psnr_mean"])
    assert (run / "best.pt").exists() and "stop requested" in (run / "train.log").read_text()
    done = train("nafnet_anatomy", run, config=cfg, caches=tiny_series)
    assert not done["stopped_early"] and done["steps"] == done["planned_steps"] == 12
    assert [h["step"] for h in done["history"]][-1] == 12
    # the committed checkpoint's card comes from the checkpoint itself; hand-written fields stay
    from napari_jointrecon.training.train import write_checkpoint_card

    (tmp_path / "nafnet_anatomy.json").write_text(json.dumps({"what": "written by hand", "step": 0}))
    card = json.loads(write_checkpoint_card("nafnet_anatomy", run / "checkpoint.pt", cards_dir=tmp_path).read_text())
    assert card["what"] == "written by hand" and card["step"] == 12 and card["planned_steps"] == 12
    assert card["checkpoint"] == "checkpoint.pt" and card["validation_curve"] == done["history"]
    assert card["config"]["steps"] == 6 and card["best_step"] in [h["step"] for h in done["history"]]
    assert card["best_validation_psnr_mean_db"] == round(done["best_val_psnr_mean"], 3)
