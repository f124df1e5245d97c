"""Heavy imports and slow checks off napari's main thread, for the dock widgets.

Importing torch takes 1-2 s, the point models, scipy and scikit-image about as long. A dock that
imported them at construction froze the viewer while it opened. The docks import nothing heavy
themselves: they hand such work to :func:`load_in_background`, which runs it in one daemon thread
shared by all docks (the jobs of several docks run one after the other, and none takes a slot of
napari's thread pool from a run), and calls back on the main thread. Meanwhile a dock says so and
its form stays usable; a run started early imports what it needs in its own worker thread.

CPython opens a C extension's shared libraries with the GIL held, so importing torch even in another
thread stopped the main thread for the 0.2 s of opening libtorch (its relocations and static
initialisers). :func:`open_torch_libraries` opens them first through a ctypes call, which releases
the GIL; the import then finds them loaded.

When a dock hands over a job, and again once the loading thread has nothing left to do,
:func:`freeze_long_lived` moves every object alive then (napari's, torch's, SciPy's...: about half a
million with every dock open) out of the way of CPython's full garbage collections (``gc.freeze``,
as the ``gc`` documentation advises for objects that live as long as the process). Each full
collection otherwise walked all of them, 200-300 ms with the GIL held, at moments no dock chooses:
while a batch ran, at every layer napari removes (it collects garbage then), and while a dock's
imports ran (a full collection walking napari's viewer). A layer alive at that moment
is frozen with the rest; when it is removed (or a dock closed), everything is given back to the
collector, collected once and frozen again, so that its memory is freed; while a removed layer is
still held somewhere after that collection, nothing is frozen until it is gone. Layers of a viewer
without any of the plugin's docks are not looked after. ``JOINTRECON_GC_FREEZE=0`` turns this off.
"""

from __future__ import annotations

import gc
import importlib
import os
import queue
import sys
import threading
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["load_in_background", "import_modules", "open_torch_libraries", "freeze_long_lived"]

_jobs: queue.SimpleQueue = queue.SimpleQueue()
_thread: threading.Thread | None = None
_thread_lock = threading.Lock()
_relay = None
_torch_opened = False
#: the viewers of the docks that loaded in the background, and the layers alive at the last freeze
_viewers: weakref.WeakSet = weakref.WeakSet()
_frozen_layers: weakref.WeakSet = weakref.WeakSet()
#: frozen layers removed since the last collection, those still held by something after it, and
#: the docks whose closing makes everything collectable again
_removed: weakref.WeakSet = weakref.WeakSet()
_held: weakref.WeakSet = weakref.WeakSet()
_docks: weakref.WeakSet = weakref.WeakSet()
_collect_pending = False


def open_torch_libraries() -> None:
    """Open torch's C++ library with the GIL released (see the module docstring).

    Does nothing once torch is imported, off Linux and macOS, or when the library is not where a
    torch wheel puts it; errors are ignored (the import then opens it as usual).
    """
    global _torch_opened
    if _torch_opened or "torch" in sys.modules or os.name != "posix":
        return
    _torch_opened = True
    try:
        import ctypes
        import importlib.util

        spec = importlib.util.find_spec("torch")
        if spec is None or not spec.origin:
            return
        suffix = ".dylib" if sys.platform == "darwin" else ".so"
        path = Path(spec.origin).parent / "lib" / f"libtorch_cpu{suffix}"
        if not path.is_file():
            return
        dlopen = ctypes.CDLL(None).dlopen  # a foreign call: ctypes releases the GIL around it
        dlopen.restype = ctypes.c_void_p
        dlopen.argtypes = [ctypes.c_char_p, ctypes.c_int]
        # the flags of an ordinary import (local symbols): the handle stays open, as torch keeps it
        dlopen(os.fsencode(path), os.RTLD_NOW | os.RTLD_LOCAL)
    except Exception:  # noqa: BLE001 - an optimisation only
        return


def import_modules(modules: Sequence[str], *, torch: bool = False) -> None:
    """Import ``modules``; ``torch``: they import torch (its library is opened first)."""
    if torch:
        open_torch_libraries()
    for name in modules:
        importlib.import_module(name)


def _main_thread_relay():
    """A QObject living on the main thread whose signal runs a callable there (queued from others)."""
    global _relay
    if _relay is None:
        from qtpy.QtCore import QObject, Signal, Slot

        class _Relay(QObject):
            call = Signal(object)

            def __init__(self):
                super().__init__()
                self.call.connect(self._run)  # a slot of an object of the main thread: queued there

            @Slot(object)
            def _run(self, fn):
                fn()

        _relay = _Relay()
    return _relay


