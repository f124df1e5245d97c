"""Exceptions the project raises for input it cannot use."""

from __future__ import annotations

__all__ = ["CTReadError", "CTWriteError"]


class CTReadError(ValueError):
    """A source cannot be read as a CT volume; the message says which file and why.

    The message is kept to one line (the lines of a longer one are joined with "; "), so that the
    command line and the viewer's status line show all of it.
    """

    def __init__(self, message: object = "") -> None:
        lines = [line.strip() for line in str(message).splitlines() if line.strip()]
        super().__init__("; ".join(lines))


class CTWriteError(OSError):
    """A result cannot be written where asked (for example it would overwrite a source file).

    An ``OSError``, not a ``ValueError``: napari reads a writer's ``ValueError`` as "this writer
    does not apply" and would hide the message from the user.
    """
