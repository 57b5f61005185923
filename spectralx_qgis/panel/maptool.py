"""Map tool: drag a rectangle on the canvas; emits it in the target layer's CRS."""

from __future__ import annotations

from typing import Optional

from qgis.core import QgsCoordinateTransform, QgsPointXY, QgsProject, QgsRectangle, QgsWkbTypes
from qgis.gui import QgsMapTool, QgsRubberBand
from qgis.PyQt.QtCore import QObject, Qt, pyqtSignal
from qgis.PyQt.QtGui import QColor


class RectangleMapTool(QgsMapTool):
    """Press, drag, release: `rectangleDrawn(QgsRectangle)` in the layer's CRS (canvas CRS if none)."""

    rectangleDrawn = pyqtSignal(QgsRectangle)
    #: the same rectangle in the canvas CRS (for display)
    canvasRectangleDrawn = pyqtSignal(QgsRectangle)

    def __init__(self, canvas, layer=None):
        super().__init__(canvas)
        self.layer = layer
        self._start = None
        self._band = QgsRubberBand(canvas, QgsWkbTypes.GeometryType.PolygonGeometry)
        self._band.setColor(QColor(255, 127, 0, 60))
        self._band.setStrokeColor(QColor(255, 127, 0))
        self._band.setWidth(2)
        self.setCursor(Qt.CursorShape.CrossCursor)

    def setLayer(self, layer):  # noqa: N802
        self.layer = layer

    def canvasPressEvent(self, e):  # noqa: N802
        if e.button() != Qt.MouseButton.LeftButton:
            return
        self._start = self.toMapCoordinates(e.pos())
        self._band.reset(QgsWkbTypes.GeometryType.PolygonGeometry)

    def canvasMoveEvent(self, e):  # noqa: N802
        if self._start is None:
            return
        self._show(QgsRectangle(self._start, self.toMapCoordinates(e.pos())))

    def canvasReleaseEvent(self, e):  # noqa: N802
        if self._start is None or e.button() != Qt.MouseButton.LeftButton:
            return
        rect = QgsRectangle(self._start, self.toMapCoordinates(e.pos()))
        self._start = None
        rect.normalize()
        if rect.width() <= 0 or rect.height() <= 0:
            self._band.reset(QgsWkbTypes.GeometryType.PolygonGeometry)
            return
        self._show(rect)
        self.canvasRectangleDrawn.emit(rect)
        self.rectangleDrawn.emit(self.to_layer_crs(rect))

    def to_layer_crs(self, rect: QgsRectangle) -> QgsRectangle:
        if self.layer is None:
            return QgsRectangle(rect)
        src = self.canvas().mapSettings().destinationCrs()
        dst = self.layer.crs()
        if not src.isValid() or not dst.isValid() or src == dst:
            return QgsRectangle(rect)
        xform = QgsCoordinateTransform(src, dst, QgsProject.instance())
        return xform.transformBoundingBox(rect)

    def _show(self, rect: QgsRectangle):
        self._band.reset(QgsWkbTypes.GeometryType.PolygonGeometry)
        for x, y in (
            (rect.xMinimum(), rect.yMinimum()),
            (rect.xMaximum(), rect.yMinimum()),
            (rect.xMaximum(), rect.yMaximum()),
            (rect.xMinimum(), rect.yMaximum()),
        ):
            self._band.addPoint(QgsPointXY(x, y), False)
        self._band.closePoints(True)
        self._band.show()

    def clear(self):
        self._band.reset(QgsWkbTypes.GeometryType.PolygonGeometry)

    def deactivate(self):
        self._start = None
        super().deactivate()


class AreaDrawer(QObject):
    """The panel's *Draw area* button and its map tool: a rectangle drawn on the map is segmented
    (`dock.segment_rect`), in the raster layer's CRS."""

    def __init__(self, dock):
        super().__init__(dock)
        self.dock = dock
        self.tool: Optional[RectangleMapTool] = None

    def toggle(self, checked: bool):
        canvas = self.dock.canvas
        if canvas is None:
            return
        if checked:
            self.start()
        elif self.tool is not None and canvas.mapTool() is self.tool:
            canvas.unsetMapTool(self.tool)

    def start(self) -> RectangleMapTool:
        dock = self.dock
        if self.tool is None:
            self.tool = RectangleMapTool(dock.canvas, dock.current_layer())
            self.tool.rectangleDrawn.connect(self._drawn)
            self.tool.deactivated.connect(self._deactivated)
        self.tool.setLayer(dock.current_layer())
        dock.canvas.setMapTool(self.tool)
        if not dock.draw_button.isChecked():
            dock.draw_button.blockSignals(True)
            dock.draw_button.setChecked(True)
            dock.draw_button.blockSignals(False)
        return self.tool

    def set_layer(self, layer):
        if self.tool is not None:
            self.tool.setLayer(layer)

    def _deactivated(self):
        self.dock.draw_button.setChecked(False)

    def _drawn(self, rect: QgsRectangle):
        self.dock.flows.segment_rect(rect)
        if self.tool is not None:
            self.tool.clear()

    def shutdown(self):
        canvas = self.dock.canvas
        if self.tool is not None and canvas is not None and canvas.mapTool() is self.tool:
            canvas.unsetMapTool(self.tool)
