"""Processing: Create reference sample (`spectralx sample`): stratified random points over a class raster."""
from __future__ import annotations

from qgis.core import (QgsProcessingException, QgsProcessingOutputNumber, QgsProcessingParameterDefinition,
                       QgsProcessingParameterEnum, QgsProcessingParameterNumber,
                       QgsProcessingParameterRasterLayer, QgsProcessingParameterString,
                       QgsProcessingParameterVectorDestination)

from . import deps
from .algorithms import SpectralXAlgorithm, raster_path, tr

ALLOCATIONS = [("proportional", "Proportional to the mapped area"), ("equal", "Equal per class"),
               ("min-per-class", "Proportional, at least K per class")]


class CreateReferenceSampleAlgorithm(SpectralXAlgorithm):
    _name = "reference_sample"
    _display = "Create reference sample"
    _help = ("Draws reference points for an accuracy assessment of a class raster: a stratified random sample "
             "whose strata are the map classes (nodata excluded). The size is SIZE points, or (SIZE = 0) the "
             "standard formula for a target standard error of overall accuracy with the expected user's "
             "accuracies (Olofsson et al. 2014). Each point lies on a pixel centre and carries its stratum, the "
             "map class and an empty 'reference' field: label each point in QGIS (the field offers the class "
             "names), then run 'Accuracy and area report'.\n\nINPUT: class raster. SIZE: number of points (0: "
             "from TARGET_SE). TARGET_SE: e.g. 0.01. EXPECTED_UA: 0.9 for every class, or per class value, e.g. "
             "0.9,3=0.7. ALLOCATION and MIN_PER_CLASS: points per class. SEED: the same seed draws the same points.")

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterRasterLayer("INPUT", tr("Class raster")))
        self.addParameter(QgsProcessingParameterNumber("SIZE", tr("Number of points (0: from the target SE)"),
                                                       type=QgsProcessingParameterNumber.Integer, defaultValue=0,
                                                       minValue=0))
        self.addParameter(QgsProcessingParameterNumber("TARGET_SE", tr("Target standard error of overall accuracy"),
                                                       type=QgsProcessingParameterNumber.Double,
                                                       defaultValue=0.01, minValue=0.0001, maxValue=0.5))
        self.addParameter(QgsProcessingParameterString("EXPECTED_UA", tr("Expected user's accuracies"),
                                                       defaultValue="0.9"))
        self.addParameter(QgsProcessingParameterEnum("ALLOCATION", tr("Allocation"),
                                                     options=[label for _, label in ALLOCATIONS], defaultValue=2))
        self.addParameter(QgsProcessingParameterNumber("MIN_PER_CLASS", tr("At least K points per class"),
                                                       type=QgsProcessingParameterNumber.Integer, defaultValue=50,
                                                       minValue=2))
        p = QgsProcessingParameterNumber("SEED", tr("Random seed"), type=QgsProcessingParameterNumber.Integer,
                                         optional=True, minValue=0)
        p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(p)
        self.addParameter(QgsProcessingParameterVectorDestination("OUTPUT", tr("Reference points")))
        self.addOutput(QgsProcessingOutputNumber("POINTS", tr("Points drawn")))

    def execute(self, parameters, context, feedback):
        sampling = deps.engine("sampling")
        command = deps.engine("commands.sample")
        fileio = deps.engine("fileio")
        classes = raster_path(self.parameterAsRasterLayer(parameters, "INPUT", context))
        output = self.parameterAsOutputLayer(parameters, "OUTPUT", context)
        if not output.lower().endswith(".gpkg"):
            raise QgsProcessingException(tr(f"{output}: the reference points are written as a GeoPackage; "
                                            "use a .gpkg file name"))
        kind = ALLOCATIONS[self.parameterAsEnum(parameters, "ALLOCATION", context)][0]
        if kind == "min-per-class":
            kind = f"min-per-class:{self.parameterAsInt(parameters, 'MIN_PER_CLASS', context)}"
        default, per = command.parse_expected(self.parameterAsString(parameters, "EXPECTED_UA", context))
        size = self.parameterAsInt(parameters, "SIZE", context)
        seed = None if parameters.get("SEED") in (None, "") else self.parameterAsInt(parameters, "SEED", context)
        fileio.check_outputs([(output, "reference points")], fileio.raster_files(classes), overwrite=True)
        sample = sampling.draw(classes, n=size or None,
                               target_se=None if size else self.parameterAsDouble(parameters, "TARGET_SE", context),
                               expected_ua=per, default_ua=0.9 if default is None else default, allocation=kind,
                               seed=seed)
        sampling.save(sample, output)
        feedback.pushInfo(tr("Points per class: ") + ", ".join(
            f"{sample.raster.name(v)} {k} of {n} px" for v, k, n in zip(sample.values, sample.allocated, sample.pixels)))
        return {"OUTPUT": output, "POINTS": len(sample.rows)}
