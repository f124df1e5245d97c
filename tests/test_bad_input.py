"""Bad input gets a clear CTReadError naming the file and the reason; nothing else escapes."""

from __future__ import annotations

import shutil

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

import napari_jointrecon as nj


@pytest.fixture
def chest_files(chest_dir):
    return sorted(chest_dir.glob("*.dcm"))


def _copy(files, folder):
    folder.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copy(f, folder / f.name)
    return folder


def test_empty_folder(tmp_path):
    with pytest.raises(nj.CTReadError, match="no files found"):
        nj.load_ct(tmp_path)


def test_missing_path(tmp_path):
    with pytest.raises(nj.CTReadError, match="no such file or folder"):
        nj.load_ct(tmp_path / "nothing-here")


def test_folder_of_non_dicom_files(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "image.bin").write_bytes(np.arange(1000, dtype=np.uint8).tobytes())
    with pytest.raises(nj.CTReadError) as info:
        nj.load_ct(tmp_path)
    assert "no axial CT image found" in str(info.value) and "not a DICOM file" in str(info.value)


def test_unsupported_file_type(tmp_path):
    png = tmp_path / "slice.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(nj.CTReadError, match="unsupported format"):
        nj.load_ct(png)


def test_truncated_file_is_named(chest_files, tmp_path):
    folder = _copy(chest_files[:5], tmp_path / "series")
    victim = folder / chest_files[2].name
    victim.write_bytes(victim.read_bytes()[:300_000])
    with pytest.raises(nj.CTReadError) as info:
        nj.load_ct(folder)
    assert victim.name in str(info.value) and "truncated" in str(info.value)


def test_truncated_header_is_skipped_and_reported(chest_files, tmp_path):
    folder = _copy(chest_files[:4], tmp_path / "series")
    (folder / chest_files[0].name).write_bytes(chest_files[0].read_bytes()[:200])
    volume = nj.load_ct(folder)
    assert volume.shape[0] == 3
    assert any(chest_files[0].name in n for n in volume.notes)


def test_folder_of_mixed_series_loads_largest_and_lists_others(chest_files, shared_data, tmp_path):
    folder = _copy(chest_files[:6], tmp_path / "mixed")
    shutil.copy(shared_data / "dicom-edge-cases/transfer-syntaxes/CTImage.dcm", folder / "other.dcm")
    volume = nj.load_ct(folder)
    assert volume.shape == (6, 512, 512)
    assert len(volume.other_series) == 1 and volume.other_series[0].n_slices == 1
    assert any("2 series found" in n for n in volume.notes)


def test_2d_numpy_image_loads_as_one_slice_and_says_so(tmp_path):
    np.save(tmp_path / "slice.npy", np.full((16, 16), 40, dtype=np.int16))
    volume = nj.load_ct(tmp_path / "slice.npy")
    assert volume.shape == (1, 16, 16)
    assert any("2D" in n for n in volume.notes) and any("1 mm" in n for n in volume.notes)


def test_npz_with_spacing(tmp_path):
    np.savez(tmp_path / "v.npz", hu=np.zeros((2, 3, 4)), spacing=[2.0, 0.5, 0.5], origin=[1, 2, 3])
    volume = nj.load_ct(tmp_path / "v.npz")
    assert volume.spacing == (2.0, 0.5, 0.5) and volume.origin == (1.0, 2.0, 3.0)
    for spacing in ([2.0, 0.5], [0.0, 1.0, 1.0], [np.nan, 1.0, 1.0]):
        np.savez(tmp_path / "bad.npz", hu=np.zeros((2, 3, 4)), spacing=spacing)
        with pytest.raises(nj.CTReadError, match="bad.npz"):
            nj.load_ct(tmp_path / "bad.npz")


def test_numpy_values_far_from_hu_get_a_note(tmp_path):
    np.save(tmp_path / "raw.npy", np.full((2, 8, 8), 60000, np.uint16))
    assert any("may not be Hounsfield" in n for n in nj.load_ct(tmp_path / "raw.npy").notes)
    np.save(tmp_path / "ct.npy", np.full((2, 8, 8), -1000.0))
    assert not any("Hounsfield" in n for n in nj.load_ct(tmp_path / "ct.npy").notes)


