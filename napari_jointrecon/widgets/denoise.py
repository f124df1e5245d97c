"""Denoise dock widget: input layer, dose, model, device, scope; Run / Cancel with progress.

The work runs in a napari thread worker around :func:`napari_jointrecon.inference.iter_denoise`,
which yields after every batch of slices: the progress bar moves, Cancel takes effect at the next
batch, and the viewer keeps responding. The result becomes a new layer at the input's place (scale,
translate, affine), with its window, named after the model and dose; a cancelled run adds nothing.
A diffusion model (:func:`napari_jointrecon.inference.denoise_with_uncertainty`) reports progress per
patch, sample and sampling step, can also run on a 64^3 box around the cursor, states its expected
time before the run, and adds the samples' per-voxel standard deviation as a second layer (inferno).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from magicgui.widgets import CheckBox, ComboBox, Container, Label, ProgressBar, PushButton, SpinBox

from ..dose_levels import DOSE_LEVELS
from ._common import (ThreadedWidget, ct_layer_problem, current_slice, hu_note, layer_choices,
                      plugin_dock, result_layer_kwargs, widen_contrast_range)

if TYPE_CHECKING:
    import napari

__all__ = ["DenoiseWidget", "device_choices", "model_hint", "model_label"]

SCOPES = [("current slice", "slice"), ("slab around the slice", "slab"), ("whole volume", "volume"),
          ("box around the cursor (diffusion)", "box")]
#: Side of the box around the cursor: one patch of the diffusion model (seconds per sample on 2 cores).
BOX = 64


def device_choices(cuda: bool | None, mps: bool | None) -> list[tuple[str, str]]:
    """Device entries, saying which exist here (a pure function: the tests pass the availability;
    None: not known yet, while torch loads in the background)."""
    if cuda is None or mps is None:
        return [("auto", "auto"), ("cuda (checking ...)", "cuda"), ("mps (checking ...)", "mps"), ("cpu", "cpu")]
    auto = "cuda" if cuda else "mps" if mps else "cpu"
    return [(f"auto ({auto})", "auto"),
            ("cuda" + ("" if cuda else " (not available)"), "cuda"),
            ("mps" + ("" if mps else " (not available)"), "mps"),
            ("cpu", "cpu")]


def model_label(card: dict) -> str:
    """The model list's entry: name, default, and its role (zoo, classical or design baseline)."""
    role = card.get("role", card.get("kind", ""))
    return f"{card['name']}{' (default)' if card.get('default') else ''} · {role}"


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
    crops = (card.get("results") or {}).get("heldout_crops", {})  # diffusion models (training/diffusion_eval.py)
    crop_gains = [r[card["name"]]["25%"]["psnr"][0] - r["input"]["25%"]["psnr"][0]
                  for r in crops.values() if card["name"] in r and "input" in r]
    if crop_gains:
        parts.append(f"held-out crops: {sum(crop_gains) / len(crop_gains):+.1f} dB over the input at 25 %")
    speed = (card.get("speed") or {}).get("slices_per_s_512_2threads")
    if speed:
        parts.append(f"{speed:.1f} slices/s (512², 2 CPU threads)")
    per_patch = (card.get("speed") or {}).get("s_per_64cube_patch_2threads")
    if per_patch:
        parts.append(f"{per_patch:.1f} s per 64³ patch and sample (2 CPU threads)")
    if card.get("kind") == "classical":
        parts.append("classical, CPU")
    if card.get("role") == "design baseline":
        fair = (card.get("training") or {}).get("split") == "patient"
        measured = (card.get("heldout_verdict") or {}).get("doses", 0) > 0
        parts.append("design baseline" + ("" if fair else " (chest recipe)") + ", not for reading: "
                     + ("it does not beat the classical filters on the held-out patients" if measured
                        else "not yet measured on the held-out patients"))
    return "; ".join(parts)


