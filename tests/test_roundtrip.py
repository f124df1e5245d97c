"""Write-then-read round trips, and writers that refuse to touch the sources."""

from __future__ import annotations

import hashlib
import os
import stat

import numpy as np
import pydicom
import pytest

import napari_jointrecon as nj
import napari_jointrecon.io.write  # noqa: F401  (nj.io.write below, whichever tests ran before)
from napari_jointrecon.phantom import make_thorax_phantom

from conftest import SAMPLE_DATA


@pytest.fixture(scope="module")
def chest_part(shared_data):
    files = sorted((shared_data / "chest-ct-dicom").glob("*.dcm"))[60:72]
    return nj.load_ct(files)


def _same_geometry(a, b, atol=1e-4):
    assert a.shape == b.shape
    assert np.allclose(a.spacing, b.spacing, atol=atol)
    assert np.allclose(a.origin, b.origin, atol=atol)
    assert np.allclose(a.direction, b.direction, atol=1e-6)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".mha", ".nrrd"])
def test_image_roundtrip_keeps_hu_and_geometry_exactly(chest_part, tmp_path, suffix):
    out = nj.io.write.write_image(chest_part, tmp_path / f"ct{suffix}")
    back = nj.load_ct(out)
    _same_geometry(back, chest_part)
    assert np.array_equal(back.hu, chest_part.hu)


@pytest.mark.parametrize("isal", [True, False], ids=["isal", "zlib"])
def test_fast_nifti_gzip_reads_back_exactly_and_leaves_nothing_else(chest_part, tmp_path, monkeypatch, isal):
    """Level 1 (the batch's outputs): gzipped with ISA-L where installed, with zlib otherwise; either
    way a standard gzip file that reads back as the default writer's, and only the target is left."""
    import gzip
    import sys

    if isal:
        import isal.igzip  # noqa: F401  (a dependency: the fast path must be the one tested here)
    else:
        monkeypatch.setitem(sys.modules, "isal", None)  # as where isal cannot be imported
    out = nj.io.write.write_image(chest_part, tmp_path / "fast.nii.gz", compression_level=1)
    default = nj.io.write.write_image(chest_part, tmp_path / "default.nii.gz")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["default.nii.gz", "fast.nii.gz"]
    assert gzip.decompress(out.read_bytes()) == gzip.decompress(default.read_bytes())
    back = nj.load_ct(out)
    _same_geometry(back, chest_part)
    assert np.array_equal(back.hu, chest_part.hu)


def test_float_hu_roundtrip_in_nifti(tmp_path):
    v = make_thorax_phantom(4.0, z_extent_mm=40)
    assert not np.all(np.mod(v.hu, 1) == 0)
    back = nj.load_ct(nj.write_nifti(v, tmp_path / "p.nii.gz"))
    assert np.array_equal(back.hu, v.hu)
    _same_geometry(back, v)


def test_oblique_nifti_roundtrip(shared_data, tmp_path):
    src = nj.load_ct(shared_data / "torso-ct-nifti" / "example_ct.nii.gz")
    back = nj.load_ct(nj.write_nifti(src, tmp_path / "t.nii.gz"))
    _same_geometry(back, src)
    assert np.array_equal(back.hu, src.hu)


def test_dicom_series_roundtrip_keeps_hu_geometry_and_tags(chest_part, tmp_path):
    files = nj.write_dicom_series(chest_part, tmp_path / "derived", model="unet", dose=0.25)
    assert len(files) == chest_part.shape[0]
    back = nj.load_ct(tmp_path / "derived")
    _same_geometry(back, chest_part, atol=1e-5)
    assert np.array_equal(back.hu, chest_part.hu)
    ds = pydicom.dcmread(files[0])
    src = pydicom.dcmread(chest_part.source_files[0])
    assert list(ds.ImageType) == ["DERIVED", "SECONDARY", "AXIAL"]
    assert "unet" in ds.SeriesDescription and "25% dose" in ds.SeriesDescription
    assert ds.SeriesInstanceUID != src.SeriesInstanceUID
    assert ds.SOPInstanceUID != src.SOPInstanceUID
    assert len({pydicom.dcmread(f).SOPInstanceUID for f in files}) == len(files)
    for keyword in ("StudyInstanceUID", "PatientID", "PatientName", "FrameOfReferenceUID"):
        assert str(ds.get(keyword)) == str(src.get(keyword))


def test_dicom_series_of_float_hu_is_within_half_the_slope(tmp_path):
    v = make_thorax_phantom(4.0, z_extent_mm=40)
    nj.write_dicom_series(v, tmp_path / "s", description="phantom")
    back = nj.load_ct(tmp_path / "s")
    slope = float(pydicom.dcmread(sorted((tmp_path / "s").glob("*.dcm"))[0]).RescaleSlope)
    _same_geometry(back, v, atol=1e-5)
    assert np.abs(back.hu - v.hu).max() <= slope / 2 + 1e-4


