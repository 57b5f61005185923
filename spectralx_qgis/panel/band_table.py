"""The band-mapping box of the panel: sensor picker with the raster's band order, the table of model
bands and where each comes from, Load/Save band map.

Every number here comes from the engine: `plan_bands` (the same function the CLI and Processing use)
fills the table, `override_rows` applies a row chosen by hand (the engine's one quality formula), and
a saved band map is the JSON `spectralx bands -o` writes.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional

from qgis.core import QgsApplication, QgsSettings
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtGui import QColor
from qgis.PyQt.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QStyledItemDelegate,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from .._vendor.spectralx.contract import defaults, errors
from ..setup import deps
from .tasks import BandTask, Done, Failed

AUTO = -1
FROM_FILE = ""


def _bands():
    """The engine's band module (it reads rasters: imported on first use, after the dependency check)."""
    deps.require()
    from .._vendor.spectralx import bands

    return bands


def quality_color(q: Optional[float]) -> QColor:
    if q is None:
        return QColor("#dddddd")
    q = max(0.0, min(1.0, float(q)))
    if q < 0.5:  # red -> amber -> green
        return QColor.fromRgbF(0.95, 0.35 + 0.9 * q, 0.3, 1.0)
    return QColor.fromRgbF(0.95 - 1.2 * (q - 0.5), 0.8, 0.35, 1.0)


def format_sources(row: dict) -> str:
    parts = []
    for s in row.get("sources") or []:
        w = s.get("weight")
        parts.append(f"#{s.get('index')}" + (f" ×{float(w):.2f}" if w is not None and abs(float(w) - 1) > 1e-3 else ""))
    if not parts and row.get("fill"):
        return "filled (mean)"
    return ", ".join(parts) or "—"


def _readonly(text: str) -> QTableWidgetItem:
    item = QTableWidgetItem(text)
    item.setFlags(item.flags() & ~Qt.ItemFlag.ItemIsEditable)
    return item


