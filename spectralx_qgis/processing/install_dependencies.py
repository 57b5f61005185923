"""Processing ▸ SpectralX ▸ Setup ▸ Install dependencies: the panel's installer, headless-capable."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputString,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
)

from ..setup import deps, proxy
from ..setup.errors import InstallCancelled, InstallError
from ..setup.installer import Installer, InstallOptions
from .setup_base import BUILDS, DEVICES, SetupAlgorithm, tr

P_WHEEL_FOLDER = "WHEEL_FOLDER"
P_BUILD = "BUILD"
P_DEVICE = "DEVICE"
P_PYTHON = "PYTHON"


class InstallDependencies(SetupAlgorithm):
    _name = "install_dependencies"
    _display = "Install dependencies"
    _help = (
        "Installs what QGIS's Python lacks from SpectralX's pinned requirements into a folder of the QGIS "
        "profile (no administrator rights), with QGIS's own Python interpreter, then verifies it: every "
        "package imports and a matrix product runs on the device (CUDA, Apple GPU or CPU), and the log "
        "says which really ran it. Packages QGIS's Python already has are kept; numpy is always QGIS's. "
        "Online it uses QGIS's proxy; offline, give a folder of wheels (pip download). Restart QGIS if "
        "the log asks for it."
    )

    def initAlgorithm(self, config=None):
        p = QgsProcessingParameterFile(
            P_WHEEL_FOLDER,
            tr("Offline: install only from this folder of wheels"),
            behavior=QgsProcessingParameterFile.Behavior.Folder,
            optional=True,
        )
        self.addParameter(p)
        self.addParameter(
            QgsProcessingParameterEnum(P_BUILD, tr("PyTorch build"), options=[b[1] for b in BUILDS], defaultValue=0)
        )
        self.addParameter(
            QgsProcessingParameterEnum(
                P_DEVICE, tr("Verify on device"), options=[d[1] for d in DEVICES], defaultValue=0
            )
        )
        self.addParameter(
            QgsProcessingParameterFile(P_PYTHON, tr("QGIS's Python interpreter (found automatically)"), optional=True)
        )
        self.addOutput(QgsProcessingOutputString("FOLDER", tr("Package folder")))
        self.addOutput(QgsProcessingOutputString("DEVICE_REPORT", tr("Device check")))

    def processAlgorithm(self, parameters, context, feedback):
        options = InstallOptions(
            python=self.parameterAsFile(parameters, P_PYTHON, context) or None,
            wheel_folder=self.parameterAsFile(parameters, P_WHEEL_FOLDER, context) or None,
            build=BUILDS[self.parameterAsEnum(parameters, P_BUILD, context)][0],
            device=DEVICES[self.parameterAsEnum(parameters, P_DEVICE, context)][0],
            proxy=proxy.qgis_proxy_url(),
        )
        try:
            result = Installer(
                options, log=feedback.pushInfo, progress=feedback.setProgress, cancelled=feedback.isCanceled
            ).run()
        except InstallCancelled as exc:
            feedback.pushInfo(tr(f"Cancelled by the user: {exc}"))
            return {}
        except InstallError as exc:
            raise QgsProcessingException(str(exc)) from None
        deps.check(refresh=True)
        report = result.verification.get("device") or {}
        device = report.get("line", "")
        if report and not report.get("ok", True):
            feedback.reportError(
                tr(f"The packages are installed, but the device asked for is not used: {device}"), False
            )
        return {"FOLDER": result.folder or "", "DEVICE_REPORT": device}