def test_flipped_volume_is_written_as_a_right_handed_series(tmp_path):
    v = make_thorax_phantom(5.0, z_extent_mm=30, texture=False)
    flipped = nj.CTVolume(v.hu[::-1].copy(), spacing=v.spacing,
                          origin=v.index_to_world([v.shape[0] - 1, 0, 0]),
                          direction=np.diag([-1.0, 1.0, 1.0]))
    nj.write_dicom_series(flipped.with_hu(np.round(flipped.hu)), tmp_path / "s")
    back = nj.load_ct(tmp_path / "s")
    # same voxels at the same world positions
    assert np.allclose(back.index_to_world([0, 5, 7]), flipped.index_to_world([v.shape[0] - 1, 5, 7]))
    assert np.array_equal(back.hu, np.round(flipped.hu)[::-1])


def _digest(paths):
    return [hashlib.sha256(open(p, "rb").read()).hexdigest() for p in paths]


def test_writers_refuse_source_files_and_folders(chest_part):
    from pathlib import Path

    folder = Path(chest_part.source_files[0]).parent
    listing = sorted(p.name for p in folder.iterdir())
    before = _digest(chest_part.source_files)
    with pytest.raises(nj.CTWriteError, match="source"):
        nj.write_dicom_series(chest_part, chest_part.source_files[0].rsplit("/", 1)[0])
    with pytest.raises(nj.CTWriteError, match="source"):
        nj.write_dicom_series(chest_part, folder / "derived")
    with pytest.raises(nj.CTWriteError, match="source"):
        nj.write_dicom_series(chest_part, folder.parent, overwrite=True)
    with pytest.raises(nj.CTWriteError, match="source"):
        nj.io.write.write_image(chest_part, chest_part.source_files[0] + ".nii")
    with pytest.raises(nj.CTWriteError, match="source file"):
        nj.io.write.write_image(chest_part, chest_part.source_files[0])
    assert _digest(chest_part.source_files) == before
    assert sorted(p.name for p in folder.iterdir()) == listing


def test_writer_refuses_to_overwrite_source_nifti_even_with_overwrite(tmp_path):
    v = make_thorax_phantom(5.0, z_extent_mm=20)
    path = nj.write_nifti(v, tmp_path / "a.nii.gz")
    src = nj.load_ct(path)
    digest = _digest([path])
    with pytest.raises(nj.CTWriteError, match="source file"):
        nj.write_nifti(src, path, overwrite=True)
    assert _digest([path]) == digest


def test_existing_outputs_need_overwrite(tmp_path):
    v = make_thorax_phantom(5.0, z_extent_mm=20)
    nj.write_nifti(v, tmp_path / "a.nii.gz")
    with pytest.raises(nj.CTWriteError, match="already exists"):
        nj.write_nifti(v, tmp_path / "a.nii.gz")
    nj.write_nifti(v, tmp_path / "a.nii.gz", overwrite=True)
    (tmp_path / "series").mkdir()
    (tmp_path / "series" / "other.txt").write_text("keep")
    with pytest.raises(nj.CTWriteError, match="already exists"):
        nj.write_dicom_series(v, tmp_path / "series")
    assert (tmp_path / "series" / "other.txt").read_text() == "keep"
    with pytest.raises(nj.CTWriteError, match="suffix"):
        nj.io.write.write_image(v, tmp_path / "a.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.nii.gz", "series"]  # no temp files left


def test_overwrite_replaces_only_a_folder_of_dicom_files(tmp_path):
    """overwrite replaces an earlier series; a folder holding anything else is never emptied."""
    v = make_thorax_phantom(5.0, z_extent_mm=20)
    work = tmp_path / "results"
    (work / "sub").mkdir(parents=True)
    (work / "notes.txt").write_text("months of work")
    (work / "sub" / "table.csv").write_text("x")
    with pytest.raises(nj.CTWriteError, match="holds more than a DICOM series"):
        nj.write_dicom_series(v, work, overwrite=True)
    assert (work / "notes.txt").read_text() == "months of work" and (work / "sub" / "table.csv").exists()
    series = tmp_path / "series"
    first = nj.write_dicom_series(v, series)
    again = nj.write_dicom_series(v.with_hu(v.hu + 1), series, overwrite=True)
    assert [p.name for p in again] == [p.name for p in first] and len(list(series.iterdir())) == len(first)
    assert np.allclose(nj.load_ct(series).hu, v.hu + 1, atol=0.1)  # the new series (float HU: within the slope)
    # the series folder is readable like any new folder (the umask's mode, not 0700)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(series.stat().st_mode) == 0o777 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results", "series"]  # no temp folders left


