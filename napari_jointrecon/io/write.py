"""Writing CT volumes (for example denoised results) to NIfTI/MetaImage/NRRD and DICOM series.

Writers never touch the files a volume was read from: a target that is a source file, or a folder
that holds source files, is refused with :class:`~napari_jointrecon.CTWriteError`. An existing
target is refused unless ``overwrite=True``. Output is written to a temporary name first and then
moved into place, so a failed write leaves nothing behind.
"""

from __future__ import annotations

import datetime
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..errors import CTWriteError
from ..volume import CTVolume
from ..windows import WINDOW_PRESETS
from .dicom import DERIVATION_PREFIX
from .itk import ITK_SUFFIXES, file_notes

__all__ = ["write_nifti", "write_image", "write_dicom_series", "derived_description"]

_CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def _resolved_sources(volume: CTVolume) -> set[Path]:
    return {Path(p).resolve() for p in volume.source_files}


def _check_target(target: Path, volume: CTVolume, *, overwrite: bool, folder: bool) -> None:
    target = target.resolve()
    sources = _resolved_sources(volume)
    if target in sources:
        raise CTWriteError(f"{target}: refusing to overwrite a source file of this volume")
    inside = target if folder else target.parent
    for src in sources:
        # a DICOM source folder is one series: nothing is written into it or below it; any source
        # file must not lie inside a folder target (overwrite would remove it)
        within = inside == src.parent or src.parent in inside.parents
        if (within and volume.source_format == "dicom") or (folder and inside in src.parents):
            raise CTWriteError(
                f"{target}: refusing to write into a folder that holds the volume's source files; "
                "choose another folder"
            )
    if not folder and target.is_dir():
        raise CTWriteError(f"{target}: is a folder; give a file name")
    if target.exists():
        if folder and target.is_dir() and not any(target.iterdir()):
            return
        if not overwrite:
            raise CTWriteError(f"{target}: already exists; choose another name or pass overwrite=True "
                               "(--overwrite on the command line)")
        if folder and not target.is_dir():
            raise CTWriteError(f"{target}: exists and is not a folder")
        if folder:
            other = [p.name for p in target.iterdir() if not (p.is_file() and p.suffix.lower() == ".dcm")]
            if other:
                raise CTWriteError(
                    f"{target}: holds more than a DICOM series ({', '.join(sorted(other)[:3])}"
                    f"{', ...' if len(other) > 3 else ''}); overwrite replaces only a folder of .dcm "
                    "files: choose another folder")


def _check_voxels(volume: CTVolume) -> None:
    if not np.isfinite(volume.hu).all():
        raise CTWriteError("the volume has NaN or infinite voxels; nothing was written")


def _new_temp_folder(parent: Path) -> Path:
    """A hidden temporary folder in ``parent``, made with the default permissions (the umask's, as
    the folder it becomes must be readable like any other; ``tempfile.mkdtemp`` gives 0700)."""
    import uuid

    for _ in range(100):
        tmp = parent / f".jointrecon-{uuid.uuid4().hex[:12]}"
        try:
            tmp.mkdir()
            return tmp
        except FileExistsError:
            continue
    raise CTWriteError(f"{parent}: could not make a temporary folder")


def _storage_array(hu: np.ndarray) -> np.ndarray:
    """int16 when the HU are whole numbers that fit (exact and compact), float32 otherwise."""
    if hu.size and np.all(np.mod(hu, 1) == 0) and hu.min() >= -32768 and hu.max() <= 32767:
        return hu.astype(np.int16)
    return hu.astype(np.float32, copy=False)


