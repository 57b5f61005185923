"""Processing: Fine-tune from labelled polygons (`spectralx finetune`, stage 2): a new checkpoint."""

from __future__ import annotations

import json
import os

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputString,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
)

from .._vendor.spectralx.contract import defaults
from ..bridge import training_feedback_progress
from ..panel.requests import FinetuneRequest
from ..setup import deps
from .base import P_BACKBONE, P_CHECKPOINT, P_STEPS, SpectralXAlgorithm, add_starting_point_parameters, raster_path, tr

P_INPUT = "INPUT"
P_LABELS = "LABELS"
P_CLASS_FIELD = "CLASS_FIELD"
P_METHOD = "METHOD"
P_FUSE = "FUSE"
P_VARIANT = "VARIANT"
P_BATCH_SIZE = "BATCH_SIZE"
P_LEARNING_RATE = "LEARNING_RATE"
P_VAL_FRACTION = "VAL_FRACTION"
P_SEED = "SEED"
P_OUTPUT = "OUTPUT"

# fine-tuning methods and variants offered in Processing (spectralx.training.options), default first
FINETUNE_METHODS = [
    ("spectralx", "SpectralX (HyperT + AoMoA + Are-adapter)"),
    ("lora", "LoRA baseline"),
    ("slr", "SLR baseline (LoRA + scaling)"),
    ("full", "Full fine-tune (backbone unfrozen)"),
    ("forest", "Random forest alone (per-pixel spectra, no network)"),
]
# pooling the network with the random forest (spectralx.model.fusion), default first
FINETUNE_FUSIONS = [
    ("forest", "Pool with a random forest (weight chosen on validation pixels)"),
    ("none", "Network alone"),
]
FINETUNE_VARIANTS = [("default", "Default (measured best)"), ("paper", "Paper-faithful")]

HELP = (
    "Stage-2 training: adapts a SpectralX model to your raster and classes from labelled "
    "polygons (or any vector layer with a class field). The frozen backbone is not changed; "
    "only the small spectral adapters and the decoder are trained. Writes a new checkpoint "
    "with a model card holding classes, bands, normalization statistics and validation "
    "metrics.\n\nINPUT: training raster. LABELS: polygons. CLASS_FIELD: field holding the class "
    "(names or integer values). CHECKPOINT: start from this checkpoint (optional). BACKBONE: "
    "backbone file (needed when no checkpoint is given, or when it is not beside it). SENSOR: sensor and "
    "band order for rasters without wavelength metadata, e.g. landsat8:B2,B3,B4. STEPS, "
    "BATCH_SIZE, LEARNING_RATE, VAL_FRACTION: training settings. METHOD: SpectralX, a PEFT baseline, "
    "or the random forest alone. FUSE: pool the network with a random forest trained on the same "
    "pixels, its weight chosen on the validation pixels (default), or the network alone. The log "
    "names the model that makes the map and warns when the network trained badly. OUTPUT: new "
    "checkpoint."
)


