"""Every file and series in ../shared/data: loads with the right HU and geometry, or fails clearly.

The expected outcome of each is written down here (and in docs/DATA.md). "sitk" means HU and
geometry are compared voxel by voxel with SimpleITK's reading of the same file (where SimpleITK
reads it); "ref" compares a lossy encoding with the lossless original of the same image.
"""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

import napari_jointrecon as nj
from napari_jointrecon.io.dicom import AIR_HU, MIN_HU

from _reference import aligned_reference, read_sitk

TS = "dicom-edge-cases/transfer-syntaxes/"
ENC = "dicom-edge-cases/encodings/"
MF = ENC + "encapsulated/multi-frame/"
SF = ENC + "encapsulated/single-frame/"
LOSSLESS_CT = TS + "CTImage.dcm"

# path -> (outcome, detail)
#   ("sitk", max_abs_HU_difference)          loads; equals SimpleITK within that many HU
#   ("sitk+ref", (max_vs_sitk, mean_vs_ref)) lossy: also close to the lossless original
#   ("ref", mean_vs_ref)                     SimpleITK cannot read it; close to the original
#   ("error", text)                          CTReadError whose message contains text
EXPECTED: dict[str, tuple[str, object]] = {
    "chest-ct-dicom": ("sitk", 0.0),
    "torso-ct-nifti/example_ct.nii.gz": ("sitk", 0.0),
    "torso-ct-nifti/aorta_crop_ct.nii.gz": ("sitk", 0.0),
    TS + "CTImage.dcm": ("sitk", 0.0),
    TS + "CTImage.dcm_LittleEndianImplicitTransferSyntax_1.2.840.10008.1.2.dcm": ("sitk+ref", (0.0, 0.0)),
    TS + "CTImage.dcm_LittleEndianExplicitTransferSyntax_1.2.840.10008.1.2.1.dcm": ("sitk+ref", (0.0, 0.0)),
    TS + "CTImage.dcm_BigEndianExplicitTransferSyntax_1.2.840.10008.1.2.2.dcm": ("sitk+ref", (0.0, 0.0)),
    TS + "CTImage.dcm_DeflatedExplicitVRLittleEndianTransferSyntax_1.2.840.10008.1.2.1.99.dcm": ("sitk+ref", (0.0, 0.0)),
    TS + "CTImage.dcm_RLELosslessTransferSyntax_1.2.840.10008.1.2.5.dcm": ("sitk+ref", (0.0, 0.0)),
    TS + "CTImage.dcm_JPEGProcess14TransferSyntax_1.2.840.10008.1.2.4.57.dcm": ("sitk+ref", (0.0, 0.0)),
    TS + "CTImage.dcm_JPEGProcess14SV1TransferSyntax_1.2.840.10008.1.2.4.70.dcm": ("sitk+ref", (0.0, 0.0)),
    TS + "CTImage.dcm_JPEGLSLosslessTransferSyntax_1.2.840.10008.1.2.4.80.dcm": ("sitk+ref", (0.0, 0.0)),
    TS + "CTImage.dcm_JPEG2000LosslessOnlyTransferSyntax_1.2.840.10008.1.2.4.90.dcm": ("sitk+ref", (0.0, 0.0)),
    # lossy encodings: 8-bit baseline (slope 32), 12-bit (slope 2), near-lossless JPEG-LS, lossy J2K
    TS + "CTImage.dcm_JPEGProcess1TransferSyntax_1.2.840.10008.1.2.4.50.dcm": ("sitk+ref", (0.01, 20.0)),
    TS + "CTImage.dcm_JPEGProcess2_4TransferSyntax_1.2.840.10008.1.2.4.51.dcm": ("sitk+ref", (2.01, 5.0)),
    # pydicom's decoders cannot read these two; the GDCM fallback does
    TS + "CTImage.dcm_JPEGProcess6_8TransferSyntax_1.2.840.10008.1.2.4.53.dcm": ("sitk+ref", (0.0, 5.0)),
    TS + "CTImage.dcm_JPEGProcess10_12TransferSyntax_1.2.840.10008.1.2.4.55.dcm": ("sitk+ref", (0.0, 5.0)),
    TS + "CTImage.dcm_JPEGLSLossyTransferSyntax_1.2.840.10008.1.2.4.81.dcm": ("sitk+ref", (0.0, 1.0)),
    TS + "CTImage.dcm_JPEG2000TransferSyntax_1.2.840.10008.1.2.4.91.dcm": ("sitk+ref", (0.0, 1.0)),
    TS + "CT1_J2KR": ("sitk", 0.0),
    TS + "CT2_J2KR": ("sitk", 0.0),
    TS + "CT0012.fragmented_no_bot_jpeg_baseline.51.dcm": ("sitk", 1.0),
    TS + "LICENSE": ("error", "unsupported format"),
    ENC + "CT1_UNC.explicit_big_endian.dcm": ("sitk", 0.0),
    ENC + "CT1_UNC.explicit_little_endian.dcm": ("sitk", 0.0),
    ENC + "CT1_UNC.implicit_little_endian.dcm": ("sitk", 0.0),
    ENC + "README.md": ("error", "unsupported format"),
    ENC + "deflate/README.md": ("error", "unsupported format"),
    ENC + "deflate/image_dfl": ("error", "modality OT, not CT"),
    ENC + "deflate/report_dfl": ("error", "no pixel data"),
    ENC + "deflate/wave_dfl": ("error", "no pixel data"),
    MF + "CT0012.explicit_little_endian.dcm": ("sitk", 0.0),
    MF + "CT0012.fragmented_no_bot_jpeg_baseline.51.dcm": ("sitk", 1.0),
    MF + "CT0012.fragmented_no_bot_jpeg_lossless.57.dcm": ("sitk", 0.0),
    MF + "CT0012.fragmented_no_bot_jpeg_lossless.70.dcm": ("sitk", 0.0),
    # SimpleITK/GDCM fails on these two fragmented JPEG-LS files; pydicom decodes them
    MF + "CT0012.fragmented_no_bot_jpeg_ls.80.dcm": ("same-as", MF + "CT0012.explicit_little_endian.dcm"),
    MF + "CT0012.fragmented_no_bot_jpeg_ls.81.dcm": ("near", (MF + "CT0012.explicit_little_endian.dcm", 2.0)),
    MF + "CT0012.not_fragmented_bot_jpeg_ls.80.dcm": ("sitk", 0.0),
    MF + "CT0012.not_fragmented_bot_rle.dcm": ("sitk", 0.0),
    MF + "CT0012.not_fragmented_no_bot_jpeg_ls.80.dcm": ("sitk", 0.0),
    MF + "CT0012.not_fragmented_no_bot_rle.dcm": ("sitk", 0.0),
    MF + "IM00001.fragmented_no_bot_jpeg_baseline.50.dcm": ("error", "modality US, not CT"),
    MF + "IM00001.implicit_little_endian.dcm": ("error", "modality US, not CT"),
    MF + "README.md": ("error", "unsupported format"),
    SF + "CT1_UNC.explicit_little_endian.dcm": ("sitk", 0.0),
    SF + "CT1_UNC.fragmented_bot_jpeg_ls.80.dcm": ("sitk", 0.0),
    SF + "CT1_UNC.fragmented_no_bot_jpeg_ls.80.dcm": ("sitk", 0.0),
    SF + "CT1_UNC.not_fragmented_bot_jpeg_ls.80.dcm": ("sitk", 0.0),
    SF + "CT1_UNC.not_fragmented_no_bot_jpeg_ls.80.dcm": ("sitk", 0.0),
    SF + "README.md": ("error", "unsupported format"),
}
# each file of the gantry-tilt series alone is a plain single slice
EXPECTED.update({f"dicom-edge-cases/ge-gantry-tilt-head/{i:02d}.dcm": ("sitk", 0.0) for i in range(1, 29)})
# the real series of nine more patients: each folder is one 512 x 512 series (its SOURCE.md, the
# provenance, is skipped with a note); their files are covered by the folder, as the chest's are
CT_SERIES = {
    "ge-lightspeedplus-STANDARD-chest": 40, "ge-lightspeedvct-LUNG-chest-abdomen": 40,
    "ge-lightspeedvct-STANDARD-head": 40, "ge-revolution-LUNG-abdomen": 35,
    "philips-bigbore-B-abdomen": 40, "siemens-B31f-chest": 40, "siemens-biograph40-B30f-abdomen": 40,
    "siemens-sensation10-B40f-chest": 30, "siemens-sensation10-B70f-chest": 30,
    "siemens-sensation16-B10f-chest": 40,
}
EXPECTED.update({f"ct-series/{name}": ("sitk", 0.0) for name in CT_SERIES})
EXPECTED["ct-series/README.md"] = ("error", "unsupported format")
# provenance files (origin, licence, SHA-256 of every file) are not images
SOURCE_FILES = ["chest-ct-dicom/SOURCE.md", "torso-ct-nifti/SOURCE.md",
                "dicom-edge-cases/transfer-syntaxes/SOURCE.md", "dicom-edge-cases/ge-gantry-tilt-head/SOURCE.md",
                "dicom-edge-cases/encodings/SOURCE.md"] + [f"ct-series/{n}/SOURCE.md" for n in CT_SERIES]