def write_image(volume: CTVolume, path: str | os.PathLike, *, overwrite: bool = False,
                compression_level: int = -1) -> Path:
    """Write a volume to ``.nii``/``.nii.gz``/``.mha``/``.mhd``/``.nrrd`` with its geometry.

    ``compression_level``: zlib's 1 (fastest) to 9 (smallest) for ``.nii.gz`` and ``.mha``; -1 is
    the writer's default. Batch outputs use 1. A ``.nii.gz`` at levels 1 to 3 is gzipped with ISA-L
    (:func:`gzip_file`), faster than zlib at the price of somewhat larger files, and reads like any
    other.

    Returns
    -------
    pathlib.Path
        The file written (for ``.mhd``/``.nhdr`` the header; its data file lies beside it and is
        checked like the target).

    Raises
    ------
    CTWriteError
        For an unsupported suffix, a source file as target, or an existing file without
        ``overwrite``.
    """
    import SimpleITK as sitk

    path = Path(path)
    _check_target(path, volume, overwrite=overwrite, folder=False)
    _check_voxels(volume)
    suffix = next((s for s in sorted(ITK_SUFFIXES, key=len, reverse=True)
                   if path.name.lower().endswith(s)), None)
    if suffix is None:
        raise CTWriteError(f"{path}: unsupported suffix; use one of {', '.join(ITK_SUFFIXES)}")
    image = sitk.GetImageFromArray(_storage_array(volume.hu))
    image.SetSpacing(tuple(float(s) for s in volume.spacing[::-1]))
    image.SetOrigin(tuple(float(o) for o in volume.origin[::-1]))
    image.SetDirection(tuple(float(v) for v in np.asarray(volume.direction)[::-1, ::-1].ravel()))
    if volume.series_description or volume.study_description:
        image.SetMetaData("ITK_FileNotes", file_notes(volume.series_description, volume.study_description))
    path.parent.mkdir(parents=True, exist_ok=True)
    # Write into a temporary folder beside the target under the final name, then move the file(s)
    # (a .mhd/.nhdr header has a separate data file), so an interrupted write leaves nothing.
    tmp = Path(tempfile.mkdtemp(prefix=".jointrecon-", dir=path.parent))
    try:
        if suffix == ".nii.gz" and 1 <= compression_level <= 3:
            plain = tmp / ".uncompressed.nii"
            sitk.WriteImage(image, str(plain), useCompression=False)
            gzip_file(plain, tmp / path.name, compression_level)
            plain.unlink()
        else:
            sitk.WriteImage(image, str(tmp / path.name), useCompression=suffix.endswith(".gz") or suffix == ".mha",
                            compressionLevel=compression_level)
        produced = sorted(tmp.iterdir())
        for p in produced:  # the data file of a .mhd/.nhdr header is a target too
            if p.name != path.name:
                _check_target(path.parent / p.name, volume, overwrite=overwrite, folder=False)
        for p in produced:
            os.replace(p, path.parent / p.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def gzip_file(source: Path, target: Path, level: int = 1) -> None:
    """gzip ``source`` into ``target`` at ``level`` (1-3): with ISA-L's igzip (the ``isal`` package)
    where it is installed, else with the standard library's zlib."""
    try:
        from isal import igzip as gz
    except ImportError:  # isal cannot be imported (a dependency, but built from source where no wheel fits)
        import gzip as gz
    with open(source, "rb") as src, gz.open(target, "wb", compresslevel=level) as dst:
        shutil.copyfileobj(src, dst, 1 << 22)


def write_nifti(volume: CTVolume, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write a volume as NIfTI (``.nii`` or ``.nii.gz``); see :func:`write_image`."""
    if not str(path).lower().endswith((".nii", ".nii.gz")):
        raise CTWriteError(f"{path}: a NIfTI file name ends with .nii or .nii.gz")
    return write_image(volume, path, overwrite=overwrite)


def derived_description(volume: CTVolume, model: str | None, dose: float | None,
                        description: str | None = None) -> str:
    """SeriesDescription of a derived series, naming the model and the dose (64 chars at most)."""
    if description:
        return description[:64]
    parts = [volume.series_description or "CT"]
    if model:
        parts.append(f"denoised {model}")
    if dose is not None:
        pct = dose * 100 if dose <= 1 else dose
        parts.append(f"{pct:g}% dose")
    return " | ".join(parts)[:64]


def _rescale_for(hu: np.ndarray) -> tuple[np.ndarray, float]:
    """Stored int16 values and the slope (intercept 0) that represent the HU."""
    if hu.size and np.all(np.mod(hu, 1) == 0) and hu.min() >= -32768 and hu.max() <= 32767:
        return hu.astype(np.int16), 1.0
    peak = float(np.max(np.abs(hu))) if hu.size else 1.0
    slope = float(f"{max(peak, 1.0) / 32000.0:.4g}")
    return np.clip(np.rint(hu / slope), -32768, 32767).astype(np.int16), slope


def write_dicom_series(
    volume: CTVolume,
    folder: str | os.PathLike,
    *,
    model: str | None = None,
    dose: float | None = None,
    description: str | None = None,
    series_number: int = 9001,
    overwrite: bool = False,
) -> list[Path]:
    """Write a volume as a new DICOM CT series (one file per slice).

    The series gets new Series and SOP Instance UIDs, ImageType ``DERIVED\\SECONDARY\\AXIAL`` and a
    SeriesDescription naming the model and dose; the source's patient and study attributes and its
    geometry are kept. HU are stored as int16 with RescaleSlope/Intercept: whole-number HU exactly,
    others to within half the slope.

    Parameters
    ----------
    volume : CTVolume
    folder : path
        A new or empty folder (never one holding the volume's source files); with ``overwrite``,
        also a folder holding nothing but ``.dcm`` files (a series written before), which are
        replaced. Anything else in it is refused, so nothing but an old series is ever deleted.
    model, dose : optional
        Named in SeriesDescription and DerivationDescription (dose as a fraction or a percentage).
    description : str, optional
        SeriesDescription to use instead of the generated one.

    Returns
    -------
    list of pathlib.Path
        The files written, in slice order.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID, generate_uid
    from pydicom.valuerep import format_number_as_ds

    folder = Path(folder)
    _check_target(folder, volume, overwrite=overwrite, folder=True)
    _check_voxels(volume)
    hu = volume.hu
    direction = np.asarray(volume.direction, dtype=float)
    normal, col_cos, row_cos = direction[:, 0], direction[:, 1], direction[:, 2]
    if np.dot(np.cross(row_cos[::-1], col_cos[::-1]), normal[::-1]) < 0:
        # DICOM readers stack slices along row x column; keep that order right-handed.
        hu = hu[::-1]
        origin = np.asarray(volume.origin) + normal * volume.spacing[0] * (volume.shape[0] - 1)
        normal = -normal
    else:
        origin = np.asarray(volume.origin, dtype=float)
    stored, slope = _rescale_for(hu)

    def ds_str(values) -> list[str]:
        return [format_number_as_ds(float(v)) for v in values]

    meta = volume.meta
    now = datetime.datetime.now()
    series_uid = generate_uid()
    study_uid = meta.get("StudyInstanceUID") or volume.study_uid or generate_uid()
    frame_uid = meta.get("FrameOfReferenceUID") or volume.frame_of_reference_uid or generate_uid()
    series_description = derived_description(volume, model, dose, description)
    width, level = WINDOW_PRESETS["soft_tissue"]
    dz, dy, dx = volume.spacing

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_temp_folder(folder.parent)
    written: list[Path] = []
    try:
        for k in range(stored.shape[0]):
            file_meta = FileMetaDataset()
            file_meta.MediaStorageSOPClassUID = _CT_IMAGE_STORAGE
            file_meta.MediaStorageSOPInstanceUID = generate_uid()
            file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
            file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
            ds = Dataset()
            ds.file_meta = file_meta
            for keyword, value in meta.items():
                if keyword not in ("StudyInstanceUID", "FrameOfReferenceUID"):
                    setattr(ds, keyword, value)
            ds.SOPClassUID = _CT_IMAGE_STORAGE
            ds.SOPInstanceUID = file_meta.MediaStorageSOPInstanceUID
            ds.StudyInstanceUID = study_uid
            ds.SeriesInstanceUID = series_uid
            ds.FrameOfReferenceUID = frame_uid
            ds.Modality = "CT"
            ds.ImageType = ["DERIVED", "SECONDARY", "AXIAL"]
            ds.SeriesDescription = series_description
            if "StudyDescription" not in ds and volume.study_description:
                ds.StudyDescription = volume.study_description[:64]
            ds.DerivationDescription = f"{DERIVATION_PREFIX} {series_description}"[:1024]
            ds.SeriesNumber = series_number
            ds.InstanceNumber = k + 1
            ds.ContentDate = now.strftime("%Y%m%d")
            ds.ContentTime = now.strftime("%H%M%S")
            ds.SeriesDate, ds.SeriesTime = ds.ContentDate, ds.ContentTime
            for keyword in ("PatientName", "PatientID", "StudyDate", "StudyTime", "StudyID",
                            "AccessionNumber", "ReferringPhysicianName", "PatientBirthDate",
                            "PatientSex"):
                if keyword not in ds:
                    setattr(ds, keyword, "")
            position = origin + normal * dz * k
            ds.ImagePositionPatient = ds_str(position[::-1])
            ds.ImageOrientationPatient = ds_str(np.concatenate([row_cos[::-1], col_cos[::-1]]))
            ds.PixelSpacing = ds_str((dy, dx))
            ds.SliceThickness = format_number_as_ds(float(dz))
            ds.SpacingBetweenSlices = format_number_as_ds(float(dz))
            ds.SliceLocation = format_number_as_ds(float(position[0]))
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.Rows, ds.Columns = int(stored.shape[1]), int(stored.shape[2])
            ds.BitsAllocated = 16
            ds.BitsStored = 16
            ds.HighBit = 15
            ds.PixelRepresentation = 1
            ds.RescaleIntercept = "0"
            ds.RescaleSlope = format_number_as_ds(slope)
            ds.RescaleType = "HU"
            ds.WindowCenter = format_number_as_ds(level)
            ds.WindowWidth = format_number_as_ds(width)
            ds.PixelData = np.ascontiguousarray(stored[k]).tobytes()
            name = tmp / f"{k + 1:04d}.dcm"
            ds.save_as(name, enforce_file_format=True)
            written.append(folder / name.name)
        if folder.exists():  # empty, or (checked above) holding only .dcm files
            for old_file in folder.iterdir():
                old_file.unlink()
            folder.rmdir()
        os.replace(tmp, folder)
    except (ValueError, TypeError, AttributeError) as exc:  # pydicom refusing a value
        raise CTWriteError(f"{folder}: cannot write the series: {exc}") from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return written
