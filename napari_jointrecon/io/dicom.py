"""DICOM CT reader: folders, files or lists of files -> :class:`~napari_jointrecon.CTVolume`.

What it does, in order:

1. parse every file's header (pixel data is read later, only for the chosen series);
2. skip what is not an axial CT image (reports, waveforms, localizers, colour or 8-bit secondary
   captures, other modalities, DICOMDIR, non-DICOM files) and remember why;
3. split the rest into stacks by series, orientation, matrix and pixel spacing; enhanced multi-frame
   CT contributes one slice per frame, with geometry and rescale from its functional groups;
4. sort each stack along the slice normal (ImagePositionPatient projected on the normal) and take the
   slice spacing from those positions, never from SliceThickness;
5. decode the chosen stack (pydicom's decoders, SimpleITK/GDCM as a fallback), apply the rescale to
   HU, turn padding and out-of-field values into air;
6. put tilted (gantry tilt) or unevenly spaced stacks on a regular rectangular grid and say so.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from ..errors import CTReadError
from ..volume import CTVolume, SeriesInfo

__all__ = ["read_dicom", "scan_dicom", "is_dicom_file", "AIR_HU", "MIN_HU"]

AIR_HU = -1000.0
#: No tissue or air is below this; lower stored values are padding outside the field of view.
MIN_HU = -1024.0
#: Start of the DerivationDescription of the series this package writes (io/write.py).
DERIVATION_PREFIX = "napari-jointrecon:"

_CT_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.2",  # CT Image Storage
    "1.2.840.10008.5.1.4.1.1.2.1",  # Enhanced CT Image Storage
    "1.2.840.10008.5.1.4.1.1.2.2",  # Legacy Converted Enhanced CT Image Storage
}
_DICOMDIR = "1.2.840.10008.1.3.10"
_SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"
_PATIENT_STUDY_KEYWORDS = (
    "PatientName", "PatientID", "PatientBirthDate", "PatientSex", "PatientAge",
    "StudyInstanceUID", "StudyDate", "StudyTime", "StudyID", "AccessionNumber",
    "ReferringPhysicianName", "StudyDescription", "FrameOfReferenceUID",
    "Manufacturer", "ManufacturerModelName", "InstitutionName", "BodyPartExamined",
    "KVP", "PatientPosition",
)


@dataclass
class _Frame:
    """One 2D image: a single-frame file or one frame of an enhanced multi-frame file."""

    path: str
    frame: int | None
    dataset: pydicom.Dataset
    position: np.ndarray  # LPS mm of the centre of the first pixel
    row_cos: np.ndarray  # LPS direction of increasing column index
    col_cos: np.ndarray  # LPS direction of increasing row index
    pixel_spacing: tuple[float, float]  # (between rows, between columns) mm
    rows: int
    cols: int
    slope: float
    intercept: float
    series_uid: str
    sop_uid: str
    instance_number: int

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.row_cos, self.col_cos)


@dataclass
class _Stack:
    key: str
    frames: list[_Frame]
    notes: list[str] = field(default_factory=list)

    @property
    def first(self) -> _Frame:
        return self.frames[0]

    def info(self) -> SeriesInfo:
        f = self.first
        ds = f.dataset
        return SeriesInfo(
            key=self.key,
            description=str(ds.get("SeriesDescription", "")),
            modality=str(ds.get("Modality", "")),
            n_slices=len(self.frames),
            matrix=(f.rows, f.cols),
            spacing=(_mean_gap(self.frames), *f.pixel_spacing),
            series_uid=f.series_uid,
        )


# ---------------------------------------------------------------------------------------------
# gathering and parsing files
# ---------------------------------------------------------------------------------------------
def _gather(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files: list[str] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            for root, dirs, names in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                files += [os.path.join(root, n) for n in sorted(names) if not n.startswith(".")]
        elif p.is_file():
            files.append(str(p))
        else:
            raise CTReadError(f"{p}: no such file or folder")
    return files


def is_dicom_file(path: str | os.PathLike) -> bool:
    """True when the file starts with the DICOM preamble and ``DICM`` prefix."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _read_header(path: str) -> pydicom.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return pydicom.dcmread(path)
        except InvalidDicomError:
            # Files written without the 128-byte preamble are still DICOM if they parse to an image.
            ds = pydicom.dcmread(path, force=True)
            if "SOPClassUID" not in ds and "PixelData" not in ds:
                raise
            return ds


