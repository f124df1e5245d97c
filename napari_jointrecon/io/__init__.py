"""Reading and writing CT volumes; :func:`load_ct` picks the reader from the path."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..errors import CTReadError
from ..volume import CTVolume, SeriesInfo
from .dicom import is_dicom_file, read_dicom, scan_dicom
from .itk import ITK_SUFFIXES, read_itk
from .numpy import read_numpy

__all__ = ["load_ct", "scan_series", "reader_for", "READERS", "SUPPORTED_SUFFIXES"]

PathLike = str | os.PathLike

#: suffix -> reader(path) -> CTVolume. One table: adding a format is one line.
READERS: dict[str, Callable[[str], CTVolume]] = {
    ".dcm": read_dicom,
    ".dicom": read_dicom,
    ".ima": read_dicom,
    ".npy": read_numpy,
    ".npz": read_numpy,
    **{suffix: (lambda p, _f=fmt: read_itk(p, _f)) for suffix, fmt in ITK_SUFFIXES.items()},
}
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
        raise CTReadError(
            f"{volume.source}: {bad} voxel(s) are NaN or infinite; a CT volume needs finite HU "
            "(fill or mask them before loading)"
        )
    return volume


def load_ct(path: PathLike | Sequence[PathLike], *, series: str | None = None) -> CTVolume:
    """Read a CT volume in HU from DICOM, NIfTI, MetaImage, NRRD or NumPy.

    Parameters
    ----------
    path : path or sequence of paths
        A DICOM folder (searched recursively), a DICOM file, a list of DICOM files, or a
        ``.nii``/``.nii.gz``/``.mha``/``.mhd``/``.nrrd``/``.npy``/``.npz`` file.
    series : str, optional
        For DICOM with several series: the ``key`` of the series to load (see
        :func:`scan_series`); by default the largest axial CT series.

    Returns
    -------
    CTVolume
        ``hu`` is a float32 ``(z, y, x)`` array; ``notes`` says what the user should know
        (skipped files, resampling, assumptions).

    Raises
    ------
    CTReadError
        With a message naming the file and the reason, for anything that cannot be read.
    """
    reader = reader_for(path)
    if reader is None:
        shown = path if isinstance(path, (str, os.PathLike)) else f"{len(list(path))} paths"
        if isinstance(path, (str, os.PathLike)) and not Path(path).exists():
            raise CTReadError(f"{shown}: no such file or folder")
        raise CTReadError(
            f"{shown}: unsupported format; expected a DICOM folder or file, or one of "
            + ", ".join(s for s in SUPPORTED_SUFFIXES if s not in (".dicom", ".ima"))
        )
    if isinstance(path, (str, os.PathLike)) and not Path(path).exists():
        raise CTReadError(f"{path}: no such file or folder")
    if reader is read_dicom:
        return _validate(read_dicom(path, series=series))
    if series is not None:
        raise CTReadError(f"{path}: 'series' applies to DICOM only")
    return _validate(reader(str(path)))


def scan_series(path: PathLike | Sequence[PathLike]) -> list[SeriesInfo]:
    """The series a source holds, largest first (one entry for non-DICOM files)."""
    if reader_for(path) is read_dicom:
        return scan_dicom(path)
    volume = load_ct(path)
    z, y, x = volume.shape
    return [SeriesInfo(key="", description=volume.series_description, modality=volume.modality,
                       n_slices=z, matrix=(y, x), spacing=volume.spacing)]
