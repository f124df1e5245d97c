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

Hostile or damaged input never hangs it and never makes it allocate what the files do not hold:
only regular files are opened (pipes, sockets, devices and link loops are skipped and named); a
deflated file is measured in bounded chunks before pydicom inflates it; large elements are not read
with the header, so that the length each declares is checked against the file first; Rows x
Columns x NumberOfFrames x BitsAllocated is checked against the PixelData present; numbers that do
not parse name their tag. Along the slice normal, near-duplicate positions are dropped (identical
pixels) or refused (different pixels), a slice far off the others is excluded and named, the
spacing is the typical gap, and resampling uneven gaps never makes more than
``MAX_RESAMPLE_FACTOR`` times the slices given.
"""

from __future__ import annotations

import math
import os
import warnings
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.datadict import keyword_for_tag
from pydicom.encaps import parse_fragments
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.tag import Tag
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, PrivateTransferSyntaxes

from ..errors import CTReadError
from ..volume import CTVolume, SeriesInfo
from .guard import (MAX_VOXELS, check_voxels, inflate_cap, inflated_size, path_problem,
                    size_text)

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
#: Elements larger than this are not read with the header but when needed (the pixel data), so that
#: the length each declares can be checked against the file before anything that large is read.
_DEFER_BYTES = 64 * 1024
_UNDEFINED_LENGTH = 0xFFFFFFFF
#: Slices closer than this along the normal (mm), or than this fraction of the typical gap, are at
#: the same position: near-duplicates (real exports have them, for example 0.002 mm apart).
DUPLICATE_MM = 0.01
DUPLICATE_FRACTION = 0.05
#: A slice more than this many typical gaps beyond the others has a wrong position.
OUTLIER_GAPS = 10
#: Resampling uneven gaps makes at most this many times the slices given. The smallest gap sets the
#: grid where that fits (no slice is blurred); otherwise the grid spreads 2x the slices over the
#: extent: the gantry-tilt series of the test data (28 slices, gaps of 1.08 to 7 mm) becomes 56
#: slices 2.6 mm apart instead of 134 at 1.08 mm.
MAX_RESAMPLE_FACTOR = 2
#: A gantry tilt is at most about 30 degrees; a larger in-plane drift is a wrong position.
_MAX_TILT_DEGREES = 45.0


class _Unusable(Exception):
    """A file's header makes it unusable; the message names the tag and the value."""


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
    notes: tuple[str, ...] = ()  # what was assumed about this file's header
    pixel_problem: str | None = None  # why its pixel data cannot be read (raised if it is chosen)

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
            spacing=(_slice_gap(self.frames), *f.pixel_spacing),
            series_uid=f.series_uid,
        )


# ---------------------------------------------------------------------------------------------
# gathering and parsing files
# ---------------------------------------------------------------------------------------------
def _walk(root: str, files: list[str], skipped: dict[str, str]) -> None:
    def unreadable(exc: OSError) -> None:
        skipped[exc.filename or root] = f"a folder that cannot be read ({exc.strerror})"

    for folder, dirs, names in os.walk(root, onerror=unreadable):
        here = os.path.realpath(folder)
        for d in dirs:
            full = os.path.join(folder, d)
            if os.path.islink(full) and not d.startswith("."):
                target = os.path.realpath(full)
                loop = here == target or here.startswith(target.rstrip(os.sep) + os.sep)
                skipped[full] = ("a symbolic link loop (a link to a folder that contains it)" if loop
                                 else f"a link to the folder {target}: not followed")
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and not os.path.islink(os.path.join(folder, d)))
        for name in sorted(names):
            if name.startswith("."):
                continue
            full = os.path.join(folder, name)
            problem = path_problem(full)
            if problem is None:
                files.append(full)
            else:
                skipped[full] = problem


