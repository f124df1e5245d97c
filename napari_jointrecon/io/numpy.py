"""NumPy arrays (``.npy``/``.npz``) taken as HU with unit spacing."""

from __future__ import annotations

import os

import numpy as np

from ..errors import CTReadError
from ..volume import CTVolume

__all__ = ["read_numpy"]

_NPZ_KEYS = ("hu", "volume", "image", "arr_0")


def read_numpy(path: str | os.PathLike) -> CTVolume:
    """Read a ``.npy`` array, or the ``hu``/``volume``/``image``/first array of a ``.npz``.

    A ``.npz`` may carry ``spacing`` and ``origin`` (z, y, x, mm); otherwise 1 mm and 0 are used
    and the volume's notes say so.

    Raises
    ------
    CTReadError
        For unreadable files, object arrays, and arrays that are not 2D or 3D.
    """
    path = str(path)
    spacing: tuple = (1.0, 1.0, 1.0)
    origin: tuple = (0.0, 0.0, 0.0)
    notes = []
    try:
        if path.lower().endswith(".npz"):
            with np.load(path, allow_pickle=False) as npz:
                names = list(npz.files)
                if not names:
                    raise CTReadError(f"{path}: the .npz archive holds no array")
                key = next((k for k in _NPZ_KEYS if k in names), names[0])
                arr = npz[key]
                if "spacing" in names:
                    spacing = tuple(float(v) for v in npz["spacing"])
                if "origin" in names:
                    origin = tuple(float(v) for v in npz["origin"])
        else:
            arr = np.load(path, allow_pickle=False)
    except CTReadError:
        raise
    except (ValueError, OSError, EOFError) as exc:
        raise CTReadError(f"{path}: not a readable NumPy file ({exc})") from exc
    if not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool) or np.iscomplexobj(arr):
        raise CTReadError(f"{path}: array of type {arr.dtype}; expected real numbers in HU")
    if arr.ndim == 2:
        arr = arr[None]
        notes.append("2D array: loaded as a single slice")
    elif arr.ndim != 3:
        raise CTReadError(f"{path}: array of shape {arr.shape}; a CT volume must be 2D or 3D (z, y, x)")
    if spacing == (1.0, 1.0, 1.0):
        notes.append("NumPy array: values taken as HU, spacing assumed 1 mm (the file has none)")
    hu = arr.astype(np.float32)
    if hu.size and (float(np.min(hu)) >= 0 or float(np.max(hu)) > 40000):
        notes.append("values from {:g} to {:g}: these may not be Hounsfield units (air is about -1000 HU, "
                     "bone a few thousand)".format(float(np.min(hu)), float(np.max(hu))))
    try:
        return CTVolume(
            hu=hu,
            spacing=spacing,
            origin=origin,
            modality="",
            series_description=os.path.basename(path),
            source=path,
            source_files=(path,),
            source_format="numpy",
            notes=notes,
        )
    except ValueError as exc:  # e.g. a spacing of two values, or of zero
        raise CTReadError(f"{path}: {exc}") from exc
