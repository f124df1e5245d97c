"""napari reader contribution: CT files and DICOM folders -> image layers in millimetres."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from .io import load_ct, reader_for
from .volume import CTVolume

__all__ = ["get_reader", "volume_to_layer_data"]


def volume_to_layer_data(volume: CTVolume, *, window: str = "soft_tissue") -> list[tuple]:
    """napari ``LayerDataTuple`` list for a CT volume."""
    return [(volume.hu, volume.layer_kwargs(window=window), "image")]


def _notify(volume: CTVolume) -> None:
    if not volume.notes:
        return
    from napari.utils.notifications import show_info

    show_info(f"{os.path.basename(str(volume.source)) or volume.source}: " + "\n".join(volume.notes[:6]))


def _read(path: str | Sequence[str]) -> list[tuple]:
    volume = load_ct(path)
    _notify(volume)
    return volume_to_layer_data(volume)


def get_reader(path: str | Sequence[str]) -> Callable[[str | Sequence[str]], list[tuple]] | None:
    """Return the CT reader when ``path`` is something this plugin reads, else None."""
    if isinstance(path, (list, tuple)) and len(path) == 1:
        path = path[0]
    return _read if reader_for(path) is not None else None
