"""Processing: Segment raster (`spectralx segment`): a class raster (and a confidence raster) from a checkpoint."""

from __future__ import annotations

import os

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)

from .._vendor.spectralx.contract import defaults, options
from ..bridge import feedback_progress
from ..panel.requests import SegmentRequest
from ..setup import deps
from .base import (
    P_BACKBONE,
    P_CHECKPOINT,
    ClassLayerPostProcessor,
    SpectralXAlgorithm,
    band_map_arg,
    drop_unnamed_layers,
    raster_path,
    tr,
)

P_INPUT = "INPUT"
P_BAND_MAP = "BAND_MAP"
P_EXTENT = "EXTENT"
P_OVERLAP = "OVERLAP"
P_BATCH_SIZE = "BATCH_SIZE"
P_PRECISION = "PRECISION"
P_DASK_SCHEDULER = "DASK_SCHEDULER"
P_OUTPUT = "OUTPUT"
P_CONFIDENCE = "CONFIDENCE"

# the engine's --precision names and order (contract.options.PRECISIONS), as offered here
_PRECISION_LABELS = {
    "auto": "Automatic (measured on this machine)",
    "fp32": "fp32 (float, as validated)",
    "bf16": "bf16",
    "fp16": "fp16 (GPU)",
    "int8": "int8 backbone (CPU)",
}
PRECISIONS = [(name, _PRECISION_LABELS.get(name, name)) for name in options.PRECISIONS]

HELP = (
    "Classifies every pixel of a multispectral or hyperspectral raster with a SpectralX "
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
    "confidence GeoTIFF (0-1)."
)


