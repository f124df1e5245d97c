"""The plugin inside napari: manifest, reader, writers, sample data, the Load CT widget, rendering.

Runs headless under Xvfb (pytest-xvfb starts it); see ../shared/HEADLESS.md. Every test checks real
values (shapes, millimetre geometry, HU, contrast limits, pixels), not only that nothing raised.

napari 0.9 opens paths with its own builtin reader unless told otherwise (``viewer.open``'s
default is ``plugin="napari"``), and ``plugin=None`` raises ``MultipleReaderError`` because the
builtin reader also accepts folders and ``*``. So the tests pass ``plugin="napari-jointrecon"``,
as a script would; the GUI asks the user to pick a reader instead.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import napari_jointrecon as nj
from napari_jointrecon.io import SUPPORTED_SUFFIXES
from napari_jointrecon.io.itk import ITK_SUFFIXES
from napari_jointrecon.windows import WINDOW_PRESETS, window_limits

pytestmark = pytest.mark.gui

PLUGIN = "napari-jointrecon"
REPO = Path(__file__).resolve().parents[1]
SAMPLE_DICOM = REPO / "sample_data" / "thorax_phantom_dicom"
SAMPLE_NIFTI = REPO / "sample_data" / "thorax_phantom.nii.gz"

CHEST_SHAPE = (141, 512, 512)
CHEST_SPACING = (2.0, 0.9765625, 0.9765625)
CHEST_ORIGIN = (-164.5, -164.0, -250.0)


def _open(viewer, path):
    """Open with this plugin's reader; exactly one image layer is expected."""
    layers = viewer.open(str(path), plugin=PLUGIN)
    assert len(layers) == 1 and len(viewer.layers) == 1
    layer = layers[0]
    assert layer._type_string == "image"
    return layer


def _corners(shape) -> np.ndarray:
    """The 8 corner indices of a 3D array."""
    return np.array([[k, j, i] for k in (0, shape[0] - 1) for j in (0, shape[1] - 1)
                     for i in (0, shape[2] - 1)], dtype=float)


def _assert_layer_places_volume(layer, volume) -> None:
    """The layer's data -> world transform is the volume's index -> world affine (mm)."""
    assert layer.data.shape == volume.shape
    for index in _corners(volume.shape):
        assert np.allclose(layer.data_to_world(index), volume.index_to_world(index), atol=1e-4), index
    centre = (np.array(volume.shape) - 1) / 2
    assert np.allclose(layer.data_to_world(centre), volume.index_to_world(centre), atol=1e-4)


def _hash_tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# -------------------------------------------------------------------------------------------------
# 1. manifest
# -------------------------------------------------------------------------------------------------
def test_npe2_validate_cli_accepts_the_manifest():
    result = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", "--imports", PLUGIN],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "valid" in result.stdout


def commands_by_id(contrib):
    return {c.id: c.python_name for c in contrib.commands}


