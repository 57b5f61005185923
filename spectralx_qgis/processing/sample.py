"""Processing: Create reference sample (`spectralx sample`): stratified random points over a class raster."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
)

from ..setup import deps
from .base import SpectralXAlgorithm, raster_path, tr

P_INPUT = "INPUT"
P_SIZE = "SIZE"
P_TARGET_SE = "TARGET_SE"
P_EXPECTED_UA = "EXPECTED_UA"
P_ALLOCATION = "ALLOCATION"
P_MIN_PER_CLASS = "MIN_PER_CLASS"
P_SEED = "SEED"
P_OUTPUT = "OUTPUT"

ALLOCATIONS = [
    ("proportional", "Proportional to the mapped area"),
    ("equal", "Equal per class"),
    ("min-per-class", "Proportional, at least K per class"),
]


class CreateReferenceSampleAlgorithm(SpectralXAlgorithm):
    _name = "reference_sample"
    _display = "Create reference sample"
    _help = (
        "Draws reference points for an accuracy assessment of a class raster: a stratified random sample "
        "whose strata are the map classes (nodata excluded). The size is SIZE points, or (SIZE = 0) the "
        "standard formula for a target standard error of overall accuracy with the expected user's "
        "accuracies (Olofsson et al. 2014). Each point lies on a pixel centre and carries its stratum, the "
        "map class and an empty 'reference' field: label each point in QGIS (the field offers the class "
        "names), then run 'Accuracy and area report'.\n\nINPUT: class raster. SIZE: number of points (0: "
        "from TARGET_SE). TARGET_SE: e.g. 0.01. EXPECTED_UA: 0.9 for every class, or per class value, e.g. "
        "0.9,3=0.7. ALLOCATION and MIN_PER_CLASS: points per class. SEED: the same seed draws the same points."
    )

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterRasterLayer(P_INPUT, tr("Class raster")))
        self.addParameter(
            QgsProcessingParameterNumber(
                P_SIZE,
                tr("Number of points (0: from the target SE)"),
                type=QgsProcessingParameterNumber.Integer,
                defaultValue=0,
                minValue=0,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                P_TARGET_SE,
                tr("Target standard error of overall accuracy"),
                type=QgsProcessingParameterNumber.Double,
                defaultValue=0.01,
                minValue=0.0001,
                maxValue=0.5,
            )
        )
        self.addParameter(
            QgsProcessingParameterString(P_EXPECTED_UA, tr("Expected user's accuracies"), defaultValue="0.9")
        )
        self.addParameter(
            QgsProcessingParameterEnum(
                P_ALLOCATION, tr("Allocation"), options=[label for _, label in ALLOCATIONS], defaultValue=2
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                P_MIN_PER_CLASS,
                tr("At least K points per class"),
                type=QgsProcessingParameterNumber.Integer,
                defaultValue=50,
                minValue=2,
            )
        )
        p = QgsProcessingParameterNumber(
            P_SEED, tr("Random seed"), type=QgsProcessingParameterNumber.Integer, optional=True, minValue=0
        )
        p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(p)
        self.addParameter(QgsProcessingParameterVectorDestination(P_OUTPUT, tr("Reference points")))
        self.addOutput(QgsProcessingOutputNumber("POINTS", tr("Points drawn")))

    def execute(self, parameters, context, feedback):
        deps.require()
        from .._vendor.spectralx import fileio, sampling
        from .._vendor.spectralx.commands import sample as command

        classes = raster_path(self.parameterAsRasterLayer(parameters, P_INPUT, context))
        output = self.parameterAsOutputLayer(parameters, P_OUTPUT, context)
        if not output.lower().endswith(".gpkg"):
            raise QgsProcessingException(
                tr(f"{output}: the reference points are written as a GeoPackage; " "use a .gpkg file name")
            )
        kind = ALLOCATIONS[self.parameterAsEnum(parameters, P_ALLOCATION, context)][0]
        if kind == "min-per-class":
            kind = f"min-per-class:{self.parameterAsInt(parameters, 'MIN_PER_CLASS', context)}"
        default, per = command.parse_expected(self.parameterAsString(parameters, P_EXPECTED_UA, context))
        size = self.parameterAsInt(parameters, P_SIZE, context)
        seed = None if parameters.get(P_SEED) in (None, "") else self.parameterAsInt(parameters, P_SEED, context)
        fileio.check_outputs([(output, "reference points")], fileio.raster_files(classes), overwrite=True)
        sample = sampling.draw(
            classes,
            n=size or None,
            target_se=None if size else self.parameterAsDouble(parameters, P_TARGET_SE, context),
            expected_ua=per,
            default_ua=0.9 if default is None else default,
            allocation=kind,
            seed=seed,
        )
        sampling.save(sample, output)
        feedback.pushInfo(
            tr("Points per class: ")
            + ", ".join(
                f"{sample.raster.name(v)} {k} of {n} px"
                for v, k, n in zip(sample.values, sample.allocated, sample.pixels)
            )
        )
        return {P_OUTPUT: output, "POINTS": len(sample.rows)}
