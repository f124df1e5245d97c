"""Independent reference readings with SimpleITK, and a geometry-aware voxel comparison."""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from napari_jointrecon import CTVolume


def sitk_affine(image) -> np.ndarray:
    """4x4 index (z, y, x) -> world (z, y, x) of a SimpleITK image, as CTVolume.affine."""
    direction = np.array(image.GetDirection(), dtype=float).reshape(3, 3)[::-1, ::-1]
    a = np.eye(4)
    a[:3, :3] = direction * np.array(image.GetSpacing()[::-1])[None, :]
    a[:3, 3] = image.GetOrigin()[::-1]
    return a


def read_sitk(path) -> sitk.Image:
    from pathlib import Path

    path = Path(path)
    if path.is_dir():
        reader = sitk.ImageSeriesReader()
        reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(path)))
        return reader.Execute()
    return sitk.ReadImage(str(path))


def aligned_reference(volume: CTVolume, image) -> np.ndarray:
    """The SimpleITK voxels rearranged onto the volume's grid.

    Fails unless the two grids coincide up to axis flips and permutations (the same voxel centres
    in world coordinates), which checks the geometry as well.
    """
    ref = sitk.GetArrayFromImage(image).astype(np.float32)
    if ref.ndim == 2:
        ref = ref[None]
    m = np.linalg.inv(sitk_affine(image)) @ volume.affine  # our index -> their index
    lin, shift = m[:3, :3], m[:3, 3]
    assert np.allclose(lin, np.round(lin), atol=1e-3), f"grids are not aligned:\n{lin}"
    assert np.allclose(shift, np.round(shift), atol=1e-2), f"grids are offset by {shift}"
    lin, shift = np.round(lin).astype(int), np.round(shift).astype(int)
    idx = np.indices(volume.shape).reshape(3, -1)
    theirs = lin @ idx + shift[:, None]
    assert np.all(theirs >= 0) and np.all(theirs < np.array(ref.shape)[:, None]), "grids differ in extent"
    return ref[tuple(theirs)].reshape(volume.shape)
