"""Processing provider: registration and each algorithm end to end through processing.run."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import rasterio
from qgis.core import QgsApplication, QgsPalettedRasterRenderer, QgsProject
from qgis.PyQt.QtGui import QColor
from test_plugin_common import CLASSES, checkpoint_for, enmap_checkpoint, enmap_tile, halves_layer, plugin  # noqa: F401


def _checkpoint_classes(path):
    from spectralx.checkpoint import read_card

    return [(c.value, c.name, QColor(c.color).name()) for c in read_card(path).classes]


def test_provider_registration(plugin):
    provider = QgsApplication.processingRegistry().providerById("spectralx")
    assert provider is not None
    ids = sorted(a.id() for a in provider.algorithms())
    assert ids == [
        "spectralx:accuracy_area_report",
        "spectralx:check_installation",
        "spectralx:evaluate",
        "spectralx:finetune",
        "spectralx:install_dependencies",
        "spectralx:pretrain",
        "spectralx:reference_sample",
        "spectralx:segment",
        "spectralx:suggest",
        "spectralx:vectorize",
    ]
    groups = {a.id(): a.groupId() for a in provider.algorithms()}
    assert groups["spectralx:install_dependencies"] == groups["spectralx:check_installation"] == "setup"
    seg = QgsApplication.processingRegistry().algorithmById("spectralx:segment")
    names = [p.name() for p in seg.parameterDefinitions()]
    for n in (
        "INPUT",
        "CHECKPOINT",
        "BACKBONE",
        "BAND_MAP",
        "EXTENT",
        "OVERLAP",
        "BATCH_SIZE",
        "DEVICE",
        "OUTPUT",
        "CONFIDENCE",
    ):
        assert n in names
    types = {p.name(): p.type() for p in seg.parameterDefinitions()}
    assert types["INPUT"] == "raster" and types["EXTENT"] == "extent" and types["DEVICE"] == "enum"
    assert types["OUTPUT"] == "rasterDestination" and types["CHECKPOINT"] == "file"
    for alg in provider.algorithms():
        assert alg.shortHelpString() and alg.displayName()


@pytest.mark.slow
def test_segment_processing_run_and_style(plugin, enmap_tile, enmap_checkpoint, tmp_path):
    import processing

    out = str(tmp_path / "classes.tif")
    conf = str(tmp_path / "conf.tif")
    with rasterio.open(enmap_tile) as ds:
        b = ds.bounds
        res = ds.res[0]
    # EXTENT: the left half of the raster, given in the raster CRS
    extent = f"{b.left},{b.left + 16 * res},{b.bottom},{b.top} [EPSG:32633]"
    result = processing.run(
        "spectralx:segment",
        {
            "INPUT": enmap_tile,
            "CHECKPOINT": enmap_checkpoint,
            "EXTENT": extent,
            "OVERLAP": 0.25,
            "BATCH_SIZE": 4,
            "DEVICE": 1,
            "OUTPUT": out,
            "CONFIDENCE": conf,
        },
    )
    assert result["OUTPUT"] == out and os.path.isfile(out) and os.path.isfile(conf)
    with rasterio.open(out) as ds:
        assert ds.width == 16 and ds.height == 32
        data = ds.read(1)
        assert set(np.unique(data)) <= set(range(0, len(CLASSES) + 1))
    # loaded on completion (as from the toolbox): paletted renderer with the checkpoint's classes
    QgsProject.instance().removeAllMapLayers()
    processing.runAndLoadResults(
        "spectralx:segment",
        {"INPUT": enmap_tile, "CHECKPOINT": enmap_checkpoint, "DEVICE": 1, "OUTPUT": str(tmp_path / "loaded.tif")},
    )
    layers = [
        lyr
        for lyr in QgsProject.instance().mapLayers().values()
        if lyr.source().startswith(str(tmp_path / "loaded.tif"))
    ]
    assert len(layers) == 1
    renderer = layers[0].renderer()
    assert isinstance(renderer, QgsPalettedRasterRenderer)
    got = [(c.value, c.label, c.color.name()) for c in renderer.classes()]
    assert got == _checkpoint_classes(enmap_checkpoint)
    QgsProject.instance().removeAllMapLayers()


def test_segment_reports_engine_errors(plugin, enmap_tile, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    bogus = tmp_path / "not-a-checkpoint.safetensors"
    bogus.write_bytes(b"nothing")
    with pytest.raises(QgsProcessingException):
        processing.run(
            "spectralx:segment", {"INPUT": enmap_tile, "CHECKPOINT": str(bogus), "OUTPUT": str(tmp_path / "x.tif")}
        )
    assert not (tmp_path / "x.tif").exists()


@pytest.mark.slow
def test_finetune_pretrain_evaluate_processing(plugin, checkpoint_for, enmap_tile, tmp_path):
    import processing

    from spectralx.checkpoint import read_card

    base = checkpoint_for(enmap_tile, ("water", "tree"), "base")
    labels = halves_layer(enmap_tile, field="class")
    QgsProject.instance().addMapLayer(labels)
    try:
        out = str(tmp_path / "ft" / "finetuned.safetensors")
        os.makedirs(os.path.dirname(out))
        res = processing.run(
            "spectralx:finetune",
            {
                "INPUT": enmap_tile,
                "LABELS": labels,
                "CLASS_FIELD": "class",
                "CHECKPOINT": base,
                "STEPS": 2,
                "BATCH_SIZE": 2,
                "VAL_FRACTION": 0.5,
                "DEVICE": 1,
                "OUTPUT": out,
            },
        )
        assert res["OUTPUT"] == out and os.path.isfile(out)
        card = read_card(out)
        assert card.stage == "finetune" and sorted(c.name for c in card.classes) == ["tree", "water"]
        assert card.training["method"] == "spectralx" and card.training["variant"] == "default"
        metrics = json.loads(res["METRICS"])
        assert "random_forest" in metrics["baselines"] or metrics["validation"].startswith("none")

        pre = str(tmp_path / "ft" / "pretrained.safetensors")
        res = processing.run(
            "spectralx:pretrain",
            {"INPUT": [enmap_tile], "CHECKPOINT": base, "STEPS": 2, "BATCH_SIZE": 2, "DEVICE": 1, "OUTPUT": pre},
        )
        assert os.path.isfile(pre) and read_card(pre).stage == "pretrain"

        # a class raster on the tile's grid: left half water (1), right half tree (2) as in the labels
        pred = str(tmp_path / "pred.tif")
        with rasterio.open(enmap_tile) as src:
            profile = dict(
                driver="GTiff",
                width=src.width,
                height=src.height,
                count=1,
                dtype="uint8",
                crs=src.crs,
                transform=src.transform,
                nodata=0,
            )
        names = {c.value: c.name for c in card.classes}
        water = next(v for v, n in names.items() if n == "water")
        tree = next(v for v, n in names.items() if n == "tree")
        data = np.full((profile["height"], profile["width"]), tree, np.uint8)
        data[:, : profile["width"] // 2] = water
        with rasterio.open(pred, "w", **profile) as ds:
            ds.write(data, 1)
            ds.update_tags(spectralx_classes=json.dumps({str(v): n for v, n in names.items()}))
        report = str(tmp_path / "report.json")
        res = processing.run(
            "spectralx:evaluate", {"PREDICTION": pred, "REFERENCE": labels, "CLASS_FIELD": "class", "OUTPUT": report}
        )
        metrics = json.loads(res["REPORT"])
        assert os.path.isfile(report) and metrics
        assert 0.0 <= res["OA"] <= 1.0 and 0.0 <= res["MIOU"] <= 1.0
    finally:
        QgsProject.instance().removeAllMapLayers()


def test_segment_inside_a_processing_model(plugin, enmap_tile, enmap_checkpoint, tmp_path):
    """The model designer's path: spectralx:segment as a child algorithm of a saved model."""
    import processing
    from qgis.core import (
        QgsProcessingModelAlgorithm,
        QgsProcessingModelChildAlgorithm,
        QgsProcessingModelChildParameterSource,
        QgsProcessingModelOutput,
        QgsProcessingModelParameter,
        QgsProcessingParameterRasterLayer,
    )

    model = QgsProcessingModelAlgorithm("SpectralX land cover", "tests")
    model.addModelParameter(QgsProcessingParameterRasterLayer("image", "Image"), QgsProcessingModelParameter("image"))
    child = QgsProcessingModelChildAlgorithm("spectralx:segment")
    child.setChildId("seg")
    child.addParameterSources("INPUT", [QgsProcessingModelChildParameterSource.fromModelParameter("image")])
    child.addParameterSources("CHECKPOINT", [QgsProcessingModelChildParameterSource.fromStaticValue(enmap_checkpoint)])
    child.addParameterSources("DEVICE", [QgsProcessingModelChildParameterSource.fromStaticValue(1)])
    out = QgsProcessingModelOutput("classes")
    out.setChildId("seg")
    out.setChildOutputName("OUTPUT")
    child.setModelOutputs({"classes": out})
    model.addChildAlgorithm(child)
    model_file = str(tmp_path / "model.model3")
    assert model.toFile(model_file)
    reloaded = QgsProcessingModelAlgorithm()
    assert reloaded.fromFile(model_file)
    dest = str(tmp_path / "model_classes.tif")
    result = processing.run(reloaded, {"image": enmap_tile, "seg:classes": dest})
    assert os.path.isfile(dest) and result["seg:classes"] == dest