def test_manifest_declares_reader_writers_samples_and_widget():
    import npe2

    manifest = npe2.PluginManifest.from_distribution(PLUGIN)
    manifest.validate_imports()  # every python_name imports and resolves
    contrib = manifest.contributions
    assert manifest.name == PLUGIN

    (reader,) = contrib.readers
    assert reader.command == f"{PLUGIN}.get_reader"
    assert reader.accepts_directories  # DICOM folders
    # the manifest's patterns are exactly the suffixes the package reads
    assert set(reader.filename_patterns) == {f"*{s}" for s in SUPPORTED_SUFFIXES}

    writers = {w.command: w for w in contrib.writers}
    assert set(writers) == {f"{PLUGIN}.write_image", f"{PLUGIN}.write_dicom"}
    image_writer, dicom_writer = writers[f"{PLUGIN}.write_image"], writers[f"{PLUGIN}.write_dicom"]
    assert {".nii", ".nii.gz", ".mha", ".nrrd"} <= set(image_writer.filename_extensions)
    assert set(image_writer.filename_extensions) <= set(ITK_SUFFIXES)
    assert dicom_writer.filename_extensions == [".dcm"]
    for writer in writers.values():
        assert [str(t) for t in writer.layer_types] == ["image"]

    assert {s.key for s in contrib.sample_data} == {"thorax_phantom", "thorax_phantom_small",
                                                    "thorax_phantom_low_dose"}
    assert [(w.display_name, w.command) for w in contrib.widgets] == [
        ("Load CT", f"{PLUGIN}.load_widget"), ("Simulate dose", f"{PLUGIN}.simulate_widget"),
        ("Denoise", f"{PLUGIN}.denoise_widget"),
        ("Compare before/after", f"{PLUGIN}.compare_widget"),
        ("3D point cloud", f"{PLUGIN}.pointcloud_widget"), ("Metrics", f"{PLUGIN}.metrics_widget"),
        ("Batch", f"{PLUGIN}.batch_widget"), ("PACS", f"{PLUGIN}.pacs_widget")]
    for widget in contrib.widgets:  # every widget's class imports
        module, _, name = commands_by_id(contrib)[widget.command].partition(":")
        assert callable(getattr(__import__(module, fromlist=[name]), name))
    commands = {c.id: c.python_name for c in contrib.commands}
    assert commands[f"{PLUGIN}.load_widget"] == "napari_jointrecon.widgets.load:LoadWidget"


# -------------------------------------------------------------------------------------------------
# 2. reader: DICOM folders
# -------------------------------------------------------------------------------------------------
def test_open_chest_dicom_folder(make_napari_viewer, chest_dir):
    viewer = make_napari_viewer()
    layer = _open(viewer, chest_dir)
    assert layer.data.shape == CHEST_SHAPE
    assert layer.data.dtype == np.float32
    assert tuple(layer.scale) == pytest.approx(CHEST_SPACING)
    assert tuple(layer.translate) == pytest.approx(CHEST_ORIGIN)
    assert np.allclose(layer.affine.affine_matrix, np.eye(4))  # axis aligned: no affine
    assert tuple(layer.contrast_limits) == pytest.approx(window_limits("soft_tissue"))
    assert layer.colormap.name == "gray"
    assert Path(layer.metadata["source"]) == chest_dir
    assert layer.metadata["source_format"] == "dicom"
    assert layer.metadata["window"] == "soft_tissue"
    assert layer.metadata["modality"] == "CT"
    # HU, not stored values: RescaleIntercept -1024 was applied
    assert float(layer.data.min()) == -1024.0 and float(layer.data.max()) > 1000
    # world coordinates in mm: the last slice is 140 * 2 mm above the first
    assert np.allclose(layer.data_to_world((140, 0, 0)), (-164.5 + 280.0, -164.0, -250.0))
    assert np.allclose(layer.data_to_world((0, 511, 511)),
                       (-164.5, -164.0 + 511 * 0.9765625, -250.0 + 511 * 0.9765625))


def test_open_sample_dicom_folder(make_napari_viewer):
    viewer = make_napari_viewer()
    layer = _open(viewer, SAMPLE_DICOM)
    volume = nj.load_ct(SAMPLE_DICOM)
    assert layer.data.shape == (48, 128, 128) == volume.shape
    assert tuple(layer.scale) == pytest.approx((2.5, 2.5, 2.5))
    assert tuple(layer.translate) == pytest.approx(volume.origin)
    assert np.array_equal(np.asarray(layer.data), volume.hu)
    assert tuple(layer.contrast_limits) == pytest.approx(window_limits("soft_tissue"))
    assert Path(layer.metadata["source"]) == SAMPLE_DICOM
    assert len(layer.metadata["ct_volume"].source_files) == 48
    _assert_layer_places_volume(layer, volume)


def test_open_without_plugin_name_needs_a_choice(make_napari_viewer):
    """With ``plugin=None`` napari finds two readers (ours and its builtin) and asks to choose."""
    from napari.errors import MultipleReaderError

    viewer = make_napari_viewer()
    for path in (SAMPLE_DICOM, SAMPLE_NIFTI):
        with pytest.raises(MultipleReaderError) as info:
            viewer.open(str(path), plugin=None)
        assert {PLUGIN, "napari"} <= set(info.value.available_plugins)
    assert len(viewer.layers) == 0


