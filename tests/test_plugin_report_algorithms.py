"""The reporting algorithms through `qgis_process.bin` alone (the plugin installed from its zip in a fresh
profile): Create reference sample -> label -> Accuracy and area report, and Vectorize classes; exit 0 on
success, 1 with a one-line reason and nothing written on bad input."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from rasterio.transform import from_origin
from test_plugin_qgis_process import QGIS_PROCESS, _handled_error, _ok, qp  # noqa: F401  (the fixture)

pytestmark = pytest.mark.skipif(not os.path.exists(QGIS_PROCESS), reason="qgis_process.bin not installed")


def class_raster(path, data):
    from spectralx.checkpoint import ClassInfo
    from spectralx.outputs import open_class_raster

    classes = [ClassInfo(1, "water", "#1f78b4"), ClassInfo(2, "crop", "#33a02c"), ClassInfo(3, "tree", "#e31a1c")]
    h, w = data.shape
    with open_class_raster(str(path), w, h, "EPSG:32633", from_origin(500_000, 5_800_000, 10, 10), classes) as ds:
        ds.write(data.astype(np.uint8), 1)
    return str(path)


@pytest.fixture
def landcover(tmp_path):
    a = np.ones((120, 140), np.uint8)
    a[:, 70:] = 2
    a[30:60, 20:50] = 3
    a[90, 100] = 3  # one pixel: sieved away by an MMU
    return class_raster(tmp_path / "landcover.tif", a), a


def label_points(path, truth):
    """The analyst's step: every point gets the true class (the map is wrong on a strip of class 1)."""
    from osgeo import ogr

    ds = ogr.Open(str(path), 1)
    layer = ds.GetLayerByName("reference_sample")
    for f in layer:
        f.SetField("reference", int(truth[f.GetField("row"), f.GetField("col")]))
        layer.SetFeature(f)
    ds = None


@pytest.mark.slow
def test_sample_label_report_through_qgis_process(qp, landcover, tmp_path):
    path, a = landcover
    points = tmp_path / "points.gpkg"
    proc = _ok(
        qp(
            "run",
            "spectralx:reference_sample",
            "--",
            f"INPUT={path}",
            "SIZE=90",
            "ALLOCATION=2",
            "MIN_PER_CLASS=20",
            "SEED=4",
            f"OUTPUT={points}",
        )
    )
    assert "POINTS:\t90" in proc.stdout
    truth = a.copy()
    truth[:, 60:70] = 2  # 10 columns mapped as water are crop
    label_points(points, truth)
    html = tmp_path / "report.html"
    proc = _ok(
        qp(
            "run",
            "spectralx:accuracy_area_report",
            "--",
            f"PREDICTION={path}",
            f"REFERENCE={points}",
            "CLASS_FIELD=reference",
            f"OUTPUT={html}",
        )
    )
    assert "OVERALL_ACCURACY" in proc.stdout
    result = json.loads((tmp_path / "report.json").read_text())
    assert result["design"] == "stratified" and result["sample_size"] == 90
    assert [c["sample_points"] for c in result["classes"]][2] >= 20
    assert (tmp_path / "report.png").read_bytes()[:4] == b"\x89PNG" and "Overall accuracy" in html.read_text()
    water = result["classes"][0]
    assert water["mapped_pixels"] == int((a == 1).sum())
    assert water["area_pixels"]["estimate"] < water["mapped_pixels"]  # the map overstates water
    # bad input: a reference field whose classes the map does not have
    from osgeo import ogr

    ds = ogr.Open(str(points), 1)
    layer = ds.GetLayerByName("reference_sample")
    f = layer.GetNextFeature()
    f.SetField("reference", 9)
    layer.SetFeature(f)
    ds = None
    text = _handled_error(
        qp(
            "run",
            "spectralx:accuracy_area_report",
            "--",
            f"PREDICTION={path}",
            f"REFERENCE={points}",
            "CLASS_FIELD=reference",
            f"OUTPUT={tmp_path / 'bad.html'}",
        ),
        "reference class 9 is not a class of the map",
    )
    assert "--" not in text.split("reference class 9")[1].splitlines()[0]
    assert not any(p.name.startswith("bad") for p in tmp_path.iterdir())