def _floats(value, n: int) -> np.ndarray | None:
    try:
        arr = np.array([float(v) for v in value], dtype=float)
    except (TypeError, ValueError):
        return None
    return arr if arr.size == n and np.all(np.isfinite(arr)) else None


def _skip_reason(ds: pydicom.Dataset, path: str) -> str | None:
    sop = str(ds.get("SOPClassUID", ""))
    modality = str(ds.get("Modality", "")).upper()
    if sop == _DICOMDIR or os.path.basename(path).upper() == "DICOMDIR":
        return "DICOMDIR (an index of files, not an image)"
    if "PixelData" not in ds:
        kind = UID(sop).name if sop else (modality or "unknown object")
        return f"no pixel data ({kind})"
    if modality != "CT" and sop not in _CT_SOP_CLASSES:
        return f"modality {modality or 'unknown'}, not CT"
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        return "colour image, not a CT slice"
    if sop.startswith(_SECONDARY_CAPTURE_PREFIX) and int(ds.get("BitsAllocated", 16)) <= 8:
        return "8-bit secondary capture (a screenshot, not HU)"
    image_type = [str(t).strip().upper() for t in ds.get("ImageType", [])]
    if "LOCALIZER" in image_type or "SCOUT" in image_type:
        return "localizer/scout image"
    return None


def _rescale(*holders: pydicom.Dataset | None) -> tuple[float, float]:
    """RescaleSlope/Intercept from the first holder that has them (identity if none has)."""
    for holder in holders:
        if holder is not None and ("RescaleSlope" in holder or "RescaleIntercept" in holder):
            return (float(holder.get("RescaleSlope", 1.0) or 1.0),
                    float(holder.get("RescaleIntercept", 0.0) or 0.0))
    return 1.0, 0.0


