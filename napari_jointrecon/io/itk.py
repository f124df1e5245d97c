"""NIfTI, MetaImage and NRRD through SimpleITK.

SimpleITK reads the voxels; before it does, the header is read on its own (SimpleITK's
``ReadImageInformation``, and the raw NIfTI / MetaImage / NRRD header) and the size it declares is
checked against the bytes the file holds, the voxel limit and the inflation cap. NIfTI data is also
streamed once: SimpleITK zero-fills a truncated file, ignores a gzip CRC error and turns NaN into 0,
so the stream is what tells them apart.
"""

from __future__ import annotations

import gzip
import os
import struct
import warnings
import zlib
from dataclasses import dataclass

import numpy as np

from ..errors import CTReadError
from ..volume import CTVolume
from .guard import (CHUNK, MAX_VOXELS, check_inflation, check_voxels, count_nonfinite, inflate_cap,
                    nonfinite_message, path_problem, size_text)

__all__ = ["read_itk", "ITK_SUFFIXES"]

#: A text header (MetaImage, NRRD) longer than this is not one.
_TEXT_HEADER_LIMIT = 2**20

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


# ---------------------------------------------------------------------------------------------
# NIfTI header: sizes, type and voxel size, read with struct before SimpleITK reads the voxels
# ---------------------------------------------------------------------------------------------
#: NIfTI datatype code -> numpy type (RGB types have no single one: None)
_NIFTI_TYPES = {2: "u1", 4: "i2", 8: "i4", 16: "f4", 32: "c8", 64: "f8", 128: None, 256: "i1",
                512: "u2", 768: "u4", 1024: "i8", 1280: "u8", 1536: "f16", 1792: "c16", 2048: "c32",
                2304: None}


@dataclass
class _Nifti:
    shape: tuple[int, ...]  # dim[1..dim[0]]
    dtype: np.dtype | None
    itemsize: int
    offset: int  # vox_offset: where the voxels start
    pixdim: tuple[float, ...]  # pixdim[1..3]

    @property
    def data_bytes(self) -> int:
        return int(np.prod(self.shape, dtype=object)) * self.itemsize


def _nifti_header(path: str, raw: bytes) -> _Nifti:
    for endian in "<>":
        if len(raw) >= 4 and struct.unpack(endian + "i", raw[:4])[0] in (348, 540):
            break
    else:
        raise CTReadError(f"{path}: not a NIfTI file (sizeof_hdr is neither 348 nor 540)")
    e = endian
    if struct.unpack(e + "i", raw[:4])[0] == 348:
        if len(raw) < 348:
            raise CTReadError(f"{path}: the NIfTI header is cut short ({len(raw)} of 348 bytes)")
        dims = struct.unpack(e + "8h", raw[40:56])
        datatype, bitpix = struct.unpack(e + "hh", raw[70:74])
        pixdim = struct.unpack(e + "8f", raw[76:108])
        offset, header = struct.unpack(e + "f", raw[108:112])[0], 352
    else:
        if len(raw) < 540:
            raise CTReadError(f"{path}: the NIfTI-2 header is cut short ({len(raw)} of 540 bytes)")
        datatype, bitpix = struct.unpack(e + "hh", raw[12:16])
        dims = struct.unpack(e + "8q", raw[16:80])
        pixdim = struct.unpack(e + "8d", raw[104:168])
        offset, header = struct.unpack(e + "q", raw[168:176])[0], 544
    ndim = dims[0]
    if not 1 <= ndim <= 7:
        raise CTReadError(f"{path}: NIfTI dim[0] = {ndim} is not a number of dimensions (1-7)")
    shape = tuple(int(n) for n in dims[1:ndim + 1])
    if min(shape) < 1:
        raise CTReadError(f"{path}: NIfTI dim = {list(shape)}: every size must be at least 1")
    if datatype in (32, 1792, 2048):
        raise CTReadError(f"{path}: complex voxels (NIfTI datatype {datatype}); a CT volume needs real "
                          "numbers in HU (the NumPy reader refuses complex arrays too)")
    code = _NIFTI_TYPES.get(datatype)  # None: RGB or an unknown code
    try:
        dtype = np.dtype(code).newbyteorder(e) if code else None
    except TypeError:  # float128 where numpy has none
        dtype = None
    itemsize = dtype.itemsize if dtype is not None else max(int(bitpix), 8) // 8
    offset = int(offset) if np.isfinite(offset) and offset >= header else header
    return _Nifti(shape, dtype, itemsize, offset, tuple(float(v) for v in pixdim[1:4]))


