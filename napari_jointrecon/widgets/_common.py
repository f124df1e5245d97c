"""Helpers shared by the dock widgets: which layers are CT, the current slice, layer <-> volume."""

from __future__ import annotations

import numpy as np

from .._writer import layer_to_volume
from ..volume import CTVolume

__all__ = ["layer_choices", "ct_layer_problem", "layer_volume", "current_slice", "off_slice_problem",
           "layer_points_world", "result_layer_kwargs", "widen_contrast_range",
           "connect_layer_events", "notify_error"]


#: Metadata keys of the helper layers the Compare widget makes (never offered as inputs).
HELPER_KEYS = ("swipe_of", "difference_of")


def layer_choices(viewer, kinds: tuple[str, ...] = ("image",)):
    """``(name, layer)`` pairs for a ComboBox: every layer of the given kinds, newest first."""
    return [(layer.name, layer) for layer in reversed(list(viewer.layers))
            if layer._type_string in kinds and not any(k in layer.metadata for k in HELPER_KEYS)]


def ct_layer_problem(layer, *, need_volume: bool = False) -> str:
    """Why ``layer`` cannot be used as a CT image ("" when it can)."""
    if layer is None:
        return "Open a CT first (File > Open, the Load CT widget or File > Open Sample)."
    kind = layer._type_string
    if kind != "image":
        return f"'{layer.name}' is a {kind} layer, not a CT image."
    if getattr(layer, "rgb", False):
        return f"'{layer.name}' is an RGB picture, not CT in HU."
    if getattr(layer, "multiscale", False):
        return f"'{layer.name}' is multiscale; open the CT at full resolution."
    if layer.ndim not in (2, 3):
        return f"'{layer.name}' has {layer.ndim} dimensions; a CT slice (2D) or volume (3D) is needed."
    if need_volume and layer.ndim != 3:
        return f"'{layer.name}' is a 2D image: only the current slice can be used."
    return ""


def layer_volume(layer) -> CTVolume:
    """The layer as a :class:`CTVolume` (HU, geometry from scale/translate/affine, source metadata)."""
    meta = {"scale": tuple(layer.scale), "translate": tuple(layer.translate),
            "affine": np.asarray(layer.affine.affine_matrix), "metadata": dict(layer.metadata),
            "name": layer.name}
    return layer_to_volume(np.asarray(layer.data, dtype=np.float32), meta)


def current_slice(viewer, layer) -> int:
    """Index along the layer's first axis of the slice the viewer shows (clipped to the layer)."""
    if layer.ndim < 3:
        return 0
    point = np.asarray(viewer.dims.point, dtype=float)[-layer.ndim:]
    k = int(np.round(layer.world_to_data(point)[0]))
    return int(np.clip(k, 0, layer.data.shape[0] - 1))


def off_slice_problem(viewer, layer, *, first: int = 0) -> str:
    """Why the displayed slice cannot be used for ``layer`` ('' when the viewer shows one of its
    slices). ``first``: the volume slice of the layer's first slice, for slab results."""
    if layer.ndim < 3:
        return ""
    point = np.asarray(viewer.dims.point, dtype=float)[-layer.ndim:]
    if 0 <= int(np.round(layer.world_to_data(point)[0])) < layer.data.shape[0]:
        return ""
    return (f"The displayed slice is outside '{layer.name}' (volume slices {first}-"
            f"{first + layer.data.shape[0] - 1}): move the slider onto it.")


def layer_points_world(layer) -> np.ndarray:
    """A Points layer's points in world millimetres (through its scale, translate and affine)."""
    data = np.asarray(layer.data, dtype=np.float64)
    if len(data) == 0:
        return data.reshape(0, layer.ndim)
    return np.asarray(layer._data_to_world(data), dtype=np.float64)


#: The contrast slider's range for CT layers: a 12-bit scanner's HU (napari would take the window).
CT_CONTRAST_RANGE = (-1024.0, 3071.0)


def widen_contrast_range(layer) -> None:
    """Let napari's contrast slider reach every CT window: a layer made with ``contrast_limits``
    gets them as its slider range too, so a soft-tissue layer could not be set to a lung window."""
    lo, hi = (float(v) for v in layer.contrast_limits)
    layer.contrast_limits_range = (min(lo, CT_CONTRAST_RANGE[0]), max(hi, CT_CONTRAST_RANGE[1]))


def result_layer_kwargs(source, *, name: str, first_slice: int = 0, metadata: dict | None = None) -> dict:
    """``add_image`` keywords placing a result (a whole volume, or slices from ``first_slice`` on) where
    ``source`` is, with its window and colormap."""
    translate = np.array(source.translate, dtype=float)
    if first_slice and source.ndim == 3:
        translate[0] += first_slice * float(source.scale[0])
    return {
        "name": name,
        "scale": tuple(source.scale),
        "translate": tuple(translate),
        "affine": np.asarray(source.affine.affine_matrix),
        "contrast_limits": tuple(source.contrast_limits),
        "colormap": source.colormap.name,
        "metadata": {**{k: v for k, v in source.metadata.items() if k in ("ct_volume", "window", "source")},
                     **(metadata or {})},
    }


def connect_layer_events(viewer, callback) -> None:
    """Call ``callback`` when layers are added, removed, reordered or renamed."""
    events = viewer.layers.events
    for name in ("inserted", "removed", "moved", "reordered"):
        emitter = getattr(events, name, None)
        if emitter is not None:
            emitter.connect(lambda *_: callback())


def notify_error(text: str) -> None:
    from napari.utils.notifications import show_error

    show_error(text)
