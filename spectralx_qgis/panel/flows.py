"""The panel's runs, from the buttons to the run controller: Segment (layer, current view, drawn area)
and Fine-tune from polygons. Each gathers a typed request from the panel's widgets (requests.py), hands
it to the run controller, and on `Done` loads the result (class layers, the new model)."""

from __future__ import annotations

import os
import tempfile
from typing import Optional

from qgis.core import (
    Qgis,
    QgsCoordinateTransform,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsSettings,
    QgsVectorLayer,
)
from qgis.PyQt.QtCore import QObject

from .._vendor.spectralx.contract import card as model_card
from .._vendor.spectralx.contract import defaults, errors, model_folder
from ..setup import deps
from . import dock_reporting
from .requests import FinetuneRequest, SegmentRequest
from .tasks import Done, FinetuneTask, SegmentTask


class RunFlows(QObject):
    """Segment and fine-tune for `dock` (one run at a time, through `dock.runs`)."""

    def __init__(self, dock):
        super().__init__(dock)
        self.dock = dock

    # ------------------------------------------------------------ the panel's state
    def set_busy(self, busy: bool):
        dock = self.dock
        dock.cancel_button.setEnabled(busy)
        for b in (
            dock.segment_layer_button,
            dock.segment_view_button,
            dock.finetune_button,
            dock.draw_button,
            dock.suggest_button,
            dock.again_button,
        ):
            b.setEnabled(not busy)
        if busy and dock.draw_button.isChecked():
            dock.draw_button.setChecked(False)  # leaves the map tool too

    def method_changed(self, _index=None):
        self.dock.fuse_check.setEnabled(self.dock.method_combo.currentData() != "forest")

    def report(self):
        return dock_reporting.run_report(self.dock)

    def can_start(self) -> bool:
        if self.dock.runs.busy():
            self.dock._message("A SpectralX run is already in progress.", Qgis.Warning)
            return False
        if not deps.ok():
            self.dock._message(deps.guidance().split("\n")[0], Qgis.Critical)
            return False
        return True

    def ready(self) -> Optional[QgsRasterLayer]:
        """The raster layer to run on, once a run may start and a checkpoint and a raster are chosen."""
        if not self.can_start():
            return None
        if self.dock.card is None:
            self.dock._message("Choose a checkpoint first.", Qgis.Warning)
            return None
        layer = self.dock.current_layer()
        if layer is None:
            self.dock._message("Choose a raster layer first.", Qgis.Warning)
            return None
        return layer

    def backbone(self) -> Optional[str]:
        """The backbone file a run names: the one chosen by hand; None where the engine finds it itself
        (its own search order, contract.model_folder.backbone_candidates); else where the panel last
        saw it. No hashing here: a ViT-L backbone is 1.2 GB, and this runs on the UI thread."""
        dock = self.dock
        explicit = dock.backbone_widget.filePath().strip()
        if explicit:
            return explicit
        if dock.card is None or dock.card.is_forest:
            return None  # a forest checkpoint has no backbone to find
        if any(os.path.isfile(p) for p in model_folder.backbone_candidates(dock.card, dock.checkpoint_path())):
            return None
        known = QgsSettings().value(defaults.backbone_setting(dock.card.backbone.sha256), "")
        return known if known and os.path.isfile(known) else None

    # ------------------------------------------------------------ segment
    def canvas_bbox(self, layer) -> Optional[QgsRectangle]:
        """The canvas extent in the layer's CRS."""
        canvas = self.dock.canvas
        if canvas is None:
            return None
        rect = canvas.extent()
        src = canvas.mapSettings().destinationCrs()
        if src.isValid() and layer.crs().isValid() and src != layer.crs():
            rect = QgsCoordinateTransform(src, layer.crs(), QgsProject.instance()).transformBoundingBox(rect)
        return rect

    def segment_view(self):
        layer = self.ready()
        if layer is None:
            return None
        rect = self.canvas_bbox(layer)
        if rect is None or not rect.intersects(layer.extent()):
            self.dock._message("The current view does not overlap the raster layer.", Qgis.Warning)
            return None
        return self.segment(rect.intersect(layer.extent()), "view")

    def segment_rect(self, rect: QgsRectangle):
        """Segment a rectangle given in the layer's CRS (the Draw area tool ends here)."""
        layer = self.dock.current_layer()
        if layer is not None and not rect.intersects(layer.extent()):
            self.dock._message("The drawn area does not overlap the raster layer.", Qgis.Warning)
            return None
        if layer is not None:
            rect = rect.intersect(layer.extent())
        return self.segment(rect, "area")

    def segment_request(self, layer, rect: Optional[QgsRectangle], kind: str) -> SegmentRequest:
        """Everything a segmentation needs, read from the panel."""
        dock = self.dock
        band_map, sensor = dock.bands.for_run()
        output, confidence = dock.runs.segment_paths(dock.output_folder(), layer.name(), dock.checkpoint_path(), kind)
        bbox = None if rect is None else (rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum())
        return SegmentRequest(
            layer.source().split("|")[0],
            dock.checkpoint_path(),
            output,
            confidence=confidence,
            backbone=self.backbone(),
            band_map=band_map,
            sensor=sensor,
            bbox=bbox,
            overlap=dock.overlap_spin.value(),
            batch_size=dock.batch_spin.value(),
            device=dock.device_combo.currentData() or defaults.DEVICE,
            precision=dock.precision_combo.currentData() or defaults.PRECISION,
        )

    def segment(self, rect: Optional[QgsRectangle], kind: str):
        dock = self.dock
        layer = self.ready()
        if layer is None:
            return None
        try:
            request = self.segment_request(layer, rect, kind)
        except Exception as exc:  # noqa: BLE001  (engine errors: one line in the panel's words)
            dock._message(errors.for_qgis(exc, "dock"), Qgis.Critical)
            return None
        name = dock.runs.layer_name(layer.name(), dock.checkpoint_path(), kind)
        classes = list(dock.card.classes)
        dock.last_bbox = request.bbox  # Suggest where to label scores the same area
        task = SegmentTask(request, description=f"SpectralX: segment {layer.name()}")
        return dock.runs.start(task, lambda t: self._segment_done(t, name, classes))

    def _segment_done(self, task, name, classes):
        if isinstance(task.outcome, Done):
            try:
                self.dock.last_layers = self.dock.runs.load_segmentation(task, name, classes)
            except Exception as exc:  # noqa: BLE001
                self.dock._message(str(exc), Qgis.Critical)
            dock_reporting.vectorize_after(self.dock, task, name)  # the Vector output (MMU) option

    # ------------------------------------------------------------ fine-tune
    def finetune(self):
        dock = self.dock
        if not self.can_start():
            return None
        layer, polygons, field = (
            dock.current_layer(),
            dock.polygon_combo.currentLayer(),
            dock.field_combo.currentField(),
        )
        if layer is None or not isinstance(polygons, QgsVectorLayer) or not field:
            dock._message("Choose a raster layer, a polygon layer and its class field.", Qgis.Warning)
            return None
        forest = dock.method_combo.currentData() == "forest"
        if dock.card is None and not dock.backbone_widget.filePath() and not forest:
            dock._message("Choose a checkpoint to start from, or a backbone file.", Qgis.Warning)
            return None
        from .class_field import identifier_problem

        problem = identifier_problem(
            field, (f[field] for f in polygons.getFeatures()), f"'{polygons.name()}'", "the Class field"
        )
        if problem:
            dock._message(problem[0].upper() + problem[1:] + ".", Qgis.Warning)
            return None
        try:
            request, work = self.finetune_request(layer, polygons, field)
        except Exception as exc:  # noqa: BLE001
            dock._message(errors.for_qgis(exc, "dock"), Qgis.Critical)
            return None
        if dock.start_note:
            dock._message(dock.start_note, Qgis.Info)
        task = FinetuneTask(request, description=f"SpectralX: fine-tune on {polygons.name()}", cleanup=work)
        return dock.runs.start(task, lambda t: self._finetune_done(t, request))

    def finetune_request(self, layer, polygons, field: str):
        """Burn the polygons into a label raster (through QGIS) and describe the fine-tune run.
        Returns (request, temporary folder to remove after the run)."""
        from ..polygons import rasterize_polygons
        from .dock_loop import next_round

        dock = self.dock
        deps.require()
        from .._vendor.spectralx import training

        image = layer.source().split("|")[0]
        work = tempfile.mkdtemp(prefix="spectralx_labels_")
        try:
            burnt = rasterize_polygons(
                polygons.getFeatures(),
                polygons.fields(),
                field,
                polygons.crs(),
                image,
                os.path.join(work, "labels.tif"),
                training.classes,
                what=f"'{polygons.name()}'",
            )
            start = self.starting_point(layer)
        except Exception:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
            raise
        dock.start_note = start.note
        request = FinetuneRequest(
            image,
            burnt.path,
            dock.runs.model_path(
                model_folder.user_model_dir(),
                start.checkpoint or "",
                layer.name(),
                next_round(dock.card) if start.checkpoint else 1,
            ),
            checkpoint=start.checkpoint,
            backbone=start.backbone,
            sensor=start.sensor,
            band_map=start.band_map if start.band_map not in ("auto",) else None,
            steps=dock.steps_spin.value(),
            batch_size=dock.batch_spin.value(),
            device=dock.device_combo.currentData() or defaults.DEVICE,
            method=dock.method_combo.currentData() or None,
            fuse="forest" if dock.fuse_check.isChecked() else "none",
        )
        return request, work

    def starting_point(self, layer):
        """The selected checkpoint, or its backbone when it cannot read `layer` (starting_point.py)."""
        from . import starting_point

        dock = self.dock
        explicit = dock.backbone_widget.filePath().strip()
        if dock.card is None:
            return starting_point.Start(None, explicit or None, None, dock.bands.sensor_spec())
        plan = dock.bands.plan
        if plan is None:  # the band table is still reading: the same plan, here
            from .._vendor.spectralx import bands

            plan = bands.plan_bands(layer.source().split("|")[0], dock.card, dock.bands.sensor_spec())
        if dock.bands.loaded is None and plan.error is not None and starting_point.cannot_read(plan.error):
            reason = plan.error.for_audience("dock").rsplit(": ", 1)[0]
            return starting_point.from_backbone(
                dock.card, dock.checkpoint_path(), explicit, dock.bands.sensor_spec(), reason
            )
        band_map, sensor = dock.bands.for_run()
        return starting_point.Start(dock.checkpoint_path(), self.backbone(), band_map, sensor)

    def _finetune_done(self, task, request):
        if not isinstance(task.outcome, Done):
            return
        dock = self.dock
        path = task.outcome.value.checkpoint or request.output  # the engine's FinetuneResult
        card = model_card.read_card(path)
        if request.backbone:
            QgsSettings().setValue(defaults.backbone_setting(card.backbone.sha256), request.backbone)
        dock.set_checkpoint(path)
        if dock.setup.model_dialog is not None:  # the new model is listed where models are managed
            dock.setup.model_dialog.refresh()
        beside = os.path.join(os.path.dirname(path), os.path.basename(card.backbone.file))
        note = (
            (
                f" Its backbone {os.path.basename(beside)} sits beside it in {os.path.dirname(path)}: "
                "keep the two together."
            )
            if card.backbone.file and os.path.isfile(beside)
            else ""
        )
        warnings = (card.metrics or {}).get("warnings") or []
        if warnings:  # a model that trained badly is said so where the analyst looks, not only in the card
            dock._message(
                f"New model {os.path.basename(path)} selected, but: {warnings[0]}"
                + (f" (+{len(warnings) - 1} more in its card)" if len(warnings) > 1 else "")
                + f". Its map uses {card.map_source}.{note}",
                Qgis.Warning,
            )
            return
        dock._message(f"New model {os.path.basename(path)} selected (map: {card.map_source}).{note}", Qgis.Success)
