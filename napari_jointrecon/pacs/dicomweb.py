"""DICOMweb with ``dicomweb-client``: QIDO-RS searches, WADO-RS retrieves, STOW-RS stores.

Every HTTP call has a connect timeout (the settings' ``timeout``) and a read timeout, and no retry,
so that an unreachable server or refused credentials give one clear message within seconds.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from .records import PacsError, SeriesEntry, StudyInfo, StudyQuery
from .settings import ServerSettings, redact

__all__ = ["DicomWebBackend"]

_STUDY_FIELDS = ("StudyInstanceUID", "PatientID", "PatientName", "StudyDate", "AccessionNumber",
                 "StudyDescription", "ModalitiesInStudy", "NumberOfStudyRelatedSeries",
                 "NumberOfStudyRelatedInstances")
_SERIES_FIELDS = ("SeriesInstanceUID", "SeriesDescription", "Modality", "SeriesNumber",
                  "NumberOfSeriesRelatedInstances", "ConvolutionKernel", "SliceThickness")
#: how much longer than a connection the server may stay silent in an answer (at least 10 s)
_READ_FACTOR = 4.0
#: instances per STOW-RS request (progress between requests, bounded request size)
_STOW_BATCH = 16


def _literal_wildcards_adapter():
    """A requests adapter that sends QIDO wildcards ``*`` and ``?`` literally in the query string.

    dicomweb-client percent-encodes them (``%2A``, ``%3F``), which Orthanc 1.10 does not decode, so
    a patient-name prefix search found nothing there; RFC 3986 allows both characters in a query,
    so every server reads the literal form the same way.
    """
    from requests.adapters import HTTPAdapter

    class LiteralWildcards(HTTPAdapter):
        def send(self, request, *args, **kwargs):
            base, mark, query = request.url.partition("?")
            if mark:
                request.url = base + "?" + query.replace("%2A", "*").replace("%3F", "?")
            return super().send(request, *args, **kwargs)

    return LiteralWildcards()


def _dataset(item: dict):
    import pydicom

    return pydicom.Dataset.from_json(item)


class DicomWebBackend:
    """One DICOMweb server (``settings.protocol == "dicomweb"``)."""

    def __init__(self, settings: ServerSettings):
        import requests
        from dicomweb_client.api import DICOMwebClient

        problem = settings.problem()
        if problem:
            raise PacsError(problem)
        self.settings = settings
        session = requests.Session()
        adapter = _literal_wildcards_adapter()
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        if settings.auth == "basic":
            session.auth = (settings.username, settings.secret)
        elif settings.auth == "bearer":
            session.headers["Authorization"] = f"Bearer {settings.secret}"
        self._read_timeout = max(settings.timeout * _READ_FACTOR, 10.0)
        try:
            self.client = DICOMwebClient(settings.url, session=session,
                                         timeout=(settings.timeout, self._read_timeout))
        except ValueError as exc:
            raise PacsError(f"DICOMweb URL {settings.url!r}: {exc}") from None
        # retries with exponential back-off would turn a refusal into a 15 s wait
        self.client.set_http_retry_params(retry=False)

    # errors ----------------------------------------------------------------------------------
    @contextmanager
    def _errors(self, what: str, *, missing: str = ""):
        """Turn requests' and the client's exceptions into a one-line PacsError."""
        import requests

        where = self.settings.url
        try:
            yield
        except PacsError:
            raise
        except requests.HTTPError as exc:
            code = exc.response.status_code if exc.response is not None else 0
            if code in (401, 403):
                how = {"basic": "user name and password", "bearer": "token"}.get(self.settings.auth)
                hint = f"check the {how}" if how else "this server needs credentials: set basic auth or a token"
                raise PacsError(f"{what}: {where} refused access (HTTP {code}): {hint}") from None
            if code == 404 and missing:
                raise PacsError(f"{what}: {missing}") from None
            reason = exc.response.reason if exc.response is not None else ""
            if what == "retrieve" and code >= 400:
                raise PacsError(f"retrieve: {where} could not send the series (HTTP {code} {reason}): a stored "
                                "instance may be damaged; nothing was kept") from None
            raise PacsError(redact(f"{what}: {where} answered HTTP {code} {reason}".strip(),
                                   self.settings.secret)) from None
        except requests.ConnectTimeout:
            raise PacsError(f"{what}: cannot connect to {where} within {self.settings.timeout:g} s "
                            "(server down or unreachable?)") from None
        except requests.Timeout:
            raise PacsError(f"{what}: {where} accepted the connection but sent no answer within "
                            f"{self._read_timeout:g} s (server busy or hung?)") from None
        except requests.ConnectionError as exc:
            text = str(exc)
            cause = "connection refused" if "refused" in text.lower() else "cannot connect"
            raise PacsError(f"{what}: {cause} at {where}: is the server running and the URL right?") from None
        except requests.RequestException as exc:
            raise PacsError(redact(f"{what}: {type(exc).__name__}: {exc}", self.settings.secret)) from None

    # queries ---------------------------------------------------------------------------------
    def echo(self) -> str:
        """A one-study QIDO-RS search: the server answers and accepts the credentials."""
        with self._errors("DICOMweb echo"):
            self.client.search_for_studies(limit=1, fields=["StudyInstanceUID"])
        return f"{self.settings.label()} answers QIDO-RS"

    def find_studies(self, query: StudyQuery) -> list[StudyInfo]:
        filters = query.dicom_filters()
        with self._errors("study search"):
            items = self.client.search_for_studies(search_filters=filters, fields=list(_STUDY_FIELDS),
                                                   limit=query.limit or None)
        return [StudyInfo.from_dataset(_dataset(i)) for i in items]

    def find_series(self, study_uid: str, *, modality: str = "") -> list[SeriesEntry]:
        filters = {"Modality": modality} if modality else None
        with self._errors("series search", missing=f"study {study_uid} is not on the server"):
            items = self.client.search_for_series(study_uid, fields=list(_SERIES_FIELDS), search_filters=filters)
        entries = [SeriesEntry.from_dataset(_dataset(i), study_uid) for i in items]
        return [self._with_image_fields(e) if not (e.kernel and e.thickness_mm) else e for e in entries]

    def _with_image_fields(self, entry: SeriesEntry) -> SeriesEntry:
        """Kernel and thickness are instance attributes that not every server returns for a series:
        ask for one instance."""
        from dataclasses import replace

        with self._errors("series search"):
            items = self.client.search_for_instances(entry.study_uid, entry.series_uid, limit=1,
                                                     fields=["ConvolutionKernel", "SliceThickness"])
        if not items:
            return entry
        one = SeriesEntry.from_dataset(_dataset(items[0]), entry.study_uid)
        return replace(entry, kernel=entry.kernel or one.kernel, thickness_mm=entry.thickness_mm or one.thickness_mm)

    def count_instances(self, study_uid: str, series_uid: str) -> int:
        """How many instances the series has now (a PacsError when it is gone): the series' count
        when the server gives it, else a listing of its instances."""
        gone = (f"series {series_uid} is not on the server (any more): was it deleted since the search? "
                "Search again")
        with self._errors("retrieve", missing=gone):
            found = self.client.search_for_series(study_uid, search_filters={"SeriesInstanceUID": series_uid},
                                                  fields=["NumberOfSeriesRelatedInstances"])
        if not found:
            raise PacsError(f"retrieve: {gone}")
        count = SeriesEntry.from_dataset(_dataset(found[0]), study_uid).n_instances
        if count:
            return count
        with self._errors("retrieve", missing=gone):
            items = self.client.search_for_instances(study_uid, series_uid, fields=["SOPInstanceUID"],
                                                     get_remaining=True)
        if not items:
            raise PacsError(f"retrieve: {gone}")
        return len(items)

    # retrieve and store ----------------------------------------------------------------------
    def iter_instances(self, study_uid: str, series_uid: str) -> Iterator[object]:
        """The series' instances as pydicom Datasets, streamed (WADO-RS, stored transfer syntax).

        A part that is not a readable DICOM file raises PacsError naming its position.
        """
        import requests

        gone = f"series {series_uid} is not on the server (any more): search again"
        with self._errors("retrieve", missing=gone):
            stream = self.client.iter_series(study_uid, series_uid, media_types=(("application/dicom", "*"),))
        index = 0
        try:
            while True:
                with self._errors("retrieve", missing=gone):
                    try:
                        ds = next(stream)
                    except StopIteration:
                        return
                    except (requests.RequestException, PacsError):
                        raise
                    except Exception as exc:  # noqa: BLE001 - pydicom failing on a part: a corrupt file
                        raise PacsError(f"instance {index + 1} of series {series_uid} is not a readable "
                                        f"DICOM file ({type(exc).__name__}: {exc}); nothing was kept") from None
                index += 1
                yield ds
        finally:
            close = getattr(stream, "close", None)  # a lone part comes as a plain iterator
            if close is not None:
                close()

    def store(self, datasets: Sequence[object], study_uid: str, progress=None) -> None:
        """STOW-RS in requests of ``_STOW_BATCH`` instances (``progress(n)`` after each); raises
        PacsError naming how many instances the server refused."""
        done = 0
        for start in range(0, len(datasets), _STOW_BATCH):
            batch = list(datasets[start:start + _STOW_BATCH])
            with self._errors("send (STOW-RS)"):
                answer = self.client.store_instances(batch, study_instance_uid=study_uid)
            failed = answer.get("FailedSOPSequence", []) if answer is not None else []
            if failed:
                reasons = sorted({str(item.get("FailureReason", "?")) for item in failed})
                raise PacsError(f"send (STOW-RS): the server refused {len(failed)} of {len(batch)} instance(s) "
                                f"(failure reason {', '.join(reasons)}); {done} were stored before")
            done += len(batch)
            if progress is not None:
                progress(done)
