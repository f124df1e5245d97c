"""PACS: query, retrieve and send, by DICOMweb and DIMSE, against a real Orthanc.

One Orthanc per module (``napari_jointrecon.pacs.orthanc.OrthancServer``): 127.0.0.1 on free ports,
a temporary storage folder, the DICOMweb plugin, HTTP basic auth with a random password, and this
client's AE title registered for C-FIND/C-GET/C-STORE. It holds real series from ``../shared/data``
(a 20-slice slab of the chest series, two series of one Siemens study, and small series the failure
tests delete, corrupt or that are not CT) and is stopped by its PID at the end. Where Orthanc or its
DICOMweb plugin is missing the tests skip with that reason, or fail under JOINTRECON_REQUIRE_DATA=1.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import secrets
import threading
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest

from conftest import _data_required
from napari_jointrecon import load_ct, pacs
from napari_jointrecon.pacs import settings as pacs_settings
from napari_jointrecon.pacs.orthanc import OrthancServer, orthanc_problem

USER = "radiologist"
PASSWORD = "pw-" + secrets.token_hex(8)
PEER = "JOINTRECON"
CHEST_SLAB = slice(60, 80)
#: a failure must be reported within this many seconds
FAILURE_S = 5.0


def _files(folder: Path, n: int | None = None) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix == ".dcm")[:n]


def _header(path: Path):
    return pydicom.dcmread(path, stop_before_pixels=True)


@pytest.fixture(scope="module")
def server(shared_data, tmp_path_factory):
    """A running Orthanc holding the test series; stopped by its PID afterwards."""
    problem = orthanc_problem()
    if problem:
        if _data_required():
            pytest.fail(problem)
        pytest.skip(problem)
    orthanc = OrthancServer(tmp_path_factory.mktemp("orthanc"), user=USER, password=PASSWORD,
                            aet="ORTHANC", peers={PEER: 11112}, storage_cache_mb=0).start()
    series = shared_data / "ct-series"
    data = {
        "chest": _files(shared_data / "chest-ct-dicom")[CHEST_SLAB],
        "b40f": _files(series / "siemens-sensation10-B40f-chest", 6),
        "b70f": _files(series / "siemens-sensation10-B70f-chest", 4),
        "deleted": _files(series / "ge-lightspeedplus-STANDARD-chest", 3),
        "corrupt": _files(series / "philips-bigbore-B-abdomen", 3),
        "not_ct": [shared_data / "dicom-edge-cases" / "encodings" / "deflate" / "image_dfl"],
    }
    answers = {}
    try:
        for key, files in data.items():
            answers[key] = orthanc.upload(files)
        orthanc.data, orthanc.answers = data, answers
        yield orthanc
    finally:
        pid = orthanc.process.pid if orthanc.process else None
        orthanc.stop()
        if pid is not None:
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path, monkeypatch):
    """Settings in a temporary folder; the secret only in this session's memory (no keyring)."""
    monkeypatch.setenv("JOINTRECON_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setattr(pacs_settings, "_keyring", lambda: None)
    pacs_settings._SESSION.clear()
    yield
    pacs_settings._SESSION.clear()


def web(server, **changes):
    settings = pacs.ServerSettings(url=server.dicomweb_url, auth="basic", username=USER, secret=PASSWORD)
    return dataclasses.replace(settings, **changes)


def dimse(server, **changes):
    settings = pacs.ServerSettings(protocol="dimse", host="127.0.0.1", port=server.dicom_port,
                                   called_ae="ORTHANC", calling_ae=PEER)
    return dataclasses.replace(settings, **changes)


PROTOCOLS = {"dicomweb": web, "dimse": dimse}


def uids(server, key: str) -> tuple[str, str]:
    ds = _header(server.data[key][0])
    return str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID)


def _tree_hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


