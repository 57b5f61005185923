"""Processing algorithms: thin wrappers over the SpectralX engine.

Each algorithm only translates QGIS parameters into engine arguments, bridges progress/cancel, and
turns engine errors into a QgsProcessingException with the engine's one-line message. If torch,
rasterio, safetensors or the engine are missing, every algorithm reports the dependency guidance.
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict

from qgis.core import (QgsProcessing, QgsProcessingAlgorithm,
                       QgsProcessingException, QgsProcessingLayerPostProcessorInterface,
                       QgsProcessingOutputNumber, QgsProcessingOutputString, QgsProcessingParameterDefinition,
                       QgsProcessingParameterEnum, QgsProcessingParameterExtent,
                       QgsProcessingParameterFeatureSource, QgsProcessingParameterField,
                       QgsProcessingParameterFile, QgsProcessingParameterFileDestination,
                       QgsProcessingParameterMapLayer, QgsProcessingParameterMultipleLayers,
                       QgsProcessingParameterNumber, QgsProcessingParameterRasterDestination,
                       QgsProcessingParameterRasterLayer, QgsProcessingParameterString, QgsRasterLayer)
from qgis.PyQt.QtCore import QCoreApplication

from . import deps, icons
from .bridge import feedback_progress, training_feedback_progress
from .requests import FinetuneRequest, PretrainRequest, SegmentRequest

DEVICES = [("auto", "Automatic (best available)"), ("cpu", "CPU"), ("cuda", "CUDA GPU"),
           ("mps", "Apple GPU (MPS)")]
# the engine's --precision names (spectralx.devices.PRECISIONS), in the order offered
PRECISIONS = [("auto", "Automatic (measured on this machine)"), ("fp32", "fp32 (float, as validated)"),
              ("bf16", "bf16"), ("fp16", "fp16 (GPU)"), ("int8", "int8 backbone (CPU)")]


SENSOR_HELP = ("For rasters without wavelength metadata (every Landsat Level-1 file): the sensor and the "
               "raster's band order, as the command line's --sensor takes it, e.g. landsat8:B2,B3,B4 or "
               "sentinel2:B2,B3,B4,B8. Sensors: sentinel2 (sentinel2a, sentinel2b), landsat8, landsat9, "
               "landsat7 (ETM+), landsat5 (TM), enmap, rgbn (generic red/green/blue/NIR camera). Without "
               "a band order the sensor's usual layout for the raster's band count is assumed. Empty: "
               "wavelengths from the file's metadata.")


def tr(text: str) -> str:
    return QCoreApplication.translate("SpectralX", text)


def raster_path(layer: QgsRasterLayer) -> str:
    """A file path GDAL/rasterio can open for a raster layer (GDAL provider only)."""
    if layer is None:
        raise QgsProcessingException(tr("no raster layer given"))
    if layer.providerType() != "gdal":
        raise QgsProcessingException(
            tr(f"layer '{layer.name()}' comes from the '{layer.providerType()}' provider; SpectralX reads "
               "raster files (GDAL): save or export the layer to a GeoTIFF first"))
    return layer.source().split("|")[0]


def band_map_arg(value: str):
    """'' -> 'auto'; inline JSON -> dict; anything else is a path to a band map JSON file."""
    value = (value or "").strip()
    if not value or value.lower() == "auto":
        return "auto"
    if value.startswith("{"):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise QgsProcessingException(tr(f"BAND_MAP is not valid JSON: {exc}")) from None
    if not os.path.isfile(value):
        raise QgsProcessingException(tr(f"band map file not found: {value}"))
    return value


def drop_unnamed_layers(context) -> None:
    layers = context.layersToLoadOnCompletion()
    if any(not str(key).strip() for key in layers):
        context.setLayersToLoadOnCompletion({k: v for k, v in layers.items() if str(k).strip()})


# fine-tuning methods and variants offered in Processing (spectralx.training.options), default first
FINETUNE_METHODS = [("spectralx", "SpectralX (HyperT + AoMoA + Are-adapter)"), ("lora", "LoRA baseline"),
                    ("slr", "SLR baseline (LoRA + scaling)"), ("full", "Full fine-tune (backbone unfrozen)"),
                    ("forest", "Random forest alone (per-pixel spectra, no network)")]
# pooling the network with the random forest (spectralx.model.fusion), default first
FINETUNE_FUSIONS = [("forest", "Pool with a random forest (weight chosen on validation pixels)"),
                    ("none", "Network alone")]
FINETUNE_VARIANTS = [("default", "Default (measured best)"), ("paper", "Paper-faithful")]


class ClassLayerPostProcessor(QgsProcessingLayerPostProcessorInterface):
    """Applies the paletted class renderer when Processing loads the output layer."""
    _alive = []  # post-processors must outlive the algorithm instance

    def __init__(self, classes, confidence: bool = False):
        super().__init__()
        self.classes = list(classes)
        self.confidence = confidence

    def postProcessLayer(self, layer, context, feedback):
        from . import styling
        if isinstance(layer, QgsRasterLayer):
            if self.confidence:
                styling.style_confidence_layer(layer)
            else:
                styling.style_class_layer(layer, self.classes)

    @classmethod
    def create(cls, classes, confidence=False):
        pp = cls(classes, confidence)
        cls._alive.append(pp)
        del cls._alive[:-32]
        return pp


class SpectralXAlgorithm(QgsProcessingAlgorithm):
    """Common parts: ids, group, icon, dependency and error handling."""
    _name = ""
    _display = ""
    _help = ""

    def name(self):
        return self._name

    def displayName(self):
        return tr(self._display)

    def group(self):
        return tr("SpectralX")

    def groupId(self):
        return "spectralx"

    def icon(self):
        return icons.icon()

    def shortHelpString(self):
        text = tr(self._help)
        if deps.probably_missing():         # no torch import just to show help
            text += "\n\n" + deps.guidance()
        return text

    def createInstance(self):
        return type(self)()

    def checkParameterValues(self, parameters, context):
        guidance = deps.guidance()
        if guidance:
            return False, guidance
        return super().checkParameterValues(parameters, context)

    def processAlgorithm(self, parameters, context, feedback):
        guidance = deps.guidance()
        if guidance:
            raise QgsProcessingException(guidance)
        errors = deps.engine("errors")
        explain = deps.engine("bands").explain
        try:
            return self.execute(parameters, context, feedback)
        except errors.Cancelled:
            return self.cancelled(context, feedback)
        except errors.SpectralXError as exc:
            # the Processing user's words: SENSOR / BAND_MAP, never a command-line flag
            raise QgsProcessingException(explain(exc, "processing")) from None
        except deps.MissingDependencies as exc:
            raise QgsProcessingException(str(exc)) from None

    def cancelled(self, context, feedback):
        """A cancel is not a failure: say so plainly, and load nothing (no 'not correctly generated')."""
        context.setLayersToLoadOnCompletion({})
        feedback.pushInfo(tr("Cancelled by the user: nothing was written (partial outputs were removed)."))
        return {}

    def execute(self, parameters, context, feedback) -> Dict[str, Any]:  # pragma: no cover
        raise NotImplementedError

    # helpers
    def _device(self, parameters, context) -> str:
        return DEVICES[self.parameterAsEnum(parameters, "DEVICE", context)][0]

    def _device_param(self):
        p = QgsProcessingParameterEnum("DEVICE", tr("Device"), options=[d[1] for d in DEVICES],
                                       defaultValue=0)
        p.setHelp(tr("Where the network runs; Automatic picks CUDA, then MPS, then CPU."))
        return p

    def _file(self, parameters, name, context):
        value = self.parameterAsFile(parameters, name, context)
        return value or None

    def _optional_number(self, parameters, name, context):
        if parameters.get(name) in (None, ""):
            return None
        return self.parameterAsDouble(parameters, name, context)

    def _sensor_param(self):
        p = QgsProcessingParameterString("SENSOR", tr("Sensor and band order (e.g. landsat8:B2,B3,B4)"),
                                         optional=True)
        p.setHelp(tr(SENSOR_HELP))
        return p

    def _sensor(self, parameters, context):
        """The SENSOR text, checked against the engine's presets (one vocabulary with the CLI)."""
        value = (self.parameterAsString(parameters, "SENSOR", context) or "").strip()
        if not value:
            return None
        deps.engine("bands").parse_sensor(value)      # unknown sensor/band: one clear line
        return value


