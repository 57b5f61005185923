"""What every SpectralX Processing algorithm shares: ids, group, icon, the dependency gate, the engine's
errors in Processing's words, and the parameters several algorithms take (device, sensor, starting point).

Each algorithm only translates QGIS parameters into engine arguments, bridges progress/cancel, and turns
engine errors into a QgsProcessingException with the engine's one-line message. If torch, rasterio,
safetensors or the engine are missing, every algorithm reports the dependency guidance.
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict

from qgis.core import (
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
    QgsRasterLayer,
)
from qgis.PyQt.QtCore import QCoreApplication

from .. import icons
from .._vendor.spectralx.contract import defaults, errors
from ..setup import deps

# parameters several algorithms share
P_DEVICE = "DEVICE"
P_SENSOR = "SENSOR"
P_CHECKPOINT = "CHECKPOINT"
P_BACKBONE = "BACKBONE"
P_STEPS = "STEPS"

DEVICES = [("auto", "Automatic (best available)"), ("cpu", "CPU"), ("cuda", "CUDA GPU"), ("mps", "Apple GPU (MPS)")]

SENSOR_HELP = (
    "For rasters without wavelength metadata (every Landsat Level-1 file): the sensor and the "
    "raster's band order, as the command line's --sensor takes it, e.g. landsat8:B2,B3,B4 or "
    "sentinel2:B2,B3,B4,B8. Sensors: sentinel2 (sentinel2a, sentinel2b), landsat8, landsat9, "
    "landsat7 (ETM+), landsat5 (TM), enmap, rgbn (generic red/green/blue/NIR camera). Without "
    "a band order the sensor's usual layout for the raster's band count is assumed. Empty: "
    "wavelengths from the file's metadata."
)


def tr(text: str) -> str:
    return QCoreApplication.translate("SpectralX", text)


def raster_path(layer: QgsRasterLayer) -> str:
    """A file path GDAL/rasterio can open for a raster layer (GDAL provider only)."""
    if layer is None:
        raise QgsProcessingException(tr("no raster layer given"))
    if layer.providerType() != "gdal":
        raise QgsProcessingException(
            tr(
                f"layer '{layer.name()}' comes from the '{layer.providerType()}' provider; SpectralX reads "
                "raster files (GDAL): save or export the layer to a GeoTIFF first"
            )
        )
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


class ClassLayerPostProcessor(QgsProcessingLayerPostProcessorInterface):
    """Applies the paletted class renderer when Processing loads the output layer."""

    _alive = []  # post-processors must outlive the algorithm instance

    def __init__(self, classes, confidence: bool = False):
        super().__init__()
        self.classes = list(classes)
        self.confidence = confidence

    def postProcessLayer(self, layer, context, feedback):
        from .. import styling

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
        if deps.probably_missing():  # no torch import just to show help
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
        try:
            return self.execute(parameters, context, feedback)
        except errors.Cancelled:
            return self.cancelled(context, feedback)
        except errors.SpectralXError as exc:
            # the Processing user's words: SENSOR / BAND_MAP, never a command-line flag
            raise QgsProcessingException(errors.for_qgis(exc, "processing")) from None
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
        return DEVICES[self.parameterAsEnum(parameters, P_DEVICE, context)][0]

    def _device_param(self):
        p = QgsProcessingParameterEnum(P_DEVICE, tr("Device"), options=[d[1] for d in DEVICES], defaultValue=0)
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
        p = QgsProcessingParameterString(P_SENSOR, tr("Sensor and band order (e.g. landsat8:B2,B3,B4)"), optional=True)
        p.setHelp(tr(SENSOR_HELP))
        return p

    def _sensor(self, parameters, context):
        """The SENSOR text, checked against the engine's presets (one vocabulary with the CLI)."""
        value = (self.parameterAsString(parameters, P_SENSOR, context) or "").strip()
        if not value:
            return None
        deps.require()
        from .._vendor.spectralx import bands

        bands.parse_sensor(value)  # unknown sensor/band: one clear line
        return value


def add_starting_point_parameters(alg) -> None:
    """CHECKPOINT / BACKBONE / STEPS / SENSOR, shared by the two training algorithms."""
    alg.addParameter(
        QgsProcessingParameterFile(
            P_CHECKPOINT,
            tr("Start from checkpoint"),
            behavior=QgsProcessingParameterFile.File,
            optional=True,
            fileFilter="SpectralX checkpoint (*.safetensors)",
        )
    )
    alg.addParameter(
        QgsProcessingParameterFile(
            P_BACKBONE,
            tr("Backbone file"),
            behavior=QgsProcessingParameterFile.File,
            optional=True,
            fileFilter="Backbone (*.safetensors *.pth *.pt *.ckpt)",
        )
    )
    alg.addParameter(
        QgsProcessingParameterNumber(
            P_STEPS,
            tr("Training steps"),
            type=QgsProcessingParameterNumber.Integer,
            defaultValue=defaults.training_default(alg.name(), "steps"),
            minValue=1,
            maxValue=defaults.STEPS_MAX,
        )
    )
    alg.addParameter(alg._sensor_param())


def json_default(obj):
    """json.dumps' fallback for numpy scalars and arrays in engine metrics."""
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:
        pass
    return str(obj)