@pytest.mark.slow
def test_vectorize_and_bad_inputs_through_qgis_process(qp, landcover, tmp_path):
    path, a = landcover
    out = tmp_path / "polygons.gpkg"
    proc = _ok(qp("run", "spectralx:vectorize", "--", f"INPUT={path}", "MMU=0.05ha", f"OUTPUT={out}"))
    assert "POLYGONS:\t3" in proc.stdout
    from osgeo import ogr

    ds = ogr.Open(str(out))
    rows = [f.items() for f in ds.GetLayerByName("classes")]
    ds = None
    assert sorted(r["pixels"] for r in rows) == sorted([int((a == 1).sum()), int((a == 2).sum()) + 1, 900])
    # an MMU below one pixel, an all-nodata map to sample: exit 1, one reason, nothing written
    _handled_error(
        qp("run", "spectralx:vectorize", "--", f"INPUT={path}", "MMU=0.001ha", f"OUTPUT={tmp_path / 'small.gpkg'}"),
        "smaller than one pixel",
    )
    empty = class_raster(tmp_path / "empty.tif", np.zeros((20, 20), np.uint8))
    _handled_error(
        qp("run", "spectralx:reference_sample", "--", f"INPUT={empty}", "SIZE=10", f"OUTPUT={tmp_path / 'none.gpkg'}"),
        "no classified pixel",
    )
    assert not (tmp_path / "small.gpkg").exists() and not (tmp_path / "none.gpkg").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".sx-")] == []


# --- the dock: Vector output (MMU) and the report window (pytest-qgis, in process) --------------------

from test_plugin_common import (  # noqa: E402,F401
    CLASSES,
    assert_done,  # noqa: E402
    dock,
    enmap_checkpoint,
    enmap_tile,
    plugin,
    project,
    run_task,
    wait_for,
)


@pytest.mark.slow
def test_dock_vector_option_loads_styled_polygons(project, dock, enmap_tile, enmap_checkpoint):
    from qgis.core import QgsCategorizedSymbolRenderer, QgsRasterLayer, QgsVectorLayer

    layer = QgsRasterLayer(enmap_tile, "enmap")
    project.addMapLayer(layer)
    dock.set_checkpoint(enmap_checkpoint)
    dock.set_layer(layer)
    wait_for(lambda: not dock.bands.pending())
    dock.vector_option.check.setChecked(True)
    dock.vector_option.mmu_edit.setText("0.5ha")  # 30 m pixels: 6 px
    task = run_task(dock, dock.segment_layer)
    assert_done(task)
    wait_for(lambda: getattr(dock, "last_polygons", None) is not None, timeout=120)
    polygons = dock.last_polygons
    assert isinstance(polygons, QgsVectorLayer) and polygons.isValid() and polygons.featureCount() > 0
    renderer = polygons.renderer()
    assert isinstance(renderer, QgsCategorizedSymbolRenderer) and renderer.classAttribute() == "class_id"
    labels = {c.label() for c in renderer.categories()}
    assert labels <= set(CLASSES) and labels
    areas = [f["area_ha"] for f in polygons.getFeatures()]
    assert min(areas) >= 0.5 - 1e-9 and all(0 < f["confidence"] <= 1 for f in polygons.getFeatures())
    group = project.layerTreeRoot().findGroup("SpectralX")
    assert polygons.id() in [n.layerId() for n in group.findLayers()]
    assert polygons.source().split("|")[0] == os.path.splitext(task.request.output)[0] + "_polygons.gpkg"


def test_report_opens_in_a_qgis_window(qgis_app, tmp_path):
    from qgis.PyQt.QtWidgets import QTextBrowser

    from spectralx.area_estimate import estimate
    from spectralx.area_report_files import write_report
    from spectralx_qgis.panel.dock_reporting import show_report

    result = estimate([[40, 2], [3, 50]], [3000, 7000], ["water", "crop"], pixel_area_ha=0.01)
    result.update(map="m.tif", reference="p.gpkg", class_field="reference", design="stratified", notes=[])
    paths = write_report(result, str(tmp_path / "report.json"))
    dialog = show_report(paths["html"])
    text = dialog.findChild(QTextBrowser).toPlainText()
    assert "Overall accuracy" in text and "water" in text and "user's accuracy" in text
    dialog.close()