class BandTable(QWidget):
    """Sensor picker + band table + status. `set_inputs(card, raster_path)` starts a (background) read."""

    bandsReady = pyqtSignal()
    changed = pyqtSignal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.card = None
        self.raster_path = ""
        self.band_count = 0
        self.plan = None
        self.loaded = None  # a BandMapping loaded from a file (replaces the automatic one)
        self.overrides: Dict[int, Optional[int]] = {}
        self._task = None
        self._generation = 0
        self._alive = True
        self._filling = False
        self._user_sensor = False  # the analyst chose the sensor: never overwrite it with a guess
        self._build()

    # ------------------------------------------------------------------ UI
    def _build(self):
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        self.sensor_combo = QComboBox()
        self.sensor_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.sensor_combo.setMinimumContentsLength(10)
        self.sensor_combo.addItem("From the file's metadata", FROM_FILE)
        self.sensor_combo.setToolTip(
            "The sensor that took this raster. Needed when the file carries no "
            "wavelengths (every Landsat Level-1 file): its bands are then read "
            "with that sensor's band centres and widths."
        )
        self.order_edit = QLineEdit()
        self.order_edit.setPlaceholderText("band order, e.g. B2,B3,B4")
        self.order_edit.setToolTip(
            "The raster's bands in file order, named as the sensor names them "
            "(B2,B3,B4 is blue, green, red for Landsat 8/9). Pre-filled from the "
            "band descriptions, or the sensor's usual layout for this band count."
        )
        row.addWidget(QLabel("Sensor"))
        row.addWidget(self.sensor_combo, 2)
        row.addWidget(self.order_edit, 1)
        lay.addLayout(row)

        self.table = QTableWidget(0, 5)
        self.table.setHorizontalHeaderLabels(["Model band", "λ nm", "Raster band", "Strategy", "Quality"])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(
            QAbstractItemView.EditTrigger.DoubleClicked
            | QAbstractItemView.EditTrigger.SelectedClicked
            | QAbstractItemView.EditTrigger.EditKeyPressed
        )
        self.table.setItemDelegateForColumn(2, BandSourceDelegate(self))
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        header.setSectionResizeMode(2, QHeaderView.ResizeMode.Stretch)
        header.setStretchLastSection(False)
        for col, width in ((0, 70), (1, 52), (3, 70), (4, 56)):
            self.table.setColumnWidth(col, width)
        self.table.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.table.setWordWrap(False)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.table.verticalHeader().setDefaultSectionSize(20)
        self.table.setMinimumHeight(120)
        self.table.setToolTip(
            "How each band the model expects is read from the raster. Double-click a "
            "'Raster band' cell to choose one by hand."
        )
        lay.addWidget(self.table)

        row = QVBoxLayout()  # one above the other: side by side they widen a 300 px panel
        self.load_button = QPushButton("Load band map…")
        self.load_button.setToolTip("Use a band map saved earlier (the JSON `spectralx bands -o` writes)")
        self.save_button = QPushButton("Save band map…")
        self.save_button.setToolTip(
            "Save this mapping as JSON, for the command line (--band-map) or " "Processing (BAND_MAP)"
        )
        row.setSpacing(2)
        row.addWidget(self.load_button, 0, Qt.AlignmentFlag.AlignLeft)
        row.addWidget(self.save_button, 0, Qt.AlignmentFlag.AlignLeft)
        lay.addLayout(row)
        self.status = QLabel("Choose a checkpoint and a raster layer.")
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        lay.addWidget(self.status)

        self.sensor_combo.activated.connect(self._sensor_chosen)
        self.order_edit.editingFinished.connect(self._order_edited)
        self.table.itemChanged.connect(self._item_changed)
        self.load_button.clicked.connect(self._browse_load)
        self.save_button.clicked.connect(self._browse_save)

    def fill_sensors(self, sensors):
        """(key, label) pairs from the engine's presets."""
        for key, label in sensors:
            if self.sensor_combo.findData(key) < 0:
                self.sensor_combo.addItem(label, key)

    # ------------------------------------------------------------- sensor
    def sensor_key(self) -> str:
        return self.sensor_combo.currentData() or FROM_FILE

    def sensor_spec(self) -> Optional[str]:
        """'landsat8:B2,B3,B4' (what --sensor and SENSOR take), or None for the file's metadata."""
        key = self.sensor_key()
        if not key:
            return None
        return _bands().sensor_spec(key, self.order_edit.text())

    def set_sensor(self, key: str, order: Optional[str] = None):
        """Choose a sensor (and band order) as the analyst would; re-reads the bands."""
        i = self.sensor_combo.findData(key or FROM_FILE)
        if i < 0:
            raise ValueError(f"unknown sensor {key}")
        self.sensor_combo.setCurrentIndex(i)
        self._user_sensor = True
        if order is not None:
            self.order_edit.setText(order)
        else:
            self._default_order()
        self.refresh()

    def _sensor_chosen(self, _index):
        self._user_sensor = True
        self._default_order()
        self.refresh()

    def _default_order(self):
        key = self.sensor_key()
        count = len(self.plan.raster_bands) if self.plan is not None else self.band_count
        if not key:
            self.order_edit.clear()
            return
        bands = _bands()
        names = [n.strip() for n in self.order_edit.text().split(",") if n.strip()]
        sensor, _ = bands.parse_sensor(key)
        if names and len(names) == count and all(sensor.band(n) for n in names):
            return  # the descriptions' order fits this sensor: keep it
        self.order_edit.setText(bands.default_order(key, count) if count else "")

    def _order_edited(self):
        if self.sensor_key():
            self._user_sensor = True
            self.refresh()

    # ------------------------------------------------------------- reading
    def set_inputs(self, card, raster_path: str, band_count: int = 0):
        self.band_count = band_count
        if raster_path != self.raster_path:
            self._user_sensor = False
            self.sensor_combo.setCurrentIndex(0)
            self.order_edit.clear()
        self.card, self.raster_path = card, raster_path
        self.refresh()

    def refresh(self):
        """Detect and map in a background task (big rasters take a moment); `bandsReady` when done."""
        self.plan, self.loaded, self.overrides = None, None, {}
        self.table.setRowCount(0)
        self._generation += 1
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self.card is None or not self.raster_path:
            self.status.setText("Choose a checkpoint and a raster layer.")
            return
        self.status.setText("Reading the layer's band metadata …")
        generation = self._generation
        try:
            spec = self.sensor_spec()
        except Exception as exc:  # noqa: BLE001  (unknown band name typed in the order box)
            self.status.setText(errors.for_qgis(exc, "dock"))
            self.bandsReady.emit()
            return
        task = BandTask(self.raster_path, self.card, spec, callback=lambda t: self._done(t, generation))
        self._task = task
        QgsApplication.taskManager().addTask(task)

    def pending(self) -> bool:
        return self._task is not None

    def _done(self, task, generation):
        if not self._alive or generation != self._generation:
            return
        self._task = None
        self.plan = task.outcome.value if isinstance(task.outcome, Done) else None
        if self.plan is not None and not self._user_sensor and not self.sensor_key():
            key, order = _bands().suggest_sensor(self.plan.raster_bands)
            if order:
                self.order_edit.setText(order)
            if (
                key
                and self.plan.fallback is False
                and any(b.source.startswith("preset") for b in self.plan.raster_bands)
            ):
                i = self.sensor_combo.findData(key)
                if i >= 0:
                    self.sensor_combo.setCurrentIndex(i)
        self._fill()
        if isinstance(task.outcome, Failed):
            self.status.setText(task.outcome.message)
        elif self.plan is not None and self.plan.error is not None:
            self.status.setText(errors.for_qgis(self.plan.error, "dock"))
        self.bandsReady.emit()

    # ------------------------------------------------------------- table
    def raster_bands(self) -> List[Any]:
        return list(self.plan.raster_bands) if self.plan is not None else []

    def mapping(self):
        """The mapping a run uses now (automatic, loaded, or with rows chosen by hand), or None."""
        base = self.loaded if self.loaded is not None else (self.plan.mapping if self.plan is not None else None)
        if not self.overrides:
            return base
        return _bands().mapping.override_rows(base, self.overrides, self.raster_bands(), self.card.bands)

    def _fill(self):
        self._filling = True
        mapping = self.mapping()
        rows = list(mapping.rows) if mapping is not None else []
        bands = self.card.bands
        self.table.setRowCount(len(bands))
        for i, b in enumerate(bands):
            info = rows[i] if i < len(rows) else {}
            self.table.setItem(i, 0, _readonly(str(b.name)))
            item = _readonly(f"{float(b.wavelength_nm):.1f}")
            item.setTextAlignment(int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter))
            self.table.setItem(i, 1, item)
            chosen = self.overrides.get(i, AUTO)
            src = QTableWidgetItem(self._source_label(chosen, info))
            src.setData(Qt.ItemDataRole.UserRole, AUTO if i not in self.overrides else chosen)
            src.setToolTip("Double-click to choose a raster band by hand")
            self.table.setItem(i, 2, src)
            by_hand = i in self.overrides or str(info.get("note", "")).startswith("chosen by hand")
            strategy = "manual" if by_hand else (info.get("strategy") or "—")
            self.table.setItem(i, 3, _readonly(str(strategy)))
            quality = info.get("quality") if info else None
            q = _readonly("—" if quality is None else f"{100 * float(quality):.0f} %")
            q.setBackground(quality_color(quality))
            q.setTextAlignment(int(Qt.AlignmentFlag.AlignCenter))
            if info.get("note"):
                q.setToolTip(str(info["note"]))
                self.table.item(i, 3).setToolTip(str(info["note"]))
            self.table.setItem(i, 4, q)
        self._filling = False
        self._update_status(mapping)
        self.changed.emit()

    def _source_label(self, chosen, info) -> str:
        if chosen == AUTO:
            return f"auto: {format_sources(info)}" if info else "auto: (unmapped)"
        if chosen is None:
            return "filled (mean)"
        return next((lbl for lbl, v in self.source_choices() if v == int(chosen)), f"band {chosen}")

    def auto_label(self, row: int) -> str:
        base = self.loaded if self.loaded is not None else (self.plan.mapping if self.plan is not None else None)
        info = base.rows[row] if base is not None and row < len(base.rows) else {}
        return self._source_label(AUTO, info)

    def source_choices(self):
        out = []
        for rb in self.raster_bands():
            wl = f" · {rb.wavelength_nm:.1f} nm" if rb.wavelength_nm is not None else ""
            bad = " (bad band)" if getattr(rb, "bad", False) else ""
            out.append((f"{rb.index}: {rb.name}{wl}{bad}", int(rb.index)))
        return out

    def set_row_source(self, row: int, value):
        """Raster band (1-based) for a model band, or AUTO (-1) for the automatic choice."""
        if value == AUTO:
            self.overrides.pop(row, None)
        else:
            self.overrides[row] = int(value)
        self._fill()

    def _item_changed(self, item):
        if self._filling or item.column() != 2:
            return
        value = item.data(Qt.ItemDataRole.UserRole)
        if value is not None and value != (self.overrides.get(item.row(), AUTO)):
            self.set_row_source(item.row(), value)

    def _update_status(self, mapping):
        n = self.table.rowCount()
        if not n:
            return
        if mapping is None:
            if self.plan is not None and self.plan.error is not None:
                self.status.setText(errors.for_qgis(self.plan.error, "dock"))
            return
        qs = [float(r.get("quality", 0.0)) for r in mapping.rows if not r.get("fill")]
        filled = sum(1 for f in mapping.fill if f)
        where = "loaded band map" if self.loaded is not None else f"{len(self.raster_bands())} raster bands"
        msg = f"{n} model bands mapped from {where}"
        if qs:
            msg += f"; quality min {100 * min(qs):.0f} %, mean {100 * sum(qs) / len(qs):.0f} %"
        if filled:
            msg += f"; {filled} filled with the mean"
        if self.overrides:
            msg += f"; {len(self.overrides)} set by hand"
        if self.plan is not None and self.plan.sensor:
            msg += f"; read as {self.plan.sensor}"
        self.status.setText(msg + ".")

    # -------------------------------------------------------- run / files
    def for_run(self):
        """(band_map, sensor) for a run: the mapping itself when known (the engine does not scan the
        raster twice), else 'auto' with the sensor; raises with the panel's words when it cannot map."""
        mapping = self.mapping()
        if mapping is not None:
            return mapping, self.sensor_spec()
        if self.plan is not None and self.plan.error is not None:
            raise self.plan.error
        return "auto", self.sensor_spec()

    def band_map_argument(self):
        """'auto' when untouched; otherwise the edited mapping as a band-map dict (engine JSON)."""
        if not self.overrides and self.loaded is None:
            return "auto"
        return self.mapping().to_dict()

    def save_band_map(self, path: str) -> str:
        mapping = self.mapping()
        if mapping is None:
            raise ValueError("nothing to save: no band of this raster is mapped yet")
        with open(path, "w", encoding="utf-8") as f:
            f.write(mapping.to_json())
        return path

    def load_band_map(self, path: str):
        """Use a saved band map; checked against this checkpoint and raster (engine rules)."""
        bands = _bands()
        mapping = bands.BandMapping.from_json(open(path, encoding="utf-8").read(), source=os.path.basename(path))
        count = len(self.raster_bands())
        bands.validate_mapping(mapping, count, self.card.bands, os.path.basename(path))
        self.loaded, self.overrides = mapping, {}
        self._fill()
        return mapping

    def _settings_dir(self) -> str:
        return QgsSettings().value(defaults.SETTING_BAND_MAP_DIR, os.path.expanduser("~"))

    def _browse_load(self):
        path, _ = QFileDialog.getOpenFileName(self, "Load a band map", self._settings_dir(), "Band map (*.json)")
        if path:
            QgsSettings().setValue(defaults.SETTING_BAND_MAP_DIR, os.path.dirname(path))
            try:
                self.load_band_map(path)
            except Exception as exc:  # noqa: BLE001
                self.status.setText(errors.for_qgis(exc, "dock"))

    def _browse_save(self):
        path, _ = QFileDialog.getSaveFileName(self, "Save the band map", self._settings_dir(), "Band map (*.json)")
        if path:
            QgsSettings().setValue(defaults.SETTING_BAND_MAP_DIR, os.path.dirname(path))
            try:
                self.save_band_map(path)
                self.status.setText(f"Band map saved to {path}.")
            except Exception as exc:  # noqa: BLE001
                self.status.setText(str(exc))

    def shutdown(self):
        self._alive = False
        if self._task is not None:
            self._task.cancel()


class BandSourceDelegate(QStyledItemDelegate):
    """Editor for the 'Raster band' column: 'automatic' and every raster band."""

    def __init__(self, band_table: BandTable):
        super().__init__(band_table)
        self.band_table = band_table

    def createEditor(self, parent, option, index):  # noqa: N802
        combo = QComboBox(parent)
        combo.addItem(self.band_table.auto_label(index.row()), AUTO)
        for label, value in self.band_table.source_choices():
            combo.addItem(label, value)
        return combo

    def setEditorData(self, editor, index):  # noqa: N802
        i = editor.findData(index.data(Qt.ItemDataRole.UserRole))
        editor.setCurrentIndex(max(i, 0))

    def setModelData(self, editor, model, index):  # noqa: N802
        self.band_table.set_row_source(index.row(), editor.currentData())
