"""Helpers shared by the dock widgets: which layers are CT, the displayed slice, layer <-> volume,
docking (compact forms, one tabbed panel), framing the camera on the body, and the base of the
widgets that run a job in a thread worker (:class:`ThreadedWidget`)."""

from __future__ import annotations

import weakref

import numpy as np
from magicgui.widgets import Container

from ..volume import CTVolume
from ._loading import load_in_background

__all__ = ["ThreadedWidget", "layer_choices", "ct_layer_problem", "layer_volume", "layer_source", "current_slice",
           "off_slice_problem", "slice_offset", "grid_problem", "axial_view_problem", "hu_note",
           "layer_points_world", "result_layer_kwargs", "widen_contrast_range",
           "connect_layer_events", "notify_error", "plugin_dock", "dock_tabs", "body_box", "frame_camera",
           "viewbox_size"]


#: Metadata keys of the helper layers the Compare and 3D point cloud widgets make (never offered as inputs).
HELPER_KEYS = ("swipe_of", "difference_of", "slice_plane_of")


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


def layer_source(layer) -> tuple:
    """``(data, attributes)`` of a layer, taken on the main thread without touching the voxels: a
    worker makes the :class:`CTVolume` from them with :func:`napari_jointrecon._writer.layer_to_volume`
    (a conversion to float32 of a whole volume would otherwise stall the viewer)."""
    meta = {"scale": tuple(layer.scale), "translate": tuple(layer.translate),
            "affine": np.asarray(layer.affine.affine_matrix), "metadata": dict(layer.metadata),
            "name": layer.name}
    return layer.data, meta


def layer_volume(layer) -> CTVolume:
    """The layer as a :class:`CTVolume` (HU, geometry from scale/translate/affine, source metadata)."""
    from .._writer import layer_to_volume

    data, meta = layer_source(layer)
    return layer_to_volume(np.asarray(data, dtype=np.float32), meta)


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


# docking ------------------------------------------------------------------------------------------
#: The Qt widgets of this plugin's docks (and of any dock that calls :func:`plugin_dock`).
_PLUGIN_DOCKS: weakref.WeakSet = weakref.WeakSet()
#: Characters a combo box shows before it elides; the list it opens shows whole entries.
COMBO_CHARS = 10


def plugin_dock(widget) -> None:
    """Make ``widget`` (a magicgui widget or a QWidget) a compact dock that joins the plugin's others.

    Its labels wrap and its combo boxes do not widen the dock to their longest entry, so that a
    dock stays about 300 pixels wide; once napari has docked it (after the constructor returns),
    it becomes a tab beside the plugin's docks already in its dock area, and the current tab. Six
    docks stacked one below the other had left the canvas a narrow strip. Call it at the end of a
    dock's ``__init__``.
    """
    from qtpy.QtCore import QTimer

    native = getattr(widget, "native", widget)
    if isinstance(widget, Container):
        _compact_form(widget, top=True)
    _compact(native)
    _PLUGIN_DOCKS.add(native)
    ref = weakref.ref(native)
    QTimer.singleShot(0, lambda: _join_tabs(ref()))


def _compact_form(container, *, top: bool = False) -> None:
    """No margins inside margins (magicgui gives every nested container its own), and "Browse" on
    file fields instead of "Choose directory", half as wide."""
    from magicgui.widgets import FileEdit

    container.margins = (4, 4, 4, 4) if top else (0, 0, 0, 0)
    for child in container:
        if isinstance(child, FileEdit):
            child.choose_btn.tooltip = child.choose_btn.text
            child.choose_btn.text = "Browse"
        elif isinstance(child, Container):
            _compact_form(child)


def _compact(native) -> None:
    from qtpy.QtWidgets import QComboBox, QLabel

    for label in native.findChildren(QLabel):
        label.setWordWrap(True)
    for combo in native.findChildren(QComboBox):
        combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        combo.setMinimumContentsLength(COMBO_CHARS)