# query ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_echo_find_and_list_series(server, protocol):
    settings = PROTOCOLS[protocol](server)
    assert "answers" in pacs.echo(settings)
    b40 = _header(server.data["b40f"][0])
    by_id = pacs.find(settings, patient_id=str(b40.PatientID))
    assert [s.study_uid for s in by_id] == [b40.StudyInstanceUID]
    assert pacs.find(settings, patient_name=str(b40.PatientName)[:8])[0].study_uid == b40.StudyInstanceUID
    assert pacs.find(settings, patient_id=str(b40.PatientID), date_from="2007-04-01", date_to="2007-04-30")
    assert not pacs.find(settings, patient_id=str(b40.PatientID), date_from="2008-01-01")
    assert not pacs.find(settings, patient_id=str(b40.PatientID), modality="MR")
    chest = _header(server.data["chest"][0])
    dated = pacs.find(settings, date_from="2007-02-08", date_to="2007-02-08")
    assert chest.StudyInstanceUID in [s.study_uid for s in dated]
    acc = _header(server.data["deleted"][0])
    assert [s.study_uid for s in pacs.find(settings, accession=str(acc.AccessionNumber))] == [acc.StudyInstanceUID]

    series = {s.series_uid: s for s in pacs.list_series(settings, by_id[0])}
    for key, kernel, count in (("b40f", "B40f", 6), ("b70f", "B70f", 4)):
        entry = series[str(_header(server.data[key][0]).SeriesInstanceUID)]
        assert (entry.modality, entry.kernel, entry.n_instances, entry.thickness_mm) == ("CT", kernel, count, 8.0)
        assert kernel in entry.description and f"{count} slices" in entry.label()


def test_bad_query_terms_are_refused_clearly(server):
    with pytest.raises(pacs.PacsError, match="YYYY-MM-DD"):
        pacs.find(web(server), date_from="8 Feb 2007")
    with pytest.raises(pacs.PacsError, match="starts after it ends"):
        pacs.find(web(server), date_from="2008-01-01", date_to="2007-01-01")


# retrieve ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_retrieve_matches_the_disk_read_and_the_second_open_is_cached(server, protocol, tmp_path):
    settings = PROTOCOLS[protocol](server)
    study, series = uids(server, "chest")
    steps = []
    volume = pacs.retrieve(settings, study, series, cache=tmp_path / "cache", progress=steps.append)
    disk = load_ct(server.data["chest"])
    assert volume.shape == (20, 512, 512)
    assert np.array_equal(volume.hu, disk.hu)
    assert volume.spacing == disk.spacing and volume.origin == disk.origin
    assert np.array_equal(volume.direction, disk.direction)
    assert (volume.series_uid, volume.meta["StudyInstanceUID"]) == (series, study)
    assert [s.done for s in steps if s.stage == "retrieve"] == list(range(21))  # per instance
    assert "retrieved from" in volume.notes[0]

    cached = pacs.SeriesCache(tmp_path / "cache").files(study, series)
    assert len(cached) == 20 and all(f.stat().st_mode & 0o222 == 0 for f in cached)  # read-only
    before = _tree_hashes(tmp_path / "cache")
    # the second open needs no server: the settings point at a port where nothing listens
    offline = dataclasses.replace(settings, url="http://127.0.0.1:9/dicom-web", port=9)
    again = pacs.retrieve(offline, study, series, cache=tmp_path / "cache")
    assert np.array_equal(again.hu, disk.hu) and again.notes[0].startswith("opened from the PACS cache")
    assert _tree_hashes(tmp_path / "cache") == before


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_cancel_mid_retrieve_keeps_nothing(server, protocol, tmp_path):
    settings = PROTOCOLS[protocol](server)
    cancel = threading.Event()

    def progress(step):
        if step.done == 3:
            cancel.set()

    with pytest.raises(pacs.Cancelled):
        pacs.retrieve(settings, *uids(server, "chest"), cache=tmp_path, progress=progress, cancel=cancel)
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]
    assert not pacs.SeriesCache(tmp_path).has(*uids(server, "chest"))


