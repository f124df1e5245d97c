"""The local cache of retrieved series: ``ROOT/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm``.

A series is retrieved into a hidden partial folder under ``ROOT/.partial/`` and renamed into
place only once every instance has arrived and passed the checks, so the cache never holds a
half-written file or an incomplete series: a cancelled or failed retrieve removes its partial
folder. Cached files are made read-only and are never modified; a refresh retrieves into a new
partial folder and swaps it in. A JSON note beside each series folder records where it came
from (server label without credentials, time, instance count).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import time
import uuid
from pathlib import Path

from .records import CT_SOP_CLASSES, PacsError

__all__ = ["SeriesCache", "PartialSeries", "default_cache_dir", "check_instance"]

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
#: partial folders older than this (an earlier process died mid-retrieve) are removed
_STALE_PARTIAL_S = 6 * 3600


def default_cache_dir() -> Path:
    """``$JOINTRECON_PACS_CACHE``, else ``pacs`` in the user cache folder (platformdirs)."""
    env = os.environ.get("JOINTRECON_PACS_CACHE")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("napari-jointrecon", appauthor=False)) / "pacs"


def _check_uid(uid: str, what: str) -> str:
    uid = str(uid).strip()
    if not uid or len(uid) > 64 or not _UID.fullmatch(uid):  # it names files: never '..', '/' or a newline
        raise PacsError(f"{what} {uid!r} is not a DICOM UID (digits and dots, at most 64 characters)")
    return uid


def _sop_name(uid: str) -> str:
    from pydicom.uid import UID

    name = UID(uid).name
    return name if name and name != uid else f"SOP class {uid}"


def check_instance(ds, study_uid: str, series_uid: str) -> str:
    """Why a retrieved instance cannot go into a CT series ('' when it can): not CT (the reason names
    its SOP class), another series, or pixel data shorter than its header declares."""
    sop_class = str(ds.get("SOPClassUID", "") or getattr(ds.get("file_meta", None), "MediaStorageSOPClassUID", ""))
    if sop_class not in CT_SOP_CLASSES:
        modality = str(ds.get("Modality", "") or "?")
        return f"not a CT image ({_sop_name(sop_class) if sop_class else 'no SOP class'}, modality {modality})"
    if str(ds.get("SeriesInstanceUID", "")) != series_uid or str(ds.get("StudyInstanceUID", "")) != study_uid:
        return "it belongs to another series"
    if not str(ds.get("SOPInstanceUID", "")):
        return "it has no SOPInstanceUID"
    return ""


def _pixel_problem(ds) -> str:
    """Native pixel data shorter than Rows x Columns x frames x BitsAllocated declare ('' if fine)."""
    if "PixelData" not in ds:
        return "it has no pixel data"
    ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
    if ts is not None and ts.is_compressed:
        return ""
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        bits = int(ds.BitsAllocated)
        samples = int(ds.get("SamplesPerPixel", 1) or 1)
    except (AttributeError, TypeError, ValueError) as exc:
        return f"its image header is incomplete ({exc})"
    need = rows * cols * frames * samples * bits // 8
    have = len(ds.PixelData)
    if have < need:
        return f"its pixel data is truncated ({have} of {need} bytes)"
    return ""


def _received_bytes(ds) -> bytes | None:
    """The Part 10 bytes a Dataset was read from (pydicom keeps the buffer), or None."""
    from io import BytesIO

    buffer = getattr(ds, "buffer", None)
    if isinstance(buffer, BytesIO) and not buffer.closed:
        data = buffer.getvalue()
        if data[128:132] == b"DICM":
            return data
    return None


def _make_read_only(path: Path) -> None:
    mode = path.stat().st_mode
    path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def _remove_tree(path: Path) -> None:
    def writable_then_retry(func, p, _exc):
        try:
            os.chmod(p, stat.S_IWUSR | stat.S_IRUSR | stat.S_IXUSR)
            os.chmod(os.path.dirname(p), stat.S_IWUSR | stat.S_IRUSR | stat.S_IXUSR)
            func(p)
        except OSError:
            pass

    if path.exists():
        shutil.rmtree(path, onerror=writable_then_retry)


class PartialSeries:
    """A series being retrieved; :meth:`commit` moves it into the cache, :meth:`discard` removes it."""

    def __init__(self, cache: SeriesCache, study_uid: str, series_uid: str):
        self.cache, self.study_uid, self.series_uid = cache, study_uid, series_uid
        self.folder = cache.root / ".partial" / f"{series_uid[-24:]}-{uuid.uuid4().hex[:8]}"
        self.folder.mkdir(parents=True)
        self.count = 0
        self.skipped: list[str] = []
        self._names: set[str] = set()

    def add(self, item, *, index: int) -> bool:
        """Write one retrieved instance: a Part 10 file's bytes, or a pydicom Dataset (one read from a
        buffer keeps it, and those bytes are written as received). False when it is skipped as not CT;
        PacsError for an instance of the series that cannot be used."""
        ds = self._parse(item, index) if isinstance(item, (bytes, bytearray, memoryview)) else item
        problem = check_instance(ds, self.study_uid, self.series_uid)
        if problem.startswith("not a CT image"):
            self.skipped.append(problem[len("not a CT image ("):-1])
            return False
        if not problem:
            problem = _pixel_problem(ds)
        if problem:
            raise PacsError(f"instance {index} of series {self.series_uid} is unusable: {problem}; "
                            "nothing was kept")
        name = f"{_check_uid(ds.SOPInstanceUID, 'SOPInstanceUID')}.dcm"
        if name in self._names:
            return False  # the same instance twice: keep the first
        tmp = self.folder / f".{name}.tmp"  # a temporary name first: no file is ever half-written
        raw = _received_bytes(ds)
        try:
            if raw is not None:
                tmp.write_bytes(raw)
            else:
                ds.save_as(tmp, enforce_file_format=True)  # a Part 10 file: preamble and file meta
        except OSError as exc:
            raise PacsError(f"the cache folder {self.cache.root} cannot be written: {exc}") from None
        except Exception as exc:  # noqa: BLE001 - pydicom refusing a value: a corrupt instance
            raise PacsError(f"instance {index} of series {self.series_uid} cannot be written: {exc}") from None
        os.replace(tmp, self.folder / name)
        self._names.add(name)
        self.count += 1
        return True

    def _parse(self, data, index: int):
        from io import BytesIO

        import pydicom

        try:
            return pydicom.dcmread(BytesIO(bytes(data)))
        except Exception as exc:  # noqa: BLE001 - any parse failure is a corrupt file
            raise PacsError(f"instance {index} of series {self.series_uid} is not a readable DICOM "
                            f"file ({type(exc).__name__}: {exc}); nothing was kept") from None

    def commit(self, source_label: str, *, replace: bool = True) -> Path:
        """Move the complete series into the cache and return its folder. An older copy is replaced
        when ``replace`` (a refresh), else kept: another retrieve of the series finished first, and
        its reader may be reading it."""
        if self.count == 0:
            raise PacsError(self.cache.no_ct_message(self.series_uid, self.skipped))
        target = self.cache.folder(self.study_uid, self.series_uid)
        if not replace and self.cache.has(self.study_uid, self.series_uid):
            self.discard()
            return target
        for f in self.folder.iterdir():
            _make_read_only(f)
        target.parent.mkdir(parents=True, exist_ok=True)
        note = {"study_uid": self.study_uid, "series_uid": self.series_uid, "instances": self.count,
                "skipped_not_ct": self.skipped, "source": source_label,
                "retrieved": time.strftime("%Y-%m-%dT%H:%M:%S")}
        old = None
        if target.exists():  # a refresh: swap the new copy in, then remove the old one
            old = target.with_name(f".old-{target.name}-{uuid.uuid4().hex[:8]}")
            os.replace(target, old)
        try:
            os.replace(self.folder, target)
        except OSError:
            if old is not None and not target.exists():
                os.replace(old, target)  # keep the complete older copy
            raise
        tmp_note = target.parent / f".{target.name}-{uuid.uuid4().hex[:8]}.json.tmp"
        tmp_note.write_text(json.dumps(note, indent=2))
        os.replace(tmp_note, self.cache.note_path(self.study_uid, self.series_uid))
        if old is not None:
            _remove_tree(old)
        return target

    def discard(self) -> None:
        _remove_tree(self.folder)


class SeriesCache:
    """The cache folder (``root`` defaults to :func:`default_cache_dir`)."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root) if root is not None else default_cache_dir()

    def folder(self, study_uid: str, series_uid: str) -> Path:
        return self.root / _check_uid(study_uid, "StudyInstanceUID") / _check_uid(series_uid, "SeriesInstanceUID")

    def note_path(self, study_uid: str, series_uid: str) -> Path:
        folder = self.folder(study_uid, series_uid)
        return folder.with_name(folder.name + ".json")

    def note(self, study_uid: str, series_uid: str) -> dict:
        try:
            return json.loads(self.note_path(study_uid, series_uid).read_text())
        except (OSError, ValueError):
            return {}

    def has(self, study_uid: str, series_uid: str) -> bool:
        """Whether the series is cached (a folder there is always complete)."""
        folder = self.folder(study_uid, series_uid)
        return folder.is_dir() and any(folder.glob("*.dcm"))

    def files(self, study_uid: str, series_uid: str) -> list[Path]:
        return sorted(self.folder(study_uid, series_uid).glob("*.dcm"))

    def start(self, study_uid: str, series_uid: str) -> PartialSeries:
        self.folder(study_uid, series_uid)  # checks the UIDs
        self._remove_stale_partials()
        return PartialSeries(self, study_uid, series_uid)

    def evict(self, study_uid: str, series_uid: str) -> None:
        """Remove a cached series (one that turned out unreadable)."""
        _remove_tree(self.folder(study_uid, series_uid))
        self.note_path(study_uid, series_uid).unlink(missing_ok=True)
        try:
            self.folder(study_uid, series_uid).parent.rmdir()
        except OSError:
            pass

    @staticmethod
    def no_ct_message(series_uid: str, skipped: list[str]) -> str:
        if skipped:
            kinds = sorted(set(skipped))
            return (f"series {series_uid} holds no CT image: the PACS returned {len(skipped)} instance(s) "
                    f"that are {'; '.join(kinds)}; choose a CT series")
        return f"series {series_uid}: the PACS returned no instance; search again (was it deleted?)"

    def _remove_stale_partials(self) -> None:
        partial = self.root / ".partial"
        if not partial.is_dir():
            return
        now = time.time()
        for folder in partial.iterdir():
            try:
                if now - folder.stat().st_mtime > _STALE_PARTIAL_S:
                    _remove_tree(folder)
            except OSError:
                pass
