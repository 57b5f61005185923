"""Processing as an analyst meets it: SENSOR on the three algorithms that read rasters, defaults from
the engine's one module, cancel reported as cancelled, no spurious batch-mode message."""

from __future__ import annotations

import os

import pytest
from qgis.core import QgsApplication, QgsProcessingContext, QgsProcessingFeedback, QgsProject
from test_plugin_common import checkpoint_for, plugin  # noqa: F401


def test_sensor_parameter_and_engine_defaults(plugin):
    from spectralx import defaults

    registry = QgsApplication.processingRegistry()
    for alg_id in ("spectralx:segment", "spectralx:finetune", "spectralx:pretrain"):
        alg = registry.algorithmById(alg_id)
        sensor = alg.parameterDefinition("SENSOR")
        assert sensor is not None and sensor.type() == "string", alg_id
        assert sensor.flags() & sensor.FlagOptional
        assert "landsat8:B2,B3,B4" in alg.shortHelpString()
    seg = registry.algorithmById("spectralx:segment")
    assert seg.parameterDefinition("OVERLAP").defaultValue() == defaults.OVERLAP
    assert seg.parameterDefinition("BATCH_SIZE").defaultValue() == defaults.BATCH_SIZE
    ft = registry.algorithmById("spectralx:finetune")
    import inspect

    from spectralx.training import finetune

    try:  # the training package's own defaults, wherever it keeps them
        from spectralx.training.options import FinetuneOptions

        steps = FinetuneOptions().steps
    except ImportError:
        steps = inspect.signature(finetune).parameters["steps"].default
    assert ft.parameterDefinition("STEPS").defaultValue() == steps == defaults.training_default("finetune", "steps")
    pre = registry.algorithmById("spectralx:pretrain")
    from spectralx.training.options import PretrainOptions  # pretrain's options dataclass (issue 19)

    assert pre.parameterDefinition("STEPS").defaultValue() == PretrainOptions().steps


def test_unknown_sensor_is_one_line_in_processing_words(plugin, tmp_path):
    import processing
    from qgis.core import QgsProcessingException
    from test_plugin_qgis_process import ENMAP_MODEL, LANDSAT

    try:
        processing.run(
            "spectralx:segment",
            {
                "INPUT": LANDSAT,
                "CHECKPOINT": ENMAP_MODEL,
                "SENSOR": "spot99",
                "DEVICE": 1,
                "OUTPUT": str(tmp_path / "x.tif"),
            },
        )
    except QgsProcessingException as exc:
        assert "unknown sensor preset 'spot99'" in str(exc) and "\n" not in str(exc)
    else:
        raise AssertionError("no error")
    assert not os.listdir(tmp_path)


def test_cancel_is_reported_as_cancelled(plugin, checkpoint_for, tmp_path):
    from test_plugin_dock import _big_raster

    raster = _big_raster(str(tmp_path / "big.tif"), size=512)
    ckpt = checkpoint_for(raster, ("a", "b"), "rgb")
    alg = QgsApplication.processingRegistry().createAlgorithmById("spectralx:segment")
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    feedback = QgsProcessingFeedback()
    infos, errors = [], []
    feedback.progressChanged.connect(lambda v: v > 0 and feedback.cancel())
    feedback.pushInfo = infos.append
    feedback.reportError = lambda text, fatal=False: errors.append(text)
    out = str(tmp_path / "classes.tif")
    params = {"INPUT": raster, "CHECKPOINT": ckpt, "DEVICE": 1, "BATCH_SIZE": 1, "OUTPUT": out}
    ok, _ = alg.prepare(params, context, feedback), None
    assert ok
    results = alg.runPrepared(params, context, feedback)
    assert results == {}
    assert any("Cancelled by the user: nothing was written" in i for i in infos)
    assert not errors
    assert not os.path.exists(out) and not os.path.exists(out[:-4] + ".qml")
    assert not context.layersToLoadOnCompletion()


