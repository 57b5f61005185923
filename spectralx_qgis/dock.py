"""The SpectralX dock panel.

Checkpoint picker + model card, raster layer, band-mapping table (filled from the layer's
wavelength metadata, editable per row), device/overlap/batch, and the actions Segment layer,
Segment current view, Draw area and Fine-tune from polygons. Every run is a QgsTask (panel and
task manager show progress; Cancel works); results land in the "SpectralX" layer group.
"""
from __future__ import annotations

import datetime as _dt
import html
import os
import re
import shutil
import tempfile
from typing import Any, Dict, List, Optional

from qgis.core import (Qgis, QgsApplication, QgsCoordinateTransform, QgsMapLayerProxyModel, QgsProject,
                       QgsRasterLayer, QgsRectangle, QgsSettings, QgsVectorFileWriter, QgsVectorLayer)
from qgis.gui import QgsDockWidget, QgsFieldComboBox, QgsFileWidget, QgsMapLayerComboBox
from qgis.PyQt.QtCore import Qt, pyqtSignal, pyqtSlot
from qgis.PyQt.QtGui import QColor
from qgis.PyQt.QtWidgets import (QAbstractItemView, QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout,
                                 QGridLayout,
                                 QGroupBox, QHBoxLayout, QHeaderView, QLabel, QProgressBar, QPushButton,
                                 QScrollArea, QSpinBox, QStyledItemDelegate, QTableWidget, QTableWidgetItem, QTextBrowser,
                                 QToolButton, QVBoxLayout, QWidget)

from . import deps, icons, styling
from .maptool import RectangleMapTool
from .tasks import BandTask, FinetuneTask, SegmentTask

SETTINGS = "SpectralX"
AUTO = -1


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")[:40] or "layer"


def quality_color(q: Optional[float]) -> QColor:
    if q is None:
        return QColor("#dddddd")
    q = max(0.0, min(1.0, float(q)))
    # red -> amber -> green
    if q < 0.5:
        return QColor.fromRgbF(0.95, 0.35 + 0.9 * q, 0.3, 1.0)
    return QColor.fromRgbF(0.95 - 1.2 * (q - 0.5), 0.8, 0.35, 1.0)


def row_value(row: dict, *keys, default=None):
    for k in keys:
        if k in row and row[k] is not None:
            return row[k]
    return default


def format_sources(row: dict) -> str:
    src = row_value(row, "sources", "source", default=[])
    if isinstance(src, (int, float)):
        src = [src]
    parts = []
    for s in src or []:
        if isinstance(s, dict):
            idx = row_value(s, "index", "band")
            w = s.get("weight")
            name = f"#{idx}" if idx is not None else str(s.get("name") or "?")
            parts.append(f"{name}" + (f" ×{float(w):.2f}" if w is not None and abs(float(w) - 1) > 1e-3 else ""))
        else:
            parts.append(f"#{s}")
    if not parts and row_value(row, "fill"):
        return "filled (mean)"
    return ", ".join(parts) or "—"


