"""Broken and hostile inputs (issue 20): a clear error or a correct load with a note, never a hang,
never an allocation of what the file does not hold.

Each recipe is built in a temporary folder from a valid file of ``../shared/data``. They all run in
one subprocess that forks once per recipe, so that a regression that hangs is killed after
``HANG_S`` seconds and fails its test instead of the suite, and each recipe's memory is measured on
its own: the child's address space is limited, so an attempt to allocate gigabytes fails even
where the kernel would hand out untouched pages, and its resident-memory growth is recorded.
The same child runs ``jointrecon info`` on the input: one line and exit status 2 for every error.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import struct
import subprocess
import sys
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="named pipes, /dev/zero, /proc and fork: the hostile inputs are Linux's")

HANG_S = 20.0  # a recipe still running after this is a hang
LIMIT_S = 5.0  # each recipe, and `jointrecon info` on it, within this
GROWTH_MB = 100.0  # resident memory a recipe may add
PEAK_MB = 500.0
ADDRESS_SPACE_EXTRA = 3 * 2**30  # beyond the runner's own; a multi-gigabyte allocation fails

CHEST = "chest-ct-dicom"
TORSO = "torso-ct-nifti/example_ct.nii.gz"
DEFLATED = "dicom-edge-cases/transfer-syntaxes/CTImage.dcm_DeflatedExplicitVRLittleEndianTransferSyntax_1.2.840.10008.1.2.1.99.dcm"


# -------------------------------------------------------------------------------------------------
# building blocks
# -------------------------------------------------------------------------------------------------
def _series(tmp: Path, data: Path, name: str, n: int = 5) -> Path:
    """``n`` consecutive real chest slices (2 mm apart, implicit VR little endian) in a new folder."""
    folder = tmp / name
    folder.mkdir()
    for k in range(n):
        shutil.copy(data / CHEST / f"00-slice{60 + k:03d}.dcm", folder / f"{k + 1}.dcm")
    return folder


def _one_slice(tmp: Path, data: Path, name: str) -> Path:
    path = tmp / name
    shutil.copy(data / CHEST / "00-slice060.dcm", path)
    return path


def _edit(path: Path, change) -> Path:
    ds = pydicom.dcmread(path)
    change(ds)
    ds.save_as(path)
    return path


def _patch(path: Path, group: int, element: int, value: bytes) -> Path:
    """Replace one element's value bytes in an implicit-VR file (pydicom refuses to write 'abc'
    into a numeric tag, which is exactly what a broken writer does)."""
    data = path.read_bytes()
    at = data.index(struct.pack("<HH", group, element), 132)
    length = struct.unpack("<I", data[at + 4:at + 8])[0]
    path.write_bytes(data[:at + 4] + struct.pack("<I", len(value)) + value + data[at + 8 + length:])
    return path


def _moved(dz: float = 0.0, dx: float = 0.0):
    def change(ds):
        x, y, z = (float(v) for v in ds.ImagePositionPatient)
        ds.ImagePositionPatient = [x + dx, y, z + dz]
    return change


def _zero_deflate(n_mib: int, head: bytes = b"", *, crc: bool = False) -> tuple[bytes, int]:
    """A raw deflate stream of ``head`` and ``n_mib`` MiB of zeros, built from one compressed MiB
    (blocks after a full flush stand alone), and (with ``crc``) the CRC-32 of what it inflates to."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    first = c.compress(head) + c.flush(zlib.Z_FULL_FLUSH)
    zeros = bytes(2**20)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = c.compress(zeros) + c.flush(zlib.Z_FULL_FLUSH)
    checksum = zlib.crc32(head)
    for _ in range(n_mib if crc else 0):
        checksum = zlib.crc32(zeros, checksum)
    return first + piece * n_mib + zlib.compressobj(9, zlib.DEFLATED, -15).flush(), checksum


