"""The dock widgets through the plugin's own contributions, under a real (virtual) display.

Denoise (worker, progress, cancel, refusal, device fallback), Compare (side by side, blend, swipe,
difference, window sync), 3D point cloud (pixels of the 3D canvas), Metrics (equal to the API).
"""

from __future__ import annotations

import json
from unittest import mock

import numpy as np
import pytest

import napari_jointrecon as nj
from napari_jointrecon import metrics as M

pytestmark = pytest.mark.gui

PLUGIN = "napari-jointrecon"


def _sample(viewer):
    viewer.open_sample(PLUGIN, "thorax_phantom_small")
    layer = viewer.layers[-1]
    assert layer.data.shape == (48, 128, 128)
    return layer


def _dock(viewer, name):
    """Open a dock and wait until its background loading (torch, the models) has ended."""
    import time

    from qtpy.QtWidgets import QApplication

    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    end = time.perf_counter() + 120
    while getattr(widget, "loading", False) and time.perf_counter() < end:
        QApplication.processEvents()
        time.sleep(0.005)
    assert not getattr(widget, "loading", False), f"{name} did not finish loading"
    return widget


def _run_and_wait(qtbot, widget, timeout=120000):
    worker = widget.run()
    assert worker is not None, widget.status.value
    qtbot.waitUntil(lambda: not widget.running, timeout=timeout)
    return worker


