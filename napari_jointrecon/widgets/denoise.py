"""Denoise dock widget: input layer, dose, model, device, scope; Run / Cancel with progress.

The work runs in a napari thread worker around :func:`napari_jointrecon.inference.iter_denoise`,
which yields after every batch of slices: the progress bar moves, Cancel takes effect at the next
batch, and the viewer keeps responding. The result becomes a new layer at the input's place (scale,
translate, affine), with its window, named after the model and dose; a cancelled run adds nothing.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from magicgui.widgets import CheckBox, ComboBox, Container, Label, ProgressBar, PushButton, SpinBox

from ..dose import DOSE_LEVELS
from ._common import (ThreadedWidget, ct_layer_problem, current_slice, hu_note,
                      layer_choices, layer_volume, result_layer_kwargs, widen_contrast_range)

if TYPE_CHECKING:
    import napari

__all__ = ["DenoiseWidget", "device_choices", "model_hint"]

SCOPES = [("current slice", "slice"), ("slab around the slice", "slab"), ("whole volume", "volume")]


def device_choices(cuda: bool, mps: bool) -> list[tuple[str, str]]:
    """Device entries, saying which exist here (a pure function: the tests pass the availability)."""
    auto = "cuda" if cuda else "mps" if mps else "cpu"
    return [(f"auto ({auto})", "auto"),
            ("cuda" + ("" if cuda else " (not available)"), "cuda"),
            ("mps" + ("" if mps else " (not available)"), "mps"),
            ("cpu", "cpu")]


def model_hint(card: dict) -> str:
    """One line from a model card: what it is, its measured quality and speed."""
    parts = [card.get("title", card["name"])]
    held = (card.get("results") or {}).get("heldout_test", {})
    gains = [r[card["name"]]["25%"]["psnr"][0] - r["input"]["25%"]["psnr"][0]
             for r in held.values() if card["name"] in r and "input" in r]
    res = (card.get("results") or {}).get("chest_test", {})
    if gains:
        parts.append(f"held-out patients: {sum(gains) / len(gains):+.1f} dB over the input at 25 %")
    elif "25%" in res and "10%" in res:
        parts.append(f"chest test PSNR {res['10%']['psnr'][0]:.1f} / {res['25%']['psnr'][0]:.1f} dB at 10 / 25 %")
    speed = (card.get("speed") or {}).get("slices_per_s_512_2threads")
    if speed:
        parts.append(f"{speed:.1f} slices/s (512², 2 CPU threads)")
    if card.get("kind") == "classical":
        parts.append("classical, CPU")
    return "; ".join(parts)


class DenoiseWidget(ThreadedWidget):
    """Run a registered denoiser on a CT layer without blocking the viewer."""

    busy_text = "A denoising run is already going: wait for it or press Cancel."

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        from ..inference import _cuda_available, _mps_available
        from ..models.registry import list_models

        super().__init__(napari_viewer)
        self._showing_issue = False
        self._cards = {c["name"]: c for c in list_models()}
        self._cuda, self._mps = _cuda_available(), _mps_available()
        default = next(name for name, c in self._cards.items() if c["default"])
        self.layer_box = ComboBox(label="Input", choices=self._layer_choices, nullable=True)
        self.dose_box = ComboBox(label="Dose", value="estimate", choices=[("estimate from the image", "estimate")]
                                 + [(f"{d * 100:g} %", d) for d in DOSE_LEVELS])
        self.model_box = ComboBox(label="Model", value=default, choices=[
            (f"{name}{' (default)' if c['default'] else ''} · {c['kind']}", name) for name, c in self._cards.items()])
        self.device_box = ComboBox(label="Device", choices=device_choices(self._cuda, self._mps), value="auto")
        self.scope_box = ComboBox(label="Scope", choices=SCOPES, value="volume")
        self.slab_spin = SpinBox(label="Slab ± slices", value=5, min=1, max=200)
        self.compile_box = CheckBox(
            label="Compile", value=False,
            tooltip="torch.compile the network: the first run of a model takes seconds longer, "
                    "later runs in this session are faster (same results)")
        self.hint = Label(value="")
        self.run_button = PushButton(text="Run")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(value=0, min=0, max=1, label="Progress")
        self.status = Label(value="")
        self.extend([
            Container(widgets=[self.layer_box, self.dose_box, self.model_box, self.device_box,
                               self.scope_box, self.slab_spin, self.compile_box], labels=True),
            self.hint,
            Container(widgets=[self.run_button, self.cancel_button], layout="horizontal", labels=False),
            self.progress,
            self.status,
        ])
        for w in (self.layer_box, self.dose_box, self.model_box, self.device_box, self.scope_box):
            w.changed.connect(self._refresh)
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        self._watch_layers()

    # state ------------------------------------------------------------------------------------
    def _layer_choices(self, _widget=None):
        return layer_choices(self._viewer, kinds=("image", "labels", "points", "shapes", "surface"))

    def problem(self) -> str:
        """Why Run is disabled ("" when it is enabled)."""
        layer = self.layer_box.value
        issue = ct_layer_problem(layer, need_volume=self.scope_box.value != "slice")
        if issue:
            return issue
        device = self.device_box.value
        if device == "cuda" and not self._cuda:
            return "CUDA is not available on this machine: choose auto or cpu."
        if device == "mps" and not self._mps:
            return "Apple MPS is not available on this machine: choose auto or cpu."
        return ""

    def _refresh(self, *_):
        card = self._cards.get(self.model_box.value)
        self.hint.value = model_hint(card) if card else ""
        self.slab_spin.visible = self.scope_box.value == "slab"
        busy = self._worker is not None
        issue = self.problem()
        self.run_button.enabled = not busy and not issue
        self.run_button.tooltip = issue or "Denoise the chosen slices"
        if not busy:  # keep a result or error message until there is something new to say
            if issue:
                self._say(issue)
            elif self._showing_issue or not self.status.value:
                self._say("Ready.")
        self._showing_issue = bool(issue)

    # actions ----------------------------------------------------------------------------------
    def _slices(self, layer) -> tuple[int, int]:
        if layer.ndim == 2:
            return 0, 1
        n = layer.data.shape[0]
        scope = self.scope_box.value
        if scope == "volume":
            return 0, n
        k = current_slice(self._viewer, layer)
        half = 0 if scope == "slice" else int(self.slab_spin.value)
        return max(0, k - half), min(n, k + half + 1)

    def run(self, *_):
        """Start denoising; returns the worker (None when refused, with the reason in the status)."""
        from napari.qt.threading import create_worker

        layer = self._ready_layer(displayed_slice=self.scope_box.value != "volume")
        if layer is None:
            return None
        try:
            volume = layer_volume(layer)
        except Exception as exc:  # noqa: BLE001 - any unreadable layer is reported, not raised
            self._say(f"Cannot use '{layer.name}': {exc}")
            return None
        k0, k1 = self._slices(layer)
        hu = volume.hu[k0:k1] if layer.ndim == 3 else volume.hu[0]
        dose = self.dose_box.value
        note = " (dose estimated from the noise)" if dose == "estimate" else f" at {dose * 100:g} %"
        model, device = self.model_box.value, self.device_box.value
        total = hu.shape[0] if hu.ndim == 3 else 1
        self.progress.max, self.progress.value = total, 0
        self._say(f"Denoising {total} slice(s) of '{layer.name}' with {model}{note} ...")
        compile = bool(self.compile_box.value) and self._cards[model]["kind"] == "learned"
        info = {"model": model, "input": layer.name, "first_slice": k0, "slices": total,
                "compiled": compile, "started": time.perf_counter()}
        hu_warning = hu_note(hu)
        worker = create_worker(
            _denoise_job, hu, model, dose, device, compile, _start_thread=False,
            _connect={"yielded": self._on_progress,
                      "returned": lambda result: self._on_result(layer, result, info, hu_warning),
                      "errored": lambda exc: self._failed("Denoising", exc),
                      "finished": self._on_finished},
        )
        return self._start(worker)

    def _on_progress(self, p) -> None:
        self.progress.max = p.total
        self.progress.value = p.done
        text = f"{p.done}/{p.total} slices on {p.device}"
        if p.message:
            from napari.utils.notifications import show_warning

            show_warning(p.message)
            text += f" ({p.message})"
        self._say(text)

    def _on_result(self, layer, result, info, hu_warning: str = "") -> None:
        if self._cancelled or self._removed(layer):
            return
        hu, device, cond, runtime = result
        # compiled: what ran, not what was asked for (a failed compile runs the plain network)
        info.update(dose=cond.dose, estimated=cond.estimated, conditioning=cond.describe(),
                    compiled=runtime == "torch.compile", runtime=runtime)
        if cond.noise_sd is not None:
            info.update(noise_sd_hu=round(cond.noise_sd, 2), removed_hu=round(cond.level_hu, 2))
        seconds = time.perf_counter() - info.pop("started")
        info.update(device=device, seconds=round(seconds, 3))
        name = f"{info['input']} · {info['model']} {cond.label()}"
        kwargs = result_layer_kwargs(layer, name=name, first_slice=info["first_slice"],
                                     metadata={"denoise": info})
        if layer.ndim == 3 and hu.ndim == 2:
            hu = hu[None]
        try:
            widen_contrast_range(self._viewer.add_image(hu, **kwargs))
        except Exception as exc:  # noqa: BLE001 - reported; the viewer stays usable
            self._failed("Denoising", exc)
            return
        self._say(f"Added '{name}': {info['slices']} slice(s) in {seconds:.1f} s on {device} "
                  f"({info['conditioning']})." + hu_warning)

    def _on_finished(self) -> None:
        self._run_finished()
        self._refresh()


def _denoise_job(hu, model: str, dose, device: str, compile: bool = False):
    """Generator run in the worker thread: yields Progress per batch.

    Returns ``(HU, device used, Conditioning, runtime)``; ``dose="estimate"`` measures the noise
    first (here, off the main thread); ``runtime`` is what ran the network: "onnxruntime",
    "torch.compile", "torch" or "classical" (a compile that failed reports the plain network).
    """
    from ..inference import iter_denoise

    gen = iter_denoise(hu, model=model, dose=dose, device=device, compile=compile)
    last, runtime, cond = "cpu", "", None
    try:
        while True:
            p = next(gen)
            last, runtime, cond = p.device, p.runtime, p.conditioning
            yield p
    except StopIteration as stop:
        return stop.value, last, cond, runtime
    finally:
        gen.close()
