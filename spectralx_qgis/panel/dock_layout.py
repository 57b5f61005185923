"""The panel's widgets, built box by box: the header (Models…, Install…, ?), the missing-dependencies box,
Model, Input and band mapping, Run, Fine-tune from polygons, and the progress row. Each builder puts its
widgets on the dock as attributes (the dock, the tests and the screenshot script use them by name);
`connect(dock)` wires the signals to the dock and its helpers."""

from __future__ import annotations

from qgis.core import QgsMapLayerProxyModel, QgsSettings
from qgis.gui import QgsFieldComboBox, QgsFileWidget, QgsMapLayerComboBox
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from .. import icons
from .._vendor.spectralx.contract import defaults, options
from . import dock_reporting
from .band_table import BandTable
from .card_view import CardView

# the panel's precisions, in the engine's names and order (contract.options.PRECISIONS); fp16 (GPU half
# precision) stays in Processing's advanced PRECISION parameter
_PRECISION_LABELS = {"auto": "Automatic", "fp32": "fp32", "bf16": "bf16", "int8": "int8 backbone (CPU)"}
PRECISIONS = [(name, _PRECISION_LABELS[name]) for name in options.PRECISIONS if name in _PRECISION_LABELS]


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
            super().setText(text)  # rich text (the install guidance) wraps at its own spaces
            return
        # a zero-width space after separators lets Qt break long paths and band lists
        super().setText(text.replace("/", "/\u200b").replace("_", "_\u200b").replace(",", ",\u200b"))
        self.setToolTip(text)

    def text(self):
        return super().text().replace("\u200b", "")


def _tool_button(text: str, tip: str) -> QToolButton:
    button = QToolButton()
    button.setText(text)
    button.setToolTip(tip)
    return button


def _button(text: str, tip: str, icon=None) -> QPushButton:
    button = QPushButton(icon, text) if icon is not None else QPushButton(text)
    button.setToolTip(tip)
    return button


def build(dock) -> None:
    """The whole panel. The header (Models…, Install…, ?, and Install dependencies… when packages are
    missing) sits above the scroll area: never cut off by a narrow panel, never below the fold."""
    outer = QWidget()
    outer_lay = QVBoxLayout(outer)
    outer_lay.setContentsMargins(4, 4, 4, 0)
    dock.body = QWidget()
    lay = QVBoxLayout(dock.body)
    lay.setContentsMargins(0, 0, 4, 4)
    outer_lay.addLayout(header(dock))
    outer_lay.addWidget(dock.install_deps_button)
    lay.addWidget(install_box(dock))
    dock.controls = QWidget()
    cl = QVBoxLayout(dock.controls)
    cl.setContentsMargins(0, 0, 0, 0)
    lay.addWidget(dock.controls)
    for box in (model_box(dock), input_box(dock), run_box(dock), finetune_box(dock)):
        cl.addWidget(box)
    lay.addLayout(progress_row(dock))
    dock.status = WrappingLabel("")
    lay.addWidget(dock.status)
    lay.addStretch(1)
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    scroll.setWidget(dock.body)
    scroll.setFrameShape(QScrollArea.Shape.NoFrame)
    outer_lay.addWidget(scroll, 1)
    dock.setWidget(outer)


def header(dock) -> QHBoxLayout:
    """Models…, Install…, ?: reachable while the controls wait for dependencies."""
    top = QHBoxLayout()
    dock.models_button = _tool_button(
        "Models…",
        "The model manager: your checkpoints and backbones, add a " "backbone, download known foundation models",
    )
    dock.setup_button = _tool_button(
        "Install…",
        "Install or update the Python packages SpectralX needs "
        "(for example the CUDA build of PyTorch) and check the GPU",
    )
    dock.help_button = _tool_button("?", "Open the SpectralX documentation")
    top.addStretch(1)
    for button in (dock.models_button, dock.setup_button, dock.help_button):
        top.addWidget(button)
    dock.install_deps_button = _button(
        "Install dependencies…",
        "Install the pinned packages into a folder of " "your QGIS profile, with a progress bar, and check the GPU",
    )
    dock.install_deps_button.hide()
    return top