def _functional(ds: pydicom.Dataset, index: int, sequence: str) -> pydicom.Dataset | None:
    """A functional group item of an enhanced multi-frame dataset: per-frame first, then shared."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    shared = ds.get("SharedFunctionalGroupsSequence")
    for group in (per_frame[index] if per_frame and len(per_frame) > index else None,
                  shared[0] if shared else None):
        seq = group.get(sequence) if group is not None else None
        if seq:
            return seq[0]
    return None


def _frames_of(ds: pydicom.Dataset, path: str) -> tuple[list[_Frame], str | None]:
    rows, cols = int(ds.get("Rows", 0)), int(ds.get("Columns", 0))
    if rows < 1 or cols < 1:
        return [], "no image matrix (Rows/Columns missing)"
    n_frames = int(ds.get("NumberOfFrames", 1) or 1)
    series_uid = str(ds.get("SeriesInstanceUID", "")) or f"no-series-uid:{os.path.dirname(path)}"
    sop_uid = str(ds.get("SOPInstanceUID", "")) or path
    instance = int(ds.get("InstanceNumber", 0) or 0)
    frames = []
    enhanced = "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds
    for k in range(n_frames):
        if enhanced:
            pos_item = _functional(ds, k, "PlanePositionSequence")
            ori_item = _functional(ds, k, "PlaneOrientationSequence")
            meas_item = _functional(ds, k, "PixelMeasuresSequence")
            slope, intercept = _rescale(_functional(ds, k, "PixelValueTransformationSequence"), ds)
        else:
            pos_item = ori_item = meas_item = ds
            slope, intercept = _rescale(ds)
        position = _floats(getattr(pos_item, "ImagePositionPatient", None) or [], 3)
        orientation = _floats(getattr(ori_item, "ImageOrientationPatient", None) or [], 6)
        spacing = _floats(getattr(meas_item, "PixelSpacing", None) or [], 2)
        if position is None or orientation is None:
            return [], "no ImagePositionPatient/ImageOrientationPatient (cannot place it in 3D)"
        if spacing is None or np.any(spacing <= 0):
            return [], "no valid PixelSpacing"
        row_cos, col_cos = orientation[:3], orientation[3:]
        row_cos = row_cos / np.linalg.norm(row_cos)
        col_cos = col_cos / np.linalg.norm(col_cos)
        frames.append(_Frame(
            path=path, frame=k if n_frames > 1 else None, dataset=ds, position=position,
            row_cos=row_cos, col_cos=col_cos, pixel_spacing=(float(spacing[0]), float(spacing[1])),
            rows=rows, cols=cols, slope=slope, intercept=intercept, series_uid=series_uid,
            sop_uid=sop_uid, instance_number=instance,
        ))
    normal = frames[0].normal
    if abs(normal[2]) < 0.5:
        plane = "sagittal" if abs(normal[0]) >= abs(normal[1]) else "coronal"
        return [], f"not an axial image ({plane} orientation)"
    return frames, None


def _scan(paths) -> tuple[list[_Frame], dict[str, str]]:
    frames: list[_Frame] = []
    skipped: dict[str, str] = {}
    seen: set[tuple[str, int | None]] = set()
    for path in _gather(paths):
        try:
            ds = _read_header(path)
        except InvalidDicomError:
            skipped[path] = "not a DICOM file"
            continue
        except Exception as exc:  # truncated or corrupt headers raise many different errors
            skipped[path] = f"unreadable DICOM header ({type(exc).__name__}: {exc})"
            continue
        reason = _skip_reason(ds, path)
        if reason is None:
            new, reason = _frames_of(ds, path)
        if reason is not None:
            skipped[path] = reason
            continue
        for fr in new:
            if (fr.sop_uid, fr.frame) in seen:
                skipped[path] = "duplicate of an instance already read (same SOPInstanceUID)"
                break
            seen.add((fr.sop_uid, fr.frame))
        else:
            frames += new
    return frames, skipped


# ---------------------------------------------------------------------------------------------
# grouping and sorting
# ---------------------------------------------------------------------------------------------
def _projection(fr: _Frame, normal: np.ndarray) -> float:
    return float(fr.position @ normal)


def _mean_gap(frames: list[_Frame]) -> float:
    if len(frames) < 2:
        ds = frames[0].dataset
        for kw in ("SpacingBetweenSlices", "SliceThickness"):
            try:
                value = float(ds.get(kw, 0) or 0)
            except (TypeError, ValueError):
                value = 0.0
            if value > 0:
                return value
        return 1.0
    n = frames[0].normal
    s = [_projection(f, n) for f in frames]
    return float(abs(s[-1] - s[0]) / (len(frames) - 1))


def _stacks(frames: list[_Frame]) -> list[_Stack]:
    groups: dict[tuple, list[_Frame]] = defaultdict(list)
    for fr in frames:
        key = (
            fr.series_uid,
            tuple(np.round(np.concatenate([fr.row_cos, fr.col_cos]), 3)),
            fr.rows, fr.cols,
            tuple(np.round(fr.pixel_spacing, 4)),
        )
        groups[key].append(fr)
    stacks: list[_Stack] = []
    per_series = Counter(k[0] for k in groups)
    index_in_series: Counter = Counter()
    for key, members in groups.items():
        normal = members[0].normal
        members.sort(key=lambda f: (_projection(f, normal), f.instance_number, f.path, f.frame or 0))
        # Slices at the same position (repeated acquisitions inside one series) go to separate stacks.
        layers: list[list[_Frame]] = []
        last_pos = None
        depth = 0
        for fr in members:
            pos = round(_projection(fr, normal), 3)
            depth = depth + 1 if pos == last_pos else 0
            last_pos = pos
            while len(layers) <= depth:
                layers.append([])
            layers[depth].append(fr)
        for sub in layers:
            uid = key[0]
            index_in_series[uid] += 1
            needs_suffix = per_series[uid] > 1 or len(layers) > 1
            stack_key = f"{uid}#{index_in_series[uid]}" if needs_suffix else uid
            stacks.append(_Stack(key=stack_key, frames=sub))
    stacks.sort(key=lambda s: (-len(s.frames), -s.first.rows * s.first.cols, s.key))
    return stacks


def _describe_skipped(skipped: dict[str, str], limit: int = 8) -> list[str]:
    if not skipped:
        return []
    counts = Counter(skipped.values())
    lines = [f"skipped {len(skipped)} file(s): " + "; ".join(f"{n} x {r}" for r, n in counts.most_common())]
    for path, reason in list(skipped.items())[:limit]:
        lines.append(f"  {path}: {reason}")
    if len(skipped) > limit:
        lines.append(f"  ... and {len(skipped) - limit} more")
    return lines


def scan_dicom(paths) -> list[SeriesInfo]:
    """List the CT image series (stacks) found in a folder, a file or a list of files.

    The first one is what :func:`read_dicom` loads by default (the largest).

    Raises
    ------
    CTReadError
        When no CT image series is found; the message lists what was skipped and why.
    """
    frames, skipped = _scan(paths)
    stacks = _stacks(frames)
    if not stacks:
        raise CTReadError(_nothing_found(paths, skipped))
    return [s.info() for s in stacks]


def _nothing_found(paths, skipped: dict[str, str]) -> str:
    where = paths if isinstance(paths, (str, os.PathLike)) else f"{len(list(paths))} paths"
    if not skipped:
        return f"{where}: no files found"
    return f"{where}: no axial CT image found. " + " ".join(_describe_skipped(skipped, limit=5))


# ---------------------------------------------------------------------------------------------
# decoding
# ---------------------------------------------------------------------------------------------
def _decode_with_sitk(path: str) -> np.ndarray:
    """HU (rescale already applied by GDCM) as (frames, rows, cols)."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    reader.SetImageIO("GDCMImageIO")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        image = reader.Execute()
    arr = sitk.GetArrayFromImage(image)
    return arr.reshape((-1,) + arr.shape[-2:])


