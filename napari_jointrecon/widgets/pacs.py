"""PACS dock widget: search a PACS, retrieve a series in the background, send a result back.

Thin over :mod:`napari_jointrecon.pacs`: the form collects the server settings and search terms,
every network call runs in a napari thread worker (so a server that is down or slow never freezes
the viewer), and the retrieve yields progress per instance and stops on Cancel, keeping nothing.
The settings (not the password or token) are remembered in the user's config folder.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import ComboBox, Container, Label, LineEdit, ProgressBar, PushButton, SpinBox

from ..pacs.records import Cancelled, PacsError, SeriesEntry, StudyInfo
from ..pacs.settings import ServerSettings, load_settings, redact, save_settings
from ..windows import WINDOW_PRESETS
from ._common import layer_choices, plugin_dock, widen_contrast_range

if TYPE_CHECKING:
    import napari

__all__ = ["PacsWidget", "layer_send_problem"]

PROTOCOL_CHOICES = [("DICOMweb (QIDO/WADO/STOW-RS)", "dicomweb"), ("DIMSE (C-FIND/C-GET/C-STORE)", "dimse")]
AUTH_CHOICES = [("none", "none"), ("basic (user, password)", "basic"), ("bearer token", "bearer")]
#: the retrieve's progress bar and status change at most this often (the worker reports every instance)
_STATUS_EVERY_S = 0.25


def layer_send_problem(layer) -> str:
    """Why a layer cannot be sent to the PACS ('' when it can)."""
    if layer is None:
        return "Choose a result layer to send."
    if layer._type_string != "image" or getattr(layer, "rgb", False) or layer.ndim not in (2, 3):
        return f"'{layer.name}' is not a CT image layer."
    source = layer.metadata.get("ct_volume")
    if source is None or not (source.meta.get("StudyInstanceUID") or source.study_uid) or not source.series_uid:
        return (f"'{layer.name}' does not come from a DICOM series (no study to add it to): denoise or simulate "
                "a series opened from the PACS or a DICOM folder first.")
    return ""


def _model_and_dose(metadata: dict) -> tuple[str | None, float | None]:
    if "denoise" in metadata:
        info = metadata["denoise"]
        return info.get("model"), info.get("dose")
    if "simulated" in metadata:
        return None, metadata["simulated"].get("dose")
    return None, None


def _retrieve_job(settings: ServerSettings, entry: SeriesEntry, cache, cancel: threading.Event):
    """Worker generator: yields Progress per instance, returns the CTVolume (Cancelled when cancelled)."""
    from .. import pacs

    return (yield from pacs.iter_retrieve(settings, entry, cache=cache, cancel=cancel))


def _send_job(settings: ServerSettings, data, meta: dict, source_series_uid: str, model, dose):
    """Worker function: the layer as a volume, stored as a new derived series."""
    from .. import pacs
    from .._writer import layer_to_volume

    volume = layer_to_volume(np.asarray(data, dtype=np.float32), meta)
    return pacs.send(settings, volume, source_series_uid=source_series_uid, model=model, dose=dose)


class PacsWidget(Container):
    """Query and retrieve CT series from a PACS (DICOMweb or DIMSE) and send results back."""

    def __init__(self, napari_viewer: napari.viewer.Viewer, *, cache=None):
        super().__init__(labels=False)
        self._viewer = napari_viewer
        self._cache = cache
        self._worker = None
        self._then = None  # what to start once the current worker has finished
        self._said_at = 0.0
        self._cancel = threading.Event()
        self._studies: list[StudyInfo] = []
        self._series: list[SeriesEntry] = []
        saved = load_settings()
        self._timeout = saved.timeout  # not in the form: kept as saved (the command line's --timeout)

        # server -----------------------------------------------------------------------------
        self.protocol_box = ComboBox(label="Protocol", choices=PROTOCOL_CHOICES, value=saved.protocol)
        self.url_edit = LineEdit(label="DICOMweb URL", value=saved.url)
        self.url_edit.tooltip = ("Orthanc: http://host:8042/dicom-web · DCM4CHEE: http://host:8080/dcm4chee-arc/"
                                 "aets/DCM4CHEE/rs · Google Healthcare: https://healthcare.googleapis.com/v1/"
                                 "projects/P/locations/L/datasets/D/dicomStores/S/dicomWeb")
        self.auth_box = ComboBox(label="Authentication", choices=AUTH_CHOICES, value=saved.auth)
        self.user_edit = LineEdit(label="User", value=saved.username)
        self.secret_edit = LineEdit(label="Password / token", value=saved.secret)
        self._hide_secret()
        self.host_edit = LineEdit(label="Host", value=saved.host)
        self.port_spin = SpinBox(label="Port", value=saved.port, min=1, max=65535)
        self.called_edit = LineEdit(label="PACS AE title", value=saved.called_ae)
        self.calling_edit = LineEdit(label="Own AE title", value=saved.calling_ae)
        self.echo_button = PushButton(text="Test connection")
        # search -----------------------------------------------------------------------------
        self.patient_id_edit = LineEdit(label="Patient ID")
        self.patient_name_edit = LineEdit(label="Patient name")
        self.date_from_edit = LineEdit(label="Date from")
        self.date_to_edit = LineEdit(label="Date to")
        for edit in (self.date_from_edit, self.date_to_edit):
            edit.tooltip = "YYYY-MM-DD (empty: no limit)"
        self.accession_edit = LineEdit(label="Accession no.")
        self.modality_edit = LineEdit(label="Modality", value="CT")
        self.search_button = PushButton(text="Search")
        self._study_labels: list[tuple[str, int]] = []
        self._series_labels: list[tuple[str, int]] = []
        self.study_box = ComboBox(label="Study", choices=lambda _w: self._study_labels, nullable=True)
        self.series_box = ComboBox(label="Series", choices=lambda _w: self._series_labels, nullable=True)
        # retrieve and send ------------------------------------------------------------------
        self.window_box = ComboBox(label="Window", choices=list(WINDOW_PRESETS), value="soft_tissue")
        self.retrieve_button = PushButton(text="Retrieve and open")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(value=0, min=0, max=1, label="Progress")
        self.layer_box = ComboBox(label="Result layer", choices=lambda _w: layer_choices(self._viewer), nullable=True)
        self.send_button = PushButton(text="Send to PACS")
        self.status = Label(value="")

        self._web_fields = Container(widgets=[self.url_edit, self.auth_box, self.user_edit, self.secret_edit],
                                     labels=True)
        self._dimse_fields = Container(widgets=[self.host_edit, self.port_spin, self.called_edit,
                                                self.calling_edit], labels=True)
        self.extend([
            Container(widgets=[self.protocol_box], labels=True),
            self._web_fields,
            self._dimse_fields,
            self.echo_button,
            Container(widgets=[self.patient_id_edit, self.patient_name_edit, self.date_from_edit,
                               self.date_to_edit, self.accession_edit, self.modality_edit], labels=True),
            self.search_button,
            Container(widgets=[self.study_box, self.series_box, self.window_box], labels=True),
            Container(widgets=[self.retrieve_button, self.cancel_button], layout="horizontal", labels=False),
            self.progress,
            Container(widgets=[self.layer_box], labels=True),
            self.send_button,
            self.status,
        ])
        self.protocol_box.changed.connect(self._show_fields)
        self.auth_box.changed.connect(self._show_fields)
        self.echo_button.changed.connect(self.echo)
        self.search_button.changed.connect(self.search)
        self.study_box.changed.connect(self._study_chosen)
        self.retrieve_button.changed.connect(self.retrieve)
        self.cancel_button.changed.connect(self.cancel)
        self.send_button.changed.connect(self.send)
        self._show_fields()
        self._viewer.layers.events.inserted.connect(lambda *_: self.layer_box.reset_choices())
        self._viewer.layers.events.removed.connect(lambda *_: self.layer_box.reset_choices())
        self._say("Set the server, then Search." if saved.problem() else f"Server: {saved.label()}. Search for studies.")
        plugin_dock(self)  # compact, and a tab of the plugin's panel

    # form --------------------------------------------------------------------------------------
    def _hide_secret(self) -> None:
        from qtpy.QtWidgets import QLineEdit

        self.secret_edit.native.setEchoMode(QLineEdit.EchoMode.Password)

    def _show_fields(self, *_) -> None:
        web = self.protocol_box.value == "dicomweb"
        self._web_fields.visible = web
        self._dimse_fields.visible = not web
        self.user_edit.visible = self.auth_box.value == "basic"
        self.secret_edit.visible = self.auth_box.value != "none"
        self.secret_edit.label = "Token" if self.auth_box.value == "bearer" else "Password"

    def settings(self) -> ServerSettings:
        """The server settings the form holds (with the secret)."""
        return ServerSettings(protocol=self.protocol_box.value, url=self.url_edit.value.strip(),
                              auth=self.auth_box.value, username=self.user_edit.value.strip(),
                              host=self.host_edit.value.strip(), port=int(self.port_spin.value),
                              called_ae=self.called_edit.value, calling_ae=self.calling_edit.value,
                              timeout=self._timeout, secret=self.secret_edit.value)

    def _usable_settings(self) -> ServerSettings | None:
        """The settings, remembered for next time (the secret only in the keyring or this session), or
        None with the reason in the status."""
        try:
            settings = self.settings()
        except ValueError as exc:
            self._say(str(exc))
            return None
        issue = settings.problem()
        if issue:
            self._say(issue)
            return None
        try:
            save_settings(settings)
        except OSError as exc:
            self._say(f"Settings not saved ({exc}); continuing.")
        return settings

    @property
    def running(self) -> bool:
        return self._worker is not None

    def _say(self, text: str) -> None:
        text = redact(text, self.secret_edit.value)
        self.status.value = text
        self.status.tooltip = text

    def _busy(self) -> bool:
        if self._worker is not None:
            self._say("The PACS is busy with the previous request: wait for it (or Cancel a retrieve).")
            return True
        return False

    def _run(self, worker, *, cancellable: bool = False):
        self._worker = worker
        for button in (self.echo_button, self.search_button, self.retrieve_button, self.send_button):
            button.enabled = False
        self.cancel_button.enabled = cancellable
        worker.finished.connect(self._finished)
        worker.start()
        return worker

    def _finished(self) -> None:
        self._worker = None
        for button in (self.echo_button, self.search_button, self.retrieve_button, self.send_button):
            button.enabled = True
        self.cancel_button.enabled = False
        follow, self._then = self._then, None
        if follow is not None:
            follow()

    def _failed(self, what: str, exc: Exception) -> None:
        from napari.utils.notifications import show_error, show_info

        if isinstance(exc, Cancelled):
            self.progress.value = 0
            self._say("Cancelled: nothing was added and nothing was kept in the cache.")
            show_info(self.status.value)
            return
        text = str(exc) if isinstance(exc, PacsError) else f"{type(exc).__name__}: {exc}"
        self._say(f"{what} failed: {text}")
        show_error(self.status.value)

    # actions -----------------------------------------------------------------------------------
    def echo(self, *_):
        """Check the connection in a worker."""
        from napari.qt.threading import create_worker

        from .. import pacs

        settings = None if self._busy() else self._usable_settings()
        if settings is None:
            return None
        self._say(f"Contacting {settings.label()} ...")
        return self._run(create_worker(pacs.echo, settings, _start_thread=False,
                                       _connect={"returned": self._say,
                                                 "errored": lambda e: self._failed("Connection test", e)}))

    def search(self, *_):
        """Search studies in a worker; the study list then fills."""
        from napari.qt.threading import create_worker

        from .. import pacs

        settings = None if self._busy() else self._usable_settings()
        if settings is None:
            return None
        terms = dict(patient_id=self.patient_id_edit.value, patient_name=self.patient_name_edit.value,
                     date_from=self.date_from_edit.value.strip() or None,
                     date_to=self.date_to_edit.value.strip() or None,
                     accession=self.accession_edit.value, modality=self.modality_edit.value)
        self._say(f"Searching {settings.label()} ...")
        return self._run(create_worker(pacs.find, settings, _start_thread=False, **terms,
                                       _connect={"returned": self._show_studies,
                                                 "errored": lambda e: self._failed("Search", e)}))

    def _show_studies(self, studies: list[StudyInfo]) -> None:
        self._studies = list(studies)
        self._study_labels = [(f"{i + 1}. {s.label()}", i) for i, s in enumerate(self._studies)]
        self._set_series([])
        with self.study_box.changed.blocked():
            self.study_box.reset_choices()
            self.study_box.value = 0 if self._studies else None
        if not self._studies:
            self._say("No study matches.")
            return
        self._say(f"{len(self._studies)} stud{'y' if len(self._studies) == 1 else 'ies'} found; listing the "
                  "series of the first ...")
        first = self._studies[0]
        self._then = lambda: self._list_series(first)

    def _study_chosen(self, index) -> None:
        if index is None or not 0 <= index < len(self._studies):
            return
        if self._busy():
            return
        self._list_series(self._studies[index])

    def _list_series(self, study: StudyInfo):
        from napari.qt.threading import create_worker

        from .. import pacs

        settings = self._usable_settings()
        if settings is None:
            return None
        return self._run(create_worker(pacs.list_series, settings, study, _start_thread=False,
                                       _connect={"returned": self._set_series_and_say,
                                                 "errored": lambda e: self._failed("Series list", e)}))

    def _set_series(self, series: list[SeriesEntry]) -> None:
        self._series = sorted(series, key=lambda s: (s.number is None, s.number or 0))
        self._series_labels = [(f"{i + 1}. {s.label()}", i) for i, s in enumerate(self._series)]
        self.series_box.reset_choices()
        self.series_box.value = 0 if self._series else None

    def _set_series_and_say(self, series: list[SeriesEntry]) -> None:
        self._set_series(series)
        self._say(f"{len(self._series)} series; choose one and press Retrieve." if self._series
                  else "The study has no series.")

    def chosen_series(self) -> SeriesEntry | None:
        index = self.series_box.value
        return self._series[index] if index is not None and 0 <= index < len(self._series) else None

    def retrieve(self, *_):
        """Retrieve the chosen series in a worker (progress per instance) and add it as a layer."""
        from napari.qt.threading import create_worker

        entry = None if self._busy() else self.chosen_series()
        if entry is None:
            if self._worker is None:
                self._say("Search, then choose a series to retrieve.")
            return None
        settings = self._usable_settings()
        if settings is None:
            return None
        self._cancel = threading.Event()
        self.progress.max, self.progress.value = max(entry.n_instances or 1, 1), 0
        self._say(f"Retrieving {entry.label()} ...")
        worker = create_worker(_retrieve_job, settings, entry, self._cache, self._cancel, _start_thread=False,
                               _connect={"yielded": self._on_progress,
                                         "returned": lambda volume: self._add_volume(volume, entry),
                                         "errored": lambda e: self._failed("Retrieve", e)})
        return self._run(worker, cancellable=True)

    def _on_progress(self, step) -> None:
        now = time.perf_counter()
        if step.stage == "retrieve" and 0 < step.done < step.total and now - self._said_at < _STATUS_EVERY_S:
            return  # each change repaints the window (the canvas too): a few times a second is enough
        self._said_at = now
        self.progress.max = max(step.total, 1)
        self.progress.value = min(step.done, self.progress.max)
        if step.stage == "cache":
            self._say(f"Opening {step.total} instance(s) from the cache ...")
        elif step.stage == "open":
            self._say(f"Retrieved {step.done} instance(s); opening ...")
        else:
            self._say(f"Retrieved {step.done}/{step.total} instance(s) ...")

    def _add_volume(self, volume, entry: SeriesEntry | None = None) -> None:
        if self._cancel.is_set():  # Cancel came after the last instance: the complete series stays cached
            self.progress.value = 0
            self._say("Cancelled: nothing was added (the series had already arrived complete; it stays in "
                      "the cache).")
            return
        # the cache folder is named by the series UID: name the layer for a reader instead
        name = volume.series_description or (entry.description if entry else "") or \
            (f"series #{entry.number}" if entry and entry.number is not None else "PACS series")
        try:
            kwargs = volume.layer_kwargs(window=self.window_box.value, name=name)
            layer = self._viewer.add_image(volume.hu, **kwargs)
            widen_contrast_range(layer)
        except Exception as exc:  # noqa: BLE001 - reported; the viewer stays usable
            self._failed("Opening", exc)
            return
        origin = "from the cache" if volume.notes and volume.notes[0].startswith("opened from the PACS cache") \
            else "retrieved"
        self._say(f"Added '{kwargs['name']}' ({origin}): {volume.shape[0]} x {volume.shape[1]} x {volume.shape[2]}.")

    def cancel(self, *_):
        """Stop a retrieve after the current instance; what had arrived is removed."""
        if self._worker is None:
            return
        self._cancel.set()
        self._say("Cancelling ...")

    def send(self, *_):
        """Send the chosen result layer as a new derived series of its study (in a worker)."""
        from napari.qt.threading import create_worker

        if self._busy():
            return None
        layer = self.layer_box.value
        issue = layer_send_problem(layer)
        if issue:
            self._say(issue)
            return None
        settings = self._usable_settings()
        if settings is None:
            return None
        source = layer.metadata["ct_volume"]
        model, dose = _model_and_dose(layer.metadata)
        meta = {"scale": tuple(layer.scale), "translate": tuple(layer.translate),
                "affine": np.asarray(layer.affine.affine_matrix), "metadata": dict(layer.metadata),
                "name": layer.name}
        self._say(f"Sending '{layer.name}' to {settings.label()} ...")
        worker = create_worker(_send_job, settings, layer.data, meta, source.series_uid, model, dose,
                               _start_thread=False,
                               _connect={"returned": self._sent,
                                         "errored": lambda e: self._failed("Send", e)})
        return self._run(worker)

    def _sent(self, sent) -> None:
        self._say(f"Stored '{sent.description}' ({sent.n_instances} instance(s)) as a new series of the study "
                  f"(SeriesInstanceUID {sent.series_uid}).")
