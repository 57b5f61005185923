"""Processing ▸ SpectralX ▸ Setup ▸ Check installation: where each package comes from, the engine, the device."""

from __future__ import annotations

import os

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterEnum,
)

from ..setup import deps, gpu_detect, python_finder, requirements, site_dir, verify_install
from ..setup.errors import InstallError
from .setup_base import DEVICES, SetupAlgorithm, tr

P_DEVICE = "DEVICE"


class CheckInstallation(SetupAlgorithm):
    _name = "check_installation"
    _display = "Check installation"
    _help = (
        "Reports QGIS's Python interpreter, the plugin's package folder, where each required package is "
        "imported from and its version, the engine, and which device really runs a matrix product. Fails "
        "(with the reason) when something is missing."
    )

    def initAlgorithm(self, config=None):
        self.addParameter(
            QgsProcessingParameterEnum(P_DEVICE, tr("Device"), options=[d[1] for d in DEVICES], defaultValue=0)
        )
        self.addOutput(QgsProcessingOutputNumber("OK", tr("Everything imports and runs (1) or not (0)")))
        self.addOutput(QgsProcessingOutputString("DEVICE_REPORT", tr("Device check")))

    def processAlgorithm(self, parameters, context, feedback):
        try:
            feedback.pushInfo(f"QGIS's Python: {python_finder.find().describe()}")
        except InstallError as exc:
            feedback.pushInfo(str(exc))
        folder = site_dir.folder(site_dir.default_root())
        record = site_dir.record(folder)
        feedback.pushInfo(
            f"Plugin package folder: {folder} "
            f"({'installed ' + record.get('date', '') if record else 'not installed'})"
        )
        modules = ["numpy"] + [r.import_name for r in requirements.load()]
        result = verify_install.verify(
            modules, DEVICES[self.parameterAsEnum(parameters, P_DEVICE, context)][0], engine_dir=deps.engine_folder()
        )
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
                tr(
                    f"SpectralX is not ready: {first} does not import. Run SpectralX ▸ Setup ▸ Install dependencies "
                    "(or the panel's Install dependencies button)."
                )
            )
        return {"OK": 1, "DEVICE_REPORT": line}
