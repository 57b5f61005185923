"""The `spectralx` Processing provider."""

from __future__ import annotations

from qgis.core import QgsProcessingProvider

from .. import icons
from ..setup import deps
from .area_report import AccuracyAreaReportAlgorithm
from .check_installation import CheckInstallation
from .evaluate import EvaluateAlgorithm
from .finetune import FinetuneAlgorithm
from .install_dependencies import InstallDependencies
from .pretrain import PretrainAlgorithm
from .sample import CreateReferenceSampleAlgorithm
from .segment import SegmentAlgorithm
from .suggest import SuggestAlgorithm
from .vectorize import VectorizeClassesAlgorithm

# the engine's runs: segment, the two training stages, evaluate (one algorithm per file)
ALGORITHMS = [SegmentAlgorithm, FinetuneAlgorithm, PretrainAlgorithm, EvaluateAlgorithm]
# analyst's reporting: sample -> label -> accuracy and area; polygons with an MMU (one algorithm per file)
REPORT_ALGORITHMS = [CreateReferenceSampleAlgorithm, AccuracyAreaReportAlgorithm, VectorizeClassesAlgorithm]
# the loop's second half: where to label next
LOOP_ALGORITHMS = [SuggestAlgorithm]
# Setup: how the dependencies get installed (no torch needed)
SETUP_ALGORITHMS = [InstallDependencies, CheckInstallation]


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
        for alg in ALGORITHMS + REPORT_ALGORITHMS + LOOP_ALGORITHMS + SETUP_ALGORITHMS:
            self.addAlgorithm(alg())

    def supportedOutputRasterLayerExtensions(self):
        return ["tif"]

    def warningMessage(self):
        # called while QGIS builds the toolbox: no torch import here, only a cheap lookup
        missing = deps.probably_missing()
        if not missing:
            return ""
        return (
            f"SpectralX needs {', '.join(missing)} in QGIS's Python: run SpectralX ▸ Setup ▸ "
            "Install dependencies (or the panel's Install dependencies button)"
        )