EXPECTED.update({rel: ("error", "unsupported format") for rel in SOURCE_FILES})
SERIES_FOLDERS = ("chest-ct-dicom/",) + tuple(f"ct-series/{n}/" for n in CT_SERIES)


def _compare_valid(ours: np.ndarray, ref: np.ndarray, dicom: bool) -> np.ndarray:
    """|ours - ref| where the reference is a real HU (DICOM padding/out-of-field become air)."""
    if not dicom:
        return np.abs(ours - ref)
    valid = ref >= MIN_HU
    assert np.all(ours[~valid] == AIR_HU)
    return np.abs(ours - ref)[valid]


def test_every_data_file_has_an_expected_outcome(shared_data):
    listed = {p for p in EXPECTED}
    for path in shared_data.rglob("*"):
        rel = str(path.relative_to(shared_data))
        in_series = rel.startswith(SERIES_FOLDERS) and not rel.endswith("SOURCE.md")
        if path.is_file() and rel != "README.md" and not rel.endswith("LICENSE") and not in_series:
            assert rel in listed, f"no expected outcome for {rel}"


@pytest.mark.parametrize("rel", sorted(EXPECTED))
def test_shared_file(shared_data, rel):
    outcome, detail = EXPECTED[rel]
    path = shared_data / rel
    if outcome == "error":
        with pytest.raises(nj.CTReadError) as info:
            nj.load_ct(path)
        assert str(detail) in str(info.value)
        assert path.name in str(info.value)
        return
    volume = nj.load_ct(path)
    assert volume.hu.dtype == np.float32 and volume.hu.ndim == 3
    assert np.isfinite(volume.hu).all()
    if outcome in ("sitk", "sitk+ref"):
        max_sitk = detail if outcome == "sitk" else detail[0]
        ref = aligned_reference(volume, read_sitk(path))
        assert _compare_valid(volume.hu, ref, volume.source_format == "dicom").max() <= max_sitk + 1e-3
    if outcome == "sitk+ref":
        original = nj.load_ct(shared_data / LOSSLESS_CT)
        assert np.allclose(volume.affine, original.affine, atol=1e-4)
        assert np.abs(volume.hu - original.hu).mean() <= detail[1] + 1e-3
    if outcome == "same-as":
        other = nj.load_ct(shared_data / detail)
        assert np.array_equal(volume.hu, other.hu)
        assert np.allclose(volume.affine, other.affine)
    if outcome == "near":
        other = nj.load_ct(shared_data / detail[0])
        assert np.abs(volume.hu - other.hu).max() <= detail[1]
        assert np.allclose(volume.affine, other.affine)