def install_box(dock) -> QWidget:
    """Missing dependencies: what is missing, the one-click installer, the manual command to copy."""
    dock.install_box = QWidget()
    dock.install_box.setStyleSheet("QWidget#installBox{background:#fff4e5;border:1px solid #e0a040}")
    dock.install_box.setObjectName("installBox")
    ib = QVBoxLayout(dock.install_box)
    ib.setContentsMargins(6, 6, 6, 6)
    dock.guidance = WrappingLabel()
    ib.addWidget(dock.guidance)
    manual = QHBoxLayout()
    dock.manual_command = QLineEdit()
    dock.manual_command.setReadOnly(True)  # scrolls inside the field: never cut off or widening
    dock.manual_command.setToolTip("Manual fallback: run this in a terminal, then restart QGIS")
    dock.copy_command_button = _tool_button("Copy", "Copy the manual install command")
    manual.addWidget(QLabel("Manual:"))
    manual.addWidget(dock.manual_command, 1)
    manual.addWidget(dock.copy_command_button)
    ib.addLayout(manual)
    dock.install_box.hide()
    return dock.install_box


def model_box(dock) -> QGroupBox:
    box = QGroupBox("Model")
    form = narrow_form(box)
    row = QHBoxLayout()
    dock.checkpoint_combo = QComboBox()
    dock.checkpoint_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    dock.checkpoint_combo.setMinimumContentsLength(12)
    dock.checkpoint_combo.setToolTip("The SpectralX model (.safetensors) that classifies the raster")
    dock.browse_button = _tool_button("…", "Open a checkpoint file")
    row.addWidget(dock.checkpoint_combo, 1)
    row.addWidget(dock.browse_button)
    form.addRow("Checkpoint", row)
    dock.backbone_widget = QgsFileWidget()
    dock.backbone_widget.setFilter("Backbone (*.safetensors *.pth *.pt *.ckpt)")
    dock.backbone_widget.setToolTip(
        "The frozen foundation model the checkpoint adapts. Only needed when "
        "it is not beside the checkpoint (its sha256 is checked)."
    )
    form.addRow("Backbone", dock.backbone_widget)
    dock.card_view = CardView()
    form.addRow(dock.card_view)
    return box


def input_box(dock) -> QGroupBox:
    box = QGroupBox("Input and band mapping")
    v = QVBoxLayout(box)
    form = narrow_form()
    dock.layer_combo = QgsMapLayerComboBox()
    dock.layer_combo.setFilters(QgsMapLayerProxyModel.Filter.RasterLayer)
    dock.layer_combo.setAllowEmptyLayer(True)
    dock.layer_combo.setLayer(None)
    dock.layer_combo.setToolTip("The raster to classify (any GDAL file: GeoTIFF, ENVI, …)")
    form.addRow("Raster", dock.layer_combo)
    v.addLayout(form)
    dock.bands = BandTable()
    v.addWidget(dock.bands)
    dock.band_table = dock.bands.table  # the table widget itself (tests, screenshot)
    dock.band_status = dock.bands.status
    return box


def device_rows(dock, form: QFormLayout) -> None:
    """Device, then precision (it goes to segment(precision=…), as Processing's PRECISION does)."""
    dock.device_combo = QComboBox()
    dock.device_combo.setToolTip("Where the network runs. Automatic picks a CUDA GPU, then Apple MPS, then the CPU.")
    form.addRow("Device", dock.device_combo)
    dock.precision_combo = QComboBox()
    for key, label in PRECISIONS:
        dock.precision_combo.addItem(label, key)
    dock.precision_combo.setToolTip(
        "Automatic: bf16 on a CUDA GPU; on the CPU the int8 backbone for ViT-B and "
        "larger models when it agreed with fp32 and ran faster on a test tile, fp32 "
        "otherwise. The model card's accuracy was measured in float (fp32)."
    )
    form.addRow("Precision", dock.precision_combo)


