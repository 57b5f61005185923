"""Map tool: drag a rectangle on the canvas; emits it in the target layer's CRS."""
from __future__ import annotations

from qgis.core import QgsCoordinateTransform, QgsPointXY, QgsProject, QgsRectangle, QgsWkbTypes
from qgis.gui import QgsMapTool, QgsRubberBand
from qgis.PyQt.QtCore import Qt, pyqtSignal
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
        for x, y in ((rect.xMinimum(), rect.yMinimum()), (rect.xMaximum(), rect.yMinimum()),
                     (rect.xMaximum(), rect.yMaximum()), (rect.xMinimum(), rect.yMaximum())):
            self._band.addPoint(QgsPointXY(x, y), False)
        self._band.closePoints(True)
        self._band.show()

    def clear(self):
        self._band.reset(QgsWkbTypes.GeometryType.PolygonGeometry)

    def deactivate(self):
        self._start = None
        super().deactivate()
