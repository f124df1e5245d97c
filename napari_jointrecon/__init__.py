"""napari-jointrecon: low-dose CT in napari.

Public API (plain Python, no Qt needed)::

    import napari_jointrecon as nj
    ct = nj.load_ct("path/to/dicom_folder")
    low = nj.simulate_low_dose(ct, 0.25, seed=0)
    clean = nj.denoise(low, model="unet", dose=0.25)
    nj.write_nifti(clean, "out.nii.gz")
"""

from __future__ import annotations

from .errors import CTReadError, CTWriteError
# ``batch`` is both a submodule and its function: binding the function here, after the submodule
# is imported, keeps ``nj.batch`` the function (importing the submodule later would otherwise
# replace a lazy name with the module). The module is light: Dask, pandas and torch load on use.
from .batch import batch
from .io import load_ct, scan_series
from .io.write import write_dicom_series, write_nifti
from .volume import CTVolume, SeriesInfo
from .windows import WINDOW_PRESETS, window_limits

__version__ = "0.1.0"

# torch-backed parts load on first use, so that reading CT (and napari's plugin discovery) stays fast
_LAZY = {
    "simulate_low_dose": "dose",
    "denoise": "inference",
    "select_device": "inference",
    "select_runtime": "inference",
    "Cancelled": "inference",
    "list_models": "models.registry",
    "predict_point_cloud": "joint",
    "reference_point_cloud": "pointcloud",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "CTVolume",
    "SeriesInfo",
    "CTReadError",
    "CTWriteError",
    "load_ct",
    "simulate_low_dose",
    "list_models",
    "denoise",
    "select_device",
    "select_runtime",
    "Cancelled",
    "predict_point_cloud",
    "reference_point_cloud",
    "batch",
    "scan_series",
    "write_nifti",
    "write_dicom_series",
    "WINDOW_PRESETS",
    "window_limits",
]