def _decode_file(path: str, ds: pydicom.Dataset) -> tuple[np.ndarray, bool]:
    """Pixels of one file as (frames, rows, cols); the flag says whether rescale is applied."""
    ts = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            arr = ds.pixel_array
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        return arr.reshape((frames,) + arr.shape[-2:]), False
    except Exception as first_error:  # the decoders raise many types; fall back and then explain
        if ts is not None and not UID(str(ts)).is_compressed:
            raise CTReadError(
                f"{path}: pixel data cannot be read ({first_error}); the file may be truncated"
            ) from first_error
        try:
            return _decode_with_sitk(path), True
        except Exception:
            name = UID(str(ts)).name if ts else "unknown"
            raise CTReadError(
                f"{path}: cannot decode the pixel data (transfer syntax {name}, {ts}); "
                f"no installed decoder (pydicom plugins, GDCM) supports it: {first_error}"
            ) from first_error


def _padding_mask(raw: np.ndarray, ds: pydicom.Dataset) -> np.ndarray | None:
    pad = ds.get("PixelPaddingValue")
    if pad is None:
        return None
    if isinstance(pad, bytes):
        pad = int.from_bytes(pad[:2], "little", signed=bool(ds.get("PixelRepresentation", 0)))
    limit = ds.get("PixelPaddingRangeLimit")
    if limit is None or isinstance(limit, bytes):
        return raw == pad
    lo, hi = sorted((int(pad), int(limit)))
    return (raw >= lo) & (raw <= hi)


