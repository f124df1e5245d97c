"""Responsiveness of the viewer while the Denoise widget works, and the swipe's update time.

Run under a display (``xvfb-run -a python benchmarks/bench_widget.py``). Loads the real chest series
(141 x 512 x 512), docks the plugin's Denoise widget and denoises the whole volume with the default
model while a QTimer probe fires every 10 ms on the main thread: the longest gap between two probes
minus 10 ms is the longest main-thread stall. For comparison, the same denoising is then run
directly on the main thread (what a naive widget would do). Finally the Compare widget's swipe is
moved 100 times on the displayed slice: per move, the widget's own work and the end-to-end time
including Qt's event processing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CHEST = Path(os.environ.get("JOINTRECON_SHARED_DATA", REPO.parent / "shared" / "data")) / "chest-ct-dicom"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=None, help="default: the registry's default model")
    parser.add_argument("--dose", type=float, default=0.25)
    parser.add_argument("--slices", type=int, default=None, help="only the first N slices")
    args = parser.parse_args(argv)

    import napari
    import torch
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    import napari_jointrecon as nj

    torch.set_num_threads(2)
    model = args.model or next(c["name"] for c in nj.list_models() if c["default"])
    ct = nj.load_ct(CHEST)
    if args.slices:
        ct = ct.with_hu(ct.hu[:args.slices])
    viewer = napari.Viewer(show=True)
    layer = viewer.add_image(ct.hu, **ct.layer_kwargs(name="chest"))
    _, widget = viewer.window.add_plugin_dock_widget("napari-jointrecon", "Denoise")
    widget.layer_box.value = layer
    widget.model_box.value = model
    widget.dose_box.value = args.dose
    widget.scope_box.value = "volume"
    app = QApplication.instance()
    for _ in range(20):
        app.processEvents()
        time.sleep(0.01)

    added: list[tuple[float, float]] = []
    original = widget._on_result

    def timed_result(*a, **k):  # when the result layer is added (napari's add_image)
        t = time.perf_counter()
        original(*a, **k)
        added.append((t, time.perf_counter()))

    widget._on_result = timed_result
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    t0 = time.perf_counter()
    widget.run()
    while widget.running:
        app.processEvents()
        time.sleep(0.002)
    total = time.perf_counter() - t0
    settle = time.perf_counter() + 0.5
    while time.perf_counter() < settle:  # the first draw of the new layer
        app.processEvents()
        time.sleep(0.002)
    timer.stop()
    ticks_a = np.array(ticks)
    gaps = np.diff(ticks_a) * 1000.0
    stall = float(gaps.max() - 10.0) if len(gaps) else float("nan")
    add_start = added[0][0] if added else float("inf")
    during = gaps[ticks_a[1:] < add_start]
    stall_during = float(during.max() - 10.0) if len(during) else float("nan")
    stall_add = float(gaps[ticks_a[1:] >= add_start].max() - 10.0) if added else float("nan")
    out = viewer.layers[-1]
    assert out.data.shape == ct.shape, "the result layer is missing"

    t1 = time.perf_counter()
    nj.denoise(ct.hu, model=model, dose=args.dose)
    blocking = time.perf_counter() - t1

    # napari's own cost of adding a volume this size (the same call the widget makes at the end)
    base = []
    for _ in range(3):
        t1 = time.perf_counter()
        extra = viewer.add_image(out.data, scale=out.scale, translate=out.translate,
                                 contrast_limits=out.contrast_limits, name="baseline add")
        app.processEvents()
        base.append((time.perf_counter() - t1) * 1000)
        viewer.layers.remove(extra)
        app.processEvents()

    print(f"machine: {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, Python {sys.version.split()[0]}")
    print(f"denoise {ct.shape[0]} x {ct.shape[1]} x {ct.shape[2]} with {model} at {args.dose * 100:g} % "
          f"in the widget: {total:.1f} s ({ct.shape[0] / total:.1f} slices/s)")
    print(f"main-thread probe: {len(ticks)} ticks; gap median {np.median(gaps):.1f} ms, "
          f"p99 {np.percentile(gaps, 99):.1f} ms, max {gaps.max():.1f} ms")
    print(f"longest main-thread stall while denoising: {stall_during:.0f} ms (target <= 100 ms)")
    print(f"longest stall when the result layer is added and first drawn: {stall_add:.0f} ms; napari's own "
          f"add_image + draw of the same array, no plugin: median {statistics.median(base):.0f} ms "
          f"(ratio {stall_add / statistics.median(base):.2f})")
    print(f"longest stall overall: {stall:.0f} ms")
    print(f"the same work on the main thread would stall it {blocking * 1000:.0f} ms "
          f"({blocking * 1000 / max(stall, 1):.0f}x the widget's longest stall)")

    _, compare = viewer.window.add_plugin_dock_widget("napari-jointrecon", "Compare before/after")
    compare.before_box.value = layer
    compare.after_box.value = out
    viewer.dims.set_point(0, float(layer.data_to_world((ct.shape[0] // 2, 0, 0))[0]))
    compare.mode_box.value = "swipe"
    app.processEvents()
    compare.swipe_times.clear()
    end_to_end = []
    for x in np.concatenate([np.linspace(0.05, 0.95, 50), np.linspace(0.95, 0.05, 50)]):
        t = time.perf_counter()
        compare.slider.value = float(x)
        app.processEvents()
        end_to_end.append((time.perf_counter() - t) * 1000)
    own = [t * 1000 for t in compare.swipe_times]
    print(f"swipe, {len(end_to_end)} moves on a {ct.shape[1]} x {ct.shape[2]} slice: widget work median "
          f"{statistics.median(own):.2f} ms (max {max(own):.2f}); end to end with Qt events median "
          f"{statistics.median(end_to_end):.1f} ms (p95 {np.percentile(end_to_end, 95):.1f} ms)")
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
