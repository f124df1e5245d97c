"""Shared fixtures: the real CT data, and a guard that it is never modified.

The data is looked up by :mod:`napari_jointrecon.testdata`: ``$JOINTRECON_SHARED_DATA``, then
``../shared/data`` beside this checkout, then the download cache (``jointrecon fetch-test-data``).
Where none holds it, every test that needs it skips with one reason (the others run), or fails
when ``JOINTRECON_REQUIRE_DATA=1`` (CI), so that a missing file cannot pass as a skip there.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from napari_jointrecon import testdata

# The docks freeze the objects alive once they have loaded (widgets/_loading.py), the viewer among
# them; napari's test viewers must be collected after each test, so only the test of the freeze
# turns it on (and gives every object back at its end)
os.environ.setdefault("JOINTRECON_GC_FREEZE", "0")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = testdata.locate(REPO)  # None where no look-up place holds every file
SAMPLE_DATA = REPO / "sample_data"


def _data_required() -> bool:
    return os.environ.get("JOINTRECON_REQUIRE_DATA", "").strip().lower() not in ("", "0", "false", "no")


def pytest_report_header(config) -> str:
    if SHARED_DATA is not None:
        return f"real CT data: {SHARED_DATA}"
    return f"real CT data: not found, the tests that need it {'fail' if _data_required() else 'skip'}"


def _hash_tree(root: Path) -> dict[str, str]:
    digests = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digests[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real CT data; without it a skip, or a failure under JOINTRECON_REQUIRE_DATA=1."""
    if SHARED_DATA is None:
        message = testdata.not_found_message(REPO)
        if _data_required():
            pytest.fail(message)
        pytest.skip(message)
    return SHARED_DATA


@pytest.fixture(scope="session", autouse=True)
def inputs_stay_byte_identical():
    """Hash every input file before the session and check them all after it."""
    roots = [r for r in (SHARED_DATA, SAMPLE_DATA) if r is not None and r.is_dir()]
    before = {str(r): _hash_tree(r) for r in roots}
    yield
    for root in roots:
        after = _hash_tree(root)
        assert after == before[str(root)], f"input files under {root} changed during the tests"


@pytest.fixture
def chest_dir(shared_data) -> Path:
    return shared_data / "chest-ct-dicom"


@pytest.fixture
def edge_dir(shared_data) -> Path:
    return shared_data / "dicom-edge-cases"