def _decode_stack(stack: _Stack) -> tuple[np.ndarray, int, list[str]]:
    """HU array (slices, rows, cols) for a stack, how many voxels were set to air, and the files
    that only SimpleITK/GDCM could decode."""
    by_file: dict[str, list[tuple[int, _Frame]]] = defaultdict(list)
    for index, fr in enumerate(stack.frames):
        by_file[fr.path].append((index, fr))
    first = stack.first
    out = np.empty((len(stack.frames), first.rows, first.cols), dtype=np.float32)
    aired = np.zeros(len(by_file), dtype=np.int64)
    via_gdcm: list[str] = []

    def work(item):
        n, (path, members) = item
        ds = members[0][1].dataset
        written_here = str(ds.get("DerivationDescription", "")).startswith(DERIVATION_PREFIX)
        pixels, rescaled = _decode_file(path, ds)
        if rescaled:
            via_gdcm.append(path)
        for index, fr in members:
            raw = pixels[fr.frame or 0]
            if raw.shape != (fr.rows, fr.cols):
                raise CTReadError(f"{path}: pixel matrix {raw.shape} does not match Rows/Columns")
            if rescaled:
                hu = raw.astype(np.float32)
            else:
                hu = raw.astype(np.float32)
                if fr.slope != 1.0:
                    hu *= np.float32(fr.slope)
                if fr.intercept != 0.0:
                    hu += np.float32(fr.intercept)
                pad = _padding_mask(raw, ds)
                if pad is not None:
                    hu[pad] = AIR_HU
                    aired[n] += int(pad.sum())
            # out-of-field values below MIN_HU become air; a series this package wrote has none
            # (its writer stores every value, e.g. noise in the air of a simulated scan)
            below = hu < MIN_HU if not written_here else np.zeros(hu.shape, bool)
            if below.any():
                hu[below] = AIR_HU
                aired[n] += int(below.sum())
            out[index] = hu

    items = list(enumerate(by_file.items()))
    workers = min(len(items), os.cpu_count() or 1, 4)
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(work, items))
    else:
        for item in items:
            work(item)
    return out, int(aired.sum()), via_gdcm


# ---------------------------------------------------------------------------------------------
# geometry: tilt and uneven gaps
# ---------------------------------------------------------------------------------------------
def _regularise(hu: np.ndarray, stack: _Stack) -> tuple[np.ndarray, np.ndarray, float, list[str]]:
    """Put the slices on a rectangular, evenly spaced grid.

    Returns the HU array, the LPS position of voxel (0, 0, 0), the slice spacing and notes.
    """
    from scipy import ndimage

    f0 = stack.first
    normal = f0.normal
    dy, dx = f0.pixel_spacing
    notes: list[str] = []
    positions = np.array([f.position for f in stack.frames])
    s = positions @ normal
    if len(stack.frames) == 1:
        return hu, positions[0], _mean_gap(stack.frames), [
            "single slice: slice spacing taken from SliceThickness/SpacingBetweenSlices"
        ]

    # In-plane offset of each slice relative to the stack's mean, in pixels (columns, rows).
    rel = positions - positions[0]
    in_plane = np.stack([rel @ f0.row_cos / dx, rel @ f0.col_cos / dy], axis=1)
    extent = abs(s[-1] - s[0])
    shift_mm = np.hypot(*(in_plane[-1] - in_plane[0]) * np.array([dx, dy]))
    if shift_mm > max(0.01, 1e-4 * extent):
        tilt = np.degrees(np.arctan2(shift_mm, extent))
        centre = in_plane.mean(axis=0)
        corrected = np.empty_like(hu)
        for k in range(len(hu)):
            di, dj = in_plane[k] - centre
            corrected[k] = ndimage.shift(hu[k], (dj, di), order=1, mode="constant", cval=AIR_HU)
        hu = corrected
        # After the shift every slice's pixel (0, 0) lies on the line through the mean offset.
        positions = positions - np.outer(in_plane[:, 0] - centre[0], f0.row_cos * dx) \
            - np.outer(in_plane[:, 1] - centre[1], f0.col_cos * dy)
        notes.append(
            f"gantry tilt of {tilt:.1f} degrees corrected: each slice was shifted in-plane "
            "(linear interpolation) onto a rectangular grid"
        )

    gaps = np.diff(s)
    median = float(np.median(gaps))
    if np.any(gaps <= 1e-6):
        raise CTReadError(f"{f0.path}: slices share a position; cannot build a volume")
    if np.max(np.abs(gaps - median)) > max(0.02, 0.01 * median):
        step = float(np.min(gaps))
        n_out = int(np.floor((s[-1] - s[0]) / step + 1e-6)) + 1
        targets = s[0] + step * np.arange(n_out)
        upper = np.clip(np.searchsorted(s, targets, side="right"), 1, len(s) - 1)
        lower = upper - 1
        w = ((targets - s[lower]) / (s[upper] - s[lower])).astype(np.float32)[:, None, None]
        hu = (1 - w) * hu[lower] + w * hu[upper]
        notes.append(
            f"uneven slice gaps ({gaps.min():.2f}..{gaps.max():.2f} mm) resampled to a regular "
            f"{step:.2f} mm grid by linear interpolation ({len(s)} -> {n_out} slices)"
        )
        spacing = step
    else:
        spacing = float((s[-1] - s[0]) / (len(s) - 1))
    origin = positions[0]
    return hu.astype(np.float32, copy=False), origin, spacing, notes


