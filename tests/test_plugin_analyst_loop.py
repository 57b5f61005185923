"""Issue 20: the analyst's loop in QGIS. Fixes 1, 2, 4, 6, 7 (each failed on the code before) and the
loop's second half: *Suggest where to label* (dock, Processing) and *Fine-tune again* with the rounds
in the card. Real data: crops of the Landsat 8 fixture (3 bands with wavelengths) and the EnMAP tile;
the tiny random backbone for the network parts, so every run takes seconds."""

from __future__ import annotations

import os

import numpy as np
import pytest
import rasterio
from qgis.core import QgsApplication, QgsProcessingException, QgsRasterLayer, QgsVectorLayer
from test_plugin_common import (  # noqa: F401
    FIXTURES,
    assert_done,
    checkpoint_for,
    dock,
    enmap_checkpoint,
    enmap_tile,
    feedback_log,
    halves_layer,
    plugin,
    project,
    run_task,
    wait_for,
)

LANDSAT = os.path.join(FIXTURES, "training_landsat8_224078.tif")

pytestmark = pytest.mark.usefixtures("one_thread")


def landsat_crop(path, size=48, col=80, row=60, collar=0):
    """A window of the Landsat fixture (band tags kept); `collar` left columns set to DN 0 (fill)."""
    from rasterio.windows import Window

    with rasterio.open(LANDSAT) as ds:
        win = Window(col, row, size, size)
        data = ds.read(window=win)
        profile = ds.profile
        profile.update(width=size, height=size, transform=ds.window_transform(win), tiled=False)
        profile.pop("blockxsize", None)
        profile.pop("blockysize", None)
        tags = [ds.tags(i) for i in range(1, ds.count + 1)]
        desc = ds.descriptions
    data[:, :, :collar] = 0
    with rasterio.open(path, "w", **profile) as out:
        out.write(data)
        for i, t in enumerate(tags, 1):
            out.update_tags(i, **t)
            if desc[i - 1]:
                out.set_band_description(i, desc[i - 1])
    return str(path)


def _add(project, path, name):
    layer = QgsRasterLayer(path, name)
    assert layer.isValid()
    project.addMapLayer(layer)
    return layer


# 1 ------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_finetune_with_a_checkpoint_that_cannot_read_the_raster_starts_from_its_backbone(
    project, dock, enmap_checkpoint, tmp_path
):
    from spectralx.checkpoint import read_card

    raster = landsat_crop(tmp_path / "landsat.tif")
    layer = _add(project, raster, "landsat")
    dock.set_checkpoint(enmap_checkpoint)  # the EnMAP model, still selected
    dock.set_layer(layer)
    wait_for(lambda: not dock.bands.pending())
    polygons = halves_layer(raster)
    project.addMapLayer(polygons)
    dock.polygon_combo.setLayer(polygons)
    dock.steps_spin.setValue(2)
    dock.fuse_check.setChecked(False)
    task = run_task(dock, dock.finetune, timeout=300)
    assert_done(task)
    assert task.request.checkpoint is None and os.path.basename(task.request.backbone) == "tiny-backbone.safetensors"
    assert "enmap.safetensors cannot read this raster" in dock.start_note
    assert "starts from its backbone tiny-backbone.safetensors" in dock.start_note
    card = read_card(dock.checkpoint_path())
    assert len(card.bands) == 3 and sorted(c.name for c in card.classes) == ["tree", "water"]