def test_chest_series_geometry_matches_its_headers(chest_dir):
    volume = nj.load_ct(chest_dir)
    assert volume.shape == (141, 512, 512)
    assert volume.spacing == pytest.approx((2.0, 0.9765625, 0.9765625))
    assert volume.origin == pytest.approx((-164.5, -164.0, -250.0))
    assert volume.is_axis_aligned
    assert volume.hu.min() == -1024 and volume.hu.max() == 1479 or volume.hu.max() > 1000
    assert volume.modality == "CT" and len(volume.source_files) == 141
    assert any("LICENSE" in note for note in volume.notes)  # the skipped file is reported


def test_enhanced_multiframe_rescale_from_functional_groups(shared_data):
    path = shared_data / MF / "CT0012.explicit_little_endian.dcm"
    volume = nj.load_ct(path)
    import pydicom

    raw = pydicom.dcmread(path).pixel_array.astype(np.float32)
    # intercept -1024 lives only in the functional groups; frames are sorted along the normal
    assert volume.shape == (2, 512, 512)
    assert sorted([volume.hu[0].sum(), volume.hu[1].sum()]) == pytest.approx(
        sorted([(raw[0] - 1024).sum(), (raw[1] - 1024).sum()]))
    assert volume.spacing[1:] == pytest.approx((0.388672, 0.388672))


