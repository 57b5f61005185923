"""Processing: Pretrain on unlabelled imagery (`spectralx pretrain`, stage 1): a stage-1 checkpoint."""

from __future__ import annotations

from qgis.core import (
    QgsProcessing,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
)

from .._vendor.spectralx.contract import defaults
from ..bridge import training_feedback_progress
from ..panel.requests import PretrainRequest
from ..setup import deps
from .base import P_BACKBONE, P_CHECKPOINT, P_STEPS, SpectralXAlgorithm, add_starting_point_parameters, raster_path, tr

P_INPUT = "INPUT"
P_BATCH_SIZE = "BATCH_SIZE"
P_OUTPUT = "OUTPUT"

HELP = (
    "Stage-1 training: masked spectral reconstruction on unlabelled images of the target "
    "sensor, which prepares HyperT and the adapters before fine-tuning. The frozen backbone is "
    "not changed.\n\nINPUT: one or more unlabelled rasters of the same sensor. CHECKPOINT: start "
    "from this checkpoint (optional). BACKBONE: backbone file. SENSOR: sensor and band order for rasters "
    "without wavelength metadata, e.g. landsat8:B2,B3,B4. STEPS, BATCH_SIZE: training "
    "settings. OUTPUT: the stage-1 checkpoint, to pass to Fine-tune."
)


class PretrainAlgorithm(SpectralXAlgorithm):
    _name = "pretrain"
    _display = "Pretrain on unlabelled imagery (stage 1)"
    _help = HELP

    def initAlgorithm(self, config=None):
        self.addParameter(
            QgsProcessingParameterMultipleLayers(P_INPUT, tr("Unlabelled rasters"), layerType=QgsProcessing.TypeRaster)
        )
        add_starting_point_parameters(self)
        p = QgsProcessingParameterNumber(
            P_BATCH_SIZE,
            tr("Batch size"),
            type=QgsProcessingParameterNumber.Integer,
            defaultValue=defaults.training_default("pretrain", "batch_size"),
            minValue=1,
            maxValue=defaults.BATCH_SIZE_MAX,
        )
        p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(p)
        self.addParameter(self._device_param())
        self.addParameter(
            QgsProcessingParameterFileDestination(
                P_OUTPUT, tr("Stage-1 checkpoint"), fileFilter="SpectralX checkpoint (*.safetensors)"
            )
        )

    def execute(self, parameters, context, feedback):
        deps.require()
        from .._vendor.spectralx import training

        layers = self.parameterAsLayerList(parameters, P_INPUT, context)
        images = [raster_path(lyr) for lyr in layers]
        output = self.parameterAsFileOutput(parameters, P_OUTPUT, context)
        request = PretrainRequest(
            images,
            output,
            checkpoint=self._file(parameters, P_CHECKPOINT, context),
            backbone=self._file(parameters, P_BACKBONE, context),
            sensor=self._sensor(parameters, context),
            steps=self.parameterAsInt(parameters, P_STEPS, context),
            batch_size=self.parameterAsInt(parameters, P_BATCH_SIZE, context),
            device=self._device(parameters, context),
        )
        args, kwargs = request.engine_args()
        result = training.pretrain(*args, progress=training_feedback_progress(feedback), **kwargs)
        if feedback.isCanceled():
            return self.cancelled(context, feedback)
        return {P_OUTPUT: result.checkpoint or output}