# 2 ------------------------------------------------------------------------------------------------
def test_processing_finetune_picks_the_text_class_field_refuses_ids_and_writes_to_the_model_folder(
    plugin, tmp_path, monkeypatch
):
    import processing

    monkeypatch.setenv("SPECTRALX_MODELS", str(tmp_path / "models"))
    raster = landsat_crop(tmp_path / "landsat.tif")
    labels = halves_layer(raster, fid=True)
    alg = QgsApplication.processingRegistry().algorithmById("spectralx:finetune")
    field = alg.parameterDefinition("CLASS_FIELD")
    assert field.defaultValue() in (None, "") and field.flags() & field.FlagOptional  # never 'fid' by default
    out = alg.parameterDefinition("OUTPUT")
    assert not out.createByDefault()
    log = feedback_log()
    res = processing.run(
        "spectralx:finetune", {"INPUT": raster, "LABELS": labels, "METHOD": 4, "DEVICE": 1}, feedback=log
    )
    assert "Class field: landcover (chosen: set CLASS_FIELD to use another)" in log.lines
    path = res["OUTPUT"]
    assert os.path.dirname(path) == str(tmp_path / "models") and os.path.isfile(path)
    assert os.path.basename(path).startswith("landsat_landcover_") and len(os.path.basename(path)) < 50
    # an identifier is not a class: one line naming the parameter
    with pytest.raises(
        QgsProcessingException, match=r"'fid' has a different value on every one of the 2 " r"polygons.*CLASS_FIELD"
    ):
        processing.run(
            "spectralx:finetune", {"INPUT": raster, "LABELS": labels, "CLASS_FIELD": "fid", "METHOD": 4, "DEVICE": 1}
        )


# 3 ------------------------------------------------------------------------------------------------
def _manager_rows(dlg):
    from spectralx_qgis.models.manager import MODEL_COLUMNS

    t = dlg.models_table
    return {
        t.item(r, 0).text(): {c: (t.item(r, i).text() if t.item(r, i) else "") for i, c in enumerate(MODEL_COLUMNS)}
        for r in range(t.rowCount())
    }


def test_the_panel_writes_models_where_the_model_manager_lists_them(project, dock, tmp_path):
    from spectralx_qgis.models import store as model_store

    raster = landsat_crop(tmp_path / "landsat.tif", size=32)
    dock.set_layer(_add(project, raster, "landsat"))
    wait_for(lambda: not dock.bands.pending())
    polygons = halves_layer(raster)
    project.addMapLayer(polygons)
    dock.polygon_combo.setLayer(polygons)
    dock.method_combo.setCurrentIndex(dock.method_combo.findData("forest"))  # no backbone: seconds
    manager = dock.open_model_manager()
    task = run_task(dock, dock.finetune, timeout=300)
    assert_done(task)
    new = dock.checkpoint_path()
    assert os.path.dirname(new) == model_store.user_model_dir() == manager.folder
    assert os.listdir(dock.output_folder()) == []  # the output folder holds rasters only
    rows = _manager_rows(manager)  # listed at once in the open manager
    name = os.path.splitext(os.path.basename(new))[0]
    assert rows[name]["Kind"] == "checkpoint (finetune)"
    assert rows[name]["Sensor"] == "3 bands, 482-655 nm"  # no preset chosen: what its bands cover


def test_model_manager_adds_checkpoints_and_backbones_and_refresh_reaches_the_panel(project, dock, tmp_path):
    import shutil

    from test_model_store import DEMO, DEMO_BACKBONE
    from test_plugin_model_manager import run_and_wait

    manager = dock.open_model_manager()
    folder = manager.folder

    def files():
        return sorted(n for n in os.listdir(folder) if not n.startswith("."))  # not the digest cache

    # a checkpoint from elsewhere comes in with the backbone beside it; the panel lists it
    elsewhere = tmp_path / "usb"
    elsewhere.mkdir()
    shutil.copy(DEMO, elsewhere / "enmap-demo.safetensors")
    shutil.copy(DEMO_BACKBONE, elsewhere / "demo-backbone.safetensors")
    run_and_wait(manager, lambda: manager.add_file(str(elsewhere / "enmap-demo.safetensors")))
    assert files() == ["demo-backbone.safetensors", "enmap-demo.safetensors"], manager.status.text()
    assert "Added enmap-demo.safetensors with its backbone demo-backbone.safetensors" in manager.status.text()
    rows = _manager_rows(manager)
    assert rows["enmap-demo"]["Backbone"] == "present: demo-backbone.safetensors"
    assert rows["enmap-demo"]["Sensor"] == "218 bands, 418-2446 nm"  # its card names no sensor
    assert dock.checkpoint_combo.findData(os.path.join(folder, "enmap-demo.safetensors")) > 0
    # the same file again, a different file of that name, a damaged file: one line each, nothing written
    assert manager.add_file(str(elsewhere / "enmap-demo.safetensors")) is None
    assert manager.status.text() == f"enmap-demo.safetensors is already in the model folder {folder}"
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(DEMO_BACKBONE, other / "enmap-demo.safetensors")
    assert manager.add_backbone(str(other / "enmap-demo.safetensors")) is None
    assert "a different file named enmap-demo.safetensors is already in the model folder" in manager.status.text()
    (other / "cut.safetensors").write_bytes(open(DEMO, "rb").read()[:4000])
    assert manager.add_file(str(other / "cut.safetensors")) is None
    assert manager.status.text().startswith("cut.safetensors cannot be added: damaged or truncated")
    assert files() == ["demo-backbone.safetensors", "enmap-demo.safetensors"]
    # a SpectralX backbone file is added as it is (no 'already a SpectralX backbone file')
    shutil.copy(DEMO_BACKBONE, other / "my-backbone.safetensors")
    run_and_wait(manager, lambda: manager.add_backbone(str(other / "my-backbone.safetensors")))
    assert _manager_rows(manager)["my-backbone"]["Kind"] == "backbone (spectralx-mae)"
    # a model copied into the folder outside QGIS: Refresh lists it in the panel and drops the stale error
    shutil.copy(DEMO, os.path.join(folder, "dropped.safetensors"))
    manager.set_status("an error of an earlier action", error=True)
    manager.refresh_button.click()
    assert manager.status.text() == ""
    assert dock.checkpoint_combo.findData(os.path.join(folder, "dropped.safetensors")) > 0
    assert all(r["Sensor"] for r in _manager_rows(manager).values() if r["Kind"].startswith("checkpoint"))