class SpectralXDock(QgsDockWidget):
    """The panel. Public methods are used by the tests and the screenshot script."""

    runFinished = pyqtSignal(object)      # the finished task (succeeded, cancelled or failed)
    bandsReady = pyqtSignal()             # the band table has been filled
    checkpointChanged = pyqtSignal(str)

    def __init__(self, iface, parent=None):
        super().__init__("SpectralX", parent)
        self.setObjectName("SpectralXDock")
        self.iface = iface
        self.canvas = iface.mapCanvas() if iface is not None else None
        self.card = None
        self.mapping = None
        self.raster_bands: List[Any] = []
        self.overrides: Dict[int, int] = {}
        self.task = None
        self.map_tool: Optional[RectangleMapTool] = None
        self._previous_tool = None
        self._filling = False
        self._alive = True
        self._band_task = None
        self._band_generation = 0
        self._auto_labels: List[str] = []
        self.last_layers: List[Any] = []
        self._build()
        self._check_dependencies()

    # ------------------------------------------------------------------ UI
    def _build(self):
        body = QWidget()
        lay = QVBoxLayout(body)
        lay.setContentsMargins(4, 4, 4, 4)

        self.guidance = QLabel()
        self.guidance.setWordWrap(True)
        self.guidance.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.guidance.setStyleSheet("QLabel{background:#fff4e5;border:1px solid #e0a040;padding:6px}")
        self.guidance.hide()
        lay.addWidget(self.guidance)

        self.controls = QWidget()
        cl = QVBoxLayout(self.controls)
        cl.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.controls)

        # model
        box = QGroupBox("Model")
        form = QFormLayout(box)
        row = QHBoxLayout()
        self.checkpoint_combo = QComboBox()
        self.checkpoint_combo.setSizeAdjustPolicy(QComboBox.AdjustToMinimumContentsLengthWithIcon)
        self.checkpoint_combo.setMinimumContentsLength(12)
        self.checkpoint_combo.setToolTip("SpectralX checkpoint (.safetensors)")
        self.browse_button = QToolButton()
        self.browse_button.setText("…")
        self.browse_button.setToolTip("Open a checkpoint")
        row.addWidget(self.checkpoint_combo, 1)
        row.addWidget(self.browse_button)
        form.addRow("Checkpoint", row)
        self.backbone_widget = QgsFileWidget()
        self.backbone_widget.setFilter("Backbone (*.safetensors *.pth *.pt *.ckpt)")
        self.backbone_widget.setToolTip("Only needed when the backbone is not beside the checkpoint")
        form.addRow("Backbone", self.backbone_widget)
        self.card_view = QTextBrowser()
        self.card_view.setOpenLinks(False)
        self.card_view.setMinimumHeight(90)
        self.card_view.setMaximumHeight(170)
        form.addRow(self.card_view)
        cl.addWidget(box)

        # input + bands
        box = QGroupBox("Input")
        v = QVBoxLayout(box)
        form = QFormLayout()
        self.layer_combo = QgsMapLayerComboBox()
        self.layer_combo.setFilters(QgsMapLayerProxyModel.RasterLayer)
        self.layer_combo.setAllowEmptyLayer(True)
        self.layer_combo.setLayer(None)
        form.addRow("Raster", self.layer_combo)
        v.addLayout(form)
        self.band_table = QTableWidget(0, 5)
        self.band_table.setHorizontalHeaderLabels(["Model band", "λ nm", "Raster band", "Strategy", "Quality"])
        self.band_table.verticalHeader().setVisible(False)
        self.band_table.setEditTriggers(QAbstractItemView.DoubleClicked | QAbstractItemView.SelectedClicked |
                                        QAbstractItemView.EditKeyPressed)
        self.band_table.setItemDelegateForColumn(2, BandSourceDelegate(self))
        header = self.band_table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.Interactive)
        header.setSectionResizeMode(2, QHeaderView.Stretch)
        self.band_table.setColumnWidth(0, 90)
        self.band_table.setTextElideMode(Qt.ElideRight)
        self.band_table.setWordWrap(False)
        self.band_table.verticalHeader().setDefaultSectionSize(20)
        self.band_table.setMinimumHeight(120)
        v.addWidget(self.band_table)
        self.band_status = QLabel("Choose a checkpoint and a raster layer.")
        self.band_status.setWordWrap(True)
        v.addWidget(self.band_status)
        cl.addWidget(box)

        # run settings
        box = QGroupBox("Run")
        form = QFormLayout(box)
        self.device_combo = QComboBox()
        form.addRow("Device", self.device_combo)
        self.overlap_spin = QDoubleSpinBox()
        self.overlap_spin.setRange(0.0, 0.75)
        self.overlap_spin.setSingleStep(0.05)
        self.overlap_spin.setValue(0.25)
        form.addRow("Overlap", self.overlap_spin)
        self.batch_spin = QSpinBox()
        self.batch_spin.setRange(1, 256)
        self.batch_spin.setValue(4)
        form.addRow("Batch size", self.batch_spin)
        self.output_dir = QgsFileWidget()
        self.output_dir.setStorageMode(QgsFileWidget.GetDirectory)
        self.output_dir.setFilePath(QgsSettings().value(f"{SETTINGS}/outputDir",
                                                        os.path.join(os.path.expanduser("~"), "SpectralX")))
        self.output_dir.fileChanged.connect(self._save_output_dir)
        form.addRow("Output folder", self.output_dir)
        buttons = QGridLayout()
        self.segment_layer_button = QPushButton(icons.icon(), "Segment layer")
        self.segment_view_button = QPushButton("Segment current view")
        self.draw_button = QPushButton("Draw area")
        self.draw_button.setCheckable(True)
        self.draw_button.setToolTip("Drag a rectangle on the map: just that area is segmented")
        buttons.addWidget(self.segment_layer_button, 0, 0, 1, 2)
        buttons.addWidget(self.segment_view_button, 1, 0)
        buttons.addWidget(self.draw_button, 1, 1)
        form.addRow(buttons)
        cl.addWidget(box)

        # fine-tune
        box = QGroupBox("Fine-tune from polygons")
        form = QFormLayout(box)
        self.polygon_combo = QgsMapLayerComboBox()
        self.polygon_combo.setFilters(QgsMapLayerProxyModel.PolygonLayer)
        self.polygon_combo.setAllowEmptyLayer(True)
        self.polygon_combo.setLayer(None)
        form.addRow("Polygons", self.polygon_combo)
        self.field_combo = QgsFieldComboBox()
        form.addRow("Class field", self.field_combo)
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(1, 100000)
        self.steps_spin.setValue(300)
        form.addRow("Steps", self.steps_spin)
        self.finetune_button = QPushButton("Fine-tune from polygons")
        form.addRow(self.finetune_button)
        cl.addWidget(box)

        # progress
        prow = QHBoxLayout()
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        prow.addWidget(self.progress, 1)
        prow.addWidget(self.cancel_button)
        lay.addLayout(prow)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextSelectableByMouse)
        lay.addWidget(self.status)
        lay.addStretch(1)

        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        scroll.setWidget(body)
        self.setWidget(scroll)

        # signals
        self.browse_button.clicked.connect(self._browse_checkpoint)
        self.checkpoint_combo.currentIndexChanged.connect(self._checkpoint_changed)
        self.layer_combo.layerChanged.connect(self._layer_changed)
        self.polygon_combo.layerChanged.connect(self.field_combo.setLayer)
        self.band_table.itemChanged.connect(self._item_changed)
        self.segment_layer_button.clicked.connect(self.segment_layer)
        self.segment_view_button.clicked.connect(self.segment_view)
        self.draw_button.toggled.connect(self._toggle_draw)
        self.finetune_button.clicked.connect(self.finetune)
        self.cancel_button.clicked.connect(self.cancel)

    # bound slots (not lambdas): Qt drops them when the panel is deleted
    def _save_output_dir(self, path):
        QgsSettings().setValue(f"{SETTINGS}/outputDir", path)

    def _layer_changed(self, _layer):
        if self.map_tool is not None:
            self.map_tool.setLayer(self.current_layer())
        self.refresh_bands()

    def _tool_deactivated(self):
        self.draw_button.setChecked(False)

    # ------------------------------------------------------------ dependencies
    def _check_dependencies(self):
        text = deps.guidance(html=True)
        if text:
            self.guidance.setText(text)
            self.guidance.show()
            self.controls.setEnabled(False)
            return False
        self.guidance.hide()
        self.controls.setEnabled(True)
        self._fill_devices()
        self._load_known_checkpoints()
        return True

    def guidance_text(self) -> str:
        return self.guidance.text() if self.guidance.isVisible() or not self.controls.isEnabled() else ""

    def _fill_devices(self):
        self.device_combo.clear()
        try:
            devices = deps.engine("devices").available_devices()
        except Exception as exc:  # noqa: BLE001
            devices = [("cpu", "CPU")]
            self.status.setText(f"Device list unavailable: {exc}")
        self.device_combo.addItem("Automatic (best available)", "auto")
        for dev_id, label in devices:
            self.device_combo.addItem(label, dev_id)

    # ------------------------------------------------------------- checkpoints
    def _known_checkpoint_paths(self) -> List[str]:
        paths = QgsSettings().value(f"{SETTINGS}/checkpoints", []) or []
        if isinstance(paths, str):
            paths = [paths]
        here = os.path.dirname(os.path.abspath(__file__))
        folders = [os.path.join(here, "models"), os.path.join(os.path.dirname(here), "resources", "models")]
        try:
            folders.append(deps.engine("checkpoint").user_model_dir())
        except Exception:  # noqa: BLE001
            pass
        for folder in folders:
            if os.path.isdir(folder):
                paths += [os.path.join(folder, f) for f in sorted(os.listdir(folder))
                          if f.endswith(".safetensors") and "backbone" not in f.lower()]
        out = []
        for p in paths:
            if p and os.path.isfile(p) and p not in out:
                out.append(p)
        return out

    def _load_known_checkpoints(self):
        self.checkpoint_combo.blockSignals(True)
        self.checkpoint_combo.clear()
        self.checkpoint_combo.addItem("— choose a checkpoint —", "")
        for p in self._known_checkpoint_paths():
            self.checkpoint_combo.addItem(os.path.basename(p), p)
            self.checkpoint_combo.setItemData(self.checkpoint_combo.count() - 1, p, Qt.ToolTipRole)
        self.checkpoint_combo.blockSignals(False)

    def _browse_checkpoint(self):
        path, _ = QFileDialog.getOpenFileName(self, "Open a SpectralX checkpoint", "",
                                              "SpectralX checkpoint (*.safetensors)")
        if path:
            self.set_checkpoint(path)

    def set_checkpoint(self, path: str) -> bool:
        """Select (adding if needed) a checkpoint in the picker; shows its model card."""
        path = os.path.abspath(path)
        idx = self.checkpoint_combo.findData(path)
        if idx < 0:
            self.checkpoint_combo.addItem(os.path.basename(path), path)
            idx = self.checkpoint_combo.count() - 1
            self.checkpoint_combo.setItemData(idx, path, Qt.ToolTipRole)
        if self.checkpoint_combo.currentIndex() == idx:
            self._checkpoint_changed(idx)
        else:
            self.checkpoint_combo.setCurrentIndex(idx)
        return self.card is not None

    def checkpoint_path(self) -> str:
        return self.checkpoint_combo.currentData() or ""

    def _checkpoint_changed(self, _index=None):
        path = self.checkpoint_path()
        self.card = None
        if not path:
            self.card_view.setHtml("")
            self.refresh_bands()
            return
        try:
            self.card = deps.engine("checkpoint").read_card(path)
        except Exception as exc:  # noqa: BLE001  (engine errors are one-liners)
            self.card_view.setHtml(f"<p style='color:#b00'>{html.escape(str(exc))}</p>")
            self.refresh_bands()
            return
        known = [p for p in (QgsSettings().value(f"{SETTINGS}/checkpoints", []) or []) if p != path]
        QgsSettings().setValue(f"{SETTINGS}/checkpoints", ([path] + known)[:20])
        self.card_view.setHtml(card_html(self.card, path))
        self.card_view.setToolTip(getattr(self.card, "description", "") or "")
        self.checkpointChanged.emit(path)
        self.refresh_bands()

    # ------------------------------------------------------------------ layer
    def set_layer(self, layer):
        self.layer_combo.setLayer(layer)
        if self.map_tool is not None:
            self.map_tool.setLayer(layer)
        self.refresh_bands()

    def current_layer(self) -> Optional[QgsRasterLayer]:
        lyr = self.layer_combo.currentLayer()
        return lyr if isinstance(lyr, QgsRasterLayer) else None

    # ------------------------------------------------------------------ bands
    def refresh_bands(self):
        """Fill the band table from the layer's wavelength metadata (no manual step).

        Reading metadata and checking for empty bands can take a while on big rasters, so it runs
        as a background task; the table fills when it is done (`bandsReady`)."""
        self.mapping = None
        self.raster_bands = []
        self.overrides = {}
        self.band_table.setRowCount(0)
        self._band_generation += 1
        if self._band_task is not None:
            self._band_task.cancel()
            self._band_task = None
        layer = self.current_layer()
        if self.card is None or layer is None:
            self.band_status.setText("Choose a checkpoint and a raster layer.")
            return
        if layer.providerType() != "gdal":
            self.band_status.setText("This layer is not a raster file; save it as GeoTIFF first.")
            return
        self.band_status.setText("Reading the layer's band metadata …")
        generation = self._band_generation
        task = BandTask(layer.source().split("|")[0], self.card,
                        callback=lambda t: self._bands_done(t, generation))
        self._band_task = task
        QgsApplication.taskManager().addTask(task)

    def bands_pending(self) -> bool:
        return self._band_task is not None

    def _bands_done(self, task, generation):
        if not self._alive or generation != self._band_generation:
            return          # the checkpoint or layer changed meanwhile
        self._band_task = None
        self.raster_bands = list(task.raster_bands or [])
        self.mapping = task.mapping
        self._fill_table()
        if task.error and self.mapping is None:
            self.band_status.setText(f"Automatic band mapping failed: {task.error} Choose raster bands per row.")
        self.bandsReady.emit()

    def _fill_table(self):
        self._filling = True
        card_bands = self.card.bands
        rows = list(getattr(self.mapping, "rows", []) or []) if self.mapping is not None else []
        self.band_table.setRowCount(len(card_bands))
        self._auto_labels = []
        for i, b in enumerate(card_bands):
            info = rows[i] if i < len(rows) else {}
            self.band_table.setItem(i, 0, _readonly(str(b.name)))
            item = _readonly(f"{float(b.wavelength_nm):.1f}")
            item.setTextAlignment(int(Qt.AlignRight | Qt.AlignVCenter))
            self.band_table.setItem(i, 1, item)
            auto = f"auto: {format_sources(info)}" if info else "auto: (unmapped)"
            self._auto_labels.append(auto)
            src = QTableWidgetItem(auto)
            src.setData(Qt.UserRole, AUTO)
            src.setToolTip("Double-click to choose a raster band by hand")
            self.band_table.setItem(i, 2, src)
            self._set_row_info(i, row_value(info, "strategy", default="—"), row_value(info, "quality"),
                               row_value(info, "note", default=""))
        self._filling = False
        self._update_band_status()

    def source_choices(self):
        """(label, value) pairs for the raster-band editor: automatic, then each raster band."""
        out = []
        for rb in self.raster_bands:
            wl = f" · {rb.wavelength_nm:.1f} nm" if rb.wavelength_nm is not None else ""
            bad = " (bad band)" if getattr(rb, "bad", False) else ""
            out.append((f"{rb.index}: {rb.name}{wl}{bad}", int(rb.index)))
        return out

    def set_row_source(self, row: int, value: int):
        """Choose the raster band (1-based) for a checkpoint band, or AUTO (-1) for the automatic one."""
        item = self.band_table.item(row, 2)
        label = self._auto_labels[row] if value == AUTO else \
            next((lbl for lbl, v in self.source_choices() if v == int(value)), f"band {value}")
        item.setText(label)
        item.setData(Qt.UserRole, int(value))   # -> itemChanged -> _item_changed

    def _item_changed(self, item):
        if self._filling or item.column() != 2:
            return
        self._row_edited(item.row(), item.data(Qt.UserRole))

    def _set_row_info(self, i: int, strategy: str, quality: Optional[float], note: str = ""):
        was = self._filling
        self._filling = True
        self.band_table.setItem(i, 3, _readonly(str(strategy)))
        q = _readonly("—" if quality is None else f"{100 * float(quality):.0f} %")
        q.setBackground(quality_color(quality))
        q.setTextAlignment(int(Qt.AlignCenter))
        if note:
            q.setToolTip(str(note))
            self.band_table.item(i, 3).setToolTip(str(note))
        self.band_table.setItem(i, 4, q)
        self._filling = was

    def _row_edited(self, row: int, value):
        if self._filling or value is None:
            return
        info = (self.mapping.rows[row] if self.mapping is not None and row < len(self.mapping.rows) else {})
        if value == AUTO:
            self.overrides.pop(row, None)
            self._set_row_info(row, row_value(info, "strategy", default="—"), row_value(info, "quality"),
                               row_value(info, "note", default=""))
        else:
            self.overrides[row] = int(value)
            rb = next((b for b in self.raster_bands if int(b.index) == int(value)), None)
            target = self.card.bands[row]
            quality, note = manual_quality(target, rb)
            self._set_row_info(row, "manual", quality, note)
        self._update_band_status()

    def _update_band_status(self):
        n = self.band_table.rowCount()
        if not n:
            return
        qs = []
        for i in range(n):
            item = self.band_table.item(i, 4)
            txt = item.text() if item else "—"
            if txt.endswith("%"):
                qs.append(float(txt[:-1]) / 100)
        unmapped = n - len(qs)
        if self.mapping is None and len(self.overrides) < n:
            return
        msg = f"{n} model bands mapped from {len(self.raster_bands)} raster bands"
        if qs:
            msg += f"; quality min {100 * min(qs):.0f} %, mean {100 * sum(qs) / len(qs):.0f} %"
        if unmapped:
            msg += f"; {unmapped} without quality"
        if self.overrides:
            msg += f"; {len(self.overrides)} set by hand"
        self.band_status.setText(msg + ".")

    def band_map_argument(self):
        """'auto' when untouched; otherwise the edited mapping as a band-map dict (engine JSON)."""
        if not self.overrides:
            return "auto"
        return apply_overrides(self.mapping, self.overrides, len(self.card.bands))

    def band_map_for_run(self):
        """What a run uses: the table's mapping itself (the engine takes a BandMapping as is, so the
        raster's metadata is not scanned twice), the edited one, or 'auto' if none is known yet."""
        if self.overrides:
            return deps.engine("bands").BandMapping.from_json(self.band_map_argument())
        return self.mapping if self.mapping is not None else "auto"

    # ------------------------------------------------------------------- runs
    def _busy(self) -> bool:
        return self.task is not None

    def _message(self, text: str, level=Qgis.Info):
        self.status.setText(text)
        bar = self.iface.messageBar() if self.iface is not None else None
        if bar is not None:
            try:
                bar.pushMessage("SpectralX", text, level=level, duration=8)
            except TypeError:
                bar.pushMessage("SpectralX", text, level)

    def output_folder(self) -> str:
        folder = self.output_dir.filePath() or os.path.join(os.path.expanduser("~"), "SpectralX")
        os.makedirs(folder, exist_ok=True)
        return folder

    def _backbone(self) -> Optional[str]:
        explicit = self.backbone_widget.filePath().strip()
        if explicit:
            return explicit
        # beside the checkpoint or in the user's model folder: the engine finds (and verifies) it.
        # No hashing here: a ViT-L backbone is 1.2 GB, and this runs on the UI thread.
        name = os.path.basename(self.card.backbone.file)
        folders = [os.path.dirname(self.checkpoint_path()), deps.engine("checkpoint").user_model_dir()]
        if any(os.path.isfile(os.path.join(f, name)) for f in folders):
            return None
        known = QgsSettings().value(f"{SETTINGS}/backbones/{self.card.backbone.sha256}", "")
        return known if known and os.path.isfile(known) else None

    def _can_start(self) -> bool:
        """No run in progress and the engine's dependencies importable (else say why)."""
        if self._busy():
            self._message("A SpectralX run is already in progress.", Qgis.Warning)
            return False
        if not deps.ok():
            self._message(deps.guidance().split("\n")[0], Qgis.Critical)
            return False
        return True

    def _ready(self) -> Optional[QgsRasterLayer]:
        if not self._can_start():
            return None
        if self.card is None:
            self._message("Choose a checkpoint first.", Qgis.Warning)
            return None
        layer = self.current_layer()
        if layer is None:
            self._message("Choose a raster layer first.", Qgis.Warning)
            return None
        return layer

    def segment_layer(self):
        return self._segment(None, "")

    def canvas_bbox(self, layer) -> Optional[QgsRectangle]:
        """The canvas extent in the layer's CRS, clipped to the layer."""
        if self.canvas is None:
            return None
        rect = self.canvas.extent()
        src = self.canvas.mapSettings().destinationCrs()
        if src.isValid() and layer.crs().isValid() and src != layer.crs():
            rect = QgsCoordinateTransform(src, layer.crs(), QgsProject.instance()).transformBoundingBox(rect)
        return rect

    def segment_view(self):
        layer = self._ready()
        if layer is None:
            return None
        rect = self.canvas_bbox(layer)
        if rect is None or not rect.intersects(layer.extent()):
            self._message("The current view does not overlap the raster layer.", Qgis.Warning)
            return None
        return self._segment(rect.intersect(layer.extent()), "view")

    def segment_rect(self, rect: QgsRectangle):
        """Segment a rectangle given in the layer's CRS (the Draw area tool ends here)."""
        layer = self.current_layer()
        if layer is not None and not rect.intersects(layer.extent()):
            self._message("The drawn area does not overlap the raster layer.", Qgis.Warning)
            return None
        if layer is not None:
            rect = rect.intersect(layer.extent())
        return self._segment(rect, "area")

    def _segment(self, rect: Optional[QgsRectangle], kind: str):
        layer = self._ready()
        if layer is None:
            return None
        try:
            backbone = self._backbone()
            band_map = self.band_map_for_run()
        except Exception as exc:  # noqa: BLE001
            self._message(str(exc), Qgis.Critical)
            return None
        stamp = _dt.datetime.now().strftime("%Y%m%d_%H%M%S_%f")
        stem = f"{_slug(layer.name())}_{_slug(os.path.splitext(os.path.basename(self.checkpoint_path()))[0])}"
        stem += f"_{kind}_{stamp}" if kind else f"_{stamp}"
        folder = self.output_folder()
        output = os.path.join(folder, stem + ".tif")
        confidence = os.path.join(folder, stem + "_confidence.tif")
        params = dict(raster=layer.source().split("|")[0], checkpoint=self.checkpoint_path(), output=output,
                      backbone=backbone, band_map=band_map, overlap=self.overlap_spin.value(),
                      batch_size=self.batch_spin.value(), device=self.device_combo.currentData() or "auto",
                      confidence=confidence, overwrite=False)
        if rect is not None:
            params["bbox"] = (rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum())
        name = f"{layer.name()} · {kind or 'classes'}"
        classes = list(self.card.classes)
        task = SegmentTask(params, callback=lambda t: self._segment_done(t, name, classes),
                           description=f"SpectralX: segment {layer.name()}")
        return self._start(task)

    def _segment_done(self, task, name, classes):
        if task.succeeded and task.result_value is not None:
            res = task.result_value
            out = getattr(res, "output", task.params["output"])
            conf = getattr(res, "confidence", None) or task.params.get("confidence")
            try:
                self.last_layers = styling.load_results(out, getattr(res, "classes", None) or classes,
                                                        conf, name=name)
                secs = getattr(res, "seconds", None)
                self._message(f"Segmented into {out}" + (f" in {secs:.1f} s" if secs else ""), Qgis.Success)
            except Exception as exc:  # noqa: BLE001
                self._message(str(exc), Qgis.Critical)

    def finetune(self):
        layer = self.current_layer()
        if not self._can_start():
            return None
        polygons = self.polygon_combo.currentLayer()
        field = self.field_combo.currentField()
        if layer is None or not isinstance(polygons, QgsVectorLayer) or not field:
            self._message("Choose a raster layer, a polygon layer and its class field.", Qgis.Warning)
            return None
        folder = self.output_folder()
        stamp = _dt.datetime.now().strftime("%Y%m%d_%H%M%S_%f")
        base = os.path.splitext(os.path.basename(self.checkpoint_path()))[0] if self.card else "spectralx"
        output = os.path.join(folder, f"{_slug(base)}_finetuned_{stamp}.safetensors")
        labels = os.path.join(tempfile.mkdtemp(prefix="spectralx_labels_"), f"labels_{stamp}.gpkg")
        err = export_polygons(polygons, field, labels)
        if err:
            self._message(err, Qgis.Critical)
            return None
        try:
            backbone = self._backbone() if self.card is not None else (self.backbone_widget.filePath() or None)
        except Exception as exc:  # noqa: BLE001
            self._message(str(exc), Qgis.Critical)
            return None
        params = dict(images=layer.source().split("|")[0], labels=labels, output=output, class_field=field,
                      checkpoint=self.checkpoint_path() or None, backbone=backbone,
                      steps=self.steps_spin.value(), batch_size=self.batch_spin.value(),
                      device=self.device_combo.currentData() or "auto")
        task = FinetuneTask(params, callback=lambda t: self._finetune_done(t, labels, backbone),
                            description=f"SpectralX: fine-tune on {polygons.name()}")
        return self._start(task)

    def _finetune_done(self, task, labels, backbone):
        shutil.rmtree(os.path.dirname(labels), ignore_errors=True)
        if task.succeeded:
            path = getattr(task.result_value, "checkpoint", None) or task.params["output"]
            if backbone:
                sha = deps.engine("checkpoint").read_card(path).backbone.sha256
                QgsSettings().setValue(f"{SETTINGS}/backbones/{sha}", backbone)
            self.set_checkpoint(path)
            self._message(f"New checkpoint {os.path.basename(path)} selected.", Qgis.Success)

    def _start(self, task):
        self.task = task
        self.progress.setValue(0)
        self.cancel_button.setEnabled(True)
        for b in (self.segment_layer_button, self.segment_view_button, self.finetune_button):
            b.setEnabled(False)
        self.status.setText(task.description() + " …")
        task.progressChanged.connect(self._on_progress)   # queued: the task reports from its thread
        task.message.connect(self.status.setText)
        user_callback = task.callback

        def done(t):
            if not self._alive:      # the panel was closed (plugin unloaded) while the task ran
                return
            self.task = None
            self.cancel_button.setEnabled(False)
            for b in (self.segment_layer_button, self.segment_view_button, self.finetune_button):
                b.setEnabled(True)
            if t.succeeded:
                self.progress.setValue(100)
            elif t.cancelled_by_user:
                self.progress.setValue(0)
                self._message("Cancelled; nothing was written.", Qgis.Info)
            else:
                self.progress.setValue(0)
                self._message(f"Failed: {(t.error or 'unknown error').splitlines()[0]}", Qgis.Critical)
                if t.error and "\n" in t.error:
                    QgsApplication.messageLog().logMessage(t.error, "SpectralX", Qgis.Critical)
            if user_callback is not None:
                user_callback(t)
            self.runFinished.emit(t)

        task.callback = done
        QgsApplication.taskManager().addTask(task)
        return task

    @pyqtSlot(float)
    def _on_progress(self, value):
        self.progress.setValue(int(value))

    def cancel(self):
        if self.task is not None:
            self.task.cancel()
            self.status.setText("Cancelling …")

    # -------------------------------------------------------------- map tool
    def _toggle_draw(self, checked: bool):
        if self.canvas is None:
            return
        if checked:
            self.start_draw()
        elif self.map_tool is not None and self.canvas.mapTool() is self.map_tool:
            self.canvas.unsetMapTool(self.map_tool)

    def start_draw(self) -> RectangleMapTool:
        if self.map_tool is None:
            self.map_tool = RectangleMapTool(self.canvas, self.current_layer())
            self.map_tool.rectangleDrawn.connect(self._area_drawn)
            self.map_tool.deactivated.connect(self._tool_deactivated)
        self.map_tool.setLayer(self.current_layer())
        self._previous_tool = self.canvas.mapTool()
        self.canvas.setMapTool(self.map_tool)
        if not self.draw_button.isChecked():
            self.draw_button.blockSignals(True)
            self.draw_button.setChecked(True)
            self.draw_button.blockSignals(False)
        return self.map_tool

    def _area_drawn(self, rect: QgsRectangle):
        self.segment_rect(rect)
        if self.map_tool is not None:
            self.map_tool.clear()

    def shutdown(self):
        self._alive = False
        if self._band_task is not None:
            self._band_task.cancel()
        if self.task is not None:
            self.task.cancel()
        for signal, slot in ((self.layer_combo.layerChanged, self._layer_changed),
                             (self.checkpoint_combo.currentIndexChanged, self._checkpoint_changed)):
            try:
                signal.disconnect(slot)
            except (TypeError, RuntimeError):
                pass
        if self.map_tool is not None and self.canvas is not None and self.canvas.mapTool() is self.map_tool:
            self.canvas.unsetMapTool(self.map_tool)