def test_gantry_tilt_and_uneven_gaps_are_regularised_and_reported(shared_data):
    import pydicom
    from scipy import ndimage

    folder = shared_data / "dicom-edge-cases" / "ge-gantry-tilt-head"
    volume = nj.load_ct(folder)
    text = " ".join(volume.notes)
    assert "gantry tilt of 18.5 degrees" in text
    assert "uneven slice gaps" in text
    # regular grid: the direction is a rotation; the smallest gap (1.08 mm) would need 134 slices,
    # more than twice the 28 given, so the grid spreads 56 slices over the extent
    d = volume.direction
    assert np.allclose(d.T @ d, np.eye(3), atol=1e-6)
    assert volume.shape[0] == 56 and 2.5 < volume.spacing[0] < 2.8
    assert "at most 2 times the slices given" in text
    # every original pixel is found at its own world position in the regular volume
    errors = []
    for f in sorted(folder.glob("*.dcm"))[2:-2:3]:
        ds = pydicom.dcmread(f)
        hu = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        ipp = np.array([float(v) for v in ds.ImagePositionPatient])
        iop = np.array([float(v) for v in ds.ImageOrientationPatient])
        dy, dx = (float(v) for v in ds.PixelSpacing)
        j, i = np.mgrid[128:384:4, 128:384:4]
        lps = ipp + i[..., None] * dx * iop[:3] + j[..., None] * dy * iop[3:]
        index = volume.world_to_index(lps[..., ::-1].reshape(-1, 3))
        sampled = ndimage.map_coordinates(volume.hu, index.T, order=1, cval=np.nan)
        errors.append(np.abs(sampled - hu[j, i].ravel()))
    errors = np.concatenate(errors)
    assert np.isfinite(errors).all()
    # pixels sit at their physical place (the 2.6 mm grid interpolates between the original slices)
    assert np.median(errors) < 3.0


def test_folder_with_many_series_loads_the_largest_and_lists_the_others(edge_dir):
    series = nj.scan_series(edge_dir)
    assert series[0].n_slices == 28  # the gantry-tilt head series
    assert len(series) > 5
    volume = nj.load_ct(edge_dir)
    assert len(volume.other_series) == len(series) - 1
    assert any("series found" in note for note in volume.notes)
    picked = nj.load_ct(edge_dir, series=series[-1].key)
    assert picked.shape[0] == series[-1].n_slices
    with pytest.raises(nj.CTReadError, match="not found"):
        nj.load_ct(edge_dir, series="no-such-series")


def test_torso_nifti_direction_is_kept(shared_data):
    volume = nj.load_ct(shared_data / "torso-ct-nifti" / "example_ct.nii.gz")
    image = sitk.ReadImage(str(shared_data / "torso-ct-nifti" / "example_ct.nii.gz"))
    assert volume.spacing == pytest.approx(image.GetSpacing()[::-1])
    assert volume.origin == pytest.approx(image.GetOrigin()[::-1])
    assert not volume.is_axis_aligned  # this file is stored flipped: layers get an affine
    assert "affine" in volume.layer_kwargs()


def test_lossy_files_and_implausible_hu_are_noted(shared_data):
    # the lossy multi-frame JPEG baseline file says rescale intercept -1024 over pixels from 1010
    # on: air comes out near -14 HU (SimpleITK reads the same). It loads, with both notes.
    odd = nj.load_ct(shared_data / MF / "CT0012.fragmented_no_bot_jpeg_baseline.51.dcm")
    assert any("lossy" in n for n in odd.notes)
    assert any("no voxel below -500 HU" in n for n in odd.notes)
    lossy = nj.load_ct(shared_data / TS / "CTImage.dcm_JPEGProcess1TransferSyntax_1.2.840.10008.1.2.4.50.dcm")
    assert any("lossy" in n for n in lossy.notes) and not any("-500 HU" in n for n in lossy.notes)
    plain = nj.load_ct(shared_data / TS / "CTImage.dcm")
    assert not any("lossy" in n or "-500 HU" in n for n in plain.notes)


@pytest.mark.parametrize("name", sorted(CT_SERIES))
def test_ct_series_loads_whole_with_its_provenance_skipped(shared_data, name):
    volume = nj.load_ct(shared_data / "ct-series" / name)
    assert volume.shape == (CT_SERIES[name], 512, 512)
    assert volume.other_series == []
    assert any("SOURCE.md: not a DICOM file" in note for note in volume.notes)
    assert np.all(np.diff(volume.hu.reshape(volume.shape[0], -1).mean(axis=1)) != 0)  # distinct slices