class FinetuneAlgorithm(SpectralXAlgorithm):
    _name = "finetune"
    _display = "Fine-tune from labelled polygons"
    _help = HELP

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterRasterLayer(P_INPUT, tr("Training raster")))
        self.addParameter(
            QgsProcessingParameterFeatureSource(P_LABELS, tr("Labelled polygons"), [QgsProcessing.TypeVectorPolygon])
        )
        # optional, no default: QGIS would otherwise pre-select the first field ('fid'); empty picks
        # the class field by the panel's rule (class_field.py)
        p = QgsProcessingParameterField(
            P_CLASS_FIELD,
            tr("Class field (empty: a text field such as 'class')"),
            parentLayerParameterName=P_LABELS,
            optional=True,
        )
        p.setHelp(
            tr(
                "The field holding each polygon's class. Empty: a text field named like a class ('class', "
                "'label', 'landcover', 'name', …), else the first text field. A field with a different "
                "value on every polygon (an identifier such as fid) is refused."
            )
        )
        self.addParameter(p)
        add_starting_point_parameters(self)
        p = QgsProcessingParameterEnum(
            P_METHOD, tr("Method"), options=[label for _, label in FINETUNE_METHODS], defaultValue=0
        )
        p.setHelp(
            tr(
                "SpectralX (default), or a PEFT baseline on the same tokenizer and head for comparison: "
                "LoRA, SLR (LoRA + scaling vectors), full fine-tuning (backbone unfrozen); or the "
                "per-pixel random forest alone (no network, no backbone needed)"
            )
        )
        self.addParameter(p)
        p = QgsProcessingParameterEnum(
            P_FUSE, tr("Fusion with a random forest"), options=[label for _, label in FINETUNE_FUSIONS], defaultValue=0
        )
        p.setHelp(
            tr(
                "Pool the network's class probabilities with a random forest trained on the same pixels; "
                "the forest's weight (0 = network alone, 1 = forest alone) is chosen on the validation "
                "pixels and the card shows all three scores"
            )
        )
        self.addParameter(p)
        p = QgsProcessingParameterEnum(
            P_VARIANT, tr("Network variant"), options=[label for _, label in FINETUNE_VARIANTS], defaultValue=0
        )
        p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(p)
        self._add_training_numbers()
        self.addParameter(self._device_param())
        p = QgsProcessingParameterFileDestination(
            P_OUTPUT,
            tr("New checkpoint (empty: the model folder)"),
            fileFilter="SpectralX checkpoint (*.safetensors)",
            optional=True,
            createByDefault=False,
        )
        p.setHelp(
            tr(
                "Where to write the new model. Empty or a temporary file: the model folder (where the panel and "
                "the model manager list it), named after the raster, the class field and the time."
            )
        )
        self.addParameter(p)
        self.addOutput(QgsProcessingOutputString("METRICS", tr("Validation metrics (JSON)")))

    def _add_training_numbers(self) -> None:
        """BATCH_SIZE, LEARNING_RATE, VAL_FRACTION, SEED (advanced), pre-filled with the engine's defaults."""

        def known(name):
            return defaults.training_default("finetune", name)

        for name, label, kind, default, lo, hi in [
            (
                P_BATCH_SIZE,
                "Batch size",
                QgsProcessingParameterNumber.Integer,
                known("batch_size"),
                1,
                defaults.BATCH_SIZE_MAX,
            ),
            (
                P_LEARNING_RATE,
                "Learning rate (empty: the method's own)",
                QgsProcessingParameterNumber.Double,
                known("lr"),
                defaults.LEARNING_RATE_MIN,
                defaults.LEARNING_RATE_MAX,
            ),
            (
                P_VAL_FRACTION,
                "Validation fraction",
                QgsProcessingParameterNumber.Double,
                known("val_fraction"),
                0.0,
                defaults.VAL_FRACTION_MAX,
            ),
            (P_SEED, "Random seed", QgsProcessingParameterNumber.Integer, known("seed"), 0, 2**31 - 1),
        ]:
            p = QgsProcessingParameterNumber(
                name, tr(label), type=kind, defaultValue=default, minValue=lo, maxValue=hi, optional=default is None
            )
            p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(p)

    def execute(self, parameters, context, feedback):
        import shutil
        import tempfile

        from ..polygons import PolygonError, rasterize_polygons

        deps.require()
        from .._vendor.spectralx import training

        layer = self.parameterAsRasterLayer(parameters, P_INPUT, context)
        image = raster_path(layer)
        source = self.parameterAsSource(parameters, P_LABELS, context)
        if source is None:
            raise QgsProcessingException(tr("no polygon layer given (LABELS)"))
        field = class_field_for(self.parameterAsFields(parameters, P_CLASS_FIELD, context), source, feedback)
        output = model_output(
            parameters.get(P_OUTPUT), self.parameterAsFileOutput(parameters, P_OUTPUT, context), layer.name(), field
        )
        feedback.pushInfo(tr(f"New model: {output}"))
        sensor = self._sensor(parameters, context)
        # the polygons are read by QGIS and burnt by its GDAL: no second GDAL (fiona) in this process
        work = tempfile.mkdtemp(prefix="spectralx_labels_")
        try:
            try:
                burnt = rasterize_polygons(
                    source.getFeatures(),
                    source.fields(),
                    field,
                    source.sourceCrs(),
                    image,
                    os.path.join(work, "labels.tif"),
                    training.classes,
                    what=tr("the LABELS layer"),
                    feedback=feedback,
                )
            except PolygonError as exc:
                raise QgsProcessingException(str(exc)) from None
            feedback.pushInfo(
                tr(
                    f"Labels: {burnt.used} polygons, {burnt.labelled_pixels} labelled pixels, classes "
                    + ", ".join(c["name"] for c in burnt.classes)
                    + ("; skipped " + ", ".join(f"{n} {w}" for w, n in burnt.skipped.items()) if burnt.skipped else "")
                )
            )
            request = FinetuneRequest(
                image,
                burnt.path,
                output,
                checkpoint=self._file(parameters, P_CHECKPOINT, context),
                backbone=self._file(parameters, P_BACKBONE, context),
                sensor=sensor,
                steps=self.parameterAsInt(parameters, P_STEPS, context),
                batch_size=self.parameterAsInt(parameters, P_BATCH_SIZE, context),
                val_fraction=self.parameterAsDouble(parameters, P_VAL_FRACTION, context),
                lr=self._optional_number(parameters, P_LEARNING_RATE, context),
                device=self._device(parameters, context),
                seed=self.parameterAsInt(parameters, P_SEED, context),
                method=FINETUNE_METHODS[self.parameterAsEnum(parameters, P_METHOD, context)][0],
                variant=FINETUNE_VARIANTS[self.parameterAsEnum(parameters, P_VARIANT, context)][0],
                fuse=FINETUNE_FUSIONS[self.parameterAsEnum(parameters, P_FUSE, context)][0],
            )
            args, kwargs = request.engine_args()
            result = training.finetune(*args, progress=training_feedback_progress(feedback), **kwargs)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if feedback.isCanceled():
            return self.cancelled(context, feedback)
        report_metrics(result, feedback)
        return {P_OUTPUT: result.checkpoint or output, "METRICS": json.dumps(result.metrics, default=str)}


