"""The dock panel: band table, segment view / drawn area, map tool, cancel, fine-tune from polygons."""

from __future__ import annotations

import os

import numpy as np
import pytest
import rasterio
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsFeature,
    QgsGeometry,
    QgsPalettedRasterRenderer,
    QgsRasterLayer,
    QgsRectangle,
    QgsVectorLayer,
)
from qgis.gui import QgsMapMouseEvent
from qgis.PyQt.QtCore import QEvent, QPoint, Qt
from test_plugin_common import (  # noqa: F401
    CLASSES,
    assert_cancelled,
    assert_done,
    checkpoint_for,
    dock,
    enmap_checkpoint,
    enmap_tile,
    plugin,
    project,
    run_task,
    wait_for,
)


def _add_raster(project, path, name="enmap"):
    layer = QgsRasterLayer(path, name)
    assert layer.isValid()
    project.addMapLayer(layer)
    return layer


def _show_canvas(canvas, size=400):
    """Give the (hidden) test canvas a real viewport so its extent follows setExtent."""
    from qgis.PyQt.QtCore import QCoreApplication

    window = canvas.window()
    window.resize(size, size)
    window.show()
    for _ in range(20):
        QCoreApplication.processEvents()
    assert canvas.mapSettings().outputSize().width() > 100


def _spectralx_layers(project):
    group = project.layerTreeRoot().findGroup("SpectralX")
    return [node.layer() for node in group.findLayers()] if group else []


def _assert_rect_close(a: QgsRectangle, b: QgsRectangle, tol: float):
    for x, y in (
        (a.xMinimum(), b.xMinimum()),
        (a.yMinimum(), b.yMinimum()),
        (a.xMaximum(), b.xMaximum()),
        (a.yMaximum(), b.yMaximum()),
    ):
        assert abs(x - y) <= tol, (a.toString(), b.toString())


def test_band_table_fills_from_wavelength_metadata(project, dock, enmap_tile, enmap_checkpoint):
    layer = _add_raster(project, enmap_tile)
    assert dock.set_checkpoint(enmap_checkpoint)
    html = dock.card_view.toHtml()
    for name in CLASSES:
        assert name in html
    assert "224" in html and "tile 64 px" in dock.card_view.toPlainText()
    dock.layer_combo.setLayer(layer)  # choosing the layer is all it takes
    wait_for(lambda: not dock.bands.pending())  # metadata is read in a background task
    table = dock.band_table
    assert table.rowCount() == 224
    qualities = [table.item(i, 4).text() for i in range(table.rowCount())]
    assert all(q.endswith("%") for q in qualities)
    assert sum(float(q[:-1]) for q in qualities) / 224 > 90  # the same sensor maps near-perfectly
    assert "224 model bands mapped" in dock.band_status.text()
    assert dock.bands.band_map_argument() == "auto"
    # one row edited by hand: the run uses an explicit band map with that row pointing at band 5
    delegate = table.itemDelegateForColumn(2)
    editor = delegate.createEditor(table.viewport(), None, table.model().index(10, 2))
    assert editor.count() == 225  # automatic + every raster band
    editor.setCurrentIndex(editor.findData(5))
    delegate.setModelData(editor, table.model(), table.model().index(10, 2))
    assert table.item(10, 2).text().startswith("5: ")
    assert table.item(10, 3).text() == "manual" and table.item(10, 4).text().endswith("%")
    from spectralx.bands import BandMapping

    mapping = BandMapping.from_json(dock.bands.band_map_argument())
    col = mapping.source_indexes.index(5)
    assert mapping.weights[10, col] == 1.0 and mapping.weights[10].sum() == 1.0
    dock.bands.set_row_source(10, -1)
    assert dock.bands.band_map_argument() == "auto" and table.item(10, 3).text() != "manual"


def test_segment_current_view(project, dock, qgis_canvas, enmap_tile, enmap_checkpoint):
    layer = _add_raster(project, enmap_tile)
    dock.set_checkpoint(enmap_checkpoint)
    dock.set_layer(layer)
    wait_for(lambda: not dock.bands.pending())
    _show_canvas(qgis_canvas)
    qgis_canvas.setDestinationCrs(layer.crs())
    full = layer.extent()
    px = layer.rasterUnitsPerPixelX()
    view = QgsRectangle(
        full.xMinimum() + 4 * px, full.yMinimum() + 10 * px, full.xMinimum() + 20 * px, full.yMinimum() + 26 * px
    )
    qgis_canvas.setExtent(view)
    shown = qgis_canvas.extent().intersect(full)
    task = run_task(dock, dock.segment_view)
    assert_done(task)
    layers = _spectralx_layers(project)
    assert len(layers) == 2  # classes + confidence, in the SpectralX group
    classes = [lyr for lyr in layers if isinstance(lyr.renderer(), QgsPalettedRasterRenderer)]
    assert len(classes) == 1
    _assert_rect_close(classes[0].extent(), shown, tol=px)
    assert classes[0].width() < layer.width()
    labels = [c.label for c in classes[0].renderer().classes()]
    assert labels == list(CLASSES)


