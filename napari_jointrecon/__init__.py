"""napari-jointrecon: low-dose CT in napari.

Public API (plain Python, no Qt needed)::

    import napari_jointrecon as nj
    ct = nj.load_ct("path/to/dicom_folder")
    low = nj.simulate_low_dose(ct, 0.25, seed=0)
    clean = nj.denoise(low, model="unet", dose=0.25)
    mean, sd, *_ = nj.denoise_with_uncertainty(low, model="diffusion", samples=8, seed=0)  # once trained
    nj.write_nifti(clean, "out.nii.gz")
"""

from __future__ import annotations

from .errors import CTReadError, CTWriteError
# ``batch`` is both a submodule and its function: binding the function here, after the submodule
# is imported, keeps ``nj.batch`` the function (importing the submodule later would otherwise
# replace a lazy name with the module). The module is light: Dask, pandas and torch load on use.
from .batch import batch
from .volume import CTVolume, SeriesInfo
from .windows import WINDOW_PRESETS, window_limits

__version__ = "0.1.0"

# Everything heavy loads on first use: torch (dose, models), and the readers (pydicom, 0.4 s).
# napari imports this package on its main thread when a dock of the plugin opens, and the viewer
# must not freeze for it (``benchmarks/bench_widget.py``).
_LAZY = {
    "load_ct": "io",
    "scan_series": "io",
    "write_nifti": "io.write",
    "write_dicom_series": "io.write",
    "simulate_low_dose": "dose",
    "denoise": "inference",
    "denoise_with_uncertainty": "inference",
    "select_device": "inference",
    "select_runtime": "inference",
    "Cancelled": "inference",
    "list_models": "models.registry",
    "predict_point_cloud": "joint",
    "reference_point_cloud": "pointcloud",
}


#: submodules loaded on first use (``nj.pacs`` imports dicomweb-client and pynetdicom only when used)
_LAZY_MODULES = ("pacs",)


def __getattr__(name: str):
    if name in _LAZY_MODULES:
        import importlib

        return importlib.import_module(f".{name}", __name__)
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    if not name.startswith("_"):  # a submodule not imported yet, e.g. ``nj.io``
        import importlib

        try:
            return importlib.import_module(f".{name}", __name__)
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
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
    "denoise_with_uncertainty",
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
    "pacs",
]