class SegmentAlgorithm(SpectralXAlgorithm):
    _name = "segment"
    _display = "Segment raster (land cover)"
    _help = HELP

    def initAlgorithm(self, config=None):
        # Long (87 lines) on purpose: one parameter definition per P_* constant: a flat list, the algorithm's
        # form.
        p = QgsProcessingParameterRasterLayer(P_INPUT, tr("Input raster"))
        p.setHelp(tr("Multispectral or hyperspectral raster to classify."))
        self.addParameter(p)
        p = QgsProcessingParameterFile(
            P_CHECKPOINT,
            tr("SpectralX checkpoint"),
            behavior=QgsProcessingParameterFile.File,
            fileFilter="SpectralX checkpoint (*.safetensors)",
        )
        p.setHelp(tr("A .safetensors file with a SpectralX model card."))
        self.addParameter(p)
        p = QgsProcessingParameterFile(
            P_BACKBONE,
            tr("Backbone file (if not beside the checkpoint)"),
            behavior=QgsProcessingParameterFile.File,
            optional=True,
            fileFilter="Backbone (*.safetensors *.pth *.pt *.ckpt)",
        )
        p.setHelp(tr("Frozen backbone weights named in the checkpoint; its sha256 is verified."))
        self.addParameter(p)
        p = QgsProcessingParameterFile(
            P_BAND_MAP,
            tr("Band map (JSON file or inline JSON; empty = automatic)"),
            behavior=QgsProcessingParameterFile.File,
            optional=True,
        )
        p.setHelp(tr("Maps raster bands onto the checkpoint's bands; empty: from wavelength metadata."))
        self.addParameter(p)
        self.addParameter(self._sensor_param())
        p = QgsProcessingParameterExtent(P_EXTENT, tr("Only this extent"), optional=True)
        p.setHelp(tr("Segment only this area (converted to the raster's CRS); empty = whole raster."))
        self.addParameter(p)
        p = QgsProcessingParameterNumber(
            P_OVERLAP,
            tr("Tile overlap (fraction)"),
            type=QgsProcessingParameterNumber.Double,
            defaultValue=defaults.OVERLAP,
            minValue=0.0,
            maxValue=defaults.OVERLAP_MAX,
        )
        p.setHelp(tr("Fraction of each tile shared with its neighbours; overlaps are blended (no seams)."))
        self.addParameter(p)
        p = QgsProcessingParameterNumber(
            P_BATCH_SIZE,
            tr("Batch size (tiles)"),
            type=QgsProcessingParameterNumber.Integer,
            defaultValue=defaults.BATCH_SIZE,
            minValue=1,
            maxValue=defaults.BATCH_SIZE_MAX,
        )
        p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        p.setHelp(tr("Tiles run through the network at once; larger is faster on a GPU, uses more memory."))
        self.addParameter(p)
        self.addParameter(self._device_param())
        p = QgsProcessingParameterEnum(P_PRECISION, tr("Precision"), options=[d[1] for d in PRECISIONS], defaultValue=0)
        p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        p.setHelp(
            tr(
                "Automatic: bf16 on a CUDA GPU; on the CPU the int8 backbone for ViT-B and larger "
                "models when it agreed with fp32 and ran faster on a test tile, fp32 otherwise. int8 "
                "quantizes the frozen backbone's linears (CPU only); the model card's accuracy was "
                "measured in float."
            )
        )
        self.addParameter(p)
        p = QgsProcessingParameterString(
            P_DASK_SCHEDULER, tr("Dask scheduler (local:N or tcp://host:port)"), optional=True
        )
        p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        p.setHelp(
            tr(
                "Empty: run in QGIS's process. local:N starts N worker processes on this machine; an "
                "address such as tcp://host:8786 uses a running Dask scheduler (needs Dask distributed)."
            )
        )
        self.addParameter(p)
        p = QgsProcessingParameterRasterDestination(P_OUTPUT, tr("Classes"))
        p.setHelp(tr("Class GeoTIFF (uint8, 0 = nodata) with colour table, class names and a .qml style."))
        self.addParameter(p)
        p = QgsProcessingParameterRasterDestination(
            P_CONFIDENCE, tr("Confidence"), optional=True, createByDefault=False
        )
        p.setHelp(tr("Optional GeoTIFF with the winning class probability (0-1) per pixel."))
        self.addParameter(p)
        self.addOutput(QgsProcessingOutputString("STYLE", tr("QML style file")))
        self.addOutput(QgsProcessingOutputNumber("TILES", tr("Tiles processed")))

    def execute(self, parameters, context, feedback):
        deps.require()
        from .._vendor.spectralx import checkpoint, inference

        layer = self.parameterAsRasterLayer(parameters, P_INPUT, context)
        src = raster_path(layer)
        ckpt = self.parameterAsFile(parameters, P_CHECKPOINT, context)
        card = checkpoint.read_card(ckpt)
        output = self.parameterAsOutputLayer(parameters, P_OUTPUT, context)
        confidence = None
        if parameters.get(P_CONFIDENCE) not in (None, ""):
            confidence = self.parameterAsOutputLayer(parameters, P_CONFIDENCE, context) or None
        for path in (output, confidence):
            if path and os.path.splitext(path)[1].lower() not in (".tif", ".tiff"):
                raise QgsProcessingException(tr(f"{path}: SpectralX writes GeoTIFF; use a .tif file name"))
        feedback.pushInfo(
            tr(
                f"Checkpoint: {len(card.bands)} bands, {len(card.classes)} classes, "
                f"tile {card.tile_size} px; engine {deps.engine_source()}"
            )
        )
        if not confidence:
            # an optional output left empty (batch mode passes '') must not be announced as a layer
            # to load, or Processing reports it as "not correctly generated"
            drop_unnamed_layers(context)
        request = SegmentRequest(
            src,
            ckpt,
            output,
            confidence=confidence,
            backbone=self._file(parameters, P_BACKBONE, context),
            band_map=band_map_arg(self.parameterAsString(parameters, P_BAND_MAP, context)),
            sensor=self._sensor(parameters, context),
            bbox=self._bbox(parameters, context, layer),
            overlap=self.parameterAsDouble(parameters, P_OVERLAP, context),
            batch_size=self.parameterAsInt(parameters, P_BATCH_SIZE, context),
            device=self._device(parameters, context),
            precision=PRECISIONS[self.parameterAsEnum(parameters, P_PRECISION, context)][0],
            overwrite=True,
        )
        args, kwargs = request.engine_args()
        scheduler = (self.parameterAsString(parameters, P_DASK_SCHEDULER, context) or "").strip()
        if scheduler:
            kwargs["dask"] = scheduler
            feedback.pushInfo(tr(f"Running the blocks on Dask: {scheduler}"))
        result = inference.segment(*args, progress=feedback_progress(feedback), **kwargs)
        if feedback.isCanceled():
            return self.cancelled(context, feedback)
        self._name_layers(context, layer, ckpt, result)
        return {
            P_OUTPUT: result.output,
            P_CONFIDENCE: result.confidence,
            "STYLE": result.style or "",
            "TILES": result.tiles,
        }

    def _bbox(self, parameters, context, layer):
        if parameters.get(P_EXTENT) in (None, ""):
            return None
        ext = self.parameterAsExtent(parameters, P_EXTENT, context, layer.crs())
        if ext.isNull() or ext.isEmpty():
            return None
        return (ext.xMinimum(), ext.yMinimum(), ext.xMaximum(), ext.yMaximum())

    @staticmethod
    def _name_layers(context, layer, ckpt, result) -> None:
        """The loaded layers' names (raster and model) and their class / confidence styles."""
        model = os.path.splitext(os.path.basename(ckpt))[0]
        if context.willLoadLayerOnCompletion(result.output):
            details = context.layerToLoadOnCompletionDetails(result.output)
            details.name = tr(f"{layer.name()} classes ({model})")
            details.setPostProcessor(ClassLayerPostProcessor.create(result.classes))
        if result.confidence and context.willLoadLayerOnCompletion(result.confidence):
            details = context.layerToLoadOnCompletionDetails(result.confidence)
            details.name = tr(f"{layer.name()} confidence ({model})")
            details.setPostProcessor(ClassLayerPostProcessor.create([], confidence=True))
