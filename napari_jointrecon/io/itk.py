"""NIfTI, MetaImage and NRRD through SimpleITK."""

from __future__ import annotations

import os
import warnings

import numpy as np

from ..errors import CTReadError
from ..volume import CTVolume

__all__ = ["read_itk", "ITK_SUFFIXES"]

#: suffix -> format name
ITK_SUFFIXES = {
    ".nii": "nifti",
    ".nii.gz": "nifti",
    ".mha": "metaimage",
    ".mhd": "metaimage",
    ".nrrd": "nrrd",
    ".nhdr": "nrrd",
}


def _itk_to_napari(image) -> tuple[tuple, tuple, np.ndarray]:
    """Spacing, origin and direction of a 3D SimpleITK image in napari (z, y, x) order."""
    spacing = tuple(image.GetSpacing()[::-1])
    origin = tuple(image.GetOrigin()[::-1])
    direction = np.array(image.GetDirection(), dtype=float).reshape(3, 3)[::-1, ::-1]
    return spacing, origin, direction


#: Start of the file notes (NIfTI ``descrip``, 80 characters) that this package's writer puts in:
#: ``"jointrecon: SERIES || STUDY"``, the volume's series and study descriptions (a derived series'
#: description has single bars of its own).
FILE_NOTES_PREFIX = "jointrecon: "


def file_notes(series_description: str, study_description: str) -> str:
    """The file notes the writer stores (read back by :func:`file_notes_descriptions`)."""
    return f"{FILE_NOTES_PREFIX}{series_description} || {study_description}"[:79]


def file_notes_descriptions(image) -> tuple[str, str]:
    """Series and study descriptions from the file notes this package wrote; ``("", "")`` for a
    file written elsewhere (whose notes are not ours to interpret)."""
    notes = next((image.GetMetaData(k) for k in ("ITK_FileNotes", "descrip") if image.HasMetaDataKey(k)), "")
    notes = notes.strip().strip("\x00")
    if not notes.startswith(FILE_NOTES_PREFIX):
        return "", ""
    # the last " ||": an empty study description leaves the notes ending in " ||" once the file
    # format or the strip above has dropped the trailing space
    series, _, study = notes[len(FILE_NOTES_PREFIX):].rpartition(" ||")
    return series.strip(), study.strip()


def read_itk(path: str | os.PathLike, fmt: str) -> CTVolume:
    """Read a NIfTI/MetaImage/NRRD file as a CT volume (values taken as HU).

    Raises
    ------
    CTReadError
        For files SimpleITK cannot read, colour images and 4D series.
    """
    import SimpleITK as sitk

    path = str(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = sitk.ReadImage(path)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise CTReadError(f"{path}: not a readable {fmt} image ({first[-1] if first else exc})") from exc
    notes: list[str] = []
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise CTReadError(
            f"{path}: {image.GetNumberOfComponentsPerPixel()} values per voxel (a colour or vector "
            "image); a CT volume has one value per voxel"
        )
    dim = image.GetDimension()
    if dim == 4:
        size = image.GetSize()
        if size[3] != 1:
            raise CTReadError(
                f"{path}: 4D image ({' x '.join(map(str, size))}, e.g. a time series); "
                "a CT volume must be 3D"
            )
        image = image[:, :, :, 0]
        notes.append("4D image with a single time point: loaded as 3D")
    elif dim == 2:
        image = sitk.JoinSeries(image)
        notes.append("2D image: loaded as a single slice with 1 mm slice spacing")
    elif dim != 3:
        raise CTReadError(f"{path}: {dim}D image; a CT volume must be 3D")
    spacing, origin, direction = _itk_to_napari(image)
    series, study = file_notes_descriptions(image)
    hu = sitk.GetArrayFromImage(image)
    if hu.size and float(np.nanmin(hu)) >= 0:
        notes.append(
            "no value is below 0: these may not be Hounsfield units (air is about -1000 HU)"
        )
    return CTVolume(
        hu=hu.astype(np.float32, copy=False),
        spacing=spacing,
        origin=origin,
        direction=direction,
        modality="",
        series_description=series or os.path.basename(path),
        study_description=study,
        source=path,
        source_files=(path,) + _sidecars(path),
        source_format=fmt,
        notes=notes,
    )


def _sidecars(path: str) -> tuple[str, ...]:
    """Data files a header file points to (.mhd -> .raw, .nhdr -> data file)."""
    if not path.lower().endswith((".mhd", ".nhdr")):
        return ()
    folder = os.path.dirname(path)
    found = []
    with open(path, errors="replace") as fh:
        for line in fh:
            key, _, value = line.partition("=" if path.lower().endswith(".mhd") else ":")
            if key.strip().lower() in ("elementdatafile", "data file", "datafile"):
                name = value.strip()
                if name and name.upper() != "LOCAL":
                    found.append(os.path.join(folder, name))
    return tuple(found)
