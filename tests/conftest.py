"""Shared fixtures: the real CT data beside the checkout, and a guard that it is never modified."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("JOINTRECON_SHARED_DATA", REPO.parent / "shared" / "data"))
SAMPLE_DATA = REPO / "sample_data"


def _hash_tree(root: Path) -> dict[str, str]:
    digests = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digests[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digests


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; its absence is a failure, not a skip (the tests need real CT)."""
    if not (SHARED_DATA / "chest-ct-dicom").is_dir():
        pytest.fail(f"the real CT data is missing: expected {SHARED_DATA} (set JOINTRECON_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session", autouse=True)
def inputs_stay_byte_identical():
    """Hash every input file before the session and check them all after it."""
    roots = [r for r in (SHARED_DATA, SAMPLE_DATA) if r.is_dir()]
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
