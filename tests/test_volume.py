"""CTVolume geometry and the window preset table."""

from __future__ import annotations

import numpy as np
import pytest

from napari_jointrecon import CTVolume, WINDOW_PRESETS, window_limits


def test_affine_maps_indices_to_world_and_back():
    rot = np.array([[1, 0, 0], [0, np.cos(0.3), -np.sin(0.3)], [0, np.sin(0.3), np.cos(0.3)]])
    v = CTVolume(np.zeros((4, 5, 6)), spacing=(2.0, 0.5, 0.7), origin=(10, -20, 30), direction=rot)
    idx = np.array([[0, 0, 0], [3, 4, 5], [1.5, 2.0, 0.25]])
    world = v.index_to_world(idx)
    assert world[0] == pytest.approx([10, -20, 30])
    expected = np.array([10, -20, 30]) + rot @ (np.array([3, 4, 5]) * [2.0, 0.5, 0.7])
    assert world[1] == pytest.approx(expected)
    assert v.world_to_index(world) == pytest.approx(idx)
    assert not v.is_axis_aligned
    kwargs = v.layer_kwargs()
    assert "translate" not in kwargs and np.allclose(kwargs["affine"][:3, :3], rot)


def test_axis_aligned_layer_uses_scale_and_translate():
    v = CTVolume(np.zeros((2, 3, 4), dtype=np.int16), spacing=(2.5, 1, 1), origin=(1, 2, 3))
    assert v.hu.dtype == np.float32
    kwargs = v.layer_kwargs(window="lung")
    assert kwargs["scale"] == (2.5, 1.0, 1.0) and kwargs["translate"] == (1.0, 2.0, 3.0)
    assert kwargs["contrast_limits"] == (-1350.0, 150.0)
    assert kwargs["metadata"]["ct_volume"] is v


@pytest.mark.parametrize("bad", [dict(hu=np.zeros((3, 3))), dict(hu=np.zeros((1, 2, 2)), spacing=(0, 1, 1)),
                                 dict(hu=np.zeros((1, 2, 2)), spacing=(1, 1))])
def test_invalid_volumes_are_refused(bad):
    with pytest.raises(ValueError):
        CTVolume(**bad)


def test_with_hu_keeps_geometry_and_checks_shape():
    v = CTVolume(np.zeros((2, 3, 4)), spacing=(3, 2, 1), origin=(1, 1, 1), notes=["x"])
    w = v.with_hu(np.ones((2, 3, 4)))
    assert w.spacing == v.spacing and w.origin == v.origin and w.notes == []
    assert w.hu.mean() == 1 and v.hu.mean() == 0
    with pytest.raises(ValueError, match="shape"):
        v.with_hu(np.ones((2, 3, 5)))


def test_window_presets_table():
    assert window_limits() == (-160.0, 240.0)  # soft tissue W400/L40 by default
    assert set(WINDOW_PRESETS) >= {"soft_tissue", "lung", "mediastinum", "bone", "brain", "abdomen"}
    for name, (width, level) in WINDOW_PRESETS.items():
        lo, hi = window_limits(name)
        assert hi - lo == width and (lo + hi) / 2 == level
    assert window_limits("Soft tissue") == window_limits("soft_tissue")
    with pytest.raises(KeyError, match="known"):
        window_limits("liver-ish")


def test_layer_name_is_the_description_else_the_source_name():
    hu = np.zeros((2, 3, 4))
    assert CTVolume(hu, series_description="Thorax 2mm", source="/d/chest").layer_kwargs()["name"] == "Thorax 2mm"
    assert CTVolume(hu, source="/data/chest-ct-dicom/").layer_kwargs()["name"] == "chest-ct-dicom"
    assert CTVolume(hu, source="3 files").layer_kwargs()["name"] == "CT"
    assert CTVolume(hu).layer_kwargs(name="mine")["name"] == "mine"
