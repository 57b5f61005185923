"""The SpectralX dock panel: gathers a typed request from its widgets and hands it to the run
controller. The band box (`band_table.BandTable`), the model card (`card_view.CardView`) and the run
lifecycle (`run_controller.RunController`) live in their own modules."""
from __future__ import annotations

import os
import tempfile
from typing import Any, List, Optional

from qgis.core import (Qgis, QgsCoordinateTransform, QgsMapLayerProxyModel, QgsProject, QgsWkbTypes,
                       QgsRasterLayer, QgsRectangle, QgsSettings, QgsVectorLayer)
from qgis.gui import QgsDockWidget, QgsFieldComboBox, QgsFileWidget, QgsMapLayerComboBox
from qgis.PyQt.QtCore import QUrl, Qt, pyqtSignal
from qgis.PyQt.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QGridLayout, QGroupBox,
                                 QHBoxLayout, QLabel, QProgressBar, QPushButton, QScrollArea, QSizePolicy,
                                 QLineEdit, QSpinBox, QToolButton, QVBoxLayout, QWidget)

from . import deps, icons
from .band_table import BandTable
from .card_view import CardView
from . import dock_reporting
from .maptool import RectangleMapTool
from .requests import FinetuneRequest, SegmentRequest
from .run_controller import RunController
from .tasks import FinetuneTask, SegmentTask

def help_url() -> QUrl:
    """The panel's help page (bundled in help_text.py), written once to a temporary file and opened
    in the system's browser."""
    from .help_text import HELP_HTML
    path = os.path.join(tempfile.gettempdir(), "spectralx_qgis_help.html")
    if not os.path.isfile(path) or open(path, encoding="utf-8").read() != HELP_HTML:
        with open(path, "w", encoding="utf-8") as f:
            f.write(HELP_HTML)
    return QUrl.fromLocalFile(path)


def narrow_form(parent=None) -> QFormLayout:
    """A form whose fields go below their labels when the panel is narrow (a 300 px dock shows
    every control instead of cutting off the right side)."""
    form = QFormLayout(parent) if parent is not None else QFormLayout()
    form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
    form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
    return form