# -------------------------------------------------------------------------------------------------
# 3. reader: NIfTI, axis-aligned and flipped
# -------------------------------------------------------------------------------------------------
def test_open_sample_nifti_axis_aligned(make_napari_viewer):
    viewer = make_napari_viewer()
    layer = _open(viewer, SAMPLE_NIFTI)
    volume = nj.load_ct(SAMPLE_NIFTI)
    assert volume.is_axis_aligned
    assert tuple(layer.scale) == pytest.approx(volume.spacing) == (2.5, 2.5, 2.5)
    assert tuple(layer.translate) == pytest.approx(volume.origin)
    assert np.allclose(layer.affine.affine_matrix, np.eye(4))
    assert layer.metadata["source_format"] == "nifti"
    assert np.array_equal(np.asarray(layer.data), volume.hu)
    _assert_layer_places_volume(layer, volume)
    # the NIfTI and the DICOM copy of the phantom land on the same millimetres
    dicom = nj.load_ct(SAMPLE_DICOM)
    assert np.allclose(volume.affine, dicom.affine, atol=1e-4)


def test_open_torso_nifti_with_flipped_axes_uses_an_affine(make_napari_viewer, shared_data):
    path = shared_data / "torso-ct-nifti" / "example_ct.nii.gz"
    viewer = make_napari_viewer()
    layer = _open(viewer, path)
    volume = nj.load_ct(path)
    assert not volume.is_axis_aligned
    assert np.allclose(np.diag(volume.direction), (1, -1, -1))  # y and x flipped
    assert layer.data.shape == volume.shape == (112, 101, 122)
    assert tuple(layer.scale) == pytest.approx((3.0, 3.0, 3.0))
    assert np.allclose(layer.translate, 0)
    expected_affine = np.eye(4)
    expected_affine[:3, :3] = volume.direction
    expected_affine[:3, 3] = volume.origin
    assert np.allclose(layer.affine.affine_matrix, expected_affine)
    _assert_layer_places_volume(layer, volume)
    # voxel (0, 0, 0) is at the origin and the far corner is 3 mm per voxel *down* y and x
    assert np.allclose(layer.data_to_world((0, 0, 0)), volume.origin, atol=1e-4)
    far = np.array(volume.origin) + np.array([111, -100, -121]) * 3.0
    assert np.allclose(layer.data_to_world((111, 100, 121)), far, atol=1e-4)


def test_open_aorta_nifti(make_napari_viewer, shared_data):
    path = shared_data / "torso-ct-nifti" / "aorta_crop_ct.nii.gz"
    viewer = make_napari_viewer()
    layer = _open(viewer, path)
    volume = nj.load_ct(path)
    assert volume.is_axis_aligned and layer.data.shape == (164, 126, 120)
    assert tuple(layer.scale) == pytest.approx((1.5, 1.5, 1.5))
    assert tuple(layer.translate) == pytest.approx(volume.origin)
    _assert_layer_places_volume(layer, volume)


# -------------------------------------------------------------------------------------------------
# 4. sample data
# -------------------------------------------------------------------------------------------------
def test_open_sample_low_dose_series(make_napari_viewer):
    from scipy import ndimage

    viewer = make_napari_viewer()
    layers = viewer.open_sample(PLUGIN, "thorax_phantom_low_dose")
    assert [l.name for l in layers][1:] == [f"Thorax phantom {d}% dose" for d in (70, 50, 25, 10)]
    clean = np.asarray(layers[0].data)
    flat = ndimage.binary_erosion(np.abs(clean - 40) < 30, iterations=3)
    noise = [float((np.asarray(l.data) - clean)[flat].std()) for l in layers[1:]]
    assert noise == sorted(noise) and noise[-1] > 2 * noise[0]  # noise grows as the dose falls
    assert all(tuple(l.scale) == tuple(layers[0].scale) for l in layers)
    assert [l.metadata["dose"] for l in layers[1:]] == [0.7, 0.5, 0.25, 0.1]