def test_map_tool_emits_rectangle_in_layer_crs_and_segments_it(
    project, dock, qgis_canvas, enmap_tile, enmap_checkpoint
):
    layer = _add_raster(project, enmap_tile)
    dock.set_checkpoint(enmap_checkpoint)
    dock.set_layer(layer)
    wait_for(lambda: not dock.bands.pending())
    _show_canvas(qgis_canvas)
    web = QgsCoordinateReferenceSystem("EPSG:3857")
    qgis_canvas.setDestinationCrs(web)  # canvas and layer CRS differ
    to_web = QgsCoordinateTransform(layer.crs(), web, project)
    qgis_canvas.setExtent(to_web.transformBoundingBox(layer.extent()))
    qgis_canvas.refresh()
    tool = dock.start_draw()
    assert qgis_canvas.mapTool() is tool
    emitted = []
    tool.rectangleDrawn.connect(emitted.append)
    finished = []
    dock.runFinished.connect(finished.append)
    p0, p1 = QPoint(150, 150), QPoint(250, 230)
    tool.canvasPressEvent(QgsMapMouseEvent(qgis_canvas, QEvent.MouseButtonPress, p0, Qt.LeftButton))
    tool.canvasMoveEvent(QgsMapMouseEvent(qgis_canvas, QEvent.MouseMove, p1, Qt.NoButton, Qt.LeftButton))
    tool.canvasReleaseEvent(QgsMapMouseEvent(qgis_canvas, QEvent.MouseButtonRelease, p1, Qt.LeftButton))
    assert len(emitted) == 1
    m2c = qgis_canvas.getCoordinateTransform()
    a, b = m2c.toMapCoordinates(p0), m2c.toMapCoordinates(p1)
    expected = QgsCoordinateTransform(web, layer.crs(), project).transformBoundingBox(QgsRectangle(a, b))
    _assert_rect_close(emitted[0], expected, tol=1e-6 * max(abs(expected.xMaximum()), 1))
    assert layer.extent().contains(emitted[0])
    # ... and the dock segments just that area
    wait_for(lambda: finished)
    assert_done(finished[0])
    classes = [lyr for lyr in _spectralx_layers(project) if isinstance(lyr.renderer(), QgsPalettedRasterRenderer)]
    _assert_rect_close(classes[0].extent(), emitted[0], tol=layer.rasterUnitsPerPixelX())
    dock.runFinished.disconnect(finished.append)


def _big_raster(path, size=768):
    rng = np.random.default_rng(0)
    profile = dict(
        driver="GTiff",
        width=size,
        height=size,
        count=3,
        dtype="float32",
        crs="EPSG:32633",
        transform=rasterio.transform.from_origin(360000, 5810000, 10, 10),
        tiled=True,
    )
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(rng.random((3, size, size), dtype=np.float32))
        for i, wl in enumerate((490.0, 560.0, 665.0), start=1):
            ds.update_tags(i, wavelength=str(wl), wavelength_units="Nanometers")
    return path


@pytest.mark.slow
def test_cancel_leaves_no_layer_and_no_file(project, dock, checkpoint_for, tmp_path):
    raster = _big_raster(str(tmp_path / "big.tif"))
    ckpt = checkpoint_for(raster, ("a", "b"), "rgb")
    layer = _add_raster(project, raster, "big")
    dock.set_checkpoint(ckpt)
    dock.set_layer(layer)
    wait_for(lambda: not dock.bands.pending())
    dock.batch_spin.setValue(1)
    out_dir = dock.output_folder()
    layers_before = set(project.mapLayers())

    def start():
        task = dock.segment_layer()
        # cancel from inside the run, as soon as the engine reports its first tile
        task.progressChanged.connect(lambda v: v > 0 and task.cancel())
        return task

    task = run_task(dock, start)
    assert_cancelled(task)
    assert set(project.mapLayers()) == layers_before
    assert _spectralx_layers(project) == []
    assert os.listdir(out_dir) == []
    assert dock.cancel_button.isEnabled() is False and "Cancelled" in dock.status.text()