# send -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_send_adds_a_derived_series_found_again_with_its_tags_and_pixels(server, protocol, tmp_path):
    settings = PROTOCOLS[protocol](server)
    study, source = uids(server, "b40f")
    before = {s.series_uid: s.n_instances for s in pacs.list_series(settings, study)}
    ct = pacs.retrieve(settings, study, source, cache=tmp_path / "cache")
    result = ct.with_hu(np.round(ct.hu * 0.5) - 300)  # a "result" with whole-number HU
    sent = pacs.send(settings, result, model="nafnet", dose=0.25)
    assert sent.study_uid == study and sent.source_series_uid == source
    assert sent.series_uid not in before

    after = {s.series_uid: s for s in pacs.list_series(settings, study)}
    assert {uid: after[uid].n_instances for uid in before} == before  # nothing overwritten
    entry = after[sent.series_uid]
    assert entry.n_instances == 6 and "nafnet" in entry.description and "25% dose" in entry.description
    back = pacs.retrieve(settings, entry, cache=tmp_path / "back")
    np.testing.assert_array_equal(back.hu, result.hu)
    assert back.spacing == result.spacing and back.origin == result.origin
    sop_uids = set()
    for f in pacs.SeriesCache(tmp_path / "back").files(study, sent.series_uid):
        ds = pydicom.dcmread(f, stop_before_pixels=True)
        assert list(ds.ImageType)[:2] == ["DERIVED", "SECONDARY"]
        assert "nafnet" in ds.DerivationDescription and "25% dose" in ds.DerivationDescription
        assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == source
        assert ds.SeriesInstanceUID != source and ds.PatientID == ct.meta["PatientID"]
        sop_uids.add(ds.SOPInstanceUID)
    originals = {str(_header(f).SOPInstanceUID) for f in server.data["b40f"]}
    assert len(sop_uids) == 6 and not sop_uids & originals


def test_send_refuses_a_volume_without_a_study(server):
    from napari_jointrecon.phantom import make_thorax_phantom

    with pytest.raises(pacs.PacsError, match="no StudyInstanceUID"):
        pacs.send(web(server), make_thorax_phantom(5.0, z_extent_mm=20.0), source_series_uid="1.2.3")


# failures: one clear line within 5 s, nothing kept, no secret ------------------------------------
def _fails(func, *patterns: str) -> str:
    started = time.perf_counter()
    with pytest.raises(pacs.PacsError) as info:
        func()
    elapsed = time.perf_counter() - started
    text = str(info.value)
    assert elapsed < FAILURE_S, f"{elapsed:.1f} s: {text}"
    assert "\n" not in text and PASSWORD not in text
    for pattern in patterns:
        assert pattern in text, text
    return text


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_server_down(server, protocol, tmp_path):
    down = PROTOCOLS[protocol](server, url="http://127.0.0.1:9/dicom-web", port=9)
    _fails(lambda: pacs.find(down), "127.0.0.1:9", "running")
    _fails(lambda: pacs.retrieve(down, *uids(server, "chest"), cache=tmp_path), "running")


def test_wrong_credentials_and_missing_credentials(server):
    _fails(lambda: pacs.find(web(server, secret="not-the-password")), "HTTP 401", "user name and password")
    _fails(lambda: pacs.echo(web(server, auth="none", secret="")), "HTTP 401", "needs credentials")
    _fails(lambda: pacs.find(web(server, auth="bearer", secret="token-" + secrets.token_hex(4))), "HTTP 401",
           "token")


@pytest.mark.parametrize("change", [{"called_ae": "NOT_ORTHANC"}, {"calling_ae": "STRANGER"}])
def test_association_rejected_for_a_wrong_ae_title(server, change):
    _fails(lambda: pacs.echo(dimse(server, **change)), "rejected the association", "AE title")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_series_deleted_between_query_and_retrieve(server, protocol, tmp_path):
    settings = PROTOCOLS[protocol](server)
    study, series = uids(server, "deleted")
    if server.lookup(series):  # the first of the two runs: found by a search, then deleted
        assert series in [s.series_uid for s in pacs.list_series(settings, study)]
        server.delete(f"series/{server.answers['deleted'][0]['ParentSeries']}")
    _fails(lambda: pacs.retrieve(settings, study, series, cache=tmp_path), "not on the server", "deleted")
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_series_with_no_ct_image_is_refused(server, protocol, tmp_path):
    study, series = uids(server, "not_ct")
    _fails(lambda: pacs.retrieve(PROTOCOLS[protocol](server), study, series, cache=tmp_path),
           "holds no CT image", "Secondary Capture")
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


