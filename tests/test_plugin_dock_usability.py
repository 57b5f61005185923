"""The dock as an analyst without a terminal lives in it: a Landsat Level-1 raster mapped through the
sensor picker (fine-tune from polygons, then segment), band maps saved and loaded, plain verdicts, and
each usability fix (wrapping, pre-selected pickers, class field, tooltips, help, progress text, card
values, cancel wording, Draw area during a run, layer names, nothing unexplained in the output folder)."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import rasterio
from qgis.core import QgsPalettedRasterRenderer, QgsRasterLayer, QgsVectorLayer
from qgis.PyQt.QtWidgets import QAbstractButton, QComboBox
from test_plugin_common import (  # noqa: F401
    FIXTURES,
    REPO,
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

LANDSAT = os.path.join(FIXTURES, "landsat8_224078_nowavelengths.tif")
POLYGONS = os.path.join(FIXTURES, "training_landsat8_224078_polygons.gpkg")
BACKBONE = os.path.join(REPO, "resources", "models", "demo-backbone.safetensors")
ENMAP_MODEL = os.path.join(REPO, "resources", "models", "demo.safetensors")


@pytest.fixture
def landsat(project, tmp_path):
    path = tmp_path / "LC08_crop.tif"
    shutil.copy(LANDSAT, path)
    layer = QgsRasterLayer(str(path), "LC08 crop")
    assert layer.isValid()
    project.addMapLayer(layer)
    return layer


@pytest.fixture
def polygons(project):
    layer = QgsVectorLayer(POLYGONS, "hand-drawn", "ogr")
    assert layer.isValid()
    project.addMapLayer(layer)
    return layer


def _spectralx_layers(project):
    group = project.layerTreeRoot().findGroup("SpectralX")
    return [node.layer() for node in group.findLayers()] if group else []


@pytest.mark.slow
def test_landsat_through_the_sensor_picker_finetune_then_segment(project, dock, landsat, polygons):
    """No wavelengths in the file, no band row edited by hand: the sensor picker is all it takes."""
    from spectralx.checkpoint import read_card

    dock.polygon_combo.setLayer(polygons)
    assert dock.field_combo.currentField() == "name"  # the text class field, not fid
    dock.layer_combo.setLayer(landsat)
    dock.backbone_widget.setFilePath(BACKBONE)  # a new model: no checkpoint to start from
    dock.bands.set_sensor("landsat8")
    assert dock.bands.order_edit.text() == "B2,B3,B4"  # the Landsat 8 layout for 3 bands
    assert dock.bands.sensor_spec() == "landsat8:B2,B3,B4"
    dock.steps_spin.setValue(4)
    lines = []
    dock.runs.status.connect(lines.append)
    task = run_task(dock, dock.finetune, timeout=300)
    dock.runs.status.disconnect(lines.append)
    assert_done(task)
    # the training line: step/total, time left, and the validation mIoU (or that none was measured)
    assert any(ln.startswith("step 4/4") and "validation mIoU" in ln for ln in lines), lines
    assert any("left" in ln for ln in lines if ln.startswith("step 2/4")), lines
    new = dock.checkpoint_path()
    card = read_card(new)
    assert [round(b.wavelength_nm, 1) for b in card.bands] == [482.6, 561.3, 654.6]
    assert "Not validated" in dock.card_view.toHtml() or "Validation" in dock.card_view.toPlainText()
    wait_for(lambda: not dock.bands.pending())
    assert dock.band_table.rowCount() == 3
    assert all(dock.band_table.item(i, 3).text() == "nearest" for i in range(3))  # mapped, not by hand
    assert "read as landsat8:B2,B3,B4" in dock.band_status.text()
    assert not dock.bands.overrides
    task = run_task(dock, dock.segment_layer)
    assert_done(task)
    layers = _spectralx_layers(project)
    classes = [lyr for lyr in layers if isinstance(lyr.renderer(), QgsPalettedRasterRenderer)]
    assert len(classes) == 1
    assert [c.label for c in classes[0].renderer().classes()] == [c.name for c in card.classes]
    assert os.path.splitext(os.path.basename(new))[0] in classes[0].name()  # names the model
    with rasterio.open(classes[0].source()) as ds:
        assert set(np.unique(ds.read(1))) <= {c.value for c in card.classes}


def test_no_wavelengths_says_what_to_do_in_panel_words(project, dock, landsat, enmap_checkpoint):
    dock.set_checkpoint(enmap_checkpoint)
    dock.layer_combo.setLayer(landsat)
    wait_for(lambda: not dock.bands.pending())
    text = dock.band_status.text()
    assert "Sensor picker" in text and "--" not in text
    task = dock.segment_layer()
    assert task is None and "Sensor picker" in dock.status.text() and "--sensor" not in dock.status.text()


def test_model_that_cannot_fit_gets_a_plain_verdict(project, dock, landsat):
    dock.set_checkpoint(ENMAP_MODEL)
    dock.layer_combo.setLayer(landsat)
    dock.bands.set_sensor("landsat8")
    wait_for(lambda: not dock.bands.pending())
    assert dock.band_status.text() == (
        "this model needs 218 EnMAP HSI bands 418–2446 nm; this raster has 3 "
        "visible bands (483–655 nm), covering 42 of them: fine-tune a new model "
        "from this raster instead"
    )
    assert dock.segment_layer() is None and "fine-tune a new model" in dock.status.text()


def test_save_and_load_band_map(project, dock, enmap_tile, enmap_checkpoint, tmp_path):
    from spectralx.bands import BandMapping

    layer = QgsRasterLayer(enmap_tile, "enmap")
    project.addMapLayer(layer)
    dock.set_checkpoint(enmap_checkpoint)
    dock.layer_combo.setLayer(layer)
    wait_for(lambda: not dock.bands.pending())
    dock.bands.set_row_source(10, 5)  # one row by hand, then saved as the CLI's JSON
    path = tmp_path / "bands.json"
    dock.bands.save_band_map(str(path))
    saved = BandMapping.from_json(path.read_text())
    assert saved.weights[10, saved.source_indexes.index(5)] == 1.0
    assert "chosen by hand" in saved.rows[10]["note"]
    dock.bands.set_row_source(10, -1)
    assert dock.bands.band_map_argument() == "auto"
    dock.bands.load_band_map(str(path))  # back, from the file
    assert dock.band_table.item(10, 3).text() == "manual"
    assert "loaded band map" in dock.band_status.text()
    mapping = BandMapping.from_json(dock.bands.band_map_argument())
    assert mapping.source_indexes == saved.source_indexes
    # a map for another checkpoint is refused with what to do, in the panel's words
    doc = json.loads(path.read_text())
    doc["rows"] = doc["rows"][:5]
    doc["fill"], doc["weights"] = doc["fill"][:5], doc["weights"][:5]
    bad = tmp_path / "other.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(Exception) as err:
        dock.bands.load_band_map(str(bad))
    from spectralx.bands import explain

    assert "Save band map" in explain(err.value, "dock")


def test_long_texts_wrap_instead_of_widening_the_panel(dock):
    body = dock.body
    before = body.minimumSizeHint().width()
    long_path = "/home/analyst/" + "/".join(["a_very_long_folder_name_of_a_project"] * 8) + "/result.tif"
    dock._message(f"Segmented into {long_path} in 12.3 s")
    dock.band_status.setText("224 model bands mapped from 224 raster bands; " + "x" * 300)
    assert body.minimumSizeHint().width() <= max(before, 420)
    assert dock.status.text().endswith("in 12.3 s") and long_path in dock.status.text()


def test_pickers_follow_the_active_layer(project, dock, landsat, polygons, qgis_iface):
    dock.layer_combo.setLayer(None)
    dock.polygon_combo.setLayer(None)
    qgis_iface.setActiveLayer(landsat)
    dock.preselect_layers()
    assert dock.layer_combo.currentLayer() is landsat
    assert dock.polygon_combo.currentLayer() is polygons
    assert dock.field_combo.currentField() == "name"


def test_class_field_default_is_a_text_field(project, dock):
    vl = QgsVectorLayer(
        "Polygon?crs=EPSG:32621&field=fid:integer&field=code:integer&field=landuse:string", "digitized", "memory"
    )
    project.addMapLayer(vl)
    dock.polygon_combo.setLayer(vl)
    assert dock.field_combo.currentField() == "landuse"


def test_every_control_has_a_tooltip_and_help_opens_the_docs(dock):
    from spectralx_qgis.panel.help_text import help_url

    # the analyst's controls (not the table's corner button or a line edit's own clear button)
    controls = [
        w
        for w in dock.widget().findChildren((QAbstractButton, QComboBox))
        if w.isVisibleTo(dock)
        and not any(w.parent().inherits(c) for c in ("QgsFileWidget", "QLineEdit", "QAbstractItemView"))
    ]
    assert len(controls) >= 12
    missing = [
        w.text() if isinstance(w, QAbstractButton) else w.objectName() or type(w).__name__
        for w in controls
        if not w.toolTip()
    ]
    assert not missing, missing
    url = help_url()
    assert url.isValid() and (url.isLocalFile() and os.path.isfile(url.toLocalFile()))
    with open(url.toLocalFile(), encoding="utf-8") as f:
        page = f.read()
    for control in (
        "Sensor",
        "Save band map",
        "Load band map",
        "Segment layer",
        "Draw area",
        "Cancel",
        "Fine-tune from polygons",
        "SENSOR",
    ):
        assert control in page, control


def test_training_progress_line():
    from spectralx_qgis.bridge import TrainingText

    now = [100.0]
    text = TrainingText(clock=lambda: now[0])
    assert text(0, 300, "starting") == "step 0/300 · validation mIoU not yet measured"
    now[0] = 130.0
    assert (
        text(30, 300, "loss 0.812")
        == "step 30/300 · about 4 min 30 s left · loss 0.812 · validation mIoU not yet measured"
    )
    now[0] = 140.0
    line = text(40, 300, "loss 0.700 | val mIoU 0.431 (best 0.431 @ 40)")
    assert line == "step 40/300 · about 4 min 20 s left · loss 0.700 · validation mIoU 0.43"
    assert text(41, 300, "loss 0.690").endswith("validation mIoU 0.43")  # the latest one stays shown


def test_card_shows_metric_values_validation_status_and_baseline(dock, tmp_path):
    from spectralx.checkpoint import read_card
    from spectralx_qgis.panel.card_view import card_html

    demo = read_card(ENMAP_MODEL)
    m = demo.metrics
    html = card_html(demo, ENMAP_MODEL)
    assert (
        f"mIoU <b>{m['val_miou']:.3f}</b>" in html
        and f"OA <b>{m['val_oa']:.3f}</b>" in html
        and f"{m['val_pixels']} held-out pixels" in html
    )
    assert "best_step" not in html and "final_train_loss" not in html and f"best step {m['best_step']}" in html
    forest = m["baselines"]["random_forest"]["val_miou"]
    assert f"Random-forest baseline (same pixels): mIoU <b>{forest:.3f}</b>" in html
    card = read_card(ENMAP_MODEL)
    card.metrics = {
        "validation": "none: no region could be held out (give more polygons per class, or " "--val-fraction > 0)",
        "best_step": 3,
        "final_train_loss": 1.29,
        "baselines": {"random_forest": {"validation": "none: no pixel was held out, so the " "forest was not scored"}},
    }
    html = card_html(card, "m.safetensors")
    assert "Not validated" in html and "--val-fraction" not in html
    assert "Random-forest baseline: none: no pixel was held out" in html
    card.metrics = dict(read_card(ENMAP_MODEL).metrics, baselines={"random_forest": {"val_miou": 0.471}})
    html = card_html(card, "m.safetensors")
    assert "Random-forest baseline (same pixels): mIoU <b>0.471</b> — the forest is better" in html


@pytest.mark.slow
def test_cancel_says_cancelled_and_draw_area_is_off_during_a_run(project, dock, checkpoint_for, tmp_path):
    from test_plugin_dock import _big_raster

    raster = _big_raster(str(tmp_path / "big.tif"), size=512)
    ckpt = checkpoint_for(raster, ("a", "b"), "rgb")
    layer = QgsRasterLayer(raster, "big")
    project.addMapLayer(layer)
    dock.set_checkpoint(ckpt)
    dock.set_layer(layer)
    wait_for(lambda: not dock.bands.pending())
    dock.batch_spin.setValue(1)
    states = []

    def start():
        dock.draw_button.setChecked(True)
        task = dock.segment_layer()
        states.append((dock.draw_button.isEnabled(), dock.draw_button.isChecked(), dock.cancel_button.isEnabled()))
        task.progressChanged.connect(lambda v: v > 0 and dock.cancel())
        return task

    task = run_task(dock, start)
    assert states == [(False, False, True)]  # Draw area off and disabled while running
    assert_cancelled(task)
    assert dock.status.text() == "Cancelled: nothing was written."
    assert dock.draw_button.isEnabled() and not dock.cancel_button.isEnabled()
    assert os.listdir(dock.output_folder()) == []


@pytest.mark.slow
def test_layer_names_name_the_model_and_repeat_runs_differ(project, dock, enmap_tile, enmap_checkpoint):
    layer = QgsRasterLayer(enmap_tile, "enmap")
    project.addMapLayer(layer)
    dock.set_checkpoint(enmap_checkpoint)
    dock.set_layer(layer)
    wait_for(lambda: not dock.bands.pending())
    names = []
    for _ in range(2):
        task = run_task(dock, dock.segment_layer)
        assert_done(task)
        names.append(dock.last_layers[0].name())
    assert names == ["enmap · classes · enmap", "enmap · classes · enmap (2)"]
    assert len(set(os.listdir(dock.output_folder()))) == 6  # 2 x (classes, qml, confidence)
