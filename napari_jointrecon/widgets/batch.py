"""Batch dock widget: a folder of studies, models and dose; the batch runs on a local Dask cluster.

The work is :func:`napari_jointrecon.batch.iter_batch` in a napari thread worker: it yields a row
each time a task finishes, so the progress bar and the results table fill as the cohort goes, and
the viewer keeps responding. Cancel stops the queued tasks (the job polls a flag and cancels the
Dask futures; rows done so far stay, in the table and in ``results.csv``). A finished study's
results open as layers, in millimetres like any CT the plugin reads.
"""

from __future__ import annotations

import enum
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, Label, ProgressBar, PushButton, Select, Table

from ..dose_levels import DOSE_LEVELS
from ._common import notify_error, plugin_dock, widen_contrast_range

if TYPE_CHECKING:
    import napari

__all__ = ["BatchWidget", "RunState", "TABLE_COLUMNS", "table_cells"]

#: (header, row key) of the table shown; every column is in results.csv
TABLE_COLUMNS = (("study", "study"), ("model", "model"), ("dose", "dose"), ("status", "status"),
                 ("PSNR (dB)", "psnr"), ("SSIM", "ssim"), ("noise SD (HU)", "noise_sd_hu"),
                 ("seconds", "seconds"), ("error", "error"))


class RunState(enum.Enum):
    IDLE = "idle"
    RUNNING = "running"
    DONE = "done"
    CANCELLED = "cancelled"
    FAILED = "failed"


def _chosen(edit: FileEdit) -> Path | None:
    value = edit.value
    return None if value is None or str(value) in ("", ".") else Path(value)


def table_cells(row: dict) -> list[str]:
    """The table's cells of a results row (numbers rounded, missing values empty)."""
    cells = []
    for _, key in TABLE_COLUMNS:
        value = row.get(key)
        if value is None or (isinstance(value, float) and value != value):
            cells.append("")
        elif key == "ssim":
            cells.append(f"{value:.4f}")
        elif isinstance(value, float):
            cells.append(f"{value:.2f}")
        else:
            cells.append(str(value))
    return cells