# ---------------------------------------------------------------------- helpers
def _readonly(text: str) -> QTableWidgetItem:
    item = QTableWidgetItem(text)
    item.setFlags(item.flags() & ~Qt.ItemIsEditable)
    return item


class BandSourceDelegate(QStyledItemDelegate):
    """Editor for the 'Raster band' column: a combo box with 'automatic' and every raster band."""

    def __init__(self, dock):
        super().__init__(dock)
        self.dock = dock

    def createEditor(self, parent, option, index):  # noqa: N802
        combo = QComboBox(parent)
        row = index.row()
        combo.addItem(self.dock._auto_labels[row] if row < len(self.dock._auto_labels) else "auto", AUTO)
        for label, value in self.dock.source_choices():
            combo.addItem(label, value)
        return combo

    def setEditorData(self, editor, index):  # noqa: N802
        i = editor.findData(index.data(Qt.UserRole))
        editor.setCurrentIndex(max(i, 0))

    def setModelData(self, editor, model, index):  # noqa: N802
        self.dock.set_row_source(index.row(), editor.currentData())


def manual_quality(target, rb):
    if rb is None:
        return None, ""
    if getattr(rb, "bad", False):
        return 0.0, "bad band"
    if rb.wavelength_nm is None or target.wavelength_nm is None:
        return None, "no wavelength to compare"
    delta = abs(float(rb.wavelength_nm) - float(target.wavelength_nm))
    width = float(target.fwhm_nm or 20.0)
    return max(0.0, 1.0 - delta / (2.0 * width)), f"chosen by hand; Δλ = {delta:.1f} nm"