class SegmentAlgorithm(SpectralXAlgorithm):
    _name = "segment"
    _display = "Segment raster (land cover)"
    _help = ("Classifies every pixel of a multispectral or hyperspectral raster with a SpectralX "
             "checkpoint. The raster's bands are mapped onto the checkpoint's bands from their "
             "wavelengths (or an explicit band map), the raster is processed in overlapping tiles with "
             "blending, and a class raster with the checkpoint's class names and colours is written, "
             "optionally with a per-pixel confidence raster.\n\n"
             "INPUT: raster to classify. CHECKPOINT: SpectralX checkpoint (.safetensors). BACKBONE: the "
             "frozen backbone file, if it is not beside the checkpoint. BAND_MAP: band map JSON file or "
             "inline JSON; empty = automatic from wavelength metadata. SENSOR: sensor and band order for rasters "
             "without wavelength metadata, e.g. landsat8:B2,B3,B4. EXTENT: only this area (empty = "
             "whole raster). OVERLAP: fraction of a tile shared with its neighbours (0-0.75). "
             "BATCH_SIZE: tiles per batch. DEVICE: CPU/GPU. PRECISION (advanced): automatic, fp32, bf16, fp16 "
             "or int8 (the CPU's quantized backbone). DASK_SCHEDULER (advanced): run the blocks on a "
             "Dask cluster, local:N (N worker processes on this machine) or a scheduler address such as "
             "tcp://host:8786; empty = in QGIS's process. OUTPUT: class GeoTIFF. CONFIDENCE: optional "
             "confidence GeoTIFF (0-1).")

    def initAlgorithm(self, config=None):
        p = QgsProcessingParameterRasterLayer("INPUT", tr("Input raster"))
        p.setHelp(tr("Multispectral or hyperspectral raster to classify."))
        self.addParameter(p)
        p = QgsProcessingParameterFile("CHECKPOINT", tr("SpectralX checkpoint"),
                                       behavior=QgsProcessingParameterFile.File,
                                       fileFilter="SpectralX checkpoint (*.safetensors)")
        p.setHelp(tr("A .safetensors file with a SpectralX model card."))
        self.addParameter(p)
        p = QgsProcessingParameterFile("BACKBONE", tr("Backbone file (if not beside the checkpoint)"),
                                       behavior=QgsProcessingParameterFile.File, optional=True,
                                       fileFilter="Backbone (*.safetensors *.pth *.pt *.ckpt)")
        p.setHelp(tr("Frozen backbone weights named in the checkpoint; its sha256 is verified."))
        self.addParameter(p)
        p = QgsProcessingParameterFile("BAND_MAP", tr("Band map (JSON file or inline JSON; empty = automatic)"),
                                       behavior=QgsProcessingParameterFile.File, optional=True)
        p.setHelp(tr("Maps raster bands onto the checkpoint's bands; empty: from wavelength metadata."))
        self.addParameter(p)
        self.addParameter(self._sensor_param())
        p = QgsProcessingParameterExtent("EXTENT", tr("Only this extent"), optional=True)
        p.setHelp(tr("Segment only this area (converted to the raster's CRS); empty = whole raster."))
        self.addParameter(p)
        defaults = deps.defaults()
        p = QgsProcessingParameterNumber("OVERLAP", tr("Tile overlap (fraction)"),
                                         type=QgsProcessingParameterNumber.Double, defaultValue=defaults.OVERLAP,
                                         minValue=0.0, maxValue=defaults.OVERLAP_MAX)
        p.setHelp(tr("Fraction of each tile shared with its neighbours; overlaps are blended (no seams)."))
        self.addParameter(p)
        p = QgsProcessingParameterNumber("BATCH_SIZE", tr("Batch size (tiles)"),
                                         type=QgsProcessingParameterNumber.Integer, defaultValue=defaults.BATCH_SIZE,
                                         minValue=1, maxValue=defaults.BATCH_SIZE_MAX)
        p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        p.setHelp(tr("Tiles run through the network at once; larger is faster on a GPU, uses more memory."))
        self.addParameter(p)
        self.addParameter(self._device_param())
        p = QgsProcessingParameterEnum("PRECISION", tr("Precision"), options=[d[1] for d in PRECISIONS],
                                       defaultValue=0)
        p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        p.setHelp(tr("Automatic: bf16 on a CUDA GPU; on the CPU the int8 backbone for ViT-B and larger "
                     "models when it agreed with fp32 and ran faster on a test tile, fp32 otherwise. int8 "
                     "quantizes the frozen backbone's linears (CPU only); the model card's accuracy was "
                     "measured in float."))
        self.addParameter(p)
        p = QgsProcessingParameterString("DASK_SCHEDULER", tr("Dask scheduler (local:N or tcp://host:port)"),
                                         optional=True)
        p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        p.setHelp(tr("Empty: run in QGIS's process. local:N starts N worker processes on this machine; an "
                     "address such as tcp://host:8786 uses a running Dask scheduler (needs Dask distributed)."))
        self.addParameter(p)
        p = QgsProcessingParameterRasterDestination("OUTPUT", tr("Classes"))
        p.setHelp(tr("Class GeoTIFF (uint8, 0 = nodata) with colour table, class names and a .qml style."))
        self.addParameter(p)
        p = QgsProcessingParameterRasterDestination("CONFIDENCE", tr("Confidence"), optional=True,
                                                    createByDefault=False)
        p.setHelp(tr("Optional GeoTIFF with the winning class probability (0-1) per pixel."))
        self.addParameter(p)
        self.addOutput(QgsProcessingOutputString("STYLE", tr("QML style file")))
        self.addOutput(QgsProcessingOutputNumber("TILES", tr("Tiles processed")))

    def execute(self, parameters, context, feedback):
        inference = deps.engine("inference")
        checkpoint = deps.engine("checkpoint")
        layer = self.parameterAsRasterLayer(parameters, "INPUT", context)
        src = raster_path(layer)
        ckpt = self.parameterAsFile(parameters, "CHECKPOINT", context)
        card = checkpoint.read_card(ckpt)
        bbox = None
        if parameters.get("EXTENT") not in (None, ""):
            ext = self.parameterAsExtent(parameters, "EXTENT", context, layer.crs())
            if not ext.isNull() and not ext.isEmpty():
                bbox = (ext.xMinimum(), ext.yMinimum(), ext.xMaximum(), ext.yMaximum())
        output = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        confidence = None
        if parameters.get("CONFIDENCE") not in (None, ""):
            confidence = self.parameterAsOutputLayer(parameters, "CONFIDENCE", context) or None
        for path in (output, confidence):
            if path and os.path.splitext(path)[1].lower() not in (".tif", ".tiff"):
                raise QgsProcessingException(tr(f"{path}: SpectralX writes GeoTIFF; use a .tif file name"))
        feedback.pushInfo(tr(f"Checkpoint: {len(card.bands)} bands, {len(card.classes)} classes, "
                             f"tile {card.tile_size} px; engine {deps.engine_source()}"))
        if not confidence:
            # an optional output left empty (batch mode passes '') must not be announced as a layer
            # to load, or Processing reports it as "not correctly generated"
            drop_unnamed_layers(context)
        request = SegmentRequest(
            src, ckpt, output, confidence=confidence, backbone=self._file(parameters, "BACKBONE", context),
            band_map=band_map_arg(self.parameterAsString(parameters, "BAND_MAP", context)),
            sensor=self._sensor(parameters, context), bbox=bbox,
            overlap=self.parameterAsDouble(parameters, "OVERLAP", context),
            batch_size=self.parameterAsInt(parameters, "BATCH_SIZE", context),
            device=self._device(parameters, context), overwrite=True)
        args, kwargs = request.engine_args()
        kwargs["precision"] = PRECISIONS[self.parameterAsEnum(parameters, "PRECISION", context)][0]
        scheduler = (self.parameterAsString(parameters, "DASK_SCHEDULER", context) or "").strip()
        if scheduler:
            kwargs["dask"] = scheduler
            feedback.pushInfo(tr(f"Running the blocks on Dask: {scheduler}"))
        result = inference.segment(*args, progress=feedback_progress(feedback), **kwargs)
        if feedback.isCanceled():
            return self.cancelled(context, feedback)
        classes = list(getattr(result, "classes", None) or card.classes)
        model = os.path.splitext(os.path.basename(ckpt))[0]
        if context.willLoadLayerOnCompletion(result.output):
            details = context.layerToLoadOnCompletionDetails(result.output)
            details.name = tr(f"{layer.name()} classes ({model})")
            details.setPostProcessor(ClassLayerPostProcessor.create(classes))
        if confidence and context.willLoadLayerOnCompletion(confidence):
            details = context.layerToLoadOnCompletionDetails(confidence)
            details.name = tr(f"{layer.name()} confidence ({model})")
            details.setPostProcessor(ClassLayerPostProcessor.create([], confidence=True))
        return {"OUTPUT": result.output, "CONFIDENCE": getattr(result, "confidence", confidence),
                "STYLE": getattr(result, "style", None) or "", "TILES": getattr(result, "tiles", 0)}


