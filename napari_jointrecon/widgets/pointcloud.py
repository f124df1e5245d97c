"""3D point cloud dock widget: run the joint model on the current slice and show the cloud in 3D.

The prediction (:func:`napari_jointrecon.predict_point_cloud`) is in world millimetres, the frame
napari draws the CT layer in (scale/translate/affine). The Points layers get the CT layer's scale
(and their data divided by it), so that napari's z slider keeps the CT's slice spacing as its step
(a layer with scale 1 would make it 1 mm, and slider positions would no longer be slices); use
:func:`._common.layer_points_world` to read them back in millimetres. Optionally the reference cloud (the -500 HU surface of the volume around the slice) is
added too, and the prediction is coloured by each point's distance to it.

The 3D view is framed on the cloud (the body's surface around the slice). The slice is drawn as a
layer one slice thick, and every volume (the CT, and any other, such as its denoised volume) hides
until the view is 2D again: napari would otherwise send each visible volume to the graphics card, a
second or more with the viewer frozen. "A rendering (MIP)" shows the whole volume, at that price.
Torch and the point models load in the background when the dock opens.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, Label, PushButton

from ..dose_levels import DOSE_LEVELS
from ..pointcloud import INPUT_SIZE
from ._common import (ThreadedWidget, ct_layer_problem, current_slice, frame_camera, layer_source, plugin_dock,
                      result_layer_kwargs)

if TYPE_CHECKING:
    import napari

__all__ = ["PointCloudWidget"]


class PointCloudWidget(ThreadedWidget):
    busy_text = "A prediction is already running."
    slice_in_3d = True
    needs_volume = True
    # pandas: napari imports it for the first Points layer with features (0.3 s on the main thread)
    preload = ("napari_jointrecon.joint", "napari_jointrecon.models.joint",
               "napari_jointrecon.models.contour", "napari_jointrecon.inference",
               "scipy.ndimage", "skimage.measure", "pandas")
    preload_torch = True
    loading_text = "Loading the point models in the background ... the form can be set meanwhile."

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        from ..joint import DEFAULT_POINT_MODEL, POINT_MODELS

        super().__init__(napari_viewer)
        self._hidden: list = []  # volumes hidden while a slice shows as a plane in 3D
        self._watching_view = False
        self.layer_box = ComboBox(label="CT", choices=self._choices, nullable=True)
        self.dose_box = ComboBox(label="Dose", choices=[(f"{d * 100:g} %", d) for d in DOSE_LEVELS] + [("100 %", 1.0)],
                                 value=0.25)
        # preselected: the most accurate point model on held-out patients (docs/RESULTS.md), as in the API
        self.model_box = ComboBox(label="Model", choices=list(POINT_MODELS), value=DEFAULT_POINT_MODEL)
        self.view_box = ComboBox(label="Volume as", value="plane",
                                 choices=[("the slice as a plane", "plane"), ("a rendering (MIP)", "mip")])
        self.reference_check = CheckBox(text="Reference cloud (-500 HU surface)", value=True)
        self.distance_check = CheckBox(text="Colour by distance to it", value=True)
        self.run_button = PushButton(text="Predict point cloud")
        self.status = Label(value="")
        self.extend([
            Container(widgets=[self.layer_box, self.dose_box, self.model_box, self.view_box], labels=True),
            self.reference_check, self.distance_check, self.run_button, self.status,
        ])
        self.run_button.changed.connect(self.run)
        self.layer_box.changed.connect(self._refresh)
        self._watch_layers()
        plugin_dock(self)
        self._load_models()

    def problem(self) -> str:
        layer = self.layer_box.value
        issue = ct_layer_problem(layer, need_volume=True)
        if not issue and min(layer.data.shape[-2:]) < INPUT_SIZE:
            rows, cols = layer.data.shape[-2:]
            issue = (f"'{layer.name}' has {rows} x {cols} pixel slices; the point models need at least "
                     f"{INPUT_SIZE} x {INPUT_SIZE}.")
        return issue

    def _refresh(self, *_):
        issue = self.problem()
        self.run_button.enabled = not issue and self._worker is None
        self.run_button.tooltip = issue or "Predict the cloud of the displayed slice"
        if self._worker is None:
            self.status.value = issue or self._ready_text("Ready: the displayed slice will be used.")

    def run(self, *_):
        from napari.qt.threading import create_worker

        layer = self._ready_layer(displayed_slice=True)
        if layer is None:
            return None
        k = current_slice(self._viewer, layer)
        model = self.model_box.value
        args = (layer_source(layer), k, float(self.dose_box.value), model, bool(self.reference_check.value))
        self._say(f"Predicting the cloud of slice {k} with {model} ...")
        worker = create_worker(_predict_job, *args, _start_thread=False,
                               _connect={"returned": lambda r: self._show(layer, k, model, r),
                                         "errored": lambda exc: self._failed("Point cloud", exc),
                                         "finished": self._run_finished})
        return self._start(worker)

    def _show(self, layer, k: int, model: str, result) -> None:
        if self._removed(layer):
            return
        try:
            self._show_layers(layer, k, model, result)
        except Exception as exc:  # noqa: BLE001 - reported; the viewer stays usable
            self._failed("Point cloud", exc)

    def _show_layers(self, layer, k: int, model: str, result):
        pred, reference, distances, seconds, device, note = result
        name = f"{layer.name} · {model} cloud, slice {k}"
        scale = np.abs(np.asarray(layer.scale, dtype=float))
        features, colour = None, {"face_color": "#ffb000"}
        meta = {"pointcloud": {"model": model, "slice": k, "source": layer.name,
                               "seconds": seconds, "device": device}}
        if self.view_box.value == "plane":
            self._add_plane(layer, k)  # first: the points are drawn over it
        if reference is not None:
            d_pred, d_ref = distances
            meta["pointcloud"].update(chamfer_mm=float(d_pred.mean() + d_ref.mean()))
            self._viewer.add_points(reference / scale, scale=tuple(scale),
                                    name=f"{layer.name} · reference, slice {k}", size=1.2,
                                    face_color="#3fa9f5", border_width=0, opacity=0.6,
                                    metadata={"pointcloud": {"reference": True, "slice": k, "source": layer.name}})
            if self.distance_check.value:
                features = {"distance_mm": d_pred}
                colour = {"face_color": "distance_mm", "face_colormap": "plasma",
                          "face_contrast_limits": (0.0, max(float(np.percentile(d_pred, 98)), 1.0))}
        # larger than the reference's points and drawn on top (no depth test): an accurate cloud
        # lies on the body surface, where the CT plane and the dense reference would hide it
        points = self._viewer.add_points(pred.points / scale, scale=tuple(scale), name=name, size=4.0, border_width=0,
                                         blending="translucent_no_depth", features=features,
                                         metadata=meta, **colour)
        self._viewer.dims.ndisplay = 3
        if self.view_box.value != "plane":
            layer.depiction = "volume"
            layer.rendering = "mip"
            layer.visible = True
        camera = self._viewer.scene.camera if hasattr(self._viewer, "scene") else self._viewer.camera
        camera.angles = (0.0, 0.0, -30.0)  # the slice upright as in 2D, tilted 30 degrees: the slab shows depth
        # framed on the cloud (the body's surface around the slice), not on the whole padded scan
        cloud = pred.points if reference is None else np.concatenate([pred.points, reference])
        if not frame_camera(self._viewer, cloud.min(axis=0), cloud.max(axis=0), margin=0.08):
            self._viewer.reset_view()
        text = f"{len(pred.points)} points in {seconds * 1000:.0f} ms on {device}"
        if "chamfer_mm" in meta["pointcloud"]:
            text += f"; Chamfer to the reference {meta['pointcloud']['chamfer_mm']:.1f} mm"
        self.status.value = text + (f". {note}" if note else "")
        return points

    def _add_plane(self, layer, k: int) -> None:
        """Show slice ``k`` in 3D as a layer of its own, one slice thick, and hide the volume until
        the view is 2D again: in 3D napari sends the whole visible volume to the graphics card
        (0.15 GB for the 141-slice chest: about a second with the viewer frozen), even to draw
        one plane of it."""
        viewer = self._viewer
        kwargs = result_layer_kwargs(layer, name=f"{layer.name} · slice {k} in 3D", first_slice=k,
                                     metadata={"slice_plane_of": layer.name, "slice": k})
        kwargs["metadata"].pop("ct_volume", None)  # a view of one slice, not a CT to work on
        data = np.asarray(layer.data[k:k + 1])
        plane = next((lyr for lyr in viewer.layers if lyr.metadata.get("slice_plane_of") == layer.name), None)
        if plane is None:
            plane = viewer.add_image(data, **kwargs)
        else:  # the plane of an earlier prediction moves (removing a layer makes napari collect garbage)
            plane.data = data
            plane.translate = kwargs["translate"]
            plane.name = kwargs["name"]
            plane.contrast_limits = kwargs["contrast_limits"]
            plane.metadata.update(kwargs["metadata"])
            plane.visible = True
            viewer.layers.move(viewer.layers.index(plane), len(viewer.layers))
        plane.depiction = "plane"
        plane.plane.position = (0.0, layer.data.shape[1] / 2, layer.data.shape[2] / 2)
        plane.plane.normal = (1.0, 0.0, 0.0)
        # every volume hides, not only this one: napari would send each visible one to the
        # graphics card (the denoised volume of the same scan is as large)
        for other in [lyr for lyr in viewer.layers if _is_volume(lyr) and lyr.visible]:
            other.visible = False
            self._hidden.append(other)
        if not self._watching_view:
            viewer.dims.events.ndisplay.connect(self._view_changed)
            self._watching_view = True

    def _view_changed(self, *_) -> None:
        """Back in 2D: the volumes hidden for the 3D view show again, the one-slice planes hide."""
        if self._viewer.dims.ndisplay != 2:
            return
        for layer in self._hidden:
            if layer in self._viewer.layers:
                layer.visible = True
        self._hidden = []
        for plane in [lyr for lyr in self._viewer.layers if "slice_plane_of" in lyr.metadata]:
            plane.visible = False


def _is_volume(layer) -> bool:
    """An image layer of more than one slice (not one of this widget's one-slice planes)."""
    from napari.layers import Image

    return (isinstance(layer, Image) and layer.ndim == 3 and layer.data.shape[0] > 1
            and "slice_plane_of" not in layer.metadata)


def _predict_job(source: tuple, k: int, dose: float, model: str, with_reference: bool):
    """Run in the worker thread: the prediction, the reference cloud and the distances between them
    (``source``: :func:`layer_source` of the CT layer; the volume is made here)."""
    from .._writer import layer_to_volume
    from ..joint import predict_point_cloud
    from ..pointcloud import _nearest_distances_mm, reference_point_cloud

    volume = layer_to_volume(*source)
    t0 = time.perf_counter()
    pred = predict_point_cloud(volume, slice_index=k, dose=dose, model=model)
    seconds = time.perf_counter() - t0
    reference, distances, note = None, None, ""
    if with_reference:
        try:
            reference = reference_point_cloud(volume, k, 10000)
        except ValueError as exc:  # e.g. a slice too near the end for a full slab
            note = f"No reference cloud, and part of the predicted slab may lie outside the scan: {exc}"
        else:
            distances = _nearest_distances_mm(pred.points, reference)
    return pred, reference, distances, seconds, pred.device, note
