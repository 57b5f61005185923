"""Processing: Accuracy and area report (`spectralx evaluate --area`): Olofsson et al. 2014 estimates."""

from __future__ import annotations

import os

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputFile,
    QgsProcessingOutputNumber,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterRasterLayer,
)

from ..setup import deps
from .base import SpectralXAlgorithm, raster_path, tr

P_PREDICTION = "PREDICTION"
P_REFERENCE = "REFERENCE"
P_CLASS_FIELD = "CLASS_FIELD"
P_DESIGN = "DESIGN"
P_OUTPUT = "OUTPUT"

DESIGNS = [
    ("auto", "Automatic (stratified when the points have a 'stratum' field)"),
    ("stratified", "Stratified random, strata = map classes"),
    ("simple", "Simple random or systematic"),
]


class AccuracyAreaReportAlgorithm(SpectralXAlgorithm):
    _name = "accuracy_area_report"
    _display = "Accuracy and area report"
    _help = (
        "Accuracy and error-adjusted area of every class of a map, with 95 % confidence intervals, from "
        "labelled reference points (Olofsson et al. 2014, Good practices for estimating area and assessing "
        "accuracy of land change, Remote Sensing of Environment 148): the error matrix in sample counts "
        "and in area proportions, overall, user's and producer's accuracies, and each class's area in "
        "hectares and pixels. Writes an HTML report with a chart, and a JSON file and the chart (PNG) "
        "beside it.\n\nPREDICTION: the class raster. REFERENCE: points with the reference class (e.g. "
        "from 'Create reference sample', once labelled). CLASS_FIELD: the field holding the reference "
        "class (values or names). DESIGN: how the points were drawn; strata other than the map classes "
        "are refused. OUTPUT: the HTML report."
    )

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterRasterLayer(P_PREDICTION, tr("Class raster (the map)")))
        self.addParameter(
            QgsProcessingParameterFeatureSource(P_REFERENCE, tr("Reference points"), [QgsProcessing.TypeVectorPoint])
        )
        self.addParameter(
            QgsProcessingParameterField(
                P_CLASS_FIELD,
                tr("Reference class field"),
                defaultValue="reference",
                parentLayerParameterName=P_REFERENCE,
            )
        )
        self.addParameter(
            QgsProcessingParameterEnum(
                P_DESIGN, tr("Sampling design"), options=[label for _, label in DESIGNS], defaultValue=0
            )
        )
        self.addParameter(
            QgsProcessingParameterFileDestination(P_OUTPUT, tr("Report (HTML)"), fileFilter="HTML files (*.html)")
        )
        self.addOutput(QgsProcessingOutputNumber("OVERALL_ACCURACY", tr("Overall accuracy")))
        self.addOutput(QgsProcessingOutputFile("JSON", tr("Report (JSON)")))
        self.addOutput(QgsProcessingOutputFile("CHART", tr("Chart (PNG)")))

    def execute(self, parameters, context, feedback):
        deps.require()
        from .._vendor.spectralx import area_report as report
        from .._vendor.spectralx import area_report_files as files
        from .._vendor.spectralx import fileio

        prediction = raster_path(self.parameterAsRasterLayer(parameters, P_PREDICTION, context))
        field = self.parameterAsFields(parameters, P_CLASS_FIELD, context)
        if not field:
            raise QgsProcessingException(tr("choose the field that holds the reference class (CLASS_FIELD)"))
        points, layer = self.parameterAsCompatibleSourceLayerPathAndLayerName(
            parameters, P_REFERENCE, context, ["gpkg", "shp", "geojson"], "gpkg", feedback
        )
        html = self.parameterAsFileOutput(parameters, P_OUTPUT, context)
        if os.path.splitext(html)[1].lower() not in (".html", ".htm"):
            raise QgsProcessingException(tr(f"{html}: the report is HTML; use a .html file name"))
        paths = files.report_paths(os.path.splitext(html)[0] + ".json")
        inputs = fileio.raster_files(prediction) + fileio.vector_files(points.split("|")[0])
        fileio.check_outputs(
            [(paths["json"], "report"), (paths["html"], "HTML report"), (paths["png"], "chart")], inputs, overwrite=True
        )
        result = report.assess(
            prediction,
            points.split("|")[0],
            field[0],
            design=DESIGNS[self.parameterAsEnum(parameters, P_DESIGN, context)][0],
            layer=layer or None,
        )
        files.write_report(result, paths["json"])
        for note in result["notes"]:
            feedback.pushInfo(tr("Note: ") + note)
        oa = result["overall_accuracy"]
        feedback.pushInfo(
            tr(f"Overall accuracy {oa['estimate']:.3f} ± {oa['ci95']:.3f} (95 %), " f"{result['sample_size']} points")
        )
        return {
            P_OUTPUT: paths["html"],
            "JSON": paths["json"],
            "CHART": paths["png"],
            "OVERALL_ACCURACY": oa["estimate"],
        }
