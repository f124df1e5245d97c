"""The headless demo: the whole workflow through the plugin's dock widgets, with screenshots.

Loads a low-dose CT and its full-dose reference (by default the plugin's sample data: the 1 mm
thorax phantom, noise-free, and its simulated 25 % dose; or the real chest series with ``chest=``), denoises it with the
default model in the Denoise widget, compares before/after (swipe, side by side), measures it in
the Metrics widget and predicts the 3D point cloud of the displayed slice. Writes screenshots and a
report with the timings. ``scripts/make_screenshots.py`` runs it for the README's pictures.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

__all__ = ["run_demo", "default_sample_path", "SCREENSHOTS"]

PLUGIN = "napari-jointrecon"
SCREENSHOTS = ("compare_swipe.png", "compare_side_by_side.png", "metrics_panel.png", "pointcloud_3d.png")


def default_sample_path() -> Path:
    """The DICOM sample series in the repository's ``sample_data/`` (when run from a checkout)."""
    return Path(__file__).resolve().parents[1] / "sample_data" / "thorax_phantom_dicom"


def _shown_path(path: Path) -> str:
    """``path`` for the report: beside the checkout as ``../...`` (the shared data), else whole."""
    checkout = Path(__file__).resolve().parents[1]
    try:
        return str(Path("..") / path.resolve().relative_to(checkout.parent))
    except ValueError:
        return str(path)


def _settle(app, seconds: float = 0.3) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.01)


def _wait(app, busy, timeout: float = 600.0) -> None:
    end = time.perf_counter() + timeout
    while busy():
        if time.perf_counter() > end:
            raise TimeoutError("the widget did not finish in time")
        app.processEvents()
        time.sleep(0.01)