def _truncate_second_instance(server) -> None:
    """Cut the stored file of the series' second instance in half, as a failing disk would."""
    info = server.get(f"instances/{server.answers['corrupt'][1]['ID']}/attachments/dicom/info")
    uuid = info["Uuid"]
    stored = server.root / "storage" / uuid[:2] / uuid[2:4] / uuid
    data = stored.read_bytes()
    stored.chmod(0o644)
    stored.write_bytes(data[:info["UncompressedSize"] // 2])


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_corrupt_instance_fails_the_retrieve_and_keeps_nothing(server, protocol, tmp_path):
    _truncate_second_instance(server)
    study, series = uids(server, "corrupt")
    text = _fails(lambda: pacs.retrieve(PROTOCOLS[protocol](server), study, series, cache=tmp_path))
    assert ("truncated" in text or "could not send" in text), text
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


# secrets ----------------------------------------------------------------------------------------
def test_settings_are_remembered_without_the_password(server, tmp_path):
    settings = pacs.ServerSettings(url=f"http://{USER}:{PASSWORD}@127.0.0.1:{server.http_port}/dicom-web")
    assert (settings.auth, settings.username, settings.secret) == ("basic", USER, PASSWORD)
    assert PASSWORD not in repr(settings) and PASSWORD not in settings.url
    assert pacs.save_settings(settings) == "session"  # no keyring backend here: memory only
    text = pacs_settings.settings_path().read_text()
    assert PASSWORD not in text and USER in text
    assert pacs.load_settings().secret == PASSWORD  # this session
    pacs_settings._SESSION.clear()
    assert pacs.load_settings().secret == ""  # a new session asks again
    assert pacs_settings.redact(f"GET http://{USER}:{PASSWORD}@host/x Authorization: Bearer abc.def") == \
        f"GET http://{USER}:***@host/x Authorization: Bearer ***"


def test_no_secret_in_logs_notes_or_exceptions(server, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    settings = web(server)
    volume = pacs.retrieve(settings, *uids(server, "b70f"), cache=tmp_path)
    _fails(lambda: pacs.find(web(server, secret=PASSWORD + "x")), "HTTP 401")
    pacs.save_settings(settings)
    texts = [caplog.text, "\n".join(volume.notes), pacs_settings.settings_path().read_text(),
             *(p.read_text() for p in tmp_path.rglob("*.json"))]
    assert caplog.text  # the libraries did log
    for text in texts:
        assert PASSWORD not in text


# command line -----------------------------------------------------------------------------------
def test_cli_echo_find_get_send(server, tmp_path, monkeypatch, capsys):
    from napari_jointrecon.cli import main

    monkeypatch.setenv("JOINTRECON_PACS_SECRET", PASSWORD)
    opts = ["--url", server.dicomweb_url, "--auth", "basic", "--user", USER]
    assert main(["pacs", "echo", *opts, "--save"]) == 0
    assert PASSWORD not in pacs_settings.settings_path().read_text()
    study, series = uids(server, "b70f")
    assert main(["pacs", "find", "--patient-id", str(_header(server.data["b70f"][0]).PatientID), "--series"]) == 0
    out = capsys.readouterr().out
    assert study in out and series in out and "B70f" in out
    nifti = tmp_path / "b70f.nii.gz"
    assert main(["pacs", "get", study, series, "--cache", str(tmp_path / "c"), "-o", str(nifti),
                 "--protocol", "dimse", "--host", "127.0.0.1", "--port", str(server.dicom_port),
                 "--aet", "ORTHANC", "--calling-aet", PEER]) == 0
    assert main(["pacs", "send", str(nifti), "--study", study, "--source-series", series, "--model", "unet",
                 "--dose", "25", "--cache", str(tmp_path / "c")]) == 0
    out = capsys.readouterr().out
    assert "stored 4 instance(s)" in out and "unet" in out
    monkeypatch.setenv("JOINTRECON_PACS_SECRET", "wrong")
    pacs_settings._SESSION.clear()
    assert main(["pacs", "find", *opts]) == 2
    assert "HTTP 401" in capsys.readouterr().err


# napari -----------------------------------------------------------------------------------------
def _dock(viewer, server, tmp_path, protocol="dicomweb"):
    from napari_jointrecon.widgets.pacs import PacsWidget

    widget = PacsWidget(viewer, cache=tmp_path / "cache")
    viewer.window.add_dock_widget(widget, name="PACS")
    http, dicom = web(server), dimse(server)
    widget.protocol_box.value = protocol
    widget.url_edit.value = http.url
    widget.auth_box.value = http.auth
    widget.user_edit.value = http.username
    widget.secret_edit.value = http.secret
    widget.host_edit.value, widget.port_spin.value = dicom.host, dicom.port
    widget.called_edit.value, widget.calling_edit.value = dicom.called_ae, dicom.calling_ae
    return widget


def _wait(qtbot, widget, timeout=20000):
    qtbot.waitUntil(lambda: not widget.running, timeout=timeout)


@pytest.mark.gui
def test_dock_searches_retrieves_and_sends(make_napari_viewer, qtbot, server, tmp_path):
    viewer = make_napari_viewer()
    widget = _dock(viewer, server, tmp_path)
    widget.patient_id_edit.value = str(_header(server.data["b40f"][0]).PatientID)
    widget.search()
    _wait(qtbot, widget)
    _wait(qtbot, widget)  # the series list follows the search
    assert len(widget._studies) == 1 and len(widget._series) >= 2, widget.status.value
    assert PASSWORD not in pacs_settings.settings_path().read_text()
    study, series = uids(server, "b70f")
    widget.series_box.value = next(i for i, s in enumerate(widget._series) if s.series_uid == series)
    widget.retrieve()
    _wait(qtbot, widget)
    layer = viewer.layers[-1]
    disk = load_ct(server.data["b70f"])
    np.testing.assert_array_equal(layer.data, disk.hu)
    assert tuple(layer.scale) == disk.spacing and tuple(layer.translate) == disk.origin
    assert "retrieved" in widget.status.value and widget.progress.value == widget.progress.max == 4

    widget.retrieve()  # the second open comes from the cache
    _wait(qtbot, widget)
    assert len(viewer.layers) == 2 and "from the cache" in widget.status.value

    result = viewer.add_image(np.round(layer.data) + 7, scale=layer.scale, translate=layer.translate,
                              name="b70f denoised",
                              metadata={"ct_volume": layer.metadata["ct_volume"],
                                        "denoise": {"model": "nafnet", "dose": 0.1}})
    widget.layer_box.reset_choices()
    widget.layer_box.value = result
    widget.send()
    _wait(qtbot, widget)
    assert "Stored" in widget.status.value, widget.status.value
    sent = next(s for s in pacs.list_series(web(server), study) if "b70f denoised" in s.description)
    back = pacs.retrieve(web(server), sent, cache=tmp_path / "back")
    np.testing.assert_array_equal(back.hu, result.data)


@pytest.mark.gui
def test_dock_cancel_leaves_no_layer_and_no_file(make_napari_viewer, qtbot, server, tmp_path, monkeypatch):
    from napari_jointrecon.widgets import pacs as pacs_widget

    original = pacs_widget._retrieve_job

    def slow_job(*args):  # the local server is too fast to press Cancel in the middle by hand
        gen = original(*args)
        try:
            while True:
                step = next(gen)
                yield step
                time.sleep(0.05)
        except StopIteration as stop:
            return stop.value
        finally:
            gen.close()

    monkeypatch.setattr(pacs_widget, "_retrieve_job", slow_job)
    viewer = make_napari_viewer()
    widget = _dock(viewer, server, tmp_path, protocol="dimse")
    study, series = uids(server, "chest")
    widget._set_series([pacs.SeriesEntry(study, series, "chest", "CT", 1, 20)])
    widget.retrieve()
    qtbot.waitUntil(lambda: widget.progress.value >= 2, timeout=10000)
    widget.cancel()
    _wait(qtbot, widget)
    assert len(viewer.layers) == 0 and "Cancelled" in widget.status.value
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]


@pytest.mark.gui
def test_dock_reports_failures_in_one_line_and_stays_usable(make_napari_viewer, qtbot, server, tmp_path):
    viewer = make_napari_viewer()
    widget = _dock(viewer, server, tmp_path)
    widget.secret_edit.value = "wrong-password"
    started = time.perf_counter()
    widget.search()
    _wait(qtbot, widget, timeout=int(FAILURE_S * 1000))
    assert time.perf_counter() - started < FAILURE_S
    assert "HTTP 401" in widget.status.value and "wrong-password" not in widget.status.value
    viewer.add_image(np.zeros((4, 4)))  # the viewer is usable
    widget.protocol_box.value = "dimse"
    widget.called_edit.value = "NOBODY"
    widget.echo()
    _wait(qtbot, widget, timeout=int(FAILURE_S * 1000))
    assert "rejected the association" in widget.status.value
    widget.called_edit.value = "ORTHANC"
    widget.echo()
    _wait(qtbot, widget)
    assert "answers C-ECHO" in widget.status.value
    widget.layer_box.value = viewer.layers[0]
    widget.send()
    assert "does not come from a DICOM series" in widget.status.value
