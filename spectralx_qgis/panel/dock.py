"""The SpectralX dock panel: its widgets (dock_layout.py) and the helpers that act on them, each in its
own module: the checkpoint picker and model card (checkpoints.py), the band box (band_table.py), the
active-layer pickers (layers.py), the header and dependency box (setup_actions.py), the runs
(flows.py, through run_controller.RunController), the analyst's loop (dock_loop.py), reporting
(dock_reporting.py) and the Draw area tool (maptool.py). The dock keeps the panel's state and the
public methods the tests and the screenshot script drive."""

from __future__ import annotations

import os
from typing import Any, List, Optional

from qgis.core import Qgis, QgsProject, QgsRasterLayer
from qgis.gui import QgsDockWidget
from qgis.PyQt.QtCore import pyqtSignal

from .._vendor.spectralx.contract import defaults
from . import dock_layout
from .checkpoints import CheckpointPicker
from .flows import RunFlows
from .layers import ActiveLayers
from .maptool import AreaDrawer
from .run_controller import RunController
from .setup_actions import SetupActions


class SpectralXDock(QgsDockWidget):
    """The panel. Public methods are used by the tests and the screenshot script."""

    runFinished = pyqtSignal(object)  # the finished task (its `outcome`: Done, Failed or Cancelled)
    bandsReady = pyqtSignal()  # the band table has been filled
    checkpointChanged = pyqtSignal(str)

    def __init__(self, iface, parent=None):
        super().__init__("SpectralX", parent)
        self.setObjectName("SpectralXDock")
        self.iface = iface
        self.canvas = iface.mapCanvas() if iface is not None else None
        self.card = None  # the selected checkpoint's model card (None: none readable)
        self.last_layers: List[Any] = []
        self.last_bbox = None  # the area of the last segmentation (None: the whole layer)
        self.start_note = ""  # said when a fine-tune does not start from the selected checkpoint
        self.runs = RunController(self)
        dock_layout.build(self)
        self.checkpoints = CheckpointPicker(self)
        self.layers = ActiveLayers(self)
        self.setup = SetupActions(self)
        self.flows = RunFlows(self)
        self.drawer = AreaDrawer(self)
        dock_layout.connect(self)
        self._check_dependencies()
        self.layers.follow()

    @property
    def task(self):
        return self.runs.task

    def showEvent(self, event):  # noqa: N802
        super().showEvent(event)
        self.preselect_layers()

    def preselect_layers(self, project: Optional[QgsProject] = None):
        self.layers.preselect(project)

    # ------------------------------------------------------------ setup and windows
    def _check_dependencies(self, refresh: bool = False) -> bool:
        return self.setup.check_dependencies(refresh)

    def open_installer(self):
        return self.setup.open_installer()

    def open_model_manager(self):
        return self.setup.open_model_manager()

    def open_help(self):
        return self.setup.open_help()

    # ------------------------------------------------------------ model and raster
    def set_checkpoint(self, path: str) -> bool:
        """Select (adding if needed) a checkpoint in the picker; shows its model card."""
        return self.checkpoints.select(path)

    def checkpoint_path(self) -> str:
        return self.checkpoints.path()

    def set_layer(self, layer):
        if self.layer_combo.currentLayer() is layer:
            self.refresh_bands()
        else:
            self.layer_combo.setLayer(layer)  # -> layer_changed

    def layer_changed(self, _layer):
        self.last_bbox = None
        self.drawer.set_layer(self.current_layer())
        self.refresh_bands()

    def current_layer(self) -> Optional[QgsRasterLayer]:
        lyr = self.layer_combo.currentLayer()
        return lyr if isinstance(lyr, QgsRasterLayer) else None

    def refresh_bands(self):
        layer = self.current_layer()
        if layer is not None and layer.providerType() != "gdal":
            self.bands.set_inputs(None, "")
            self.band_status.setText("This layer is not a raster file; save it as GeoTIFF first.")
            return
        if layer is None:
            self.bands.set_inputs(self.card, "")
        else:
            self.bands.set_inputs(self.card, layer.source().split("|")[0], layer.bandCount())

    # ------------------------------------------------------------ runs
    def _message(self, text: str, level=Qgis.Info):
        self.status.setText(text)
        bar = self.iface.messageBar() if self.iface is not None else None
        if bar is not None:
            try:
                bar.pushMessage("SpectralX", text, level=level, duration=8)
            except TypeError:
                bar.pushMessage("SpectralX", text, level)

    def output_folder(self) -> str:
        folder = self.output_dir.filePath() or defaults.default_output_dir()
        os.makedirs(folder, exist_ok=True)
        return folder

    def segment_layer(self):
        return self.flows.segment(None, "")

    def segment_view(self):
        return self.flows.segment_view()

    def start_draw(self):
        return self.drawer.start()

    def finetune(self):
        return self.flows.finetune()

    def suggest(self, n: Optional[int] = None):
        from . import dock_loop

        return dock_loop.suggest(self, n)

    def finetune_again(self):
        from . import dock_loop

        return dock_loop.finetune_again(self)

    def cancel(self):
        self.runs.cancel()

    def shutdown(self):
        self.bands.shutdown()
        self.runs.shutdown()
        self.layers.shutdown()
        for signal, slot in (
            (self.layer_combo.layerChanged, self.layer_changed),
            (self.checkpoint_combo.currentIndexChanged, self.checkpoints.changed),
        ):
            try:
                signal.disconnect(slot)
            except (TypeError, RuntimeError):
                pass
        self.drawer.shutdown()