def run_box(dock) -> QGroupBox:
    box = QGroupBox("Run")
    form = narrow_form(box)
    device_rows(dock, form)
    dock.overlap_spin = QDoubleSpinBox()
    dock.overlap_spin.setRange(0.0, defaults.OVERLAP_MAX)
    dock.overlap_spin.setSingleStep(0.05)
    dock.overlap_spin.setValue(defaults.OVERLAP)
    dock.overlap_spin.setToolTip(
        "Share of each tile that overlaps its neighbours; overlaps are blended, "
        "so there are no seams. More overlap: smoother, slower."
    )
    form.addRow("Overlap", dock.overlap_spin)
    dock.batch_spin = QSpinBox()
    dock.batch_spin.setRange(1, defaults.BATCH_SIZE_MAX)
    dock.batch_spin.setValue(defaults.BATCH_SIZE)
    dock.batch_spin.setToolTip("Tiles per pass through the network: larger is faster on a GPU and needs more memory.")
    form.addRow("Batch size", dock.batch_spin)
    dock.output_dir = QgsFileWidget()
    dock.output_dir.setStorageMode(QgsFileWidget.StorageMode.GetDirectory)
    dock.output_dir.setFilePath(QgsSettings().value(defaults.SETTING_OUTPUT_DIR, defaults.default_output_dir()))
    dock.output_dir.setToolTip("Class rasters are written here; fine-tuned models go to the model folder " "(Models…).")
    form.addRow("Output folder", dock.output_dir)
    dock.vector_option = dock_reporting.VectorOption()
    form.addRow("Vector output (MMU)", dock.vector_option)
    form.addRow(run_buttons(dock))
    return box


def run_buttons(dock) -> QGridLayout:
    buttons = QGridLayout()
    dock.segment_layer_button = _button(
        "Segment layer", "Classify the whole raster layer in the background", icons.icon()
    )
    dock.segment_view_button = _button(
        "Segment current view", "Classify only the part of the raster shown on " "the map"
    )
    dock.draw_button = _button("Draw area", "Drag a rectangle on the map: just that area is classified")
    dock.draw_button.setCheckable(True)
    # the two short buttons share a row, the long ones get their own (fits a 300 px panel)
    buttons.addWidget(dock.segment_layer_button, 0, 0)
    buttons.addWidget(dock.draw_button, 0, 1)
    buttons.addWidget(dock.segment_view_button, 1, 0, 1, 2)
    dock.report_button = _button(
        "Accuracy and area report…",
        "Accuracy and error-adjusted areas with 95 % "
        "intervals from labelled reference points (Processing ▸ SpectralX ▸ Create "
        "reference sample draws them); the report opens here",
    )
    buttons.addWidget(dock.report_button, 2, 0, 1, 2)
    return buttons


def finetune_box(dock) -> QGroupBox:
    box = QGroupBox("Fine-tune from polygons")
    form = narrow_form(box)
    dock.polygon_combo = QgsMapLayerComboBox()
    dock.polygon_combo.setFilters(QgsMapLayerProxyModel.Filter.PolygonLayer)
    dock.polygon_combo.setAllowEmptyLayer(True)
    dock.polygon_combo.setLayer(None)
    dock.polygon_combo.setToolTip("Polygons you digitized over the raster, one class per polygon")
    form.addRow("Polygons", dock.polygon_combo)
    dock.field_combo = QgsFieldComboBox()
    dock.field_combo.setToolTip("The field that holds each polygon's class (a name such as 'water', or a code)")
    form.addRow("Class field", dock.field_combo)
    dock.steps_spin = QSpinBox()
    dock.steps_spin.setRange(1, defaults.STEPS_MAX)
    dock.steps_spin.setValue(defaults.training_default("finetune", "steps"))
    dock.steps_spin.setToolTip("Training steps. The best model on the held-out polygons is kept.")
    form.addRow("Steps", dock.steps_spin)
    method_rows(dock, form)
    dock.finetune_button = _button(
        "Fine-tune from polygons",
        "Train a new model for this raster from the "
        "polygons; it is selected when done. Starts from the chosen checkpoint, or "
        "from the backbone alone when none is chosen.",
    )
    form.addRow(dock.finetune_button)
    loop_rows(dock, form)
    return box