def _nifti(path: Path, hu: np.ndarray) -> Path:
    import SimpleITK as sitk

    sitk.WriteImage(sitk.GetImageFromArray(hu), str(path))
    return path


def _nifti_field(path: Path, offset: int, fmt: str, *values) -> Path:
    data = bytearray(path.read_bytes())
    data[offset:offset + struct.calcsize(fmt)] = struct.pack(fmt, *values)
    path.write_bytes(bytes(data))
    return path


def _npy_header(shape, dtype="<i2") -> bytes:
    header = repr({"descr": dtype, "fortran_order": False, "shape": tuple(shape)}).encode("latin-1")
    pad = 64 - (10 + len(header) + 1) % 64
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header) + pad + 1) + header + b" " * pad + b"\n"


def _fifo(folder: Path, name: str) -> Path:
    os.mkfifo(folder / name)
    return folder


# -------------------------------------------------------------------------------------------------
# the recipes: name -> (build(tmp, data) -> input, expectation)
# -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Expect:
    error: tuple[str, ...] = ()  # a CTReadError whose message holds each of these
    note: tuple[str, ...] = ()  # a load whose notes hold each of these
    slices: int | None = None  # the loaded number of slices
    spacing_z: float | None = None


def _near_duplicate(tmp, data, *, same_pixels: bool):
    folder = _series(tmp, data, "dup")
    twin = folder / "2b.dcm"
    shutil.copy(folder / ("2.dcm" if same_pixels else "3.dcm"), twin)
    source = pydicom.dcmread(folder / "2.dcm")

    def change(ds):
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.ImagePositionPatient = [*source.ImagePositionPatient[:2], float(source.ImagePositionPatient[2]) + 0.002]
    _edit(twin, change)
    return folder


def _private_ob(tmp, data):
    path = _one_slice(tmp, data, "private.dcm")

    def change(ds):
        ds.add_new((0x0009, 0x0010), "LO", "HOSTILE")
        ds.add_new((0x0009, 0x1001), "OB", bytes(8))
    _edit(path, change)
    raw = bytearray(path.read_bytes())
    at = raw.index(struct.pack("<HHI", 0x0009, 0x1001, 8), 132)
    raw[at + 4:at + 8] = struct.pack("<I", 0xFFFFFFF0)
    path.write_bytes(bytes(raw))
    return path


def _deflate_bomb(tmp, data):
    """The real deflated CT's file meta, then a data set that inflates to 2 GiB of zeros."""
    src = (data / DEFLATED).read_bytes()
    meta_length = struct.unpack("<I", src[140:144])[0]
    stream, _ = _zero_deflate(2048)
    path = tmp / "bomb.dcm"
    path.write_bytes(src[:144 + meta_length] + stream)
    return path


def _nifti_dims_32767(tmp, data):
    path = _nifti(tmp / "huge.nii", np.zeros((4, 4, 4), np.int16))
    _nifti_field(path, 40, "<4h", 3, 32767, 32767, 32767)
    path.write_bytes(path.read_bytes()[:352] + bytes(1024))
    return path


def _niigz_claims_8gib(tmp, data):
    raw = _nifti(tmp / "tmp.nii", np.zeros((4, 4, 4), np.int16))
    _nifti_field(raw, 40, "<4h", 3, 2048, 2048, 1024)  # int16: 8 GiB
    path = tmp / "claims.nii.gz"
    path.write_bytes(gzip.compress(raw.read_bytes()[:352] + np.random.default_rng(0).bytes(2**20)))
    raw.unlink()
    return path


def _itk_huge(tmp, data, suffix):
    import SimpleITK as sitk

    path = tmp / f"huge{suffix}"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 5, 6), np.int16)), str(path))
    text = path.read_bytes()
    old = b"DimSize = 6 5 4" if suffix == ".mha" else b"sizes: 6 5 4"
    path.write_bytes(text.replace(old, old.split(b"6")[0] + b"100000 100000 100000"))
    return path


