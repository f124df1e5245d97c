"""The thorax phantom behind the sample data."""

from __future__ import annotations

import numpy as np
import pytest

from napari_jointrecon.phantom import TISSUE_HU, make_thorax_phantom


@pytest.fixture(scope="module")
def phantom():
    return make_thorax_phantom(2.0, seed=3)


def test_deterministic_from_seed(phantom):
    again = make_thorax_phantom(2.0, seed=3)
    other = make_thorax_phantom(2.0, seed=4)
    assert np.array_equal(phantom.hu, again.hu)
    assert not np.array_equal(phantom.hu, other.hu)


def test_geometry_about_one_millimetre():
    v = make_thorax_phantom(1.0, z_extent_mm=10, texture=False)
    assert v.spacing == (1.0, 1.0, 1.0) and v.shape == (10, 320, 320)
    centre = v.index_to_world(np.array(v.shape) / 2 - 0.5)
    assert np.allclose(centre, 0, atol=1e-6)  # centred on the world origin


def test_tissues_are_present_with_their_hu(phantom):
    hu = phantom.hu
    n = hu.size
    assert np.mean(hu == TISSUE_HU["air"]) > 0.2  # outside the body
    lung = (hu > -950) & (hu < -700)
    assert 0.05 < lung.mean() < 0.4
    fat = (hu > -150) & (hu < -50)
    soft = (hu > 0) & (hu < 100)
    bone = hu > 250
    assert fat.sum() > 0.01 * n and soft.sum() > 0.05 * n and bone.sum() > 0.003 * n
    # vessels inside the lungs: soft-tissue values surrounded by lung
    from scipy import ndimage

    lungs = ndimage.binary_closing(hu < -500, iterations=3) & (np.abs(hu) < 900)
    inner = ndimage.binary_erosion(lungs, iterations=2)
    assert ((hu > -200) & inner).sum() > 200


def test_untextured_phantom_has_exact_tissue_values():
    v = make_thorax_phantom(4.0, texture=False, z_extent_mm=40)
    values = set(np.unique(v.hu).tolist())
    assert values <= set(TISSUE_HU.values())
    assert {TISSUE_HU["lung"], TISSUE_HU["fat"], TISSUE_HU["cortical_bone"]} <= values


def test_bad_spacing():
    with pytest.raises(ValueError, match="positive"):
        make_thorax_phantom(0.0)