# ---------------------------------------------------------------------------------------------
# public entry points
# ---------------------------------------------------------------------------------------------
def read_dicom(paths: str | os.PathLike | Iterable[str | os.PathLike], *, series: str | None = None
               ) -> CTVolume:
    """Read a DICOM CT series.

    Parameters
    ----------
    paths : path or sequence of paths
        A folder (searched recursively), one file, or a list of files.
    series : str, optional
        The ``key`` of a :class:`SeriesInfo` from :func:`scan_dicom`; by default the largest axial
        CT series is read and the others are listed in ``other_series``.

    Returns
    -------
    CTVolume

    Raises
    ------
    CTReadError
        When nothing readable is found, the series key is unknown, or pixel data cannot be decoded
        (the message names the file and its transfer syntax).
    """
    if not isinstance(paths, (str, os.PathLike)):
        paths = list(paths)
    frames, skipped = _scan(paths)
    stacks = _stacks(frames)
    if not stacks:
        raise CTReadError(_nothing_found(paths, skipped))
    if series is None:
        chosen = stacks[0]
    else:
        matches = [s for s in stacks if s.key == series or s.first.series_uid == series]
        if not matches:
            known = ", ".join(s.key for s in stacks)
            raise CTReadError(f"series {series!r} not found; available: {known}")
        chosen = matches[0]
    hu, aired, via_gdcm = _decode_stack(chosen)
    hu, origin_lps, dz, notes = _regularise(hu, chosen)

    f0 = chosen.first
    direction = np.stack([f0.normal[::-1], f0.col_cos[::-1], f0.row_cos[::-1]], axis=1)
    ds = f0.dataset
    notes = _describe_skipped(skipped) + notes
    if via_gdcm:
        notes.append(f"{len(via_gdcm)} file(s) decoded with SimpleITK/GDCM (pydicom's decoders "
                     f"could not), e.g. {via_gdcm[0]}")
    if aired:
        notes.append(f"{aired} padding or out-of-field voxels set to air ({AIR_HU:.0f} HU)")
    others = [s.info() for s in stacks if s is not chosen]
    if others:
        which = "the largest" if series is None else "the chosen one"
        notes.append(
            f"{len(others) + 1} series found; loaded {which} ({len(chosen.frames)} slices), "
            "others: " + "; ".join(o.label() for o in others)
        )
    if any(str(f.dataset.get("LossyImageCompression", "")) == "01" for f in chosen.frames):
        notes.append("lossy compressed pixels (LossyImageCompression 01): HU are approximate")
    if str(ds.get("Modality", "CT")) == "CT" and hu.size and float(hu.min()) > -500:
        notes.append(f"no voxel below -500 HU (lowest {float(hu.min()):.0f}): a CT normally shows air, so "
                     "check the rescale slope and intercept of these files")
    meta = {kw: str(ds.get(kw)) for kw in _PATIENT_STUDY_KEYWORDS if ds.get(kw) not in (None, "")}
    return CTVolume(
        hu=hu,
        spacing=(dz, *f0.pixel_spacing),
        origin=tuple(origin_lps[::-1]),
        direction=direction,
        modality=str(ds.get("Modality", "CT")),
        series_description=str(ds.get("SeriesDescription", "")),
        study_description=str(ds.get("StudyDescription", "")),
        series_uid=f0.series_uid,
        study_uid=str(ds.get("StudyInstanceUID", "")),
        frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "")),
        source=str(paths) if isinstance(paths, (str, os.PathLike)) else f"{len(paths)} files",
        source_files=tuple(sorted({f.path for f in chosen.frames})),
        source_format="dicom",
        notes=notes,
        other_series=others,
        meta=meta,
    )
