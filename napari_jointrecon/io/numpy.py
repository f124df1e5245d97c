"""NumPy arrays (``.npy``/``.npz``) taken as HU with unit spacing.

The ``.npy`` header (shape, dtype) is read first and checked against the bytes the file or archive
member holds, the voxel limit and, for a compressed ``.npz`` member, the inflation cap; only then is
the array read.
"""

from __future__ import annotations

import os
import zipfile

import numpy as np

from ..errors import CTReadError
from ..volume import CTVolume
from .guard import MAX_VOXELS, check_inflation, check_voxels, size_text

__all__ = ["read_numpy"]

#: The members of a ``.npz`` that may hold the volume, in the order they are looked for.
NPZ_KEYS = ("hu", "volume", "image", "arr_0")
#: ``spacing``/``origin`` members are three numbers: anything larger is not one.
_SMALL_MEMBER = 4096


def _npy_header(fh, where: str) -> tuple[tuple[int, ...], np.dtype, bool]:
    """Shape, dtype and Fortran order from the header of a ``.npy`` stream (the stream is left at
    the start of the data)."""
    try:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            raise ValueError(f"NumPy format version {version[0]}.{version[1]} (structured arrays) is not a CT volume")
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise CTReadError(f"{where}: not a readable NumPy array ({exc})") from exc
    return tuple(int(n) for n in shape), dtype, fortran


def _check_array(where: str, shape: tuple[int, ...], dtype: np.dtype, held: int, max_voxels: int) -> None:
    """Refuse before reading: wrong types, wrong dimensions, and data the file does not hold."""
    if dtype.hasobject or dtype.kind not in "biuf":
        raise CTReadError(f"{where}: array of type {dtype}; expected real numbers in HU")
    if len(shape) not in (2, 3):
        raise CTReadError(f"{where}: array of shape {shape}; a CT volume must be 2D or 3D (z, y, x)")
    needed = int(np.prod(shape, dtype=object)) * dtype.itemsize
    if needed > held:
        raise CTReadError(
            f"{where}: the header declares shape {shape} of {dtype} = {size_text(needed)}, but the file "
            f"holds {size_text(held)} of data (truncated or a wrong header)"
        )
    check_voxels(where, shape, max_voxels, "the array")


def _read_npy(path: str, max_voxels: int) -> np.ndarray:
    with open(path, "rb") as fh:
        shape, dtype, _ = _npy_header(fh, path)
        _check_array(path, shape, dtype, os.fstat(fh.fileno()).st_size - fh.tell(), max_voxels)
        fh.seek(0)
        return np.lib.format.read_array(fh, allow_pickle=False)


def _read_member(zf: zipfile.ZipFile, path: str, name: str, max_voxels: int,
                 *, small: bool = False) -> np.ndarray:
    """One array of an open ``.npz``, its sizes checked before it is inflated."""
    where = f"{path}: member '{name}'"
    info = zf.getinfo(f"{name}.npy")
    if small and info.file_size > _SMALL_MEMBER:
        raise CTReadError(f"{where} holds {size_text(info.file_size)}; expected 3 numbers (z, y, x)")
    if info.compress_type != zipfile.ZIP_STORED:
        check_inflation(path, f"member '{name}'", info.file_size, info.compress_size)
    with zf.open(info) as fh:
        shape, dtype, _ = _npy_header(fh, where)
        held = info.file_size - fh.tell()
        if small:
            if dtype.kind not in "biuf" or int(np.prod(shape)) * dtype.itemsize > held:
                raise CTReadError(f"{where}: array of shape {shape} and type {dtype}; expected 3 numbers")
        else:
            _check_array(where, shape, dtype, held, max_voxels)
    with zf.open(info) as fh:
        return np.lib.format.read_array(fh, allow_pickle=False)


def _vector(path: str, name: str, values: np.ndarray, *, positive: bool) -> tuple[float, float, float]:
    """A ``spacing``/``origin`` member as three finite floats."""
    if values.ndim != 1 or values.size != 3:
        shown = f"a single number ({values.item()!r}, a 0-d array)" if values.ndim == 0 else f"shape {values.shape}"
        raise CTReadError(f"{path}: '{name}' is {shown}; expected 3 values (z, y, x) in mm")
    floats = tuple(float(v) for v in values)
    if not np.all(np.isfinite(floats)) or (positive and min(floats) <= 0):
        need = "positive and finite" if positive else "finite"
        raise CTReadError(f"{path}: '{name}' is {floats}; each value must be {need} (mm)")
    return floats


def _read_npz(path: str, max_voxels: int) -> tuple[np.ndarray, tuple, tuple, str]:
    """The volume, spacing, origin (None when absent) and the member name of an ``.npz``."""
    with zipfile.ZipFile(path) as zf:
        names = [n[:-4] for n in zf.namelist() if n.endswith(".npy")]
        if not names:
            raise CTReadError(f"{path}: the .npz archive holds no array")
        key = next((k for k in NPZ_KEYS if k in names), None)
        if key is None:
            raise CTReadError(
                f"{path}: no 'hu' array in the .npz (it holds {', '.join(repr(n) for n in names[:8])}); "
                f"save the volume in HU as 'hu' (or {', '.join(repr(k) for k in NPZ_KEYS[1:])})"
            )
        arr = _read_member(zf, path, key, max_voxels)
        spacing = origin = None
        if "spacing" in names:
            spacing = _vector(path, "spacing", _read_member(zf, path, "spacing", max_voxels, small=True),
                              positive=True)
        if "origin" in names:
            origin = _vector(path, "origin", _read_member(zf, path, "origin", max_voxels, small=True),
                             positive=False)
    return arr, spacing, origin, key


def read_numpy(path: str | os.PathLike, *, max_voxels: int = MAX_VOXELS) -> CTVolume:
    """Read a ``.npy`` array, or the ``hu`` (else ``volume``, ``image``, ``arr_0``) array of a ``.npz``.

    A ``.npz`` may carry ``spacing`` and ``origin`` (z, y, x, mm); otherwise 1 mm and 0 are used
    and the volume's notes say so.

    Raises
    ------
    CTReadError
        For unreadable files, object, complex and text arrays, arrays that are not 2D or 3D, an
        ``.npz`` without any of the names above, headers that declare more data than the file
        holds, and volumes over ``max_voxels``.
    """
    path = str(path)
    spacing = origin = None
    notes = []
    try:
        if path.lower().endswith(".npz"):
            arr, spacing, origin, key = _read_npz(path, max_voxels)
            if key != "hu":
                notes.append(f"the .npz has no 'hu' array: its '{key}' array was taken as HU")
        else:
            arr = _read_npy(path, max_voxels)
    except CTReadError:
        raise
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise CTReadError(f"{path}: not a readable NumPy file ({exc})") from exc
    if arr.ndim == 2:
        arr = arr[None]
        notes.append("2D array: loaded as a single slice")
    if spacing is None:
        notes.append("NumPy array: values taken as HU, spacing assumed 1 mm (the file has none)")
    hu = arr.astype(np.float32)
    if hu.size and (float(np.min(hu)) >= 0 or float(np.max(hu)) > 40000):
        notes.append("values from {:g} to {:g}: these may not be Hounsfield units (air is about -1000 HU, "
                     "bone a few thousand)".format(float(np.min(hu)), float(np.max(hu))))
    return CTVolume(
        hu=hu,
        spacing=spacing or (1.0, 1.0, 1.0),
        origin=origin or (0.0, 0.0, 0.0),
        modality="",
        series_description=os.path.basename(path),
        source=path,
        source_files=(path,),
        source_format="numpy",
        notes=notes,
    )