# 4 ------------------------------------------------------------------------------------------------
def test_an_all_zero_collar_without_nodata_is_not_classified(plugin, checkpoint_for, tmp_path):
    import processing

    raster = landsat_crop(tmp_path / "collar.tif", size=64, collar=12)
    with rasterio.open(raster) as ds:
        assert ds.nodata is None  # as a Level-1 file: no nodata declared
    ckpt = checkpoint_for(raster, ("water", "tree"), "rgb")
    log = feedback_log()
    out = str(tmp_path / "classes.tif")
    processing.run("spectralx:segment", {"INPUT": raster, "CHECKPOINT": ckpt, "DEVICE": 1, "OUTPUT": out}, feedback=log)
    with rasterio.open(out) as ds:
        classes = ds.read(1)
    assert (classes[:, :12] == 0).all()  # the collar is nodata
    assert (classes[:, 12:] > 0).all()  # the scene is classified
    assert any(
        "no nodata value declared: pixels equal to 0 in every band are treated as nodata" in x for x in log.lines
    ), log.lines


# 6 ------------------------------------------------------------------------------------------------
def test_segmentation_progress_shows_the_time_left(qgis_app):
    from spectralx_qgis.bridge import task_progress
    from spectralx_qgis.panel.tasks import EngineTask

    now = [10.0]
    lines = []
    progress = task_progress(EngineTask("segment"), lines.append, clock=lambda: now[0])
    progress.update(0, 40, "0/40 tiles")
    now[0] = 20.0
    progress.update(10, 40, "10/40 tiles")
    progress.update(10, 40, "segmenting 64 x 64 px")  # other messages pass unchanged
    assert lines == ["tile 0/40", "tile 10/40 · about 30 s left", "segmenting 64 x 64 px"]


# 7 ------------------------------------------------------------------------------------------------
def test_panel_help_group_names_and_setup_help(project, dock, plugin):
    from spectralx_qgis import styling
    from spectralx_qgis.panel.run_controller import RunController

    # the help opens inside QGIS (no system browser needed)
    dialog = dock.open_help()
    from qgis.PyQt.QtWidgets import QTextBrowser

    assert dialog.isVisible() and "Fine-tune from polygons" in dialog.findChild(QTextBrowser).toPlainText()
    # a result added to a group the analyst hid is shown
    group = styling.spectralx_group(project)
    group.setItemVisibilityChecked(False)
    layer = QgsRasterLayer(os.path.join(FIXTURES, "landsat8_224078_crop64.tif"), "x")
    styling.add_to_group(layer, project)
    assert project.layerTreeRoot().findLayer(layer.id()).isVisible()
    # model names do not chain '_finetuned_' round after round
    base = "enmap_finetuned_20240101_101010_000001_finetuned_20240101_111111_000002.safetensors"
    path = RunController().model_path(dock.output_folder(), base, "LC08_L1TP_224078_20200518_20200518_01_RT crop", 3)
    name = os.path.basename(path)
    assert "_finetuned_" not in name and name.startswith("LC08_L1TP_224078_2020051_r3_") and len(name) < 60
    # the pinned list keeps '<1.4' and '<12' in Processing's HTML help
    alg = QgsApplication.processingRegistry().algorithmById("spectralx:install_dependencies")
    assert "&lt;1.4" in alg.shortHelpString() and "&lt;12" in alg.shortHelpString()