def add_starting_point_parameters(alg) -> None:
    """CHECKPOINT / BACKBONE / STEPS, shared by the two training algorithms."""
    alg.addParameter(QgsProcessingParameterFile(
            "CHECKPOINT", tr("Start from checkpoint"), behavior=QgsProcessingParameterFile.File,
            optional=True, fileFilter="SpectralX checkpoint (*.safetensors)"))
    alg.addParameter(QgsProcessingParameterFile(
            "BACKBONE", tr("Backbone file"), behavior=QgsProcessingParameterFile.File, optional=True,
            fileFilter="Backbone (*.safetensors *.pth *.pt *.ckpt)"))
    defaults = deps.defaults()
    alg.addParameter(QgsProcessingParameterNumber(
            "STEPS", tr("Training steps"), type=QgsProcessingParameterNumber.Integer,
            defaultValue=defaults.training_default(alg.name(), "steps"), minValue=1, maxValue=defaults.STEPS_MAX))
    alg.addParameter(alg._sensor_param())


class FinetuneAlgorithm(SpectralXAlgorithm):
    _name = "finetune"
    _display = "Fine-tune from labelled polygons"
    _help = ("Stage-2 training: adapts a SpectralX model to your raster and classes from labelled "
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
             "checkpoint.")

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", tr("Training raster")))
        self.addParameter(QgsProcessingParameterFeatureSource(
            "LABELS", tr("Labelled polygons"), [QgsProcessing.TypeVectorPolygon]))
        # optional, no default: QGIS would otherwise pre-select the first field ('fid'); empty picks
        # the class field by the panel's rule (class_field.py)
        p = QgsProcessingParameterField("CLASS_FIELD", tr("Class field (empty: a text field such as 'class')"),
                                        parentLayerParameterName="LABELS", optional=True)
        p.setHelp(tr("The field holding each polygon's class. Empty: a text field named like a class ('class', "
                     "'label', 'landcover', 'name', …), else the first text field. A field with a different "
                     "value on every polygon (an identifier such as fid) is refused."))
        self.addParameter(p)
        add_starting_point_parameters(self)
        d = deps.defaults()
        known = lambda name: d.training_default("finetune", name)  # noqa: E731
        p = QgsProcessingParameterEnum(
            "METHOD", tr("Method"), options=[label for _, label in FINETUNE_METHODS], defaultValue=0)
        p.setHelp(tr("SpectralX (default), or a PEFT baseline on the same tokenizer and head for comparison: "
                     "LoRA, SLR (LoRA + scaling vectors), full fine-tuning (backbone unfrozen); or the "
                     "per-pixel random forest alone (no network, no backbone needed)"))
        self.addParameter(p)
        p = QgsProcessingParameterEnum(
            "FUSE", tr("Fusion with a random forest"), options=[label for _, label in FINETUNE_FUSIONS],
            defaultValue=0)
        p.setHelp(tr("Pool the network's class probabilities with a random forest trained on the same pixels; "
                     "the forest's weight (0 = network alone, 1 = forest alone) is chosen on the validation "
                     "pixels and the card shows all three scores"))
        self.addParameter(p)
        p = QgsProcessingParameterEnum(
            "VARIANT", tr("Network variant"), options=[label for _, label in FINETUNE_VARIANTS], defaultValue=0)
        p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(p)
        for name, label, kind, default, lo, hi in [
                ("BATCH_SIZE", "Batch size", QgsProcessingParameterNumber.Integer, known("batch_size"), 1,
                 d.BATCH_SIZE_MAX),
                ("LEARNING_RATE", "Learning rate (empty: the method's own)", QgsProcessingParameterNumber.Double,
                 known("lr"), d.LEARNING_RATE_MIN, d.LEARNING_RATE_MAX),
                ("VAL_FRACTION", "Validation fraction", QgsProcessingParameterNumber.Double, known("val_fraction"),
                 0.0, d.VAL_FRACTION_MAX),
                ("SEED", "Random seed", QgsProcessingParameterNumber.Integer, known("seed"), 0, 2 ** 31 - 1)]:
            p = QgsProcessingParameterNumber(name, tr(label), type=kind, defaultValue=default,
                                             minValue=lo, maxValue=hi, optional=default is None)
            p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(p)
        self.addParameter(self._device_param())
        p = QgsProcessingParameterFileDestination(
            "OUTPUT", tr("New checkpoint (empty: the model folder)"), fileFilter="SpectralX checkpoint (*.safetensors)",
            optional=True, createByDefault=False)
        p.setHelp(tr("Where to write the new model. Empty or a temporary file: the model folder (where the panel and "
                     "the model manager list it), named after the raster, the class field and the time."))
        self.addParameter(p)
        self.addOutput(QgsProcessingOutputString("METRICS", tr("Validation metrics (JSON)")))

    def execute(self, parameters, context, feedback):
        import shutil
        import tempfile

        from .polygons import PolygonError, rasterize_polygons
        training = deps.engine("training")
        layer = self.parameterAsRasterLayer(parameters, "INPUT", context)
        image = raster_path(layer)
        source = self.parameterAsSource(parameters, "LABELS", context)
        if source is None:
            raise QgsProcessingException(tr("no polygon layer given (LABELS)"))
        field = class_field_for(self.parameterAsFields(parameters, "CLASS_FIELD", context), source, feedback)
        output = model_output(parameters.get("OUTPUT"), self.parameterAsFileOutput(parameters, "OUTPUT", context),
                              layer.name(), field)
        feedback.pushInfo(tr(f"New model: {output}"))
        sensor = self._sensor(parameters, context)
        # the polygons are read by QGIS and burnt by its GDAL: no second GDAL (fiona) in this process
        work = tempfile.mkdtemp(prefix="spectralx_labels_")
        try:
            try:
                burnt = rasterize_polygons(source.getFeatures(), source.fields(), field, source.sourceCrs(),
                                           image, os.path.join(work, "labels.tif"),
                                           deps.engine("training.classes"), what=tr("the LABELS layer"),
                                           feedback=feedback)
            except PolygonError as exc:
                raise QgsProcessingException(str(exc)) from None
            feedback.pushInfo(tr(f"Labels: {burnt.used} polygons, {burnt.labelled_pixels} labelled pixels, classes "
                                 + ", ".join(c["name"] for c in burnt.classes)
                                 + ("; skipped " + ", ".join(f"{n} {w}" for w, n in burnt.skipped.items())
                                    if burnt.skipped else "")))
            request = FinetuneRequest(
                image, burnt.path, output, checkpoint=self._file(parameters, "CHECKPOINT", context),
                backbone=self._file(parameters, "BACKBONE", context), sensor=sensor,
                steps=self.parameterAsInt(parameters, "STEPS", context),
                batch_size=self.parameterAsInt(parameters, "BATCH_SIZE", context),
                val_fraction=self.parameterAsDouble(parameters, "VAL_FRACTION", context),
                lr=self._optional_number(parameters, "LEARNING_RATE", context),
                device=self._device(parameters, context), seed=self.parameterAsInt(parameters, "SEED", context),
                method=FINETUNE_METHODS[self.parameterAsEnum(parameters, "METHOD", context)][0],
                variant=FINETUNE_VARIANTS[self.parameterAsEnum(parameters, "VARIANT", context)][0],
                fuse=FINETUNE_FUSIONS[self.parameterAsEnum(parameters, "FUSE", context)][0])
            args, kwargs = request.engine_args()
            result = training.finetune(*args, progress=training_feedback_progress(feedback), **kwargs)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if feedback.isCanceled():
            return self.cancelled(context, feedback)
        metrics = getattr(result, "metrics", {}) or {}
        if metrics:
            feedback.pushInfo(tr("Validation: ") + getattr(result, "comparison", ""))
            card = getattr(result, "card", None)
            if card is not None:
                feedback.pushInfo(tr("Map made by: ") + card.map_source)
            for warning in metrics.get("warnings") or []:
                feedback.reportError(tr("Warning: ") + warning, fatalError=False)
            feedback.pushInfo(tr("Metrics: ") + json.dumps(metrics, default=str)[:2000])
        return {"OUTPUT": getattr(result, "checkpoint", output),
                "METRICS": json.dumps(metrics, default=str)}


