"""The real-CT test data: its registry, the look-up order, the download, and a clone without it.

The download is tested against a real HTTP server on 127.0.0.1 (``python -m http.server``) that
serves copies of a few registered files at the paths of their public URLs.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from napari_jointrecon import testdata
from napari_jointrecon.cli import main

REPO = Path(__file__).resolve().parents[1]
#: Three registered files of different sources, one of them with spaces in its URL.
FETCHED = ("torso-ct-nifti/LICENSE", "dicom-edge-cases/encodings/deflate/report_dfl",
           "ct-series/siemens-sensation10-B40f-chest/1-01.dcm")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_registry_covers_every_data_file_with_its_checksum(shared_data):
    on_disk = {p.relative_to(shared_data).as_posix() for p in shared_data.rglob("*") if p.is_file()}
    assert on_disk == set(testdata.REGISTRY) | set(testdata.LOCAL_ONLY)
    assert not set(testdata.REGISTRY) & set(testdata.LOCAL_ONLY)
    for rel, sha in testdata.REGISTRY.items():
        assert _sha256(shared_data / rel) == sha, rel


def test_urls_are_raw_files_at_pinned_commits(monkeypatch):
    monkeypatch.delenv("JOINTRECON_DATA_BASE_URL", raising=False)
    for rel in testdata.REGISTRY:
        url = testdata.url(rel)
        assert re.fullmatch(r"https://raw\.githubusercontent\.com/[\w.-]+/[\w.-]+/[0-9a-f]{40}/\S+", url), url
    b40f = testdata.url("ct-series/siemens-sensation10-B40f-chest/1-01.dcm")
    assert "/huyenbui117/lung_CT/520adfe9e2e8e2b8c02985b228002c5b2997e5b6/" in b40f
    assert "ThoraxRoutine%20%208.0.0%20%20B40f-10983/1-01.dcm" in b40f
    monkeypatch.setenv("JOINTRECON_DATA_BASE_URL", "http://127.0.0.1:1/mirror/")
    assert testdata.url(FETCHED[0]) == ("http://127.0.0.1:1/mirror/wasserth/TotalSegmentator/"
                                        "0e65a448d557382b1e925276212b3bec7f5aff83/LICENSE")


def _complete(root: Path) -> Path:
    for rel in (*testdata.REGISTRY, *testdata.LOCAL_ONLY):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).touch()
    return root


def test_lookup_order_env_then_beside_the_checkout_then_the_cache(tmp_path, monkeypatch):
    checkout = tmp_path / "clone"
    checkout.mkdir()
    env, beside, cache = tmp_path / "env", tmp_path / "shared" / "data", tmp_path / "cache"
    monkeypatch.setenv("JOINTRECON_SHARED_DATA", str(env))
    monkeypatch.setenv("JOINTRECON_DATA_CACHE", str(cache))
    assert testdata.locate(checkout) is None
    message = testdata.not_found_message(checkout)
    assert "$JOINTRECON_SHARED_DATA" in message and "../shared/data" in message and str(cache) in message
    assert "jointrecon fetch-test-data" in message
    with pytest.raises(testdata.DataNotFound, match="fetch-test-data"):
        testdata.require(checkout)

    _complete(cache)
    assert testdata.locate(checkout) == cache
    _complete(beside)
    assert testdata.locate(checkout) == beside
    _complete(env)
    assert testdata.locate(checkout) == env
    (env / "chest-ct-dicom" / "00-slice070.dcm").unlink()  # an incomplete copy is passed over
    assert testdata.locate(checkout) == beside
    total = len(testdata.REGISTRY) + len(testdata.LOCAL_ONLY)
    message = testdata.not_found_message(tmp_path)
    assert f"1 of {total} files missing, e.g. chest-ct-dicom/00-slice070.dcm" in message
    monkeypatch.delenv("JOINTRECON_SHARED_DATA")
    assert "$JOINTRECON_SHARED_DATA (not set)" in testdata.not_found_message(tmp_path)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A local HTTP server for a folder laid out like the public URLs: (base URL, folder)."""
    root = tmp_path_factory.mktemp("mirror")
    proc = subprocess.Popen([sys.executable, "-u", "-m", "http.server", "--bind", "127.0.0.1", "0",
                             "--directory", str(root)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        banner = proc.stdout.readline()  # "Serving HTTP on 127.0.0.1 port 41234 (...) ..."
        port = re.search(r"port (\d+)", banner)
        assert port, f"the HTTP server did not start: {banner!r}"
        yield f"http://127.0.0.1:{port.group(1)}", root
    finally:
        os.kill(proc.pid, 15)
        proc.wait(timeout=10)
        proc.stdout.close()


def _serve(root: Path, rel: str, content: bytes) -> None:
    """Put ``content`` where the mirror serves the registered file ``rel``."""
    path = root / unquote(urlsplit(testdata.url(rel)).path).lstrip("/")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)


def test_fetch_test_data_downloads_and_verifies(server, shared_data, tmp_path, monkeypatch, capsys):
    base, root = server
    for rel in FETCHED:
        _serve(root, rel, (shared_data / rel).read_bytes())
    monkeypatch.setenv("JOINTRECON_DATA_BASE_URL", base)
    cache = tmp_path / "cache"
    assert main(["fetch-test-data", "--cache", str(cache), "--only", *FETCHED]) == 0
    assert "3 files" in capsys.readouterr().out
    for rel in FETCHED:
        assert _sha256(cache / rel) == testdata.REGISTRY[rel]
    assert sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*") if p.is_file()) == sorted(FETCHED)
    # a folder brings its provenance note (the original has no public URL): source, licence, checksums
    for rel in ("torso-ct-nifti/aorta_crop_ct.nii.gz", "torso-ct-nifti/example_ct.nii.gz"):
        _serve(root, rel, (shared_data / rel).read_bytes())
    assert main(["fetch-test-data", "--cache", str(cache), "--only", "torso-ct-nifti"]) == 0
    note = (cache / "torso-ct-nifti" / "SOURCE.md").read_text()
    assert "wasserth/TotalSegmentator" in note and "CC BY 4.0" in note and testdata.REGISTRY[FETCHED[0]] in note


def test_fetch_refuses_a_file_with_the_wrong_checksum(server, tmp_path, monkeypatch, capsys):
    base, root = server
    rel = "dicom-edge-cases/encodings/deflate/wave_dfl"
    _serve(root, rel, b"not the registered file")
    monkeypatch.setenv("JOINTRECON_DATA_BASE_URL", base)
    cache = tmp_path / "cache"
    assert main(["fetch-test-data", "--cache", str(cache), "--only", rel, "--retries", "0"]) == 2
    err = capsys.readouterr().err
    assert "1 of 1 files were not fetched" in err and rel in err and "hash" in err.lower()
    assert not (cache / rel).exists()
    assert not [p for p in cache.rglob("*") if p.is_file()]  # no partial or temporary file is kept


def _pytest_in_a_clone(tmp_path: Path, env_extra: dict[str, str], *selection: str) -> subprocess.CompletedProcess:
    """Run pytest on a copy of tests/ in a folder with no ``../shared/data`` beside it."""
    clone = tmp_path / "clone"
    shutil.copytree(REPO / "tests", clone / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", clone)
    empty_env, empty_cache = tmp_path / "empty-data", tmp_path / "empty-cache"
    empty_env.mkdir()
    empty_cache.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "JOINTRECON_REQUIRE_DATA"}  # CI sets it
    env.update(JOINTRECON_SHARED_DATA=str(empty_env), JOINTRECON_DATA_CACHE=str(empty_cache), **env_extra)
    assert not (tmp_path / "shared").exists()
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider", "--no-xvfb",
                           *selection], cwd=clone, env=env, capture_output=True, text=True, timeout=300)


CLONE_SELECTION = ("tests/test_shared_data.py::test_torso_nifti_direction_is_kept",
                   "tests/test_shared_data.py::test_chest_series_geometry_matches_its_headers",
                   "tests/test_phantom.py")


def test_a_clone_without_data_skips_the_real_ct_tests_with_one_reason(tmp_path):
    run = _pytest_in_a_clone(tmp_path, {}, *CLONE_SELECTION)
    assert run.returncode == 0, run.stdout + run.stderr
    summary = run.stdout.strip().splitlines()[-1]
    assert re.search(r"\d+ passed, 2 skipped", summary), summary
    reasons = {line.split(": ", 1)[1] for line in run.stdout.splitlines() if line.startswith("SKIPPED")}
    assert len(reasons) == 1, reasons
    assert "real CT test data not found" in reasons.pop()


def test_a_clone_without_data_fails_when_data_is_required(tmp_path):
    run = _pytest_in_a_clone(tmp_path, {"JOINTRECON_REQUIRE_DATA": "1"}, *CLONE_SELECTION)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "real CT test data not found" in run.stdout
    assert re.search(r"\d+ passed, 2 errors", run.stdout.strip().splitlines()[-1])