# -------------------------------------------------------------------------------------------------
# Denoise
# -------------------------------------------------------------------------------------------------
def test_denoise_widget_adds_the_api_result_in_place(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    ct = _sample(viewer)
    widget = _dock(viewer, "Denoise")
    assert widget.layer_box.value is ct and widget.run_button.enabled
    assert "U-Net" in widget.hint.value and "slices/s" in widget.hint.value
    widget.model_box.value = "unet"
    widget.dose_box.value = 0.25
    widget.scope_box.value = "volume"
    _run_and_wait(qtbot, widget)
    assert len(viewer.layers) == 2
    out = viewer.layers[-1]
    assert out.name == f"{ct.name} · unet 25%"
    expected = nj.denoise(np.asarray(ct.data), model="unet", dose=0.25)
    np.testing.assert_allclose(out.data, expected, atol=1e-3)
    np.testing.assert_allclose(out.scale, ct.scale)
    np.testing.assert_allclose(out.translate, ct.translate)
    assert tuple(out.contrast_limits) == tuple(ct.contrast_limits)
    assert out.metadata["denoise"]["device"] == "cpu" and out.metadata["denoise"]["slices"] == 48
    # the default on the CPU: bf16 autocast where the CPU has bf16 (unet was trained so), else ONNX Runtime
    assert out.metadata["denoise"]["runtime"] == nj.select_runtime("auto", "cpu", trained_bf16=True)
    assert widget.progress.value == widget.progress.max == 48
    assert "Added" in widget.status.value


def _denoise_slab(viewer, qtbot):
    """The sample denoised (tv) on the slab of slices 18-22 with the Denoise widget."""
    ct = _sample(viewer)
    widget = _dock(viewer, "Denoise")
    viewer.dims.set_point(0, float(ct.data_to_world((20, 0, 0))[0]))
    widget.scope_box.value = "slab"
    widget.slab_spin.value = 2
    widget.model_box.value = "tv"
    _run_and_wait(qtbot, widget)
    return ct, widget, viewer.layers[-1]


def test_denoise_slab_lands_on_its_slices(make_napari_viewer, qtbot):
    ct, _, out = _denoise_slab(make_napari_viewer(), qtbot)
    assert out.data.shape == (5, 128, 128)
    assert out.contrast_limits_range[0] <= -1024 and out.contrast_limits_range[1] >= 3071
    # slice 0 of the result is drawn where slice 18 of the input is
    np.testing.assert_allclose(out.data_to_world((0, 10, 10)), ct.data_to_world((18, 10, 10)))
    np.testing.assert_allclose(out.data, nj.denoise(np.asarray(ct.data[18:23]), model="tv", dose=0.25),
                               atol=1e-3)


def test_slab_results_refuse_slices_they_do_not_have_and_take_rois_from_the_volume(make_napari_viewer, qtbot,
                                                                                   tmp_path):
    viewer = make_napari_viewer()
    ct, widget, slab = _denoise_slab(viewer, qtbot)  # volume slices 18-22
    n_layers = len(viewer.layers)
    # on slice 30 the slab has nothing to show: denoising or a point cloud of it is refused, not
    # silently done on its last slice
    viewer.dims.set_point(0, float(ct.data_to_world((30, 0, 0))[0]))
    widget.layer_box.value = slab
    widget.scope_box.value = "slice"
    assert widget.run() is None and "outside" in widget.status.value
    cloud = _dock(viewer, "3D point cloud")
    cloud.layer_box.value = slab
    assert cloud.run() is None and "outside" in cloud.status.value
    assert len(viewer.layers) == n_layers
    # ROIs drawn on the volume measure the slab result at the same place in the patient
    metrics = _dock(viewer, "Metrics")
    metrics.image_box.value = ct
    rois = metrics.add_roi_layer()
    rois.add_rectangles(np.array([[20, 55, 55], [20, 55, 70], [20, 70, 70], [20, 70, 55]], float))
    metrics.image_box.value = slab
    metrics.reference_box.value = ct
    assert metrics.measure_slice() == {} and "outside" in metrics.status.value
    viewer.dims.set_point(0, float(ct.data_to_world((20, 0, 0))[0]))
    res = metrics.measure_slice()
    mask = rois.to_masks(mask_shape=ct.data.shape)[0][20]
    assert res["ROIs, slice 20"]["noise_hu (ROI 1)"] == pytest.approx(M.noise_std(np.asarray(slab.data[2]), mask))
    assert res["layers"] == {"image": slab.name, "reference": ct.name}
    viewer.dims.set_point(0, float(ct.data_to_world((21, 0, 0))[0]))
    res = metrics.measure_slice()
    assert "no ROI on this slice" in res["ROIs, slice 21"]["note"] and "no ROI" in metrics.status.value
    # an export holds the last measurement only, with its layers named
    assert metrics.measure_volume() is not None
    qtbot.waitUntil(lambda: metrics._worker is None, timeout=60000)
    assert len(metrics.per_slice["psnr"]) == 5
    metrics.measure_slice()
    data = json.loads(metrics.export(tmp_path / "m.json").read_text())
    assert data["per_slice"] == {} and data["results"]["layers"]["image"] == slab.name
    assert "slice 21" in data["results"]


def test_point_cloud_widget_refuses_slices_smaller_than_the_network_input(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((20, 101, 122), np.float32), name="small")
    widget = _dock(viewer, "3D point cloud")
    widget.layer_box.value = viewer.layers[0]
    assert not widget.run_button.enabled and "at least 128 x 128" in widget.status.value


def test_compile_option_runs_the_compiled_network(make_napari_viewer, qtbot):
    from napari_jointrecon import inference

    viewer = make_napari_viewer()
    ct = _sample(viewer)
    widget = _dock(viewer, "Denoise")
    widget.dose_box.value = 0.25  # the default is "estimate"
    widget.scope_box.value = "slice"
    widget.compile_box.value = True
    with mock.patch.dict(inference._COMPILED, clear=True):
        _run_and_wait(qtbot, widget, timeout=300000)
        assert ("unet", "cpu") in inference._COMPILED  # made by this run
    out = viewer.layers[-1]
    assert out.metadata["denoise"]["compiled"] is True
    assert out.metadata["denoise"]["runtime"] == "torch.compile"
    k = int(viewer.dims.current_step[0])
    expected = nj.denoise(np.asarray(ct.data[k]), model="unet", dose=0.25, runtime="torch")  # fp32 either way
    np.testing.assert_allclose(out.data[0], expected, atol=1e-2)


def test_cancel_mid_run_leaves_no_layer_and_a_second_run_is_refused(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    _sample(viewer)
    widget = _dock(viewer, "Denoise")
    widget.model_box.value = "nlm"  # one slice per step: many chances to cancel
    worker = widget.run()
    assert worker is not None
    assert widget.run() is None and "already" in widget.status.value
    qtbot.waitUntil(lambda: widget.progress.value >= 1, timeout=60000)
    widget.cancel()
    qtbot.waitUntil(lambda: not widget.running, timeout=60000)
    assert len(viewer.layers) == 1
    assert "Cancelled" in widget.status.value and widget.run_button.enabled


def test_simulate_dose_widget_adds_the_api_result_in_place_and_cancels(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    ct = _sample(viewer)
    widget = _dock(viewer, "Simulate dose")
    assert widget.layer_box.value is ct
    viewer.dims.set_point(0, float(ct.data_to_world((20, 0, 0))[0]))
    widget.scope_box.value = "slice"
    widget.dose_box.value = 0.1
    widget.seed_spin.value = 7
    _run_and_wait(qtbot, widget)
    out = viewer.layers[-1]
    info = out.metadata["simulated"]
    assert out.name == f"{ct.name} · 10% simulated" and info["first_slice"] == 20 and info["seed"] == 7
    # the slice gets the noise it gets when the whole volume is simulated (same seed)
    whole = nj.simulate_low_dose(np.asarray(ct.data), 0.1, seed=7, spacing=tuple(ct.scale), method=info["method"])
    np.testing.assert_allclose(out.data[0], whole[20], atol=1e-3)
    np.testing.assert_allclose(out.data_to_world((0, 5, 5)), ct.data_to_world((20, 5, 5)))
    assert np.std(out.data[0] - np.asarray(ct.data[20])) > 5  # noise was added
    # a whole-volume run cancelled at once adds nothing; a second run meanwhile is refused
    n = len(viewer.layers)
    widget.scope_box.value = "volume"
    assert widget.run() is not None
    assert widget.run() is None and "already" in widget.status.value
    qtbot.waitUntil(lambda: widget.progress.value >= 1, timeout=60000)
    assert " left" in widget.status.value  # the time left, from the batches done
    widget.cancel()
    qtbot.waitUntil(lambda: not widget.running, timeout=60000)
    assert len(viewer.layers) == n and "Cancelled" in widget.status.value
    # a single 2D slice is simulated as it is
    flat = viewer.add_image(np.asarray(ct.data[10]), name="flat", scale=tuple(ct.scale)[1:])
    widget.layer_box.value = flat
    _run_and_wait(qtbot, widget)
    assert viewer.layers[-1].data.shape == (128, 128) and viewer.layers[-1].name == "flat · 10% simulated"


def test_gpu_out_of_memory_falls_back_to_the_cpu(make_napari_viewer, qtbot):
    from napari_jointrecon import inference
    from napari_jointrecon.widgets.denoise import device_choices

    labels = dict((v, k) for k, v in device_choices(cuda=True, mps=False))
    assert labels["auto"] == "auto (cuda)" and labels["cuda"] == "cuda" and "not available" in labels["mps"]
    real = inference._run_torch_batch

    def fake_batch(model, slices, dose, device):
        if device == "cuda":
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(model, slices, dose, device)

    viewer = make_napari_viewer()
    ct = _sample(viewer)
    with mock.patch.object(inference, "_cuda_available", return_value=True), \
         mock.patch.object(inference, "_run_torch_batch", side_effect=fake_batch):
        widget = _dock(viewer, "Denoise")
        widget.dose_box.value = 0.25  # the default is "estimate"
        assert widget.device_box.value == "auto"
        widget.device_box.value = "cuda"
        assert widget.run_button.enabled  # CUDA "exists"
        _run_and_wait(qtbot, widget)
    out = viewer.layers[-1]
    assert out.metadata["denoise"]["device"] == "cpu"
    np.testing.assert_allclose(out.data, nj.denoise(np.asarray(ct.data), model="unet", dose=0.25), atol=1e-3)


def test_unavailable_device_and_bad_layers_disable_run_with_a_reason(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = _dock(viewer, "Denoise")
    assert not widget.run_button.enabled and "Open a CT" in widget.status.value
    rgb = viewer.add_image(np.zeros((64, 64, 3), np.uint8), rgb=True, name="photo")
    widget.layer_box.value = rgb
    assert not widget.run_button.enabled and "RGB" in widget.status.value
    labels = viewer.add_labels(np.zeros((4, 64, 64), np.int32), name="organs")
    widget.layer_box.value = labels
    assert not widget.run_button.enabled and "labels layer" in widget.status.value
    flat = viewer.add_image(np.zeros((64, 64), np.float32), name="one slice")
    widget.layer_box.value = flat
    widget.scope_box.value = "volume"
    assert not widget.run_button.enabled and "2D image" in widget.status.value
    widget.scope_box.value = "slice"
    assert widget.run_button.enabled
    if not widget._cuda:
        widget.device_box.value = "cuda"
        assert not widget.run_button.enabled and "CUDA is not available" in widget.status.value
    assert widget.run() is None  # refused, nothing added
    assert len(viewer.layers) == 3


def test_denoise_error_becomes_a_message_not_a_crash(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    bad = np.zeros((4, 64, 64), np.float32)
    bad[1, 5, 5] = np.nan
    viewer.add_image(bad, name="broken")
    widget = _dock(viewer, "Denoise")
    with mock.patch("napari_jointrecon.widgets._common.notify_error") as notify:
        _run_and_wait(qtbot, widget)
    assert "NaN" in widget.status.value and notify.called
    assert len(viewer.layers) == 1 and widget.run_button.enabled


def test_estimated_dose_is_used_and_reported(make_napari_viewer, qtbot):
    from napari_jointrecon.dose import estimate_dose
    from napari_jointrecon.inference import conditioning_for

    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "thorax_phantom_low_dose")
    by_dose = {layer.name: layer for layer in viewer.layers}
    low10 = next(layer for name, layer in by_dose.items() if "10" in name)
    low70 = next(layer for name, layer in by_dose.items() if "70" in name)
    assert estimate_dose(np.asarray(low10.data))[1] < estimate_dose(np.asarray(low70.data))[1]
    widget = _dock(viewer, "Denoise")
    assert widget.dose_box.value == "estimate"  # the default: the image's own noise decides
    widget.layer_box.value = low10
    widget.model_box.value = "unet"
    _run_and_wait(qtbot, widget)
    info = viewer.layers[-1].metadata["denoise"]
    expected = conditioning_for("unet", np.asarray(low10.data), "estimate")
    assert info["estimated"] and info["conditioning"] == expected.describe()
    assert viewer.layers[-1].name.endswith(f"unet {expected.label()}")


def test_result_layer_saves_with_the_plugin_writer(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    ct = _sample(viewer)
    widget = _dock(viewer, "Denoise")
    widget.model_box.value = "tv"
    _run_and_wait(qtbot, widget)
    out = viewer.layers[-1]
    path = tmp_path / "denoised.nii.gz"
    written = out.save(str(path), plugin=PLUGIN)
    assert written
    back = nj.load_ct(path)
    np.testing.assert_allclose(back.hu, out.data, atol=1e-3)
    np.testing.assert_allclose(back.spacing, ct.scale, atol=1e-5)


# -------------------------------------------------------------------------------------------------
# Compare
# -------------------------------------------------------------------------------------------------
@pytest.fixture
def before_after(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    ct = _sample(viewer)
    after = viewer.add_image(nj.denoise(np.asarray(ct.data), model="tv", dose=0.25),
                             name=f"{ct.name} · tv 25%", scale=ct.scale, translate=ct.translate,
                             contrast_limits=ct.contrast_limits,
                             metadata={"denoise": {"input": ct.name, "model": "tv", "dose": 0.25}})
    widget = _dock(viewer, "Compare before/after")
    assert widget.before_box.value is ct and widget.after_box.value is after
    return viewer, ct, after, widget


def test_compare_side_by_side_blend_and_window_sync(before_after):
    viewer, ct, after, widget = before_after
    widget.mode_box.value = "blend"
    widget.mode_box.value = "side"
    from napari_jointrecon.widgets.compare import _grid

    assert _grid(viewer).enabled and ct.visible and after.visible
    widget.mode_box.value = "blend"
    assert not _grid(viewer).enabled
    assert viewer.layers.index(after) > viewer.layers.index(ct)
    widget.slider.value = 0.2
    assert after.opacity == pytest.approx(0.2)
    widget.toggle()
    assert after.opacity == pytest.approx(1.0)
    widget.toggle()
    assert after.opacity == pytest.approx(0.0)
    ct.contrast_limits = (-1350.0, 150.0)  # lung window on "before": "after" follows
    assert tuple(after.contrast_limits) == pytest.approx((-1350.0, 150.0))


def test_swipe_cuts_only_the_displayed_slice(before_after):
    viewer, ct, after, widget = before_after
    viewer.dims.set_point(0, float(ct.data_to_world((30, 0, 0))[0]))
    widget.slider.value = 0.25
    widget.mode_box.value = "swipe"
    swipe = viewer.layers[-1]
    assert swipe.name.startswith("swipe") and swipe.data.shape == (1, 128, 32)
    np.testing.assert_array_equal(swipe.data[0], np.asarray(after.data[30])[:, :32])
    np.testing.assert_allclose(swipe.data_to_world((0, 5, 5)), after.data_to_world((30, 5, 5)))
    assert ct.visible and not after.visible
    widget.slider.value = 0.75
    assert swipe.data.shape == (1, 128, 96)
    viewer.dims.set_point(0, float(ct.data_to_world((10, 0, 0))[0]))  # follows the slice
    np.testing.assert_array_equal(swipe.data[0], np.asarray(after.data[10])[:, :96])
    ct.contrast_limits = (-200.0, 300.0)
    assert tuple(swipe.contrast_limits) == pytest.approx((-200.0, 300.0))
    widget.mode_box.value = "blend"
    assert swipe not in viewer.layers


def test_difference_layer_is_after_minus_before(before_after):
    viewer, ct, after, widget = before_after
    viewer.dims.set_point(0, float(ct.data_to_world((30, 0, 0))[0]))
    widget.mode_box.value = "difference"
    diff = viewer.layers[-1]
    # the displayed slice only (cut again when the slice moves, like the swipe curtain)
    np.testing.assert_allclose(diff.data[0], np.asarray(after.data[30]) - np.asarray(ct.data[30]), atol=1e-4)
    np.testing.assert_allclose(diff.data_to_world((0, 5, 5)), ct.data_to_world((30, 5, 5)))
    assert diff.colormap.name == "bwr"
    lo, hi = diff.contrast_limits
    assert lo == pytest.approx(-hi) and hi > 0
    assert diff.visible and not ct.visible and not after.visible
    viewer.dims.set_point(0, float(ct.data_to_world((12, 0, 0))[0]))
    assert viewer.layers[-1] is diff and tuple(diff.contrast_limits) == (lo, hi)
    np.testing.assert_allclose(diff.data[0], np.asarray(after.data[12]) - np.asarray(ct.data[12]), atol=1e-4)
    np.testing.assert_allclose(diff.data_to_world((0, 5, 5)), ct.data_to_world((12, 5, 5)))


def test_compare_with_a_slab_result_and_other_layers(make_napari_viewer):
    from napari_jointrecon.widgets._common import result_layer_kwargs

    viewer = make_napari_viewer()
    ct = _sample(viewer)
    slab = viewer.add_image(nj.denoise(np.asarray(ct.data[18:23]), model="tv", dose=0.25),
                            **result_layer_kwargs(ct, name="slab", first_slice=18,
                                                  metadata={"denoise": {"first_slice": 18}}))
    points = viewer.add_points(np.array([[40.0, 60.0, 60.0]]), name="marks")
    widget = _dock(viewer, "Compare before/after")
    widget.before_box.value, widget.after_box.value = ct, slab
    # side by side: the points would get a grid cell of their own, so they are hidden meanwhile
    widget.mode_box.value = "side"
    assert widget.apply() == "side" and not points.visible
    widget.mode_box.value = "blend"
    assert points.visible
    # difference: the slab against the slices of 'before' it was made from, in place
    viewer.dims.set_point(0, float(ct.data_to_world((20, 0, 0))[0]))
    widget.mode_box.value = "difference"
    diff = viewer.layers[-1]
    np.testing.assert_allclose(diff.data[0], np.asarray(slab.data[2]) - np.asarray(ct.data[20]), atol=1e-4)
    np.testing.assert_allclose(diff.data_to_world((0, 5, 5)), ct.data_to_world((20, 5, 5)))
    viewer.dims.set_point(0, float(ct.data_to_world((30, 0, 0))[0]))
    assert not diff.visible  # off the slab: nothing to subtract there
    # swipe off the slab: nothing to cut there, and the status says so
    viewer.dims.set_point(0, float(ct.data_to_world((30, 0, 0))[0]))
    widget.mode_box.value = "swipe"
    swipe = next(layer for layer in viewer.layers if layer.name.startswith("swipe"))
    assert not swipe.visible and "outside 'slab'" in widget.status.value
    viewer.dims.set_point(0, float(ct.data_to_world((20, 0, 0))[0]))
    assert swipe.visible and "Swipe:" in widget.status.value
    np.testing.assert_array_equal(swipe.data[0], np.asarray(slab.data[2])[:, :swipe.data.shape[-1]])


def test_compare_refuses_a_single_layer(make_napari_viewer):
    viewer = make_napari_viewer()
    _sample(viewer)
    widget = _dock(viewer, "Compare before/after")
    assert widget.apply() is None
    assert "Choose" in widget.status.value or "same layer" in widget.status.value


# -------------------------------------------------------------------------------------------------
# Metrics
# -------------------------------------------------------------------------------------------------
def test_metrics_panel_equals_the_api_and_exports(before_after, qtbot, tmp_path):
    viewer, ct, after, _ = before_after
    widget = _dock(viewer, "Metrics")
    widget.image_box.value = after
    widget.reference_box.value = ct
    viewer.dims.set_point(0, float(ct.data_to_world((25, 0, 0))[0]))
    res = widget.measure_slice()
    api = M.image_metrics(np.asarray(after.data[25]), np.asarray(ct.data[25]))
    assert res["slice 25"] == pytest.approx(api)
    assert widget.table.column_headers == ("metric", "value", "unit")
    rows = widget.table.data.to_list()
    group = [r[0] for r in rows].index("slice 25")  # each group's name on a row of its own
    assert not any(rows[group][1:])
    psnr = next(r for r in rows[group + 1:] if r[0] == "psnr")
    assert psnr[2] == "dB" and float(psnr[1]) == pytest.approx(api["psnr"], rel=1e-3)
    qtbot.waitUntil(lambda: widget._canvas is not None, timeout=30000)  # matplotlib loaded
    assert widget._canvas.isHidden()  # no empty plot before a curve
    worker = widget.measure_volume()
    assert worker is not None
    qtbot.waitUntil(lambda: widget._worker is None, timeout=60000)
    vol = widget.results["volume (48 slices)"]
    per = [M.image_metrics(np.asarray(after.data[k]), np.asarray(ct.data[k]))["psnr"] for k in range(48)]
    assert vol["psnr"] == pytest.approx(np.mean(per)) and vol["psnr std"] == pytest.approx(np.std(per, ddof=1))
    assert widget._canvas is not None and len(widget._axes.lines[0].get_xdata()) == 48
    assert not widget._canvas.isHidden()
    assert widget.results["run"]["model"] == "tv"
    path = widget.export(tmp_path / "m.json")
    data = json.loads(path.read_text())
    assert data["results"]["volume (48 slices)"]["psnr"] == pytest.approx(vol["psnr"])
    assert len(data["per_slice"]["psnr"]) == 48
    assert data["units"]["psnr"] == "dB" and data["units"]["rmse_body_hu"] == "HU" and "ssim" not in data["units"]
    csv_path = widget.export(tmp_path / "m.csv")
    import csv

    rows = list(csv.reader(csv_path.open()))
    assert rows[0] == ["group", "metric", "value", "unit"] and all(len(r) == 4 for r in rows)
    assert any(r[:2] == ["volume (48 slices)", "psnr"] and r[3] == "dB" for r in rows)
    per_slice = list(csv.reader((tmp_path / "m_per_slice.csv").open()))
    assert per_slice[0][:2] == ["slice", "psnr (dB)"] and len(per_slice) == 49
    assert float(per_slice[1][1]) == pytest.approx(per[0])
    assert widget.export(tmp_path / "m.txt") is None
    widget.measure_slice()
    assert widget._canvas.isHidden()  # a slice's measurement has no curve: the volume's goes


def test_noise_and_cnr_in_drawn_regions(make_napari_viewer):
    viewer = make_napari_viewer()
    ct = _sample(viewer)
    widget = _dock(viewer, "Metrics")
    widget.image_box.value = ct
    widget.reference_box.value = None
    rois = widget.add_roi_layer()
    k = 24
    viewer.dims.set_point(0, float(ct.data_to_world((k, 0, 0))[0]))
    rois.add_rectangles(np.array([[k, 55, 55], [k, 55, 70], [k, 70, 70], [k, 70, 55]], float))
    rois.add_rectangles(np.array([[k, 2, 2], [k, 2, 20], [k, 20, 20], [k, 20, 2]], float))
    res = widget.measure_slice()[f"ROIs, slice {k}"]
    masks = rois.to_masks(mask_shape=ct.data.shape)
    img = np.asarray(ct.data[k])
    assert res["noise_hu (ROI 1)"] == pytest.approx(M.noise_std(img, masks[0][k]))
    assert res["cnr (ROI 1 vs background)"] == pytest.approx(M.cnr(img, masks[0][k], masks[1][k]))


# -------------------------------------------------------------------------------------------------
# 3D point cloud
# -------------------------------------------------------------------------------------------------
def test_point_cloud_is_drawn_over_the_volume_in_3d(make_napari_viewer, qtbot, shared_data):
    from qtpy.QtWidgets import QApplication

    viewer = make_napari_viewer(show=True)
    chest = nj.load_ct(shared_data / "chest-ct-dicom")
    hu = chest.hu.copy()
    hu[60:81] = nj.simulate_low_dose(chest.hu[60:81], 0.25, seed=3, spacing=chest.spacing)
    low = chest.with_hu(hu)
    ct = viewer.add_image(low.hu, **low.layer_kwargs(name="chest 25%"))
    viewer.dims.set_point(0, float(ct.data_to_world((70, 0, 0))[0]))
    # other volumes: one shown (hidden in 3D too, napari would upload it), one hidden by the user
    shown = viewer.add_image(np.zeros((5, 64, 64), np.float32), name="another volume", scale=ct.scale)
    kept_hidden = viewer.add_image(np.zeros((5, 64, 64), np.float32), name="a hidden volume", scale=ct.scale,
                                   visible=False)
    widget = _dock(viewer, "3D point cloud")
    widget.layer_box.value = ct
    widget.distance_check.value = False
    step = viewer.dims.range[0].step
    _run_and_wait(qtbot, widget)
    assert viewer.dims.ndisplay == 3
    pred_layer, ref_layer = viewer.layers[-1], viewer.layers[-2]
    # the z slider keeps the slice spacing as its step (slider positions stay slices)
    assert step == pytest.approx(2.0) and viewer.dims.range[0].step == pytest.approx(step)
    from napari_jointrecon.widgets._common import layer_points_world

    pred, ref = layer_points_world(pred_layer), layer_points_world(ref_layer)
    assert pred_layer._type_string == "points" and len(pred) == 1000 and len(ref) == 10000
    from napari_jointrecon.joint import DEFAULT_POINT_MODEL

    assert widget.model_box.value == DEFAULT_POINT_MODEL  # preselected: the most accurate one
    expected = nj.predict_point_cloud(low, slice_index=70, dose=0.25, model=DEFAULT_POINT_MODEL).points
    np.testing.assert_allclose(pred, expected, atol=1e-4)
    assert "Chamfer" in widget.status.value and "on cpu" in widget.status.value
    assert pred_layer.metadata["pointcloud"]["device"] == "cpu"  # the device the networks ran on
    # the points sit on the anatomy: near the reference surface, in world mm
    d = np.linalg.norm(pred[:, None, :] - ref[None, ::10, :], axis=2).min(axis=1)
    assert np.median(d) < 10
    QApplication.processEvents()
    qtbot.wait(100)
    shot = np.asarray(viewer.screenshot(canvas_only=True, flash=False))[..., :3].astype(int)
    r, g, b = shot[..., 0], shot[..., 1], shot[..., 2]
    orange = (r > 200) & (g > 120) & (g < 210) & (b < 80)  # the prediction's #ffb000
    gray = (abs(r - g) < 8) & (abs(g - b) < 8) & (r > 40)  # the CT plane in the soft-tissue window
    assert orange.sum() > 200, "the predicted points are not visible"
    assert gray.sum() > 2000, "the CT slice is not visible"
    ys, xs = np.nonzero(orange)
    gy, gx = np.nonzero(gray)
    # the cloud surrounds the slice: its centre is within the CT plane's bounding box
    assert gy.min() < ys.mean() < gy.max() and gx.min() < xs.mean() < gx.max()
    # framed on the cloud (the body around the slice), not on the whole scan: it fills the canvas
    from napari_jointrecon.widgets._common import _camera, viewbox_size

    camera = _camera(viewer)
    lo, hi = np.concatenate([pred, ref]).min(axis=0), np.concatenate([pred, ref]).max(axis=0)
    np.testing.assert_allclose(camera.center, (lo + hi) / 2, atol=1.0)
    up = np.abs(np.asarray(camera.up_direction))
    right = np.abs(np.cross(camera.view_direction, camera.up_direction))
    on_screen = np.array([up @ (hi - lo), right @ (hi - lo)]) * camera.zoom
    assert np.all(on_screen <= viewbox_size(viewer) + 1) and np.max(on_screen / viewbox_size(viewer)) > 0.85
    # the slice is drawn by a one-slice layer: the volume hides in 3D (napari would upload all of it)
    plane = next(layer for layer in viewer.layers if "slice_plane_of" in layer.metadata)
    assert plane.data.shape == (1,) + ct.data.shape[1:] and plane.visible and not ct.visible
    assert not shown.visible and not kept_hidden.visible
    # the metrics panel compares the two clouds like the API
    metrics = _dock(viewer, "Metrics")
    out = metrics.measure_clouds()
    from napari_jointrecon.pointcloud import point_metrics, slab_frame

    frame = slab_frame(low, 70)
    api = point_metrics(frame.world_to_normalised(pred, low), frame.world_to_normalised(ref, low), frame)
    assert out["chamfer (normalised)"] == pytest.approx(api["chamfer"], rel=1e-4)
    assert out["F-score @5%"] == pytest.approx(api["f5"], rel=1e-4)
    viewer.dims.ndisplay = 2  # back in 2D: the volumes again (as the user left them), not the plane
    assert ct.visible and shown.visible and not kept_hidden.visible and not plane.visible


def test_point_cloud_widget_refuses_a_2d_image(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((256, 256), np.float32), name="flat")
    widget = _dock(viewer, "3D point cloud")
    widget.layer_box.value = viewer.layers[0]
    assert not widget.run_button.enabled and "2D image" in widget.status.value
    assert widget.run() is None and len(viewer.layers) == 1


# -------------------------------------------------------------------------------------------------
# The main job's headless demo (what `bash scripts/run.sh` runs without a screen)
# -------------------------------------------------------------------------------------------------
def test_demo_runs_the_workflow_and_writes_screenshots(tmp_path):
    import os
    import subprocess
    import sys

    from skimage.io import imread

    from napari_jointrecon.demo import SCREENSHOTS

    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "napari_jointrecon.cli", "demo", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = (out / "report.md").read_text()
    assert "Denoised with `unet`" in report and "| denoised |" in report and "Point cloud:" in report
    for name in SCREENSHOTS:
        image = imread(out / name)
        assert image.shape[0] > 200 and image.shape[1] > 200 and image[..., :3].std() > 10, name


def test_denoise_a_2d_slice_layer(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    _sample(viewer)
    flat = viewer.add_image(np.asarray(viewer.layers[0].data[24]), name="one slice", scale=(2.5, 2.5),
                            translate=(-10.0, 5.0))
    widget = _dock(viewer, "Denoise")
    widget.dose_box.value = 0.25  # the default is "estimate"
    widget.layer_box.value = flat
    widget.scope_box.value = "slice"
    widget.model_box.value = "tv"
    _run_and_wait(qtbot, widget)
    out = viewer.layers[-1]
    assert out.ndim == 2 and out.name == "one slice · tv 25%", widget.status.value
    np.testing.assert_allclose(out.data, nj.denoise(np.asarray(flat.data), model="tv", dose=0.25), atol=1e-3)
    np.testing.assert_allclose(out.scale, flat.scale)
    np.testing.assert_allclose(out.translate, flat.translate)


def test_swipe_and_difference_layers_are_not_offered_as_inputs(before_after):
    viewer, ct, after, widget = before_after
    widget.mode_box.value = "swipe"
    names = [name for name, _ in widget._choices()]
    assert not any(name.startswith("swipe") for name in names)
    widget.mode_box.value = "difference"
    assert len(widget._choices()) == 2


# -------------------------------------------------------------------------------------------------
# Review fixes: slices matched by position, axial view, removed inputs, Compare in 3D
# -------------------------------------------------------------------------------------------------
def test_metrics_match_slices_by_position_not_by_index(make_napari_viewer, qtbot):
    """A one-slice simulation of slice 20, and a slab that starts at slice 10, are measured against
    the reference slices where they lie; layers on another grid are refused."""
    from napari_jointrecon.metrics import image_metrics

    viewer = make_napari_viewer()
    ct = _sample(viewer)
    full = np.asarray(ct.data, dtype=np.float32)
    viewer.dims.set_point(0, float(ct.data_to_world((20, 0, 0))[0]))
    sim = _dock(viewer, "Simulate dose")
    sim.layer_box.value, sim.scope_box.value = ct, "slice"
    _run_and_wait(qtbot, sim)
    one = viewer.layers[-1]
    assert one.data.shape[0] == 1
    metrics = _dock(viewer, "Metrics")
    metrics.image_box.value, metrics.reference_box.value = one, ct
    res = metrics.measure_slice()
    assert res["slice 20"]["psnr"] == pytest.approx(image_metrics(np.asarray(one.data[0]), full[20])["psnr"])
    # a slab copied from slices 10-19, with no metadata at all: identical voxels, a perfect match
    slab = viewer.add_image(full[10:20], name="slab", scale=ct.scale,
                            translate=ct.data_to_world((10, 0, 0)))
    viewer.dims.set_point(0, float(ct.data_to_world((15, 0, 0))[0]))
    metrics.image_box.value, metrics.reference_box.value = slab, ct
    res = metrics.measure_slice()
    assert res["slice 15"]["rmse_hu"] == 0.0
    metrics.measure_volume()
    qtbot.waitUntil(lambda: metrics._worker is None, timeout=60000)
    assert metrics.per_slice["slice"] == list(range(10, 20)) and not any(metrics.per_slice["rmse_hu"])
    # the same array half a slice off, or with another spacing: refused, not measured
    for kwargs in ({"translate": ct.data_to_world((10.5, 0, 0))},
                   {"scale": (ct.scale[0] * 2, *ct.scale[1:]), "translate": ct.translate}):
        off = viewer.add_image(full[10:20], name="off", **{"scale": ct.scale, **kwargs})
        metrics.image_box.value = off
        assert metrics.measure_slice() == {} and "same voxel grid" in metrics.status.value
        viewer.layers.remove(off)
    # a slab reaching past the reference's end is refused
    past = viewer.add_image(full[40:48], name="past", scale=ct.scale, translate=ct.data_to_world((44, 0, 0)))
    metrics.image_box.value = past
    assert metrics.measure_slice() == {} and "do not overlap" in metrics.status.value


def test_displayed_slice_tools_need_the_axial_2d_view(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    ct = _sample(viewer)
    widget = _dock(viewer, "Denoise")
    widget.scope_box.value = "slice"
    viewer.dims.order = (1, 0, 2)  # a coronal view
    assert widget.run() is None and "coronal or sagittal" in widget.status.value
    viewer.dims.order = (0, 1, 2)
    viewer.dims.ndisplay = 3
    assert widget.run() is None and "3D view" in widget.status.value
    metrics = _dock(viewer, "Metrics")
    metrics.image_box.value = ct
    assert metrics.measure_slice() == {} and "3D view" in metrics.status.value
    viewer.dims.ndisplay = 2
    _run_and_wait(qtbot, widget)
    assert len(viewer.layers) == 2


def test_a_layer_removed_mid_run_gets_no_result(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    ct = _sample(viewer)
    widget = _dock(viewer, "Denoise")
    widget.scope_box.value = "volume"
    other = viewer.add_image(np.asarray(ct.data[:4]), name="other", scale=ct.scale)
    widget.layer_box.value = ct
    said = []
    with mock.patch("napari.utils.notifications.show_info", side_effect=said.append):
        assert widget.run() is not None
        viewer.layers.remove(ct)
        qtbot.waitUntil(lambda: not widget.running, timeout=120000)
    assert list(viewer.layers) == [other] and any("removed meanwhile" in t for t in said)


def test_compare_slice_modes_return_to_2d_and_side_by_side_fits_the_view(before_after):
    viewer, ct, after, widget = before_after
    viewer.dims.ndisplay = 3
    widget.mode_box.value = "difference"
    assert viewer.dims.ndisplay == 2 and "2D view" in widget.status.value
    camera = viewer.scene.camera if hasattr(viewer, "scene") else viewer.camera
    camera.zoom *= 4
    zoomed = camera.zoom
    widget.mode_box.value = "side"
    assert camera.zoom < zoomed  # reset to fit both cells


def test_metrics_say_when_rois_are_2d(make_napari_viewer):
    viewer = make_napari_viewer()
    ct = _sample(viewer)
    rois = viewer.add_shapes([np.array([[40, 40], [40, 60], [60, 60], [60, 40]])], shape_type="polygon",
                             name="flat rois")
    metrics = _dock(viewer, "Metrics")
    metrics.image_box.value, metrics.reference_box.value, metrics.roi_box.value = ct, None, rois
    metrics.measure_slice()
    assert "2D Shapes layer" in metrics.status.value


def test_compare_clears_its_layers_when_an_input_is_removed(before_after):
    viewer, ct, after, widget = before_after
    widget.mode_box.value = "swipe"
    assert any("swipe_of" in layer.metadata for layer in viewer.layers)
    viewer.layers.remove(after)
    assert not any("swipe_of" in layer.metadata for layer in viewer.layers)
    assert "was removed" in widget.status.value


def test_displayed_slice_of_an_oblique_series_is_the_one_napari_draws(make_napari_viewer, shared_data):
    """A tilt-corrected series has an oblique affine: the widgets take the slice napari shows."""
    import warnings

    from napari_jointrecon.widgets._common import current_slice

    ct = nj.load_ct(shared_data / "dicom-edge-cases" / "ge-gantry-tilt-head")
    viewer = make_napari_viewer()
    layer = viewer.add_image(ct.hu, **ct.layer_kwargs())
    assert not ct.is_axis_aligned
    viewer.reset_view()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # napari: non-orthogonal slicing
        for k in (5, 20, 35, 50):  # of 56 slices
            viewer.dims.set_point(0, float(layer.data_to_world((k, 256, 256))[0]))
            layer.refresh()
            drawn = np.asarray(layer._slice.image.raw)
            assert np.array_equal(drawn, layer.data[current_slice(viewer, layer)]), k


def test_images_that_are_not_hu_get_a_note(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    img = viewer.add_image(np.random.default_rng(0).random((4, 64, 64)).astype(np.float32), name="photo-ish")
    for name in ("Denoise", "Simulate dose"):
        widget = _dock(viewer, name)
        widget.layer_box.value = img
        widget.scope_box.value = "volume"
        if name == "Denoise":
            widget.model_box.value = "tv"
        _run_and_wait(qtbot, widget)
        assert "Added" in widget.status.value and "Hounsfield" in widget.status.value
    ct = _sample(viewer)
    widget.layer_box.value = ct
    _run_and_wait(qtbot, widget)
    assert "Hounsfield" not in widget.status.value


def test_simulate_uses_poisson_counts_for_the_phantom_even_renamed_and_not_for_its_copies(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    ct = _sample(viewer)
    ct.name = "my phantom"
    widget = _dock(viewer, "Simulate dose")
    widget.layer_box.value, widget.scope_box.value = ct, "slice"
    _run_and_wait(qtbot, widget)
    low = viewer.layers[-1]
    assert low.metadata["simulated"]["method"] == "poisson"
    widget.layer_box.value = low
    _run_and_wait(qtbot, widget)
    assert viewer.layers[-1].metadata["simulated"]["method"] == "insert"
    chest = viewer.add_image(np.asarray(ct.data) + 0.0, name="a scan", scale=ct.scale)
    widget.layer_box.value = chest
    _run_and_wait(qtbot, widget)
    assert viewer.layers[-1].metadata["simulated"]["method"] == "insert"