def _gather(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> tuple[list[str], dict[str, str]]:
    """The regular files under ``paths``, and the entries that are not read with the reason."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files: list[str] = []
    skipped: dict[str, str] = {}
    for p in paths:
        p = str(p)
        problem = path_problem(p, folder_ok=True)
        if problem == "no such file or folder":
            raise CTReadError(f"{p}: no such file or folder")
        if problem is not None:
            skipped[p] = problem
        elif os.path.isdir(p):
            _walk(p, files, skipped)
        else:
            files.append(p)
    return files, skipped


def is_dicom_file(path: str | os.PathLike) -> bool:
    """True when the file starts with the DICOM preamble and ``DICM`` prefix (only regular files
    are opened)."""
    if path_problem(path) is not None:
        return False
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _deflated_start(path: str) -> int | None:
    """Where the deflated data set of a file in the Deflated transfer syntax starts; else None."""
    try:
        meta = pydicom.filereader.read_file_meta_info(path)
    except Exception:  # no preamble or no meta: not a file that pydicom would inflate
        return None
    if str(meta.get("TransferSyntaxUID", "")) != DeflatedExplicitVRLittleEndian:
        return None
    length = meta.get("FileMetaInformationGroupLength")
    if length is None:
        raise _Unusable("deflated file without FileMetaInformationGroupLength")
    return 132 + 12 + int(length)  # preamble + 'DICM', the group length element, the group


def _check_deflated(path: str, start: int, size: int) -> None:
    """Inflate a deflated data set in bounded chunks: refuse a bomb before pydicom inflates it whole."""
    stored = size - start
    cap = inflate_cap(stored)
    try:
        with open(path, "rb") as fh:
            fh.seek(start)
            total = inflated_size(fh, cap)
    except (zlib.error, EOFError) as exc:
        raise _Unusable(f"the deflated data set is corrupt ({exc})") from exc
    if total > cap:
        raise _Unusable(
            f"the deflated data set inflates to more than {size_text(cap)} from {size_text(stored)} "
            f"(over {cap // max(stored, 1)} times): a compression bomb; not read"
        )


def _declared_lengths(ds: pydicom.Dataset, size: int) -> str | None:
    """Check the length each deferred element declares against the file size: a corrupt element is
    unusable; pixel data running past the end is returned as the pixel problem (a truncated file)."""
    for tag in list(ds.keys()):
        elem = ds.get_item(tag, keep_deferred=True)
        if not isinstance(elem, RawDataElement) or elem.value is not None or elem.length == _UNDEFINED_LENGTH:
            continue
        after = max(size - elem.value_tell, 0)
        if elem.value_tell + elem.length <= size:
            continue
        if tag == 0x7FE00010:
            return (f"PixelData declares {size_text(elem.length)}, but the file ends {size_text(after)} "
                    "after its start: the file is truncated")
        name = keyword_for_tag(tag) or "a private element"
        raise _Unusable(
            f"element {Tag(tag)} ({name}) declares {size_text(elem.length)}, but only "
            f"{size_text(after)} follow it in the file (a corrupt length or a truncated file)"
        )
    return None


def _read_header(path: str) -> tuple[pydicom.Dataset, str | None]:
    """The data set without its large elements, and a problem with its pixel data (or None)."""
    size = os.path.getsize(path)
    start = _deflated_start(path)
    if start is not None:
        _check_deflated(path, start, size)
    # a deflated data set lives in memory after inflation: nothing to defer (and no file offsets)
    defer = None if start is not None else _DEFER_BYTES
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ds = pydicom.dcmread(path, defer_size=defer)
        except InvalidDicomError:
            # Files written without the 128-byte preamble are still DICOM if they parse to an image.
            ds = pydicom.dcmread(path, force=True, defer_size=defer)
            if "SOPClassUID" not in ds and "PixelData" not in ds:
                raise
    return ds, (_declared_lengths(ds, size) if start is None else None)


def _number(holder: pydicom.Dataset | None, keyword: str, default: float, kind: type = float):
    """A numeric tag as ``kind``; ``default`` when absent or empty; _Unusable when it does not parse."""
    try:
        value = holder.get(keyword) if holder is not None else None
    except (TypeError, ValueError) as exc:  # pydicom set to raise on invalid values
        raise _Unusable(f"{keyword} is not a number ({exc})") from None
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _Unusable(f"{keyword} {str(value)!r} is not a number") from None
    if not math.isfinite(number):
        raise _Unusable(f"{keyword} {value} is not a finite number")
    return kind(number)


def _floats(holder, keyword: str, n: int) -> np.ndarray | None:
    """A multi-valued numeric tag as ``n`` finite floats; None when absent, _Unusable when wrong."""
    try:
        value = getattr(holder, keyword, None) if holder is not None else None
    except (TypeError, ValueError) as exc:  # pydicom set to raise on invalid values
        raise _Unusable(f"{keyword} is not {n} numbers ({exc})") from None
    if value is None or value == "":
        return None
    values = list(value) if isinstance(value, (list, tuple, MultiValue)) else [value]
    try:
        arr = np.array([float(v) for v in values], dtype=float)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.size != n or not np.all(np.isfinite(arr)):
        shown = "\\".join(map(str, values))
        raise _Unusable(f"{keyword} {shown!r} is not {n} finite numbers")
    return arr


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
    if _number(ds, "SamplesPerPixel", 1, int) != 1:
        return "colour image, not a CT slice"
    if sop.startswith(_SECONDARY_CAPTURE_PREFIX) and _number(ds, "BitsAllocated", 16, int) <= 8:
        return "8-bit secondary capture (a screenshot, not HU)"
    image_type = [str(t).strip().upper() for t in ds.get("ImageType", [])]
    if "LOCALIZER" in image_type or "SCOUT" in image_type:
        return "localizer/scout image"
    ts = ds.file_meta.get("TransferSyntaxUID") if hasattr(ds, "file_meta") else None
    if ts and not UID(str(ts)).is_transfer_syntax and str(ts) not in PrivateTransferSyntaxes:
        return f"TransferSyntaxUID {ts} is not a known transfer syntax: its pixel data cannot be decoded"
    return None


def _rescale(*holders: pydicom.Dataset | None) -> tuple[float, float, list[str]]:
    """RescaleSlope/Intercept from the first holder that has them (identity if none has), and what
    was assumed."""
    for holder in holders:
        if holder is not None and ("RescaleSlope" in holder or "RescaleIntercept" in holder):
            slope = _number(holder, "RescaleSlope", 1.0)
            intercept = _number(holder, "RescaleIntercept", 0.0)
            if slope == 0:
                return 1.0, intercept, ["RescaleSlope 0 taken as 1 (a slope of 0 would make every "
                                        "voxel the intercept)"]
            return slope, intercept, []
    return 1.0, 0.0, []


def _check_pixel_data(ds: pydicom.Dataset, path: str, rows: int, cols: int, n_frames: int) -> None:
    """Refuse a header that declares more pixels than the PixelData present can hold."""
    elem = ds.get_item("PixelData", keep_deferred=True)
    length = elem.length if isinstance(elem, RawDataElement) else len(elem.value or b"")
    bits = _number(ds, "BitsAllocated", 16, int)
    if bits not in (1, 8, 16, 32, 64):
        raise _Unusable(f"BitsAllocated {bits} is not 1, 8, 16, 32 or 64")
    needed = math.ceil(rows * cols * n_frames * bits / 8)
    declared = (f"Rows x Columns x NumberOfFrames x BitsAllocated = {rows} x {cols} x {n_frames} x "
                f"{bits} bits = {size_text(needed)}")
    if length != _UNDEFINED_LENGTH and not getattr(elem, "is_undefined_length", False):
        if needed > length:
            raise _Unusable(f"{declared}, but PixelData holds {size_text(length)}")
        return
    # encapsulated (compressed): one fragment or more per frame, and a plausible compression ratio
    try:
        if isinstance(elem, RawDataElement) and elem.value is None:
            with open(path, "rb") as fh:
                fh.seek(elem.value_tell)
                items, _ = parse_fragments(fh)
                stored = fh.seek(0, os.SEEK_END) - elem.value_tell
        else:
            data = elem.value if isinstance(elem, RawDataElement) else ds.PixelData
            items, _ = parse_fragments(data)
            stored = len(data)
    except Exception as exc:  # parse_fragments raises several types for malformed items
        raise _Unusable(f"the encapsulated PixelData is malformed ({exc})") from exc
    fragments = items - 1  # the first item is the Basic Offset Table (possibly empty)
    if n_frames > max(fragments, 0):
        raise _Unusable(f"NumberOfFrames {n_frames}, but the encapsulated PixelData holds only "
                        f"{max(fragments, 0)} fragment(s)")
    if needed > inflate_cap(stored):
        raise _Unusable(f"{declared}, from {size_text(stored)} of compressed PixelData: more than any "
                        "image compresses to")


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


def _frames_of(ds: pydicom.Dataset, path: str, pixel_problem: str | None
               ) -> tuple[list[_Frame], str | None]:
    rows, cols = _number(ds, "Rows", 0, int), _number(ds, "Columns", 0, int)
    if rows < 1 or cols < 1:
        return [], "no image matrix (Rows/Columns missing)"
    n_frames = _number(ds, "NumberOfFrames", 1, int) or 1
    if n_frames < 1:
        return [], f"NumberOfFrames {n_frames} is not a number of frames"
    if pixel_problem is None:
        _check_pixel_data(ds, path, rows, cols, n_frames)
    series_uid = str(ds.get("SeriesInstanceUID", "")) or f"no-series-uid:{os.path.dirname(path)}"
    sop_uid = str(ds.get("SOPInstanceUID", "")) or path
    file_notes: list[str] = []
    try:
        instance = _number(ds, "InstanceNumber", 0, int)
    except _Unusable as exc:
        instance = 0
        file_notes.append(f"{exc}: ignored (slices are ordered by their position)")
    frames = []
    enhanced = "PerFrameFunctionalGroupsSequence" in ds or "SharedFunctionalGroupsSequence" in ds
    for k in range(n_frames):
        if enhanced:
            pos_item = _functional(ds, k, "PlanePositionSequence")
            ori_item = _functional(ds, k, "PlaneOrientationSequence")
            meas_item = _functional(ds, k, "PixelMeasuresSequence")
            slope, intercept, assumed = _rescale(_functional(ds, k, "PixelValueTransformationSequence"), ds)
        else:
            pos_item = ori_item = meas_item = ds
            slope, intercept, assumed = _rescale(ds)
        position = _floats(pos_item, "ImagePositionPatient", 3)
        orientation = _floats(ori_item, "ImageOrientationPatient", 6)
        spacing = _floats(meas_item, "PixelSpacing", 2)
        if position is None or orientation is None:
            return [], "no ImagePositionPatient/ImageOrientationPatient (cannot place it in 3D)"
        if spacing is None or np.any(spacing <= 0):
            return [], "no valid PixelSpacing"
        row_cos, col_cos = orientation[:3], orientation[3:]
        shown = "\\".join(f"{v:g}" for v in orientation)
        if min(np.linalg.norm(row_cos), np.linalg.norm(col_cos)) < 1e-3:
            return [], f"ImageOrientationPatient {shown} has a zero direction (cannot place it in 3D)"
        row_cos = row_cos / np.linalg.norm(row_cos)
        col_cos = col_cos / np.linalg.norm(col_cos)
        if np.linalg.norm(np.cross(row_cos, col_cos)) < 0.9:
            return [], (f"ImageOrientationPatient {shown}: its row and column directions are not "
                        "perpendicular (cannot place it in 3D)")
        frames.append(_Frame(
            path=path, frame=k if n_frames > 1 else None, dataset=ds, position=position,
            row_cos=row_cos, col_cos=col_cos, pixel_spacing=(float(spacing[0]), float(spacing[1])),
            rows=rows, cols=cols, slope=slope, intercept=intercept, series_uid=series_uid,
            sop_uid=sop_uid, instance_number=instance, notes=tuple(file_notes + assumed),
            pixel_problem=pixel_problem,
        ))
    normal = frames[0].normal
    if abs(normal[2]) < 0.5:
        plane = "sagittal" if abs(normal[0]) >= abs(normal[1]) else "coronal"
        return [], f"not an axial image ({plane} orientation)"
    return frames, None


def _scan(paths) -> tuple[list[_Frame], dict[str, str]]:
    frames: list[_Frame] = []
    files, skipped = _gather(paths)
    seen: set[tuple[str, int | None]] = set()
    for path in files:
        try:
            ds, pixel_problem = _read_header(path)
        except _Unusable as exc:
            skipped[path] = str(exc)
            continue
        except InvalidDicomError:
            skipped[path] = "not a DICOM file"
            continue
        except Exception as exc:  # truncated or corrupt headers raise many different errors
            skipped[path] = f"unreadable DICOM header ({type(exc).__name__}: {exc})"
            continue
        try:
            with warnings.catch_warnings():  # pydicom warns about each invalid value it converts
                warnings.simplefilter("ignore")
                reason = _skip_reason(ds, path)
                if reason is None:
                    new, reason = _frames_of(ds, path, pixel_problem)
        except _Unusable as exc:
            reason = str(exc)
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


def _typical_gap(s: np.ndarray) -> float | None:
    """The median gap between sorted positions ``s``, near-duplicates left out (None if none)."""
    gaps = np.diff(s)
    real = gaps[gaps > DUPLICATE_MM]
    return float(np.median(real)) if real.size else None


def _slice_gap(frames: list[_Frame]) -> float:
    """The slice spacing of sorted frames: the typical gap between positions (robust to a
    near-duplicate or a misplaced slice), or the tags of a single slice."""
    if len(frames) >= 2:
        n = frames[0].normal
        gap = _typical_gap(np.array([_projection(f, n) for f in frames]))
        if gap is not None:
            return gap
    ds = frames[0].dataset
    for kw in ("SpacingBetweenSlices", "SliceThickness"):
        try:
            value = _number(ds, kw, 0.0)
        except _Unusable:
            value = 0.0
        if value > 0:
            return value
    return 1.0


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
    if len(skipped) == 1:
        (path, reason), = skipped.items()
        return f"{where}: no axial CT image found: " + (f"{path}: " if path != str(where) else "") + reason
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
        if ts is not None and UID(str(ts)).is_transfer_syntax and not UID(str(ts)).is_compressed:
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


def _decode_stack(stack: _Stack, source: str, max_voxels: int) -> tuple[np.ndarray, int, list[str]]:
    """HU array (slices, rows, cols) for a stack, how many voxels were set to air, and the files
    that only SimpleITK/GDCM could decode."""
    by_file: dict[str, list[tuple[int, _Frame]]] = defaultdict(list)
    for index, fr in enumerate(stack.frames):
        if fr.pixel_problem:
            raise CTReadError(f"{fr.path}: {fr.pixel_problem}")
        by_file[fr.path].append((index, fr))
    first = stack.first
    check_voxels(source, (len(stack.frames), first.rows, first.cols), max_voxels, "the series")
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
# geometry: misplaced and duplicate slices, tilt and uneven gaps
# ---------------------------------------------------------------------------------------------
def _frame_name(fr: _Frame) -> str:
    return fr.path if fr.frame is None else f"{fr.path} (frame {fr.frame + 1})"


def _on_a_line(s: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Distance of each in-plane offset ``u`` from the line that the others follow along the
    normal ``s`` (a gantry tilt drifts linearly); robust to a few points far off it."""
    ds = np.diff(s)
    ok = ds > DUPLICATE_MM
    slope = float(np.median(np.diff(u)[ok] / ds[ok])) if ok.any() else 0.0
    intercept = float(np.median(u - slope * s))
    return np.abs(u - (intercept + slope * s))


def _screen(stack: _Stack) -> tuple[_Stack, list[str]]:
    """Exclude slices whose ImagePositionPatient is far off the others, before any pixel is read.

    Along the normal: a slice more than ``OUTLIER_GAPS`` typical gaps beyond either end; in-plane:
    a slice off the straight line the others follow. At most a tenth of the slices (at least one)
    are excluded and named; more, or a gap that large inside the stack, is an error.
    """
    frames = stack.frames
    n = len(frames)
    if n < 3:
        return stack, []
    normal = frames[0].normal
    s = np.array([_projection(f, normal) for f in frames])
    typical = _typical_gap(s)
    if typical is None:
        return stack, []
    most = max(1, n // 10)
    keep = list(range(n))
    far: list[int] = []
    limit = OUTLIER_GAPS * typical
    while len(far) < most and len(keep) > 2:
        first, last = s[keep[1]] - s[keep[0]], s[keep[-1]] - s[keep[-2]]
        if max(first, last) <= limit:
            break
        far.append(keep.pop(0) if first >= last else keep.pop())
    gaps = np.diff(s[keep])
    if gaps.size and gaps.max() > limit:
        k = int(np.argmax(gaps))
        a, b = frames[keep[k]], frames[keep[k + 1]]
        raise CTReadError(
            f"{_frame_name(a)} and {_frame_name(b)}: {gaps[k]:.4g} mm apart along the slice normal, "
            f"{gaps[k] / typical:.0f} times the typical gap of {typical:.3g} mm (ImagePositionPatient); "
            "a wrong position, or two series in one: load the parts as separate lists of files"
        )
    positions = np.array([frames[k].position for k in keep])
    rel = positions - positions[0]
    dy, dx = frames[0].pixel_spacing
    off = np.hypot(_on_a_line(s[keep], rel @ frames[0].row_cos), _on_a_line(s[keep], rel @ frames[0].col_cos))
    astray = [keep[k] for k in np.flatnonzero(off > max(1.0, 2 * max(dx, dy)))]
    if len(far) + len(astray) > most:
        worst = keep[int(np.argmax(off))]
        raise CTReadError(
            f"{stack.key}: the ImagePositionPatient of {len(far) + len(astray)} of {n} slices is off the "
            f"line the others follow (e.g. {_frame_name(frames[worst])}, {off.max():.4g} mm off); "
            "cannot build one volume"
        )
    if not far and not astray:
        return stack, []
    dropped = set(far + astray)
    notes = [f"{_frame_name(frames[k])}: ImagePositionPatient "
             f"{'/'.join(f'{v:.6g}' for v in frames[k].position)} is far from the other slices "
             f"(typical gap {typical:.3g} mm): slice excluded" for k in sorted(dropped)]
    kept = [f for k, f in enumerate(frames) if k not in dropped]
    return _Stack(key=stack.key, frames=kept, notes=stack.notes), notes


def _drop_duplicates(hu: np.ndarray, stack: _Stack) -> tuple[np.ndarray, _Stack, list[str]]:
    """Slices at (nearly) the same position: one is kept when their pixels are identical; with
    different pixels neither can be trusted, and the files are named in a CTReadError."""
    frames = stack.frames
    normal = frames[0].normal
    s = np.array([_projection(f, normal) for f in frames])
    typical = _typical_gap(s)
    tolerance = max(DUPLICATE_MM, DUPLICATE_FRACTION * typical) if typical else DUPLICATE_MM
    keep = [0]
    notes = []
    for k in range(1, len(frames)):
        gap = s[k] - s[keep[-1]]
        if gap >= tolerance:
            keep.append(k)
            continue
        a, b = frames[keep[-1]], frames[k]
        if not np.array_equal(hu[keep[-1]], hu[k]):
            raise CTReadError(
                f"{_frame_name(a)} and {_frame_name(b)}: two slices {gap:.3g} mm apart along the slice "
                "normal (ImagePositionPatient) with different pixels; cannot tell which belongs in "
                "the volume"
            )
        notes.append(f"{_frame_name(b)}: a duplicate of {_frame_name(a)} ({gap:.3g} mm apart, identical "
                     "pixels): dropped")
    if len(keep) == len(frames):
        return hu, stack, []
    return hu[keep], _Stack(key=stack.key, frames=[frames[k] for k in keep], notes=stack.notes), notes


def _regularise(hu: np.ndarray, stack: _Stack, source: str, max_voxels: int
                ) -> tuple[np.ndarray, np.ndarray, float, list[str]]:
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
        return hu, positions[0], _slice_gap(stack.frames), [
            "single slice: slice spacing taken from SliceThickness/SpacingBetweenSlices"
        ]

    # In-plane offset of each slice relative to the stack's mean, in pixels (columns, rows).
    rel = positions - positions[0]
    in_plane = np.stack([rel @ f0.row_cos / dx, rel @ f0.col_cos / dy], axis=1)
    extent = abs(s[-1] - s[0])
    shift_mm = np.hypot(*(in_plane[-1] - in_plane[0]) * np.array([dx, dy]))
    if shift_mm > max(0.01, 1e-4 * extent):
        tilt = np.degrees(np.arctan2(shift_mm, extent))
        if tilt > _MAX_TILT_DEGREES:
            raise CTReadError(
                f"{_frame_name(stack.frames[0])} and {_frame_name(stack.frames[-1])}: {shift_mm:.4g} mm apart "
                f"in-plane over {extent:.4g} mm along the normal (ImagePositionPatient), a tilt of "
                f"{tilt:.0f} degrees: not a gantry tilt; cannot build one volume"
            )
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
        # the smallest gap keeps every slice sharp, within MAX_RESAMPLE_FACTOR times the slices given
        step = float(np.min(gaps))
        n_out = int(np.floor(extent / step + 1e-6)) + 1
        most = MAX_RESAMPLE_FACTOR * len(s)
        limited = n_out > most
        if limited:
            step, n_out = extent / (most - 1), most
        check_voxels(source, (n_out, f0.rows, f0.cols), max_voxels, "the resampled volume")
        targets = s[0] + step * np.arange(n_out)
        upper = np.clip(np.searchsorted(s, targets, side="right"), 1, len(s) - 1)
        lower = upper - 1
        w = np.clip((targets - s[lower]) / (s[upper] - s[lower]), 0.0, 1.0).astype(np.float32)
        out = np.empty((n_out,) + hu.shape[1:], dtype=np.float32)
        for k in range(n_out):  # slice by slice: no temporary of the whole output
            np.multiply(hu[lower[k]], 1 - w[k], out=out[k])
            out[k] += w[k] * hu[upper[k]]
        hu = out
        notes.append(
            f"uneven slice gaps ({gaps.min():.2f}..{gaps.max():.2f} mm) resampled to a regular "
            f"{step:.2f} mm grid by linear interpolation ({len(s)} -> {n_out} slices"
            + (f", at most {MAX_RESAMPLE_FACTOR} times the slices given)" if limited else ")")
        )
        spacing = step
    else:
        spacing = float((s[-1] - s[0]) / (len(s) - 1))
    origin = positions[0]
    return hu.astype(np.float32, copy=False), origin, spacing, notes


# ---------------------------------------------------------------------------------------------
# public entry points
# ---------------------------------------------------------------------------------------------
def _assumptions(stack: _Stack) -> list[str]:
    """What was assumed about the headers of the stack's files, once per kind."""
    files: dict[str, list[str]] = defaultdict(list)
    for fr in stack.frames:
        for note in fr.notes:
            if fr.path not in files[note]:
                files[note].append(fr.path)
    return [f"{note}: {len(paths)} file(s), e.g. {paths[0]}" for note, paths in files.items()]


def read_dicom(paths: str | os.PathLike | Iterable[str | os.PathLike], *, series: str | None = None,
               max_voxels: int = MAX_VOXELS) -> CTVolume:
    """Read a DICOM CT series.

    Parameters
    ----------
    paths : path or sequence of paths
        A folder (searched recursively), one file, or a list of files.
    series : str, optional
        The ``key`` of a :class:`SeriesInfo` from :func:`scan_dicom`; by default the largest axial
        CT series is read and the others are listed in ``other_series``.
    max_voxels : int, optional
        The largest volume to allocate, checked before the pixels are decoded and before resampling.

    Returns
    -------
    CTVolume

    Raises
    ------
    CTReadError
        When nothing readable is found, the series key is unknown, pixel data cannot be decoded
        (the message names the file and its transfer syntax), two slices at the same position
        differ, or the positions cannot make one volume.
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
    others = [s.info() for s in stacks if s is not chosen]
    source = str(paths) if isinstance(paths, (str, os.PathLike)) else f"{len(paths)} files"
    chosen, excluded = _screen(chosen)
    hu, aired, via_gdcm = _decode_stack(chosen, source, max_voxels)
    hu, chosen, duplicates = _drop_duplicates(hu, chosen)
    hu, origin_lps, dz, notes = _regularise(hu, chosen, source, max_voxels)

    f0 = chosen.first
    direction = np.stack([f0.normal[::-1], f0.col_cos[::-1], f0.row_cos[::-1]], axis=1)
    ds = f0.dataset
    notes = _describe_skipped(skipped) + excluded + duplicates + _assumptions(chosen) + notes
    if via_gdcm:
        notes.append(f"{len(via_gdcm)} file(s) decoded with SimpleITK/GDCM (pydicom's decoders "
                     f"could not), e.g. {via_gdcm[0]}")
    if aired:
        notes.append(f"{aired} padding or out-of-field voxels set to air ({AIR_HU:.0f} HU)")
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
        source=source,
        source_files=tuple(sorted({f.path for f in chosen.frames})),
        source_format="dicom",
        notes=notes,
        other_series=others,
        meta=meta,
    )
