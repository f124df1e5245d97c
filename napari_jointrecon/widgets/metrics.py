"""Metrics dock widget: image quality against a reference, noise/CNR in ROIs, point-cloud distances.

* With a reference layer (e.g. the full-dose scan): PSNR, SSIM (both on [-1000, 1000] HU and on the
  abdomen window), RMSE in the body and over the slice, per ``../shared/EVALUATION.md``, for the
  displayed slice or the whole volume (mean ± std over slices, computed in a worker thread), with a
  per-slice PSNR plot. A result covering only some slices (a slab) is matched to the same slices.
* Without one: noise (std) and CNR in regions drawn in a Shapes layer ("Add ROI layer"): the first
  shape is the region of interest, the second the background.
* Point clouds: Chamfer distance (mm) between two Points layers and, when the prediction remembers
  its slice, the normalised Chamfer and F-scores at 1 % / 5 %.
* The denoising run's model, dose, device and time; export of everything shown to CSV or JSON.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, Label, PushButton, Table

from ._common import (axial_view_problem, connect_layer_events, ct_layer_problem, current_slice, grid_problem,
                      layer_choices, layer_points_world, layer_volume, off_slice_problem, plugin_dock, slice_offset)
from ._loading import import_modules, load_in_background

if TYPE_CHECKING:
    import napari

__all__ = ["MetricsWidget", "table_rows", "metric_unit"]

_IMAGE_KEYS = ("psnr", "ssim", "psnr_abdomen", "ssim_abdomen", "rmse_body_hu", "rmse_hu")


class MetricsWidget(Container):
    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__(labels=False)
        self._viewer = napari_viewer
        self._worker = None
        self.results: dict[str, dict] = {}
        self.per_slice: dict[str, list] = {}
        self.image_box = ComboBox(label="Image", choices=self._images, nullable=True)
        self.reference_box = ComboBox(label="Reference", choices=self._images, nullable=True)
        self.roi_box = ComboBox(label="ROIs", choices=self._shapes, nullable=True)
        self.cloud_box = ComboBox(label="Cloud", choices=self._points, nullable=True)
        self.cloud_ref_box = ComboBox(label="Ref. cloud", choices=self._points, nullable=True)
        self.slice_button = PushButton(text="Current slice")
        self.volume_button = PushButton(text="Whole volume")
        self.roi_button = PushButton(text="Add ROI layer")
        self.cloud_button = PushButton(text="Compare clouds")
        self.table = Table(value={"data": [], "index": [], "columns": ["metric", "value"]})
        self.export_edit = FileEdit(label="Export to", mode="w", filter="*.csv *.json", nullable=True)
        self.export_button = PushButton(text="Export")
        self.status = Label(value="")
        self._canvas = None
        self.extend([
            Container(widgets=[self.image_box, self.reference_box, self.roi_box], labels=True),
            Container(widgets=[self.slice_button, self.volume_button], layout="horizontal", labels=False),
            self.roi_button,
            Container(widgets=[self.cloud_box, self.cloud_ref_box], labels=True),
            self.cloud_button,
            self.table,
            Container(widgets=[self.export_edit], labels=True),
            self.export_button,
            self.status,
        ])
        self.slice_button.changed.connect(self.measure_slice)
        self.volume_button.changed.connect(self.measure_volume)
        self.roi_button.changed.connect(self.add_roi_layer)
        self.cloud_button.changed.connect(self.measure_clouds)
        self.export_button.changed.connect(lambda *_: self.export(self.export_edit.value))
        connect_layer_events(napari_viewer, self.reset_choices)
        self.reset_choices()
        plugin_dock(self)
        # the metrics (scipy, scikit-image) and matplotlib load in the background, about a second
        # on the main thread; the plot is added when they are there
        load_in_background(lambda: import_modules(["napari_jointrecon.metrics", "matplotlib.figure",
                                                   "matplotlib.backends.backend_qtagg"]),
                           lambda _result, error: self._add_plot() if error is None else None, self._viewer,
                           self.native)

    # choices ----------------------------------------------------------------------------------
    def _images(self, _w=None):
        return [(n, layer) for n, layer in layer_choices(self._viewer) if not ct_layer_problem(layer)]

    def _shapes(self, _w=None):
        return layer_choices(self._viewer, kinds=("shapes",))

    def _points(self, _w=None):
        return layer_choices(self._viewer, kinds=("points",))

    def reset_choices(self, *_):
        super().reset_choices()
        images = [layer for _, layer in self._images()]
        if self.image_box.value is None and images:
            denoised = [layer for layer in images if "denoise" in layer.metadata]
            self.image_box.value = denoised[0] if denoised else images[0]
        points = [layer for _, layer in self._points()]
        if self.cloud_box.value is None:
            preds = [p for p in points if "model" in p.metadata.get("pointcloud", {})]
            if preds:
                self.cloud_box.value = preds[0]
        if self.cloud_ref_box.value is None:
            refs = [p for p in points if p.metadata.get("pointcloud", {}).get("reference")]
            if refs:
                self.cloud_ref_box.value = refs[0]

    def _add_plot(self) -> None:
        if self._canvas is not None:
            return
        try:
            from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
            from matplotlib.figure import Figure
        except ImportError:  # matplotlib is a dependency; stay usable without the plot all the same
            return
        fig = Figure(figsize=(4, 2.2), tight_layout=True)
        self._axes = fig.add_subplot(111)
        self._canvas = FigureCanvasQTAgg(fig)
        self._canvas.setMinimumHeight(130)
        # shown with the first per-slice curve: an empty plot would only take the table's room
        # (and its first draw would stall the viewer as the dock opens)
        self._canvas.hide()
        self.native.layout().addWidget(self._canvas)

    def _say(self, text: str) -> None:
        self.status.value = text

    def _show(self) -> None:
        rows = table_rows(self.results)
        # the "split" layout (data, index, columns): a dict without "index" reads as columns
        self.table.value = {"data": rows, "index": [str(i) for i in range(len(rows))],
                            "columns": ["metric", "value", "unit"]}
        self._fit_table(rows)

    def _fit_table(self, rows: list[list[str]]) -> None:
        """The whole table without scrolling in a dock about 300 pixels wide: no row numbers,
        group names as bold rows across the table, metric and value columns sharing the width the
        units leave (long texts wrap), and the table as tall as its rows, again whenever its width
        changes."""
        from qtpy.QtCore import Qt
        from qtpy.QtWidgets import QHeaderView

        table = self.table.native
        table.verticalHeader().setVisible(False)
        table.setWordWrap(True)
        table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        table.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        header = table.horizontalHeader()
        for column, mode in enumerate((QHeaderView.ResizeMode.Stretch, QHeaderView.ResizeMode.Stretch,
                                       QHeaderView.ResizeMode.ResizeToContents)):
            header.setSectionResizeMode(column, mode)
        if not getattr(self, "_fitting", False):  # once: the row heights follow the column widths
            header.sectionResized.connect(lambda *_: self._fit_height())
            self._fitting = True
        table.clearSpans()
        for r, row in enumerate(rows):
            if row[1] == row[2] == "":  # a group's heading
                table.setSpan(r, 0, 1, 3)
                item = table.item(r, 0)
                if item is not None:
                    font = item.font()
                    font.setBold(True)
                    item.setFont(font)
        self._fit_height()

    def _fit_height(self) -> None:
        table = self.table.native
        table.resizeRowsToContents()
        rows = sum(table.rowHeight(r) for r in range(table.rowCount()))
        height = table.horizontalHeader().height() + rows + 2 * table.frameWidth()
        if table.minimumHeight() != height or table.maximumHeight() != height:
            table.setFixedHeight(height)

    def _run_info(self, layer) -> None:
        info = layer.metadata.get("denoise")
        if info:
            dose = info.get("conditioning") or f"{info['dose'] * 100:g} %"
            self.results["run"] = {"model": info["model"], "dose": dose,
                                   "device": info.get("device", "?"), "seconds": float(info.get("seconds", 0.0)),
                                   "slices": info.get("slices")}

    # image metrics ----------------------------------------------------------------------------
    def _pair_arrays(self):
        image, ref = self.image_box.value, self.reference_box.value
        issue = ct_layer_problem(image)
        if issue:
            return None, issue
        if ref is None:
            return (image, None, 0), ""
        if ref is image:
            return None, "The image and the reference are the same layer."
        ref_shape = ref.data.shape[-2:]
        if image.data.shape[-2:] != ref_shape:
            return None, f"Slice sizes differ: {image.data.shape[-2:]} vs {ref_shape}."
        if ref.ndim == 2 and image.ndim == 3:
            return None, f"'{ref.name}' is a single slice; choose a volume as the reference."
        if image.ndim == 2 or ref.ndim == 2:
            # a lone 2D slice has no place along z: it is measured against the reference's
            # displayed slice (2D against 2D: against each other)
            first = current_slice(self._viewer, ref) if ref.ndim == 3 else 0
            return (image, ref, first), ""
        # slices are matched where they lie in the patient, e.g. a slab result with the slices it
        # came from, whatever the layers' names or metadata say
        problem = grid_problem(ref, image)
        if problem:
            return None, problem
        first, n = slice_offset(ref, image), image.data.shape[0]
        if first < 0 or first + n > ref.data.shape[0]:
            return None, (f"'{image.name}' lies at slices {first}-{first + n - 1} of '{ref.name}', which "
                          f"has 0-{ref.data.shape[0] - 1}: they do not overlap wholly.")
        return (image, ref, first), ""

    def measure_slice(self, *_) -> dict:
        """Metrics of the displayed slice (synchronous: one slice is fast)."""
        pair, issue = self._pair_arrays()
        if pair is None:
            self._say(issue)
            return {}
        image, ref, first = pair
        off = axial_view_problem(self._viewer, image) or off_slice_problem(self._viewer, image, first=first)
        if off:
            self._say(off)
            return {}
        k = current_slice(self._viewer, image)
        img = np.asarray(image.data[k] if image.ndim == 3 else image.data, dtype=np.float32)
        self.results = {"layers": {"image": image.name, "reference": ref.name if ref is not None else "(none)"}}
        self.per_slice = {}  # what is exported is this measurement only
        if self._canvas is not None:
            self._canvas.hide()  # the curve of an earlier volume is not this measurement's
        self._run_info(image)
        if ref is not None:
            from .. import metrics as M

            r = np.asarray(ref.data[first + k] if ref.ndim == 3 else ref.data, dtype=np.float32)
            self.results[f"slice {first + k}"] = M.image_metrics(img, r)
        roi = self._roi_metrics(image, k, img)
        if roi:
            self.results[f"ROIs, slice {first + k}"] = roi
        if ref is None and not set(roi) - {"note"}:
            self._say(f"{roi['note']}." if "note" in roi else
                      "Choose a reference layer, or draw ROIs (Add ROI layer) for noise and CNR.")
        elif "note" in roi:
            self._say(f"Slice {first + k} of '{image.name}': {roi['note']}.")
        else:
            self._say(f"Slice {first + k} of '{image.name}'.")
        self._show()
        return self.results

    def _roi_masks(self, image) -> list[np.ndarray]:
        """The ROI layer's shapes as masks on ``image``'s own grid: through world coordinates, so
        ROIs drawn on a volume also land on a slab result of it (which starts further along z)."""
        from napari.layers import Shapes

        shapes = self.roi_box.value
        if shapes is None or len(shapes.data) == 0:
            return []
        world = [np.asarray(shapes._data_to_world(np.asarray(v, dtype=float)))[:, -image.ndim:]
                 for v in shapes.data]
        data = [np.asarray(image._data_to_world.inverse(w)) for w in world]
        moved = Shapes(data, shape_type=list(shapes.shape_type), ndim=image.ndim)
        return list(moved.to_masks(mask_shape=image.data.shape))

    def _roi_metrics(self, image, k: int, img: np.ndarray) -> dict:
        shapes = self.roi_box.value
        if shapes is not None and len(shapes.data) and shapes.ndim < image.ndim:
            return {"note": f"'{shapes.name}' is a 2D Shapes layer, so its ROIs have no place along z; "
                            "draw them on a layer made with Add ROI layer"}
        masks = self._roi_masks(image)
        if not masks:
            return {}
        on_slice = [m[k] if m.ndim == 3 else m for m in masks]
        masks = [m for m in on_slice if m.any()]
        if not masks:
            return {"note": "no ROI on this slice: draw them on the displayed slice"}
        from .. import metrics as M

        out = {"noise_hu (ROI 1)": M.noise_std(img, masks[0]), "mean_hu (ROI 1)": float(img[masks[0]].mean())}
        if len(masks) > 1:
            out["noise_hu (background)"] = M.noise_std(img, masks[1])
            out["cnr (ROI 1 vs background)"] = M.cnr(img, masks[0], masks[1])
        return out

    def measure_volume(self, *_):
        """Every slice against the reference, in a worker thread; returns the worker."""
        from napari.qt.threading import create_worker

        if self._worker is not None:
            self._say("Already measuring.")
            return None
        pair, issue = self._pair_arrays()
        if pair is None or pair[1] is None:
            self._say(issue or "Whole-volume metrics need a reference layer.")
            return None
        image, ref, first = pair
        img = np.asarray(image.data, dtype=np.float32)
        img = img[None] if img.ndim == 2 else img
        r = np.asarray(ref.data, dtype=np.float32)
        r = r[None] if r.ndim == 2 else r[first:first + img.shape[0]]
        self._say(f"Measuring {img.shape[0]} slices ...")
        worker = create_worker(_volume_job, img, r, _start_thread=False,
                               _connect={"returned": lambda res: self._volume_done(image, ref, first, res),
                                         "errored": lambda exc: self._say(f"Failed: {exc}"),
                                         "finished": self._finished})
        self._worker = worker
        worker.start()
        return worker

    def _finished(self) -> None:
        self._worker = None

    def _volume_done(self, image, ref, first: int, per_slice: list[dict]) -> None:
        self.results = {"layers": {"image": image.name, "reference": ref.name}}
        self._run_info(image)
        summary = {}
        for key in _IMAGE_KEYS:
            values = np.array([m[key] for m in per_slice], dtype=np.float64)
            summary[key] = float(np.nanmean(values))
            summary[key + " std"] = float(np.nanstd(values, ddof=1)) if len(values) > 1 else 0.0
        self.results[f"volume ({len(per_slice)} slices)"] = summary
        self.per_slice = {"slice": [first + i for i in range(len(per_slice))],
                          **{key: [m[key] for m in per_slice] for key in _IMAGE_KEYS}}
        self._show()
        self._plot()
        self._say(f"PSNR {summary['psnr']:.2f} ± {summary['psnr std']:.2f} dB over {len(per_slice)} slices.")

    def _plot(self) -> None:
        if not self.per_slice:
            return
        self._add_plot()  # normally added once matplotlib has loaded in the background
        if self._canvas is None:
            return
        ax = self._axes
        ax.clear()
        ax.plot(self.per_slice["slice"], self.per_slice["psnr"], lw=1.2)
        ax.set_xlabel("slice")
        ax.set_ylabel("PSNR (dB)")
        ax.grid(alpha=0.3)
        self._canvas.show()
        self._canvas.draw_idle()

    # point clouds -----------------------------------------------------------------------------
    def measure_clouds(self, *_) -> dict:
        from ..pointcloud import _nearest_distances_mm, point_metrics, slab_frame

        pred, ref = self.cloud_box.value, self.cloud_ref_box.value
        if pred is None or ref is None or pred is ref:
            self._say("Choose two different Points layers (a prediction and a reference).")
            return {}
        a, b = layer_points_world(pred), layer_points_world(ref)
        if len(a) == 0 or len(b) == 0 or a.shape[1] != 3 or b.shape[1] != 3:
            self._say("Both Points layers need 3D points.")
            return {}
        d_ab, d_ba = _nearest_distances_mm(a, b)
        out = {"cloud": pred.name, "reference cloud": ref.name,
               "chamfer_mm": float(d_ab.mean() + d_ba.mean()), "mean_distance_mm (cloud -> ref)": float(d_ab.mean())}
        info = pred.metadata.get("pointcloud", {})
        source = next((layer for layer in self._viewer.layers if layer.name == info.get("source")), None)
        if "slice" in info and source is not None and not ct_layer_problem(source, need_volume=True):
            volume = layer_volume(source)
            frame = slab_frame(volume, int(info["slice"]))
            m = point_metrics(frame.world_to_normalised(a, volume), frame.world_to_normalised(b, volume), frame)
            out.update({"chamfer (normalised)": m["chamfer"], "F-score @1%": m["f1"], "F-score @5%": m["f5"]})
            if "seconds" in info:
                out["prediction_s"] = float(info["seconds"])
                out["device"] = info.get("device", "?")
        self.results["point cloud"] = out
        self._show()
        self._say(f"Chamfer {out['chamfer_mm']:.2f} mm between '{pred.name}' and '{ref.name}'.")
        return out

    # ROIs and export --------------------------------------------------------------------------
    def add_roi_layer(self, *_):
        image = self.image_box.value
        if ct_layer_problem(image):
            self._say(ct_layer_problem(image))
            return None
        layer = self._viewer.add_shapes(
            ndim=image.ndim, name=f"ROIs on {image.name}", scale=tuple(image.scale),
            translate=tuple(image.translate), affine=np.asarray(image.affine.affine_matrix),
            edge_color="yellow", face_color="transparent", edge_width=1)
        layer.mode = "add_ellipse"
        self.roi_box.value = layer
        self._say("Draw the region of interest first, then a background region.")
        return layer

    def export(self, path) -> Path | None:
        """Write the results (and per-slice values) to ``.json`` or ``.csv``."""
        if not path or str(path) in ("", "."):
            self._say("Choose a file to export to.")
            return None
        if not self.results:
            self._say("Nothing measured yet.")
            return None
        path = Path(path)
        try:
            units = {key: unit for values in self.results.values() for key in values
                     if (unit := metric_unit(key))}
            units.update({key: unit for key in self.per_slice if (unit := metric_unit(key))})
            if path.suffix.lower() == ".json":
                path.write_text(json.dumps({"results": self.results, "per_slice": self.per_slice,
                                            "units": units}, indent=2, default=float))
            elif path.suffix.lower() == ".csv":
                with open(path, "w", newline="") as fh:
                    writer = csv.writer(fh)
                    writer.writerow(["group", "metric", "value", "unit"])
                    for group, values in self.results.items():
                        for key, value in values.items():
                            writer.writerow([group, key, value, units.get(key, "")])
                if self.per_slice:  # a table of its own: one row per slice
                    per_slice = path.with_name(path.stem + "_per_slice.csv")
                    with open(per_slice, "w", newline="") as fh:
                        writer = csv.writer(fh)
                        keys = list(self.per_slice)
                        writer.writerow([f"{k} ({units[k]})" if k in units else k for k in keys])
                        writer.writerows(zip(*(self.per_slice[k] for k in keys)))
            else:
                self._say("Export to a .csv or .json file.")
                return None
        except OSError as exc:
            self._say(f"Could not write {path}: {exc}")
            return None
        self._say(f"Exported to {path}.")
        return path


def table_rows(results: dict) -> list[list[str]]:
    """The panel's rows ``[metric, value, unit]``: each group's name on a row of its own, then its
    figures, a mean and its standard deviation over slices on one row ("34.5 ± 0.8"). The layers
    measured are left out (the boxes above the table name them; the exports have them)."""
    rows = []
    for group, values in results.items():
        if group == "layers":
            continue
        rows.append([group, "", ""])
        for key, value in values.items():
            if key.endswith(" std") and key[:-4] in values:
                continue
            unit = metric_unit(key) if isinstance(value, (int, float)) else ""
            text = f"{value:.4g}" if isinstance(value, float) else str(value)
            spread = values.get(f"{key} std")
            if isinstance(value, float) and isinstance(spread, float):
                text += f" ± {spread:.2g}"
            rows.append([key, text, unit])
    return rows


def metric_unit(key: str) -> str:
    """The unit of a figure in the panel and the exports, from its name ('' for ratios, scores and
    names)."""
    name = key.lower()
    if name.startswith("psnr"):
        return "dB"
    if re.search(r"_mm\b", name):
        return "mm"
    if re.search(r"_hu\b", name) or name.startswith("rmse"):
        return "HU"
    if name == "seconds" or name.endswith("_s"):
        return "s"
    return ""


def _volume_job(img: np.ndarray, ref: np.ndarray) -> list[dict]:
    from .. import metrics as M

    return [M.image_metrics(img[k], ref[k]) for k in range(img.shape[0])]
