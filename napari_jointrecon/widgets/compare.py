"""Compare before/after dock widget: side by side, blend, swipe and difference, window kept in sync.

* **side by side**: napari's grid (one camera and one slice position for both, so they stay linked),
  framed on the body of the displayed slice (not the whole field of view, mostly air); on a canvas
  taller than wide the two lie one above the other when the body shows larger so;
* **blend**: the "after" layer on top with an opacity slider (0 = before, 1 = after) and a toggle;
* **swipe**: a curtain across the displayed slice. Left of it: "after"; right: "before". Only the
  displayed slice is touched: a one-slice layer holds the left part of the after slice and is
  re-cut when the curtain or the slice moves (never a copy of the volume);
* **difference**: a layer after - before in a diverging colormap (blue: darker after, red: brighter).

The window/level of before, after and the swipe layer are linked (napari's ``link_layers``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import ComboBox, Container, FloatSlider, Label, PushButton

from ._common import (body_box, connect_layer_events, ct_layer_problem, current_slice, frame_camera, layer_choices,
                      off_slice_problem, plugin_dock, slice_offset)

if TYPE_CHECKING:
    import napari

__all__ = ["CompareWidget", "MODES", "side_by_side_shape"]

MODES = [("side by side", "side"), ("blend", "blend"), ("swipe", "swipe"), ("difference", "difference")]
SWIPE_NAME = "swipe (after | before)"
#: The status of the modes that show 'after' over 'before' on the displayed slice.
MODE_TEXT = {"blend": "Blend: slide from before (0) to after (1), or toggle.",
             "swipe": "Swipe: after on the left of the curtain, before on the right."}


def _grid(viewer):
    """The grid settings (``viewer.canvas.grid`` from napari 0.9, ``viewer.grid`` before)."""
    canvas = getattr(viewer, "canvas", None)
    return getattr(canvas, "grid", None) or viewer.grid


def _canvas_size(viewer) -> np.ndarray:
    """The canvas in pixels, (height, width)."""
    canvas = getattr(viewer, "canvas", None)
    size = getattr(canvas, "size", None) if canvas is not None else None
    return np.asarray(size if size is not None else viewer._canvas_size, dtype=float)


def side_by_side_shape(canvas_hw, box_hw) -> tuple[int, int]:
    """The grid of two cells that shows a box of ``box_hw`` (height, width, mm) the larger on a
    canvas of ``canvas_hw`` pixels: ``(1, -1)`` side by side, ``(-1, 1)`` one above the other (only
    when that is clearly larger: side by side is what is asked for)."""
    h, w = (float(v) for v in canvas_hw)
    bh, bw = (max(float(v), 1e-6) for v in box_hw)
    side = min(h / bh, w / 2 / bw)
    stacked = min(h / 2 / bh, w / bw)
    return (-1, 1) if stacked > 1.25 * side else (1, -1)


class CompareWidget(Container):
    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__(labels=False)
        self._viewer = napari_viewer
        self._linked: tuple = ()
        self._swipe_layer = None
        self._diff_layer = None
        self._diff_source = None  # (before, after, first slice of 'before' under 'after')
        self._grid_hidden: list = []  # non-image layers hidden while side by side (each would get a cell)
        self.swipe_times: list[float] = []
        self.before_box = ComboBox(label="Before", choices=self._choices, nullable=True)
        self.after_box = ComboBox(label="After", choices=self._choices, nullable=True)
        self.mode_box = ComboBox(label="Mode", choices=MODES, value="side")
        self.slider = FloatSlider(label="Blend / curtain", value=0.5, min=0.0, max=1.0, step=0.01)
        self.toggle_button = PushButton(text="Toggle before / after")
        self.apply_button = PushButton(text="Compare")
        self.status = Label(value="")
        self.extend([
            Container(widgets=[self.before_box, self.after_box, self.mode_box, self.slider], labels=True),
            Container(widgets=[self.apply_button, self.toggle_button], layout="horizontal", labels=False),
            self.status,
        ])
        self.apply_button.changed.connect(self.apply)
        self.mode_box.changed.connect(self.apply)
        self.slider.changed.connect(self._slider_moved)
        self.toggle_button.changed.connect(self.toggle)
        napari_viewer.dims.events.current_step.connect(self._slice_moved)
        connect_layer_events(napari_viewer, self.reset_choices)
        self.reset_choices()
        plugin_dock(self)

    def _choices(self, _widget=None):
        return [(n, layer) for n, layer in layer_choices(self._viewer)
                if not ct_layer_problem(layer) and layer is not self._swipe_layer
                and layer is not self._diff_layer]

    def reset_choices(self, *_):
        gone = [layer.name for layer in (self.before_box.value, self.after_box.value)
                if layer is not None and layer not in self._viewer.layers]
        super().reset_choices()
        if gone:  # the curtain and the difference showed a layer that is no longer there
            self._remove_swipe()
            self._diff_source = None
            self._remove_difference()
            self._say(f"'{gone[0]}' was removed: choose the layers to compare again.")
            return
        images = [layer for _, layer in self._choices()]
        if self.after_box.value is None and images:
            denoised = [layer for layer in images if "denoise" in layer.metadata]
            self.after_box.value = denoised[0] if denoised else images[0]
        if self.before_box.value is None and len(images) > 1:
            after = self.after_box.value
            source = after.metadata.get("denoise", {}).get("input") if after is not None else None
            match = [layer for layer in images if layer.name == source]
            self.before_box.value = match[0] if match else next(l for l in images if l is not after)

    def _say(self, text: str) -> None:
        self.status.value = text

    def _pair(self):
        before, after = self.before_box.value, self.after_box.value
        if before is None or after is None:
            self._say("Choose a 'before' and an 'after' layer.")
            return None
        if before is after:
            self._say("'Before' and 'after' are the same layer.")
            return None
        if before.ndim != after.ndim:
            self._say(f"'{before.name}' is {before.ndim}D and '{after.name}' is {after.ndim}D.")
            return None
        return before, after

    # modes ------------------------------------------------------------------------------------
    def apply(self, *_) -> str | None:
        """Show the chosen mode; returns it (None when the layers cannot be compared)."""
        pair = self._pair()
        if pair is None:
            return None
        before, after = pair
        self._link(before, after)
        self._remove_swipe()
        mode = self.mode_box.value
        viewer = self._viewer
        to_2d = mode in MODE_TEXT or mode == "difference"
        switched = to_2d and viewer.dims.ndisplay == 3
        if switched:  # blend, swipe and difference are slice tools: in 3D they would show MIPs
            viewer.dims.ndisplay = 2
        _grid(viewer).enabled = mode == "side"
        for layer in viewer.layers:
            if layer._type_string == "image" and layer not in (before, after, self._diff_layer):
                layer.visible = False
        if mode == "side":
            # napari's grid gives every layer a cell of its own: points or ROIs would get theirs
            for layer in viewer.layers:
                if layer._type_string != "image" and layer.visible:
                    layer.visible = False
                    self._grid_hidden.append(layer)
        else:
            for layer in self._grid_hidden:
                if layer in viewer.layers:
                    layer.visible = True
            self._grid_hidden = []
        before.visible, after.visible = True, True
        after.opacity = 1.0
        if self._diff_layer is not None and self._diff_layer in viewer.layers:
            self._diff_layer.visible = mode == "difference"
        if mode == "side":
            stacked = self._frame_side_by_side(before)
            how = "one above the other" if stacked else "side by side"
            self._say(f"{how[0].upper()}{how[1:]}: '{before.name}' | '{after.name}' (one camera, slices linked; "
                      "framed on the body).")
        elif mode == "blend":
            self._order(before, after)
            after.opacity = float(self.slider.value)
            self._say(self._off_after(before, after) or MODE_TEXT[mode])
        elif mode == "swipe":
            self._order(before, after)
            after.visible = False
            self._update_swipe()
            self._say(self._off_after(before, after) or MODE_TEXT[mode])
        elif mode == "difference":
            self._show_difference(before, after)
        if switched:
            self._say(self.status.value + " (Switched to the 2D view: this mode compares slices.)")
        return mode

    def _frame_side_by_side(self, before) -> bool:
        """Lay out the grid and frame the camera on the body of the displayed slice of ``before``
        (the whole slices when no body shows); True when the cells are one above the other."""
        viewer = self._viewer
        k = current_slice(viewer, before) if before.ndim == 3 else 0
        box = body_box(before, k)
        grid = _grid(viewer)
        if box is None:
            grid.shape = (1, -1)
            viewer.reset_view()
            return False
        size = (box[1] - box[0])[-2:]
        grid.shape = side_by_side_shape(_canvas_size(viewer), size)
        if not frame_camera(viewer, *box, margin=0.04):
            viewer.reset_view()
        return tuple(grid.shape) == (-1, 1)

    def _order(self, before, after) -> None:
        layers = self._viewer.layers
        if layers.index(after) < layers.index(before):
            layers.move(layers.index(after), layers.index(before) + 1)

    def _link(self, before, after) -> None:
        from napari.experimental import link_layers, unlink_layers

        pair = (before, after)
        if self._linked == pair:
            return
        if self._linked:
            try:
                unlink_layers(list(self._linked), ("contrast_limits",))
            except Exception:  # noqa: BLE001 - a removed layer was already unlinked
                pass
        after.contrast_limits = before.contrast_limits
        link_layers([before, after], ("contrast_limits",))
        self._linked = pair

    def toggle(self, *_) -> None:
        if self._pair() is None:
            return
        if self.mode_box.value != "blend":
            self.mode_box.value = "blend"
        self.slider.value = 0.0 if self.slider.value >= 0.5 else 1.0

    def _slider_moved(self, value: float) -> None:
        mode = self.mode_box.value
        pair = self._pair()
        if pair is None:
            return
        if mode == "blend":
            pair[1].opacity = float(value)
        elif mode == "swipe":
            self._update_swipe()

    def _off_after(self, before, after) -> str:
        """A note when 'after' (a slab result) has no slice where the viewer is ('' otherwise)."""
        first = slice_offset(before, after) if after.ndim == 3 else 0
        off = off_slice_problem(self._viewer, after, first=first)
        return off.replace("move the slider onto it", "only 'before' is shown here") if off else ""

    def _slice_moved(self, *_) -> None:
        mode = self.mode_box.value
        if mode == "swipe" and self._swipe_layer is not None:
            self._update_swipe()
        if mode == "difference" and self._diff_layer is not None:
            self._update_difference()
        pair = self._pair() if mode in MODE_TEXT else None
        if pair is not None:
            self._say(self._off_after(*pair) or MODE_TEXT[mode])

    # swipe ------------------------------------------------------------------------------------
    def _remove_swipe(self) -> None:
        layer, self._swipe_layer = self._swipe_layer, None
        if layer is not None and layer in self._viewer.layers:
            self._viewer.layers.remove(layer)

    def _update_swipe(self) -> None:
        """Re-cut the curtain layer from the displayed slice of 'after' (cost: one slice)."""
        t0 = time.perf_counter()
        pair = self._pair()
        if pair is None:
            return
        before, after = pair
        k = current_slice(self._viewer, after) if after.ndim == 3 else 0
        shown = not off_slice_problem(self._viewer, after)
        plane = np.asarray(after.data[k]) if after.ndim == 3 else np.asarray(after.data)
        cut = max(1, int(round(float(self.slider.value) * plane.shape[-1])))
        part = plane[None, :, :cut] if after.ndim == 3 else plane[:, :cut]
        translate = np.array(after.translate, dtype=float)
        if after.ndim == 3:
            translate[0] += k * float(after.scale[0])
        layer = self._swipe_layer
        if layer is None or layer not in self._viewer.layers:
            layer = self._viewer.add_image(
                part, name=SWIPE_NAME, scale=tuple(after.scale), translate=tuple(translate),
                affine=np.asarray(after.affine.affine_matrix), colormap=after.colormap.name,
                contrast_limits=tuple(before.contrast_limits), metadata={"swipe_of": after.name})
            self._swipe_layer = layer
            before.events.contrast_limits.connect(self._swipe_window)
        else:
            layer.translate = tuple(translate)
            layer.data = part
            layer.contrast_limits = tuple(before.contrast_limits)
        layer.visible = shown  # off a slab result's slices there is nothing to cut
        self.swipe_times.append(time.perf_counter() - t0)

    def _swipe_window(self, *_) -> None:
        pair = self._pair()
        if self._swipe_layer is not None and pair is not None:
            self._swipe_layer.contrast_limits = tuple(pair[0].contrast_limits)

    # difference -------------------------------------------------------------------------------
    def _show_difference(self, before, after) -> None:
        """After minus before on the displayed slice (cut again when the slice moves, like the
        curtain: one slice of work, no second volume in memory)."""
        first = slice_offset(before, after) if after.ndim == 3 else 0
        n = after.data.shape[0] if after.ndim == 3 else 1
        if not (after.ndim == 3 and before.data.shape[1:] == after.data.shape[1:] and 0 <= first
                and first + n <= before.data.shape[0]):
            if before.data.shape != after.data.shape:
                self._say(f"Shapes differ ({before.data.shape} vs {after.data.shape}) and 'after' is not a "
                          "slab of 'before': no difference layer.")
                return
            first = 0
        # one colour scale for every slice: the 99.5th percentile of |after - before| on ~2 M samples
        step = max(1, int(round((after.data.size / 2e6) ** (1 / after.ndim))))
        sub = (slice(None, None, step),) * after.ndim
        base = before.data[first:first + n] if after.ndim == 3 else before.data
        sample = np.asarray(after.data[sub], dtype=np.float32) - np.asarray(base[sub], dtype=np.float32)
        spread = float(np.percentile(np.abs(sample), 99.5)) or 1.0
        self._diff_source = (before, after, first)
        self._remove_difference()
        self._update_difference(spread)
        before.visible = after.visible = False
        self._say(f"Difference after − before: ±{spread:.0f} HU (99.5th percentile); blue = darker after.")

    def _remove_difference(self) -> None:
        layer, self._diff_layer = self._diff_layer, None
        if layer is not None and layer in self._viewer.layers:
            self._viewer.layers.remove(layer)

    def _update_difference(self, spread: float | None = None) -> None:
        """Cut the difference layer from the displayed slice (cost: one slice)."""
        if self._diff_source is None:
            return
        before, after, first = self._diff_source
        if before not in self._viewer.layers or after not in self._viewer.layers:
            return
        k = current_slice(self._viewer, after) if after.ndim == 3 else 0
        if after.ndim == 3:
            plane = np.asarray(after.data[k], dtype=np.float32) - np.asarray(before.data[first + k], dtype=np.float32)
            data = plane[None]
            translate = np.array(after.translate, dtype=float)
            translate[0] += k * float(after.scale[0])
        else:
            data = np.asarray(after.data, dtype=np.float32) - np.asarray(before.data, dtype=np.float32)
            translate = np.array(after.translate, dtype=float)
        layer = self._diff_layer
        if layer is None or layer not in self._viewer.layers:
            layer = self._viewer.add_image(
                data, name=f"{after.name} − {before.name}", scale=tuple(after.scale),
                translate=tuple(translate), affine=np.asarray(after.affine.affine_matrix), colormap="bwr",
                contrast_limits=(-spread, spread) if spread else (-100.0, 100.0),
                metadata={"difference_of": (after.name, before.name), "slice": k})
            self._diff_layer = layer
        else:
            layer.translate = tuple(translate)
            layer.data = data
            layer.metadata["slice"] = k
        layer.visible = self.mode_box.value == "difference" and not off_slice_problem(self._viewer, after)