class BatchWidget(Container):
    """Denoise (and measure) every study of a folder with one or more models."""

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        from ..models.registry import list_models

        super().__init__(labels=False)
        self._viewer = napari_viewer
        self._worker = None
        self._opener = None
        self._cancel = threading.Event()
        self._rows: list[dict] = []
        self.state = RunState.IDLE
        cards = list_models()
        default = next(c["name"] for c in cards if c["default"])
        self.input_edit = FileEdit(label="Studies", mode="d", nullable=True,
                                   tooltip="a DICOM folder or a folder of studies (DICOM folders, NIfTI, "
                                           "MHA, NRRD, NumPy files): every series is a study")
        self.out_edit = FileEdit(label="Output", mode="d", nullable=True,
                                 tooltip="results, results.csv and summary.md (a finished result is "
                                         "skipped when run again)")
        self.models_box = Select(label="Models", choices=[c["name"] for c in cards], value=[default])
        self.models_box.native.setMaximumHeight(110)
        self.dose_box = ComboBox(label="Dose", value=None, choices=[("estimate from the image", None)]
                                 + [(f"{d * 100:g} %", d) for d in DOSE_LEVELS])
        self.simulate_box = CheckBox(label="Simulate", value=False,
                                     tooltip="simulate the dose from each (full-dose) study first, and "
                                             "denoise that")
        self.reference_box = CheckBox(label="Measure against input", value=True,
                                      tooltip="with Simulate: PSNR, SSIM and RMSE against the full dose")
        self.format_box = ComboBox(label="Format", value="nii.gz",
                                   choices=[("NIfTI (.nii.gz)", "nii.gz"), ("DICOM series", "dcm")])
        self.run_button = PushButton(text="Run")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(value=0, min=0, max=1, label="Progress")
        self.status = Label(value="")
        self.table = Table(value={"data": [], "index": [], "columns": [h for h, _ in TABLE_COLUMNS]})
        self.table.read_only = True
        self.study_box = ComboBox(label="Study", choices=self._study_choices, nullable=True)
        self.open_button = PushButton(text="Open results", enabled=False)
        self.extend([
            Container(widgets=[self.input_edit, self.out_edit, self.models_box, self.dose_box,
                               self.simulate_box, self.reference_box, self.format_box], labels=True),
            Container(widgets=[self.run_button, self.cancel_button], layout="horizontal", labels=False),
            self.progress,
            self.status,
            self.table,
            Container(widgets=[self.study_box], labels=True),
            self.open_button,
        ])
        self.input_edit.changed.connect(self._input_changed)
        for w in (self.out_edit, self.models_box, self.dose_box, self.simulate_box, self.reference_box):
            w.changed.connect(self._refresh)
        self.study_box.changed.connect(self._refresh)
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        self.open_button.changed.connect(self.open_study)
        self._refresh()
        plugin_dock(self)

    # state ------------------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._worker is not None

    def _say(self, text: str) -> None:
        self.status.value = text
        self.status.tooltip = text

    def _input_changed(self, *_) -> None:
        folder = _chosen(self.input_edit)
        if folder is not None and _chosen(self.out_edit) is None:
            with self.out_edit.changed.blocked():
                self.out_edit.value = folder.parent / f"{folder.name}_denoised"
        self._refresh()

    def problem(self) -> str:
        """Why Run is disabled ("" when it is enabled)."""
        folder, out = _chosen(self.input_edit), _chosen(self.out_edit)
        if folder is None:
            return "Choose the folder of studies."
        if not folder.is_dir():
            return f"{folder} is not a folder."
        if out is None:
            return "Choose the output folder."
        if not self.models_box.value:
            return "Choose at least one model."
        if self.simulate_box.value and self.dose_box.value is None:
            return "Choose the dose to simulate."
        return ""

    def _refresh(self, *_) -> None:
        self.reference_box.enabled = bool(self.simulate_box.value)
        issue = self.problem()
        self.run_button.enabled = not self.running and not issue
        self.run_button.tooltip = issue or "Run the batch on a local Dask cluster"
        self.open_button.enabled = self.study_box.value is not None and self._opener is None
        if self.state is not RunState.RUNNING and (issue or not self.status.value
                                                   or self.state is RunState.IDLE):
            self._say(issue or "Ready.")

    def _study_choices(self, _widget=None) -> list[str]:
        from ..batch import INPUT_ROW

        return list(dict.fromkeys(r["study"] for r in self._rows
                                  if r["status"] in ("ok", "skipped") and r["model"] != INPUT_ROW))

    def _show_rows(self) -> None:
        self.table.value = {"data": [table_cells(r) for r in self._rows], "index": list(range(len(self._rows))),
                            "columns": [h for h, _ in TABLE_COLUMNS]}

    # running ----------------------------------------------------------------------------------
    def options(self) -> dict:
        """The keywords of :func:`napari_jointrecon.batch.iter_batch` chosen in the form."""
        simulate = bool(self.simulate_box.value)
        return {"models": list(self.models_box.value), "fmt": self.format_box.value,
                "dose": None if simulate else self.dose_box.value,
                "simulate": self.dose_box.value if simulate else None,
                "reference_from_input": simulate and bool(self.reference_box.value)}

    def run(self, *_):
        """Start the batch; returns the worker (None when refused, with the reason in the status)."""
        from napari.qt.threading import create_worker

        if self.running:
            self._say("A batch is already running: wait for it or press Cancel.")
            return None
        issue = self.problem()
        if issue:
            self._say(issue)
            return None
        self._cancel.clear()
        self._rows = []
        self._show_rows()
        self.study_box.reset_choices()
        self.progress.max, self.progress.value = 1, 0
        self.state = RunState.RUNNING
        self._say("Finding the studies and starting the local Dask cluster ...")
        worker = create_worker(
            _batch_job, str(_chosen(self.input_edit)), str(_chosen(self.out_edit)), self._cancel.is_set,
            self.options(), _start_thread=False,
            _connect={"yielded": self._on_progress, "returned": self._on_done,
                      "errored": self._on_error, "finished": self._on_finished})
        self._worker = worker
        self.run_button.enabled = False
        self.cancel_button.enabled = True
        worker.start()
        return worker

    def cancel(self, *_) -> None:
        """Stop the queued tasks; the rows done so far stay."""
        if not self.running:
            return
        self._cancel.set()
        self._say("Cancelling: the queued tasks are stopped ...")

    def _on_progress(self, step) -> None:
        self.progress.max = max(step.total, 1)
        self.progress.value = step.done
        if step.row is None:
            link = f" Dask dashboard: {step.dashboard}" if step.dashboard else ""
            self._say(f"{step.total} task(s): {step.message}.{link}")
            return
        self._rows.append(step.row)
        self._show_rows()
        self.study_box.reset_choices()
        if not self._cancel.is_set():
            self._say(f"{step.done}/{step.total}: {step.row['study']} / {step.row['model']} {step.row['status']}")

    def _on_done(self, table) -> None:
        self._rows = table.astype(object).where(table.notna(), None).to_dict("records")
        self._show_rows()
        self.study_box.reset_choices()
        counts = table.status.value_counts()
        cancelled = self._cancel.is_set() or "cancelled" in counts
        self.state = RunState.CANCELLED if cancelled else RunState.DONE
        self.progress.value = self.progress.max if not cancelled else self.progress.value
        summary = ", ".join(f"{counts[s]} {s}" for s in counts.index)
        self._say(f"{'Cancelled' if cancelled else 'Done'}: {summary}; results.csv and summary.md in "
                  f"{_chosen(self.out_edit)}.")

    def _on_error(self, exc: Exception) -> None:
        self.state = RunState.FAILED
        text = f"The batch failed: {exc}"
        self._say(text)
        notify_error(text)

    def _on_finished(self) -> None:
        self._worker = None
        self.cancel_button.enabled = False
        self._refresh()

    # opening results --------------------------------------------------------------------------
    def open_study(self, *_):
        """Open the chosen study's results (and its simulated input) as layers; returns the worker."""
        from napari.qt.threading import create_worker

        study = self.study_box.value
        if study is None or self._opener is not None:
            return None
        out = _chosen(self.out_edit)
        items = [(f"{study} · {r['model']} {r['dose']}", str(out / r["output"])) for r in self._rows
                 if r["study"] == study and r["status"] in ("ok", "skipped") and r.get("output")]
        self._say(f"Opening {len(items)} result(s) of {study} ...")
        worker = create_worker(_load_results, items, _start_thread=False,
                               _connect={"returned": self._add_layers,
                                         "errored": lambda exc: self._say(f"Cannot open {study}: {exc}"),
                                         "finished": self._opened})
        self._opener = worker
        self.open_button.enabled = False
        worker.start()
        return worker

    def _add_layers(self, loaded) -> None:
        for name, volume in loaded:
            widen_contrast_range(self._viewer.add_image(volume.hu, **volume.layer_kwargs(name=name)))
        self._say(f"Opened {len(loaded)} layer(s).")

    def _opened(self) -> None:
        self._opener = None
        self._refresh()


def _batch_job(inputs: str, out: str, cancel, options: dict):
    """Generator run in the worker thread: the batch's progress events; returns its table."""
    from ..batch import iter_batch

    return (yield from iter_batch([inputs], out, cancel=cancel, **options))


def _load_results(items: list[tuple[str, str]]):
    from ..io import load_ct

    return [(name, load_ct(path)) for name, path in items]
