"""Load CT dock widget: pick a file or folder, choose a series, load it; apply window presets."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from magicgui.widgets import ComboBox, Container, FileEdit, Label, PushButton

from ..errors import CTReadError
from ..volume import CTVolume, SeriesInfo
from ..windows import WINDOW_PRESETS, window_limits
from ._common import plugin_dock, widen_contrast_range
from ._loading import import_modules, load_in_background

if TYPE_CHECKING:
    import napari

__all__ = ["LoadWidget", "apply_window"]


def apply_window(layer, preset: str) -> None:
    """Set a layer's contrast limits to a CT window preset (and remember it in its metadata)."""
    layer.contrast_limits = window_limits(preset)
    layer.metadata["window"] = preset


class LoadWidget(Container):
    """Open DICOM folders/files, NIfTI, MetaImage, NRRD or NumPy; list series; set the window."""

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__(labels=False)
        self._viewer = napari_viewer
        self._series: list[SeriesInfo] = []
        self._worker = None
        self.file_edit = FileEdit(label="File", mode="r", nullable=True)
        self.folder_edit = FileEdit(label="DICOM folder", mode="d", nullable=True)
        self.scan_button = PushButton(text="Scan")
        # a callable: napari resets every dock widget's choices when layers change, and a fixed
        # list would fall back to the empty one the box was made with
        self._series_labels: list[tuple[str, str]] = []
        self.series_box = ComboBox(label="Series", choices=lambda _w: self._series_labels)
        self.load_button = PushButton(text="Load")
        self.window_box = ComboBox(label="Window", choices=list(WINDOW_PRESETS), value="soft_tissue")
        self.status = Label(value="Choose a file or a DICOM folder.")
        self.extend([
            Container(widgets=[self.file_edit, self.folder_edit], labels=True),
            self.scan_button,
            Container(widgets=[self.series_box], labels=True),
            self.load_button,
            Container(widgets=[self.window_box], labels=True),
            self.status,
        ])
        self.file_edit.changed.connect(lambda: self._path_changed(self.file_edit))
        self.folder_edit.changed.connect(lambda: self._path_changed(self.folder_edit))
        self.scan_button.changed.connect(self.scan)
        self.load_button.changed.connect(self.load)
        self.window_box.changed.connect(self._window_changed)
        plugin_dock(self)
        # the readers (pydicom, SimpleITK) load in the background, not at the first Scan
        load_in_background(lambda: import_modules(["napari_jointrecon.io"]), lambda *_: None, self._viewer,
                           self.native)

    # state ------------------------------------------------------------------------------------
    @property
    def path(self) -> Path | None:
        for edit in (self.folder_edit, self.file_edit):
            value = edit.value
            if value is not None and str(value) not in ("", "."):
                return Path(value)
        return None

    def _path_changed(self, edit: FileEdit) -> None:
        other = self.folder_edit if edit is self.file_edit else self.file_edit
        if edit.value is not None and str(edit.value) not in ("", "."):
            with other.changed.blocked():
                other.value = None
        self._set_series([])

    def _set_series(self, series: list[SeriesInfo]) -> None:
        """The scanned series and the box's entries (numbered: magicgui keeps one entry per label,
        and series can look alike; those that read alike get the end of their key, the UID and #n
        for the parts of one UID that do not stack together)."""
        self._series = series
        labels = [s.label() for s in series]
        labels = [f"{text} · …{s.key[-12:]}" if labels.count(text) > 1 else text
                  for text, s in zip(labels, series)]
        self._series_labels = [(f"{i + 1}. {text}", s.key) for i, (text, s) in enumerate(zip(labels, series))]
        self.series_box.reset_choices()

    def _say(self, text: str) -> None:
        self.status.value = text
        self.status.tooltip = text

    # actions ----------------------------------------------------------------------------------
    def scan(self) -> list[SeriesInfo]:
        """List the series of the chosen source (largest first)."""
        path = self.path
        if path is None:
            self._say("Choose a file or a DICOM folder first.")
            return []
        from ..io import scan_series

        try:
            series = scan_series(path)
        except CTReadError as exc:
            self._set_series([])
            self._say(str(exc))
            return []
        self._set_series(series)
        self._say(f"{len(self._series)} series found.")
        return self._series

    def load(self):
        """Load the chosen series in a worker thread and add it as a layer."""
        from napari.qt.threading import create_worker

        path = self.path
        if path is None:
            self._say("Choose a file or a DICOM folder first.")
            return None
        if self._worker is not None:
            self._say("A volume is already loading.")
            return None
        series = self.series_box.value if self._series and len(self._series) > 1 else None
        if len(self._series) > 1 and series is None:
            self._say("Choose one of the series found (Scan lists them).")
            return None
        self.load_button.enabled = False
        self._say(f"Loading {path.name} ...")
        worker = create_worker(
            _load, path, series or None, _start_thread=False,
            _connect={"returned": self._add_volume, "errored": self._failed, "finished": self._done},
        )
        self._worker = worker
        worker.start()
        return worker

    def _add_volume(self, volume: CTVolume) -> None:
        try:
            kwargs = volume.layer_kwargs(window=self.window_box.value)
            widen_contrast_range(self._viewer.add_image(volume.hu, **kwargs))
        except Exception as exc:  # noqa: BLE001 - reported; the viewer stays usable
            self._failed(exc)
            return
        text = f"Loaded '{kwargs['name']}': {volume.shape[0]} x {volume.shape[1]} x {volume.shape[2]}"
        if volume.notes:
            shown = volume.notes[:4]
            more = f"; and {len(volume.notes) - len(shown)} more note(s)" if len(volume.notes) > len(shown) else ""
            text += ". Notes: " + "; ".join(n.strip().rstrip(".") for n in shown) + more + "."
        self._say(text)

    def _failed(self, exc: Exception) -> None:
        from napari.utils.notifications import show_error

        self._say(str(exc))
        show_error(str(exc))  # the worker was given an errored handler, so this is the only report

    def _done(self) -> None:
        self._worker = None
        self.load_button.enabled = True

    def _window_changed(self, preset: str) -> None:
        layers = [layer for layer in self._viewer.layers.selection if layer._type_string == "image"]
        for layer in layers or [l for l in self._viewer.layers if l._type_string == "image"][-1:]:
            if getattr(layer, "rgb", False):
                continue
            apply_window(layer, preset)


def _load(path: Path, series: str | None) -> CTVolume:
    """Run in the worker thread (the readers are imported there when not loaded yet)."""
    from ..io import load_ct

    return load_ct(path, series=series)
