"""The jointrecon command line."""

from __future__ import annotations

import numpy as np

import napari_jointrecon as nj
from napari_jointrecon.cli import main

from conftest import SAMPLE_DATA


def test_info_prints_geometry(capsys):
    assert main(["info", str(SAMPLE_DATA / "thorax_phantom_dicom")]) == 0
    out = capsys.readouterr().out
    assert "48 x 128 x 128" in out and "2.5, 2.5, 2.5" in out


def test_info_lists_series(capsys, edge_dir):
    assert main(["info", "--list", str(edge_dir)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(nj.scan_series(edge_dir)) and "28 slices" in lines[0]


def test_convert_dicom_to_nifti_and_back(tmp_path):
    src = SAMPLE_DATA / "thorax_phantom.nii.gz"
    assert main(["convert", str(src), str(tmp_path / "series")]) == 0
    assert main(["convert", str(tmp_path / "series"), str(tmp_path / "again.nii.gz")]) == 0
    a, b = nj.load_ct(src), nj.load_ct(tmp_path / "again.nii.gz")
    assert np.array_equal(a.hu, b.hu) and np.allclose(a.affine, b.affine, atol=1e-5)


def test_phantom_command(tmp_path):
    assert main(["phantom", str(tmp_path / "p.nii.gz"), "--spacing", "4", "--z-extent", "20"]) == 0
    assert nj.load_ct(tmp_path / "p.nii.gz").shape == (5, 80, 80)


def test_bad_input_exits_with_a_message(tmp_path, capsys):
    assert main(["info", str(tmp_path)]) == 2
    assert "no files found" in capsys.readouterr().err
    assert main(["convert", str(SAMPLE_DATA / "thorax_phantom.nii.gz"),
                 str(SAMPLE_DATA / "thorax_phantom.nii.gz"), "--overwrite"]) == 2
    assert "source file" in capsys.readouterr().err
