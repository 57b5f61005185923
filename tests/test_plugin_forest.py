"""Issue 17 in QGIS: the forest method and the fusion option in Processing and the dock, the model's
warnings and its three validation scores where the analyst looks (log, card, status line)."""

from __future__ import annotations

import os

import pytest
from qgis.core import QgsApplication, QgsProject
from test_plugin_common import (  # noqa: F401
    assert_done,
    dock,
    enmap_tile,
    feedback_log,
    halves_layer,
    plugin,
    project,
    run_task,
)
from test_plugin_dock import _add_raster


@pytest.mark.slow
def test_processing_forest_method_and_fuse_parameter(plugin, enmap_tile, tiny_backbone, tmp_path):
    import processing

    from spectralx.checkpoint import read_card

    alg = QgsApplication.processingRegistry().algorithmById("spectralx:finetune")
    params = {p.name(): p for p in alg.parameterDefinitions()}
    assert params["FUSE"].options()[params["FUSE"].defaultValue()].startswith("Pool with a random forest")
    methods = params["METHOD"].options()
    forest = next(i for i, o in enumerate(methods) if o.startswith("Random forest"))
    labels = halves_layer(enmap_tile, field="class")
    QgsProject.instance().addMapLayer(labels)
    try:
        # the forest alone: no backbone given, none needed; one polygon per class still validates
        out = str(tmp_path / "forest.safetensors")
        log = feedback_log()
        processing.run(
            "spectralx:finetune",
            {
                "INPUT": enmap_tile,
                "LABELS": labels,
                "CLASS_FIELD": "class",
                "METHOD": forest,
                "DEVICE": 1,
                "OUTPUT": out,
            },
            feedback=log,
        )
        card = read_card(out)
        assert card.is_forest and "val_miou" in card.metrics
        assert "Map made by: random forest (spectra + 3x3 mean spectrum)" in log.lines, log.lines
        # a 2-step network pooled with its forest: the log names the map's model and warns in red
        out = str(tmp_path / "fused.safetensors")
        log = feedback_log()
        processing.run(
            "spectralx:finetune",
            {
                "INPUT": enmap_tile,
                "LABELS": labels,
                "CLASS_FIELD": "class",
                "BACKBONE": tiny_backbone,
                "STEPS": 2,
                "BATCH_SIZE": 2,
                "DEVICE": 1,
                "OUTPUT": out,
            },
            feedback=log,
        )
        card = read_card(out)
        assert "fusion" in card.metrics and card.training["fusion"]["weight"] == card.fusion_weight
        assert any(x.startswith("Map made by: ") for x in log.lines)
        assert [e for e in log.errors if e.startswith("Warning: ")] == [
            "Warning: " + w for w in card.metrics["warnings"]
        ]
    finally:
        QgsProject.instance().removeAllMapLayers()


@pytest.mark.slow
def test_dock_trains_a_forest_without_backbone_and_shows_its_card(project, dock, enmap_tile):
    from spectralx.checkpoint import read_card

    layer = _add_raster(project, enmap_tile)
    dock.set_layer(layer)
    vl = halves_layer(enmap_tile)
    project.addMapLayer(vl)
    dock.polygon_combo.setLayer(vl)
    dock.field_combo.setField("landcover")
    assert dock.fuse_check.isChecked() and dock.fuse_check.isEnabled()
    dock.method_combo.setCurrentIndex(dock.method_combo.findData("forest"))
    assert not dock.fuse_check.isEnabled()  # nothing to pool a forest with
    task = run_task(dock, dock.finetune, timeout=300)
    assert_done(task)
    new = dock.checkpoint_path()
    card = read_card(new)
    assert card.is_forest and os.listdir(os.path.dirname(new)) == [os.path.basename(new)]  # no backbone copied
    html = dock.card_view.toHtml()
    assert "Random forest (spectra + 3x3 mean spectrum, no network, no backbone)" in html
    assert html.index("Quality") < html.index("Classes")  # the scores come first, unscrolled
    assert "map: random forest" in dock.status.text()


def test_card_view_shows_warnings_first_and_the_three_scores():
    from types import SimpleNamespace

    from spectralx_qgis.panel.card_view import metrics_html

    metrics = {
        "val_miou": 0.31,
        "val_oa": 0.6,
        "val_pixels": 900,
        "validation": "held-out whole polygons",
        "warnings": ["the network predicts 'tree' on 95% of the validation pixels (the labels: 40%)"],
        "baselines": {"random_forest": {"val_miou": 0.45}},
        "fusion": {"weight": 0.7, "map": "fused", "val_miou": {"network": 0.31, "forest": 0.45, "fused": 0.48}},
    }
    html = metrics_html(SimpleNamespace(metrics=metrics, training={}))
    assert html.index("Warning") < html.index("Validation")
    assert "predicts &#x27;tree&#x27; on 95%" in html
    assert "network 0.310, random forest 0.450, <b>pool (forest weight 0.7) 0.480</b>" in html
    assert "The map uses the network pooled with the forest (forest weight 0.7)" in html
