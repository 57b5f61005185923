"""Missing dependency path: QGIS's Python without torch still loads the plugin and explains the fix."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from test_plugin_common import ENMAP_TILE, REPO

from spectralx_qgis.setup import requirements

SCRIPT = textwrap.dedent(r'''
    import json, sys
    sys.modules["torch"] = None            # `import torch` now fails, as in a QGIS without PyTorch
    from qgis.core import QgsApplication, QgsProcessingException
    app = QgsApplication([], True)
    app.initQgis()
    sys.path.append("/usr/share/qgis/python/plugins")
    from processing.core.Processing import Processing
    Processing.initialize()
    from qgis.gui import QgsMapCanvas, QgsMessageBar
    from qgis.PyQt.QtWidgets import QMainWindow

    class Iface:                            # the parts of QgisInterface the plugin uses
        def __init__(self):
            self.window = QMainWindow(); self.canvas = QgsMapCanvas(self.window)
            self.bar = QgsMessageBar(self.window)
        def mainWindow(self): return self.window
        def mapCanvas(self): return self.canvas
        def messageBar(self): return self.bar
        def addDockWidget(self, area, dock): self.window.addDockWidget(area, dock)
        def removeDockWidget(self, dock): self.window.removeDockWidget(dock)
        def addToolBarIcon(self, action): pass
        def removeToolBarIcon(self, action): pass
        def addPluginToRasterMenu(self, name, action): pass
        def removePluginRasterMenu(self, name, action): pass

    import spectralx_qgis
    plugin = spectralx_qgis.classFactory(Iface())
    plugin.initGui()
    dock = plugin.show_dock()
    out = {"guidance": dock.guidance.text(), "controls_enabled": dock.controls.isEnabled(),
           "provider": QgsApplication.processingRegistry().providerById("spectralx") is not None,
           "manual": dock.manual_command.text(), "install_button": dock.install_deps_button.isVisibleTo(dock),
           "warning": QgsApplication.processingRegistry().providerById("spectralx").warningMessage()}
    out["models_enabled"] = dock.models_button.isEnabled()
    manager = dock.open_model_manager()     # usable before torch: listing, releases, downloads
    out["manager_releases"] = manager.releases_table.rowCount()
    dialog = dock.open_installer()          # the one-click installer, from the panel's button
    out["dialog_requirements"] = dialog.requirement_view.toPlainText()
    out["dialog_python"] = dialog.python_widget.filePath()
    out["install_help"] = QgsApplication.processingRegistry().algorithmById(
        "spectralx:install_dependencies").shortHelpString()
    import processing
    try:
        processing.run("spectralx:segment", {"INPUT": sys.argv[1], "CHECKPOINT": "x.safetensors",
                                             "OUTPUT": "TEMPORARY_OUTPUT"})
        out["processing"] = "no error"
    except QgsProcessingException as exc:
        out["processing"] = str(exc)
    out["help"] = QgsApplication.processingRegistry().algorithmById("spectralx:segment").shortHelpString()
    plugin.unload()
    print("RESULT" + json.dumps(out))
''')


@pytest.mark.slow
def test_plugin_loads_without_torch_and_shows_guidance(tmp_path):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", PYTHONPATH=REPO, HOME=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, ENMAP_TILE],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(tmp_path),
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT"))
    out = json.loads(line[len("RESULT") :])
    assert out["provider"] and not out["controls_enabled"]
    guidance = out["guidance"]
    assert "- torch (PyTorch: runs the neural network)" in guidance
    assert "- rasterio" not in guidance  # only what is actually missing
    assert "Install dependencies" in guidance and out["install_button"]
    assert out["models_enabled"] and out["manager_releases"] >= 4  # the model manager works without torch
    # the manual fallback names this QGIS's interpreter and the same pinned list, in a field of its own
    assert out["manual"].startswith(f"{sys.executable} -m pip install -r {requirements.PATH}")
    assert out["dialog_python"] == sys.executable
    assert out["dialog_requirements"].splitlines() == requirements.lines()
    # the algorithms report the same guidance instead of a traceback, and point to the installer
    assert "Install dependencies" in out["processing"] and "torch" in out["processing"]
    assert "Traceback" not in out["processing"]
    assert "Install dependencies" in out["help"] and "Install dependencies" in out["warning"]
    import html  # the help is HTML: '<1.4' is written '&lt;1.4' (issue 20, fix 7)

    assert all(line in html.unescape(out["install_help"]) for line in requirements.lines())


@pytest.mark.slow
def test_real_qgis_python_without_engine_dependencies(tmp_path):
    """The system Python QGIS runs on here has no torch/rasterio/safetensors at all (they live in the
    project's venv): the plugin must load there and name that interpreter in its pip command."""
    system_python = "/usr/bin/python3"
    probe = subprocess.run([system_python, "-c", "import qgis.core, torch"], capture_output=True, timeout=120)
    if probe.returncode == 0 or not os.path.exists(system_python):
        import pytest

        pytest.skip("the system Python has torch (or no QGIS): nothing missing to show")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(QT_QPA_PLATFORM="offscreen", PYTHONPATH=REPO, HOME=str(tmp_path))
    proc = subprocess.run(
        [system_python, "-c", SCRIPT, ENMAP_TILE],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(tmp_path),
        timeout=180,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT"))[len("RESULT") :])
    assert out["provider"] and not out["controls_enabled"]
    # QGIS's own interpreter (Debian's), verified by running it, in the dialog and the manual command
    assert os.path.realpath(out["dialog_python"]) == os.path.realpath(system_python)
    assert out["manual"].startswith(out["dialog_python"] + " -m pip install --user --break-system-packages -r ")
    assert "torch" in out["processing"] and "Install dependencies" in out["processing"]
