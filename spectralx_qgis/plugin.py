"""Plugin entry: Processing provider, dock panel, toolbar/menu action."""

from __future__ import annotations

from qgis.core import QgsApplication
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QAction

from . import icons


class SpectralXPlugin:
    def __init__(self, iface):
        self.iface = iface
        self.provider = None
        self.dock = None
        self.action = None

    # Processing only (qgis_process, and the first step of initGui)
    def initProcessing(self):  # noqa: N802
        if self.provider is None:
            from .processing.provider import SpectralXProvider

            self.provider = SpectralXProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self):  # noqa: N802
        self.initProcessing()
        if self.iface is None:
            return
        self.action = QAction(icons.icon(), "SpectralX", self.iface.mainWindow())
        self.action.setCheckable(True)
        self.action.setToolTip("Show the SpectralX panel (spectral land-cover segmentation)")
        self.action.toggled.connect(self._toggle_dock)
        self.iface.addToolBarIcon(self.action)
        add_menu = getattr(self.iface, "addPluginToRasterMenu", None) or self.iface.addPluginToMenu
        add_menu("SpectralX", self.action)

    def _ensure_dock(self):
        if self.dock is None:
            from .panel.dock import SpectralXDock

            self.dock = SpectralXDock(self.iface, self.iface.mainWindow())
            self.iface.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.dock)
            self.dock.visibilityChanged.connect(self._dock_visibility)
        return self.dock

    def _dock_visibility(self, visible):
        if self.action is not None and self.action.isChecked() != visible:
            self.action.blockSignals(True)
            self.action.setChecked(visible)
            self.action.blockSignals(False)

    def _toggle_dock(self, checked):
        dock = self._ensure_dock()
        dock.setVisible(checked)
        if checked:
            dock.raise_()

    def show_dock(self):
        self.action.setChecked(True) if self.action is not None else self._ensure_dock().show()
        return self.dock

    def unload(self):
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
        if self.dock is not None:
            self.dock.shutdown()
            remove = getattr(self.iface, "removeDockWidget", None)
            if remove:
                remove(self.dock)
            self.dock.deleteLater()
            self.dock = None
        if self.action is not None:
            remove_menu = getattr(self.iface, "removePluginRasterMenu", None) or getattr(
                self.iface, "removePluginMenu", None
            )
            if remove_menu:
                remove_menu("SpectralX", self.action)
            self.iface.removeToolBarIcon(self.action)
            self.action.deleteLater()
            self.action = None