def class_field_for(chosen, source, feedback) -> str:
    """CLASS_FIELD as given, else by the panel's rule; an identifier-like field is refused (one line)."""
    from .class_field import default_class_field, identifier_problem
    field = chosen[0] if chosen else default_class_field(source.fields())
    if not field:
        raise QgsProcessingException(tr("the LABELS layer has no field that could hold classes: add a text field "
                                        "with the class names and choose it as CLASS_FIELD"))
    if not chosen:
        feedback.pushInfo(tr(f"Class field: {field} (chosen: set CLASS_FIELD to use another)"))
    idx = source.fields().lookupField(field)
    if idx < 0:
        raise QgsProcessingException(tr(f"the LABELS layer has no field '{field}' (CLASS_FIELD)"))
    values = (f.attributes()[idx] for f in source.getFeatures())
    problem = identifier_problem(field, values, tr("the LABELS layer"), "CLASS_FIELD")
    if problem:
        raise QgsProcessingException(problem)
    return field


def model_output(raw, path: str, raster_name: str, field: str) -> str:
    """OUTPUT as given; empty or temporary -> the model folder, named '<raster>_<field>_<time>'."""
    from qgis.core import QgsProcessingOutputLayerDefinition
    from . import model_store
    from .run_controller import RunController, slug
    if isinstance(raw, QgsProcessingOutputLayerDefinition):
        raw = raw.sink.staticValue()
    temporary = raw in (None, "", QgsProcessing.TEMPORARY_OUTPUT) or not path
    if not temporary:
        return path
    folder = model_store.user_model_dir()
    os.makedirs(folder, exist_ok=True)
    stem = f"{slug(raster_name)[:24]}_{slug(field)[:12]}_{RunController.stamp()[:15]}"
    return os.path.join(folder, stem + ".safetensors")


