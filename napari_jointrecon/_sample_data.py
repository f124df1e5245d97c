"""napari sample data contributions, generated offline by the project's own code."""

from __future__ import annotations

from ._reader import volume_to_layer_data
from .phantom import make_thorax_phantom

__all__ = ["thorax_phantom", "thorax_phantom_small"]


def thorax_phantom() -> list[tuple]:
    """The thorax phantom at 1 mm (120 x 320 x 320), noise-free, seed 0."""
    return volume_to_layer_data(make_thorax_phantom(1.0, seed=0))


def thorax_phantom_small() -> list[tuple]:
    """The thorax phantom at 2.5 mm (48 x 128 x 128), for quick looks."""
    return volume_to_layer_data(make_thorax_phantom(2.5, seed=0))