def apply_overrides(mapping, overrides: Dict[int, int], n_bands: int) -> dict:
    """The engine band-map dict with `overrides` {checkpoint row: raster band index} applied."""
    import numpy as np
    if mapping is not None:
        src = [int(s) for s in mapping.source_indexes]
        weights = np.asarray(mapping.weights, dtype=np.float32)
        fill = list(mapping.fill)
        rows = [dict(r) for r in mapping.rows]
    else:
        src, weights, fill, rows = [], np.zeros((n_bands, 0), np.float32), [False] * n_bands, \
            [{} for _ in range(n_bands)]
    new_src = sorted(set(src) | {int(v) for v in overrides.values()})
    w = np.zeros((n_bands, len(new_src)), dtype=np.float32)
    for j, s in enumerate(src):
        w[:, new_src.index(s)] = weights[:, j]
    for row, idx in overrides.items():
        w[row, :] = 0.0
        w[row, new_src.index(int(idx))] = 1.0
        fill[row] = False
        rows[row] = {**rows[row], "strategy": "index", "sources": [int(idx)], "note": "chosen by hand"}
    keep = [j for j in range(len(new_src)) if np.any(w[:, j] != 0)]
    new_src = [new_src[j] for j in keep]
    w = w[:, keep]
    if mapping is not None:
        BandMapping = type(mapping)
    else:
        BandMapping = deps.engine("bands").BandMapping
    d = mapping.to_dict() if mapping is not None else {}
    d.update({"source_indexes": new_src, "weights": w.tolist(), "fill": fill, "rows": rows})
    try:  # validate through the engine when it can
        return BandMapping.from_json(d).to_dict()
    except Exception:  # noqa: BLE001
        return d