def report_metrics(result, feedback) -> None:
    """The validation line, the model that makes the map, the warnings and the metrics, in the log."""
    metrics = result.metrics
    if not metrics:
        return
    feedback.pushInfo(tr("Validation: ") + result.comparison)
    if result.card is not None:
        feedback.pushInfo(tr("Map made by: ") + result.card.map_source)
    for warning in metrics.get("warnings") or []:
        feedback.reportError(tr("Warning: ") + warning, fatalError=False)
    feedback.pushInfo(tr("Metrics: ") + json.dumps(metrics, default=str)[:2000])


def class_field_for(chosen, source, feedback) -> str:
    """CLASS_FIELD as given, else by the panel's rule; an identifier-like field is refused (one line)."""
    from ..panel.class_field import default_class_field, identifier_problem

    field = chosen[0] if chosen else default_class_field(source.fields())
    if not field:
        raise QgsProcessingException(
            tr(
                "the LABELS layer has no field that could hold classes: add a text field "
                "with the class names and choose it as CLASS_FIELD"
            )
        )
    if not chosen:
        feedback.pushInfo(tr(f"Class field: {field} (chosen: set CLASS_FIELD to use another)"))
    idx = source.fields().lookupField(field)
    if idx < 0:
        raise QgsProcessingException(tr(f"the LABELS layer has no field '{field}' (CLASS_FIELD)"))
    values = (f.attributes()[idx] for f in source.getFeatures())
    problem = identifier_problem(field, values, tr("the LABELS layer"), P_CLASS_FIELD)
    if problem:
        raise QgsProcessingException(problem)
    return field


def model_output(raw, path: str, raster_name: str, field: str) -> str:
    """OUTPUT as given; empty or temporary -> the model folder, named '<raster>_<field>_<time>'."""
    from qgis.core import QgsProcessingOutputLayerDefinition

    from ..models import store as model_store
    from ..panel.run_controller import RunController, slug

    if isinstance(raw, QgsProcessingOutputLayerDefinition):
        raw = raw.sink.staticValue()
    temporary = raw in (None, "", QgsProcessing.TEMPORARY_OUTPUT) or not path
    if not temporary:
        return path
    folder = model_store.user_model_dir()
    os.makedirs(folder, exist_ok=True)
    stem = f"{slug(raster_name)[:24]}_{slug(field)[:12]}_{RunController.stamp()[:15]}"
    return os.path.join(folder, stem + ".safetensors")