class PretrainAlgorithm(SpectralXAlgorithm):
    _name = "pretrain"
    _display = "Pretrain on unlabelled imagery (stage 1)"
    _help = ("Stage-1 training: masked spectral reconstruction on unlabelled images of the target "
             "sensor, which prepares HyperT and the adapters before fine-tuning. The frozen backbone is "
             "not changed.\n\nINPUT: one or more unlabelled rasters of the same sensor. CHECKPOINT: start "
             "from this checkpoint (optional). BACKBONE: backbone file. SENSOR: sensor and band order for rasters "
             "without wavelength metadata, e.g. landsat8:B2,B3,B4. STEPS, BATCH_SIZE: training "
             "settings. OUTPUT: the stage-1 checkpoint, to pass to Fine-tune.")

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterMultipleLayers(
            "INPUT", tr("Unlabelled rasters"), layerType=QgsProcessing.TypeRaster))
        add_starting_point_parameters(self)
        p = QgsProcessingParameterNumber("BATCH_SIZE", tr("Batch size"),
                                         type=QgsProcessingParameterNumber.Integer,
                                         defaultValue=deps.defaults().training_default("pretrain", "batch_size"),
                                         minValue=1, maxValue=deps.defaults().BATCH_SIZE_MAX)
        p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(p)
        self.addParameter(self._device_param())
        self.addParameter(QgsProcessingParameterFileDestination(
            "OUTPUT", tr("Stage-1 checkpoint"), fileFilter="SpectralX checkpoint (*.safetensors)"))

    def execute(self, parameters, context, feedback):
        training = deps.engine("training")
        layers = self.parameterAsLayerList(parameters, "INPUT", context)
        images = [raster_path(lyr) for lyr in layers]
        output = self.parameterAsFileOutput(parameters, "OUTPUT", context)
        request = PretrainRequest(
            images, output, checkpoint=self._file(parameters, "CHECKPOINT", context),
            backbone=self._file(parameters, "BACKBONE", context), sensor=self._sensor(parameters, context),
            steps=self.parameterAsInt(parameters, "STEPS", context),
            batch_size=self.parameterAsInt(parameters, "BATCH_SIZE", context),
            device=self._device(parameters, context))
        args, kwargs = request.engine_args()
        result = training.pretrain(*args, progress=training_feedback_progress(feedback), **kwargs)
        if feedback.isCanceled():
            return self.cancelled(context, feedback)
        return {"OUTPUT": getattr(result, "checkpoint", None) or (result if isinstance(result, str) else output)}