def export_polygons(layer: QgsVectorLayer, field: str, path: str) -> str:
    """Write a (memory or file) polygon layer to a GeoPackage for the engine; '' or an error text."""
    opts = QgsVectorFileWriter.SaveVectorOptions()
    opts.driverName = "GPKG"
    opts.fileEncoding = "UTF-8"
    idx = layer.fields().indexOf(field)
    if idx < 0:
        return f"field '{field}' not found in {layer.name()}"
    opts.attributes = [idx]
    res = QgsVectorFileWriter.writeAsVectorFormatV3(layer, path, QgsProject.instance().transformContext(), opts)
    if res[0] != QgsVectorFileWriter.NoError:
        return f"could not export {layer.name()}: {res[1]}"
    return ""


_METRIC_LABELS = [("miou", "mIoU"), ("oa", "OA"), ("overall_accuracy", "OA"), ("kappa", "κ"),
                  ("mean_f1", "mean F1"), ("f1", "F1"), ("accuracy", "accuracy"), ("loss", "loss")]


def metrics_html(metrics: dict) -> str:
    """Validation metrics of a model card in one or two readable lines."""
    e = html.escape
    shown, rest = [], []
    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        base = key[4:] if key.startswith("val_") else key
        label = next((lbl for k, lbl in _METRIC_LABELS if base == k), None)
        if label is not None:
            shown.append(f"{'val ' if key.startswith('val_') else ''}{label} {value:.3f}")
        elif key.endswith("pixels"):
            rest.append(f"{int(value)} {e(key.replace('_', ' '))}")
    text = ", ".join(shown + rest)
    per_class = metrics.get("per_class_iou")
    if isinstance(per_class, dict) and per_class:
        items = ", ".join(f"{e(str(k))} {float(v):.2f}" for k, v in list(per_class.items())[:12]
                          if isinstance(v, (int, float)))
        text += f"<br/><span style='color:#555'>IoU per class: {items}</span>"
    if not text and metrics:
        text = e(", ".join(f"{k}" for k in list(metrics)[:8]))
    return text