def test_metaimage_data_file_is_a_target_too(tmp_path):
    v = make_thorax_phantom(5.0, z_extent_mm=20)
    (tmp_path / "x.raw").write_text("someone's raw data")
    with pytest.raises(nj.CTWriteError, match="x.raw: already exists"):
        nj.io.write.write_image(v, tmp_path / "x.mhd")
    assert (tmp_path / "x.raw").read_text() == "someone's raw data"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.raw"]
    nj.io.write.write_image(v, tmp_path / "x.mhd", overwrite=True)
    assert np.array_equal(nj.load_ct(tmp_path / "x.mhd").hu, v.hu)


def test_writers_refuse_non_finite_voxels_and_folders_as_files(tmp_path):
    v = make_thorax_phantom(5.0, z_extent_mm=20)
    hu = v.hu.copy()
    hu[0, 0, 0] = np.nan
    bad = nj.CTVolume(hu, spacing=v.spacing)  # CTVolume allows NaN; the writers do not
    with pytest.raises(nj.CTWriteError, match="NaN"):
        nj.write_nifti(bad, tmp_path / "a.nii.gz")
    with pytest.raises(nj.CTWriteError, match="NaN"):
        nj.write_dicom_series(bad, tmp_path / "s")
    (tmp_path / "dir.nii.gz").mkdir()
    with pytest.raises(nj.CTWriteError, match="is a folder"):
        nj.write_nifti(v, tmp_path / "dir.nii.gz", overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.nii.gz"]


def test_phantom_read_back_from_files_is_still_simulated_with_poisson(tmp_path):
    v = make_thorax_phantom(5.0, z_extent_mm=20)
    nj.write_nifti(v, tmp_path / "p.nii.gz")
    nj.io.write.write_image(v, tmp_path / "p.mha")
    nj.write_dicom_series(v, tmp_path / "p")
    for path in ("p.nii.gz", "p.mha", "p"):
        back = nj.load_ct(tmp_path / path)
        assert back.series_description == v.series_description, path
        assert "poisson" in nj.simulate_low_dose(back, 0.25).notes[-1], path
    # a simulated copy is no longer noise-free: only the missing noise is added to it
    low = nj.simulate_low_dose(v, 0.5)
    nj.write_nifti(low, tmp_path / "low.nii.gz")
    assert "insert" in nj.simulate_low_dose(nj.load_ct(tmp_path / "low.nii.gz"), 0.25).notes[-1]
    # a volume without a study description keeps its series name as it was
    for series, study in (("my series", ""), ("CT | denoised unet | 25% dose", "chest study")):
        named = nj.CTVolume(v.hu, spacing=v.spacing, series_description=series, study_description=study)
        for suffix in (".nii.gz", ".mha", ".nrrd"):
            nj.io.write.write_image(named, tmp_path / f"named{suffix}", overwrite=True)
            back = nj.load_ct(tmp_path / f"named{suffix}")
            assert (back.series_description, back.study_description) == (series, study), suffix
    # the shipped sample data too
    for path in ("thorax_phantom.nii.gz", "thorax_phantom_dicom"):
        assert "poisson" in nj.simulate_low_dose(nj.load_ct(SAMPLE_DATA / path), 0.25).notes[-1]


def test_values_below_minus_1024_survive_a_series_written_here(tmp_path):
    """The reader turns out-of-field values below -1024 HU into air, but not in a series this
    package wrote: noise in the air of a simulated scan comes back as it was."""
    v = make_thorax_phantom(5.0, z_extent_mm=20)
    hu = v.hu.copy()
    hu[:, :8, :8] = np.random.default_rng(0).normal(-1000, 80, (hu.shape[0], 8, 8))  # noisy air
    low = v.with_hu(hu)
    assert low.hu.min() < -1024
    nj.write_dicom_series(low, tmp_path / "low")
    back = nj.load_ct(tmp_path / "low")
    assert np.allclose(back.hu, low.hu, atol=0.1) and not any("set to air" in n for n in back.notes)


def test_a_dicom_series_may_go_next_to_a_nifti_source(tmp_path):
    """Only a DICOM source's folder is off limits; beside a NIfTI file a series folder is fine,
    but not a folder that holds the NIfTI file itself."""
    v = make_thorax_phantom(5.0, z_extent_mm=20)
    nj.write_nifti(v, tmp_path / "scan.nii.gz")
    src = nj.load_ct(tmp_path / "scan.nii.gz")
    files = nj.write_dicom_series(src, tmp_path / "den_dcm")
    assert len(files) == src.shape[0] and np.allclose(nj.load_ct(tmp_path / "den_dcm").hu, src.hu, atol=0.1)
    with pytest.raises(nj.CTWriteError, match="source"):
        nj.write_dicom_series(src, tmp_path, overwrite=True)
    assert (tmp_path / "scan.nii.gz").exists()