@pytest.mark.parametrize("array,message", [
    (np.zeros((2, 2, 2, 2)), "must be 2D or 3D"),
    (np.array(["a", "b"]), "expected real numbers"),
])
def test_numpy_arrays_that_are_not_ct(tmp_path, array, message):
    np.save(tmp_path / "x.npy", array)
    with pytest.raises(nj.CTReadError, match=message):
        nj.load_ct(tmp_path / "x.npy")


def test_4d_nifti(tmp_path):
    image = sitk.GetImageFromArray(np.zeros((3, 4, 5, 6), dtype=np.int16), isVector=False)
    sitk.WriteImage(image, str(tmp_path / "4d.nii.gz"))
    with pytest.raises(nj.CTReadError, match="4D image"):
        nj.load_ct(tmp_path / "4d.nii.gz")


def test_corrupt_nifti(tmp_path):
    (tmp_path / "bad.nii.gz").write_bytes(b"this is not gzip")
    with pytest.raises(nj.CTReadError, match="bad.nii.gz"):
        nj.load_ct(tmp_path / "bad.nii.gz")


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_voxels(tmp_path, value):
    hu = np.zeros((2, 8, 8), dtype=np.float32)
    hu[1, 2, 3] = value
    np.save(tmp_path / "v.npy", hu)
    sitk.WriteImage(sitk.GetImageFromArray(hu), str(tmp_path / "v.mha"))
    for path in (tmp_path / "v.npy", tmp_path / "v.mha"):
        with pytest.raises(nj.CTReadError, match="NaN or infinite"):
            nj.load_ct(path)


def _modified_copy(src, dst, change):
    ds = pydicom.dcmread(src)
    ds.remove_private_tags()
    change(ds)
    ds.save_as(dst)
    return dst


def test_mr_series(chest_files, tmp_path):
    folder = tmp_path / "mr"
    folder.mkdir()
    for f in chest_files[:3]:
        _modified_copy(f, folder / f.name, lambda ds: (setattr(ds, "Modality", "MR"),
                                                       setattr(ds, "SOPClassUID", "1.2.840.10008.5.1.4.1.1.4")))
    with pytest.raises(nj.CTReadError, match="modality MR, not CT"):
        nj.load_ct(folder)


def test_file_without_pixel_data(chest_files, tmp_path):
    path = _modified_copy(chest_files[0], tmp_path / "nopix.dcm", lambda ds: delattr(ds, "PixelData"))
    with pytest.raises(nj.CTReadError, match="no pixel data"):
        nj.load_ct(path)


def test_localizer_is_skipped(chest_files, tmp_path):
    folder = _copy(chest_files[:3], tmp_path / "s")
    _modified_copy(chest_files[3], folder / "scout.dcm",
                   lambda ds: setattr(ds, "ImageType", ["ORIGINAL", "PRIMARY", "LOCALIZER"]))
    volume = nj.load_ct(folder)
    assert volume.shape[0] == 3 and any("localizer" in n for n in volume.notes)


def test_undecodable_compressed_file_names_file_and_transfer_syntax(chest_files, tmp_path):
    from pydicom.encaps import encapsulate

    def garble(ds):
        ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.90"  # JPEG 2000 lossless
        ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(64)])
        ds["PixelData"].VR = "OB"

    path = _modified_copy(chest_files[0], tmp_path / "garbled.dcm", garble)
    with pytest.raises(nj.CTReadError) as info:
        nj.load_ct(path)
    assert "garbled.dcm" in str(info.value) and "JPEG 2000" in str(info.value)


def test_sagittal_reformat_is_not_an_axial_image(chest_files, tmp_path):
    path = _modified_copy(chest_files[0], tmp_path / "sag.dcm",
                          lambda ds: setattr(ds, "ImageOrientationPatient", [0, 1, 0, 0, 0, -1]))
    with pytest.raises(nj.CTReadError, match="not an axial image"):
        nj.load_ct(path)