class EvaluateAlgorithm(SpectralXAlgorithm):
    _name = "evaluate"
    _display = "Evaluate a classification"
    _help = ("Compares a class raster with reference labels (a label raster, or points/polygons with a "
             "class field) and reports overall accuracy, per-class IoU and F1, mIoU and the confusion "
             "matrix.\n\nPREDICTION: class raster (e.g. from Segment). REFERENCE: reference labels. "
             "CLASS_FIELD: class field when the reference is a vector layer. OUTPUT: optional JSON report.")

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterRasterLayer("PREDICTION", tr("Class raster")))
        self.addParameter(QgsProcessingParameterMapLayer("REFERENCE", tr("Reference labels (raster or vector)")))
        self.addParameter(QgsProcessingParameterField("CLASS_FIELD", tr("Class field (vector reference)"),
                                                      parentLayerParameterName="REFERENCE", optional=True))
        self.addParameter(QgsProcessingParameterFileDestination(
            "OUTPUT", tr("Report (JSON)"), fileFilter="JSON (*.json)", optional=True, createByDefault=False))
        self.addOutput(QgsProcessingOutputNumber("MIOU", tr("Mean IoU")))
        self.addOutput(QgsProcessingOutputNumber("OA", tr("Overall accuracy")))
        self.addOutput(QgsProcessingOutputString("REPORT", tr("Metrics (JSON)")))

    def execute(self, parameters, context, feedback):
        evaluate = deps.engine("evaluate")
        pred = raster_path(self.parameterAsRasterLayer(parameters, "PREDICTION", context))
        ref_layer = self.parameterAsLayer(parameters, "REFERENCE", context)
        if ref_layer is None:
            raise QgsProcessingException(tr("no reference layer"))
        if isinstance(ref_layer, QgsRasterLayer):
            reference = raster_path(ref_layer)
        else:
            reference = self.parameterAsCompatibleSourceLayerPath(
                parameters, "REFERENCE", context, ["gpkg", "shp", "geojson"], "gpkg", feedback).split("|")[0]
        field = self.parameterAsFields(parameters, "CLASS_FIELD", context)
        metrics = evaluate.evaluate(pred, reference, class_field=field[0] if field else None)
        text = json.dumps(metrics, indent=1, default=_json_default)
        feedback.pushInfo(text[:4000])
        out = {"MIOU": _pick(metrics, "miou", "mIoU", "mean_iou"),
               "OA": _pick(metrics, "overall_accuracy", "oa", "accuracy"), "REPORT": text}
        path = self.parameterAsFileOutput(parameters, "OUTPUT", context) if parameters.get("OUTPUT") else ""
        if path:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            out["OUTPUT"] = path
        return out


def _pick(d: dict, *keys):
    for k in keys:
        if k in d:
            try:
                return float(d[k])
            except (TypeError, ValueError):
                return None
    return None


def _json_default(obj):
    try:
        import numpy as np
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:
        pass
    return str(obj)


ALGORITHMS = [SegmentAlgorithm, FinetuneAlgorithm, PretrainAlgorithm, EvaluateAlgorithm]