def test_open_sample_small_phantom_in_hu(make_napari_viewer):
    viewer = make_napari_viewer()
    layers = viewer.open_sample(PLUGIN, "thorax_phantom_small")
    assert len(layers) == 1 and len(viewer.layers) == 1
    layer = layers[0]
    data = np.asarray(layer.data)
    assert data.shape == (48, 128, 128)
    assert tuple(layer.scale) == pytest.approx((2.5, 2.5, 2.5))
    assert tuple(layer.contrast_limits) == pytest.approx(window_limits("soft_tissue"))

    def roi(world_zyx, half=3):
        k, j, i = np.round(layer.world_to_data(world_zyx)).astype(int)
        return data[k, j - half:j + half + 1, i - half:i + half + 1]

    # air outside the body, all the way along z
    assert np.all(data[:, 0, 0] == -1000.0) and np.all(data[:, -1, -1] == -1000.0)
    assert float(data.min()) == -1000.0
    # both lungs (centred 62 mm either side of the midline) around -850 HU
    for x in (-62.0, 62.0):
        assert np.median(roi((0.0, 2.0, x))) == pytest.approx(-850.0, abs=30.0)
    # mediastinum soft tissue near +40 HU
    assert np.median(roi((0.0, 0.0, 0.0))) == pytest.approx(40.0, abs=30.0)
    # bone: the vertebral column behind (posterior, +y) holds cortical bone above 500 HU
    k0, j0, i0 = np.round(layer.world_to_data((-60.0, 50.0, -25.0))).astype(int)
    k1, j1, i1 = np.round(layer.world_to_data((60.0, 110.0, 25.0))).astype(int)
    spine = data[max(k0, 0):k1 + 1, j0:j1 + 1, i0:i1 + 1]
    assert float(spine.max()) > 500.0 and np.mean(spine > 500.0) > 0.05
    assert float(roi((0.0, 2.0, 62.0), half=6).max()) < 500.0  # no bone inside the lung


