"""Retrieving the chest series from a local Orthanc against reading the same files from disk, and the
main-thread stall of the PACS dock's retrieve.

Starts an Orthanc (DICOMweb plugin, basic auth, the default 128 MB storage cache) on free ports of
127.0.0.1, uploads the 141-slice chest series (``../shared/data/chest-ct-dicom``), then, alternating
in one run: reads the folder with ``load_ct`` (warm page cache), and retrieves the series over
DICOMweb into an empty cache folder and opens it (``nj.pacs.retrieve``). Target: the retrieve takes
at most 2x the disk read. Also timed: the second open (from the cache) and a C-GET retrieve.

Then the PACS dock retrieves the series in a napari viewer while a QTimer fires every 10 ms on the
main thread: the longest gap minus 10 ms is the longest stall (target <= 50 ms), split into the
transfer (worker running) and adding the layer. Needs a display: without one it re-runs itself
under ``xvfb-run``. Orthanc is stopped by its PID at the end.

    python benchmarks/bench_pacs.py [--repeats 3] [--screenshot docs/images/pacs_dock.png]
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def _chest() -> Path:
    from napari_jointrecon import testdata

    return testdata.require(REPO) / "chest-ct-dicom"


def _timed(func):
    t = time.perf_counter()
    out = func()
    return time.perf_counter() - t, out


def _probe(app, start, running) -> tuple[np.ndarray, np.ndarray, float]:
    """Tick times and gaps (ms) of a 10 ms QTimer on the main thread while ``start()``'s work runs
    (until ``running()`` is False) and for 0.5 s after (the first draw of a new layer)."""
    from qtpy.QtCore import QTimer

    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    t0 = time.perf_counter()
    start()
    while running():
        app.processEvents()
        time.sleep(0.002)
    total = time.perf_counter() - t0
    settle = time.perf_counter() + 0.5
    while time.perf_counter() < settle:
        app.processEvents()
        time.sleep(0.002)
    timer.stop()
    ticks_a = np.array(ticks)
    return ticks_a, np.diff(ticks_a) * 1000.0, total


def _split(ticks, gaps, at: float) -> tuple[float, float]:
    """Longest stall (gap - 10 ms) before and after the time ``at``."""
    before, after = gaps[ticks[1:] < at], gaps[ticks[1:] >= at]
    return (float(before.max() - 10.0) if len(before) else float("nan"),
            float(after.max() - 10.0) if len(after) else float("nan"))


def _stall(server_settings, entry, cache: Path, chest: Path, rounds: int) -> dict:
    import napari
    from napari.qt.threading import create_worker
    from qtpy.QtWidgets import QApplication

    import napari_jointrecon as nj
    from napari_jointrecon.widgets.pacs import PacsWidget

    viewer = napari.Viewer(show=True)
    widget = PacsWidget(viewer, cache=cache)
    viewer.window.add_dock_widget(widget, name="PACS")
    widget.protocol_box.value = "dicomweb"
    widget.url_edit.value = server_settings.url
    widget.auth_box.value = server_settings.auth
    widget.user_edit.value = server_settings.username
    widget.secret_edit.value = server_settings.secret
    widget._set_series([entry])
    app = QApplication.instance()
    warm = viewer.add_image(np.zeros((141, 512, 512), np.float32), contrast_limits=(-1000, 1000))
    for _ in range(30):  # the first layer's one-off costs (shaders, layer list) are not the widget's
        app.processEvents()
        time.sleep(0.01)
    viewer.layers.remove(warm)
    app.processEvents()
    added: list[float] = []
    original = widget._add_volume

    def timed_add(volume, entry=None):
        added.append(time.perf_counter())
        original(volume, entry)

    widget._add_volume = timed_add
    state: dict = {}

    def start_disk():  # the same files read by a worker thread, as the Load CT widget does
        state.clear()
        worker = create_worker(nj.load_ct, chest, _start_thread=False)
        worker.returned.connect(lambda v: (state.update(at=time.perf_counter()),
                                           viewer.add_image(v.hu, **v.layer_kwargs())))
        worker.finished.connect(lambda: state.update(done=True))
        worker.start()

    rows = []
    for k in range(rounds):  # alternating, so that both see the same load
        added.clear()
        widget._cache = cache / f"round{k}"
        ticks, gaps, total = _probe(app, widget.retrieve, lambda: widget.running)
        assert viewer.layers and viewer.layers[-1].data.shape[0] == 141, widget.status.value
        transfer, add = _split(ticks, gaps, added[0] if added else float("inf"))
        ticks, gaps, _ = _probe(app, start_disk, lambda: "done" not in state)
        disk_read, disk_add = _split(ticks, gaps, state.get("at", float("inf")))
        rows.append((total, transfer, add, disk_read, disk_add, len(ticks)))
        for layer in list(viewer.layers):
            viewer.layers.remove(layer)
        app.processEvents()
    med = statistics.median
    out = {"total_s": med(r[0] for r in rows), "stall_transfer_ms": med(r[1] for r in rows),
           "stall_add_ms": med(r[2] for r in rows), "disk_stall_read_ms": med(r[3] for r in rows),
           "disk_stall_add_ms": med(r[4] for r in rows), "rounds": rounds,
           "all_transfer_ms": [round(r[1]) for r in rows]}
    viewer.close()
    return out


def _screenshot(server_settings, cache: Path, path: Path) -> None:
    """The README's picture of the PACS dock: a search by date, then the chest series retrieved."""
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_jointrecon.widgets.pacs import PacsWidget

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1500, 1000)
    widget = PacsWidget(viewer, cache=cache)
    viewer.window.add_dock_widget(widget, name="PACS", area="right")
    widget.url_edit.value = server_settings.url
    widget.auth_box.value = server_settings.auth
    widget.user_edit.value = server_settings.username
    widget.secret_edit.value = server_settings.secret
    widget.date_from_edit.value = widget.date_to_edit.value = "2007-02-08"
    app = QApplication.instance()

    def wait():
        while widget.running:
            app.processEvents()
            time.sleep(0.01)

    widget.search()
    wait()
    wait()  # the series list follows the search
    widget.retrieve()
    wait()
    for _ in range(50):
        app.processEvents()
        time.sleep(0.01)
    viewer.dims.set_point(0, float(viewer.layers[-1].data_to_world((70, 0, 0))[0]))
    app.processEvents()
    path.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(path), canvas_only=False)
    viewer.close()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-widget", action="store_true", help="skip the main-thread stall measurement")
    parser.add_argument("--screenshot", metavar="PNG", help="also save a picture of the PACS dock after a retrieve "
                                                            "(docs/images/pacs_dock.png in the README)")
    args = parser.parse_args(argv)

    if not args.no_widget and sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
        xvfb = shutil.which("xvfb-run")
        if xvfb:
            os.execv(xvfb, [xvfb, "-a", "-s", "-screen 0 1400x1000x24", sys.executable, *sys.argv])
        print("no display and no xvfb-run: the stall measurement is skipped", file=sys.stderr)
        args.no_widget = True

    # the widget saves its settings: keep them out of the user's own settings file
    os.environ["JOINTRECON_CONFIG_DIR"] = tempfile.mkdtemp(prefix="bench-pacs-config-")
    import napari_jointrecon as nj
    from napari_jointrecon.pacs.orthanc import OrthancServer

    chest = _chest()
    files = sorted(chest.glob("*.dcm"))
    password = secrets.token_hex(8)
    with OrthancServer(user="bench", password=password, peers={"JOINTRECON": 11112}) as server:
        t_upload, _ = _timed(lambda: server.upload(files))
        web = nj.pacs.ServerSettings(url=server.dicomweb_url, auth="basic", username="bench", secret=password)
        dimse = nj.pacs.ServerSettings(protocol="dimse", host="127.0.0.1", port=server.dicom_port,
                                       called_ae="ORTHANC", calling_ae="JOINTRECON")
        study = nj.pacs.find(web, date_from="2007-02-08", date_to="2007-02-08")[0]
        entry = next(s for s in nj.pacs.list_series(web, study) if s.n_instances == len(files))
        reference = nj.load_ct(chest)  # also warms the page cache for the disk reads
        disk, web_times, dimse_times, cached = [], [], [], []
        with tempfile.TemporaryDirectory(prefix="bench-pacs-") as tmp:
            for k in range(args.repeats):
                t, _ = _timed(lambda: nj.load_ct(chest))
                disk.append(t)
                cache = Path(tmp) / f"web{k}"
                t, volume = _timed(lambda: nj.pacs.retrieve(web, entry, cache=cache))
                web_times.append(t)
                assert np.array_equal(volume.hu, reference.hu) and volume.spacing == reference.spacing
                t, _ = _timed(lambda: nj.pacs.retrieve(web, entry, cache=cache))
                cached.append(t)
                t, _ = _timed(lambda: nj.pacs.retrieve(dimse, entry, cache=Path(tmp) / f"dimse{k}"))
                dimse_times.append(t)
                shutil.rmtree(cache, ignore_errors=True)
                shutil.rmtree(Path(tmp) / f"dimse{k}", ignore_errors=True)
            stall = None if args.no_widget else _stall(web, entry, Path(tmp) / "widget", chest, args.repeats)
            if args.screenshot and not args.no_widget:
                _screenshot(web, Path(tmp) / "screenshot", Path(args.screenshot))
        pid = server.process.pid

    med = statistics.median
    print(f"machine: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}; Orthanc PID {pid} (stopped)")
    print(f"chest series: {len(files)} slices, {sum(f.stat().st_size for f in files) / 1e6:.0f} MB; "
          f"upload to Orthanc {t_upload:.1f} s")
    print(f"disk read (load_ct of the folder): median {med(disk):.2f} s of {', '.join(f'{t:.2f}' for t in disk)}")
    print(f"DICOMweb retrieve + open: median {med(web_times):.2f} s of {', '.join(f'{t:.2f}' for t in web_times)}"
          f" -> ratio {med(web_times) / med(disk):.2f} (target <= 2)")
    print(f"second open from the cache: median {med(cached):.2f} s")
    print(f"DIMSE C-GET retrieve + open: median {med(dimse_times):.2f} s (ratio {med(dimse_times) / med(disk):.2f})")
    if stall is not None:
        print(f"PACS dock retrieve of {len(files)} slices, {stall['rounds']} rounds: median {stall['total_s']:.2f} s")
        print(f"longest main-thread stall while retrieving and opening: median {stall['stall_transfer_ms']:.0f} ms "
              f"of {stall['all_transfer_ms']} (target <= 50 ms); when the layer is added and first drawn: "
              f"{stall['stall_add_ms']:.0f} ms")
        print(f"for comparison, the disk read in a worker thread (the Load CT widget's way): longest stall while "
              f"reading median {stall['disk_stall_read_ms']:.0f} ms, when adding the layer "
              f"{stall['disk_stall_add_ms']:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