def _fully_shown(widget, top):
    """The widget's whole rectangle is inside every ancestor up to `top` (nothing cut off by a narrow
    panel or a scroll area's viewport)."""
    from qgis.PyQt.QtCore import QRect

    w = widget
    while w is not top:
        parent = w.parentWidget()
        rect = QRect(widget.mapTo(parent, widget.rect().topLeft()), widget.size())
        if not parent.rect().contains(rect):
            return False
        w = parent
    return widget.isVisibleTo(top)


def _at_width(dock, width, height=640):
    from qgis.PyQt.QtCore import QCoreApplication

    dock.setFloating(True)
    dock.resize(width, height)
    dock.show()
    for _ in range(3):
        QCoreApplication.processEvents()


@pytest.fixture
def desktop_font(qgis_app):
    """A 10 pt font as on a desktop (offscreen Qt uses 12 pt at 100 dpi: larger than any default)."""
    from qgis.PyQt.QtWidgets import QApplication

    before = QApplication.font()
    font = type(before)(before)
    font.setPointSizeF(10)
    QApplication.setFont(font)
    yield
    QApplication.setFont(before)


def test_panel_at_300_px_shows_the_header_buttons_whole(dock):
    _at_width(dock, 300)  # offscreen's large default font: the strict case
    for button in (dock.models_button, dock.setup_button, dock.help_button):
        assert _fully_shown(button, dock), button.text()


def test_panel_controls_fit_300_px_with_a_desktop_font(desktop_font, dock):
    from qgis.PyQt.QtWidgets import QScrollArea

    _at_width(dock, 300)
    scroll = dock.findChild(QScrollArea)
    assert dock.body.minimumSizeHint().width() <= scroll.viewport().width()
    for button in (
        dock.finetune_button,
        dock.suggest_button,
        dock.segment_view_button,
        dock.draw_button,
        dock.bands.save_button,
        dock.report_button,
    ):
        rect = button.rect().translated(button.mapTo(dock.body, button.rect().topLeft()))
        assert dock.body.rect().contains(rect) and rect.right() < scroll.viewport().width(), button.text()


def test_without_torch_the_install_button_is_above_the_fold(dock, monkeypatch):
    from spectralx_qgis.setup import deps

    monkeypatch.setattr(deps, "check", lambda refresh=False: {"torch": "PyTorch: runs the neural network"})
    monkeypatch.setattr(
        deps,
        "guidance",
        lambda html=False, command=True: "SpectralX needs Python packages this QGIS does not have yet: "
        + "torch, " * 40
        + "<br>Press <b>Install dependencies…</b>.",
    )
    dock._check_dependencies()
    _at_width(dock, 300, 360)  # a short panel: the guidance runs past the fold
    assert _fully_shown(dock.install_deps_button, dock)
    assert _fully_shown(dock.help_button, dock) and not dock.controls.isEnabled()


