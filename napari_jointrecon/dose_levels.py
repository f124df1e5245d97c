"""The dose levels of the design documents, as fractions of the full dose.

A module of its own, without torch, so that the dock widgets can offer the levels without importing
the dose simulation (:mod:`napari_jointrecon.dose`) on napari's main thread.
"""

from __future__ import annotations

__all__ = ["DOSE_LEVELS"]

DOSE_LEVELS = (0.10, 0.25, 0.50, 0.70)
