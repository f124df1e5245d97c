"""DIMSE with ``pynetdicom``: C-ECHO, C-FIND (study root), C-GET and C-STORE.

C-GET brings the images back over the association it opens, so nothing has to listen on this
machine (C-MOVE would need a port the PACS can reach). Connection and association have the
settings' ``timeout``; a DIMSE answer may take four times as long (at least 10 s).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from .records import PacsError, SeriesEntry, StudyInfo, StudyQuery
from .settings import ServerSettings

__all__ = ["DimseBackend"]

_STUDY_KEYS = ("StudyInstanceUID", "PatientID", "PatientName", "StudyDate", "AccessionNumber",
               "StudyDescription", "ModalitiesInStudy", "NumberOfStudyRelatedSeries",
               "NumberOfStudyRelatedInstances")
_SERIES_KEYS = ("StudyInstanceUID", "SeriesInstanceUID", "SeriesDescription", "Modality", "SeriesNumber",
                "NumberOfSeriesRelatedInstances", "ConvolutionKernel", "SliceThickness")
#: the storage SOP classes C-GET accepts: CT, and a few others a CT study holds, so that such an
#: instance arrives and is named instead of failing unnamed
_GET_STORAGE = ("CTImageStorage", "EnhancedCTImageStorage", "LegacyConvertedEnhancedCTImageStorage",
                "SecondaryCaptureImageStorage", "XRayRadiationDoseSRStorage", "EnhancedSRStorage",
                "BasicTextSRStorage", "ComprehensiveSRStorage", "EncapsulatedPDFStorage",
                "GrayscaleSoftcopyPresentationStateStorage", "MRImageStorage",
                "PositronEmissionTomographyImageStorage")
_PENDING = (0xFF00, 0xFF01)


class DimseBackend:
    """One DICOM server reached by DIMSE (``settings.protocol == "dimse"``)."""

    def __init__(self, settings: ServerSettings):
        problem = settings.problem()
        if problem:
            raise PacsError(problem)
        self.settings = settings

    # associations ----------------------------------------------------------------------------
    def _ae(self):
        from pynetdicom import AE

        ae = AE(ae_title=self.settings.calling_ae)
        t = self.settings.timeout
        ae.connection_timeout = t
        ae.acse_timeout = t
        ae.dimse_timeout = max(t * 4, 10.0)
        ae.network_timeout = max(t * 4, 10.0)
        return ae

    @contextmanager
    def _association(self, what: str, ae, **kwargs):
        from pynetdicom import evt

        s = self.settings
        connected: list[bool] = []
        handlers = [*kwargs.pop("evt_handlers", []), (evt.EVT_CONN_OPEN, lambda _e: connected.append(True))]
        started = time.monotonic()
        # max_pdu 0: the PACS may send PDUs as large as it likes (fewer, faster to decode)
        assoc = ae.associate(s.host, s.port, ae_title=s.called_ae, evt_handlers=handlers, max_pdu=0, **kwargs)
        if not assoc.is_established:
            if not connected:
                raise PacsError(f"{what}: cannot connect to {s.host}:{s.port} within {s.timeout:g} s (connection "
                                "refused or unreachable): is the PACS running and the host and port right?")
            if not assoc.is_rejected and time.monotonic() - started >= s.timeout:
                raise PacsError(f"{what}: {s.host}:{s.port} accepted the connection but did not answer the "
                                f"association request within {s.timeout:g} s: is it a DICOM server?")
            # a refusal may come as an A-ASSOCIATE-RJ or as the connection closed before it is read
            how = "" if assoc.is_rejected else " (it closed the connection)"
            raise PacsError(f"{what}: {s.host}:{s.port} rejected the association{how}: check the PACS AE title "
                            f"({s.called_ae!r}) and that the PACS knows this AE title ({s.calling_ae!r}) and host")
        try:
            yield assoc
        finally:
            if assoc.is_established:
                assoc.release()

    def _check_context(self, assoc, what: str, sop_class) -> None:
        if not any(cx.abstract_syntax == sop_class for cx in assoc.accepted_contexts):
            raise PacsError(f"{what}: the PACS does not accept {sop_class.name} from {self.settings.calling_ae!r}")

    @staticmethod
    def _status(status) -> int:
        return int(status.Status) if status is not None and "Status" in status else -1

    # queries ---------------------------------------------------------------------------------
    def echo(self) -> str:
        from pynetdicom.sop_class import Verification

        ae = self._ae()
        ae.add_requested_context(Verification)
        with self._association("C-ECHO", ae) as assoc:
            status = assoc.send_c_echo()
        code = self._status(status)
        if code != 0:
            raise PacsError(f"C-ECHO: the PACS answered status 0x{code & 0xFFFF:04X}" if code >= 0
                            else "C-ECHO: no answer from the PACS")
        return f"{self.settings.label()} answers C-ECHO"

    def _find(self, what: str, level: str, keys: Sequence[str], filters: dict[str, str]) -> list:
        from pydicom.dataset import Dataset
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelFind as FIND

        ident = Dataset()
        ident.QueryRetrieveLevel = level
        for key in keys:
            setattr(ident, key, "")
        for key, value in filters.items():
            setattr(ident, key, value)
        ae = self._ae()
        ae.add_requested_context(FIND)
        found = []
        with self._association(what, ae) as assoc:
            self._check_context(assoc, what, FIND)
            for status, answer in assoc.send_c_find(ident, FIND):
                code = self._status(status)
                if code in _PENDING:
                    if answer is not None:
                        found.append(answer)
                    continue
                if code != 0:
                    raise PacsError(f"{what}: the PACS answered C-FIND status 0x{code & 0xFFFF:04X}"
                                    if code >= 0 else f"{what}: no C-FIND answer within the timeout")
        return found

    def find_studies(self, query: StudyQuery) -> list[StudyInfo]:
        answers = self._find("study search", "STUDY", _STUDY_KEYS, query.dicom_filters())
        studies = [StudyInfo.from_dataset(a) for a in answers]
        return studies[:query.limit] if query.limit else studies

    def find_series(self, study_uid: str, *, modality: str = "") -> list[SeriesEntry]:
        filters = {"StudyInstanceUID": study_uid}
        if modality:
            filters["Modality"] = modality
        answers = self._find("series search", "SERIES", _SERIES_KEYS, filters)
        return [SeriesEntry.from_dataset(a, study_uid) for a in answers]

    def count_instances(self, study_uid: str, series_uid: str) -> int:
        """How many instances the series has now (a PacsError when it is gone): the series' count
        when the PACS gives it, else an image-level query."""
        gone = (f"retrieve: series {series_uid} is not on the server (any more): was it deleted since the "
                "search? Search again")
        where = {"StudyInstanceUID": study_uid, "SeriesInstanceUID": series_uid}
        found = self._find("retrieve", "SERIES", ("NumberOfSeriesRelatedInstances",), where)
        if not found:
            raise PacsError(gone)
        count = SeriesEntry.from_dataset(found[0], study_uid).n_instances
        if count:
            return count
        answers = self._find("retrieve", "IMAGE", ("SOPInstanceUID",), where)
        if not answers:
            raise PacsError(gone)
        return len(answers)

    # retrieve and store ----------------------------------------------------------------------
    def iter_instances(self, study_uid: str, series_uid: str) -> Iterator[object]:
        """C-GET the series; yields each instance as it arrives (the bytes of a DICOM Part 10 file).

        Closing the iterator aborts the association.
        """
        from pydicom.dataset import Dataset
        from pynetdicom import ALL_TRANSFER_SYNTAXES, DEFAULT_TRANSFER_SYNTAXES, build_role, evt
        from pynetdicom import sop_class as sc
        from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet as GET

        arrived: queue.Queue = queue.Queue()

        def on_store(event):
            arrived.put(("instance", event.encoded_dataset(include_meta=True)))  # as sent, not re-encoded
            return 0x0000

        ae = self._ae()
        ae.add_requested_context(GET)
        roles = []
        for name in _GET_STORAGE:
            uid = getattr(sc, name)
            ae.add_requested_context(uid, ALL_TRANSFER_SYNTAXES if "CT" in name else DEFAULT_TRANSFER_SYNTAXES)
            roles.append(build_role(uid, scp_role=True))
        ident = Dataset()
        ident.QueryRetrieveLevel = "SERIES"
        ident.StudyInstanceUID = study_uid
        ident.SeriesInstanceUID = series_uid

        with self._association("C-GET", ae, ext_neg=roles, evt_handlers=[(evt.EVT_C_STORE, on_store)]) as assoc:
            self._check_context(assoc, "C-GET", GET)

            def run():
                final = None
                try:
                    for status, _ in assoc.send_c_get(ident, GET):
                        code = self._status(status)
                        if code not in _PENDING:
                            final = status
                except Exception as exc:  # noqa: BLE001 - reported through the queue
                    arrived.put(("error", f"{type(exc).__name__}: {exc}"))
                arrived.put(("end", final))

            runner = threading.Thread(target=run, name="jointrecon-c-get", daemon=True)
            runner.start()
            finished = False
            try:
                while True:
                    kind, value = arrived.get()
                    if kind == "instance":
                        yield value
                    elif kind == "error":
                        raise PacsError(f"C-GET of series {series_uid} failed: {value}")
                    else:
                        finished = True
                        self._check_final(value, series_uid)
                        return
            finally:
                if not finished:  # cancelled or failed: stop the transfer now
                    assoc.abort()
                runner.join(5)

    def _check_final(self, status, series_uid: str) -> None:
        code = self._status(status)
        if code == 0:
            return
        if code < 0:
            raise PacsError(f"C-GET of series {series_uid}: the PACS stopped answering (association lost or timed out)")
        failed = int(status.get("NumberOfFailedSuboperations", 0) or 0)
        if code == 0xB000 and failed:
            raise PacsError(f"C-GET of series {series_uid}: {failed} instance(s) could not be sent by the PACS "
                            "(not a CT image, or a transfer syntax this client does not accept); nothing was kept")
        if code == 0xFE00:
            raise PacsError(f"C-GET of series {series_uid}: the PACS cancelled the transfer; nothing was kept")
        raise PacsError(f"C-GET of series {series_uid}: the PACS could not send the series (status "
                        f"0x{code & 0xFFFF:04X}{', ' + str(failed) + ' instance(s) failed' if failed else ''}): "
                        "a stored instance may be damaged, or the series is too large for it; nothing was kept")

    def store(self, datasets: Sequence[object], study_uid: str, progress=None) -> None:
        """C-STORE each dataset over one association (``progress(n)`` after each); raises PacsError on
        the first refusal."""
        from pynetdicom.sop_class import CTImageStorage

        ae = self._ae()
        syntaxes = sorted({str(ds.file_meta.TransferSyntaxUID) for ds in datasets})
        ae.add_requested_context(CTImageStorage, syntaxes)
        with self._association("C-STORE", ae) as assoc:
            self._check_context(assoc, "C-STORE", CTImageStorage)
            for k, ds in enumerate(datasets):
                status = assoc.send_c_store(ds)
                code = self._status(status)
                if code != 0 and not 0xB000 <= code <= 0xBFFF:
                    raise PacsError(f"C-STORE: the PACS refused instance {k + 1} of {len(datasets)} (status "
                                    f"0x{code & 0xFFFF:04X})" if code >= 0 else
                                    f"C-STORE: no answer for instance {k + 1} within the timeout")
                if progress is not None:
                    progress(k + 1)
