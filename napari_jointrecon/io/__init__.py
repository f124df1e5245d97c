"""Reading and writing CT volumes; :func:`load_ct` picks the reader from the path."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import numpy as np

from ..errors import CTReadError
from ..volume import CTVolume, SeriesInfo
from .dicom import is_dicom_file, read_dicom, scan_dicom
from .guard import MAX_VOXELS, nonfinite_message, path_problem
from .itk import ITK_SUFFIXES, read_itk
from .numpy import read_numpy

__all__ = ["load_ct", "scan_series", "reader_for", "READERS", "SUPPORTED_SUFFIXES", "MAX_VOXELS"]

PathLike = str | os.PathLike

#: suffix -> reader(path, *, max_voxels) -> CTVolume. One table: adding a format is one line.
READERS: dict[str, Callable[..., CTVolume]] = {
    ".dcm": read_dicom,
    ".dicom": read_dicom,
    ".ima": read_dicom,
    ".npy": read_numpy,
    ".npz": read_numpy,
    **{suffix: partial(read_itk, fmt=fmt) for suffix, fmt in ITK_SUFFIXES.items()},
}
_ITK_NAMES = {"nifti": "NIfTI", "metaimage": "MetaImage", "nrrd": "NRRD"}
SUPPORTED_SUFFIXES = tuple(READERS)


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in sorted(READERS, key=len, reverse=True):
        if name.endswith(suffix):
            return suffix
    return ""


def reader_for(path: PathLike | Sequence[PathLike]) -> Callable[..., CTVolume] | None:
    """The reader for a path (a folder or extension-less DICOM file -> DICOM), or None."""
    if not isinstance(path, (str, os.PathLike)):
        paths = list(path)
        return read_dicom if paths and all(reader_for(p) is read_dicom for p in paths) else None
    p = Path(path)
    if p.is_dir():
        return read_dicom
    suffix = _suffix(p)
    if suffix:
        return READERS[suffix]
    if p.is_file() and is_dicom_file(p):
        return read_dicom
    return None


def _validate(volume: CTVolume) -> CTVolume:
    hu = volume.hu
    if hu.size == 0:
        raise CTReadError(f"{volume.source}: the image is empty (shape {hu.shape})")
    bad = int(hu.size - np.count_nonzero(np.isfinite(hu)))
    if bad:
        raise CTReadError(nonfinite_message(volume.source, bad))
    return volume


def _format_name(path: PathLike) -> str:
    reader = reader_for(path)
    if reader is None:
        return "not a supported format"
    if isinstance(reader, partial):
        return _ITK_NAMES[reader.keywords["fmt"]]
    return "DICOM" if reader is read_dicom else "NumPy"


def _check_list(paths: list) -> None:
    """A list of files is one DICOM series: refuse missing entries and other formats."""
    if not paths:
        raise CTReadError("an empty list of files: nothing to load")
    for p in paths:
        problem = path_problem(p, folder_ok=True)
        if problem is not None:
            raise CTReadError(f"{p}: {problem} (one of a list of {len(paths)} files)")
    others = {str(p): name for p in paths if (name := _format_name(p)) != "DICOM"}
    if others:
        shown = "; ".join(f"{p} is {n}" for p, n in list(others.items())[:3])
        raise CTReadError(
            f"a list of {len(paths)} files must all be DICOM slices of one series, but {shown}; "
            "load NIfTI, MetaImage, NRRD and NumPy files one at a time"
        )


def load_ct(path: PathLike | Sequence[PathLike], *, series: str | None = None,
            max_voxels: int = MAX_VOXELS) -> CTVolume:
    """Read a CT volume in HU from DICOM, NIfTI, MetaImage, NRRD or NumPy.

    Parameters
    ----------
    path : path or sequence of paths
        A DICOM folder (searched recursively), a DICOM file, a list of DICOM files, or a
        ``.nii``/``.nii.gz``/``.mha``/``.mhd``/``.nrrd``/``.npy``/``.npz`` file.
    series : str, optional
        For DICOM with several series: the ``key`` of the series to load (see
        :func:`scan_series`); by default the largest axial CT series.
    max_voxels : int, optional
        The largest volume to allocate (2 x 10^9 voxels by default); a larger one is refused before
        any of its memory is allocated.

    Returns
    -------
    CTVolume
        ``hu`` is a float32 ``(z, y, x)`` array; ``notes`` says what the user should know
        (skipped files, resampling, assumptions).

    Raises
    ------
    CTReadError
        With a message naming the file and the reason, for anything that cannot be read. Sizes
        a header declares are checked against the bytes present before anything is allocated;
        named pipes, sockets and devices are never opened (inside a folder they are skipped and
        named in ``notes``).
    """
    if not isinstance(path, (str, os.PathLike)):
        path = list(path)
        _check_list(path)
        return _validate(read_dicom(path, series=series, max_voxels=max_voxels))
    problem = path_problem(path, folder_ok=True)
    if problem is not None:
        raise CTReadError(f"{path}: {problem}")
    reader = reader_for(path)
    if reader is None:
        raise CTReadError(
            f"{path}: unsupported format; expected a DICOM folder or file, or one of "
            + ", ".join(s for s in SUPPORTED_SUFFIXES if s not in (".dicom", ".ima"))
        )
    if reader is read_dicom:
        return _validate(read_dicom(path, series=series, max_voxels=max_voxels))
    if series is not None:
        raise CTReadError(f"{path}: 'series' applies to DICOM only")
    return _validate(reader(str(path), max_voxels=max_voxels))


def scan_series(path: PathLike | Sequence[PathLike]) -> list[SeriesInfo]:
    """The series a source holds, largest first (one entry for non-DICOM files)."""
    if reader_for(path) is read_dicom:
        return scan_dicom(path)
    volume = load_ct(path)
    z, y, x = volume.shape
    return [SeriesInfo(key="", description=volume.series_description, modality=volume.modality,
                       n_slices=z, matrix=(y, x), spacing=volume.spacing)]
