"""CT window presets: one table, looked up by name."""

from __future__ import annotations

__all__ = ["WINDOW_PRESETS", "DEFAULT_WINDOW", "window_limits"]

#: name -> (width, level) in HU. Values are the usual radiology presets.
WINDOW_PRESETS: dict[str, tuple[float, float]] = {
    "soft_tissue": (400.0, 40.0),
    "lung": (1500.0, -600.0),
    "mediastinum": (350.0, 50.0),
    "bone": (1800.0, 400.0),
    "brain": (80.0, 40.0),
    "abdomen": (400.0, 50.0),
}

DEFAULT_WINDOW = "soft_tissue"


def window_limits(name: str = DEFAULT_WINDOW) -> tuple[float, float]:
    """Contrast limits ``(low, high)`` in HU for a window preset.

    Parameters
    ----------
    name : str
        A key of :data:`WINDOW_PRESETS` (``"soft tissue"`` with a space is accepted too).

    Raises
    ------
    KeyError
        For an unknown preset, naming the known ones.
    """
    key = name.strip().lower().replace(" ", "_").replace("-", "_")
    if key not in WINDOW_PRESETS:
        raise KeyError(f"unknown window preset {name!r}; known: {', '.join(WINDOW_PRESETS)}")
    width, level = WINDOW_PRESETS[key]
    return (level - width / 2.0, level + width / 2.0)
