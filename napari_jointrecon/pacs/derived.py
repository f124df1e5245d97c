"""A result volume as a new derived CT series of its source's study, ready to store in a PACS.

The project's DICOM writer makes the series (new Series and SOP Instance UIDs, ImageType
``DERIVED\\SECONDARY\\AXIAL``, patient and study attributes and geometry of the source); here it
gets a DerivationDescription naming the model and dose and the source series in
ReferencedSeriesSequence.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from ..errors import CTWriteError
from ..volume import CTVolume
from .records import PacsError

__all__ = ["derived_datasets", "derivation_text", "adopt_source"]


def derivation_text(model: str | None, dose: float | None, source_series_uid: str) -> str:
    """``napari-jointrecon: denoised with MODEL at N% dose from series UID`` (what applies)."""
    from ..io.dicom import DERIVATION_PREFIX

    pct = None if dose is None else (dose * 100 if dose <= 1 else dose)
    if model:
        what = f"denoised with {model}" + (f" at {pct:g}% dose" if pct is not None else "")
    elif pct is not None:
        what = f"simulated {pct:g}% dose"
    else:
        what = "derived"
    return f"{DERIVATION_PREFIX} {what} from series {source_series_uid}"[:1024]


def derived_datasets(volume: CTVolume, *, source_series_uid: str, model: str | None = None,
                     dose: float | None = None, description: str | None = None,
                     series_number: int = 9001) -> list:
    """The pydicom Datasets of a new derived series of ``volume``'s study, in slice order.

    Raises
    ------
    PacsError
        The volume has no study to belong to, no source series, or cannot be written as DICOM.
    """
    import pydicom
    from pydicom.dataset import Dataset

    from ..io.write import write_dicom_series

    study_uid = volume.meta.get("StudyInstanceUID") or volume.study_uid
    if not study_uid:
        raise PacsError("the volume belongs to no study (no StudyInstanceUID): send a result computed from "
                        "a series opened from a PACS or a DICOM folder")
    if not source_series_uid:
        raise PacsError("the source series is unknown: give the SeriesInstanceUID the result was computed from")
    with tempfile.TemporaryDirectory(prefix="jointrecon-send-") as tmp:
        try:
            files = write_dicom_series(volume, Path(tmp) / "series", model=model, dose=dose,
                                       description=description, series_number=series_number)
        except CTWriteError as exc:
            raise PacsError(f"the result cannot be made a DICOM series: {exc}") from None
        datasets = [pydicom.dcmread(f) for f in files]
    derivation = derivation_text(model, dose, source_series_uid)
    for ds in datasets:
        ref = Dataset()
        ref.SeriesInstanceUID = source_series_uid
        ref.StudyInstanceUID = study_uid
        ds.ReferencedSeriesSequence = [ref]
        ds.DerivationDescription = derivation
    return datasets


def adopt_source(result: CTVolume, source: CTVolume) -> CTVolume:
    """``result`` as a derived volume of ``source``: the source's geometry, patient and study when the
    shapes match (a result read from a NIfTI file carries neither), else the result's own geometry
    with the source's patient, study and series."""
    import dataclasses

    if result.shape == source.shape:
        return source.with_hu(result.hu, series_description=result.series_description or source.series_description)
    return dataclasses.replace(result, meta=dict(source.meta), study_uid=source.study_uid,
                               series_uid=source.series_uid, frame_of_reference_uid=source.frame_of_reference_uid,
                               study_description=source.study_description, notes=list(result.notes))