@pytest.mark.slow
def test_finetune_processing_lora_baseline_from_a_backbone(plugin, tiny_backbone, enmap_tile, tmp_path):
    """METHOD picks a PEFT baseline; the card records it and the log compares with the forest."""
    import processing
    from qgis.core import QgsProcessingFeedback

    from spectralx.checkpoint import read_card

    class Log(QgsProcessingFeedback):
        lines = []

        def pushInfo(self, text):
            self.lines.append(text)

    labels = halves_layer(enmap_tile, field="class")
    QgsProject.instance().addMapLayer(labels)
    try:
        out = str(tmp_path / "lora.safetensors")
        alg = QgsApplication.processingRegistry().algorithmById("spectralx:finetune")
        names = {p.name(): p for p in alg.parameterDefinitions()}
        assert names["METHOD"].options()[0].startswith("SpectralX") and "LoRA" in names["METHOD"].options()[1]
        log = Log()
        processing.run(
            "spectralx:finetune",
            {
                "INPUT": enmap_tile,
                "LABELS": labels,
                "CLASS_FIELD": "class",
                "BACKBONE": tiny_backbone,
                "METHOD": 1,
                "STEPS": 2,
                "BATCH_SIZE": 2,
                "VAL_FRACTION": 0.5,
                "DEVICE": 1,
                "OUTPUT": out,
            },
            feedback=log,
        )
        card = read_card(out)
        assert card.config.method == "lora" and card.training["method"] == "lora"
        assert any(
            line.startswith("Validation: ") and ("random forest" in line or "not validated" in line)
            for line in log.lines
        ), log.lines
    finally:
        QgsProject.instance().removeAllMapLayers()
