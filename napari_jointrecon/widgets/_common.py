"""Helpers shared by the dock widgets: which layers are CT, the displayed slice, layer <-> volume, and
the base of the widgets that run a job in a thread worker (:class:`ThreadedWidget`)."""

from __future__ import annotations

import numpy as np
from magicgui.widgets import Container

from .._writer import layer_to_volume
from ..volume import CTVolume

__all__ = ["ThreadedWidget", "layer_choices", "ct_layer_problem", "layer_volume", "current_slice", "off_slice_problem",
           "slice_offset", "grid_problem", "axial_view_problem", "hu_note",
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
    return int(np.clip(_displayed_index(viewer, layer), 0, layer.data.shape[0] - 1))


def _displayed_index(viewer, layer) -> int:
    """The slice napari draws: like napari, only the slider's position along the slice axis is
    mapped to the layer's slice axis (for an oblique layer, such as a tilt-corrected series, the
    full point would depend on where in the plane it lies)."""
    z = float(np.asarray(viewer.dims.point, dtype=float)[-layer.ndim])
    t = np.asarray(layer.world_to_data(np.zeros(layer.ndim)), dtype=float)
    unit = np.zeros(layer.ndim)
    unit[0] = 1.0
    step = float(np.asarray(layer.world_to_data(unit), dtype=float)[0] - t[0])
    return int(np.round(t[0] + step * z))


def slice_offset(base, other) -> int:
    """The slice of ``base`` (3D) where slice 0 of ``other`` (3D) lies, by their geometry."""
    return int(round(float(base.world_to_data(other.data_to_world((0.0, 0.0, 0.0)))[0])))


def grid_problem(base, other) -> str:
    """Why the voxels of 3D ``other`` do not lie on voxels of 3D ``base`` ('' when they do: the same
    slice spacing and rows and columns, slices of ``other`` on slices of ``base``)."""
    corners = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    idx = np.array([base.world_to_data(other.data_to_world(c)) for c in corners], dtype=float)
    steps = idx[1:] - idx[0]
    aligned = (np.allclose(steps, np.eye(3), atol=0.05) and np.allclose(idx[0, 1:], 0.0, atol=0.25)
               and abs(idx[0, 0] - round(idx[0, 0])) < 0.25)
    if aligned:
        return ""
    return (f"'{other.name}' and '{base.name}' are not on the same voxel grid (other spacing, "
            "position or orientation): metrics compare them voxel by voxel.")


def axial_view_problem(viewer, layer, *, allow_3d: bool = False) -> str:
    """Why "the displayed slice" of ``layer`` is not an axial slice on screen ('' when it is):
    the view shows another plane (the layer's first axis is displayed), or the 3D canvas."""
    if layer.ndim < 3:
        return ""
    if viewer.dims.ndisplay == 3 and not allow_3d:
        return ("The 3D view shows no single slice: switch to the 2D view (the 2D/3D button) to choose "
                "the axial slice.")
    first_axis = viewer.dims.ndim - layer.ndim  # the layer's slice axis among the viewer's dims
    if viewer.dims.ndisplay == 2 and first_axis in viewer.dims.displayed:
        return ("The view shows a coronal or sagittal plane: these tools work on axial slices; "
                "reset the axis order (the transpose/roll buttons) to see them.")
    return ""


def off_slice_problem(viewer, layer, *, first: int = 0) -> str:
    """Why the displayed slice cannot be used for ``layer`` ('' when the viewer shows one of its
    slices). ``first``: the volume slice of the layer's first slice, for slab results."""
    if layer.ndim < 3:
        return ""
    if 0 <= _displayed_index(viewer, layer) < layer.data.shape[0]:
        return ""
    return (f"The displayed slice is outside '{layer.name}' (volume slices {first}-"
            f"{first + layer.data.shape[0] - 1}): move the slider onto it.")


def hu_note(hu: np.ndarray) -> str:
    """A warning when an image does not look like CT in HU ('' when it does): the models and the
    dose simulation assume air at about -1000 HU."""
    lowest = float(np.nanmin(hu)) if np.size(hu) else -1000.0
    if lowest <= -500:
        return ""
    return (f" Note: no voxel is below -500 HU (lowest {lowest:.4g}): is this CT in "
            "Hounsfield units? Air should be about -1000.")


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


class ThreadedWidget(Container):
    """A dock widget that runs one job at a time in a napari thread worker, off the main thread.

    Subclasses make ``layer_box``, ``run_button`` and ``status`` (and ``cancel_button`` when the
    job can stop between batches), define ``problem()`` (why Run is disabled, "" when it is not)
    and ``_refresh()`` (the Run button and status from it), call :meth:`_watch_layers` at the end
    of ``__init__``, and start their worker with :meth:`_start` once :meth:`_ready_layer` has said
    yes.
    """

    busy_text = "A run is already going: wait for it or press Cancel."
    #: Whether "the displayed slice" may be chosen in the 3D view (the point-cloud widget shows its
    #: result there, with the slice as a plane at the slider's position).
    slice_in_3d = False
    #: Whether only 3D layers are preselected as input.
    needs_volume = False

    def __init__(self, napari_viewer):
        super().__init__(labels=False)
        self._viewer = napari_viewer
        self._worker = None
        self._cancelled = False

    @property
    def running(self) -> bool:
        return self._worker is not None

    def _say(self, text: str) -> None:
        self.status.value = text
        self.status.tooltip = text

    def _ready_layer(self, *, displayed_slice: bool):
        """The chosen layer if a run may start now, else None with the reason in the status:
        another run is going, ``problem()`` says no, or (``displayed_slice``) the viewer shows no
        slice of the layer."""
        if self._worker is not None:
            from napari.utils.notifications import show_info

            self._say(self.busy_text)
            show_info(self.busy_text)
            return None
        issue = self.problem()
        if issue:
            self._say(issue)
            return None
        layer = self.layer_box.value
        off = ((axial_view_problem(self._viewer, layer, allow_3d=self.slice_in_3d)
                or off_slice_problem(self._viewer, layer)) if displayed_slice else "")
        if off:
            self._say(off)
            return None
        return layer

    def _watch_layers(self) -> None:
        """Offer the viewer's layers now and whenever they change (call at the end of __init__)."""
        connect_layer_events(self._viewer, self.reset_choices)
        self.reset_choices()

    def reset_choices(self, *_):
        super().reset_choices()
        self._preselect(need_volume=self.needs_volume)
        self._refresh()

    def _start(self, worker):
        self._cancelled = False
        self._worker = worker
        self.run_button.enabled = False
        if hasattr(self, "cancel_button"):
            self.cancel_button.enabled = True
        worker.start()
        return worker

    def _choices(self, _widget=None):
        return layer_choices(self._viewer)

    def _preselect(self, *, need_volume: bool = False) -> None:
        """Choose the first usable CT layer when none is chosen."""
        if self.layer_box.value is None:
            good = [layer for _, layer in layer_choices(self._viewer)
                    if not ct_layer_problem(layer, need_volume=need_volume)]
            if good:
                self.layer_box.value = good[0]

    def _removed(self, layer) -> bool:
        """Whether ``layer`` left the viewer while the job ran (then nothing is added, and the
        status says why)."""
        from napari.utils.notifications import show_info

        if layer in self._viewer.layers:
            return False
        text = f"'{layer.name}' was removed meanwhile: nothing was added."
        self._say(text)
        show_info(text)  # the status is soon the next run's readiness
        return True

    def _failed(self, what: str, exc: Exception) -> None:
        text = f"{what} failed: {exc}"
        self._say(text)
        notify_error(text)

    def _run_finished(self) -> None:
        """The worker is done (returned, failed or cancelled): ready for the next run."""
        self._worker = None
        if hasattr(self, "cancel_button"):
            self.cancel_button.enabled = False
        if self._cancelled:
            if hasattr(self, "progress"):
                self.progress.value = 0
            self._say("Cancelled: nothing was added.")
        self.run_button.enabled = not self.problem()

    def cancel(self, *_):
        """Stop after the current batch; the run then adds nothing."""
        if self._worker is None:
            return
        self._cancelled = True
        self._say("Cancelling after the current batch ...")
        self._worker.quit()
