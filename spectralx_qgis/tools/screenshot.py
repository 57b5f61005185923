"""`make screenshot`: run inside a real QGIS (`qgis --code`), under Xvfb.

Installs the plugin zip through QGIS's "Install from ZIP" code path, loads a Landsat 8 Level-1 crop
that carries no wavelengths and the analyst's polygons, opens the SpectralX panel, maps the raster
through the sensor picker (Landsat 8, B2,B3,B4), fine-tunes a model from the polygons on the demo
backbone, segments the layer with it, asks where to label next (the suggestion point layer over
the map), waits for the styled result, and saves the main window to
$SPECTRALX_SCREENSHOT; then runs the dependency installer's dialog (which verifies this QGIS) and
opens the model manager on $SPECTRALX_MODELS, saving each beside it (install-dialog.png,
model-manager.png).
Not part of the plugin zip (a developer tool).
"""

import os
import sys
import traceback

from qgis.core import QgsApplication, QgsProject, QgsRasterLayer
from qgis.PyQt.QtCore import QTimer
from qgis.utils import iface, plugins

OUT = os.environ.get("SPECTRALX_SCREENSHOT", "docs/screenshot.png")
SAMPLE = os.environ["SPECTRALX_SAMPLE"]
POLYGONS = os.environ["SPECTRALX_POLYGONS"]
BACKBONE = os.environ["SPECTRALX_BACKBONE"]
STEPS = int(os.environ.get("SPECTRALX_STEPS", "120"))
LOG = os.environ.get("SPECTRALX_SCREENSHOT_LOG", "/tmp/spectralx_screenshot.log")
state = {"t": 0, "task_started": False}


def log(msg):
    with open(LOG, "a") as f:
        f.write(msg + "\n")


def quit_qgis(code=0):
    log(f"exit {code}")
    # close the project while the main window is alive, as File > Exit does: QGIS 3.22 crashes
    # (signal 11 in its style dock) when ~QgisApp has to clear a layer tree with an active layer
    iface.setActiveLayer(None)
    QgsProject.instance().clear()
    QgsApplication.instance().exit(code)


