"""napari sample data contributions, generated offline by the project's own code."""

from __future__ import annotations

from ._reader import volume_to_layer_data
from .phantom import make_thorax_phantom

__all__ = ["thorax_phantom", "thorax_phantom_small", "thorax_phantom_low_dose"]


def thorax_phantom() -> list[tuple]:
    """The thorax phantom at 1 mm (120 x 320 x 320), noise-free, seed 0."""
    return volume_to_layer_data(make_thorax_phantom(1.0, seed=0))


def thorax_phantom_small() -> list[tuple]:
    """The thorax phantom at 2.5 mm (48 x 128 x 128), for quick looks."""
    return volume_to_layer_data(make_thorax_phantom(2.5, seed=0))


def thorax_phantom_low_dose() -> list[tuple]:
    """The small phantom at full dose (noise-free) and simulated at 10, 25, 50 and 70 % dose."""
    from .dose import DOSE_LEVELS, simulate_low_dose

    clean = make_thorax_phantom(2.5, seed=0)
    layers = volume_to_layer_data(clean)
    for dose in sorted(DOSE_LEVELS, reverse=True):
        low = simulate_low_dose(clean, dose, seed=0)
        data, kwargs, kind = volume_to_layer_data(low)[0]
        kwargs["name"] = f"Thorax phantom {dose * 100:g}% dose"
        kwargs["metadata"]["dose"] = dose
        kwargs["visible"] = False
        layers.append((data, kwargs, kind))
    return layers