def test_empty_optional_output_is_not_announced(plugin):
    from qgis.core import QgsProcessingContext

    from spectralx_qgis.processing.base import drop_unnamed_layers

    context = QgsProcessingContext()
    details = QgsProcessingContext.LayerDetails("classes", QgsProject.instance(), "OUTPUT")
    context.addLayerToLoadOnCompletion("/tmp/classes.tif", details)
    context.addLayerToLoadOnCompletion(
        "", QgsProcessingContext.LayerDetails("confidence", QgsProject.instance(), "CONFIDENCE")
    )
    drop_unnamed_layers(context)
    assert list(context.layersToLoadOnCompletion()) == ["/tmp/classes.tif"]


# Ten runs of each algorithm in one session (the bar); SPECTRALX_PLUGIN_RUNS lowers the count
# of the two training algorithms on a machine that is short of CPU.
RUNS = int(os.environ.get("SPECTRALX_PLUGIN_RUNS", "10"))


@pytest.mark.slow
def test_one_session_survives_ten_runs_of_each_algorithm(plugin, tmp_path):
    """The QGIS process the analyst works in runs every algorithm again and again (each GDAL handle,
    label raster and model released each time): no crash, no leftover temporary label rasters.
    Segment and evaluate run ten times; finetune and pretrain RUNS times (default ten)."""
    import glob
    import tempfile

    import processing
    from test_plugin_qgis_process import BACKBONE, LANDSAT, POLYGONS

    before = set(glob.glob(os.path.join(tempfile.gettempdir(), "spectralx_labels_*")))
    ckpt = str(tmp_path / "m.safetensors")
    for i in range(10):
        if i >= RUNS:
            seg = processing.run(
                "spectralx:segment",
                {
                    "INPUT": LANDSAT,
                    "CHECKPOINT": ckpt,
                    "EXTENT": _corner(LANDSAT),
                    "DEVICE": 1,
                    "OUTPUT": str(tmp_path / f"c{i}.tif"),
                },
            )
            res = processing.run(
                "spectralx:evaluate", {"PREDICTION": seg["OUTPUT"], "REFERENCE": POLYGONS, "CLASS_FIELD": "name"}
            )
            assert 0.0 <= res["OA"] <= 1.0
            continue
        out = processing.run(
            "spectralx:finetune",
            {
                "INPUT": LANDSAT,
                "LABELS": POLYGONS,
                "CLASS_FIELD": "name",
                "BACKBONE": BACKBONE,
                "SENSOR": "landsat8:B2,B3,B4",
                "STEPS": 1,
                "BATCH_SIZE": 1,
                "DEVICE": 1,
                "OUTPUT": ckpt,
            },
        )
        assert out["OUTPUT"] == ckpt
        seg = processing.run(
            "spectralx:segment",
            {
                "INPUT": LANDSAT,
                "CHECKPOINT": ckpt,
                "EXTENT": _corner(LANDSAT),
                "DEVICE": 1,
                "OUTPUT": str(tmp_path / f"c{i}.tif"),
            },
        )
        assert os.path.isfile(seg["OUTPUT"])
        res = processing.run(
            "spectralx:evaluate", {"PREDICTION": seg["OUTPUT"], "REFERENCE": POLYGONS, "CLASS_FIELD": "name"}
        )
        assert 0.0 <= res["OA"] <= 1.0
        pre = processing.run(
            "spectralx:pretrain",
            {
                "INPUT": [LANDSAT],
                "BACKBONE": BACKBONE,
                "SENSOR": "landsat8",
                "STEPS": 1,
                "BATCH_SIZE": 1,
                "DEVICE": 1,
                "OUTPUT": str(tmp_path / "p.safetensors"),
            },
        )
        assert os.path.isfile(pre["OUTPUT"])
    assert set(glob.glob(os.path.join(tempfile.gettempdir(), "spectralx_labels_*"))) == before


def _corner(path):
    """A 64 x 64 px extent in the raster's corner: ten segmentations stay quick."""
    import rasterio

    with rasterio.open(path) as ds:
        b, res, epsg = ds.bounds, ds.res[0], ds.crs.to_epsg()
    return f"{b.left},{b.left + 64 * res},{b.top - 64 * res},{b.top} [EPSG:{epsg}]"
