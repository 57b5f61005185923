"""Processing ▸ SpectralX ▸ Setup: install the dependencies and check the installation.

These two work without torch (they are how it gets installed), so they do not share the engine
algorithms' dependency gate. The installer is the panel's (installer.py); here Processing's feedback
carries its log, progress and cancel, so it also runs headless from qgis_process.
"""
from __future__ import annotations

import os

from qgis.core import (QgsProcessingAlgorithm, QgsProcessingException, QgsProcessingOutputNumber,
                       QgsProcessingOutputString, QgsProcessingParameterEnum, QgsProcessingParameterFile)
from qgis.PyQt.QtCore import QCoreApplication

from . import deps, gpu_detect, icons, proxy, python_finder, requirements, site_dir, verify_install
from .errors import InstallCancelled, InstallError
from .installer import Installer, InstallOptions

BUILDS = [("auto", "Automatic (CUDA when nvidia-smi finds a GPU, else CPU)"), ("cpu", "CPU only")] + [
    (b[0], f"CUDA {b[1]}") for b in gpu_detect.CUDA_BUILDS]
DEVICES = [("auto", "Automatic"), ("cuda", "CUDA GPU"), ("mps", "Apple GPU (MPS)"), ("cpu", "CPU")]


def tr(text: str) -> str:
    return QCoreApplication.translate("SpectralX", text)


class _SetupAlgorithm(QgsProcessingAlgorithm):
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
        return tr(self._help) + "\n\n" + tr("The pinned requirements (one list, the plugin's requirements.txt):\n") + \
            "\n".join(html.escape(line) for line in requirements.lines())

    def createInstance(self):
        return type(self)()


class InstallDependencies(_SetupAlgorithm):
    _name = "install_dependencies"
    _display = "Install dependencies"
    _help = ("Installs what QGIS's Python lacks from SpectralX's pinned requirements into a folder of the QGIS "
             "profile (no administrator rights), with QGIS's own Python interpreter, then verifies it: every "
             "package imports and a matrix product runs on the device (CUDA, Apple GPU or CPU), and the log "
             "says which really ran it. Packages QGIS's Python already has are kept; numpy is always QGIS's. "
             "Online it uses QGIS's proxy; offline, give a folder of wheels (pip download). Restart QGIS if "
             "the log asks for it.")

    def initAlgorithm(self, config=None):
        p = QgsProcessingParameterFile("WHEEL_FOLDER", tr("Offline: install only from this folder of wheels"),
                                       behavior=QgsProcessingParameterFile.Behavior.Folder, optional=True)
        self.addParameter(p)
        self.addParameter(QgsProcessingParameterEnum("BUILD", tr("PyTorch build"), options=[b[1] for b in BUILDS],
                                                     defaultValue=0))
        self.addParameter(QgsProcessingParameterEnum("DEVICE", tr("Verify on device"),
                                                     options=[d[1] for d in DEVICES], defaultValue=0))
        self.addParameter(QgsProcessingParameterFile("PYTHON", tr("QGIS's Python interpreter (found automatically)"),
                                                     optional=True))
        self.addOutput(QgsProcessingOutputString("FOLDER", tr("Package folder")))
        self.addOutput(QgsProcessingOutputString("DEVICE_REPORT", tr("Device check")))

    def processAlgorithm(self, parameters, context, feedback):
        options = InstallOptions(
            python=self.parameterAsFile(parameters, "PYTHON", context) or None,
            wheel_folder=self.parameterAsFile(parameters, "WHEEL_FOLDER", context) or None,
            build=BUILDS[self.parameterAsEnum(parameters, "BUILD", context)][0],
            device=DEVICES[self.parameterAsEnum(parameters, "DEVICE", context)][0],
            proxy=proxy.qgis_proxy_url())
        try:
            result = Installer(options, log=feedback.pushInfo, progress=feedback.setProgress,
                               cancelled=feedback.isCanceled).run()
        except InstallCancelled as exc:
            feedback.pushInfo(tr(f"Cancelled by the user: {exc}"))
            return {}
        except InstallError as exc:
            raise QgsProcessingException(str(exc)) from None
        deps.check(refresh=True)
        report = result.verification.get("device") or {}
        device = report.get("line", "")
        if report and not report.get("ok", True):
            feedback.reportError(tr(f"The packages are installed, but the device asked for is not used: {device}"),
                                 False)
        return {"FOLDER": result.folder or "", "DEVICE_REPORT": device}


class CheckInstallation(_SetupAlgorithm):
    _name = "check_installation"
    _display = "Check installation"
    _help = ("Reports QGIS's Python interpreter, the plugin's package folder, where each required package is "
             "imported from and its version, the engine, and which device really runs a matrix product. Fails "
             "(with the reason) when something is missing.")

    def initAlgorithm(self, config=None):
        self.addParameter(QgsProcessingParameterEnum("DEVICE", tr("Device"), options=[d[1] for d in DEVICES],
                                                     defaultValue=0))
        self.addOutput(QgsProcessingOutputNumber("OK", tr("Everything imports and runs (1) or not (0)")))
        self.addOutput(QgsProcessingOutputString("DEVICE_REPORT", tr("Device check")))

    def processAlgorithm(self, parameters, context, feedback):
        try:
            feedback.pushInfo(f"QGIS's Python: {python_finder.find().describe()}")
        except InstallError as exc:
            feedback.pushInfo(str(exc))
        folder = site_dir.folder(site_dir.default_root())
        record = site_dir.record(folder)
        feedback.pushInfo(f"Plugin package folder: {folder} "
                          f"({'installed ' + record.get('date', '') if record else 'not installed'})")
        modules = ["numpy"] + [r.import_name for r in requirements.load()]
        result = verify_install.verify(modules, DEVICES[self.parameterAsEnum(parameters, "DEVICE", context)][0],
                                       engine_dir=deps.engine_folder())
        for name, info in result["imports"].items():
            if "error" in info:
                feedback.pushInfo(f"  {name}: MISSING ({info['error']})")
            else:
                where = "plugin folder" if verify_install.is_inside(info["file"], folder) else "QGIS's Python"
                feedback.pushInfo(f"  {name} {info['version']} ({where}: {os.path.dirname(info['file'] or '')})")
        missing = deps.check(refresh=True)
        feedback.pushInfo(f"Engine: {deps.engine_source()}")
        gpus = gpu_detect.nvidia_gpus()
        feedback.pushInfo(f"GPU: {gpu_detect.describe(gpus)}")
        line = (result["device"] or {}).get("line", "")
        if line:
            feedback.pushInfo(f"Device: {line}")
        if not result["ok"] or missing:
            first = next(iter(result["failed"] or missing))
            raise QgsProcessingException(
                tr(f"SpectralX is not ready: {first} does not import. Run SpectralX ▸ Setup ▸ Install dependencies "
                   "(or the panel's Install dependencies button)."))
        return {"OK": 1, "DEVICE_REPORT": line}


SETUP_ALGORITHMS = [InstallDependencies, CheckInstallation]
