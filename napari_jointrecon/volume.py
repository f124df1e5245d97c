"""The one type that carries a CT scan through the project.

A :class:`CTVolume` holds the voxels in Hounsfield units and the geometry that places them in the
patient, always in napari's axis order ``(z, y, x)``:

* ``hu[k, j, i]`` is the voxel of slice ``k``, row ``j``, column ``i``;
* ``spacing`` and ``origin`` are in millimetres, ``origin`` being the centre of voxel ``(0, 0, 0)``;
* ``direction`` is a 3x3 matrix whose column ``c`` is the unit vector of array axis ``c``
  expressed in world axes ``(z, y, x)``.

World coordinates are DICOM patient coordinates (LPS) with the axes reversed, so that world
``(z, y, x)`` = patient ``(S, P, L)`` components. That is the order napari displays, so a layer built
with :meth:`CTVolume.layer_kwargs` lands at the right place in millimetres.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .windows import window_limits

__all__ = ["CTVolume", "SeriesInfo"]


@dataclass(frozen=True)
class SeriesInfo:
    """A summary of one image series found in a source (shown to the user to pick one).

    Attributes
    ----------
    key : str
        The identifier to pass back to the reader (``series=key``) to load this series.
    description : str
        SeriesDescription (or a generated name).
    modality : str
        DICOM modality, for example ``"CT"``.
    n_slices : int
        Number of slices (frames) in the series.
    matrix : tuple of int
        ``(rows, columns)``.
    spacing : tuple of float
        ``(z, y, x)`` spacing in millimetres (z from slice positions).
    series_uid : str
        SeriesInstanceUID.
    """

    key: str
    description: str
    modality: str
    n_slices: int
    matrix: tuple[int, int]
    spacing: tuple[float, float, float]
    series_uid: str = ""

    def label(self) -> str:
        """A one-line human-readable description."""
        sz, sy, sx = self.spacing
        return (
            f"{self.description or '(no description)'} [{self.modality}] {self.n_slices} slices, "
            f"{self.matrix[0]}x{self.matrix[1]}, {sz:.2f}x{sy:.3f}x{sx:.3f} mm"
        )


@dataclass
class CTVolume:
    """A CT volume in Hounsfield units with its geometry and source metadata.

    Attributes
    ----------
    hu : numpy.ndarray
        ``(z, y, x)`` float32 array in HU.
    spacing : tuple of float
        Voxel size ``(z, y, x)`` in mm.
    origin : tuple of float
        World position ``(z, y, x)`` in mm of the centre of voxel ``(0, 0, 0)``.
    direction : numpy.ndarray
        3x3 matrix; column ``c`` is the world direction of array axis ``c``.
    modality : str
        ``"CT"`` for DICOM CT, or what the source says; ``""`` when unknown.
    series_description, study_description : str
        Descriptions from the source, when it has them.
    series_uid, study_uid, frame_of_reference_uid : str
        DICOM UIDs, when the source has them.
    source : str
        The path that was read.
    source_files : tuple of str
        Every file the voxels came from (used by writers to refuse to overwrite them).
    source_format : str
        ``"dicom"``, ``"nifti"``, ``"metaimage"``, ``"nrrd"``, ``"numpy"`` or ``"generated"``.
    notes : list of str
        Things the user should be told about how the data was read (skipped files, resampling,
        other series, assumed spacing...).
    other_series : list of SeriesInfo
        Further series found in the source that were not loaded.
    meta : dict
        Patient- and study-level DICOM attributes (keyword -> value) kept for writing results.
    """

    hu: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))
    modality: str = "CT"
    series_description: str = ""
    study_description: str = ""
    series_uid: str = ""
    study_uid: str = ""
    frame_of_reference_uid: str = ""
    source: str = ""
    source_files: tuple[str, ...] = ()
    source_format: str = ""
    notes: list[str] = field(default_factory=list)
    other_series: list[SeriesInfo] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        hu = np.asarray(self.hu)
        if hu.ndim != 3:
            raise ValueError(f"a CT volume needs a 3D (z, y, x) array, got shape {hu.shape}")
        if not np.issubdtype(hu.dtype, np.floating) or hu.dtype != np.float32:
            hu = hu.astype(np.float32)
        self.hu = hu
        self.spacing = tuple(float(s) for s in self.spacing)  # type: ignore[assignment]
        self.origin = tuple(float(o) for o in self.origin)  # type: ignore[assignment]
        if len(self.spacing) != 3 or len(self.origin) != 3:
            raise ValueError("spacing and origin need three values (z, y, x)")
        if min(self.spacing) <= 0 or not np.all(np.isfinite(self.spacing)):
            raise ValueError(f"spacing must be positive and finite, got {self.spacing}")
        self.direction = np.asarray(self.direction, dtype=float).reshape(3, 3)

    # geometry ---------------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        return self.hu.shape  # type: ignore[return-value]

    @property
    def is_axis_aligned(self) -> bool:
        """True when the direction is the identity (no rotation needed to display it)."""
        return bool(np.allclose(self.direction, np.eye(3), atol=1e-6))

    @property
    def affine(self) -> np.ndarray:
        """4x4 matrix mapping ``(k, j, i, 1)`` voxel indices to world ``(z, y, x, 1)`` in mm."""
        a = np.eye(4)
        a[:3, :3] = self.direction * np.asarray(self.spacing)[None, :]
        a[:3, 3] = self.origin
        return a

    def index_to_world(self, index: np.ndarray) -> np.ndarray:
        """Map ``(..., 3)`` voxel indices (z, y, x order, may be fractional) to world mm."""
        index = np.asarray(index, dtype=float)
        a = self.affine
        return index @ a[:3, :3].T + a[:3, 3]

    def world_to_index(self, points: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`index_to_world`."""
        points = np.asarray(points, dtype=float)
        a = self.affine
        return (points - a[:3, 3]) @ np.linalg.inv(a[:3, :3]).T

    # derived volumes --------------------------------------------------------------------------
    def with_hu(self, hu: np.ndarray, **changes: Any) -> CTVolume:
        """A new volume with other voxels (same shape) and the same geometry and metadata."""
        hu = np.asarray(hu)
        if hu.shape != self.hu.shape:
            raise ValueError(f"shape {hu.shape} does not match the volume's {self.hu.shape}")
        return dataclasses.replace(
            self, hu=hu, notes=list(changes.pop("notes", [])), **changes
        )

    # napari -----------------------------------------------------------------------------------
    def _source_name(self) -> str:
        """The file or folder name the volume came from (a layer name when there is no description)."""
        import os
        import re

        if not self.source or re.fullmatch(r"\d+ files", self.source):  # a list of files has no one name
            return ""
        return os.path.basename(str(self.source).rstrip("/\\"))

    def layer_kwargs(self, *, window: str = "soft_tissue", name: str | None = None) -> dict:
        """Keyword arguments for ``viewer.add_image`` that place the volume in millimetres.

        ``scale`` is the spacing; an axis-aligned volume gets ``translate = origin``, an oblique one
        an ``affine`` holding its rotation and origin.
        """
        kwargs: dict[str, Any] = {
            "name": name or self.series_description or self._source_name() or "CT",
            "scale": self.spacing,
            "colormap": "gray",
            "rgb": False,  # CT in HU, even when the last axis has 3 or 4 pixels
            "contrast_limits": window_limits(window),
            "metadata": {
                "ct_volume": self,
                "spacing": self.spacing,
                "origin": self.origin,
                "direction": self.direction.tolist(),
                "source": self.source,
                "source_format": self.source_format,
                "modality": self.modality,
                "series_uid": self.series_uid,
                "window": window,
                "notes": list(self.notes),
            },
        }
        if self.is_axis_aligned:
            kwargs["translate"] = self.origin
        else:
            rotation = np.eye(4)
            rotation[:3, :3] = self.direction
            rotation[:3, 3] = self.origin
            kwargs["affine"] = rotation
        return kwargs

    def summary(self) -> str:
        """A short multi-line description for reports and the CLI."""
        z, y, x = self.shape
        lines = [
            f"source: {self.source} ({self.source_format})",
            f"series: {self.series_description or '-'} [{self.modality or '?'}]",
            f"shape (z, y, x): {z} x {y} x {x}",
            "spacing (z, y, x) mm: " + ", ".join(f"{s:.4g}" for s in self.spacing),
            "origin (z, y, x) mm: " + ", ".join(f"{o:.4g}" for o in self.origin),
            f"axis aligned: {self.is_axis_aligned}",
            f"HU range: {float(self.hu.min()):.0f} .. {float(self.hu.max()):.0f}",
        ]
        lines += [f"note: {n}" for n in self.notes]
        lines += [f"other series: {s.label()} (key {s.key})" for s in self.other_series]
        return "\n".join(lines)
