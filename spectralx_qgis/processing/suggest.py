"""Processing: Suggest where to label (`spectralx suggest`): places where a new label helps most."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterVectorDestination,
)

from ..bridge import feedback_progress
from ..setup import deps
from .base import P_BACKBONE, P_CHECKPOINT, SpectralXAlgorithm, raster_path, tr

P_INPUT = "INPUT"
P_N = "N"
P_MIN_DISTANCE = "MIN_DISTANCE"
P_EXTENT = "EXTENT"
P_OUTPUT = "OUTPUT"


class SuggestAlgorithm(SpectralXAlgorithm):
    _name = "suggest"
    _display = "Suggest where to label"
    _help = (
        "Where a new label helps the model most: scores every pixel by the model's uncertainty (1 - its "
        "confidence) plus the disagreement between its network and its random forest, and picks N places, "
        "best first, taking the predicted classes in turn and at least MIN_DISTANCE apart. Each point carries "
        "the predicted class, the confidence, the disagreement, why it was picked and an empty 'label' field. "
        "Digitize a polygon of the right class at each place, then fine-tune again from the same checkpoint."
        "\n\nINPUT: the raster. CHECKPOINT: the model. N: number of places. MIN_DISTANCE: in the raster's map "
        "units (0: half the spacing of N places spread evenly). EXTENT: only this area. OUTPUT: GeoPackage."
    )

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterRasterLayer(P_INPUT, tr("Raster")))
        self.addParameter(
            QgsProcessingParameterFile(
                P_CHECKPOINT, tr("Checkpoint"), fileFilter="SpectralX checkpoint (*.safetensors)"
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                P_N,
                tr("Number of places"),
                type=QgsProcessingParameterNumber.Integer,
                defaultValue=20,
                minValue=1,
                maxValue=10000,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                P_MIN_DISTANCE,
                tr("Minimum distance (map units, 0: automatic)"),
                type=QgsProcessingParameterNumber.Double,
                defaultValue=0.0,
                minValue=0.0,
            )
        )
        self.addParameter(QgsProcessingParameterExtent(P_EXTENT, tr("Only this area"), optional=True))
        p = QgsProcessingParameterFile(
            P_BACKBONE, tr("Backbone file"), optional=True, fileFilter="Backbone (*.safetensors *.pth *.pt *.ckpt)"
        )
        p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(p)
        self.addParameter(self._sensor_param())
        self.addParameter(self._device_param())
        self.addParameter(QgsProcessingParameterVectorDestination(P_OUTPUT, tr("Places to label")))
        self.addOutput(QgsProcessingOutputNumber("POINTS", tr("Places")))

    def execute(self, parameters, context, feedback):
        deps.require()
        from .._vendor.spectralx import fileio
        from .._vendor.spectralx import suggest as engine

        layer = self.parameterAsRasterLayer(parameters, P_INPUT, context)
        output = self.parameterAsOutputLayer(parameters, P_OUTPUT, context)
        if not output.lower().endswith(".gpkg"):
            raise QgsProcessingException(tr(f"{output}: the places are written as a GeoPackage; use a .gpkg name"))
        bbox = None
        if parameters.get(P_EXTENT):
            r = self.parameterAsExtent(parameters, P_EXTENT, context, layer.crs())
            bbox = (r.xMinimum(), r.yMinimum(), r.xMaximum(), r.yMaximum())
        distance = self.parameterAsDouble(parameters, P_MIN_DISTANCE, context)
        fileio.check_outputs([(output, "places")], [raster_path(layer)], overwrite=True)
        result = engine.suggest(
            raster_path(layer),
            self._file(parameters, P_CHECKPOINT, context),
            n=self.parameterAsInt(parameters, P_N, context),
            min_distance=distance or None,
            backbone=self._file(parameters, P_BACKBONE, context),
            sensor=self._sensor(parameters, context),
            bbox=bbox,
            device=self._device(parameters, context),
            progress=feedback_progress(feedback),
        )
        if feedback.isCanceled():
            return self.cancelled(context, feedback)
        engine.save(result, output)
        for note in result.notes:
            feedback.reportError(tr("Note: ") + note, fatalError=False)
        feedback.pushInfo(tr(f"{len(result)} places, at least {result.min_distance_px:.1f} px apart"))
        return {P_OUTPUT: output, "POINTS": len(result)}