# -------------------------------------------------------------------------------------------------
# 5. writers through napari
# -------------------------------------------------------------------------------------------------
def test_save_layer_as_nifti_round_trips(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    layer = _open(viewer, SAMPLE_DICOM)
    source = nj.load_ct(SAMPLE_DICOM)
    target = tmp_path / "x.nii.gz"
    written = viewer.layers.save(str(target), plugin=PLUGIN)
    assert written == [str(target)] and target.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.nii.gz"]  # no temporary left over
    back = nj.load_ct(target)
    assert back.hu.shape == (48, 128, 128)
    assert np.array_equal(back.hu, source.hu)
    assert np.array_equal(back.hu, np.asarray(layer.data))
    assert back.spacing == pytest.approx(source.spacing)
    assert back.origin == pytest.approx(source.origin)
    assert np.allclose(back.direction, source.direction)


def test_save_flipped_nifti_layer_keeps_its_affine(make_napari_viewer, shared_data, tmp_path):
    path = shared_data / "torso-ct-nifti" / "example_ct.nii.gz"
    viewer = make_napari_viewer()
    _open(viewer, path)
    source = nj.load_ct(path)
    target = tmp_path / "torso.nii.gz"
    assert viewer.layers.save(str(target), plugin=PLUGIN) == [str(target)]
    back = nj.load_ct(target)
    assert np.array_equal(back.hu, source.hu)
    assert np.allclose(back.affine, source.affine, atol=1e-4)


def test_save_layer_as_dicom_series_round_trips(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    layer = _open(viewer, SAMPLE_DICOM)
    source = nj.load_ct(SAMPLE_DICOM)
    written = viewer.layers.save(str(tmp_path / "series.dcm"), plugin=PLUGIN)
    folder = tmp_path / "series"
    assert folder.is_dir() and not (tmp_path / "series.dcm").exists()
    files = sorted(folder.iterdir())
    assert len(files) == 48 and len(written) == 48
    assert sorted(written) == [str(f) for f in files]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["series"]  # no temporary left over
    back = nj.load_ct(folder)
    assert back.source_format == "dicom" and back.modality == "CT"
    assert np.array_equal(back.hu, source.hu)
    assert np.array_equal(back.hu, np.asarray(layer.data))
    assert back.spacing == pytest.approx(source.spacing)
    assert back.origin == pytest.approx(source.origin)
    assert np.allclose(back.direction, source.direction)
    assert back.series_uid and back.series_uid != source.series_uid  # a new series


def test_save_onto_the_source_is_refused_and_leaves_it_unchanged(make_napari_viewer, tmp_path):
    """Copies of the sample data play the sources, so a regression cannot damage the repository."""
    from napari_jointrecon._writer import write_dicom_layer, write_image_layer

    nifti = tmp_path / "src" / "phantom.nii.gz"
    dicom = tmp_path / "src" / "dicom"
    nifti.parent.mkdir()
    shutil.copy2(SAMPLE_NIFTI, nifti)
    shutil.copytree(SAMPLE_DICOM, dicom)
    before = _hash_tree(tmp_path / "src")

    viewer = make_napari_viewer()
    nifti_layer = viewer.open(str(nifti), plugin=PLUGIN)[0]
    dicom_layer = viewer.open(str(dicom), plugin=PLUGIN)[0]

    # the plugin's writers refuse, naming the reason
    data, meta, _ = nifti_layer.as_layer_data_tuple()
    with pytest.raises(nj.CTWriteError, match="refusing to overwrite a source file"):
        write_image_layer(str(nifti), data, meta)
    data, meta, _ = dicom_layer.as_layer_data_tuple()
    with pytest.raises(nj.CTWriteError, match="refusing to write into a folder"):
        write_dicom_layer(str(dicom) + ".dcm", data, meta)
    # nor into a new sub-folder of the source folder (it would become a second series there)
    with pytest.raises(nj.CTWriteError, match="refusing to write into a folder"):
        write_dicom_layer(str(dicom / "denoised.dcm"), data, meta)
    # nor a NIfTI file into the DICOM folder
    with pytest.raises(nj.CTWriteError, match="refusing to write into a folder"):
        write_image_layer(str(dicom / "x.nii.gz"), data, meta)

    # through napari the refusal reaches the user with its reason, and nothing is written
    for layer, target in ((nifti_layer, nifti), (dicom_layer, Path(str(dicom) + ".dcm")),
                          (dicom_layer, dicom / "denoised.dcm")):
        viewer.layers.selection = {layer}
        with pytest.raises(nj.CTWriteError, match="refusing"):
            viewer.layers.save(str(target), selected=True, plugin=PLUGIN)

    assert _hash_tree(tmp_path / "src") == before
    assert sorted(p.name for p in (tmp_path / "src").iterdir()) == ["dicom", "phantom.nii.gz"]


def test_save_onto_the_source_reports_the_plugins_reason(make_napari_viewer, tmp_path):
    nifti = tmp_path / "phantom.nii.gz"
    shutil.copy2(SAMPLE_NIFTI, nifti)
    viewer = make_napari_viewer()
    _open(viewer, nifti)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            viewer.layers.save(str(nifti), plugin=PLUGIN)
            message = " ".join(str(w.message) for w in caught)
        except Exception as exc:  # noqa: BLE001 - any error is fine if it names the reason
            message = str(exc)
    assert "refusing to overwrite a source file" in message


def test_save_layer_as_metaimage_header_and_raw(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    _open(viewer, SAMPLE_NIFTI)
    target = tmp_path / "x.mhd"
    viewer.layers.save(str(target), plugin=PLUGIN)
    assert np.array_equal(nj.load_ct(target).hu, nj.load_ct(SAMPLE_NIFTI).hu)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.mhd", "x.raw"]


# -------------------------------------------------------------------------------------------------
# 6. the Load CT dock widget
# -------------------------------------------------------------------------------------------------
def _load_widget(viewer):
    dock, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Load CT")
    assert type(widget).__name__ == "LoadWidget"
    return widget


def _wait_until_idle(qtbot, widget, timeout=30000):
    """Wait for the load worker to finish (the Load button is re-enabled by ``finished``)."""
    qtbot.waitUntil(lambda: widget.load_button.enabled, timeout=timeout)


def test_load_widget_scans_and_loads_a_chosen_series(make_napari_viewer, qtbot, edge_dir):
    viewer = make_napari_viewer()
    widget = _load_widget(viewer)
    assert widget.window_box.value == "soft_tissue"
    assert list(widget.window_box.choices) == list(WINDOW_PRESETS)

    widget.folder_edit.value = edge_dir
    series = widget.scan()
    assert series == nj.scan_series(edge_dir)
    counts = [s.n_slices for s in series]
    assert len(series) > 3
    assert counts == sorted(counts, reverse=True) and counts[0] == 28  # the gantry-tilt head
    assert f"{len(series)} series found" in widget.status.value
    assert widget.series_box.value == series[0].key  # the largest is preselected
    assert set(widget.series_box.choices) <= {s.key for s in series}

    # pick a smaller series
    chosen = next(s for s in series if s.n_slices == 2 and s.key in widget.series_box.choices)
    widget.series_box.value = chosen.key
    worker = widget.load()
    assert worker is not None and not widget.load_button.enabled
    qtbot.waitUntil(lambda: len(viewer.layers) == 1, timeout=30000)
    _wait_until_idle(qtbot, widget)

    layer = viewer.layers[0]
    volume = nj.load_ct(edge_dir, series=chosen.key)
    assert layer.data.shape == (chosen.n_slices, *chosen.matrix) == volume.shape == (2, 512, 512)
    assert tuple(layer.scale) == pytest.approx(chosen.spacing, abs=1e-4)
    assert np.array_equal(np.asarray(layer.data), volume.hu)
    _assert_layer_places_volume(layer, volume)
    assert widget.status.value.startswith(f"Loaded '{layer.name}': 2 x 512 x 512")
    # the scanned list and the choice survive layer changes (napari resets dock widgets' choices)
    assert widget.series_box.value == chosen.key and len(widget.series_box.choices) == len(series)
    viewer.add_image(np.zeros((5, 5)), name="unrelated")
    viewer.layers.remove("unrelated")
    assert widget.series_box.value == chosen.key and len(widget.series_box.choices) == len(series)
    assert tuple(layer.contrast_limits) == pytest.approx(window_limits("soft_tissue"))
    # napari's own contrast slider reaches the other windows too (not only the soft-tissue one)
    lo, hi = layer.contrast_limits_range
    assert lo <= -1024 and hi >= 3071

    widget.window_box.value = "lung"
    assert tuple(layer.contrast_limits) == pytest.approx(window_limits("lung")) == (-1350.0, 150.0)
    assert layer.metadata["window"] == "lung"
    widget.window_box.value = "bone"
    assert tuple(layer.contrast_limits) == pytest.approx(window_limits("bone"))


def test_load_widget_offers_every_series(make_napari_viewer, edge_dir):
    viewer = make_napari_viewer()
    widget = _load_widget(viewer)
    widget.folder_edit.value = edge_dir
    series = widget.scan()
    assert list(widget.series_box.choices) == [s.key for s in series]
    # series that read alike (several files of one UID) can still be told apart by their text
    box = widget.series_box.native
    texts = [box.itemText(i).split(". ", 1)[1] for i in range(box.count())]
    assert len(set(texts)) == len(texts)
    assert len({s.label() for s in series}) < len(series)  # the bare labels do collide here


def test_load_widget_status_names_the_chosen_series(make_napari_viewer, qtbot, edge_dir):
    viewer = make_napari_viewer()
    widget = _load_widget(viewer)
    widget.folder_edit.value = edge_dir
    series = widget.scan()
    chosen = next(s for s in series if s.n_slices == 2 and s.key in widget.series_box.choices)
    widget.series_box.value = chosen.key
    widget.load()
    qtbot.waitUntil(lambda: len(viewer.layers) == 1, timeout=30000)
    _wait_until_idle(qtbot, widget)
    assert viewer.layers[0].data.shape[0] == 2
    assert "loaded the largest" not in widget.status.value


def test_load_widget_folder_without_dicom(make_napari_viewer, qtbot, tmp_path):

    (tmp_path / "notes.txt").write_text("not a CT image\n")
    viewer = make_napari_viewer()
    widget = _load_widget(viewer)
    widget.folder_edit.value = tmp_path

    assert widget.scan() == []
    assert list(widget.series_box.choices) == []
    assert "no axial CT image found" in widget.status.value
    assert "notes.txt: not a DICOM file" in widget.status.value
    assert len(viewer.layers) == 0

    with qtbot.captureExceptions() as escaped:
        worker = widget.load()
        assert worker is not None
        _wait_until_idle(qtbot, widget)
        qtbot.wait(50)
    assert len(viewer.layers) == 0
    assert "no axial CT image found" in widget.status.value
    assert str(tmp_path) in widget.status.value
    assert widget.load_button.enabled
    assert escaped == []  # the error is shown in the widget, not raised into the event loop

    # no path at all: told to choose one, nothing started
    widget.folder_edit.value = None
    assert widget.path is None
    assert widget.load() is None and widget.scan() == []
    assert widget.status.value == "Choose a file or a DICOM folder first."


def test_load_widget_takes_arrays_with_3_or_4_columns_as_ct(make_napari_viewer, qtbot, tmp_path):
    """napari would guess RGB for a last axis of 3 or 4 and fail; a CT layer is never RGB."""
    hu = np.random.default_rng(0).normal(0, 50, (6, 64, 3)).astype(np.float32)
    np.save(tmp_path / "narrow.npy", hu)
    viewer = make_napari_viewer()
    widget = _load_widget(viewer)
    widget.file_edit.value = tmp_path / "narrow.npy"
    with qtbot.captureExceptions() as escaped:
        widget.load()
        qtbot.waitUntil(lambda: widget.load_button.enabled and not widget.status.value.startswith("Loading"),
                        timeout=30000)
    assert escaped == []
    assert len(viewer.layers) == 1 and not viewer.layers[0].rgb
    assert viewer.layers[0].data.shape == (6, 64, 3)
    assert "6 x 64 x 3" in widget.status.value


def test_load_widget_read_error_does_not_escape(make_napari_viewer, qtbot, tmp_path):
    (tmp_path / "notes.txt").write_text("not a CT image\n")
    viewer = make_napari_viewer()
    widget = _load_widget(viewer)
    widget.folder_edit.value = tmp_path
    with qtbot.captureExceptions() as escaped:
        widget.load()
        _wait_until_idle(qtbot, widget)
        qtbot.wait(50)
    assert "no axial CT image found" in widget.status.value
    assert escaped == []


# -------------------------------------------------------------------------------------------------
# 7. rendering
# -------------------------------------------------------------------------------------------------
def test_screenshot_shows_the_body_in_the_soft_tissue_window(make_napari_viewer, qtbot):
    from qtpy.QtWidgets import QApplication

    viewer = make_napari_viewer(show=True)
    layer = _open(viewer, SAMPLE_DICOM)
    assert viewer.dims.ndisplay == 2
    viewer.dims.set_point(0, float(layer.data_to_world((24, 0, 0))[0]))  # a slice through the lungs
    viewer.reset_view()
    QApplication.processEvents()
    qtbot.wait(50)
    shot = np.asarray(viewer.screenshot(canvas_only=True, flash=False))
    assert shot.ndim == 3 and shot.shape[2] == 4 and shot.shape[0] > 100 and shot.shape[1] > 100
    gray = shot[..., :3].astype(float).mean(axis=2)
    assert gray.std() > 10, "the screenshot is uniform"
    h, w = gray.shape
    centre = gray[int(h * 0.45):int(h * 0.55), int(w * 0.45):int(w * 0.55)]
    corner = max(gray[:h // 10, :w // 10].mean(), gray[:h // 10, -w // 10:].mean(),
                 gray[-h // 10:, :w // 10].mean(), gray[-h // 10:, -w // 10:].mean())
    # mediastinum (about 40 HU) sits mid-window: mid-gray, (40 + 160) / 400 * 255 = 127.5;
    # air (-1000 HU) and the canvas around the image are black
    assert centre.mean() == pytest.approx(127.5, abs=35)
    assert centre.mean() > corner + 40
