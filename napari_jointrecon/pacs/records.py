"""What the PACS functions exchange: a study query, study and series records, retrieve progress, and
the two exceptions (every failure is a :class:`PacsError` with a one-line message)."""

from __future__ import annotations

import datetime
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["PacsError", "Cancelled", "StudyQuery", "StudyInfo", "SeriesEntry", "Progress", "SentSeries",
           "dicom_date", "date_range", "is_cancelled", "CancelToken", "CT_SOP_CLASSES"]

#: CT Image Storage, Enhanced CT and Legacy Converted Enhanced CT: what the reader opens.
CT_SOP_CLASSES = ("1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.2.1", "1.2.840.10008.5.1.4.1.1.2.2")


# Not RuntimeError: a napari generator worker treats a RuntimeError as "the worker was deleted" and
# then emits neither ``errored`` nor ``finished``.
class PacsError(Exception):
    """A PACS operation failed; the message says what and what to do, without any credential."""


class Cancelled(Exception):
    """The user cancelled; nothing was kept."""


#: A threading.Event, or a callable saying whether to stop.
CancelToken = threading.Event | Callable[[], bool] | None


def is_cancelled(cancel: CancelToken) -> bool:
    if cancel is None:
        return False
    if isinstance(cancel, threading.Event):
        return cancel.is_set()
    return bool(cancel())


def dicom_date(value: str | datetime.date | None, what: str = "date") -> str:
    """``YYYYMMDD`` from a date, ``YYYY-MM-DD`` or ``YYYYMMDD`` ('' for nothing)."""
    if value is None or value == "":
        return ""
    if isinstance(value, datetime.date):
        return value.strftime("%Y%m%d")
    text = str(value).strip().replace("-", "").replace(".", "").replace("/", "")
    try:
        datetime.datetime.strptime(text, "%Y%m%d")
    except ValueError:
        raise ValueError(f"{what} {value!r}: give a date as YYYY-MM-DD") from None
    return text


def date_range(start, end) -> str:
    """A DICOM date range ``FROM-TO`` (either side may be open; '' for no constraint)."""
    a, b = dicom_date(start, "date from"), dicom_date(end, "date to")
    if a and b and a > b:
        raise ValueError(f"the date range starts after it ends ({start} > {end})")
    if not a and not b:
        return ""
    return a if a == b else f"{a}-{b}"


@dataclass(frozen=True)
class StudyQuery:
    """Search terms; empty ones are not constraints. ``patient_name`` matches as a prefix unless it
    holds a wildcard (``*`` or ``?``)."""

    patient_id: str = ""
    patient_name: str = ""
    date_from: str | datetime.date | None = None
    date_to: str | datetime.date | None = None
    accession: str = ""
    modality: str = "CT"
    limit: int = 100

    def dicom_filters(self) -> dict[str, str]:
        """DICOM keyword -> matching value (only the constraints)."""
        filters: dict[str, str] = {}
        if self.patient_id.strip():
            filters["PatientID"] = self.patient_id.strip()
        name = self.patient_name.strip()
        if name:
            filters["PatientName"] = name if re.search(r"[*?]", name) else name + "*"
        dates = date_range(self.date_from, self.date_to)
        if dates:
            filters["StudyDate"] = dates
        if self.accession.strip():
            filters["AccessionNumber"] = self.accession.strip()
        if self.modality.strip():
            filters["ModalitiesInStudy"] = self.modality.strip().upper()
        return filters


def _text(value) -> str:
    return "" if value is None else str(value).strip()


def _number(value) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True)
class StudyInfo:
    """One study found by a search."""

    study_uid: str
    patient_id: str = ""
    patient_name: str = ""
    date: str = ""
    accession: str = ""
    description: str = ""
    modalities: str = ""
    n_series: int | None = None
    n_instances: int | None = None

    @classmethod
    def from_dataset(cls, ds) -> StudyInfo:
        modalities = ds.get("ModalitiesInStudy", "")
        if not isinstance(modalities, str):
            modalities = "\\".join(str(m) for m in modalities)
        n_series, n_instances = (_number(ds.get(k)) for k in ("NumberOfStudyRelatedSeries",
                                                              "NumberOfStudyRelatedInstances"))
        return cls(study_uid=_text(ds.get("StudyInstanceUID")), patient_id=_text(ds.get("PatientID")),
                   patient_name=_text(ds.get("PatientName")), date=_text(ds.get("StudyDate")),
                   accession=_text(ds.get("AccessionNumber")), description=_text(ds.get("StudyDescription")),
                   modalities=modalities, n_series=None if n_series is None else int(n_series),
                   n_instances=None if n_instances is None else int(n_instances))

    def label(self) -> str:
        d = self.date
        date = f"{d[:4]}-{d[4:6]}-{d[6:8]}" if len(d) == 8 else (d or "no date")
        who = self.patient_name.replace("^", " ").strip() or self.patient_id or "(no patient name)"
        parts = [date, who]
        if self.patient_id and self.patient_id != who:
            parts.append(f"ID {self.patient_id}")
        if self.accession:
            parts.append(f"acc. {self.accession}")
        if self.description:
            parts.append(self.description)
        if self.n_series is not None:
            parts.append(f"{self.n_series} series")
        return " · ".join(parts)


@dataclass(frozen=True)
class SeriesEntry:
    """One series of a study, with what a radiologist picks a series by."""

    study_uid: str
    series_uid: str
    description: str = ""
    modality: str = ""
    number: int | None = None
    n_instances: int | None = None
    kernel: str = ""
    thickness_mm: float | None = None

    @classmethod
    def from_dataset(cls, ds, study_uid: str = "") -> SeriesEntry:
        kernel = ds.get("ConvolutionKernel", "")
        if not isinstance(kernel, str):
            kernel = "\\".join(str(k) for k in kernel)
        number, count = _number(ds.get("SeriesNumber")), _number(ds.get("NumberOfSeriesRelatedInstances"))
        return cls(study_uid=_text(ds.get("StudyInstanceUID")) or study_uid,
                   series_uid=_text(ds.get("SeriesInstanceUID")), description=_text(ds.get("SeriesDescription")),
                   modality=_text(ds.get("Modality")), number=None if number is None else int(number),
                   n_instances=None if count is None else int(count), kernel=kernel.strip(),
                   thickness_mm=_number(ds.get("SliceThickness")))

    def label(self) -> str:
        parts = [f"#{self.number}" if self.number is not None else "#?",
                 self.description or "(no description)", self.modality or "?"]
        if self.n_instances is not None:
            parts.append(f"{self.n_instances} slices")
        if self.kernel:
            parts.append(f"kernel {self.kernel}")
        if self.thickness_mm is not None:
            parts.append(f"{self.thickness_mm:g} mm")
        return " · ".join(parts)


@dataclass(frozen=True)
class Progress:
    """Retrieve or send progress: ``done`` of ``total`` instances (``total`` 0 while unknown)."""

    done: int
    total: int
    stage: str = "retrieve"  # "retrieve", "open", "cache" or "send"


@dataclass(frozen=True)
class SentSeries:
    """What :func:`~napari_jointrecon.pacs.send` stored."""

    study_uid: str
    series_uid: str
    source_series_uid: str
    n_instances: int
    description: str