def run_demo(out_dir: str | Path = "demo_output", input_path: str | Path | None = None, *,
             chest: bool = False, dose: float = 0.25, prefix: str = "") -> Path:
    """Run the workflow in napari (needs a display, e.g. Xvfb); returns the report's path.

    ``input_path``: a full-dose CT to use instead of the sample (its low dose is simulated).
    ``prefix``: put before the names of the screenshots and the report (``SCREENSHOTS``). The window
    is 1400 x 1000 pixels, the plugin's docks one tabbed panel on its right; the slice views are
    framed on the body.
    """
    import napari
    from qtpy.QtWidgets import QApplication

    from .dose import simulate_low_dose
    from .io import load_ct
    from .widgets._common import body_box, frame_camera

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    viewer = napari.Viewer(show=True, title="napari-jointrecon demo")
    viewer.window._qt_window.resize(1400, 1000)
    app = QApplication.instance()
    t0 = time.perf_counter()
    if chest or input_path:
        if chest:
            shared = Path(os.environ.get("JOINTRECON_SHARED_DATA",
                                         Path(__file__).resolve().parents[2] / "shared" / "data"))
            input_path = shared / "chest-ct-dicom"
        full = load_ct(input_path)
        low = simulate_low_dose(full, dose, seed=0)
        ref_layer = viewer.add_image(full.hu, **full.layer_kwargs(name="full dose"))
        low_layer = viewer.add_image(low.hu, **low.layer_kwargs(name=f"{dose * 100:g}% dose"))
        source = _shown_path(Path(input_path))
    else:
        from .widgets._common import layer_volume

        viewer.open_sample(PLUGIN, "thorax_phantom")  # 1 mm, noise-free: the reference
        ref_layer = viewer.layers[-1]
        ref_layer.name = "phantom full dose"
        full = layer_volume(ref_layer)
        low = simulate_low_dose(full, dose, seed=0, method="poisson")  # noise-free: Poisson counts
        low_layer = viewer.add_image(low.hu, **low.layer_kwargs(name=f"phantom {dose * 100:g}% dose"))
        source = "sample data: thorax phantom (1 mm, noise-free) and its simulated low dose"
    timings["load"] = time.perf_counter() - t0
    k = 70 if chest else low_layer.data.shape[0] // 2
    viewer.dims.set_point(0, float(low_layer.data_to_world((k, 0, 0))[0]))
    viewer.window.add_plugin_dock_widget(PLUGIN, "Load CT")

    _, denoise = viewer.window.add_plugin_dock_widget(PLUGIN, "Denoise")
    denoise.layer_box.value = low_layer
    denoise.dose_box.value = dose
    t0 = time.perf_counter()
    denoise.run()
    _wait(app, lambda: denoise.running)
    timings["denoise (widget, whole volume)"] = time.perf_counter() - t0
    after = viewer.layers[-1]
    if "denoise" not in after.metadata:
        raise RuntimeError(f"denoising failed: {denoise.status.value}")

    _, compare = viewer.window.add_plugin_dock_widget(PLUGIN, "Compare before/after")
    compare.before_box.value = low_layer
    compare.after_box.value = after
    compare.slider.value = 0.5
    compare.mode_box.value = "swipe"
    _settle(app)
    box = body_box(low_layer, k)
    if box is None or not frame_camera(viewer, *box, margin=0.04):
        viewer.reset_view()
    _settle(app)
    viewer.screenshot(str(out / f"{prefix}compare_swipe.png"), canvas_only=False, flash=False)
    compare.mode_box.value = "side"
    compare.apply()  # framed on the body by the widget
    _settle(app)
    viewer.screenshot(str(out / f"{prefix}compare_side_by_side.png"), canvas_only=True, flash=False)
    compare.mode_box.value = "blend"
    compare.slider.value = 1.0

    _, metrics = viewer.window.add_plugin_dock_widget(PLUGIN, "Metrics")
    metrics.image_box.value = after
    metrics.reference_box.value = ref_layer
    t0 = time.perf_counter()
    metrics.measure_volume()
    _wait(app, lambda: metrics._worker is not None)
    timings["metrics (whole volume)"] = time.perf_counter() - t0
    _settle(app)
    viewer.screenshot(str(out / f"{prefix}metrics_panel.png"), canvas_only=False, flash=False)
    volume_metrics = next((v for key, v in metrics.results.items() if key.startswith("volume")), {})
    low_metrics = {}
    metrics.image_box.value = low_layer
    metrics.measure_volume()
    _wait(app, lambda: metrics._worker is not None)
    low_metrics = next((v for key, v in metrics.results.items() if key.startswith("volume")), {})

    _, cloud = viewer.window.add_plugin_dock_widget(PLUGIN, "3D point cloud")
    cloud.layer_box.value = low_layer
    cloud.dose_box.value = dose
    for layer in viewer.layers:
        layer.visible = layer is low_layer
    t0 = time.perf_counter()
    cloud.run()
    _wait(app, lambda: cloud._worker is not None)
    timings["point cloud (predict + reference)"] = time.perf_counter() - t0
    _settle(app, 0.5)
    viewer.screenshot(str(out / f"{prefix}pointcloud_3d.png"), canvas_only=True, flash=False)
    cloud_status = cloud.status.value
    viewer.close()

    info = after.metadata["denoise"]
    lines = [
        "# napari-jointrecon demo report", "",
        f"Input: {source}; slice {k} shown.", "",
        f"Denoised with `{info['model']}` ({info['conditioning']}) on {info['device']}: "
        f"{info['slices']} slices in {info['seconds']:.1f} s.", "",
        "| | PSNR (dB) | SSIM | RMSE body (HU) |", "| --- | --- | --- | --- |",
    ]
    for name, m in (("low-dose input", low_metrics), ("denoised", volume_metrics)):
        if m:
            lines.append(f"| {name} | {m['psnr']:.2f} ± {m['psnr std']:.2f} | {m['ssim']:.4f} | "
                         f"{m['rmse_body_hu']:.1f} |")
    lines += ["", f"Point cloud: {cloud_status}", "", "| step | seconds |", "| --- | ---: |"]
    lines += [f"| {name} | {t:.2f} |" for name, t in timings.items()]
    lines += ["", "Screenshots: " + ", ".join(f"`{prefix}{name}`" for name in SCREENSHOTS), ""]
    report = out / f"{prefix}report.md"
    report.write_text("\n".join(lines))
    return report