def _npy_huge(tmp, data):
    path = tmp / "huge.npy"
    path.write_bytes(_npy_header((100000, 100000, 100000), "<f8") + bytes(80))
    return path


def _npz_bomb(tmp, data):
    """A valid .npz whose 'hu' member (1024^3 int16 zeros) inflates to 2 GiB, written by hand."""
    head = _npy_header((1024, 1024, 1024))
    stream, crc = _zero_deflate(2048, head, crc=True)
    size = len(head) + 2**31
    name = b"hu.npy"
    local = struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, crc, len(stream), size, len(name), 0) + name
    central = struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0, 8, 0, 0, crc, len(stream), size,
                          len(name), 0, 0, 0, 0, 0, 0) + name
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 1, 1, len(central), len(local) + len(stream), 0)
    path = tmp / "bomb.npz"
    path.write_bytes(local + stream + central + end)
    with zipfile.ZipFile(path) as zf:  # a well-formed archive: the sizes are what it says
        assert zf.getinfo("hu.npy").file_size == size
    return path


def _niigz_cut(tmp, data, *, overwrite: bool):
    raw = (data / TORSO).read_bytes()
    path = tmp / ("damaged.nii.gz" if overwrite else "half.nii.gz")
    if overwrite:
        mid = len(raw) // 2
        path.write_bytes(raw[:mid] + bytes(64) + raw[mid + 64:])
    else:
        path.write_bytes(raw[:len(raw) // 2])
    return path


def _nii_missing_half(tmp, data):
    raw = gzip.decompress((data / TORSO).read_bytes())
    path = tmp / "half.nii"
    path.write_bytes(raw[:352 + (len(raw) - 352) // 2])
    return path


def _nifti_values(tmp, data, value, suffix=".nii.gz"):
    hu = np.full((4, 8, 8), -1000.0, np.float32)
    hu[2, 3, 4] = value
    return _nifti(tmp / f"values{suffix}", hu)


def _nifti_pixdim(tmp, data, value):
    path = _nifti(tmp / "pixdim.nii", np.full((4, 8, 8), -1000, np.int16))
    return _nifti_field(path, 80, "<f", value)  # pixdim[1]: the voxel size along x


def _npz(tmp, name, **arrays):
    path = tmp / name
    np.savez(path, **arrays)
    return path


def _mixed_list(tmp, data):
    nii = tmp / "v.nii.gz"
    shutil.copy(data / TORSO, nii)
    return [str(_one_slice(tmp, data, "a.dcm")), str(nii)]


def _link(folder: Path, name: str, target: str) -> Path:
    os.symlink(target, folder / name)
    return folder


def _slice_with(**tags):
    """A builder: one real slice, ``x.dcm``, with these tags set (TransferSyntaxUID in its meta)."""
    def build(tmp, data):
        def change(ds):
            for keyword, value in tags.items():
                setattr(ds.file_meta if keyword == "TransferSyntaxUID" else ds, keyword, value)
        return _edit(_one_slice(tmp, data, "x.dcm"), change)
    return build


def _slice_patched(group: int, element: int, value: bytes):
    return lambda tmp, data: _patch(_one_slice(tmp, data, "x.dcm"), group, element, value)


def _series_moved(name: str, **shift):
    """A builder: the five-slice series with slice ``name`` moved by ``shift`` (mm)."""
    return lambda tmp, data: _edit(_series(tmp, data, "s") / name, _moved(**shift)).parent


def _series_beside(make, name: str, *args):
    """A builder: the five-slice series with ``make(folder, name, *args)`` beside its slices."""
    return lambda tmp, data: make(_series(tmp, data, "s"), name, *args)


SERIES_OK = dict(slices=5, spacing_z=2.0)
EXCLUDED = ": ImagePositionPatient", "slice excluded"
RECIPES = {
    # 1. geometry that survives bad positions
    "near-duplicate, same pixels": (lambda t, d: _near_duplicate(t, d, same_pixels=True),
                                    Expect(note=("2b.dcm: a duplicate of", "identical pixels"), **SERIES_OK)),
    "near-duplicate, other pixels": (lambda t, d: _near_duplicate(t, d, same_pixels=False),
                                     Expect(error=("2.dcm", "2b.dcm", "0.002 mm apart", "different pixels"))),
    "last slice 100 m off": (_series_moved("5.dcm", dz=100_000),
                             Expect(note=("5.dcm" + EXCLUDED[0], EXCLUDED[1]), slices=4, spacing_z=2.0)),
    "middle slice 100 m off": (_series_moved("3.dcm", dz=100_000),
                               Expect(note=("3.dcm" + EXCLUDED[0], EXCLUDED[1], "resampled"), **SERIES_OK)),
    "slice 100 m off in-plane": (_series_moved("3.dcm", dx=100_000),
                                 Expect(note=("3.dcm" + EXCLUDED[0], EXCLUDED[1]), **SERIES_OK)),
    "slice at 1e300": (_series_moved("4.dcm", dz=1e300), Expect(note=("4.dcm" + EXCLUDED[0], EXCLUDED[1]), **SERIES_OK)),
    # 2. allocation checked before it happens
    "Rows = Columns = 65535": (_slice_with(Rows=65535, Columns=65535), Expect(error=(
        "x.dcm", "Rows x Columns x NumberOfFrames x BitsAllocated = 65535 x 65535 x 1 x 16 bits = 8 GiB",
        "PixelData holds 512 KiB"))),
    "NumberOfFrames = 2147483647": (_slice_with(NumberOfFrames=2147483647),
                                    Expect(error=("x.dcm", "2147483647", "PixelData holds 512 KiB"))),
    "NumberOfFrames = -1": (_slice_with(NumberOfFrames=-1), Expect(error=("x.dcm", "NumberOfFrames -1"))),
    "private OB of length 0xFFFFFFF0": (_private_ob, Expect(error=("private.dcm", "(0009,1001)", "4 GiB"))),
    "deflated DICOM inflating to 2 GiB": (_deflate_bomb, Expect(error=("bomb.dcm", "deflated", "compression bomb"))),
    "NIfTI 32767^3 over 1 KiB": (_nifti_dims_32767, Expect(error=("huge.nii", "32767 x 32767 x 32767", "holds 1 KiB"))),
    ".nii.gz claiming 8 GiB over 1 MiB": (_niigz_claims_8gib, Expect(error=("claims.nii.gz", "8 GiB"))),
    "MHA 100000^3": (lambda t, d: _itk_huge(t, d, ".mha"), Expect(error=("huge.mha", "100000 x 100000 x 100000"))),
    "NRRD 100000^3": (lambda t, d: _itk_huge(t, d, ".nrrd"), Expect(error=("huge.nrrd", "100000 x 100000 x 100000"))),
    ".npy shape 100000^3": (_npy_huge, Expect(error=("huge.npy", "(100000, 100000, 100000)", "holds 80 bytes"))),
    ".npz member inflating to 2 GiB": (_npz_bomb, Expect(error=("bomb.npz", "member 'hu'", "2 GiB", "compression bomb"))),
    "series over max_voxels": (lambda t, d: _series(t, d, "limit"), Expect(error=("limit", "max_voxels"))),
    # 3. only regular files are read
    "FIFO x.nii.gz in a series": (_series_beside(_fifo, "x.nii.gz"),
                                  Expect(note=("x.nii.gz: a named pipe (FIFO)",), **SERIES_OK)),
    "FIFO x.npy in a series": (_series_beside(_fifo, "x.npy"), Expect(note=("x.npy: a named pipe (FIFO)",), **SERIES_OK)),
    "FIFO 1-999.dcm in a series": (_series_beside(_fifo, "1-999.dcm"),
                                   Expect(note=("1-999.dcm: a named pipe (FIFO)",), **SERIES_OK)),
    "FIFO x.nii.gz opened directly": (lambda t, d: _fifo(t, "x.nii.gz") / "x.nii.gz",
                                      Expect(error=("x.nii.gz", "a named pipe (FIFO)", "not a regular file"))),
    "zero.dcm -> /dev/zero in a series": (_series_beside(_link, "zero.dcm", "/dev/zero"),
                                          Expect(note=("zero.dcm: a character device", "/dev/zero"), **SERIES_OK)),
    "symlink loops in a series": (lambda t, d: _link(_link(_series(t, d, "s"), "loop.dcm", "loop.dcm"), "up", ".."),
                                  Expect(note=("loop.dcm: a symbolic link loop", "up: a symbolic link loop"),
                                         **SERIES_OK)),
    "symlink loop opened directly": (lambda t, d: _link(t, "loop.nii.gz", "loop.nii.gz") / "loop.nii.gz",
                                     Expect(error=("loop.nii.gz", "symbolic link loop"))),
    # 4. no wrong data without an error or a note
    ".nii.gz cut in half": (lambda t, d: _niigz_cut(t, d, overwrite=False),
                            Expect(error=("half.nii.gz", "truncated"))),
    ".nii.gz with 64 bytes overwritten": (lambda t, d: _niigz_cut(t, d, overwrite=True),
                                          Expect(error=("damaged.nii.gz", "corrupt"))),
    ".nii missing half its data": (_nii_missing_half, Expect(error=("half.nii", "truncated"))),
    "NIfTI with NaN": (lambda t, d: _nifti_values(t, d, np.nan),
                       Expect(error=("values.nii.gz", "1 voxel(s) are NaN or infinite"))),
    "NIfTI with Inf": (lambda t, d: _nifti_values(t, d, np.inf, ".nii"), Expect(error=("values.nii", "NaN or infinite"))),
    "complex64 NIfTI": (lambda t, d: _nifti(t / "complex.nii", np.full((4, 8, 8), -1000 + 5j, np.complex64)),
                        Expect(error=("complex.nii", "complex"))),
    "NIfTI pixdim 0": (lambda t, d: _nifti_pixdim(t, d, 0.0), Expect(note=("pixdim[1]", "1 mm assumed"), slices=4)),
    "NIfTI pixdim NaN": (lambda t, d: _nifti_pixdim(t, d, float("nan")),
                         Expect(note=("pixdim[1]", "1 mm assumed"), slices=4)),
    "ImageOrientationPatient all zero": (_slice_with(ImageOrientationPatient=[0] * 6),
                                         Expect(error=("x.dcm", "ImageOrientationPatient", "zero direction"))),
    "RescaleSlope 0": (_slice_with(RescaleSlope=0), Expect(note=("RescaleSlope 0 taken as 1", "x.dcm"), slices=1)),
    ".npz holding only 'mask'": (lambda t, d: _npz(t, "mask.npz", mask=np.zeros((2, 8, 8), np.uint8)),
                                 Expect(error=("mask.npz", "no 'hu' array", "'mask'"))),
    # 5. every failure names the file and the field
    "RescaleSlope 'abc'": (_slice_patched(0x0028, 0x1053, b"abc "),
                           Expect(error=("x.dcm", "RescaleSlope 'abc' is not a number"))),
    "InstanceNumber 'abc'": (_slice_patched(0x0020, 0x0013, b"abc "),
                             Expect(note=("InstanceNumber 'abc' is not a number", "x.dcm"), slices=1)),
    "TransferSyntaxUID 1.2.3.4": (_slice_with(TransferSyntaxUID="1.2.3.4"),
                                  Expect(error=("x.dcm", "TransferSyntaxUID 1.2.3.4"))),
    "ImageOrientationPatient 1\\0\\0\\1\\0\\0": (_slice_with(ImageOrientationPatient=[1, 0, 0, 1, 0, 0]),
                                                 Expect(error=("x.dcm", "1\\0\\0\\1\\0\\0", "not perpendicular"))),
    ".npz with a 0-d spacing": (lambda t, d: _npz(t, "v.npz", hu=np.zeros((2, 8, 8)), spacing=np.float64(2.0)),
                                Expect(error=("v.npz", "'spacing' is a single number"))),
    "a DICOM slice and a NIfTI file in one list": (_mixed_list, Expect(error=("v.nii.gz is NIfTI", "must all be DICOM"))),
}
KWARGS = {"series over max_voxels": {"max_voxels": 1_000_000}}


# -------------------------------------------------------------------------------------------------
# the runner: one subprocess, one fork per recipe
# -------------------------------------------------------------------------------------------------
def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _attempt(target, kwargs: dict) -> dict:
    import contextlib
    import io
    import resource
    import time
    import traceback

    import napari_jointrecon as nj
    from napari_jointrecon.cli import main

    start_mb = _rss_mb()
    t0 = time.perf_counter()
    try:
        v = nj.load_ct(target, **kwargs)
        result = {"outcome": "load", "shape": list(v.shape), "spacing": list(v.spacing), "notes": v.notes,
                  "finite_geometry": bool(np.isfinite(v.affine).all()), "finite_hu": bool(np.isfinite(v.hu).all())}
    except nj.CTReadError as exc:
        result = {"outcome": "error", "message": str(exc)}
    except BaseException as exc:  # what the test is for: anything else is a failure to report
        result = {"outcome": f"{type(exc).__name__}", "message": traceback.format_exc()[-3000:]}
    result["seconds"] = time.perf_counter() - t0
    if isinstance(target, str) and not kwargs:
        out, err = io.StringIO(), io.StringIO()
        t0 = time.perf_counter()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                rc = main(["info", target])
        except BaseException as exc:
            rc = f"{type(exc).__name__}: {traceback.format_exc()[-2000:]}"
        result["cli"] = {"rc": rc, "stderr": err.getvalue(), "seconds": time.perf_counter() - t0}
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result.update(peak_mb=peak_mb, growth_mb=peak_mb - start_mb)
    return result


def _in_child(target, kwargs: dict, address_space: int) -> dict:
    import resource
    import select
    import signal
    import time

    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: limited address space, one recipe, the result as JSON on the pipe
        os.close(read_end)
        try:
            resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
            payload = json.dumps(_attempt(target, kwargs)).encode()
        except BaseException as exc:
            payload = json.dumps({"outcome": f"runner {type(exc).__name__}", "message": str(exc)}).encode()
        with os.fdopen(write_end, "wb") as fh:
            fh.write(payload)
        os._exit(0)
    os.close(write_end)
    chunks, deadline = [], time.monotonic() + HANG_S
    with os.fdopen(read_end, "rb") as fh:
        while (left := deadline - time.monotonic()) > 0:
            if select.select([fh], [], [], left)[0]:
                chunk = os.read(fh.fileno(), 1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            return {"outcome": "hang", "message": f"still running after {HANG_S:.0f} s"}
    os.waitpid(pid, 0)
    try:
        return json.loads(b"".join(chunks))
    except ValueError:
        return {"outcome": "crash", "message": b"".join(chunks).decode(errors="replace")[-2000:]}


def _run_all(manifest: str, results: str) -> None:
    import napari_jointrecon  # noqa: F401  (imported once, before the forks)
    import napari_jointrecon.cli  # noqa: F401
    import SimpleITK  # noqa: F401

    with open("/proc/self/status") as fh:
        vm = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmSize:"))
    recipes = json.loads(Path(manifest).read_text())
    out = {name: _in_child(spec["target"], spec["kwargs"], vm + ADDRESS_SPACE_EXTRA)
           for name, spec in recipes.items()}
    Path(results).write_text(json.dumps(out))


# -------------------------------------------------------------------------------------------------
# the tests
# -------------------------------------------------------------------------------------------------
def _digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() and not path.is_symlink() else None


@pytest.fixture(scope="module")
def built(shared_data, tmp_path_factory):
    """Every recipe built in its own folder, and the hashes of every regular file they hold."""
    root = tmp_path_factory.mktemp("hostile")
    manifest = {}
    for k, (name, (build, _)) in enumerate(RECIPES.items()):
        folder = root / f"r{k:02d}"
        folder.mkdir()
        target = build(folder, shared_data)
        manifest[name] = {"target": target if isinstance(target, list) else str(target),
                          "kwargs": KWARGS.get(name, {})}
    digests = {str(p): _digest(p) for p in root.rglob("*") if _digest(p)}
    return root, manifest, digests


@pytest.fixture(scope="module")
def outcomes(built):
    root, manifest, _ = built
    (root / "manifest.json").write_text(json.dumps(manifest))
    env = dict(os.environ, MALLOC_ARENA_MAX="2", OMP_NUM_THREADS="1")
    subprocess.run([sys.executable, __file__, str(root / "manifest.json"), str(root / "results.json")],
                   check=True, timeout=HANG_S * len(manifest) + 120, env=env, cwd=Path(__file__).parent)
    return json.loads((root / "results.json").read_text())


@pytest.mark.parametrize("name", list(RECIPES))
def test_recipe(outcomes, name):
    expect = RECIPES[name][1]
    result = outcomes[name]
    shown = json.dumps(result, indent=1)[:3000]
    if expect.error:
        assert result["outcome"] == "error", shown
        for text in expect.error:
            assert text in result["message"], shown
        assert "\n" not in result["message"], shown
    else:
        assert result["outcome"] == "load", shown
        notes = " | ".join(result["notes"])
        for text in expect.note:
            assert text in notes, shown
        assert result["finite_geometry"] and result["finite_hu"], shown
        if expect.slices is not None:
            assert result["shape"][0] == expect.slices, shown
        if expect.spacing_z is not None:
            assert result["spacing"][0] == pytest.approx(expect.spacing_z, abs=1e-3), shown
    assert result["seconds"] < LIMIT_S, shown
    assert result["peak_mb"] < PEAK_MB and result["growth_mb"] < GROWTH_MB, shown


@pytest.mark.parametrize("name", [n for n in RECIPES if n not in KWARGS and "list" not in n])
def test_cli_info_prints_one_line_and_exits_2(outcomes, name):
    result = outcomes[name]
    cli = result["cli"]
    shown = json.dumps(cli, indent=1)[:3000]
    assert cli["seconds"] < LIMIT_S, shown
    if RECIPES[name][1].error:
        assert cli["rc"] == 2, shown
        assert cli["stderr"].startswith("jointrecon: ") and cli["stderr"].count("\n") == 1, shown
        assert cli["stderr"].strip() == f"jointrecon: {result['message']}", shown
    else:
        assert cli["rc"] == 0 and cli["stderr"] == "", shown


def test_no_input_file_changes(built, outcomes):
    root, _, before = built
    after = {str(p): _digest(p) for p in root.rglob("*") if _digest(p) and p.parent != root}
    assert after == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_says_so(tmp_path):
    import napari_jointrecon as nj

    path = _npz(tmp_path, "v.npz", hu=np.zeros((2, 8, 8)))
    path.chmod(0)
    with pytest.raises(nj.CTReadError, match="permission denied"):
        nj.load_ct(path)


def test_broken_link_is_not_called_missing_file(tmp_path):
    import napari_jointrecon as nj

    os.symlink(tmp_path / "gone.nii.gz", tmp_path / "v.nii.gz")
    with pytest.raises(nj.CTReadError, match="a link to .*gone.nii.gz, which does not exist"):
        nj.load_ct(tmp_path / "v.nii.gz")


if __name__ == "__main__":
    _run_all(*sys.argv[1:])
