"""The panel's layer pickers follow the analyst: they start on the layer selected in QGIS (raster and
polygons) or, when empty, on the project's first layer of each kind; the class field is chosen by the
names analysts use for classes (class_field.py)."""

from __future__ import annotations

from typing import Optional

from qgis.core import QgsProject, QgsRasterLayer, QgsVectorLayer, QgsWkbTypes
from qgis.PyQt.QtCore import QObject

from .class_field import default_class_field


class ActiveLayers(QObject):
    """Fills `dock.layer_combo`, `dock.polygon_combo` and `dock.field_combo` from QGIS's active layer."""

    def __init__(self, dock):
        super().__init__(dock)
        self.dock = dock

    def follow(self):
        iface = self.dock.iface
        if iface is None:
            return
        try:
            iface.currentLayerChanged.connect(self.changed)
        except (AttributeError, TypeError):
            pass
        try:
            self.changed(iface.activeLayer())
        except AttributeError:
            pass

    def changed(self, layer):
        dock = self.dock
        if isinstance(layer, QgsRasterLayer) and dock.layer_combo.currentLayer() is None:
            dock.set_layer(layer)
        elif (
            isinstance(layer, QgsVectorLayer)
            and dock.polygon_combo.currentLayer() is None
            and layer.geometryType() == QgsWkbTypes.GeometryType.PolygonGeometry
        ):
            dock.polygon_combo.setLayer(layer)

    def preselect(self, project: Optional[QgsProject] = None):
        """Fill empty pickers from the project: the active layer first, else the first of each kind."""
        project = project or QgsProject.instance()
        iface = self.dock.iface
        active = iface.activeLayer() if iface is not None else None
        if active is not None:
            self.changed(active)
        for lyr in project.mapLayers().values():
            self.changed(lyr)

    def polygons_changed(self, layer):
        self.dock.field_combo.setLayer(layer)
        self.dock.field_combo.setField(default_class_field(layer.fields()) if isinstance(layer, QgsVectorLayer) else "")

    def shutdown(self):
        if self.dock.iface is not None:
            try:
                self.dock.iface.currentLayerChanged.disconnect(self.changed)
            except (AttributeError, TypeError, RuntimeError):
                pass
