"""Held-out evaluation pieces on tiny synthetic series: the classical filters' tuning on validation,
the per-patient rows (with the noise estimate's row for noise-conditioned models), and the README's
model table."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_jointrecon.dose import DOSE_LEVELS
from napari_jointrecon.models import classical
from napari_jointrecon.noise import apply_texture
from napari_jointrecon.phantom import make_thorax_phantom
from napari_jointrecon.training import heldout
from napari_jointrecon.training.series import SeriesCache


@pytest.fixture(scope="module")
def tiny():
    v = make_thorax_phantom(2.0, z_extent_mm=8, seed=2)
    rng = np.random.default_rng(0)
    noise = apply_texture(rng.standard_normal(v.hu.shape).astype(np.float32), 0.2)
    noise *= 15.0 / noise.std()

    def make(name, split, sl):
        return SeriesCache(name, split, v.hu[sl], noise[sl].astype(np.float16), 15.0, 0.2, 0.2,
                           list(range(sl.start, sl.stop)))

    return {"ct-series/val-a": make("ct-series/val-a", "val", slice(0, 2)),
            "ct-series/test-a": make("ct-series/test-a", "test", slice(2, 4))}


@pytest.fixture
def patched(monkeypatch, tmp_path, tiny):
    monkeypatch.setattr(heldout, "build_series_caches",
                        lambda cache_dir, splits=("test",), log=print, seed=0:
                        {k: c for k, c in tiny.items() if c.split in splits})
    monkeypatch.setattr(heldout, "PATIENT_SPLIT", {"ct-series/val-a": ("P1", "val"),
                                                   "ct-series/test-a": ("P2", "test")})
    monkeypatch.setattr(classical, "TUNED_FILE", tmp_path / "factors.json")
    monkeypatch.setitem(heldout.GRIDS, "tv", (0.1, 0.5, 1.5))
    return tmp_path


def test_tune_classical_picks_the_best_grid_value_per_dose_and_merges_methods(patched):
    logs = []
    result = heldout.tune_classical(patched, methods=("tv",), crop=None, log=logs.append)
    for dose in DOSE_LEVELS:
        scores = result["grid_psnr_db"]["tv"][f"{dose:g}"]
        best = max(scores, key=scores.get)
        assert result["factors"]["tv"][f"{dose:g}"] == float(best)
    # stronger smoothing pays at lower doses
    assert result["factors"]["tv"]["0.1"] >= result["factors"]["tv"]["0.7"]
    saved = json.loads((patched / "factors.json").read_text())
    assert saved["data"]["validation series"] == ["ct-series/val-a"]
    heldout.tune_classical(patched, methods=("nlm",), crop=None, log=logs.append)
    merged = json.loads((patched / "factors.json").read_text())
    assert set(merged["factors"]) == {"tv", "nlm"}  # the second run added, it did not replace


def test_heldout_rows_and_markdown(patched, monkeypatch):
    from napari_jointrecon.models.registry import read_card

    card = dict(read_card("unet"), conditioning="noise", estimate_factor=1.0, typical_full_dose_sd=15.0,
                kind="learned")
    monkeypatch.setattr("napari_jointrecon.models.registry.read_card",
                        lambda name: card if name == "unet" else None)
    rows = heldout.heldout_rows(["tv", "unet"], cache_dir=patched, row_cache=patched / "rows",
                                row_key=lambda n: f"key-{n}", log=lambda *_: None)
    table = rows["ct-series/test-a"]["table"]
    assert list(table) == ["input", "tv", "unet", "unet (estimated)"]
    for name in table:
        assert set(table[name]) == set(DOSE_LEVELS)
    # cached rows come back unchanged
    again = heldout.heldout_rows(["tv", "unet"], cache_dir=patched, row_cache=patched / "rows",
                                 row_key=lambda n: f"key-{n}", log=lambda *_: None)
    assert again["ct-series/test-a"]["table"]["tv"][0.25]["psnr"][0] == pytest.approx(table["tv"][0.25]["psnr"][0])
    summary = heldout.heldout_summary(rows)
    assert summary["tv"][0.1] > 0  # TV gains over a 10 % dose input
    cards = {"tv": {"kind": "classical"}, "unet": dict(card, training={"split": "patient", "steps": 10,
                                                                        "wall_time_s": 60})}
    md = "\n".join(heldout.heldout_markdown(rows, cards))
    assert "`ct-series/test-a` (patient P2" in md and "Best classical filter per dose" in md
    lines = heldout.readme_model_table(rows, cards, {"unet": 20.0, "tv": 3.0}, "today")
    text = "\n".join(lines)
    assert text.startswith(heldout.README_BEGIN) and text.endswith(heldout.README_END)
    assert "| `unet` | zoo |" in text and "every real series, split by patient; 10 steps, 1 min" in text
    assert "| `tv` | classical |" in text
    readme = patched / "README.md"
    readme.write_text(f"top\n{heldout.README_BEGIN}\nOLD-TABLE\n{heldout.README_END}\nbottom\n")
    assert heldout.write_readme_table(readme, lines)
    new = readme.read_text()
    assert new.startswith("top\n") and new.endswith("\nbottom\n") and "OLD-TABLE" not in new and "`unet`" in new
    (patched / "plain.md").write_text("no markers")
    assert not heldout.write_readme_table(patched / "plain.md", lines)
