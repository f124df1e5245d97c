"""What every reader checks before it reads: only regular files, and never more memory than the file
can fill.

A header states sizes (rows, columns, frames, dims, array shapes, archive members); a hostile or
damaged file can state gigabytes over a few bytes of data, or a few megabytes of zeros that inflate
to gigabytes. The readers compare each stated size with the bytes actually present, and with the
caps below, before they allocate anything of that size. Named pipes, sockets and devices (for
example a link to ``/dev/zero``) are never opened: reading them can block forever or never end.
"""

from __future__ import annotations

import errno
import os
import stat
import zlib
from collections.abc import Iterable

import numpy as np

from ..errors import CTReadError

__all__ = [
    "MAX_VOXELS", "INFLATE_RATIO", "INFLATE_FLOOR", "CHUNK", "path_problem", "size_text", "inflate_cap",
    "check_voxels", "check_inflation", "inflated_size", "nonfinite_message", "count_nonfinite",
]

#: Default of ``load_ct(max_voxels=...)``: 2 x 10^9 voxels (8 GB as float32 HU).
MAX_VOXELS = 2_000_000_000
#: Compressed data is trusted to inflate to at most this many times its stored size. Real CT
#: (noise in every voxel) compresses 2-10 times; zlib itself cannot exceed about 1032 times, so a
#: header stating more cannot be true, and a stream of zeros that reaches that ratio is a bomb.
INFLATE_RATIO = 250
#: ... except below this size, where any ratio is allowed (small masks and test arrays of zeros).
INFLATE_FLOOR = 64 * 2**20
#: Chunk in which compressed data is inflated to measure it, so measuring never holds more.
CHUNK = 8 * 2**20

_KINDS = (
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def path_problem(path: str | os.PathLike, *, folder_ok: bool = False) -> str | None:
    """Why ``path`` cannot be read as a file (or a folder, with ``folder_ok``), or None.

    Only ``os.stat`` is used: a named pipe or a device is recognised without being opened.
    """
    try:
        st = os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "a symbolic link loop (the link points back to itself)"
        if exc.errno == errno.ENOENT:
            return (f"a link to {os.readlink(path)}, which does not exist" if os.path.islink(path)
                    else "no such file or folder")
        if exc.errno in (errno.EACCES, errno.EPERM):
            return "exists but cannot be read (permission denied)"
        return f"cannot be read ({exc.strerror})"
    if stat.S_ISDIR(st.st_mode):
        return None if folder_ok else "a folder, not a file"
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
        link = f" (a link to {os.path.realpath(path)})" if os.path.islink(path) else ""
        return f"{kind}{link}, not a regular file: not read"
    if not os.access(path, os.R_OK):
        return "exists but cannot be read (permission denied)"
    return None


def size_text(n: float) -> str:
    """``524288`` -> ``"512 KiB"``; binary units, three significant digits."""
    n = float(n)
    units = ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
    k = 0
    while abs(n) >= 1000 and k < len(units) - 1:
        n /= 1024
        k += 1
    return f"{int(n)} bytes" if k == 0 else f"{n:.3g} {units[k]}"


def inflate_cap(stored: int) -> int:
    """The most bytes that ``stored`` bytes of compressed data are trusted to inflate to."""
    return max(INFLATE_FLOOR, INFLATE_RATIO * int(stored))


def check_inflation(source: str, what: str, inflated: int, stored: int) -> None:
    """Refuse compressed data said to inflate beyond :func:`inflate_cap` of its stored size."""
    if inflated > inflate_cap(stored):
        raise CTReadError(
            f"{source}: {what} would inflate {size_text(stored)} of compressed data to "
            f"{size_text(inflated)} ({inflated / max(stored, 1):.0f} times; real image data stays "
            f"below {INFLATE_RATIO} times): a compression bomb or a wrong header; not read"
        )


def check_voxels(source: str, shape: Iterable[int], max_voxels: int, what: str = "the image") -> int:
    """The number of voxels of ``shape``; a CTReadError when it exceeds ``max_voxels``."""
    shape = tuple(int(n) for n in shape)
    voxels = int(np.prod(shape, dtype=object)) if shape else 0
    if voxels > max_voxels:
        raise CTReadError(
            f"{source}: {what} has {' x '.join(map(str, shape))} = {voxels:.3g} voxels, more than "
            f"max_voxels ({max_voxels:.3g}); pass a larger max_voxels to load_ct if that is intended"
        )
    return voxels


def inflated_size(fh, cap: int, *, wbits: int = -zlib.MAX_WBITS) -> int:
    """Bytes that the deflate stream read from ``fh`` inflates to, counted in bounded chunks;
    stops (and returns a number above ``cap``) as soon as the output exceeds ``cap``.

    Raises ``zlib.error`` for a corrupt stream and ``EOFError`` for one cut short.
    """
    inflater = zlib.decompressobj(wbits)
    total = 0
    while not inflater.eof:
        data = inflater.unconsumed_tail or fh.read(CHUNK)
        if not data:
            raise EOFError("the compressed data ends before its end-of-stream marker")
        total += len(inflater.decompress(data, CHUNK))
        if total > cap:
            return total
    return total


def nonfinite_message(source: str, count: int) -> str:
    """The one message for NaN/infinite voxels, whichever reader finds them."""
    return (f"{source}: {count} voxel(s) are NaN or infinite; a CT volume needs finite HU "
            "(fill or mask them before loading)")


def count_nonfinite(values: np.ndarray) -> int:
    """NaN and infinite entries of a float array (0 for integer arrays)."""
    if values.dtype.kind not in "fc":
        return 0
    return int(values.size - np.count_nonzero(np.isfinite(values)))
