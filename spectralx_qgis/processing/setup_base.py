"""Processing ▸ SpectralX ▸ Setup: what its two algorithms (install_dependencies.py, check_installation.py)
share. They work without torch (they are how it gets installed), so they do not share the engine
algorithms' dependency gate. The installer is the panel's (setup/installer.py); here Processing's feedback
carries its log, progress and cancel, so it also runs headless from qgis_process.
"""

from __future__ import annotations

from qgis.core import QgsProcessingAlgorithm
from qgis.PyQt.QtCore import QCoreApplication

from .. import icons
from ..setup import gpu_detect, requirements

BUILDS = [("auto", "Automatic (CUDA when nvidia-smi finds a GPU, else CPU)"), ("cpu", "CPU only")] + [
    (b[0], f"CUDA {b[1]}") for b in gpu_detect.CUDA_BUILDS
]
DEVICES = [("auto", "Automatic"), ("cuda", "CUDA GPU"), ("mps", "Apple GPU (MPS)"), ("cpu", "CPU")]


def tr(text: str) -> str:
    return QCoreApplication.translate("SpectralX", text)


class SetupAlgorithm(QgsProcessingAlgorithm):
    """Common parts of the Setup group: ids, group, icon, and the pinned list under the help."""

    _name = _display = _help = ""

    def name(self):
        return self._name

    def displayName(self):
        return tr(self._display)

    def group(self):
        return tr("Setup")

    def groupId(self):
        return "setup"

    def icon(self):
        return icons.icon()

    def shortHelpString(self):
        # QGIS shows the help as HTML: '<1.4' would start a tag and vanish, so the list is escaped
        import html

        return (
            tr(self._help)
            + "\n\n"
            + tr("The pinned requirements (one list, the plugin's requirements.txt):\n")
            + "\n".join(html.escape(line) for line in requirements.lines())
        )

    def createInstance(self):
        return type(self)()
