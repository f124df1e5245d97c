"""Open studies from a PACS and send results back, by DICOMweb or DIMSE.

Plain Python, no Qt::

    import napari_jointrecon as nj
    server = nj.pacs.ServerSettings(url="http://localhost:8042/dicom-web")
    studies = nj.pacs.find(server, patient_id="Lung_Dx-A0002", date_from="2007-01-01")
    series = nj.pacs.list_series(server, studies[0].study_uid)
    ct = nj.pacs.retrieve(server, series[0])          # cached: a second open needs no server
    clean = nj.denoise(ct, model="unet", dose=0.25)
    nj.pacs.send(server, clean, model="unet", dose=0.25)   # a new derived series of the same study

``server`` is a :class:`ServerSettings`, a DICOMweb URL, or None for the saved settings. Every
failure raises :class:`PacsError` with a one-line message that holds no password or token.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Generator

from ..errors import CTReadError
from ..volume import CTVolume
from .cache import SeriesCache, default_cache_dir
from .records import (Cancelled, CancelToken, PacsError, Progress, SentSeries, SeriesEntry, StudyInfo,
                      StudyQuery, is_cancelled)
from .settings import ServerSettings, load_settings, redact, save_settings

__all__ = ["ServerSettings", "StudyQuery", "StudyInfo", "SeriesEntry", "Progress", "SentSeries", "PacsError",
           "Cancelled", "connect", "echo", "find", "list_series", "retrieve", "iter_retrieve", "send",
           "load_settings", "save_settings", "default_cache_dir", "SeriesCache", "BACKENDS"]

#: protocol -> (module, class): one line per protocol
BACKENDS = {"dicomweb": ("dicomweb", "DicomWebBackend"), "dimse": ("dimse", "DimseBackend")}


def _settings(server) -> ServerSettings:
    if server is None:
        return load_settings()
    if isinstance(server, ServerSettings):
        return server
    if isinstance(server, str):
        return ServerSettings(url=server)
    if isinstance(server, dict):
        return ServerSettings(**server)
    raise TypeError(f"server: a ServerSettings, a DICOMweb URL or None, not {type(server).__name__}")


def connect(server=None):
    """The backend object for ``server`` (its protocol's class in :data:`BACKENDS`)."""
    settings = _settings(server)
    module, name = BACKENDS[settings.protocol]
    try:
        cls = getattr(importlib.import_module(f".{module}", __name__), name)
    except ImportError as exc:
        package = {"dicomweb": "dicomweb-client", "dimse": "pynetdicom"}[settings.protocol]
        raise PacsError(f"{settings.protocol}: the package {package} is missing ({exc}); pip install {package}") from None
    return cls(settings)


def _guard(func, secret: str = ""):
    """Run ``func``; anything unexpected becomes a PacsError with a one-line message redacted of
    ``secret`` (the settings' own, which need not be this session's) and this session's secrets."""
    try:
        return func()
    except (PacsError, Cancelled):
        raise
    except Exception as exc:  # noqa: BLE001 - one clear line, never a credential
        raise PacsError(redact(f"{type(exc).__name__}: {exc}", secret)) from None


def _checked_settings(server) -> ServerSettings:
    return _guard(lambda: _settings(server))


def echo(server=None) -> str:
    """Check that the server answers (DICOMweb: a one-study search; DIMSE: C-ECHO); returns a line."""
    settings = _checked_settings(server)
    return _guard(lambda: connect(settings).echo(), settings.secret)


def find(server=None, *, patient_id: str = "", patient_name: str = "", date_from=None, date_to=None,
         accession: str = "", modality: str = "CT", limit: int = 100) -> list[StudyInfo]:
    """Search studies (empty terms are no constraint; ``patient_name`` matches as a prefix).

    Raises
    ------
    PacsError
        The server cannot be reached, refuses access, or the query is invalid.
    """
    try:
        query = StudyQuery(patient_id=patient_id, patient_name=patient_name, date_from=date_from,
                           date_to=date_to, accession=accession, modality=modality, limit=limit)
        query.dicom_filters()
    except ValueError as exc:
        raise PacsError(str(exc)) from None
    settings = _checked_settings(server)
    return _guard(lambda: connect(settings).find_studies(query), settings.secret)


def list_series(server, study: str | StudyInfo, *, modality: str = "") -> list[SeriesEntry]:
    """The series of a study, with description, slices, kernel and slice thickness."""
    study_uid = study.study_uid if isinstance(study, StudyInfo) else str(study)
    settings = _checked_settings(server)
    return _guard(lambda: connect(settings).find_series(study_uid, modality=modality), settings.secret)


def _uids(study, series) -> tuple[str, str]:
    if isinstance(study, SeriesEntry):
        return study.study_uid, study.series_uid
    if not series:
        raise PacsError("give the study and series UIDs (or a SeriesEntry from list_series)")
    return str(study), str(series)


def _open_cached(cache: SeriesCache, study_uid: str, series_uid: str) -> CTVolume:
    from ..io import load_ct

    try:
        return load_ct(cache.folder(study_uid, series_uid))
    except CTReadError as exc:
        cache.evict(study_uid, series_uid)
        raise PacsError(f"the retrieved series cannot be read (it was removed from the cache): {exc}") from None


def iter_retrieve(server, study: str | SeriesEntry, series: str | None = None, *, cache=None,
                  refresh: bool = False, cancel: CancelToken = None) -> Generator[Progress, None, CTVolume]:
    """Generator form of :func:`retrieve`: yields :class:`Progress` per instance, returns the volume.

    Closing it (or ``cancel``) stops the transfer and removes what had arrived.
    """
    study_uid, series_uid = _uids(study, series)
    store = SeriesCache(cache)
    if store.has(study_uid, series_uid) and not refresh:
        n = len(store.files(study_uid, series_uid))
        yield Progress(n, n, "cache")
        volume = _open_cached(store, study_uid, series_uid)
        note = store.note(study_uid, series_uid)
        when = f", retrieved {note['retrieved']}" if note.get("retrieved") else ""
        volume.notes.insert(0, f"opened from the PACS cache {store.folder(study_uid, series_uid)}{when}")
        return volume
    settings = _checked_settings(server)
    secret = settings.secret
    backend = _guard(lambda: connect(settings), secret)
    total = _guard(lambda: backend.count_instances(study_uid, series_uid), secret)
    yield Progress(0, total)
    partial = store.start(study_uid, series_uid)
    instances = None
    try:
        instances = backend.iter_instances(study_uid, series_uid)
        done = 0
        while True:
            if is_cancelled(cancel):
                raise Cancelled("retrieve cancelled: nothing was kept")
            ds = _guard(lambda: next(instances, None), secret)
            if ds is None:
                break
            done += 1
            partial.add(ds, index=done)
            yield Progress(done, max(total, done))
        if is_cancelled(cancel):
            raise Cancelled("retrieve cancelled: nothing was kept")
        skipped = list(partial.skipped)
        # not refreshing: a copy another retrieve completed meanwhile is kept (not swapped under its reader)
        _guard(lambda: partial.commit(settings.label(), replace=refresh), secret)
    except BaseException:
        if instances is not None:
            instances.close()
        partial.discard()
        raise
    yield Progress(done, done, "open")
    volume = _open_cached(store, study_uid, series_uid)
    volume.notes.insert(0, f"retrieved from {settings.label()}: {partial.count} instance(s) into the cache "
                           f"{store.folder(study_uid, series_uid)}")
    if skipped:
        volume.notes.insert(1, f"skipped {len(skipped)} instance(s) that are not CT images: "
                               + "; ".join(sorted(set(skipped))))
    return volume


def retrieve(server, study: str | SeriesEntry, series: str | None = None, *, cache=None, refresh: bool = False,
             progress: Callable[[Progress], None] | None = None, cancel: CancelToken = None) -> CTVolume:
    """Retrieve a series into the local cache and open it with the project's DICOM reader.

    Parameters
    ----------
    server : ServerSettings, str or None
        The PACS (a DICOMweb URL, or None for the saved settings).
    study, series : str
        StudyInstanceUID and SeriesInstanceUID, or a :class:`SeriesEntry` as ``study``.
    cache : path, optional
        The cache folder (default :func:`default_cache_dir`). A series already there is opened from
        it without contacting the server; its files are never modified.
    refresh : bool
        Retrieve again even when cached (the new copy replaces the old one once complete).
    progress : callable, optional
        Receives a :class:`Progress` after each instance.
    cancel : threading.Event or callable, optional
        Checked between instances; when set, :class:`Cancelled` is raised and nothing is kept.

    Returns
    -------
    CTVolume
        HU and geometry exactly as the same files read from disk; ``notes`` say where it came from.

    Raises
    ------
    PacsError
        Unreachable server, refused credentials or association, a series gone since the search,
        no CT image in it, or a corrupt instance (nothing is kept then).
    Cancelled
        ``cancel`` was set.
    """
    gen = iter_retrieve(server, study, series, cache=cache, refresh=refresh, cancel=cancel)
    try:
        while True:
            step = next(gen)
            if progress is not None:
                progress(step)
    except StopIteration as stop:
        return stop.value
    finally:
        gen.close()


def send(server, volume: CTVolume, *, source_series_uid: str | None = None, model: str | None = None,
         dose: float | None = None, description: str | None = None, series_number: int = 9001,
         progress: Callable[[Progress], None] | None = None) -> SentSeries:
    """Store a result as a new derived series of its source's study (STOW-RS or C-STORE).

    The series gets new Series and SOP Instance UIDs, ImageType ``DERIVED\\SECONDARY\\AXIAL``, a
    SeriesDescription and DerivationDescription naming ``model`` and ``dose``, and the source
    series in ReferencedSeriesSequence; nothing already in the PACS is replaced.

    Parameters
    ----------
    volume : CTVolume
        The result; its patient and study attributes (``meta``) come from the source series.
    source_series_uid : str, optional
        The series the result was computed from (default: ``volume.series_uid``, which a result of
        :func:`~napari_jointrecon.denoise` or :func:`~napari_jointrecon.simulate_low_dose` keeps).
    model, dose : optional
        Named in the descriptions (dose as a fraction or a percentage).
    """
    from .derived import derived_datasets

    source = source_series_uid or volume.series_uid
    datasets = derived_datasets(volume, source_series_uid=source, model=model, dose=dose,
                                description=description, series_number=series_number)
    study_uid = str(datasets[0].StudyInstanceUID)
    settings = _checked_settings(server)
    backend = _guard(lambda: connect(settings), settings.secret)
    total = len(datasets)

    def step(n: int) -> None:
        if progress is not None:
            progress(Progress(n, total, "send"))

    step(0)
    _guard(lambda: backend.store(datasets, study_uid, step), settings.secret)
    return SentSeries(study_uid=study_uid, series_uid=str(datasets[0].SeriesInstanceUID),
                      source_series_uid=source, n_instances=total,
                      description=str(datasets[0].SeriesDescription))