class WrappingLabel(QLabel):
    """A word-wrapped label that never asks for more width than the panel has (long paths wrap
    anywhere instead of widening the dock and pushing buttons off screen)."""

    def __init__(self, text="", parent=None):
        super().__init__(text, parent)
        self.setWordWrap(True)
        self.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setMinimumWidth(50)

    def setText(self, text):  # noqa: N802
        text = str(text)
        if "</" in text or text.lstrip().startswith("<"):
            super().setText(text)         # rich text (the install guidance) wraps at its own spaces
            return
        # a zero-width space after separators lets Qt break long paths and band lists
        super().setText(text.replace("/", "/\u200b").replace("_", "_\u200b").replace(",", ",\u200b"))
        self.setToolTip(text)

    def text(self):
        return super().text().replace("\u200b", "")


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
        self.map_tool: Optional[RectangleMapTool] = None
        self.last_layers: List[Any] = []
        self.last_bbox = None             # the area of the last segmentation (None: the whole layer)
        self.start_note = ""              # said when a fine-tune does not start from the selected checkpoint
        self.runs = RunController(self)
        self._alive = True
        self._build()
        self._check_dependencies()
        self._follow_active_layer()

    # ------------------------------------------------------------------ UI
    def _build(self):
        defaults = deps.defaults()
        # the header (Models…, Install…, ?, and Install dependencies… when packages are missing) sits
        # above the scroll area: never cut off by a narrow panel, never below the fold
        outer = QWidget()
        outer_lay = QVBoxLayout(outer)
        outer_lay.setContentsMargins(4, 4, 4, 0)
        body = QWidget()
        self.body = body
        lay = QVBoxLayout(body)
        lay.setContentsMargins(0, 0, 4, 4)

        top = QHBoxLayout()
        # missing dependencies: what is missing, the one-click installer, the manual command to copy
        self.install_box = QWidget()
        self.install_box.setStyleSheet("QWidget#installBox{background:#fff4e5;border:1px solid #e0a040}")
        self.install_box.setObjectName("installBox")
        ib = QVBoxLayout(self.install_box)
        ib.setContentsMargins(6, 6, 6, 6)
        self.guidance = WrappingLabel()
        ib.addWidget(self.guidance)
        self.install_deps_button = QPushButton("Install dependencies…")
        self.install_deps_button.setToolTip("Install the pinned packages into a folder of your QGIS profile, "
                                            "with a progress bar, and check the GPU")
        self.install_deps_button.hide()
        manual = QHBoxLayout()
        self.manual_command = QLineEdit()
        self.manual_command.setReadOnly(True)          # scrolls inside the field: never cut off or widening
        self.manual_command.setToolTip("Manual fallback: run this in a terminal, then restart QGIS")
        self.copy_command_button = QToolButton()
        self.copy_command_button.setText("Copy")
        self.copy_command_button.setToolTip("Copy the manual install command")
        manual.addWidget(QLabel("Manual:"))
        manual.addWidget(self.manual_command, 1)
        manual.addWidget(self.copy_command_button)
        ib.addLayout(manual)
        self.install_box.hide()
        self.models_button = QToolButton()
        self.models_button.setText("Models…")
        self.models_button.setToolTip("The model manager: your checkpoints and backbones, add a backbone, "
                                      "download known foundation models")
        self.setup_button = QToolButton()
        self.setup_button.setText("Install…")
        self.setup_button.setToolTip("Install or update the Python packages SpectralX needs "
                                     "(for example the CUDA build of PyTorch) and check the GPU")
        self.help_button = QToolButton()
        self.help_button.setText("?")
        self.help_button.setToolTip("Open the SpectralX documentation")
        top.addStretch(1)
        # the model manager and the installer stay reachable while the controls wait for dependencies
        top.addWidget(self.models_button)
        top.addWidget(self.setup_button)
        top.addWidget(self.help_button)
        outer_lay.addLayout(top)
        outer_lay.addWidget(self.install_deps_button)
        lay.addWidget(self.install_box)
        self.install_dialog = None
        self.model_dialog = None

        self.controls = QWidget()
        cl = QVBoxLayout(self.controls)
        cl.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.controls)

        # model
        box = QGroupBox("Model")
        form = narrow_form(box)
        row = QHBoxLayout()
        self.checkpoint_combo = QComboBox()
        self.checkpoint_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.checkpoint_combo.setMinimumContentsLength(12)
        self.checkpoint_combo.setToolTip("The SpectralX model (.safetensors) that classifies the raster")
        self.browse_button = QToolButton()
        self.browse_button.setText("…")
        self.browse_button.setToolTip("Open a checkpoint file")
        row.addWidget(self.checkpoint_combo, 1)
        row.addWidget(self.browse_button)
        form.addRow("Checkpoint", row)
        self.backbone_widget = QgsFileWidget()
        self.backbone_widget.setFilter("Backbone (*.safetensors *.pth *.pt *.ckpt)")
        self.backbone_widget.setToolTip("The frozen foundation model the checkpoint adapts. Only needed when "
                                        "it is not beside the checkpoint (its sha256 is checked).")
        form.addRow("Backbone", self.backbone_widget)
        self.card_view = CardView()
        form.addRow(self.card_view)
        cl.addWidget(box)

        # input + bands
        box = QGroupBox("Input and band mapping")
        v = QVBoxLayout(box)
        form = narrow_form()
        self.layer_combo = QgsMapLayerComboBox()
        self.layer_combo.setFilters(QgsMapLayerProxyModel.Filter.RasterLayer)
        self.layer_combo.setAllowEmptyLayer(True)
        self.layer_combo.setLayer(None)
        self.layer_combo.setToolTip("The raster to classify (any GDAL file: GeoTIFF, ENVI, …)")
        form.addRow("Raster", self.layer_combo)
        v.addLayout(form)
        self.bands = BandTable()
        v.addWidget(self.bands)
        cl.addWidget(box)
        self.band_table = self.bands.table       # the table widget itself (tests, screenshot)
        self.band_status = self.bands.status

        # run settings
        box = QGroupBox("Run")
        form = narrow_form(box)
        self.device_combo = QComboBox()
        self.device_combo.setToolTip("Where the network runs. Automatic picks a CUDA GPU, then Apple MPS, then the CPU.")
        form.addRow("Device", self.device_combo)
        self.overlap_spin = QDoubleSpinBox()
        self.overlap_spin.setRange(0.0, defaults.OVERLAP_MAX)
        self.overlap_spin.setSingleStep(0.05)
        self.overlap_spin.setValue(defaults.OVERLAP)
        self.overlap_spin.setToolTip("Share of each tile that overlaps its neighbours; overlaps are blended, "
                                     "so there are no seams. More overlap: smoother, slower.")
        form.addRow("Overlap", self.overlap_spin)
        self.batch_spin = QSpinBox()
        self.batch_spin.setRange(1, defaults.BATCH_SIZE_MAX)
        self.batch_spin.setValue(defaults.BATCH_SIZE)
        self.batch_spin.setToolTip("Tiles per pass through the network: larger is faster on a GPU and needs more memory.")
        form.addRow("Batch size", self.batch_spin)
        self.output_dir = QgsFileWidget()
        self.output_dir.setStorageMode(QgsFileWidget.StorageMode.GetDirectory)
        self.output_dir.setFilePath(QgsSettings().value(defaults.SETTING_OUTPUT_DIR, defaults.default_output_dir()))
        self.output_dir.setToolTip("Class rasters are written here; fine-tuned models go to the model folder "
                                   "(Models…).")
        self.output_dir.fileChanged.connect(self._save_output_dir)
        form.addRow("Output folder", self.output_dir)
        self.vector_option = dock_reporting.VectorOption()
        form.addRow("Vector output (MMU)", self.vector_option)
        buttons = QGridLayout()
        self.segment_layer_button = QPushButton(icons.icon(), "Segment layer")
        self.segment_layer_button.setToolTip("Classify the whole raster layer in the background")
        self.segment_view_button = QPushButton("Segment current view")
        self.segment_view_button.setToolTip("Classify only the part of the raster shown on the map")
        self.draw_button = QPushButton("Draw area")
        self.draw_button.setCheckable(True)
        self.draw_button.setToolTip("Drag a rectangle on the map: just that area is classified")
        # the two short buttons share a row, the long ones get their own (fits a 300 px panel)
        buttons.addWidget(self.segment_layer_button, 0, 0)
        buttons.addWidget(self.draw_button, 0, 1)
        buttons.addWidget(self.segment_view_button, 1, 0, 1, 2)
        self.report_button = QPushButton("Accuracy and area report…")
        self.report_button.setToolTip("Accuracy and error-adjusted areas with 95 % intervals from labelled reference "
                                      "points (Processing ▸ SpectralX ▸ Create reference sample draws them); the "
                                      "report opens here")
        self.report_button.clicked.connect(lambda: dock_reporting.run_report(self))
        buttons.addWidget(self.report_button, 2, 0, 1, 2)
        form.addRow(buttons)
        cl.addWidget(box)

        # fine-tune
        box = QGroupBox("Fine-tune from polygons")
        form = narrow_form(box)
        self.polygon_combo = QgsMapLayerComboBox()
        self.polygon_combo.setFilters(QgsMapLayerProxyModel.Filter.PolygonLayer)
        self.polygon_combo.setAllowEmptyLayer(True)
        self.polygon_combo.setLayer(None)
        self.polygon_combo.setToolTip("Polygons you digitized over the raster, one class per polygon")
        form.addRow("Polygons", self.polygon_combo)
        self.field_combo = QgsFieldComboBox()
        self.field_combo.setToolTip("The field that holds each polygon's class (a name such as 'water', or a code)")
        form.addRow("Class field", self.field_combo)
        self.steps_spin = QSpinBox()
        self.steps_spin.setRange(1, defaults.STEPS_MAX)
        self.steps_spin.setValue(defaults.training_default("finetune", "steps"))
        self.steps_spin.setToolTip("Training steps. The best model on the held-out polygons is kept.")
        form.addRow("Steps", self.steps_spin)
        self.method_combo = QComboBox()
        self.method_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.method_combo.setMinimumContentsLength(12)
        for key, label in (("spectralx", "SpectralX"), ("lora", "LoRA (baseline)"), ("slr", "SLR (baseline)"),
                           ("full", "Full fine-tune (baseline)"), ("forest", "Random forest (no network)")):
            self.method_combo.addItem(label, key)
        self.method_combo.setToolTip("SpectralX trains small adapters on the frozen backbone. LoRA, SLR and full "
                                     "fine-tuning are baselines for comparison; Random forest trains the "
                                     "per-pixel forest alone (no backbone needed). Every new model is also "
                                     "compared with a random forest on the same pixels (shown in its card).")
        form.addRow("Method", self.method_combo)
        self.fuse_check = QCheckBox("Pool with a random forest")
        self.fuse_check.setChecked(defaults.training_default("finetune", "fuse") != "none")
        self.fuse_check.setToolTip("Combine the network's class probabilities with a random forest trained on "
                                   "the same pixels. The forest's weight (0 = network alone, 1 = forest alone) "
                                   "is chosen on the held-out polygons; the card shows all three scores and "
                                   "which model makes the map.")
        form.addRow(self.fuse_check)
        self.method_combo.currentIndexChanged.connect(
            lambda _i: self.fuse_check.setEnabled(self.method_combo.currentData() != "forest"))
        self.finetune_button = QPushButton("Fine-tune from polygons")
        self.finetune_button.setToolTip("Train a new model for this raster from the polygons; it is selected "
                                        "when done. Starts from the chosen checkpoint, or from the backbone "
                                        "alone when none is chosen.")
        form.addRow(self.finetune_button)
        # the loop's second half: where to label next, then the next round from the current model
        self.suggest_spin = QSpinBox()
        self.suggest_spin.setRange(1, 1000)
        self.suggest_spin.setValue(20)
        self.suggest_spin.setToolTip("How many places to suggest")
        self.suggest_button = QPushButton("Suggest where to label")
        self.suggest_button.setToolTip("Adds a point layer of places where a new label helps most: the model is "
                                       "unsure there, or its network and forest disagree; spread over the area "
                                       "and the classes. Uses the area of the last segmentation, else the layer.")
        self.again_button = QPushButton("Fine-tune again")
        self.again_button.setToolTip("The next round: continues from the selected fine-tuned model with every "
                                     "polygon of the layer (old and new); the card keeps each round's scores")
        form.addRow("Places to suggest", self.suggest_spin)
        form.addRow(self.suggest_button)
        form.addRow(self.again_button)
        cl.addWidget(box)

        # progress
        prow = QHBoxLayout()
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.setToolTip("Stop the run; nothing it started writing is kept")
        prow.addWidget(self.progress, 1)
        prow.addWidget(self.cancel_button)
        lay.addLayout(prow)
        self.status = WrappingLabel("")
        lay.addWidget(self.status)
        lay.addStretch(1)

        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(body)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        outer_lay.addWidget(scroll, 1)
        self.setWidget(outer)

        # signals
        self.help_button.clicked.connect(self.open_help)
        self.install_deps_button.clicked.connect(self.open_installer)
        self.setup_button.clicked.connect(self.open_installer)
        self.copy_command_button.clicked.connect(self._copy_manual_command)
        self.models_button.clicked.connect(self.open_model_manager)
        self.browse_button.clicked.connect(self._browse_checkpoint)
        self.checkpoint_combo.currentIndexChanged.connect(self._checkpoint_changed)
        self.layer_combo.layerChanged.connect(self._layer_changed)
        self.polygon_combo.layerChanged.connect(self._polygons_changed)
        self.bands.bandsReady.connect(self.bandsReady)
        self.segment_layer_button.clicked.connect(self.segment_layer)
        self.segment_view_button.clicked.connect(self.segment_view)
        self.draw_button.toggled.connect(self._toggle_draw)
        self.finetune_button.clicked.connect(self.finetune)
        self.suggest_button.clicked.connect(self.suggest)
        self.again_button.clicked.connect(self.finetune_again)
        self.cancel_button.clicked.connect(self.cancel)
        self.runs.busyChanged.connect(self._set_busy)
        self.runs.progress.connect(self.progress.setValue)
        self.runs.status.connect(self.status.setText)
        self.runs.message.connect(self._message)
        self.runs.finished.connect(self.runFinished)

    # bound slots (not lambdas): Qt drops them when the panel is deleted
    def _save_output_dir(self, path):
        QgsSettings().setValue(deps.defaults().SETTING_OUTPUT_DIR, path)

    def open_help(self):
        """The help in a QGIS window (a system browser may not exist, or not open from QGIS)."""
        from qgis.PyQt.QtWidgets import QDialog, QTextBrowser
        from .help_text import HELP_HTML
        if getattr(self, "help_dialog", None) is None:
            self.help_dialog = QDialog(self)
            self.help_dialog.setWindowTitle("SpectralX help")
            browser = QTextBrowser(self.help_dialog)
            browser.setOpenExternalLinks(True)
            browser.setHtml(HELP_HTML)
            QVBoxLayout(self.help_dialog).addWidget(browser)
            self.help_dialog.resize(640, 700)
        self.help_dialog.show()
        self.help_dialog.raise_()
        return self.help_dialog

    @property
    def task(self):
        return self.runs.task

    # ------------------------------------------------------- active layer
    def _follow_active_layer(self):
        """Pickers start on the layer the analyst has selected (raster and polygons)."""
        if self.iface is None:
            return
        try:
            self.iface.currentLayerChanged.connect(self._active_layer_changed)
        except (AttributeError, TypeError):
            pass
        try:
            self._active_layer_changed(self.iface.activeLayer())
        except AttributeError:
            pass

    def _active_layer_changed(self, layer):
        if isinstance(layer, QgsRasterLayer) and self.layer_combo.currentLayer() is None:
            self.set_layer(layer)
        elif isinstance(layer, QgsVectorLayer) and self.polygon_combo.currentLayer() is None and \
                layer.geometryType() == QgsWkbTypes.GeometryType.PolygonGeometry:
            self.polygon_combo.setLayer(layer)

    def preselect_layers(self, project: Optional[QgsProject] = None):
        """Fill empty pickers from the project: the active layer first, else the first of each kind."""
        project = project or QgsProject.instance()
        active = self.iface.activeLayer() if self.iface is not None else None
        if active is not None:
            self._active_layer_changed(active)
        for lyr in project.mapLayers().values():
            self._active_layer_changed(lyr)

    def showEvent(self, event):  # noqa: N802
        super().showEvent(event)
        self.preselect_layers()

    def _polygons_changed(self, layer):
        self.field_combo.setLayer(layer)
        self.field_combo.setField(self.default_class_field(layer))

    @staticmethod
    def default_class_field(layer) -> str:
        """A text field, by the names analysts use for classes first ('fid' is never a class)."""
        from .class_field import default_class_field
        return default_class_field(layer.fields()) if isinstance(layer, QgsVectorLayer) else ""

    # ------------------------------------------------------------ dependencies
    def _check_dependencies(self, refresh: bool = False):
        deps.check(refresh=refresh)
        text = deps.guidance(html=True, command=False)
        if text:
            self.guidance.setText(text)
            self.manual_command.setText(deps.install_command())
            self.manual_command.setCursorPosition(0)
            self.install_box.show()
            self.install_deps_button.show()
            self.controls.setEnabled(False)
            return False
        self.install_box.hide()
        self.install_deps_button.hide()
        self.controls.setEnabled(True)
        self._fill_devices()
        self.bands.fill_sensors(deps.engine("bands").list_sensors())
        self._load_known_checkpoints()
        return True

    def guidance_text(self) -> str:
        if self.install_box.isVisible() or not self.controls.isEnabled():
            return self.guidance.text() + "\n" + self.manual_command.text()
        return ""

    def _copy_manual_command(self):
        from qgis.PyQt.QtWidgets import QApplication
        QApplication.clipboard().setText(self.manual_command.text())
        self.status.setText("Install command copied: run it in a terminal, then restart QGIS.")

    def open_installer(self):
        """The dependency installer's dialog (non-modal: QGIS stays usable while it installs)."""
        from .install_dialog import InstallDialog
        if self.install_dialog is None:
            self.install_dialog = InstallDialog(self)
            self.install_dialog.installed.connect(self._dependencies_installed)
        self.install_dialog.show()
        self.install_dialog.raise_()
        return self.install_dialog

    def _dependencies_installed(self, result):
        if self._check_dependencies(refresh=True):
            self._message("SpectralX dependencies installed: " + result.message, Qgis.Success)
        elif not result.live_now:
            self._message(result.message, Qgis.Warning)

    def open_model_manager(self):
        """The model manager: models in the user folder, backbone import, known releases."""
        from .model_manager import ModelManagerDialog
        if self.model_dialog is None:
            self.model_dialog = ModelManagerDialog(self)
            self.model_dialog.modelsChanged.connect(self._load_known_checkpoints)
        self.model_dialog.show()
        self.model_dialog.raise_()
        return self.model_dialog

    def _fill_devices(self):
        self.device_combo.clear()
        try:
            devices = deps.engine("devices").available_devices()
        except Exception as exc:  # noqa: BLE001
            devices = [("cpu", "CPU")]
            self.status.setText(f"Device list unavailable: {exc}")
        self.device_combo.addItem("Automatic (best available)", deps.defaults().DEVICE)
        for dev_id, label in devices:
            self.device_combo.addItem(label, dev_id)

    # ------------------------------------------------------------- checkpoints
    def _known_checkpoint_paths(self) -> List[str]:
        paths = QgsSettings().value(deps.defaults().SETTING_CHECKPOINTS, []) or []
        if isinstance(paths, str):
            paths = [paths]
        from . import model_store
        here = os.path.dirname(os.path.abspath(__file__))
        # what the model manager knows (the user model folder) first, then the bundled demo model
        folders = [model_store.user_model_dir(), os.path.join(here, "models"),
                   os.path.join(os.path.dirname(here), "resources", "models")]
        for folder in folders:
            if os.path.isdir(folder):
                paths += model_store.checkpoint_paths(folder)
        out = []
        for p in paths:
            if p and os.path.isfile(p) and p not in out:
                out.append(p)
        return out

    def _load_known_checkpoints(self):
        """(Re)fill the picker; the chosen checkpoint stays chosen (a refresh after an install or a
        model-manager change must not drop the analyst's model and its card)."""
        current = self.checkpoint_path()
        self.checkpoint_combo.blockSignals(True)
        self.checkpoint_combo.clear()
        self.checkpoint_combo.addItem("— choose a checkpoint —", "")
        paths = self._known_checkpoint_paths()
        if current and current not in paths and os.path.isfile(current):
            paths.insert(0, current)
        for p in paths:
            self.checkpoint_combo.addItem(os.path.basename(p), p)
            self.checkpoint_combo.setItemData(self.checkpoint_combo.count() - 1, p, Qt.ItemDataRole.ToolTipRole)
        if current:
            self.checkpoint_combo.setCurrentIndex(max(self.checkpoint_combo.findData(current), 0))
        self.checkpoint_combo.blockSignals(False)
        if current and not self.checkpoint_path():      # the file is gone: say so through the card
            self._checkpoint_changed()
        elif current and self.card is None:             # a stale error in the card: read the file again
            self._checkpoint_changed()

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
            self.checkpoint_combo.setItemData(idx, path, Qt.ItemDataRole.ToolTipRole)
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
            self.card_view.clear_card()
            self.refresh_bands()
            return
        try:
            self.card = deps.engine("checkpoint").read_card(path)
        except Exception as exc:  # noqa: BLE001  (engine errors are one-liners)
            self.card_view.show_error(deps.engine("bands").explain(exc, "dock"))
            self.refresh_bands()
            return
        key = deps.defaults().SETTING_CHECKPOINTS
        known = [p for p in (QgsSettings().value(key, []) or []) if p != path]
        QgsSettings().setValue(key, ([path] + known)[:20])
        self.card_view.show_card(self.card, path)
        self.checkpointChanged.emit(path)
        self.refresh_bands()

    # ------------------------------------------------------------------ layer
    def _layer_changed(self, _layer):
        self.last_bbox = None
        if self.map_tool is not None:
            self.map_tool.setLayer(self.current_layer())
        self.refresh_bands()

    def set_layer(self, layer):
        if self.layer_combo.currentLayer() is layer:
            self.refresh_bands()
        else:
            self.layer_combo.setLayer(layer)          # -> _layer_changed

    def current_layer(self) -> Optional[QgsRasterLayer]:
        lyr = self.layer_combo.currentLayer()
        return lyr if isinstance(lyr, QgsRasterLayer) else None

    # ------------------------------------------------------------------ bands
    def refresh_bands(self):
        layer = self.current_layer()
        if layer is not None and layer.providerType() != "gdal":
            self.bands.set_inputs(None, "")
            self.band_status.setText("This layer is not a raster file; save it as GeoTIFF first.")
            return
        if layer is None:
            self.bands.set_inputs(self.card, "")
        else:
            self.bands.set_inputs(self.card, layer.source().split("|")[0], layer.bandCount())

    def bands_pending(self) -> bool:
        return self.bands.pending()

    def set_sensor(self, key: str, order: Optional[str] = None):
        self.bands.set_sensor(key, order)

    def set_row_source(self, row: int, value: int):
        self.bands.set_row_source(row, value)

    def band_map_argument(self):
        return self.bands.band_map_argument()

    # ------------------------------------------------------------------- runs
    def _set_busy(self, busy: bool):
        self.cancel_button.setEnabled(busy)
        for b in (self.segment_layer_button, self.segment_view_button, self.finetune_button, self.draw_button,
                  self.suggest_button, self.again_button):
            b.setEnabled(not busy)
        if busy and self.draw_button.isChecked():
            self.draw_button.setChecked(False)        # leaves the map tool too

    def _message(self, text: str, level=Qgis.Info):
        self.status.setText(text)
        bar = self.iface.messageBar() if self.iface is not None else None
        if bar is not None:
            try:
                bar.pushMessage("SpectralX", text, level=level, duration=8)
            except TypeError:
                bar.pushMessage("SpectralX", text, level)

    def output_folder(self) -> str:
        folder = self.output_dir.filePath() or deps.defaults().default_output_dir()
        os.makedirs(folder, exist_ok=True)
        return folder

    @staticmethod
    def models_folder() -> str:
        """Where fine-tuned models go: the model manager's folder (one folder for all models)."""
        from . import model_store
        return model_store.user_model_dir()

    def _backbone(self) -> Optional[str]:
        explicit = self.backbone_widget.filePath().strip()
        if explicit:
            return explicit
        # beside the checkpoint or in the user's model folder: the engine finds (and verifies) it.
        # No hashing here: a ViT-L backbone is 1.2 GB, and this runs on the UI thread.
        if getattr(self.card, "is_forest", False):
            return None                   # a forest checkpoint has no backbone to find
        name = os.path.basename(self.card.backbone.file)
        folders = [os.path.dirname(self.checkpoint_path()), deps.engine("checkpoint").user_model_dir()]
        if any(os.path.isfile(os.path.join(f, name)) for f in folders):
            return None
        known = QgsSettings().value(deps.defaults().backbone_setting(self.card.backbone.sha256), "")
        return known if known and os.path.isfile(known) else None

    def _can_start(self) -> bool:
        if self.runs.busy():
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
        """The canvas extent in the layer's CRS."""
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

    def segment_request(self, layer, rect: Optional[QgsRectangle], kind: str) -> SegmentRequest:
        """Everything a segmentation needs, read from the panel."""
        band_map, sensor = self.bands.for_run()
        output, confidence = self.runs.segment_paths(self.output_folder(), layer.name(), self.checkpoint_path(), kind)
        bbox = None if rect is None else (rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum())
        return SegmentRequest(layer.source().split("|")[0], self.checkpoint_path(), output, confidence=confidence,
                              backbone=self._backbone(), band_map=band_map, sensor=sensor, bbox=bbox,
                              overlap=self.overlap_spin.value(), batch_size=self.batch_spin.value(),
                              device=self.device_combo.currentData() or deps.defaults().DEVICE)

    def _segment(self, rect: Optional[QgsRectangle], kind: str):
        layer = self._ready()
        if layer is None:
            return None
        try:
            request = self.segment_request(layer, rect, kind)
        except Exception as exc:  # noqa: BLE001  (engine errors: one line in the panel's words)
            self._message(deps.engine("bands").explain(exc, "dock"), Qgis.Critical)
            return None
        name = self.runs.layer_name(layer.name(), self.checkpoint_path(), kind)
        classes = list(self.card.classes)
        self.last_bbox = request.bbox      # Suggest where to label scores the same area
        task = SegmentTask(request, description=f"SpectralX: segment {layer.name()}")
        return self.runs.start(task, lambda t: self._segment_done(t, name, classes))

    def _segment_done(self, task, name, classes):
        if task.succeeded and task.result_value is not None:
            try:
                self.last_layers = self.runs.load_segmentation(task, name, classes)
            except Exception as exc:  # noqa: BLE001
                self._message(str(exc), Qgis.Critical)
            dock_reporting.vectorize_after(self, task, name)     # the Vector output (MMU) option

    def finetune_request(self, layer, polygons, field: str):
        """Burn the polygons into a label raster (through QGIS) and describe the fine-tune run.
        Returns (request, temporary folder to remove after the run)."""
        from .dock_loop import next_round
        from .polygons import rasterize_polygons
        image = layer.source().split("|")[0]
        work = tempfile.mkdtemp(prefix="spectralx_labels_")
        try:
            burnt = rasterize_polygons(polygons.getFeatures(), polygons.fields(), field, polygons.crs(), image,
                                       os.path.join(work, "labels.tif"), deps.engine("training.classes"),
                                       what=f"'{polygons.name()}'")
            start = self.starting_point(layer)
        except Exception:
            import shutil
            shutil.rmtree(work, ignore_errors=True)
            raise
        self.start_note = start.note
        request = FinetuneRequest(
            image, burnt.path, self.runs.model_path(self.models_folder(), start.checkpoint or "", layer.name(),
                                                    next_round(self.card) if start.checkpoint else 1),
            checkpoint=start.checkpoint, backbone=start.backbone, sensor=start.sensor,
            band_map=start.band_map if start.band_map not in ("auto",) else None,
            steps=self.steps_spin.value(), batch_size=self.batch_spin.value(),
            device=self.device_combo.currentData() or deps.defaults().DEVICE,
            method=self.method_combo.currentData() or None,
            fuse="forest" if self.fuse_check.isChecked() else "none")
        return request, work

    def starting_point(self, layer):
        """The selected checkpoint, or its backbone when it cannot read `layer` (starting_point.py)."""
        from . import starting_point
        explicit = self.backbone_widget.filePath().strip()
        if self.card is None:
            return starting_point.Start(None, explicit or None, None, self.bands.sensor_spec())
        plan = self.bands.plan
        if plan is None:          # the band table is still reading: the same plan, here
            plan = deps.engine("bands").plan_bands(layer.source().split("|")[0], self.card, self.bands.sensor_spec())
        if self.bands.loaded is None and plan.error is not None and starting_point.cannot_read(plan.error):
            reason = plan.error.for_audience("dock").rsplit(": ", 1)[0]
            return starting_point.from_backbone(self.card, self.checkpoint_path(), explicit,
                                                self.bands.sensor_spec(), reason)
        band_map, sensor = self.bands.for_run()
        return starting_point.Start(self.checkpoint_path(), self._backbone(), band_map, sensor)

    def suggest(self, n: Optional[int] = None):
        from . import dock_loop
        return dock_loop.suggest(self, n)

    def finetune_again(self):
        from . import dock_loop
        return dock_loop.finetune_again(self)

    def finetune(self):
        if not self._can_start():
            return None
        layer = self.current_layer()
        polygons = self.polygon_combo.currentLayer()
        field = self.field_combo.currentField()
        if layer is None or not isinstance(polygons, QgsVectorLayer) or not field:
            self._message("Choose a raster layer, a polygon layer and its class field.", Qgis.Warning)
            return None
        forest = self.method_combo.currentData() == "forest"
        if self.card is None and not self.backbone_widget.filePath() and not forest:
            self._message("Choose a checkpoint to start from, or a backbone file.", Qgis.Warning)
            return None
        from .class_field import identifier_problem
        problem = identifier_problem(field, (f[field] for f in polygons.getFeatures()), f"'{polygons.name()}'",
                                     "the Class field")
        if problem:
            self._message(problem[0].upper() + problem[1:] + ".", Qgis.Warning)
            return None
        try:
            request, work = self.finetune_request(layer, polygons, field)
        except Exception as exc:  # noqa: BLE001
            self._message(deps.engine("bands").explain(exc, "dock"), Qgis.Critical)
            return None
        if self.start_note:
            self._message(self.start_note, Qgis.Info)
        task = FinetuneTask(request, description=f"SpectralX: fine-tune on {polygons.name()}", cleanup=work)
        return self.runs.start(task, lambda t: self._finetune_done(t, request))

    def _finetune_done(self, task, request):
        if not task.succeeded:
            return
        path = getattr(task.result_value, "checkpoint", None) or request.output
        card = deps.engine("checkpoint").read_card(path)
        if request.backbone:
            QgsSettings().setValue(deps.defaults().backbone_setting(card.backbone.sha256), request.backbone)
        self.set_checkpoint(path)
        if self.model_dialog is not None:               # the new model is listed where models are managed
            self.model_dialog.refresh()
        beside = os.path.join(os.path.dirname(path), os.path.basename(card.backbone.file))
        note = (f" Its backbone {os.path.basename(beside)} sits beside it in {os.path.dirname(path)}: "
                "keep the two together.") if card.backbone.file and os.path.isfile(beside) else ""
        warnings = (card.metrics or {}).get("warnings") or []
        if warnings:   # a model that trained badly is said so where the analyst looks, not only in the card
            self._message(f"New model {os.path.basename(path)} selected, but: {warnings[0]}"
                          + (f" (+{len(warnings) - 1} more in its card)" if len(warnings) > 1 else "")
                          + f". Its map uses {card.map_source}.{note}", Qgis.Warning)
            return
        self._message(f"New model {os.path.basename(path)} selected (map: {card.map_source}).{note}", Qgis.Success)

    def cancel(self):
        self.runs.cancel()

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
        self.canvas.setMapTool(self.map_tool)
        if not self.draw_button.isChecked():
            self.draw_button.blockSignals(True)
            self.draw_button.setChecked(True)
            self.draw_button.blockSignals(False)
        return self.map_tool

    def _tool_deactivated(self):
        self.draw_button.setChecked(False)

    def _area_drawn(self, rect: QgsRectangle):
        self.segment_rect(rect)
        if self.map_tool is not None:
            self.map_tool.clear()

    def shutdown(self):
        self._alive = False
        self.bands.shutdown()
        self.runs.shutdown()
        if self.iface is not None:
            try:
                self.iface.currentLayerChanged.disconnect(self._active_layer_changed)
            except (AttributeError, TypeError, RuntimeError):
                pass
        for signal, slot in ((self.layer_combo.layerChanged, self._layer_changed),
                             (self.checkpoint_combo.currentIndexChanged, self._checkpoint_changed)):
            try:
                signal.disconnect(slot)
            except (TypeError, RuntimeError):
                pass
        if self.map_tool is not None and self.canvas is not None and self.canvas.mapTool() is self.map_tool:
            self.canvas.unsetMapTool(self.map_tool)
