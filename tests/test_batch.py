"""Batch processing on Dask: a real scheduler and worker (subprocesses on 127.0.0.1) against the
default LocalCluster, failed and skipped rows, resuming, cancelling, the CLI and the dock widget.

The cohort is tiny (slices of the real chest series: two 3-slice NIfTI crops, a DICOM folder of
three files, and a broken file) and the models cheap (``tv`` and ``unet``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dask
import numpy as np
import pandas as pd
import pytest

import napari_jointrecon as nj
from napari_jointrecon import cli
from napari_jointrecon.batch import COLUMNS, find_studies, iter_batch, local_cluster_size

DASK = Path(sys.executable).with_name("dask")
SAME = ["study", "model", "dose", "status", "slices", "psnr", "ssim", "rmse_hu", "rmse_body_hu",
        "psnr_abdomen", "ssim_abdomen", "noise_sd_hu", "output"]
RUN = ["--model", "tv", "unet", "--simulate", "25", "--reference-from-input"]


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory, shared_data) -> Path:
    """a.nii.gz, b.nii.gz (3 x 256 x 256 crops), broken.nii.gz, patient3/dicom (3 DICOM files),
    README.txt (not CT)."""
    chest = shared_data / "chest-ct-dicom"
    root = tmp_path_factory.mktemp("cohort")
    ct = nj.load_ct(chest)
    for name, k, y in (("a", 60, 128), ("b", 90, 150)):
        crop = dataclasses.replace(ct, hu=ct.hu[k:k + 3, y:y + 256, 128:384].copy(), source_files=())
        nj.write_nifti(crop, root / f"{name}.nii.gz")
    (root / "broken.nii.gz").write_bytes(b"not a NIfTI file" * 20)
    dicom = root / "patient3" / "dicom"
    dicom.mkdir(parents=True)
    for k in (60, 61, 62):
        shutil.copy(chest / f"00-slice{k:03d}.dcm", dicom)
    (root / "README.txt").write_text("not CT\n")
    return root


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)


@pytest.fixture(scope="module")
def scheduler(tmp_path_factory) -> str:
    """A real ``dask scheduler`` and one ``dask worker`` (1 thread), stopped by their PIDs."""
    from distributed import Client

    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    logs = tmp_path_factory.mktemp("dask-logs")
    procs = []
    try:
        procs.append(subprocess.Popen(
            [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            stdout=subprocess.DEVNULL, stderr=open(logs / "scheduler.log", "w")))
        procs.append(subprocess.Popen(
            [str(DASK), "worker", address, "--nthreads", "1", "--nworkers", "1", "--no-dashboard",
             "--local-directory", str(logs)],
            stdout=subprocess.DEVNULL, stderr=open(logs / "worker.log", "w")))
        with Client(address, timeout="60s", set_as_default=False) as client:
            client.wait_for_workers(1, timeout=90)
        yield address
    finally:
        for proc in reversed(procs):
            _stop(proc)
        for proc in procs:
            assert proc.poll() is not None, f"process {proc.pid} still runs"


@pytest.fixture(scope="module")
def remote_out(cohort, scheduler, tmp_path_factory) -> Path:
    """The batch of the cohort run through --scheduler (tv and unet, 25 % simulated)."""
    out = tmp_path_factory.mktemp("remote")
    assert cli.main(["batch", str(cohort), "--out", str(out), *RUN, "--scheduler", scheduler]) == 1
    return out


def test_studies_are_found_in_a_mix_of_inputs(cohort, tmp_path):
    studies = find_studies([cohort], exclude=[cohort / "patient3"])
    assert [s.name for s in studies] == ["a", "b", "broken"]
    studies = {s.name: s for s in find_studies([cohort, cohort / "a.nii.gz", cohort / "patient3" / "dicom"])}
    assert set(studies) == {"a", "b", "broken", "patient3_dicom", "a-2", "dicom"}
    dicom = studies["patient3_dicom"]
    assert len(dicom.files) == 3 and dicom.series and not dicom.problem
    assert dicom.load().shape == (3, 512, 512)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.dcm").write_bytes(b"\0" * 300)
    (study,) = find_studies([bad])
    assert study.name == "bad" and "x.dcm" in study.problem
    with pytest.raises(ValueError, match="no such file"):
        find_studies([tmp_path / "missing"])


def test_local_cluster_size():
    assert local_cluster_size(8, cores=2) == (1, 2, 1)
    assert local_cluster_size(1, cores=2) == (1, 1, 2)
    assert local_cluster_size(8, workers=2, cores=2) == (2, 1, 1)
    assert local_cluster_size(3, cores=16) == (2, 2, 4)
    assert local_cluster_size(100, cores=16) == (8, 2, 1)


def test_networks_get_the_heap_where_the_nanny_set_a_trim_threshold():
    """Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_ set, which slows torch down: while a
    network runs, a task serves it from the heap, and the last one to end puts the setting back."""
    import platform

    import distributed  # noqa: F401 - loads its configuration into dask's

    code = ("import sys\n"
            "from napari_jointrecon.batch import network_heap\n"
            "engine = sys.modules['napari_jointrecon.batch']\n"
            "with network_heap() as a:\n"
            "    with network_heap() as b:\n"
            "        inside = engine._networks_running\n"
            "print(a, b, inside, engine._networks_running)")
    env = dict(os.environ, MALLOC_TRIM_THRESHOLD_=str(dask.config.get(
        "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_")))
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    if platform.libc_ver()[0] == "glibc":
        assert done.stdout.split() == ["True", "True", "2", "0"]
    else:
        assert done.stdout.split() == ["False", "False", "0", "0"]
    del env["MALLOC_TRIM_THRESHOLD_"]
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["False", "False", "0", "0"]


@pytest.mark.slow
def test_scheduler_and_local_cluster_give_identical_results(cohort, remote_out, tmp_path, monkeypatch):
    # a nanny writes OMP_NUM_THREADS=1 and the rest into its parent's environment: the local run
    # must give it back, or everything started from this process afterwards runs on one thread
    spawn_env = set(dask.config.get("distributed.nanny.pre-spawn-environ"))
    assert "OMP_NUM_THREADS" in spawn_env
    for key in spawn_env:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "2")
    before = _hashes(cohort)
    local_out = tmp_path / "local"
    assert cli.main(["batch", str(cohort), "--out", str(local_out), *RUN]) == 1
    assert _hashes(cohort) == before, "an input file changed"
    assert os.environ["MKL_NUM_THREADS"] == "2"
    assert not {k for k in spawn_env if k != "MKL_NUM_THREADS" and k in os.environ}, \
        {k: os.environ[k] for k in spawn_env if k in os.environ}

    remote = pd.read_csv(remote_out / "results.csv")
    local = pd.read_csv(local_out / "results.csv")
    assert list(remote.columns) == list(COLUMNS)
    assert len(remote) == 4 * 3  # 4 studies x (input, tv, unet)
    pd.testing.assert_frame_equal(remote[SAME], local[SAME])
    ok = remote[remote.status == "ok"]
    assert set(ok.study) == {"a", "b", "patient3_dicom"} and ok.psnr.notna().all() and ok.noise_sd_hu.notna().all()
    assert set(ok.model) == {"input", "tv", "unet"} and (ok.dose == "25%").all()
    for path in ok.output:
        a, b = nj.load_ct(remote_out / path), nj.load_ct(local_out / path)
        np.testing.assert_array_equal(a.hu, b.hu)
        assert a.spacing == b.spacing
    # the denoisers remove noise that the simulation inserted
    for study in ("a", "b", "patient3_dicom"):
        noise = ok[ok.study == study].set_index("model").noise_sd_hu
        assert noise["unet"] < noise["input"] and noise["tv"] < noise["input"]

    broken = remote[remote.study == "broken"]
    assert (broken.status == "failed").all()
    assert all("broken.nii.gz" in e for e in broken.error), broken.error.tolist()
    assert not (remote_out / "broken").exists()

    summary = (remote_out / "summary.md").read_text()
    for model in ("input", "tv", "unet"):
        assert f"| {model} | 3 | 9 |" in summary
    assert "PSNR (dB)" in summary and "![PSNR per model](psnr_boxplot.png)" in summary
    assert (remote_out / "psnr_boxplot.png").stat().st_size > 1000


def test_a_second_run_skips_what_is_done(cohort, remote_out, scheduler):
    outputs = sorted(p for p in remote_out.rglob("*.nii.gz"))
    stamps = {p: p.stat().st_mtime_ns for p in outputs}
    first = pd.read_csv(remote_out / "results.csv")
    assert cli.main(["batch", str(cohort), "--out", str(remote_out), *RUN, "--scheduler", scheduler]) == 1
    again = pd.read_csv(remote_out / "results.csv")
    assert set(again[again.study != "broken"].status) == {"skipped"}
    assert set(again[again.study == "broken"].status) == {"failed"}
    assert {p: p.stat().st_mtime_ns for p in outputs} == stamps
    metrics = ["psnr", "ssim", "rmse_hu", "noise_sd_hu"]
    pd.testing.assert_frame_equal(first[metrics], again[metrics])


def test_an_interrupted_result_is_redone_and_no_partial_file_stays(cohort, remote_out, scheduler, tmp_path):
    from distributed import Client

    out = tmp_path / "out"
    shutil.copytree(remote_out, out)
    # as a run killed while writing leaves it: a partial folder, and a result without its record
    (out / "a" / "unet_25.json").unlink()
    partial = out / "a" / ".partial-unet_25.nii.gz"
    partial.mkdir()
    (partial / "unet_25.nii.gz").write_bytes(b"\x1f\x8b truncated")
    with Client(scheduler, set_as_default=False) as client:
        table = nj.batch(cohort, out, models=["tv", "unet"], simulate=0.25, reference_from_input=True,
                         client=client)
    row = table[(table.study == "a") & (table.model == "unet")].iloc[0]
    assert row.status == "ok"
    assert (table[table.study != "broken"].status == "skipped").sum() == 8
    assert not partial.exists() and not list(out.rglob(".partial-*"))
    assert nj.load_ct(out / "a" / "unet_25.nii.gz").shape == (3, 256, 256)


def test_dicom_results_with_the_dose_estimated(cohort, scheduler, tmp_path):
    from distributed import Client

    with Client(scheduler, set_as_default=False) as client:
        table = nj.batch([cohort / "patient3"], tmp_path, models="tv", fmt="dcm", client=client)
    (row,) = table.to_dict("records")
    assert row["status"] == "ok" and row["dose"] == "auto" and row["output"] == "dicom/tv_auto"
    assert "estimated" in row["conditioning"] and np.isnan(row["psnr"]) and row["noise_sd_hu"] > 0
    files = sorted((tmp_path / "dicom" / "tv_auto").iterdir())
    assert [f.suffix for f in files] == [".dcm"] * 3
    series = nj.load_ct(tmp_path / "dicom" / "tv_auto")
    assert series.shape == (3, 512, 512) and "tv" in series.series_description
    assert "PSNR (dB)" not in (tmp_path / "summary.md").read_text() and not (tmp_path / "psnr_boxplot.png").exists()


def _drain(gen):
    try:
        while True:
            next(gen)
    except StopIteration as stop:
        return stop.value


@pytest.mark.slow
def test_a_task_whose_worker_dies_is_run_again(cohort, scheduler, tmp_path):
    from distributed import Client

    killed = []
    with Client(scheduler, set_as_default=False) as client:
        def kill_the_busy_worker() -> bool:  # polled while the tasks run
            busy = [addr for addr, keys in client.processing().items() if keys]
            if busy and not killed:
                pid = client.run(os.getpid, workers=busy[:1])[busy[0]]
                os.kill(pid, signal.SIGKILL)  # its nanny starts a new worker process
                killed.append(pid)
            return False

        table = _drain(iter_batch([cohort / "patient3"], tmp_path, models=["tv"], simulate=0.25,
                                  client=client, cancel=kill_the_busy_worker))
        pids = list(client.run(os.getpid).values())
    assert killed and killed[0] not in pids
    assert table.status.tolist() == ["ok", "ok"] and table.model.tolist() == ["input", "tv"]


def test_cancel_stops_the_queued_tasks(cohort, scheduler, tmp_path):
    from distributed import Client

    seen = []
    with Client(scheduler, set_as_default=False) as client:
        gen = iter_batch([cohort], tmp_path, models=["tv", "unet"], dose=0.25, client=client,
                         cancel=lambda: len(seen) > 0)
        try:
            while True:
                step = next(gen)
                if step.row is not None:
                    seen.append(step.row)
        except StopIteration as stop:
            table = stop.value
    assert len(table) == 8 and "cancelled" in set(table.status)
    assert set(table.status) <= {"ok", "failed", "cancelled"}
    assert (pd.read_csv(tmp_path / "results.csv").status == "cancelled").sum() == (table.status == "cancelled").sum()


def test_bad_options_are_refused_before_any_work(cohort, tmp_path, capsys):
    with pytest.raises(ValueError, match="needs simulate"):
        nj.batch(cohort, tmp_path, models="tv", reference_from_input=True)
    with pytest.raises(ValueError, match="not both"):
        nj.batch(cohort, tmp_path, models="tv", dose=0.25, simulate=0.25)
    with pytest.raises(ValueError, match="fraction"):
        nj.batch(cohort, tmp_path, models="tv", dose=25)
    with pytest.raises(KeyError):
        nj.batch(cohort, tmp_path, models="no-such-model")
    assert cli.main(["batch", str(tmp_path / "missing"), "--out", str(tmp_path)]) == 2
    assert "no such file" in capsys.readouterr().err
    with dask.config.set({"distributed.comm.timeouts.connect": "2s"}):
        assert cli.main(["batch", str(cohort), "--out", str(tmp_path), "--scheduler", f"tcp://127.0.0.1:{_free_port()}",
                         "--model", "tv"]) == 2
    assert "cannot reach the Dask scheduler" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main(["batch", str(cohort), "--out", str(tmp_path), "--dose", "25", "--simulate", "25"])
    assert not list(tmp_path.glob("*/*.nii.gz"))


# -------------------------------------------------------------------------------------------------
# the dock widget (a LocalCluster from the viewer)
# -------------------------------------------------------------------------------------------------
@pytest.mark.gui
@pytest.mark.slow
def test_batch_widget_fills_the_table_and_opens_a_study(make_napari_viewer, qtbot, cohort, tmp_path):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-jointrecon", "Batch")
    assert not widget.run_button.enabled and "folder" in widget.status.value
    widget.input_edit.value = cohort
    assert widget.out_edit.value == cohort.parent / f"{cohort.name}_denoised"
    widget.out_edit.value = tmp_path / "out"
    widget.models_box.value = ["tv"]
    widget.dose_box.value = 0.25
    assert widget.run_button.enabled, widget.status.value
    seen = []
    worker = widget.run()
    worker.yielded.connect(lambda step: seen.append(widget.table.shape[0]))
    qtbot.waitUntil(lambda: not widget.running, timeout=120000)
    assert widget.state.value == "done", widget.status.value
    assert widget.table.shape[0] == 4 and max(seen) >= 1
    shown = widget.table.to_dataframe()
    statuses = dict(zip(shown.study, shown.status, strict=True))
    assert statuses == {"a": "ok", "b": "ok", "broken": "failed", "patient3_dicom": "ok"}
    assert widget.progress.value == widget.progress.max == 4
    assert (tmp_path / "out" / "results.csv").is_file()

    widget.study_box.value = "b"
    widget.open_study()
    qtbot.waitUntil(lambda: widget._opener is None, timeout=30000)
    layer = viewer.layers[-1]
    assert layer.name == "b · tv 25%" and layer.data.shape == (3, 256, 256)
    expected = nj.load_ct(tmp_path / "out" / "b" / "tv_25.nii.gz")
    np.testing.assert_array_equal(layer.data, expected.hu)
    np.testing.assert_allclose(layer.scale, expected.spacing)


@pytest.mark.gui
@pytest.mark.slow
def test_batch_widget_cancel(make_napari_viewer, qtbot, cohort, tmp_path):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-jointrecon", "Batch")
    widget.input_edit.value = cohort
    widget.out_edit.value = tmp_path / "out"
    widget.models_box.value = ["tv", "unet"]
    widget.run()
    widget.cancel()
    started = time.perf_counter()
    qtbot.waitUntil(lambda: not widget.running, timeout=120000)
    assert widget.state.value == "cancelled", widget.status.value
    assert "Cancelled" in widget.status.value and time.perf_counter() - started < 60
    assert "cancelled" in set(widget.table.to_dataframe().status)