def _scan_nifti_gz(path: str, nii: _Nifti, stored: int) -> tuple[int, int]:
    """Inflate a ``.nii.gz`` once, in bounded chunks: its inflated size and its non-finite voxels.

    The gzip module checks the CRC and the length in the gzip trailer, so a damaged or truncated
    file fails here instead of loading with zeros or wrong values.
    """
    float_data = nii.dtype is not None and nii.dtype.kind == "f"
    cap = inflate_cap(stored)
    total = nonfinite = 0
    pending = b""
    end = nii.offset + nii.data_bytes
    try:
        with gzip.open(path, "rb") as fh:
            while chunk := fh.read(CHUNK):
                start, total = total, total + len(chunk)
                if total > cap:
                    check_inflation(path, "the gzip data", total, stored)
                lo, hi = max(nii.offset - start, 0), min(end - start, len(chunk))
                if float_data and hi > lo:
                    data = pending + chunk[lo:hi]
                    usable = len(data) - len(data) % nii.itemsize
                    nonfinite += count_nonfinite(np.frombuffer(data[:usable], nii.dtype))
                    pending = data[usable:]
    except EOFError as exc:
        raise CTReadError(
            f"{path}: the gzip data ends early: the file is truncated (its header declares "
            f"{size_text(nii.data_bytes)} of voxels)"
        ) from exc
    except (gzip.BadGzipFile, zlib.error, OSError) as exc:
        raise CTReadError(f"{path}: the gzip data is corrupt ({exc}); the voxels cannot be trusted") from exc
    return total, nonfinite


def _nonfinite_in_file(path: str, nii: _Nifti) -> int:
    """Non-finite voxels of an uncompressed float ``.nii``, read through a memory map in chunks."""
    if nii.dtype is None or nii.dtype.kind != "f":
        return 0
    count = int(np.prod(nii.shape, dtype=object))
    data = np.memmap(path, dtype=nii.dtype, mode="r", offset=nii.offset, shape=(count,))
    step = CHUNK // nii.itemsize
    return sum(count_nonfinite(np.asarray(data[k:k + step])) for k in range(0, count, step))


def _check_nifti(path: str, max_voxels: int) -> list[int]:
    """Check a NIfTI file's declared size, integrity and values; the axes (0 = x) whose pixdim is
    0 or not a number."""
    gz = path.lower().endswith(".gz")
    stored = os.path.getsize(path)
    try:
        with (gzip.open(path, "rb") if gz else open(path, "rb")) as fh:
            raw = fh.read(544)
    except (EOFError, gzip.BadGzipFile, zlib.error, OSError) as exc:
        raise CTReadError(f"{path}: not a readable NIfTI file ({exc})") from exc
    nii = _nifti_header(path, raw)
    declared = (f"the header declares {' x '.join(map(str, nii.shape))} voxels of {nii.itemsize} "
                f"byte(s) = {size_text(nii.data_bytes)}")
    if gz:
        check_inflation(path, f"{declared}, which", nii.offset + nii.data_bytes, stored)
    elif nii.offset + nii.data_bytes > stored:
        raise CTReadError(f"{path}: {declared}, but the file holds {size_text(max(stored - nii.offset, 0))} "
                          f"after the header (truncated file or wrong header)")
    check_voxels(path, nii.shape, max_voxels)
    if gz:
        total, nonfinite = _scan_nifti_gz(path, nii, stored)
        if total < nii.offset + nii.data_bytes:
            raise CTReadError(f"{path}: {declared}, but the gzip data inflates to only "
                              f"{size_text(max(total - nii.offset, 0))} of voxels")
    else:
        nonfinite = _nonfinite_in_file(path, nii)
    if nonfinite:
        raise CTReadError(nonfinite_message(path, nonfinite))
    return [k for k, v in enumerate(nii.pixdim[:len(nii.shape)]) if not np.isfinite(v) or v == 0]


