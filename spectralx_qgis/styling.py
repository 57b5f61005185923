"""Class and confidence layer styling, and the "SpectralX" layer group."""

from __future__ import annotations

import os
from typing import Iterable, List, Optional

from qgis.core import (
    QgsColorRampShader,
    QgsMapLayer,
    QgsPalettedRasterRenderer,
    QgsProject,
    QgsRasterLayer,
    QgsRasterShader,
    QgsSingleBandPseudoColorRenderer,
)
from qgis.PyQt.QtGui import QColor

GROUP_NAME = "SpectralX"


def _cls_tuple(c) -> tuple:
    if isinstance(c, dict):
        return int(c["value"]), str(c["name"]), str(c["color"])
    if isinstance(c, (list, tuple)):
        return int(c[0]), str(c[1]), str(c[2])
    return int(c.value), str(c.name), str(c.color)


def class_renderer(layer: QgsRasterLayer, classes: Iterable) -> QgsPalettedRasterRenderer:
    entries = []
    for c in classes:
        value, name, color = _cls_tuple(c)
        entries.append(QgsPalettedRasterRenderer.Class(value, QColor(color), name))
    return QgsPalettedRasterRenderer(layer.dataProvider(), 1, entries)


def style_class_layer(layer: QgsRasterLayer, classes: Iterable) -> None:
    """Paletted renderer with the checkpoint's class values, names and colours."""
    layer.setRenderer(class_renderer(layer, classes))
    layer.triggerRepaint()


def style_confidence_layer(layer: QgsRasterLayer) -> None:
    """Confidence 0..1 as a dark-to-bright ramp (low confidence dark)."""
    stops = [(0.0, "#440154", "0 (uncertain)"), (0.5, "#21918c", "0.5"), (1.0, "#fde725", "1 (certain)")]
    fcn = QgsColorRampShader(0.0, 1.0)
    fcn.setColorRampType(QgsColorRampShader.Interpolated)
    fcn.setColorRampItemList([QgsColorRampShader.ColorRampItem(v, QColor(c), label) for v, c, label in stops])
    shader = QgsRasterShader()
    shader.setRasterShaderFunction(fcn)
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), 1, shader)
    renderer.setClassificationMin(0.0)
    renderer.setClassificationMax(1.0)
    layer.setRenderer(renderer)
    layer.triggerRepaint()


def spectralx_group(project: Optional[QgsProject] = None):
    project = project or QgsProject.instance()
    root = project.layerTreeRoot()
    group = root.findGroup(GROUP_NAME)
    if group is None:
        group = root.insertGroup(0, GROUP_NAME)
    group.setExpanded(True)
    # a result added to a group the analyst switched off would be invisible: show the group (the
    # layers already in it keep their own check boxes)
    group.setItemVisibilityChecked(True)
    return group


def add_to_group(layer: QgsMapLayer, project: Optional[QgsProject] = None) -> QgsMapLayer:
    project = project or QgsProject.instance()
    project.addMapLayer(layer, False)
    spectralx_group(project).insertLayer(0, layer)
    return layer


def load_results(
    output: str,
    classes: Iterable,
    confidence: Optional[str] = None,
    name: Optional[str] = None,
    project: Optional[QgsProject] = None,
) -> List[QgsMapLayer]:
    """Load a class raster (and its confidence raster) styled, into the SpectralX group."""
    name = name or os.path.splitext(os.path.basename(output))[0]
    layers = []
    if confidence and os.path.isfile(confidence):
        conf = QgsRasterLayer(confidence, f"{name} confidence")
        if conf.isValid():
            style_confidence_layer(conf)
            add_to_group(conf, project)
            layers.append(conf)
    lyr = QgsRasterLayer(output, name)
    if not lyr.isValid():
        raise RuntimeError(f"could not load the result {output}")
    style_class_layer(lyr, list(classes))
    add_to_group(lyr, project)  # inserted last = on top of its confidence layer
    layers.insert(0, lyr)
    return layers