def _dock_of(native):
    """The QDockWidget holding ``native`` (None when it is not docked, or was deleted)."""
    from qtpy.QtWidgets import QDockWidget

    widget = native
    try:
        while widget is not None and not isinstance(widget, QDockWidget):
            widget = widget.parentWidget()
    except RuntimeError:  # a dock of a closed viewer: its Qt object is gone
        _PLUGIN_DOCKS.discard(native)
        return None
    return widget


def _join_tabs(native) -> None:
    """Tabify the dock of ``native`` with an open plugin dock of the same main-window area."""
    if native is None:
        return
    try:
        dock = _dock_of(native)
        main = dock.parentWidget() if dock is not None else None
        if main is None or dock.isFloating() or not hasattr(main, "tabifyDockWidget"):
            return
        area = main.dockWidgetArea(dock)
        for other in list(_PLUGIN_DOCKS):
            peer = _dock_of(other)
            if (peer is None or peer is dock or peer.parentWidget() is not main or peer.isFloating()
                    or not peer.toggleViewAction().isChecked() or main.dockWidgetArea(peer) != area):
                continue
            main.tabifyDockWidget(peer, dock)
            break
        dock.show()
        dock.raise_()
        # the panel as narrow as its widest dock allows: the canvas keeps the rest
        from qtpy.QtCore import Qt

        group = [dock, *main.tabifiedDockWidgets(dock)]
        width = max(d.minimumSizeHint().width() for d in group)
        main.resizeDocks([dock], [width], Qt.Orientation.Horizontal)
    except RuntimeError:  # closed before the event loop came back: nothing to dock
        return


def dock_tabs(viewer) -> list[list[str]]:
    """The plugin's open docks of ``viewer`` grouped by tab panel (their window titles); for tests."""
    main = viewer.window._qt_window
    docks = [d for d in (_dock_of(n) for n in list(_PLUGIN_DOCKS))
             if d is not None and d.parentWidget() is main and d.toggleViewAction().isChecked()]
    groups: list[list] = []
    for dock in docks:
        group = next((g for g in groups if dock in main.tabifiedDockWidgets(g[0])), None)
        if group is None:
            groups.append([dock])
        elif dock not in group:
            group.append(dock)
    return [[d.windowTitle() for d in g] for g in groups]


