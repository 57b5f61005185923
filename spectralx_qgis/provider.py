"""The `spectralx` Processing provider."""
from __future__ import annotations

from qgis.core import QgsProcessingProvider

from . import deps, icons
from .algorithms import ALGORITHMS


class SpectralXProvider(QgsProcessingProvider):
    def id(self):
        return "spectralx"

    def name(self):
        return "SpectralX"

    def longName(self):
        return "SpectralX spectral land-cover segmentation"

    def icon(self):
        return icons.icon()

    def loadAlgorithms(self):
        for alg in ALGORITHMS:
            self.addAlgorithm(alg())

    def supportedOutputRasterLayerExtensions(self):
        return ["tif"]

    def warningMessage(self):
        return deps.guidance().split("\n")[0] if not deps.ok() else ""