def test_reopening_the_installer_after_a_success_shows_what_is_installed(dock, tmp_path):
    import json

    from spectralx_qgis.setup import site_dir
    from spectralx_qgis.setup.install_dialog import InstallDialog

    root = str(tmp_path / "packages")
    target = site_dir.folder(root)
    os.makedirs(target)
    with open(os.path.join(target, site_dir.MARKER), "w") as f:
        json.dump(
            {
                "installed": [["torch", "2.3.1"], ["timm", "1.0.9"]],
                "build": "cpu",
                "device": {"line": "CPU: matmul ok"},
                "date": "2026-12-01T10:20:30+00:00",
            },
            f,
        )
    dialog = InstallDialog(dock, root=root)  # a new dialog (QGIS restarted after the install)
    dialog.show()
    assert dialog.verdict.text() == (
        f"Installed on 2026-12-01 10:20: 2 packages (cpu build) into {target}. "
        "Checked: CPU: matmul ok. SpectralX's dependencies are loaded in this QGIS."
    )
    assert dialog.progress.value() == 100
    # nothing recorded, and this QGIS's Python has everything: said so, not a blank form
    empty = InstallDialog(dock, root=str(tmp_path / "none"))
    empty.show()
    assert empty.verdict.text().startswith("QGIS's Python already has every requirement")


# 8 and 9 --------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_suggest_adds_a_point_layer_and_finetune_again_keeps_the_rounds(project, dock, tiny_backbone, tmp_path):
    from spectralx.checkpoint import read_card

    raster = landsat_crop(tmp_path / "landsat.tif", size=64)
    layer = _add(project, raster, "landsat")
    dock.set_layer(layer)
    dock.backbone_widget.setFilePath(tiny_backbone)
    polygons = halves_layer(raster)
    project.addMapLayer(polygons)
    dock.polygon_combo.setLayer(polygons)
    dock.steps_spin.setValue(2)
    task = run_task(dock, dock.finetune, timeout=300)  # round 1, from the backbone
    assert_done(task)
    first = dock.checkpoint_path()
    wait_for(lambda: not dock.bands.pending())
    # where to label next: a point layer in the SpectralX group
    task = run_task(dock, lambda: dock.suggest(6), timeout=300)
    assert_done(task)
    points = dock.suggestion_layer
    assert points.featureCount() == 6 and project.layerTreeRoot().findLayer(points.id()) is not None
    names = points.fields().names()
    for f in ("rank", "map_class", "confidence", "disagreement", "reason", "label"):
        assert f in names
    assert {f["map_class"] for f in points.getFeatures()} <= {"water", "tree"}
    # styled by predicted class as targets: a white ring around the class colour (seen on the map)
    cats = points.renderer().categories()
    assert cats and all(c.symbol().symbolLayerCount() == 2 for c in cats)
    assert cats[0].symbol().symbolLayer(0).color().name() == "#ffffff"
    # round 2 continues from round 1; the card keeps both rounds
    task = run_task(dock, dock.finetune_again, timeout=300)
    assert_done(task)
    assert task.request.checkpoint == first and "_r2_" in os.path.basename(dock.checkpoint_path())
    rounds = read_card(dock.checkpoint_path()).training["rounds"]
    assert [r["round"] for r in rounds] == [1, 2]
    assert all(set(r) >= {"labels", "val_miou", "forest_val_miou"} for r in rounds)
    assert "Rounds" in dock.card_view.toHtml()


def test_processing_suggest(plugin, tmp_path):
    import processing

    from spectralx.training import finetune

    raster = landsat_crop(tmp_path / "landsat.tif", size=64)
    forest = str(tmp_path / "forest.safetensors")
    finetune(raster, _labels_raster(raster, tmp_path), forest, method="forest")
    out = str(tmp_path / "places.gpkg")
    res = processing.run(
        "spectralx:suggest", {"INPUT": raster, "CHECKPOINT": forest, "N": 5, "DEVICE": 1, "OUTPUT": out}
    )
    assert res["POINTS"] == 5
    layer = QgsVectorLayer(f"{out}|layername=suggestions", "p", "ogr")
    assert layer.featureCount() == 5


def _labels_raster(raster, tmp_path):
    """Left half water (1), right half tree (2): a label raster on the raster's grid."""
    with rasterio.open(raster) as ds:
        profile = ds.profile
    h, w = profile["height"], profile["width"]
    lab = np.zeros((h, w), np.uint8)
    lab[4:-4, 2 : w // 2 - 2] = 1
    lab[4:-4, w // 2 + 2 : -2] = 2
    profile.update(count=1, dtype="uint8", nodata=None)
    path = str(tmp_path / "labels.tif")
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(lab, 1)
    return path