# framing ------------------------------------------------------------------------------------------
def body_box(layer, k: int = 0, *, level: float = -500.0):
    """World box ``(lo, hi)`` (z, y, x mm) of what lies above ``level`` HU on slice ``k`` of a 3D
    layer (a 2D layer: its image): the body, with the table where it shows. None when nothing does.
    Sampled every few pixels: one slice, about a millisecond."""
    plane = np.asarray(layer.data[k] if layer.ndim == 3 else layer.data)
    step = max(1, max(plane.shape) // 256)
    mask = plane[::step, ::step] > level
    if not mask.any():
        return None
    rows, cols = np.flatnonzero(mask.any(axis=1)) * step, np.flatnonzero(mask.any(axis=0)) * step
    r = (rows[0] - 0.5, min(rows[-1] + step, plane.shape[0]) - 0.5)
    c = (cols[0] - 0.5, min(cols[-1] + step, plane.shape[1]) - 0.5)
    corners = np.array([[y, x] for y in r for x in c], dtype=float)
    if layer.ndim == 3:
        corners = np.column_stack([np.full(len(corners), float(k)), corners])
    world = np.array([layer.data_to_world(p) for p in corners], dtype=float)
    if world.shape[1] == 2:
        world = np.column_stack([np.zeros(len(world)), world])
    return world.min(axis=0), world.max(axis=0)


def _camera(viewer):
    scene = getattr(viewer, "scene", None)  # napari >= 0.9; viewer.camera before
    return scene.camera if scene is not None else viewer.camera


def viewbox_size(viewer) -> np.ndarray:
    """Canvas pixels (height, width) of one view: the canvas, or a grid cell in grid mode."""
    canvas = getattr(viewer, "canvas", None)
    if canvas is not None and hasattr(canvas, "viewbox_size"):
        return np.asarray(canvas.viewbox_size(viewer.layers), dtype=float)
    return np.asarray(viewer._canvas_size, dtype=float)


def frame_camera(viewer, lo, hi, *, margin: float = 0.05) -> bool:
    """Centre the camera on the world box ``[lo, hi]`` (its last axes are the viewer's last) and zoom
    so that it fills the canvas, or a grid cell, but for ``margin``; in 3D at the camera's angles.
    False when the box cannot be framed (the caller then resets the view)."""
    lo, hi = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
    offset = viewer.dims.ndim - len(lo)
    axes = [d - offset for d in viewer.dims.displayed]
    if offset < 0 or min(axes) < 0:
        return False
    camera = _camera(viewer)
    size = np.maximum(hi - lo, 1e-6)[axes]
    center = ((lo + hi) / 2)[axes]
    try:
        view = viewbox_size(viewer)
        if viewer.dims.ndisplay == 3:
            # the box's extent on screen: its size along the camera's up and right directions
            up = np.abs(np.asarray(camera.up_direction, dtype=float))
            right = np.abs(np.cross(camera.view_direction, camera.up_direction))
            box = np.array([up @ size, right @ size])
        else:
            box = size[-2:]
    except AttributeError:  # another napari: no grid cell size or no camera directions
        return False
    camera.center = tuple(float(c) for c in center)
    camera.zoom = float((1.0 - margin) * np.min(view / np.maximum(np.asarray(box, dtype=float), 1e-6)))
    return True


class ThreadedWidget(Container):
    """A dock widget that runs one job at a time in a napari thread worker, off the main thread.

    Subclasses make ``layer_box``, ``run_button`` and ``status`` (and ``cancel_button`` when the
    job can stop between batches), define ``problem()`` (why Run is disabled, "" when it is not)
    and ``_refresh()`` (the Run button and status from it), call :meth:`_watch_layers` at the end
    of ``__init__``, and start their worker with :meth:`_start` once :meth:`_ready_layer` has said
    yes.
    """

    busy_text = "A run is already going: wait for it or press Cancel."
    #: Modules a run imports (torch, the models ...): the dock loads them in the background when it
    #: opens (:mod:`._loading`), so that neither the dock nor the first run imports them on the
    #: main thread.
    preload: tuple[str, ...] = ()
    #: Whether ``preload`` imports torch (its library is then opened with the GIL released).
    preload_torch: bool = False
    loading_text = "Loading the models in the background ... the form can be set meanwhile."
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
        self.loading = False

    @property
    def running(self) -> bool:
        return self._worker is not None

    def _load_models(self, job=None) -> None:
        """Start the dock's background loading (at the end of ``__init__``): ``job`` (by default,
        importing :attr:`preload`) runs off the main thread, then :meth:`_loaded` on it. Runs may
        start meanwhile: their worker imports what it needs."""
        if job is None and not self.preload:
            return
        from ._loading import import_modules

        modules, torch = self.preload, self.preload_torch
        self.loading = True
        self._refresh()  # says that it loads
        load_in_background(job or (lambda: import_modules(modules, torch=torch)), self._loading_done,
                           self._viewer, self.native)

    def _loading_done(self, result, error) -> None:
        self.loading = False
        if error is None:
            self._loaded(result)
        self._refresh()
        if error is not None:  # a run would fail too, and say why again
            self._say(f"Loading the models failed: {error}")

    def _loaded(self, result) -> None:
        """The background loading worked; ``result``: what the job returned."""

    def _ready_text(self, text: str) -> str:
        """``text``, or what is loading while it loads."""
        return self.loading_text if self.loading else text

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
