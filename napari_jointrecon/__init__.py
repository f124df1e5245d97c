"""napari-jointrecon: low-dose CT in napari.

Public API (plain Python, no Qt needed)::

    import napari_jointrecon as nj
    ct = nj.load_ct("path/to/dicom_folder")
    nj.write_nifti(ct, "out.nii.gz")
"""

from __future__ import annotations

from .errors import CTReadError, CTWriteError
from .io import load_ct, scan_series
from .io.write import write_dicom_series, write_nifti
from .volume import CTVolume, SeriesInfo
from .windows import WINDOW_PRESETS, window_limits

__version__ = "0.1.0"

__all__ = [
    "CTVolume",
    "SeriesInfo",
    "CTReadError",
    "CTWriteError",
    "load_ct",
    "scan_series",
    "write_nifti",
    "write_dicom_series",
    "WINDOW_PRESETS",
    "window_limits",
]