def method_rows(dock, form: QFormLayout) -> None:
    dock.method_combo = QComboBox()
    dock.method_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    dock.method_combo.setMinimumContentsLength(12)
    for key, label in (
        ("spectralx", "SpectralX"),
        ("lora", "LoRA (baseline)"),
        ("slr", "SLR (baseline)"),
        ("full", "Full fine-tune (baseline)"),
        ("forest", "Random forest (no network)"),
    ):
        dock.method_combo.addItem(label, key)
    dock.method_combo.setToolTip(
        "SpectralX trains small adapters on the frozen backbone. LoRA, SLR and full "
        "fine-tuning are baselines for comparison; Random forest trains the "
        "per-pixel forest alone (no backbone needed). Every new model is also "
        "compared with a random forest on the same pixels (shown in its card)."
    )
    form.addRow("Method", dock.method_combo)
    dock.fuse_check = QCheckBox("Pool with a random forest")
    dock.fuse_check.setChecked(defaults.training_default("finetune", "fuse") != "none")
    dock.fuse_check.setToolTip(
        "Combine the network's class probabilities with a random forest trained on "
        "the same pixels. The forest's weight (0 = network alone, 1 = forest alone) "
        "is chosen on the held-out polygons; the card shows all three scores and "
        "which model makes the map."
    )
    form.addRow(dock.fuse_check)


def loop_rows(dock, form: QFormLayout) -> None:
    """The loop's second half: where to label next, then the next round from the current model."""
    dock.suggest_spin = QSpinBox()
    dock.suggest_spin.setRange(1, 1000)
    dock.suggest_spin.setValue(20)
    dock.suggest_spin.setToolTip("How many places to suggest")
    dock.suggest_button = _button(
        "Suggest where to label",
        "Adds a point layer of places where a new label "
        "helps most: the model is unsure there, or its network and forest disagree; "
        "spread over the area and the classes. Uses the area of the last "
        "segmentation, else the layer.",
    )
    dock.again_button = _button(
        "Fine-tune again",
        "The next round: continues from the selected fine-tuned "
        "model with every polygon of the layer (old and new); the card keeps each "
        "round's scores",
    )
    form.addRow("Places to suggest", dock.suggest_spin)
    form.addRow(dock.suggest_button)
    form.addRow(dock.again_button)


def progress_row(dock) -> QHBoxLayout:
    prow = QHBoxLayout()
    dock.progress = QProgressBar()
    dock.progress.setRange(0, 100)
    dock.progress.setValue(0)
    dock.cancel_button = _button("Cancel", "Stop the run; nothing it started writing is kept")
    dock.cancel_button.setEnabled(False)
    prow.addWidget(dock.progress, 1)
    prow.addWidget(dock.cancel_button)
    return prow


def connect(dock) -> None:
    """Every signal of the panel, to bound slots (not lambdas where avoidable: Qt drops bound slots
    when the panel is deleted)."""
    dock.help_button.clicked.connect(dock.setup.open_help)
    dock.install_deps_button.clicked.connect(dock.open_installer)
    dock.setup_button.clicked.connect(dock.open_installer)
    dock.copy_command_button.clicked.connect(dock.setup.copy_manual_command)
    dock.models_button.clicked.connect(dock.open_model_manager)
    dock.browse_button.clicked.connect(dock.checkpoints.browse)
    dock.checkpoint_combo.currentIndexChanged.connect(dock.checkpoints.changed)
    dock.layer_combo.layerChanged.connect(dock.layer_changed)
    dock.polygon_combo.layerChanged.connect(dock.layers.polygons_changed)
    dock.output_dir.fileChanged.connect(dock.setup.save_output_dir)
    dock.bands.bandsReady.connect(dock.bandsReady)
    dock.method_combo.currentIndexChanged.connect(dock.flows.method_changed)
    dock.segment_layer_button.clicked.connect(dock.segment_layer)
    dock.segment_view_button.clicked.connect(dock.segment_view)
    dock.draw_button.toggled.connect(dock.drawer.toggle)
    dock.report_button.clicked.connect(dock.flows.report)
    dock.finetune_button.clicked.connect(dock.finetune)
    dock.suggest_button.clicked.connect(dock.suggest)
    dock.again_button.clicked.connect(dock.finetune_again)
    dock.cancel_button.clicked.connect(dock.cancel)
    dock.runs.busyChanged.connect(dock.flows.set_busy)
    dock.runs.progress.connect(dock.progress.setValue)
    dock.runs.status.connect(dock.status.setText)
    dock.runs.message.connect(dock._message)
    dock.runs.finished.connect(dock.runFinished)