# ---------------------------------------------------------------------------------------------
# MetaImage and NRRD text headers: where the voxels are and how they are encoded
# ---------------------------------------------------------------------------------------------
@dataclass
class _Layout:
    data_files: tuple[str, ...]  # detached data files ((): after the header in the file itself)
    header_end: int  # bytes of header before attached data
    encoding: str  # "raw", "compressed", "ascii", "hex", or "" (not checked: lists, patterns)
    skip: int  # bytes skipped at the start of the data
    compressed_size: int = 0  # MetaImage CompressedDataSize (0: not stated)


def _text_header(path: str, fmt: str) -> _Layout:
    with open(path, "rb") as fh:
        head = fh.read(_TEXT_HEADER_LIMIT)
    keys: dict[str, str] = {}
    pos = 0
    end = None
    sep = b"=" if fmt == "metaimage" else b":"
    lines = head.split(b"\n")
    for k, line in enumerate(lines):
        pos += len(line) + 1
        if k == len(lines) - 1:
            break  # an incomplete last line: the header did not end within the limit
        if fmt == "nrrd" and not line.strip():
            end = pos
            break
        key, _, value = line.partition(sep)
        key = key.strip().decode("latin-1").lower()
        keys[key] = value.strip().lstrip(b"=").strip().decode("latin-1")
        if fmt == "metaimage" and key == "elementdatafile":
            end = pos
            break
    if end is None:
        if path.lower().endswith((".mhd", ".nhdr")):
            end = len(head)
        else:
            raise CTReadError(f"{path}: no end of the {fmt} header in its first "
                              f"{size_text(_TEXT_HEADER_LIMIT)}")
    if fmt == "metaimage":
        name = keys.get("elementdatafile", "LOCAL")
        encoding = "compressed" if keys.get("compresseddata", "").lower() == "true" else "raw"
        skip = keys.get("headersize", "0")
    else:
        name = keys.get("data file", keys.get("datafile", "LOCAL"))
        encoding = {"raw": "raw", "gzip": "compressed", "gz": "compressed", "bzip2": "compressed",
                    "bz2": "compressed", "ascii": "ascii", "text": "ascii", "txt": "ascii",
                    "hex": "hex"}.get(keys.get("encoding", "raw").lower(), "")
        skip = keys.get("byte skip", "0")
    try:
        skip_bytes = max(int(skip), 0)
        compressed_size = max(int(keys.get("compresseddatasize", "0")), 0)
    except ValueError:
        skip_bytes = compressed_size = 0
    if name.upper() == "LOCAL":
        return _Layout((), end, encoding, skip_bytes, compressed_size)
    if name.upper().startswith("LIST") or "%" in name or " " in name:
        return _Layout((), end, "", 0)  # a list or pattern of files: left to SimpleITK
    return _Layout((os.path.join(os.path.dirname(path), name),), end, encoding, skip_bytes, compressed_size)


def _check_text_format(path: str, fmt: str, size: tuple[int, ...], itemsize: int) -> None:
    """MetaImage/NRRD: the voxels the header declares must fit in the data the file(s) hold."""
    layout = _text_header(path, fmt)
    if not layout.encoding:
        return
    if layout.data_files:
        held = 0
        for data_file in layout.data_files:
            problem = path_problem(data_file)
            if problem is not None:
                raise CTReadError(f"{path}: its data file {data_file}: {problem}")
            held += os.path.getsize(data_file)
    else:
        held = os.path.getsize(path) - layout.header_end
    held = max(held - layout.skip, 0)
    voxels = int(np.prod(size, dtype=object))
    needed = voxels * itemsize
    declared = f"the header declares {' x '.join(map(str, size))} voxels = {size_text(needed)}"
    if layout.encoding == "compressed":
        if layout.compressed_size > held:
            raise CTReadError(f"{path}: CompressedDataSize is {size_text(layout.compressed_size)}, but the "
                              f"file holds {size_text(held)} of voxel data (truncated file)")
        check_inflation(path, f"{declared}, which", needed, held)
        return
    # text needs at least one character per voxel (ascii) or two per byte (hex)
    least = {"raw": needed, "ascii": voxels, "hex": 2 * needed}[layout.encoding]
    if least > held:
        raise CTReadError(f"{path}: {declared}, but the file holds {size_text(held)} of voxel data "
                          "(truncated file or wrong header)")


