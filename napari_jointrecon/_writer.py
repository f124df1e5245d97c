"""napari writer contributions: image layers -> NIfTI/MetaImage/NRRD files or DICOM series."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .errors import CTWriteError
from .io.write import write_dicom_series, write_image
from .volume import CTVolume

__all__ = ["layer_to_volume", "write_image_layer", "write_dicom_layer"]


def layer_to_volume(data: Any, meta: dict) -> CTVolume:
    """A :class:`CTVolume` from a layer's data and attributes (geometry from scale/translate/affine).

    When the layer came from this plugin its source volume's metadata (patient, study, source
    files) is carried over, so that writers keep the tags and refuse to overwrite the sources.
    """
    hu = np.asarray(data)
    flat = hu.ndim == 2
    if flat:
        hu = hu[None]
    if hu.ndim != 3:
        raise CTWriteError(f"a CT layer must be 2D or 3D, got shape {hu.shape}")
    layer_meta = meta.get("metadata") or {}
    source: CTVolume | None = layer_meta.get("ct_volume")
    ndim = 2 if flat else 3
    scale = np.asarray(meta.get("scale", (1.0,) * ndim), dtype=float)[-ndim:]
    translate = np.asarray(meta.get("translate", (0.0,) * ndim), dtype=float)[-ndim:]
    affine = np.asarray(meta.get("affine", np.eye(ndim + 1)), dtype=float)
    if flat:  # a lone slice: 1 mm along z at 0, its 2D affine embedded in 3D
        scale = np.concatenate([[1.0], scale])
        translate = np.concatenate([[0.0], translate])
        if affine.shape == (3, 3):
            full = np.eye(4)
            full[1:3, 1:3] = affine[:2, :2]
            full[1:3, 3] = affine[:2, 2]
            affine = full
    if affine.shape == (4, 4):
        rotation, shift = affine[:3, :3], affine[:3, 3]
    else:
        rotation, shift = np.eye(3), np.zeros(3)
    origin = rotation @ translate + shift
    geometry = dict(spacing=tuple(scale), origin=tuple(origin), direction=rotation)
    if source is not None:
        return CTVolume(hu=hu, **geometry, modality=source.modality,
                        series_description=meta.get("name") or source.series_description,
                        study_description=source.study_description, study_uid=source.study_uid,
                        frame_of_reference_uid=source.frame_of_reference_uid,
                        source=source.source, source_files=source.source_files,
                        source_format=source.source_format, meta=dict(source.meta))
    return CTVolume(hu=hu, **geometry, series_description=meta.get("name", ""))


def write_image_layer(path: str, data: Any, meta: dict) -> list[str]:
    """Write one image layer to NIfTI/MetaImage/NRRD (by the file name's suffix)."""
    return [str(write_image(layer_to_volume(data, meta), path))]


def write_dicom_layer(path: str, data: Any, meta: dict) -> list[str]:
    """Write one image layer as a DICOM series into a new folder named after ``path``."""
    folder = Path(path)
    if folder.suffix.lower() == ".dcm":
        folder = folder.with_suffix("")
    volume = layer_to_volume(data, meta)
    layer_meta = meta.get("metadata") or {}
    files = write_dicom_series(volume, folder, model=layer_meta.get("model"),
                               dose=layer_meta.get("dose"))
    return [str(f) for f in files]
