"""Simulate dose dock widget: a lower-dose version of a full-dose CT layer, with progress and cancel.

A researcher with a full-dose scan gets its 10/25/50/70 % dose version here, denoises that, and
measures the result against the full dose (the Metrics widget). The noise is inserted in the
projection domain by :func:`napari_jointrecon.dose.iter_simulate_low_dose` (Poisson noise from the
image itself for generated, noise-free volumes such as the phantom), in a napari thread worker that
yields after every batch of slices. The same layer, dose and seed give the same noise, and a slice
simulated alone gets the noise it gets in the whole volume. The result lands where the input is; a
cancelled run adds nothing.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from magicgui.widgets import ComboBox, Container, Label, ProgressBar, PushButton, SpinBox

from ..dose_levels import DOSE_LEVELS
from ._common import (ThreadedWidget, ct_layer_problem, current_slice, hu_note, layer_source, plugin_dock,
                      result_layer_kwargs, widen_contrast_range)

if TYPE_CHECKING:
    import napari

__all__ = ["SimulateWidget"]

SCOPES = [("current slice", "slice"), ("whole volume", "volume")]


class SimulateWidget(ThreadedWidget):
    """Add a simulated lower-dose copy of a full-dose CT layer without blocking the viewer."""

    busy_text = "A simulation is already running: wait for it or press Cancel."
    preload = ("napari_jointrecon.dose", "napari_jointrecon.phantom")
    preload_torch = True
    loading_text = "Loading the dose simulation in the background ... the form can be set meanwhile."

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__(napari_viewer)
        self.layer_box = ComboBox(label="Full dose", choices=self._choices, nullable=True)
        self.dose_box = ComboBox(label="Dose", value=0.25, choices=[(f"{d * 100:g} %", d) for d in DOSE_LEVELS])
        self.seed_spin = SpinBox(label="Noise seed", value=0, min=0, max=2**31 - 1)
        self.scope_box = ComboBox(label="Scope", choices=SCOPES, value="volume")
        self.run_button = PushButton(text="Simulate")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(value=0, min=0, max=1, label="Progress")
        self.status = Label(value="")
        self.extend([
            Container(widgets=[self.layer_box, self.dose_box, self.seed_spin, self.scope_box], labels=True),
            Container(widgets=[self.run_button, self.cancel_button], layout="horizontal", labels=False),
            self.progress,
            self.status,
        ])
        for w in (self.layer_box, self.scope_box):
            w.changed.connect(self._refresh)
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        self._watch_layers()
        plugin_dock(self)
        self._load_models()

    def problem(self) -> str:
        """Why Simulate is disabled ("" when it is enabled); a 2D layer is simulated whole."""
        return ct_layer_problem(self.layer_box.value)

    def _refresh(self, *_):
        issue = self.problem()
        self.run_button.enabled = self._worker is None and not issue
        if self._worker is None:
            self._say(issue or self._ready_text("Ready: the noise of a lower dose will be added to the chosen layer."))

    def run(self, *_):
        """Start the simulation; returns the worker (None when refused, with the reason in the status)."""
        from napari.qt.threading import create_worker

        layer = self._ready_layer(displayed_slice=self.scope_box.value == "slice")
        if layer is None:
            return None
        scope = self.scope_box.value if layer.ndim == 3 else "volume"
        k0 = current_slice(self._viewer, layer) if scope == "slice" else 0
        count = 1 if scope == "slice" or layer.ndim == 2 else layer.data.shape[0]
        dose, seed = float(self.dose_box.value), int(self.seed_spin.value)
        info = {"source": layer.name, "dose": dose, "seed": seed, "first_slice": k0}
        self.progress.max, self.progress.value = count, 0
        self._say(f"Simulating {dose * 100:g} % dose on {count} slice(s) of '{layer.name}' ...")
        self._started = time.perf_counter()
        derived = any(key in layer.metadata for key in ("simulated", "denoise"))
        worker = create_worker(_simulate_job, layer_source(layer), scope == "slice", k0, dose, seed, derived,
                               _start_thread=False,
                               _connect={"yielded": self._on_progress,
                                         "returned": lambda out: self._on_result(layer, out, info),
                                         "errored": lambda exc: self._failed("Simulation", exc),
                                         "finished": self._run_finished})
        return self._start(worker)

    def _on_progress(self, done_total) -> None:
        done, total = done_total
        self.progress.max, self.progress.value = total, done
        text = f"{done}/{total} slices"
        if 0 < done < total:  # seconds per 512 x 512 slice (docs/DOSE.md): say how long is left
            left = (time.perf_counter() - self._started) / done * (total - done)
            text += f", about {left / 60:.0f} min left" if left >= 90 else f", about {left:.0f} s left"
        self._say(text)

    def _on_result(self, layer, result, info: dict) -> None:
        if self._cancelled or self._removed(layer):
            return
        out, method, hu_warning = result
        info["method"] = method
        name = f"{layer.name} · {info['dose'] * 100:g}% simulated"
        data = out if layer.ndim == 3 else out[0]
        kwargs = result_layer_kwargs(layer, name=name, first_slice=info["first_slice"],
                                     metadata={"simulated": info})
        try:
            widen_contrast_range(self._viewer.add_image(data, **kwargs))
        except Exception as exc:  # noqa: BLE001 - reported; the viewer stays usable
            self._failed("Simulation", exc)
            return
        self._say(f"Added '{name}' ({info['method']} noise, seed {info['seed']}): denoise it, then "
                  f"measure it against '{layer.name}' in Metrics." + hu_warning)


def _method(volume, source, derived: bool) -> str:
    """Poisson counts for the noise-free phantom (its layer may have been renamed: the volume it
    was read or made as, ``source``, decides), "insert" for anything else, including a simulated
    or denoised copy of the phantom (``derived``), which already has noise."""
    from ..phantom import is_noise_free_phantom

    phantom = is_noise_free_phantom(volume) or is_noise_free_phantom(source)
    return "poisson" if phantom and not derived else "insert"


def _simulate_job(source: tuple, one_slice: bool, first_index: int, dose: float, seed: int, derived: bool):
    """Generator run in the worker thread: yields ``(done, total)`` per batch.

    ``source``: :func:`layer_source` of the layer (the volume is made here, off the main thread);
    ``one_slice``: only slice ``first_index``. Returns ``(HU, method, note)``, ``note`` being
    :func:`hu_note` of the input.
    """
    from .._writer import layer_to_volume
    from ..dose import iter_simulate_low_dose

    data, meta = source
    volume = layer_to_volume(data, meta)
    method = _method(volume, meta["metadata"].get("ct_volume"), derived)
    hu = volume.hu[first_index:first_index + 1] if one_slice else volume.hu
    note = hu_note(hu)
    gen = iter_simulate_low_dose(hu, dose, seed=seed, spacing=tuple(volume.spacing), method=method,
                                 first_index=first_index)
    try:
        while True:
            yield next(gen)
    except StopIteration as stop:
        return stop.value, method, note
    finally:
        gen.close()