def step():
    # Long (~130 lines): the screenshot's script as one state machine driven by a QTimer (each state
    # re-schedules the next); read top to bottom it is the order the screenshots are taken in.
    try:
        state["t"] += 1
        if state["t"] > 1200:  # 10 minutes
            log("timed out")
            return quit_qgis(3)
        if state["t"] == 1:
            # what Plugins > Manage and Install Plugins > Install from ZIP does
            import pyplugin_installer

            pyplugin_installer.instance().installFromZipFile(os.environ["SPECTRALX_ZIP"])
            log(f"installed from zip; active: {list(plugins)}")
        plugin = plugins.get("spectralx_qgis")
        if plugin is None:
            if state["t"] > 60:
                log(f"plugin not loaded; loaded: {list(plugins)}")
                return quit_qgis(2)
            return QTimer.singleShot(500, step)
        dock = plugin.dock
        if not state["task_started"]:
            iface.mainWindow().resize(1600, 1000)
            layer = QgsRasterLayer(SAMPLE, "Landsat 8 L1 224/078, 2020-05-18 (no wavelengths)")
            QgsProject.instance().addMapLayer(layer)
            # natural colour: bands 3, 2, 1 are red, green, blue (B4, B3, B2)
            from qgis.core import (
                QgsContrastEnhancement,
                QgsFillSymbol,
                QgsMultiBandColorRenderer,
                QgsSingleSymbolRenderer,
                QgsVectorLayer,
            )

            r = QgsMultiBandColorRenderer(layer.dataProvider(), 3, 2, 1)
            for band, setter in (
                (3, r.setRedContrastEnhancement),
                (2, r.setGreenContrastEnhancement),
                (1, r.setBlueContrastEnhancement),
            ):
                stats = layer.dataProvider().bandStatistics(band)
                ce = QgsContrastEnhancement(layer.dataProvider().dataType(band))
                ce.setContrastEnhancementAlgorithm(
                    QgsContrastEnhancement.ContrastEnhancementAlgorithm.StretchToMinimumMaximum
                )
                ce.setMinimumValue(stats.minimumValue)
                ce.setMaximumValue(stats.mean + 2 * stats.stdDev)
                setter(ce)
            layer.setRenderer(r)
            polygons = QgsVectorLayer(POLYGONS, "hand-drawn polygons (class: name)", "ogr")
            polygons.setRenderer(
                QgsSingleSymbolRenderer(
                    QgsFillSymbol.createSimple(
                        {"color": "0,0,0,0", "outline_color": "255,255,0", "outline_width": "0.6"}
                    )
                )
            )
            QgsProject.instance().addMapLayer(polygons)
            iface.setActiveLayer(layer)
            dock = plugin.show_dock()
            dock.setMinimumWidth(500)
            out_dir = os.path.join(os.path.dirname(os.path.abspath(OUT)), ".screenshot_out")
            os.makedirs(out_dir, exist_ok=True)
            dock.output_dir.setFilePath(out_dir)
            dock.set_layer(layer)
            dock.polygon_combo.setLayer(polygons)
            dock.backbone_widget.setFilePath(BACKBONE)
            dock.bands.set_sensor("landsat8")  # the sensor picker: band order B2,B3,B4 filled in
            dock.steps_spin.setValue(STEPS)
            dock.device_combo.setCurrentIndex(max(dock.device_combo.findData("cpu"), 0))
            iface.mapCanvas().setExtent(layer.extent())
            iface.mapCanvas().refresh()
            task = dock.finetune()
            log(f"fine-tune started: {task} ({dock.status.text()})")
            state["task_started"] = "finetune"
            return QTimer.singleShot(1000, step)
        if state["task_started"] == "finetune":
            if dock.task is not None:
                return QTimer.singleShot(1000, step)
            log(f"fine-tune done: {dock.status.text()}")
            state["task_started"] = "bands"
            return QTimer.singleShot(500, step)
        if state["task_started"] == "bands":
            if dock.bands.pending():
                return QTimer.singleShot(500, step)
            task = dock.segment_layer()
            log(f"segment started: {task} ({dock.status.text()})")
            state["task_started"] = "segment"
            return QTimer.singleShot(500, step)
        if state["task_started"] == "segment":
            if dock.task is not None:
                return QTimer.singleShot(500, step)
            log(f"segment done: {dock.status.text()}")
            # the loop's next step: where to label next, as a point layer over the map
            task = dock.suggest()
            log(f"suggest started: {task}")
            state["task_started"] = "suggest"
            return QTimer.singleShot(500, step)
        if state["task_started"] == "suggest":
            if dock.task is not None:
                return QTimer.singleShot(500, step)
            log(f"suggest done: {dock.status.text()}")
            # scroll the band table to show mapped rows, then let the canvas render
            dock.band_table.scrollToTop()
            root = QgsProject.instance().layerTreeRoot()
            for node in root.findLayers():
                node.setExpanded(node.parent() is not root)  # show the class legend, fold the input
            group = root.findGroup("SpectralX")
            if group is not None:  # toggle: the view only follows a change of state
                group.setExpanded(False)
                group.setExpanded(True)
            iface.mapCanvas().refreshAllLayers()
            state["task_started"] = "render"
            return QTimer.singleShot(4000, step)
        if state["task_started"] == "render":
            iface.mapCanvas().waitWhileRendering()
            img = iface.mainWindow().grab()
            os.makedirs(os.path.dirname(os.path.abspath(OUT)), exist_ok=True)
            ok = img.save(OUT, "PNG")
            log(f"saved {OUT}: {ok} {img.width()}x{img.height()}")
            if not ok:
                return quit_qgis(4)
            # the installer's dialog, after a real run (this QGIS's Python has everything: it verifies)
            dialog = dock.open_installer()
            dialog.root = os.path.join(os.path.dirname(os.path.abspath(OUT)), ".screenshot_out", "packages")
            dialog.resize(760, 640)
            state["dialog"] = dialog
            dialog.start()
            state["task_started"] = "install"
            return QTimer.singleShot(1000, step)
        if state["task_started"] == "install":
            dialog = state["dialog"]
            if dialog.is_running():
                return QTimer.singleShot(500, step)
            path = os.path.join(os.path.dirname(os.path.abspath(OUT)), "install-dialog.png")
            log(f"install dialog: {dialog.verdict.text()}; saved {path}: {dialog.grab().save(path, 'PNG')}")
            dialog.close()
            import shutil

            models = os.environ.get("SPECTRALX_MODELS")
            log(f"model folder {models!r}; fine-tuned model {dock.checkpoint_path()!r}")
            if models and dock.checkpoint_path():  # the model fine-tuned above joins the folder
                shutil.copy(dock.checkpoint_path(), os.path.join(models, "landsat8-224078-polygons.safetensors"))
            manager = dock.open_model_manager()
            manager.resize(1100, 640)
            state["manager"] = manager
            state["task_started"] = "models"
            return QTimer.singleShot(1500, step)
        if state["task_started"] == "models":
            manager = state["manager"]
            path = os.path.join(os.path.dirname(os.path.abspath(OUT)), "model-manager.png")
            log(f"model manager saved {path}: {manager.grab().save(path, 'PNG')}")
            manager.close()
            return quit_qgis(0)
    except Exception:  # noqa: BLE001
        log(traceback.format_exc())
        quit_qgis(5)


log(f"start {sys.argv}")
QTimer.singleShot(2000, step)