def _serve() -> None:
    while True:
        job, done = _jobs.get()
        try:
            result, error = job(), None
        except Exception as exc:  # noqa: BLE001 - handed to the dock, which says it
            result, error = None, exc
        _main_thread_relay().call.emit(lambda d=done, r=result, e=error: _deliver(d, r, e))
        # hold nothing of a finished job while waiting for the next: its dock, once closed, must
        # be collectable (a reference here would be frozen with it)
        del job, done, result, error
        if _jobs.empty():
            _post(freeze_long_lived)


def _freeze_enabled() -> bool:
    return os.environ.get("JOINTRECON_GC_FREEZE", "1").strip().lower() not in ("0", "false", "no", "off")


def freeze_long_lived() -> bool:
    """On the main thread: freeze the objects alive now (module docstring), and remember the layers
    of the docks' viewers among them. Returns whether it froze: not with ``JOINTRECON_GC_FREEZE=0``,
    nor while a removed layer that was frozen is still held somewhere (it would never be freed)."""
    if not _freeze_enabled() or len(_held):
        return False
    gc.collect(1)  # the young garbage goes first
    gc.freeze()
    for viewer in list(_viewers):
        _frozen_layers.update(viewer.layers)
    return True


def _post(fn) -> None:
    """Run ``fn`` on the main thread after what is queued there now (from any thread; the relay's
    signal would call it at once from the main thread itself)."""
    if threading.current_thread() is threading.main_thread():
        from qtpy.QtCore import QTimer

        QTimer.singleShot(0, fn)
    else:
        _main_thread_relay().call.emit(fn)


def _schedule_collection() -> None:
    """One :func:`_collect_and_refreeze` on the main thread, after what is queued there now (after
    napari's own handlers of a removal; several removals at once share it)."""
    global _collect_pending
    if not _collect_pending:
        _collect_pending = True
        _post(_collect_and_refreeze)


def _layer_removed(event) -> None:
    layer = getattr(event, "value", None)
    if layer in _frozen_layers:
        _removed.add(layer)
        _schedule_collection()


def _dock_closed(*_) -> None:
    """A dock (or its viewer's window) was closed: what was frozen with it must be collectable."""
    if gc.get_freeze_count():
        _schedule_collection()


def _collect_and_refreeze() -> None:
    """Give every frozen object back to the collector and collect once, which frees the removed
    layers; then freeze what is still alive, unless a removed layer is still held somewhere: then
    the freeze waits until that layer is gone."""
    global _collect_pending
    _collect_pending = False
    gc.unfreeze()
    _frozen_layers.clear()
    gc.collect()
    for layer in list(_removed):
        if layer not in _held:
            _held.add(layer)
            weakref.finalize(layer, _post, freeze_long_lived).atexit = False
    _removed.clear()
    freeze_long_lived()


def _watch(viewer, widget=None) -> None:
    if widget is not None and widget not in _docks:
        _docks.add(widget)
        widget.destroyed.connect(_dock_closed)
    if viewer is None or viewer in _viewers:
        return
    _viewers.add(viewer)
    viewer.layers.events.removed.connect(_layer_removed)


def _deliver(done, result, error) -> None:
    try:
        done(result, error)
    except RuntimeError as exc:  # the dock was closed meanwhile: its Qt widgets are gone
        if "deleted" not in str(exc):
            raise


def load_in_background(job: Callable[[], object], done: Callable[[object, Exception | None], None],
                       viewer=None, widget=None) -> None:
    """Run ``job()`` in the loading thread, then ``done(result, error)`` on the main thread.

    Call from the main thread (a dock's ``__init__``; ``viewer`` and ``widget``: the dock's viewer,
    whose layers :func:`freeze_long_lived` looks after, and its Qt widget, whose closing gives the
    frozen objects back to the collector). ``error`` is None when the job succeeded.
    """
    global _thread
    _main_thread_relay()  # made here, on the main thread, so that its slot runs there
    _watch(viewer, widget)
    # what is alive now (napari's viewer) stays out of the full collections that the imports of the
    # job set off; the objects the job makes are frozen when it ends
    freeze_long_lived()
    _jobs.put((job, done))
    with _thread_lock:
        if _thread is None:
            _thread = threading.Thread(target=_serve, name="jointrecon-loader", daemon=True)
            _thread.start()