class DenoiseWidget(ThreadedWidget):
    """Run a registered denoiser on a CT layer without blocking the viewer.

    The model list comes from the cards (JSON); torch, the inference engine and the check for
    CUDA and MPS load in the background (:meth:`ThreadedWidget._load_models`) while the dock opens.
    """

    busy_text = "A denoising run is already going: wait for it or press Cancel."

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        from ..models.registry import list_models

        super().__init__(napari_viewer)
        self._showing_issue = False
        self._cards = {c["name"]: c for c in list_models()}
        self._cuda: bool | None = None  # None until torch has loaded and said
        self._mps: bool | None = None
        default = next(name for name, c in self._cards.items() if c["default"])
        self.layer_box = ComboBox(label="Input", choices=self._layer_choices, nullable=True)
        self.dose_box = ComboBox(label="Dose", value="estimate", choices=[("estimate from the image", "estimate")]
                                 + [(f"{d * 100:g} %", d) for d in DOSE_LEVELS])
        self.model_box = ComboBox(label="Model", value=default, choices=[
            (model_label(c), name) for name, c in self._cards.items()])
        # a callable: napari resets every dock's choices when layers change
        self.device_box = ComboBox(label="Device", choices=lambda _w: device_choices(self._cuda, self._mps),
                                   value="auto")
        self.scope_box = ComboBox(label="Scope", choices=SCOPES, value="volume")
        self.slab_spin = SpinBox(label="Slab ± slices", value=5, min=1, max=200)
        self.compile_box = CheckBox(
            label="Compile", value=False,
            tooltip="torch.compile the network: the first run of a model takes seconds longer, "
                    "later runs in this session are faster (same results)")
        self.samples_spin = SpinBox(
            label="Uncertainty (samples)", value=8, min=1, max=64,
            tooltip="Posterior samples of the diffusion model: the result is their mean; 2 or more add "
                    "their per-voxel standard deviation (HU) as a second layer")
        self.hint = Label(value="")
        self.expected = Label(value="")
        self.run_button = PushButton(text="Run")
        self.cancel_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(value=0, min=0, max=1, label="Progress")
        self.status = Label(value="")
        self.extend([
            Container(widgets=[self.layer_box, self.dose_box, self.model_box, self.device_box,
                               self.scope_box, self.slab_spin, self.compile_box, self.samples_spin], labels=True),
            self.hint,
            self.expected,
            Container(widgets=[self.run_button, self.cancel_button], layout="horizontal", labels=False),
            self.progress,
            self.status,
        ])
        for w in (self.layer_box, self.dose_box, self.model_box, self.device_box, self.scope_box,
                  self.slab_spin, self.samples_spin):
            w.changed.connect(self._refresh)
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        self._watch_layers()
        plugin_dock(self)
        self._load_models(_devices)

    def _loaded(self, devices) -> None:
        self._cuda, self._mps = devices
        chosen = self.device_box.value
        with self.device_box.changed.blocked():
            self.device_box.native.clear()  # new labels, in their order (magicgui keeps unchanged ones first)
            self.device_box.reset_choices()
            self.device_box.value = chosen

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
        if device in ("cuda", "mps") and self._cuda is None:
            return f"Checking whether {device.upper()} is available here (torch is loading) ..."
        if device == "cuda" and not self._cuda:
            return "CUDA is not available on this machine: choose auto or cpu."
        if device == "mps" and not self._mps:
            return "Apple MPS is not available on this machine: choose auto or cpu."
        if self.scope_box.value == "box" and not self._is_diffusion():
            return "The box around the cursor is for the diffusion model: choose a slab or the whole volume."
        return ""

    def _is_diffusion(self) -> bool:
        from ..models.registry import get_spec

        name = self.model_box.value
        return name is not None and get_spec(name).recipe == "diffusion"

    def _expected_text(self) -> str:
        """The diffusion run's expected time for the chosen scope and samples (before it starts)."""
        from ..models.diffusion_plan import expected_seconds

        layer = self.layer_box.value
        if layer is None or ct_layer_problem(layer, need_volume=self.scope_box.value != "slice"):
            return ""
        if self.scope_box.value == "box":
            z0, z1, y0, y1, x0, x1 = self._box(layer)
            shape = (z1 - z0, y1 - y0, x1 - x0)
        else:
            k0, k1 = self._slices(layer)
            shape = (k1 - k0, *layer.data.shape[-2:])
        device = self.device_box.value
        if device == "auto":
            device = "cuda" if self._cuda else "mps" if self._mps else "cpu"
        samples = int(self.samples_spin.value)
        seconds = expected_seconds(shape, self._cards[self.model_box.value], samples=samples, device=device)
        when = f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min" if seconds < 7200 \
            else f"{seconds / 3600:.1f} h"
        guess = " (a rough guess for a GPU)" if device != "cpu" else " on 2 CPU cores"
        return (f"Expected: about {when}{guess} for {shape[0]} x {shape[1]} x {shape[2]} voxels, "
                f"{samples} sample(s)" + ("; 2 or more give the SD layer" if samples == 1 else ""))

    def _refresh(self, *_):
        card = self._cards.get(self.model_box.value)
        self.hint.value = model_hint(card) if card else ""
        self.slab_spin.visible = self.scope_box.value == "slab"
        diffusion = self._is_diffusion()
        self.samples_spin.visible = self.expected.visible = diffusion
        self.expected.value = self._expected_text() if diffusion else ""
        busy = self._worker is not None
        issue = self.problem()
        self.run_button.enabled = not busy and not issue
        self.run_button.tooltip = issue or "Denoise the chosen slices"
        if not busy:  # keep a result or error message until there is something new to say
            if issue:
                self._say(issue)
            elif self._showing_issue or self.status.value in ("", "Ready.", self.loading_text):
                self._say(self._ready_text("Ready."))
        self._showing_issue = bool(issue)

    # actions ----------------------------------------------------------------------------------
    def _slices(self, layer) -> tuple[int, int]:
        if layer.ndim == 2:
            return 0, 1
        n = layer.data.shape[0]
        scope = self.scope_box.value
        if scope == "volume":
            return 0, n
        if scope == "box":
            return self._box(layer)[:2]
        k = current_slice(self._viewer, layer)
        half = 0 if scope == "slice" else int(self.slab_spin.value)
        return max(0, k - half), min(n, k + half + 1)

    def _box(self, layer) -> tuple[int, int, int, int, int, int]:
        """``(z0, z1, y0, y1, x0, x1)``: a :data:`BOX`-voxel cube (clipped to the volume) centred on the
        displayed slice and the cursor's position in it (the slice's centre when the cursor is off the
        image)."""
        import numpy as np

        n, h, w = layer.data.shape[-3:]
        z = current_slice(self._viewer, layer)
        pos = np.asarray(layer.world_to_data(self._viewer.cursor.position), dtype=float)[-2:]
        y, x = ((int(pos[0]), int(pos[1])) if np.all(np.isfinite(pos)) and 0 <= pos[0] < h and 0 <= pos[1] < w
                else (h // 2, w // 2))

        def span(c, size):
            side = min(BOX, size)
            start = int(np.clip(c - side // 2, 0, size - side))
            return start, start + side

        return (*span(z, n), *span(y, h), *span(x, w))

    def run(self, *_):
        """Start denoising; returns the worker (None when refused, with the reason in the status)."""
        from napari.qt.threading import create_worker

        layer = self._ready_layer(displayed_slice=self.scope_box.value != "volume")
        if layer is None:
            return None
        k0, k1 = self._slices(layer)
        data = layer.data[k0:k1] if layer.ndim == 3 else layer.data  # a view: the worker converts it
        corner, reference = (0, 0), None
        if self.scope_box.value == "box":  # the noise is measured on the box's whole slices
            _, _, y0, y1, x0, x1 = self._box(layer)
            data, corner, reference = layer.data[k0:k1, y0:y1, x0:x1], (y0, x0), layer.data[k0:k1]
        dose = self.dose_box.value
        note = " (dose estimated from the noise)" if dose == "estimate" else f" at {dose * 100:g} %"
        model, device = self.model_box.value, self.device_box.value
        total = k1 - k0
        self.progress.max, self.progress.value = total, 0
        self._say(f"Denoising {total} slice(s) of '{layer.name}' with {model}{note} ...")
        compile = bool(self.compile_box.value) and self._cards[model]["kind"] == "learned"
        info = {"model": model, "input": layer.name, "first_slice": k0, "slices": total,
                "compiled": compile, "started": time.perf_counter()}
        job, args = _denoise_job, (data, model, dose, device, compile)
        if self._is_diffusion():
            samples = int(self.samples_spin.value)
            info.update(samples=samples, seed=0, compiled=False, corner=corner)
            job, args = _uncertainty_job, (data, model, dose, device, samples, reference)
            self._say(f"Denoising {tuple(data.shape)} voxels of '{layer.name}' with {model}{note}, {samples} "
                      f"sample(s) ... {self.expected.value}")
        worker = create_worker(
            job, *args, _start_thread=False,
            _connect={"yielded": self._on_progress,
                      "returned": lambda result: self._on_result(layer, result, info),
                      "errored": lambda exc: self._failed("Denoising", exc),
                      "finished": self._on_finished},
        )
        return self._start(worker)

    def _on_progress(self, p) -> None:
        self.progress.max = p.total
        self.progress.value = p.done
        text = f"{p.done}/{p.total} {getattr(p, 'unit', 'slices')} on {p.device}" + (
            f" ({p.detail})" if getattr(p, "detail", "") else "")
        if p.message:
            from napari.utils.notifications import show_warning

            show_warning(p.message)
            text += f" ({p.message})"
        self._say(text)

    def _on_result(self, layer, result, info) -> None:
        if self._cancelled or self._removed(layer):
            return
        hu, device, cond, runtime, hu_warning, *extra = result
        sd, top = extra if extra else (None, 1.0)
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
        if info.get("corner", (0, 0)) != (0, 0):  # a box around the cursor: placed in-plane too
            translate = list(kwargs["translate"])
            for axis, start in zip((-2, -1), info["corner"]):
                translate[axis] += start * float(layer.scale[axis])
            kwargs["translate"] = tuple(translate)
        if layer.ndim == 3 and hu.ndim == 2:
            hu, sd = hu[None], None if sd is None else sd[None]
        try:
            widen_contrast_range(self._viewer.add_image(hu, **kwargs))
            if sd is not None and info.get("samples", 1) > 1:
                self._viewer.add_image(sd, **{**kwargs, "name": f"{name} · SD", "colormap": "inferno",
                                              "contrast_limits": (0.0, max(top, 1.0)), "blending": "additive",
                                              "visible": True,
                                              "metadata": {"denoise": {**info, "layer": "per-voxel SD (HU)"}}})
        except Exception as exc:  # noqa: BLE001 - reported; the viewer stays usable
            self._failed("Denoising", exc)
            return
        extra_text = f" and its per-voxel SD over {info['samples']} samples" if sd is not None and \
            info.get("samples", 1) > 1 else ""
        self._say(f"Added '{name}'{extra_text}: {info['slices']} slice(s) in {seconds:.1f} s on {device} "
                  f"({info['conditioning']})." + hu_warning)

    def _on_finished(self) -> None:
        self._run_finished()
        self._refresh()


def _devices() -> tuple[bool, bool]:
    """Whether CUDA and MPS are available (run in the background: it imports torch)."""
    from . import _loading

    _loading.open_torch_libraries()
    from .. import inference

    return inference._cuda_available(), inference._mps_available()


def _uncertainty_job(data, model: str, dose, device: str, samples: int, reference=None):
    """Generator run in the worker thread for a diffusion model: yields Progress per network call
    (patch, sample and step in ``detail``). Returns ``(mean HU, device, Conditioning, runtime, note,
    SD HU, the SD window's top)`` (seed 0: the same run gives the same layers). ``reference``: slices to measure the
    noise in (a box's whole slices)."""
    import numpy as np

    from ..inference import iter_denoise_with_uncertainty

    hu = np.asarray(data, dtype=np.float32)
    note = hu_note(hu)
    gen = iter_denoise_with_uncertainty(hu, model=model, dose=dose, samples=samples, seed=0, device=device,
                                        noise_reference=None if reference is None else np.asarray(reference))
    last, runtime, cond = "cpu", "", None
    try:
        while True:
            p = next(gen)
            last, runtime, cond = p.device, p.runtime, p.conditioning
            yield p
    except StopIteration as stop:
        sd = stop.value.sd  # its display window here, off the main thread (a percentile of the volume)
        top = float(np.percentile(sd, 99.5)) if sd.size else 1.0
        return stop.value.mean, last, cond, runtime, note, sd, top
    finally:
        gen.close()


def _denoise_job(data, model: str, dose, device: str, compile: bool = False):
    """Generator run in the worker thread: yields Progress per batch.

    ``data``: the layer's slices to denoise, as they are (converted to float32 HU here, off the
    main thread, like every other whole-volume pass). Returns ``(HU, device used, Conditioning,
    runtime, note)``; ``dose="estimate"`` measures the noise first; ``runtime`` is what ran the
    network: "onnxruntime", "torch.compile", "torch" or "classical" (a compile that failed reports
    the plain network); ``note``: :func:`hu_note` of the input.
    """
    import numpy as np

    from ..inference import iter_denoise

    hu = np.asarray(data, dtype=np.float32)
    note = hu_note(hu)
    gen = iter_denoise(hu, model=model, dose=dose, device=device, compile=compile)
    last, runtime, cond = "cpu", "", None
    try:
        while True:
            p = next(gen)
            last, runtime, cond = p.device, p.runtime, p.conditioning
            yield p
    except StopIteration as stop:
        return stop.value, last, cond, runtime, note
    finally:
        gen.close()