def card_html(card, path: str) -> str:
    e = html.escape
    parts = [f"<b>{e(os.path.basename(path))}</b>"]
    desc = getattr(card, "description", "") or ""
    if desc:
        short = desc if len(desc) <= 140 else desc[:desc.rfind(" ", 0, 140)] + " …"
        parts.append(f"<br/><i>{e(short)}</i>")
    stage = getattr(card, "stage", "")
    gsd = f", {card.gsd_m:g} m GSD" if getattr(card, "gsd_m", None) else ""
    parts.append(f"<br/>Stage: {e(str(stage))}; tile {card.tile_size} px{gsd}; "
                 f"backbone {e(card.backbone.preset)}")
    parts.append("<br/><b>Classes</b><table cellspacing='2' cellpadding='0'>")
    per_row = 3
    for i, c in enumerate(card.classes):
        if i % per_row == 0:
            parts.append("<tr>")
        parts.append(f"<td bgcolor='{e(c.color)}' width='12'>&nbsp;&nbsp;&nbsp;</td>"
                     f"<td>&nbsp;{int(c.value)} {e(c.name)}&nbsp;&nbsp;</td>")
        if i % per_row == per_row - 1 or i == len(card.classes) - 1:
            parts.append("</tr>")
    parts.append("</table>")
    wl = [b.wavelength_nm for b in card.bands]
    names = ", ".join(b.name for b in card.bands[:3]) + (", …" if len(card.bands) > 3 else "")
    parts.append(f"<b>Expected bands</b>: {len(card.bands)}, {min(wl):.0f}–{max(wl):.0f} nm "
                 f"<span style='color:#666'>({e(names)})</span>")
    metrics = getattr(card, "metrics", None) or {}
    parts.append("<br/><b>Metrics</b>: " + (metrics_html(metrics) or "none recorded"))
    return "".join(parts)
