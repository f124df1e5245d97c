"""The headless demo: load the sample CT in napari, take screenshots, write a short report."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .io import load_ct
from .phantom import make_thorax_phantom
from .volume import CTVolume
from .windows import window_limits

__all__ = ["run_demo", "default_sample_path"]


def default_sample_path() -> Path:
    """The DICOM sample series in the repository's ``sample_data/`` (when run from a checkout)."""
    return Path(__file__).resolve().parents[1] / "sample_data" / "thorax_phantom_dicom"


def _save(image: np.ndarray, path: Path) -> None:
    from skimage.io import imsave

    imsave(path, image, check_contrast=False)


def run_demo(out_dir: str | Path = "demo_output", input_path: str | Path | None = None) -> Path:
    """Open napari with the plugin and a CT volume, save screenshots and a report.

    Parameters
    ----------
    out_dir : path
        Folder for the screenshots and ``report.md`` (created if needed).
    input_path : path, optional
        A CT to load; by default the repository's sample DICOM series, or a freshly generated
        phantom when that folder is absent.

    Returns
    -------
    pathlib.Path
        The report file.
    """
    import napari
    from qtpy.QtWidgets import QApplication

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    source = Path(input_path) if input_path else default_sample_path()
    t0 = time.perf_counter()
    volume: CTVolume = load_ct(source) if source.exists() else make_thorax_phantom(2.5)
    t_load = time.perf_counter() - t0

    t0 = time.perf_counter()
    viewer = napari.Viewer(show=True, title="napari-jointrecon demo")
    viewer.window.add_plugin_dock_widget("napari-jointrecon", "Load CT")
    layer = viewer.add_image(volume.hu, **volume.layer_kwargs(window="soft_tissue"))
    viewer.dims.set_point(0, float(volume.index_to_world([volume.shape[0] // 2, 0, 0])[0]))
    viewer.reset_view()
    QApplication.processEvents()
    t_viewer = time.perf_counter() - t0

    shots = {}
    shots["axial_soft_tissue.png"] = viewer.screenshot(canvas_only=True)
    layer.contrast_limits = window_limits("lung")
    shots["axial_lung.png"] = viewer.screenshot(canvas_only=True)
    t0 = time.perf_counter()
    viewer.dims.ndisplay = 3
    layer.rendering = "mip"
    layer.contrast_limits = window_limits("bone")
    viewer.camera.angles = (0.0, -60.0, 90.0)
    viewer.reset_view()
    shots["volume_3d_mip.png"] = viewer.screenshot(canvas_only=True)
    t_3d = time.perf_counter() - t0
    viewer.dims.ndisplay = 2
    layer.rendering = "mip"
    layer.contrast_limits = window_limits("soft_tissue")
    QApplication.processEvents()
    shots["window.png"] = viewer.screenshot(canvas_only=False)
    for name, image in shots.items():
        _save(image, out / name)
    viewer.close()

    hu = volume.hu
    body = hu > -500
    lines = [
        "# napari-jointrecon demo report",
        "",
        f"Input: `{source if source.exists() else 'generated thorax phantom (2.5 mm)'}`",
        "",
        "```",
        volume.summary(),
        "```",
        "",
        "| step | seconds |",
        "| --- | ---: |",
        f"| load_ct | {t_load:.3f} |",
        f"| viewer + layer + dock widget | {t_viewer:.3f} |",
        f"| 3D rendering and screenshot | {t_3d:.3f} |",
        "",
        f"Body voxels (HU > -500): {int(body.sum())}, mean {float(hu[body].mean()):.1f} HU; "
        f"layer scale {tuple(round(s, 4) for s in layer.scale)}, "
        f"translate {tuple(round(t, 2) for t in layer.translate)} (mm).",
        "",
        "Screenshots:",
        *[f"- `{name}` ({img.shape[1]}x{img.shape[0]})" for name, img in shots.items()],
        "",
    ]
    report = out / "report.md"
    report.write_text("\n".join(lines))
    return report
