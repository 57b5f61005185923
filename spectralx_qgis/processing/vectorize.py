"""Processing: Vectorize classes (`spectralx vectorize`): polygons with a minimum mapping unit."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
)

from ..bridge import feedback_progress
from ..setup import deps
from .base import SpectralXAlgorithm, raster_path, tr

P_INPUT = "INPUT"
P_CONFIDENCE = "CONFIDENCE"
P_MMU = "MMU"
P_OUTPUT = "OUTPUT"


class VectorizeClassesAlgorithm(SpectralXAlgorithm):
    _name = "vectorize"
    _display = "Vectorize classes"
    _help = (
        "Turns a class raster into polygons with a minimum mapping unit: regions smaller than the MMU take "
        "the class of their largest neighbour (GDAL's sieve), then each region becomes a polygon (GDAL's "
        "polygonize) with its class id, class name, pixels, area in hectares and, with a confidence raster, "
        "the mean confidence of its pixels. The layer is styled with the classes' colours. Any raster size: "
        "GDAL works line by line (no tile seams).\n\nINPUT: class raster. CONFIDENCE: the confidence raster "
        "written with it (optional). MMU: minimum mapping unit, e.g. 0.5ha, 5000m2 or 12px (empty: none). "
        "OUTPUT: GeoPackage."
    )

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterRasterLayer(P_INPUT, tr("Class raster")))
        self.addParameter(QgsProcessingParameterRasterLayer(P_CONFIDENCE, tr("Confidence raster"), optional=True))
        self.addParameter(
            QgsProcessingParameterString(
                P_MMU, tr("Minimum mapping unit (e.g. 0.5ha, 12px)"), defaultValue="0.5ha", optional=True
            )
        )
        self.addParameter(QgsProcessingParameterVectorDestination(P_OUTPUT, tr("Class polygons")))
        self.addOutput(QgsProcessingOutputNumber("POLYGONS", tr("Polygons")))

    def execute(self, parameters, context, feedback):
        deps.require()
        from .._vendor.spectralx import fileio, vectorize
        from .._vendor.spectralx.commands import vectorize as command

        classes = raster_path(self.parameterAsRasterLayer(parameters, P_INPUT, context))
        conf_layer = self.parameterAsRasterLayer(parameters, P_CONFIDENCE, context)
        confidence = raster_path(conf_layer) if conf_layer is not None else None
        mmu = (self.parameterAsString(parameters, P_MMU, context) or "").strip() or None
        output = self.parameterAsOutputLayer(parameters, P_OUTPUT, context)
        if not output.lower().endswith(".gpkg"):
            raise QgsProcessingException(
                tr(f"{output}: the polygons are written as a GeoPackage; use a .gpkg " "file name")
            )
        inputs = fileio.raster_files(classes) + (fileio.raster_files(confidence) if confidence else [])
        fileio.check_outputs([(output, "polygons")], inputs, overwrite=True)
        result = vectorize.vectorize(
            classes, output, mmu=mmu, confidence=confidence, progress=feedback_progress(feedback)
        )
        feedback.pushInfo(command.summary(result))
        return {P_OUTPUT: output, "POLYGONS": result.polygons}
