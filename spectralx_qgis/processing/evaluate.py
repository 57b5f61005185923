"""Processing: Evaluate a classification (`spectralx evaluate`): accuracy against reference labels."""

from __future__ import annotations

import json

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterField,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterMapLayer,
    QgsProcessingParameterRasterLayer,
    QgsRasterLayer,
)

from ..setup import deps
from .base import SpectralXAlgorithm, json_default, raster_path, tr

P_PREDICTION = "PREDICTION"
P_REFERENCE = "REFERENCE"
P_CLASS_FIELD = "CLASS_FIELD"
P_OUTPUT = "OUTPUT"

HELP = (
    "Compares a class raster with reference labels (a label raster, or points/polygons with a "
    "class field) and reports overall accuracy, per-class IoU and F1, mIoU and the confusion "
    "matrix.\n\nPREDICTION: class raster (e.g. from Segment). REFERENCE: reference labels. "
    "CLASS_FIELD: class field when the reference is a vector layer. OUTPUT: optional JSON report."
)


class EvaluateAlgorithm(SpectralXAlgorithm):
    _name = "evaluate"
    _display = "Evaluate a classification"
    _help = HELP

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterRasterLayer(P_PREDICTION, tr("Class raster")))
        self.addParameter(QgsProcessingParameterMapLayer(P_REFERENCE, tr("Reference labels (raster or vector)")))
        self.addParameter(
            QgsProcessingParameterField(
                P_CLASS_FIELD, tr("Class field (vector reference)"), parentLayerParameterName=P_REFERENCE, optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterFileDestination(
                P_OUTPUT, tr("Report (JSON)"), fileFilter="JSON (*.json)", optional=True, createByDefault=False
            )
        )
        self.addOutput(QgsProcessingOutputNumber("MIOU", tr("Mean IoU")))
        self.addOutput(QgsProcessingOutputNumber("OA", tr("Overall accuracy")))
        self.addOutput(QgsProcessingOutputString("REPORT", tr("Metrics (JSON)")))

    def execute(self, parameters, context, feedback):
        deps.require()
        from .._vendor.spectralx import evaluate

        pred = raster_path(self.parameterAsRasterLayer(parameters, P_PREDICTION, context))
        ref_layer = self.parameterAsLayer(parameters, P_REFERENCE, context)
        if ref_layer is None:
            raise QgsProcessingException(tr("no reference layer"))
        if isinstance(ref_layer, QgsRasterLayer):
            reference = raster_path(ref_layer)
        else:
            reference = self.parameterAsCompatibleSourceLayerPath(
                parameters, P_REFERENCE, context, ["gpkg", "shp", "geojson"], "gpkg", feedback
            ).split("|")[0]
        field = self.parameterAsFields(parameters, P_CLASS_FIELD, context)
        metrics = evaluate.evaluate(pred, reference, class_field=field[0] if field else None)
        text = json.dumps(metrics, indent=1, default=json_default)
        feedback.pushInfo(text[:4000])
        # the engine's scores (spectralx.training.metrics.scores): "miou" and "overall_accuracy"
        out = {"MIOU": float(metrics["miou"]), "OA": float(metrics["overall_accuracy"]), "REPORT": text}
        path = self.parameterAsFileOutput(parameters, P_OUTPUT, context) if parameters.get(P_OUTPUT) else ""
        if path:
            with open(path, "w", encoding="utf-8") as f:
                f.write(text)
            out[P_OUTPUT] = path
        return out
