"""Whole cohorts: batch denoising and evaluation on Dask (``dask.distributed``).

Each (study, model) is one task on a Dask cluster: by default a ``LocalCluster`` on this machine,
started and closed here, or an existing cluster (``scheduler="tcp://host:8786"`` or ``client=``).
A task reads its study, denoises it, writes the result and a small JSON record of its row beside
it, and returns only the row (a few hundred bytes: volumes never travel through the scheduler). The
client gathers rows as tasks finish and writes ``results.csv`` and ``summary.md``.

Layout of ``out``::

    out/<study>/<model>_<dose>.nii.gz     the result (a folder holding a DICOM series with fmt="dcm")
    out/<study>/<model>_<dose>.json       its row, written last: the task is finished
    out/<study>/simulated_<dose>.nii.gz   the simulated low dose (``simulate=``), and its record
    out/results.csv, out/summary.md, out/psnr_boxplot.png (when there is a reference)

``<dose>`` is the percentage (``25``), or ``auto`` when the image's noise decides.

* Resumable: a task whose result and record exist from a run with the same settings is not run
  again (status ``skipped``, with the metrics of its record). Results are written into a hidden
  ``.partial-*`` folder and renamed into place, so an interrupted run never leaves a half-written
  file under a result's name (the next run removes the partial folder).
* Fault-tolerant: a study that cannot be read, simulated or denoised is a ``failed`` row with the
  reader's (or model's) message, and the other tasks go on; Dask reruns the tasks of a worker that
  dies (and ``retries`` more times a task that raised on its own). Inputs are only read.
* Results are stored as whole HU (int16, as scanners store CT), and measured as stored.
* Metrics follow ``EVALUATION.md``: PSNR / SSIM / RMSE of each slice against the full-dose input
  (``simulate=`` with ``reference_from_input=True``), averaged over the study's slices; always the
  reference-free noise SD of the result (:func:`napari_jointrecon.noise.noise_sd`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import math
import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Generator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import CTReadError
from .volume import CTVolume

__all__ = ["Study", "BatchProgress", "batch", "iter_batch", "find_studies", "local_cluster_size",
           "dose_label", "output_path", "write_results", "volume_metrics", "denoise_task",
           "simulate_task", "parent_environ_kept", "COLUMNS", "METRIC_COLUMNS", "FORMATS", "INPUT_ROW"]

FORMATS = ("nii.gz", "dcm")
#: The model name of the rows that measure the simulated low-dose input itself (the baseline).
INPUT_ROW = "input"
METRIC_COLUMNS = ("psnr", "ssim", "rmse_hu", "rmse_body_hu", "psnr_abdomen", "ssim_abdomen")
COLUMNS = ("study", "source", "model", "dose", "device", "status", "error", "slices", "seconds",
           *METRIC_COLUMNS, "noise_sd_hu", "runtime", "conditioning", "task_seconds", "output")
_DONE = ("ok", "skipped")
_NAME = re.compile(r"[^A-Za-z0-9._-]+")
log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------------------------
# studies
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Study:
    """One series to process: a volume file, or one series of the DICOM files of a folder.

    Attributes
    ----------
    name : str
        Unique in the batch and safe as a folder name: ``out/<name>/``.
    source : str
        The file or folder it comes from (shown in the results).
    files : tuple of str
        The DICOM files of its folder (the reader picks the series among them); empty for a
        volume file.
    series : str or None
        The reader's series key within ``files``.
    problem : str
        Why it cannot be processed (the reader's message when its folder could not be scanned).
    """

    name: str
    source: str
    files: tuple[str, ...] = ()
    series: str | None = None
    problem: str = ""

    def load(self) -> CTVolume:
        from .io import load_ct

        if self.files:
            return load_ct(list(self.files), series=self.series)
        return load_ct(self.source)


def _safe(name: str) -> str:
    return _NAME.sub("_", name).strip("._-") or "study"


def _file_kind(path: Path) -> str:
    """``"volume"``, ``"dicom"`` or ``""`` (not CT: a README, a licence, a .raw data file)."""
    from .io import READERS
    from .io.dicom import is_dicom_file, read_dicom

    name = path.name.lower()
    for suffix in sorted(READERS, key=len, reverse=True):
        if name.endswith(suffix):
            return "dicom" if READERS[suffix] is read_dicom else "volume"
    return "dicom" if is_dicom_file(path) else ""


def _stem(path: Path) -> str:
    from .io import READERS

    name = path.name
    for suffix in sorted(READERS, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _dicom_studies(files: list[str], base: str, source: str) -> list[Study]:
    """One study per series the reader finds among ``files`` (a failed scan is one failed study)."""
    from .io import scan_series

    try:
        infos = scan_series(files)
    except Exception as exc:  # noqa: BLE001 - any reader failure is that study's failed row
        return [Study(base, source, problem=_message(exc))]
    if len(infos) == 1:
        return [Study(base, source, tuple(files), infos[0].key)]
    return [Study(f"{base}_{_safe(info.description or 'series')}", source, tuple(files), info.key)
            for info in infos]


def _unique(studies: list[Study]) -> list[Study]:
    seen: dict[str, int] = {}
    unique = []
    for study in studies:
        name = _safe(study.name)
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            name = f"{name}-{seen[name]}"
        unique.append(dataclasses.replace(study, name=name))
    return unique


def find_studies(inputs: Iterable[str | os.PathLike], *, exclude: Iterable[str | os.PathLike] = ()
                 ) -> list[Study]:
    """The studies in a mix of DICOM folders, volume files and folders of studies.

    A folder is searched recursively (hidden entries and ``exclude`` skipped): every volume file
    (NIfTI, MetaImage, NRRD, NumPy) is a study, and the DICOM files of each folder are split into
    series by the reader, each series one study. A file given by name is a study whatever its
    format (one the reader refuses becomes a failed row with its message).

    Raises
    ------
    ValueError
        When an input does not exist.
    """
    excluded = {Path(p).resolve() for p in exclude}
    studies: list[Study] = []
    for item in inputs:
        root = Path(item)
        if not root.exists():
            raise ValueError(f"{item}: no such file or folder")
        if not root.is_dir():
            if _file_kind(root) == "dicom":
                studies.extend(_dicom_studies([str(root)], _stem(root), str(root)))
            else:
                studies.append(Study(_stem(root), str(root)))
            continue
        for folder, dirs, names in os.walk(root):
            here = Path(folder)
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and (here / d).resolve() not in excluded)
            rel = here.relative_to(root).parts
            base = "_".join(rel) if rel else root.resolve().name
            dicom = []
            for name in sorted(names):
                path = here / name
                if name.startswith(".") or not path.is_file():
                    continue
                kind = _file_kind(path)
                if kind == "volume":
                    studies.append(Study("_".join((*rel, _stem(path))), str(path)))
                elif kind == "dicom":
                    dicom.append(str(path))
            if dicom:
                studies.extend(_dicom_studies(dicom, base, str(here)))
    return _unique(studies)


# ---------------------------------------------------------------------------------------------
# one task
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Settings:
    """What every task of a batch is told (small and picklable)."""

    out: str
    fmt: str
    device: str
    threads: int
    dose: float | None  # the scans' dose fraction; None: estimate from the image
    simulate: bool
    reference: bool
    seed: int

    def key(self) -> dict:
        """What must match for a finished result to be reused."""
        return {"simulate": self.simulate, "reference": self.reference, "format": self.fmt,
                "seed": self.seed if self.simulate else None}


def dose_label(dose: float | None) -> str:
    """``"25"`` for 0.25, ``"auto"`` when the dose is estimated (file names and the dose column)."""
    return "auto" if dose is None else f"{dose * 100:g}"


def _result_name(model: str, dose: float | None) -> str:
    return f"{'simulated' if model == INPUT_ROW else model}_{dose_label(dose)}"


def output_path(out: str | os.PathLike, study: str, model: str, dose: float | None, fmt: str = "nii.gz") -> Path:
    """Where a (study, model, dose) result lies: a ``.nii.gz`` file, or a DICOM series folder."""
    name = _result_name(model, dose)
    fmt = "nii.gz" if model == INPUT_ROW else fmt
    return Path(out) / study / (f"{name}.nii.gz" if fmt == "nii.gz" else name)


def _record_path(out, study: str, model: str, dose: float | None) -> Path:
    return Path(out) / study / f"{_result_name(model, dose)}.json"


def _message(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if isinstance(exc, (CTReadError, OSError, ValueError)) else f"{type(exc).__name__}: {text}"


def _new_row(study: Study, model: str, settings: _Settings) -> dict:
    row = dict.fromkeys(COLUMNS)
    dose = dose_label(settings.dose)
    row.update(study=study.name, source=study.source, model=model,
               dose=dose if dose == "auto" else f"{dose}%", status="failed", error="")
    return row


def _finished(settings: _Settings, study: Study, model: str) -> dict | None:
    """The row of a result finished by an earlier run with the same settings, else None."""
    record = _record_path(settings.out, study.name, model, settings.dose)
    if not (record.is_file() and output_path(settings.out, study.name, model, settings.dose, settings.fmt).exists()):
        return None
    try:
        saved = json.loads(record.read_text())
    except (OSError, ValueError):
        return None
    if saved.get("settings") != settings.key() or saved.get("row", {}).get("status") != "ok":
        return None
    row = {**dict.fromkeys(COLUMNS), **saved["row"], "source": study.source, "status": "skipped"}
    return {k: row[k] for k in COLUMNS}


def _set_threads(threads: int) -> None:
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


#: glibc's own ceilings for its dynamic thresholds on 64-bit machines (mmap 32 MiB, trim twice that),
#: and its default mmap threshold, which stays fixed once any threshold is set.
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 64 << 20
DEFAULT_MMAP_THRESHOLD = 128 << 10
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # <malloc.h>


@functools.cache
def _glibc():
    """The C library when it is glibc and Dask's nanny set ``MALLOC_TRIM_THRESHOLD_``, else None."""
    import ctypes
    import platform

    if not os.environ.get("MALLOC_TRIM_THRESHOLD_", "").isdigit() or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


_networks_running = 0
_networks_lock = threading.Lock()


@contextlib.contextmanager
def network_heap() -> Generator[bool, None, None]:
    """While a network runs in this process, serve its activations from the heap; yields whether
    anything was changed.

    Dask's nanny starts its workers with ``MALLOC_TRIM_THRESHOLD_=65536``
    (``distributed.nanny.pre-spawn-environ``), so that freed memory goes back to the system at once.
    Any such setting turns glibc's dynamic mmap threshold off: every block above 128 KiB is mapped
    and unmapped afresh, and each of the network's activations pays its page faults again. Inside
    this block the two thresholds are the ceilings the dynamic rule would reach, which gives the
    plain process's speed back (``benchmarks/bench_batch.py``: the tasks' denoising time). When the
    last network running in the process ends, the nanny's setting is put back and the heap's free pages are returned
    (``malloc_trim``): reading, simulating and writing keep the nanny's thrift. Only where that
    variable is set and the C library is glibc.
    """
    global _networks_running
    libc = _glibc()
    if libc is None:
        yield False
        return
    with _networks_lock:
        if _networks_running == 0:
            libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
            libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
        _networks_running += 1
    try:
        yield True
    finally:
        with _networks_lock:
            _networks_running -= 1
            if _networks_running == 0:
                libc.mallopt(_M_MMAP_THRESHOLD, DEFAULT_MMAP_THRESHOLD)
                libc.mallopt(_M_TRIM_THRESHOLD, int(os.environ["MALLOC_TRIM_THRESHOLD_"]))
                libc.malloc_trim(0)


#: Compression level of the ``.nii.gz`` outputs: the fastest, gzipped with ISA-L
#: (:func:`napari_jointrecon.io.write.gzip_file`; ``benchmarks/bench_batch.py`` shows the tasks' time
#: beside denoising).
BATCH_COMPRESSION = 1


def _write_atomic(volume: CTVolume, final: Path, fmt: str, model: str | None, dose: float | None) -> None:
    """Write into a hidden partial folder beside ``final``, then rename into place."""
    from .io.write import write_dicom_series, write_image

    partial = final.parent / f".partial-{final.name}"
    shutil.rmtree(partial, ignore_errors=True)  # left by an interrupted run
    partial.mkdir(parents=True)
    try:
        target = partial / final.name
        if fmt == "dcm":
            write_dicom_series(volume, target, model=model, dose=dose)
        else:
            write_image(volume, target, compression_level=BATCH_COMPRESSION)
        if final.is_dir():  # a series an earlier run wrote with other settings
            shutil.rmtree(final)
        os.replace(target, final)
    finally:
        shutil.rmtree(partial, ignore_errors=True)


def _save_record(settings: _Settings, study: Study, model: str, row: dict) -> None:
    record = _record_path(settings.out, study.name, model, settings.dose)
    tmp = record.with_name(f".{record.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(json.dumps({"settings": settings.key(), "row": row}, indent=1))
    os.replace(tmp, record)


def volume_metrics(test_hu: np.ndarray, ref_hu: np.ndarray) -> dict[str, float]:
    """The protocol's reference metrics (:func:`napari_jointrecon.metrics.image_metrics`) of each
    slice, averaged over the slices (RMSE in the body: over the slices that have a body)."""
    from .metrics import image_metrics

    per_slice = [image_metrics(t, r) for t, r in zip(test_hu, ref_hu, strict=True)]
    means = {}
    for key in METRIC_COLUMNS:
        values = np.array([m[key] for m in per_slice], dtype=float)
        values = values[~np.isnan(values)]
        means[key] = float(values.mean()) if values.size else None
    return means


def _noise(hu: np.ndarray) -> float | None:
    from .noise import NoTissueError, noise_sd

    try:
        return round(noise_sd(hu), 3)
    except NoTissueError:
        return None


def _as_stored(volume: CTVolume) -> CTVolume:
    """Whole HU, as written (int16) and measured; in place (the volume is a fresh result)."""
    np.rint(volume.hu, out=volume.hu)
    return volume


def _finish(row: dict, settings: _Settings, study: Study, model: str, result: CTVolume,
            reference: CTVolume | None, started: float) -> dict:
    final = output_path(settings.out, study.name, model, settings.dose, settings.fmt)
    _write_atomic(result, final, "nii.gz" if model == INPUT_ROW else settings.fmt,
                  None if model == INPUT_ROW else model, settings.dose)
    if reference is not None:
        row.update(volume_metrics(result.hu, reference.hu))
    row.update(noise_sd_hu=_noise(result.hu), slices=int(result.shape[0]), status="ok",
               output=str(final.relative_to(settings.out)),
               task_seconds=round(time.perf_counter() - started, 3))
    _save_record(settings, study, model, row)
    return row


def _start(settings: _Settings, study: Study, model: str) -> None:
    """Forget an earlier record of this task (its result is about to be replaced); set its torch threads."""
    _record_path(settings.out, study.name, model, settings.dose).unlink(missing_ok=True)
    _set_threads(settings.threads)


def simulate_task(study: Study, settings: _Settings) -> dict:
    """Simulate the low dose of a full-dose study (seeded), write it and measure it: the row of
    the ``input`` baseline. Never raises: a failure is a ``failed`` row with the message."""
    from .dose import simulate_low_dose
    from .inference import select_device

    started = time.perf_counter()
    row = _new_row(study, INPUT_ROW, settings)
    try:
        _start(settings, study, INPUT_ROW)
        full = study.load()
        device = "cpu" if settings.device == "auto" else select_device(settings.device)
        t0 = time.perf_counter()
        low = simulate_low_dose(full, settings.dose, seed=settings.seed, device=device)
        row.update(seconds=round(time.perf_counter() - t0, 3), device=device, runtime="simulation",
                   conditioning=f"{dose_label(settings.dose)}% dose simulated, seed {settings.seed}")
        return _finish(row, settings, study, INPUT_ROW, _as_stored(low),
                       full if settings.reference else None, started)
    except Exception as exc:  # noqa: BLE001 - the study's failed row, the batch goes on
        row.update(status="failed", error=_message(exc), task_seconds=round(time.perf_counter() - started, 3))
        return row


def denoise_task(study: Study, model: str, settings: _Settings, simulated: dict | None = None) -> dict:
    """Denoise one study with one model, write the result and measure it; returns its row.

    With ``settings.simulate`` the input is the simulated low dose (``simulated``: the row of
    :func:`simulate_task`, or of its earlier run). Never raises: a failure is a ``failed`` row.
    """
    from .inference import denoise
    from .io import load_ct

    started = time.perf_counter()
    row = _new_row(study, model, settings)
    try:
        _start(settings, study, model)
        reference = None
        if settings.simulate:
            if simulated is None or simulated.get("status") not in _DONE:
                raise CTReadError(f"no simulated low dose: {(simulated or {}).get('error') or 'not made'}")
            low = load_ct(Path(settings.out) / simulated["output"])
            if settings.reference or settings.fmt == "dcm":
                full = study.load()  # the reference, and the patient and study attributes for DICOM
                reference = full if settings.reference else None
                low = dataclasses.replace(full, hu=low.hu, notes=[])
        else:
            low = study.load()
        seen = {}

        def progress(p):
            seen.update(device=p.device, runtime=p.runtime, conditioning=p.conditioning)

        t0 = time.perf_counter()
        with network_heap():
            result = denoise(low, model=model, dose="estimate" if settings.dose is None else settings.dose,
                             device=settings.device, progress=progress)
        del low  # a worker runs tasks side by side: hold no more volumes than needed
        cond = seen.get("conditioning")
        row.update(seconds=round(time.perf_counter() - t0, 3), device=seen.get("device"),
                   runtime=seen.get("runtime"), conditioning=cond.describe() if cond else None)
        return _finish(row, settings, study, model, _as_stored(result), reference, started)
    except Exception as exc:  # noqa: BLE001 - the study's failed row, the batch goes on
        row.update(status="failed", error=_message(exc), task_seconds=round(time.perf_counter() - started, 3))
        return row


# ---------------------------------------------------------------------------------------------
# the cluster
# ---------------------------------------------------------------------------------------------
def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def local_cluster_size(tasks: int, workers: int | None = None, cores: int | None = None
                       ) -> tuple[int, int, int]:
    """``(worker processes, threads per worker, torch threads per task)`` of the LocalCluster.

    One task per core, side by side, each with one torch thread: reading, writing and measuring
    one study then overlap denoising another. Two task threads per worker process by default:
    they share the imports, the exported network and its memory (on 2 cores, 1 process x 2
    threads was 7-10 % faster than 2 processes x 1 thread on a loaded machine and within 3 % on
    a quieter one, with half the memory, and 17-20 % faster than 1 task at a time with 2 torch
    threads: ``benchmarks/bench_batch.py``), and more threads per process would contend for the
    GIL in the Python parts. Never more task threads than tasks: the cores left over go to torch.
    """
    cores = cores or _cores()
    slots = max(1, min(cores, tasks))
    n = max(1, workers) if workers else math.ceil(slots / 2)
    per_worker = max(1, math.ceil(slots / n))
    return n, per_worker, max(1, cores // (n * per_worker))


def _check_workers(client) -> str:
    """Refuse workers without the package; a note when none is connected yet or versions differ."""
    from importlib.metadata import version

    found = client.run(version, "napari-jointrecon", on_error="return")
    missing = {addr: r for addr, r in found.items() if isinstance(r, BaseException)}
    if missing:
        raise ValueError(f"the Dask worker(s) {', '.join(sorted(missing))} cannot import napari-jointrecon: "
                         "install the package on every worker (pip install napari-jointrecon)")
    where = f"Dask cluster at {client.scheduler.address}"
    if not found:
        return f"{where}: no worker is connected yet, the tasks wait for one"
    mine = version("napari-jointrecon")
    other = sorted({v for v in found.values() if v != mine})
    return f"{where}: {len(found)} worker(s)" + (
        f"; they run napari-jointrecon {', '.join(other)}, this client {mine}" if other else "")


@contextlib.contextmanager
def parent_environ_kept() -> Generator[None, None, None]:
    """Give this process's environment back as it was, for the variables a Dask nanny sets here.

    Before it spawns a worker, a nanny writes ``distributed.nanny.pre-spawn-environ``
    (``OMP_NUM_THREADS=1``, ``MKL_NUM_THREADS=1``, ``MALLOC_TRIM_THRESHOLD_``...) into the *parent's*
    ``os.environ`` and leaves it there. A viewer or script that once ran a LocalCluster would then
    start every later process on one thread (and torch, imported after it, too).
    """
    import dask

    keys = set(dask.config.get("distributed.nanny.pre-spawn-environ", {}) or {}) | {"PYTHONHASHSEED"}
    before = {k: os.environ.get(k) for k in keys}
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@contextlib.contextmanager
def _connect(client, scheduler: str | None, workers: int | None, tasks: int, threads: int | None):
    """``(client, torch threads per task, note)``: the given client, a client of the cluster at
    ``scheduler``, or a new LocalCluster (closed on exit)."""
    from distributed import Client, LocalCluster

    if client is not None:
        yield client, threads or 1, _check_workers(client)
        return
    if scheduler:
        try:
            own = Client(scheduler, set_as_default=False)  # timeout: distributed.comm.timeouts.connect
        except (OSError, TimeoutError) as exc:
            raise ValueError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
        try:
            yield own, threads or 1, _check_workers(own)
        finally:
            own.close()
        return
    n, per_worker, per_task = local_cluster_size(tasks, workers)
    # kept while the workers start, and again at the end (a nanny that restarts a worker sets it anew)
    with parent_environ_kept():
        with parent_environ_kept():
            cluster = LocalCluster(n_workers=n, threads_per_worker=per_worker, processes=True,
                                   dashboard_address=":0", silence_logs=logging.ERROR)
        try:
            own = Client(cluster, set_as_default=False)
            try:
                yield own, threads or per_task, (f"local cluster: {n} worker process(es) x {per_worker} "
                                                 f"thread(s), {threads or per_task} torch thread(s) per task")
            finally:
                own.close()
        finally:
            cluster.close()


def _dashboard(client) -> str:
    """The dashboard's address, when the scheduler serves one (its web server runs without bokeh,
    but has no dashboard then)."""
    try:
        has = client.run_on_scheduler(lambda: __import__("importlib.util").util.find_spec("bokeh") is not None)
        return client.dashboard_link if has else ""
    except Exception:  # noqa: BLE001 - only a link to show
        return ""


# ---------------------------------------------------------------------------------------------
# the batch
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BatchProgress:
    """What :func:`iter_batch` yields: first the plan (``row`` None), then one per finished row.

    ``done`` rows of ``total``; ``dashboard`` is the Dask dashboard's address ('' when there is
    none), ``message`` what to tell the user about the cluster.
    """

    done: int
    total: int
    row: dict | None = None
    dashboard: str = ""
    message: str = ""


def _fraction(value, what: str) -> float | None:
    if value is None or (isinstance(value, str) and value == "estimate"):
        return None
    if isinstance(value, str) or not (math.isfinite(float(value)) and 0.0 < float(value) <= 1.0):
        raise ValueError(f"{what} must be a fraction in (0, 1] (0.25 for 25 %), got {value!r}")
    return float(value)


def _row_of(future, study: Study, model: str, settings: _Settings) -> dict:
    """The task's row, or a failed row when Dask gave up on it (its worker died every time)."""
    if future.status == "finished":
        return future.result()
    row = _new_row(study, model, settings)
    if future.status == "cancelled":
        row.update(status="cancelled", error="cancelled")
    else:
        row.update(error=_message(future.exception()))
    return row


def _table(rows: list[dict], models: Sequence[str]):
    import pandas as pd

    order = {m: k for k, m in enumerate([INPUT_ROW, *models])}
    rows = sorted(rows, key=lambda r: (r["study"], order.get(r["model"], len(order))))
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    numeric = ["slices", "seconds", *METRIC_COLUMNS, "noise_sd_hu", "task_seconds"]
    table[numeric] = table[numeric].apply(pd.to_numeric, errors="coerce")
    table["slices"] = table["slices"].astype("Int64")
    return table


def iter_batch(
    inputs: Iterable[str | os.PathLike],
    out: str | os.PathLike,
    *,
    models: Sequence[str] = ("unet",),
    dose: float | str | None = None,
    simulate: float | None = None,
    reference_from_input: bool = False,
    fmt: str = "nii.gz",
    device: str = "auto",
    client=None,
    scheduler: str | None = None,
    workers: int | None = None,
    threads: int | None = None,
    retries: int = 2,
    seed: int = 0,
    cancel: Callable[[], bool] | None = None,
) -> Generator[BatchProgress, None, object]:
    """:func:`batch` as a generator: yields :class:`BatchProgress` (the plan, then each finished
    row) and returns the table. ``cancel`` is polled while tasks run: when it returns True the
    queued and running tasks are cancelled, their rows say so, and the table is returned; closing
    the generator cancels them too. Both still write ``results.csv`` and ``summary.md``."""
    from distributed import as_completed

    from .models.registry import get_spec

    models = list(dict.fromkeys(models))
    if not models:
        raise ValueError("no model given")
    for model in models:
        get_spec(model)  # an unknown name is a KeyError before any work
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; one of {', '.join(FORMATS)}")
    if simulate is not None and dose not in (None, "estimate"):
        raise ValueError("give either the scans' dose or a dose to simulate, not both")
    if reference_from_input and simulate is None:
        raise ValueError("reference_from_input needs simulate: the full-dose input is the reference "
                         "only for a low dose simulated from it")
    if workers is not None and (client is not None or scheduler):
        raise ValueError("workers sizes the local cluster; an existing cluster has its own workers")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    fraction = _fraction(simulate if simulate is not None else dose, "simulate" if simulate is not None else "dose")
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    studies = find_studies(inputs, exclude=[out])
    if not studies:
        raise ValueError(f"no CT found in {', '.join(map(str, inputs))}")
    settings = _Settings(str(out), fmt, device, 1, fraction, simulate is not None, reference_from_input, seed)

    rows: list[dict] = []
    todo: list[tuple[Study, list[str], dict | None]] = []  # study, models to run, simulated row
    for study in studies:
        needed = []
        simulated = _finished(settings, study, INPUT_ROW) if settings.simulate else None
        if simulated is not None:
            rows.append(simulated)
        for model in models:
            done = _finished(settings, study, model)
            if done is not None:
                rows.append(done)
            elif study.problem:
                rows.append({**_new_row(study, model, settings), "error": study.problem})
            else:
                needed.append(model)
        if needed or (settings.simulate and simulated is None and not study.problem):
            todo.append((study, needed, simulated))
    tasks = sum(len(m) + (settings.simulate and s is None) for _, m, s in todo)
    total = len(rows) + tasks
    if not tasks:
        yield BatchProgress(len(rows), total, message="nothing to run: every result exists")
        for row in rows:
            yield BatchProgress(len(rows), total, row)
        table = _table(rows, models)
        write_results(table, out, models=models)
        return table

    futures: dict = {}  # future -> (study, model)
    with _connect(client, scheduler, workers, tasks, threads) as (cl, per_task, note):
        settings = dataclasses.replace(settings, threads=per_task)
        run = uuid.uuid4().hex[:8]
        pending: set = set()
        try:
            for study, needed, simulated in todo:
                if settings.simulate and simulated is None:
                    simulated = cl.submit(simulate_task, study, settings, retries=retries,
                                          key=f"simulate-{study.name}-{run}")
                    futures[simulated] = (study, INPUT_ROW)
                for model in needed:
                    future = cl.submit(denoise_task, study, model, settings, simulated, retries=retries,
                                       key=f"{model}-{study.name}-{run}")
                    futures[future] = (study, model)
            pending = set(futures)
            yield BatchProgress(len(rows), total, dashboard=_dashboard(cl), message=note)
            for row in list(rows):
                yield BatchProgress(len(rows), total, row)
            ready = as_completed(list(futures), loop=cl.loop)
            while not ready.is_empty() and not (cancel is not None and cancel()):
                finished = ready.next_batch(block=False)
                if not finished:
                    time.sleep(0.1)
                    continue
                for future in finished:
                    pending.discard(future)
                    row = _row_of(future, *futures[future], settings)
                    rows.append(row)
                    yield BatchProgress(len(rows), total, row)
        finally:  # cancelled, interrupted or failed: stop the rest, and keep what is done
            if pending:
                cl.cancel(list(pending))
            for future in pending:
                study, model = futures[future]
                rows.append({**_new_row(study, model, settings), "status": "cancelled", "error": "cancelled"})
            table = _table(rows, models)
            write_results(table, out, models=models)
    return table


def batch(
    inputs: Iterable[str | os.PathLike] | str | os.PathLike,
    out: str | os.PathLike,
    *,
    models: Sequence[str] | str = ("unet",),
    dose: float | str | None = None,
    simulate: float | None = None,
    reference_from_input: bool = False,
    fmt: str = "nii.gz",
    device: str = "auto",
    client=None,
    scheduler: str | None = None,
    workers: int | None = None,
    threads: int | None = None,
    retries: int = 2,
    seed: int = 0,
    progress: Callable[[BatchProgress], None] | None = None,
):
    """Denoise (and measure) every study of a cohort with every model, on Dask.

    Parameters
    ----------
    inputs : path or paths
        DICOM folders, volume files and folders of studies (:func:`find_studies`): every series
        found is one study.
    out : path
        The output folder (``out/<study>/<model>_<dose>.nii.gz``, ``results.csv``, ``summary.md``).
    models : str or sequence of str
        Names from :func:`napari_jointrecon.list_models`.
    dose : float or "estimate"
        The dose fraction the studies were taken at (0.25 for 25 %); by default (None or
        "estimate") each image's noise decides.
    simulate : float, optional
        Simulate this dose fraction from each (full-dose) study first (seeded: ``seed``), and
        denoise that.
    reference_from_input : bool
        With ``simulate``: measure PSNR / SSIM / RMSE against the full-dose study.
    fmt : {"nii.gz", "dcm"}
        Results as NIfTI files, or as new DICOM series (folders).
    device : {"auto", "cuda", "mps", "cpu"}
        Where each task runs its model (:func:`napari_jointrecon.select_device`, on the worker).
    client : distributed.Client, optional
        A client of an existing cluster (left open).
    scheduler : str, optional
        The address of an existing cluster's scheduler (``tcp://host:8786``). Without it and
        without ``client``, a LocalCluster on this machine (:func:`local_cluster_size`).
    workers : int, optional
        The LocalCluster's worker processes (:func:`local_cluster_size`).
    threads : int, optional
        torch threads per task (default: the LocalCluster's cores per task thread; 1 on an
        existing cluster, where each worker thread is a core).
    retries : int
        Further tries of a task that raised (the tasks catch the errors of reading and
        denoising; Dask reruns the tasks of a worker that died in any case).
    progress : callable, optional
        Called with each :class:`BatchProgress`.

    Returns
    -------
    pandas.DataFrame
        One row per study and model (and per study an ``input`` row with ``simulate``), the
        columns of :data:`COLUMNS`; also written to ``out/results.csv``.

    Raises
    ------
    ValueError
        For a missing input, a dose outside (0, 1], conflicting options, or a scheduler that
        cannot be reached. KeyError for an unknown model.
    """
    if isinstance(inputs, (str, os.PathLike)):
        inputs = [inputs]
    if isinstance(models, str):
        models = [models]
    gen = iter_batch(list(inputs), out, models=models, dose=dose, simulate=simulate,
                     reference_from_input=reference_from_input, fmt=fmt, device=device, client=client,
                     scheduler=scheduler, workers=workers, threads=threads, retries=retries, seed=seed)
    try:
        while True:
            step = next(gen)
            if progress is not None:
                progress(step)
    except StopIteration as stop:
        return stop.value
    finally:
        gen.close()


# ---------------------------------------------------------------------------------------------
# results.csv and summary.md
# ---------------------------------------------------------------------------------------------
def _replace_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _mean_std(values) -> str:
    values = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if not values.size:
        return ""
    if values.size == 1:
        return f"{values[0]:.2f}"
    return f"{values.mean():.2f} ± {values.std(ddof=1):.2f}"


def _boxplot(table, models: list[str], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    data = {m: table.loc[table.model == m, "psnr"].dropna().to_numpy() for m in models}
    data = {m: v for m, v in data.items() if v.size}
    fig = Figure(figsize=(1.4 + 1.1 * len(data), 3.6), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.boxplot(list(data.values()), showmeans=True, showfliers=False)
    for k, values in enumerate(data.values(), start=1):  # every study, spread sideways to be seen
        ax.plot(k + np.linspace(-0.12, 0.12, values.size), values, "o", ms=3.5, alpha=0.6, color="tab:blue")
    ax.set_xticks(range(1, len(data) + 1), list(data))
    ax.set_ylabel("PSNR (dB), HU [-1000, 1000] → [0, 1]")
    doses = ", ".join(sorted(set(table.dose.astype(str))))
    ax.set_title(f"PSNR per study against the full dose ({doses} dose)", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.png")
    fig.savefig(tmp)
    os.replace(tmp, path)


def write_results(table, out: str | os.PathLike, *, models: Sequence[str] | None = None) -> list[Path]:
    """Write ``results.csv``, ``summary.md`` (mean ± std per model over its finished studies) and,
    when there is a reference, ``psnr_boxplot.png`` into ``out``; returns the files written."""
    out = Path(out)
    order = [m for m in dict.fromkeys([INPUT_ROW, *(models or []), *table.model]) if (table.model == m).any()]
    csv = out / "results.csv"
    _replace_text(csv, table.to_csv(index=False, float_format="%.4f"))
    written = [csv]
    done = table[table.status.isin(_DONE)]
    measured = done.psnr.notna().any()
    counts = table.status.value_counts()
    lines = ["# Batch results", "",
             f"{len(table)} rows ({', '.join(f'{counts[s]} {s}' for s in counts.index)}) over "
             f"{table.study.nunique()} studies; every row in `results.csv`.", "",
             "Mean ± std over studies (sample std)"
             + ("; each study's PSNR, SSIM and RMSE against its full-dose input are the means over "
                "its slices (EVALUATION.md: PSNR and SSIM on HU [-1000, 1000] mapped to [0, 1], RMSE "
                "in HU on the whole image)" if measured else "")
             + "; noise SD: reference-free, in flat soft tissue (HU); seconds: denoising (or "
               "simulating) one study.", ""]
    head = ["model", "studies", "slices"] + (["PSNR (dB)", "SSIM", "RMSE (HU)"] if measured else []) \
        + ["noise SD (HU)", "seconds per study", "failed"]
    lines += ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for model in order:
        rows = done[done.model == model]
        cells = [model, str(len(rows)), str(int(rows.slices.sum())) if len(rows) else "0"]
        if measured:
            cells += [_mean_std(rows.psnr), _mean_std(rows.ssim), _mean_std(rows.rmse_hu)]
        cells += [_mean_std(rows.noise_sd_hu), _mean_std(rows.seconds),
                  str(int(((table.model == model) & (table.status == "failed")).sum()))]
        lines.append("| " + " | ".join(cells) + " |")
    if measured:
        plot = out / "psnr_boxplot.png"
        _boxplot(done, order, plot)
        written.append(plot)
        lines += ["", f"![PSNR per model]({plot.name})"]
    failed = table[table.status == "failed"]
    if len(failed):
        lines += ["", "## Failed", ""]
        lines += [f"- {r.study} / {r.model}: {r.error}" for r in failed.itertuples()]
    summary = out / "summary.md"
    _replace_text(summary, "\n".join(lines) + "\n")
    written.append(summary)
    return written
