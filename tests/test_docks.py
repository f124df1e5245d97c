"""The docks in a viewer a radiologist keeps open: nothing heavy imported on the main thread when a
dock opens (torch and the models load in the background, the form usable meanwhile), all docks in
one tabbed panel that leaves the canvas most of the window, the side-by-side view framed on the body
and the metrics table readable without scrolling. Timings are in ``benchmarks/bench_widget.py``.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

import napari_jointrecon as nj

pytestmark = pytest.mark.gui

PLUGIN = "napari-jointrecon"
MANIFEST = Path(nj.__file__).with_name("napari.yaml")
#: What a dock must not import on napari's main thread (each takes 0.2-1.5 s).
HEAVY = ("torch", "onnxruntime", "pydicom", "SimpleITK", "scipy", "skimage", "matplotlib", "dask", "distributed",
         "pandas", "bm3d")


def _manifest_widgets() -> list[tuple[str, str]]:
    """``(display name, python module)`` of every dock the manifest contributes."""
    manifest = yaml.safe_load(MANIFEST.read_text())["contributions"]
    modules = {c["id"]: c["python_name"].split(":")[0] for c in manifest["commands"]}
    return [(w["display_name"], modules[w["command"]]) for w in manifest["widgets"]]


def _spin(seconds: float) -> None:
    from qtpy.QtWidgets import QApplication

    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        QApplication.processEvents()
        time.sleep(0.005)


def _wait_loaded(widget, timeout: float = 120.0) -> None:
    from qtpy.QtWidgets import QApplication

    end = time.perf_counter() + timeout
    while getattr(widget, "loading", False):
        assert time.perf_counter() < end, "the background loading did not end"
        QApplication.processEvents()
        time.sleep(0.005)


def _sample(viewer):
    viewer.open_sample(PLUGIN, "thorax_phantom_small")
    return viewer.layers[-1]


def test_dock_modules_import_nothing_heavy():
    """napari imports a dock's module on its main thread: each stays free of torch, the readers,
    scipy, scikit-image, matplotlib and Dask (checked in a fresh interpreter)."""
    modules = sorted({module for _, module in _manifest_widgets()})
    code = ("import sys, importlib\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            f"print(sorted(h for h in {HEAVY!r} if h in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "[]", f"imported by the dock modules: {out.stdout}"


def test_background_loading_calls_back_on_the_main_thread(qtbot):
    from napari_jointrecon.widgets._loading import load_in_background

    main = threading.get_ident()
    seen = []
    load_in_background(threading.get_ident, lambda result, error: seen.append((result, error, threading.get_ident())))
    load_in_background(lambda: 1 / 0, lambda result, error: seen.append((result, error, threading.get_ident())))
    qtbot.waitUntil(lambda: len(seen) == 2, timeout=10000)
    (worker, error, where), (result, failure, where2) = seen
    assert worker != main and error is None and where == main  # ran off the main thread, answered on it
    assert result is None and isinstance(failure, ZeroDivisionError) and where2 == main


def test_what_lives_when_loading_ends_leaves_the_full_collections_and_a_removed_layer_is_freed(
        make_napari_viewer, monkeypatch, qtbot):
    """Full garbage collections walked every object of napari and torch with the GIL held (200-300 ms):
    once a dock has loaded, those objects are frozen out of them, and a layer that was alive then
    is still freed when it is removed, with one collection for several layers removed at once."""
    import gc
    import weakref

    from napari_jointrecon.widgets import _loading

    monkeypatch.setenv("JOINTRECON_GC_FREEZE", "1")
    collections = []
    real = _loading._collect_and_refreeze
    monkeypatch.setattr(_loading, "_collect_and_refreeze", lambda: (collections.append(1), real()))
    viewer = make_napari_viewer()
    try:
        early = [viewer.add_image(np.zeros((4, 64, 64), np.float32), name=f"opened before the dock {i}")
                 for i in range(3)]
        _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Simulate dose")
        # frozen as the dock opens, before its imports: their full collections skip the viewer
        at_open = gc.get_freeze_count()
        assert at_open > 10000
        _wait_loaded(widget)
        qtbot.waitUntil(lambda: gc.get_freeze_count() > at_open, timeout=10000)  # and the imports'
        gone = [weakref.ref(layer) for layer in early[:2]]
        kept = early[2]
        viewer.layers.clear()  # all three at once: one collection
        del early
        qtbot.waitUntil(lambda: all(g() is None for g in gone), timeout=10000)  # collected, frozen or not
        assert collections == [1]
        # the third is still held here: nothing is frozen until it is gone, or it would never be freed
        assert gc.get_freeze_count() == 0
        gone = weakref.ref(kept)
        del kept
        gc.collect()
        assert gone() is None
        qtbot.waitUntil(lambda: gc.get_freeze_count() > 10000, timeout=10000)  # then frozen again
        # a layer opened after the freeze is not frozen: the next full collection frees it
        late = viewer.add_image(np.zeros((4, 64, 64), np.float32), name="opened after")
        gone = weakref.ref(late)
        viewer.layers.remove(late)
        del late
        qtbot.wait(50)
        gc.collect()
        assert gone() is None and collections == [1]
    finally:
        gc.unfreeze()  # napari's fixture checks that the viewer is collected


def test_no_freeze_where_turned_off(monkeypatch):
    import gc

    from napari_jointrecon.widgets._loading import freeze_long_lived

    monkeypatch.setenv("JOINTRECON_GC_FREEZE", "0")
    before = gc.get_freeze_count()
    assert freeze_long_lived() is False and gc.get_freeze_count() == before


def test_denoise_dock_is_usable_while_torch_loads(make_napari_viewer):
    viewer = make_napari_viewer()
    ct = _sample(viewer)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Denoise")
    # the constructor returned before the devices were known: torch loads in the background
    assert widget.loading and widget._cuda is None
    assert "Loading" in widget.status.value
    assert widget.layer_box.value is ct and widget.run_button.enabled  # a run may start already
    widget.device_box.value = "cuda"
    assert not widget.run_button.enabled and "Checking" in widget.status.value
    _wait_loaded(widget)
    assert widget._cuda is not None and widget.device_box.value == "cuda"  # the choice is kept
    assert widget.device_box.native.itemText(0).startswith("auto (")  # now saying what auto is
    widget.device_box.value = "cpu"
    assert widget.run_button.enabled and widget.status.value == "Ready."


def test_all_docks_open_as_one_tabbed_panel_and_the_canvas_keeps_most_of_the_window(make_napari_viewer):
    from napari_jointrecon.widgets._common import dock_tabs

    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.resize(1400, 1000)
    _sample(viewer)
    names = [name for name, _ in _manifest_widgets()]
    docks = [viewer.window.add_plugin_dock_widget(PLUGIN, name)[0] for name in names]
    _spin(1.0)
    tabs = dock_tabs(viewer)
    assert len(tabs) == 1 and len(tabs[0]) == len(names), tabs  # one panel, a tab per dock
    assert not docks[-1].visibleRegion().isEmpty()  # the dock opened last is the tab shown
    assert all(d.visibleRegion().isEmpty() for d in docks[:-1])
    canvas = viewer.window._qt_viewer.canvas.native
    assert (window.width(), window.height()) == (1400, 1000)
    share = canvas.width() * canvas.height() / (window.width() * window.height())
    assert share > 0.5 and canvas.width() > 0.5 * window.width(), (canvas.width(), canvas.height(), share)


def test_a_dock_opened_from_the_menu_later_joins_the_panel(make_napari_viewer):
    from napari_jointrecon.widgets._common import dock_tabs

    viewer = make_napari_viewer(show=True)
    viewer.window.add_plugin_dock_widget(PLUGIN, "Load CT")
    _spin(0.2)
    dock, _ = viewer.window.add_plugin_dock_widget(PLUGIN, "Compare before/after")
    _spin(0.2)
    dock.close()  # closed docks are not joined
    _spin(0.2)
    viewer.window.add_plugin_dock_widget(PLUGIN, "Metrics")
    _spin(0.3)
    assert sorted(len(group) for group in dock_tabs(viewer)) == [2]


def test_side_by_side_chooses_the_layout_that_shows_the_body_larger():
    from napari_jointrecon.widgets.compare import side_by_side_shape

    body = (230.0, 330.0)  # a chest: wider than deep
    assert side_by_side_shape((500, 1400), body) == (1, -1)  # a wide canvas: side by side
    assert side_by_side_shape((950, 800), body) == (-1, 1)  # a tall one: one above the other
    assert side_by_side_shape((700, 900), body) == (1, -1)  # about even: side by side, as named


def test_side_by_side_is_framed_on_the_body(make_napari_viewer):
    from napari_jointrecon.widgets._common import _camera, body_box, viewbox_size

    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1400, 1000)
    ct = _sample(viewer)
    hu = np.asarray(ct.data)
    # the body in a field of view twice its size: air all around, as on a scanner
    padded = np.full((hu.shape[0], 256, 256), -1000.0, np.float32)
    padded[:, 64:192, 64:192] = hu
    before = viewer.add_image(padded, name="before", scale=ct.scale, contrast_limits=(-160, 240))
    after = viewer.add_image(padded + 1.0, name="after", scale=ct.scale, contrast_limits=(-160, 240))
    viewer.layers.remove(ct)
    viewer.dims.set_point(0, float(before.data_to_world((24, 0, 0))[0]))
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Compare before/after")
    _spin(0.5)
    widget.before_box.value, widget.after_box.value = before, after
    widget.mode_box.value = "blend"
    widget.mode_box.value = "side"
    _spin(0.3)
    lo, hi = body_box(before, 24)
    mask = padded[24] > -500
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    scale = np.asarray(ct.scale)[1:]
    assert np.allclose(lo[1:], (np.array([rows[0], cols[0]]) - 0.5) * scale, atol=scale.max() * 2)
    assert np.allclose(hi[1:], (np.array([rows[-1], cols[-1]]) + 0.5) * scale, atol=scale.max() * 2)
    camera = _camera(viewer)
    assert np.allclose(camera.center[-2:], ((lo + hi) / 2)[1:], atol=1.0)  # centred on the body
    cell = viewbox_size(viewer)
    on_screen = (hi - lo)[1:] * camera.zoom
    assert np.all(on_screen <= cell) and np.max(on_screen / cell) > 0.9  # the body fills its cell
    whole = np.asarray(padded.shape[1:]) * scale * camera.zoom
    assert np.max(whole / cell) > 1.5  # not the whole (padded) field of view: mostly air
    assert "framed on the body" in widget.status.value


def test_metrics_table_reads_without_scrolling(make_napari_viewer, qtbot):
    from qtpy.QtWidgets import QApplication

    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1400, 1000)
    ct = _sample(viewer)
    after = viewer.add_image(np.asarray(ct.data) + 5.0, name="after", scale=ct.scale, translate=ct.translate,
                             contrast_limits=ct.contrast_limits,
                             metadata={"denoise": {"input": ct.name, "model": "tv", "dose": 0.25,
                                                   "conditioning": "noise 26.0 HU measured, 2.6 HU removed "
                                                                   "(estimated from the image)",
                                                   "device": "cpu", "seconds": 1.5, "slices": 48}})
    for name in ("Denoise", "Compare before/after", "Metrics"):  # a panel of tabs, as in use
        _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, name)
    _wait_loaded(widget)
    widget.image_box.value, widget.reference_box.value = after, ct
    assert widget.measure_volume() is not None
    qtbot.waitUntil(lambda: widget._worker is None, timeout=60000)
    QApplication.processEvents()
    _spin(0.3)
    table = widget.table.native
    rows = widget.table.data.to_list()
    assert any(r[0] == "run" and not r[1] and not r[2] for r in rows)  # a group's heading
    assert any(r[0] == "psnr" and "±" in r[1] and r[2] == "dB" for r in rows)
    assert len(rows) <= 16  # mean ± std on one row
    window = viewer.window._qt_window
    assert (window.width(), window.height()) == (1400, 1000)  # the dock fits: the window did not grow
    # every row and column in view: nothing to scroll to, long texts wrapped onto more lines
    assert table.verticalScrollBar().maximum() == 0 and table.horizontalScrollBar().maximum() == 0
    assert table.viewport().height() >= sum(table.rowHeight(r) for r in range(len(rows)))
    assert table.width() <= widget.native.width()
    widths = [table.columnWidth(c) for c in range(3)]
    assert min(widths) > 20 and sum(widths) <= table.viewport().width() + 1
    dose = next(r for r in range(len(rows)) if rows[r][0] == "dose")
    assert table.rowHeight(dose) > table.rowHeight(dose + 1)  # the long conditioning wraps
    for r in range(len(rows)):  # each row's text fits its cells' width once wrapped
        item = table.item(r, 1)
        if item is not None and item.text():
            lines = table.rowHeight(r) // table.fontMetrics().lineSpacing()
            assert table.fontMetrics().horizontalAdvance(item.text()) <= max(lines, 1) * table.columnWidth(1) + 40
