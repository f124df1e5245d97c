"""The jointrecon command line."""

from __future__ import annotations

from unittest import mock

import numpy as np
import pytest

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


def test_output_names_the_writers_cannot_take_are_refused_before_any_work(tmp_path, capsys):
    src = str(SAMPLE_DATA / "thorax_phantom.nii.gz")
    for name in ("out.npy", "out.png", "out.nii.gzz"):
        assert main(["convert", src, str(tmp_path / name)]) == 2
        assert "cannot write" in capsys.readouterr().err
    # a .dcm name is a DICOM folder without the suffix, as napari's writer names it
    assert main(["convert", src, str(tmp_path / "series.dcm")]) == 0
    assert (tmp_path / "series").is_dir() and len(list((tmp_path / "series").glob("*.dcm"))) == 48
    assert f"to {tmp_path / 'series'}" in capsys.readouterr().out
    # an existing output is found before simulating or denoising, and the hint names the option
    (tmp_path / "low.nii.gz").write_text("x")
    for argv in (["simulate", src, str(tmp_path / "low.nii.gz"), "--dose", "25"],
                 ["denoise", src, "--dose", "25", "-o", str(tmp_path / "low.nii.gz")]):
        with mock.patch("napari_jointrecon.dose.simulate_low_dose") as sim, \
                mock.patch("napari_jointrecon.inference.denoise") as den:
            assert main(argv) == 2
        assert not sim.called and not den.called
        assert "--overwrite" in capsys.readouterr().err
    # operating-system errors are one line, not a traceback
    (tmp_path / "dir.ply").mkdir()
    assert main(["pointcloud", src, "--reference", "--points", "10", "-o", str(tmp_path / "dir.ply"),
                 "--overwrite"]) == 2
    assert capsys.readouterr().err.startswith("jointrecon: ")
    assert main(["simulate", src, str(tmp_path / "x.nii.gz"), "--dose", "150"]) == 2
    assert "at most 100" in capsys.readouterr().err
    assert main(["denoise", src, "--model", "nope", "--dose", "25", "-o", str(tmp_path / "y.nii.gz")]) == 2
    assert capsys.readouterr().err.startswith("jointrecon: unknown model")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.ply", "low.nii.gz", "series"]


def test_demo_without_a_display_runs_under_xvfb_run(tmp_path, monkeypatch):
    from napari_jointrecon import cli

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(cli.sys, "platform", "linux")
    with mock.patch("shutil.which", return_value="/usr/bin/xvfb-run"), \
            mock.patch("os.execv", side_effect=SystemExit(0)) as execv:
        with pytest.raises(SystemExit):
            main(["demo", "--out", str(tmp_path / "demo")])
    program, argv = execv.call_args[0]
    assert program == "/usr/bin/xvfb-run" and argv[-3:] == ["demo", "--out", str(tmp_path / "demo")]
    assert not (tmp_path / "demo").exists()
    with mock.patch("shutil.which", return_value=None):
        assert main(["demo", "--out", str(tmp_path / "demo")]) == 2
    assert not (tmp_path / "demo").exists()


def test_view_without_a_display_says_what_to_run_instead(monkeypatch, capsys):
    from napari_jointrecon import cli

    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    monkeypatch.setattr(cli.sys, "platform", "linux")
    assert main(["view"]) == 2
    assert "jointrecon demo" in capsys.readouterr().err


def test_models_lists_denoisers_and_point_models(capsys):
    from napari_jointrecon.joint import POINT_MODELS

    assert main(["models"]) == 0
    out = capsys.readouterr().out
    from napari_jointrecon.joint import DEFAULT_POINT_MODEL

    assert "* unet" in out and f"* {DEFAULT_POINT_MODEL} " in out
    assert all(f" {name} " in out for name in POINT_MODELS) and " mm" in out
    assert "no network" in out  # the extrusion baseline beside the models