@pytest.mark.slow
def test_finetune_from_drawn_polygons_selects_new_checkpoint(project, dock, checkpoint_for, enmap_tile):
    from spectralx.checkpoint import read_card

    base = checkpoint_for(enmap_tile, ("water", "tree"), "base")
    layer = _add_raster(project, enmap_tile)
    dock.set_checkpoint(base)
    dock.set_layer(layer)
    wait_for(lambda: not dock.bands.pending())
    # the analyst digitizes two polygons in a memory layer
    ext = layer.extent()
    vl = QgsVectorLayer(f"Polygon?crs={layer.crs().authid()}&field=landcover:string", "digitized", "memory")
    vl.startEditing()
    mid = ext.center().x()
    for name, rect in (
        ("water", QgsRectangle(ext.xMinimum(), ext.yMinimum(), mid, ext.yMaximum())),
        ("tree", QgsRectangle(mid, ext.yMinimum(), ext.xMaximum(), ext.yMaximum())),
    ):
        f = QgsFeature(vl.fields())
        f.setGeometry(QgsGeometry.fromRect(rect))
        f["landcover"] = name
        vl.addFeature(f)
    assert vl.commitChanges()
    project.addMapLayer(vl)
    dock.polygon_combo.setLayer(vl)
    dock.field_combo.setField("landcover")
    dock.steps_spin.setValue(2)
    task = run_task(dock, dock.finetune, timeout=300)
    assert_done(task)
    new = dock.checkpoint_path()
    # models go to the model folder (the model manager's) with the backbone they need; nothing else
    # lands anywhere, the output folder stays empty
    from spectralx_qgis.models import store as model_store

    models = model_store.user_model_dir()
    assert new != base and os.path.isfile(new) and os.path.dirname(new) == models
    assert os.listdir(dock.output_folder()) == []
    assert sorted(os.listdir(models)) == sorted([os.path.basename(new), os.path.basename(read_card(new).backbone.file)])
    assert "keep the two together" in dock.status.text()
    card = read_card(new)
    assert card.stage == "finetune" and dock.card is not None
    assert sorted(c.name for c in card.classes) == ["tree", "water"]
    assert "tree" in dock.card_view.toHtml()
    assert not [f for f in os.listdir(dock.output_folder()) if f.endswith(".gpkg")]
    assert not os.path.exists(os.path.dirname(task.request.labels))  # the burnt label raster is gone


@pytest.mark.slow
def test_the_chosen_precision_reaches_the_engine(project, dock, enmap_tile, enmap_checkpoint, monkeypatch):
    """Issue 22: the Run box's precision (auto/fp32/bf16/int8, the engine's names) goes to
    segment(precision=…), as Processing's PRECISION does."""
    import spectralx.inference as inference
    from spectralx.contract.options import PRECISIONS

    offered = [dock.precision_combo.itemData(i) for i in range(dock.precision_combo.count())]
    assert offered == ["auto", "fp32", "bf16", "int8"] and set(offered) <= set(PRECISIONS)
    assert dock.precision_combo.currentData() == "auto"
    calls = []
    real = inference.segment
    monkeypatch.setattr(inference, "segment", lambda *a, **k: calls.append(k) or real(*a, **k))
    layer = _add_raster(project, enmap_tile)
    dock.set_checkpoint(enmap_checkpoint)
    dock.set_layer(layer)
    wait_for(lambda: not dock.bands.pending())
    dock.precision_combo.setCurrentIndex(dock.precision_combo.findData("fp32"))
    task = run_task(dock, dock.segment_layer)
    assert_done(task)
    assert calls[-1]["precision"] == "fp32" and task.outcome.value.precision == "fp32"
    dock.precision_combo.setCurrentIndex(dock.precision_combo.findData("int8"))
    task = run_task(dock, dock.segment_layer)
    assert_done(task)
    assert calls[-1]["precision"] == "int8" and task.outcome.value.precision == "int8"


def test_the_dock_stays_a_small_class():
    """Issue 19: the panel's widgets are built in dock_layout.py and its actions live in helper classes
    (checkpoints, layers, setup_actions, flows, maptool.AreaDrawer); SpectralXDock keeps the state and
    the public methods, under ~300 lines and ~25 methods."""
    import ast
    import inspect

    from spectralx_qgis.panel import dock as dock_module

    source = inspect.getsource(dock_module)
    cls = next(n for n in ast.parse(source).body if isinstance(n, ast.ClassDef) and n.name == "SpectralXDock")
    methods = [n.name for n in cls.body if isinstance(n, ast.FunctionDef)]
    assert len(source.splitlines()) < 300 and len(methods) <= 25, (len(source.splitlines()), methods)