# ---------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------
def _information(path: str, fmt: str):
    """SimpleITK's reader with only the header read (size, pixel type, geometry)."""
    import SimpleITK as sitk

    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reader.ReadImageInformation()
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise CTReadError(f"{path}: not a readable {fmt} image ({first[-1] if first else exc})") from exc
    return reader


def _itemsize(reader) -> tuple[int, str]:
    """Bytes per voxel component and the type's name."""
    import SimpleITK as sitk

    pixel = reader.GetPixelID()
    name = sitk.GetPixelIDValueAsString(pixel)
    sizes = {sitk.sitkUInt8: 1, sitk.sitkInt8: 1, sitk.sitkUInt16: 2, sitk.sitkInt16: 2,
             sitk.sitkUInt32: 4, sitk.sitkInt32: 4, sitk.sitkUInt64: 8, sitk.sitkInt64: 8,
             sitk.sitkFloat32: 4, sitk.sitkFloat64: 8}
    return sizes.get(pixel, 1), name


def read_itk(path: str | os.PathLike, fmt: str, *, max_voxels: int = MAX_VOXELS) -> CTVolume:
    """Read a NIfTI/MetaImage/NRRD file as a CT volume (values taken as HU).

    Raises
    ------
    CTReadError
        For files SimpleITK cannot read, colour, complex and 4D images, headers declaring more
        voxels than the file holds (or than ``max_voxels``), damaged or truncated NIfTI data, and
        NaN or infinite voxels.
    """
    import SimpleITK as sitk

    path = str(path)
    info = _information(path, fmt)
    itemsize, type_name = _itemsize(info)
    if "complex" in type_name.lower():
        raise CTReadError(f"{path}: complex voxels ({type_name}); a CT volume needs real numbers in HU")
    if info.GetNumberOfComponents() != 1:
        raise CTReadError(
            f"{path}: {info.GetNumberOfComponents()} values per voxel (a colour or vector "
            "image); a CT volume has one value per voxel"
        )
    size = tuple(info.GetSize())
    if len(size) == 4 and size[3] != 1:
        raise CTReadError(
            f"{path}: 4D image ({' x '.join(map(str, size))}, e.g. a time series); "
            "a CT volume must be 3D"
        )
    if fmt == "nifti":
        bad_pixdim = _check_nifti(path, max_voxels)
    else:
        _check_text_format(path, fmt, size, itemsize)
        bad_pixdim = []
    check_voxels(path, size, max_voxels)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = sitk.ReadImage(path)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise CTReadError(f"{path}: not a readable {fmt} image ({first[-1] if first else exc})") from exc
    notes: list[str] = []
    dim = image.GetDimension()
    if dim == 4:
        image = image[:, :, :, 0]
        notes.append("4D image with a single time point: loaded as 3D")
    elif dim == 2:
        image = sitk.JoinSeries(image)
        notes.append("2D image: loaded as a single slice with 1 mm slice spacing")
    elif dim != 3:
        raise CTReadError(f"{path}: {dim}D image; a CT volume must be 3D")
    for axis in bad_pixdim:
        notes.append(f"NIfTI pixdim[{axis + 1}] (voxel size along {'xyz'[axis]}) is 0 or not a number: "
                     f"{image.GetSpacing()[axis]:g} mm assumed")
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
    fmt = "metaimage" if path.lower().endswith(".mhd") else "nrrd"
    return _text_header(path, fmt).data_files
