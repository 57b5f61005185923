"""`spectralx evaluate`: figures checked against a hand-computed confusion matrix."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import run_cli

CRS = "EPSG:32633"
# 3 x 4 grid, 30 m pixels
REF = np.array([[1, 1, 1, 2], [2, 2, 3, 3], [0, 1, 2, 3]], np.uint8)  # 0 = unlabelled
PRED = np.array([[1, 1, 2, 2], [2, 3, 3, 3], [3, 1, 2, 0]], np.uint8)  # 0 = nodata
# Compared pixels (reference labelled, prediction not nodata): 10. By hand, rows = reference:
#        p1 p2 p3
#   r1 [  3, 1, 0 ]
#   r2 [  0, 3, 1 ]
#   r3 [  0, 0, 2 ]
CM = [[3, 1, 0], [0, 3, 1], [0, 0, 2]]
OA = 8 / 10
PE = (4 * 3 + 4 * 4 + 2 * 3) / 100  # row sums 4,4,2; column sums 3,4,3
KAPPA = (OA - PE) / (1 - PE)  # 0.6969…
IOU = {1: 3 / 4, 2: 3 / 5, 3: 2 / 3}
F1 = {1: 6 / 7, 2: 6 / 8, 3: 4 / 5}
CLASSES = [
    {"value": 1, "name": "roof", "color": "#d7301f"},
    {"value": 2, "name": "tree", "color": "#1b7837"},
    {"value": 3, "name": "water", "color": "#1f78b4"},
    {"value": 4, "name": "snow", "color": "#f0f0f0"},
]


def _write(path, data, tags=None):
    import rasterio
    from rasterio.transform import from_origin

    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=data.shape[1],
        height=data.shape[0],
        count=1,
        dtype="uint8",
        crs=CRS,
        transform=from_origin(366000, 5810000, 30, 30),
        nodata=0,
    ) as ds:
        ds.write(data, 1)
        if tags:
            ds.update_tags(1, **tags)
    return str(path)


@pytest.fixture
def rasters(tmp_path):
    pred = _write(tmp_path / "pred.tif", PRED, {"CLASSES": json.dumps(CLASSES), "CLASS_1": "roof"})
    ref = _write(tmp_path / "ref.tif", REF)
    return pred, ref


def test_against_hand_computed_confusion_matrix(rasters):
    from spectralx.evaluate import evaluate

    pred, ref = rasters
    r = evaluate(pred, ref)
    # class 4 (snow) is in the prediction's class table but neither predicted nor in the reference
    assert r["class_values"] == [1, 2, 3, 4]
    cm = np.array(r["confusion_matrix"])
    assert cm[:3, :3].tolist() == CM and cm[3].sum() == 0 and cm[:, 3].sum() == 0
    assert r["pixels"] == 10 and r["unpredicted_reference_pixels"] == 1
    assert r["overall_accuracy"] == pytest.approx(OA)
    assert r["kappa"] == pytest.approx(KAPPA)
    by_value = {c["value"]: c for c in r["per_class"]}
    for v in (1, 2, 3):
        assert by_value[v]["iou"] == pytest.approx(IOU[v])
        assert by_value[v]["f1"] == pytest.approx(F1[v])
    assert r["miou"] == pytest.approx(sum(IOU.values()) / 3)  # over reference classes only
    assert r["mean_f1"] == pytest.approx(sum(F1.values()) / 3)
    assert [by_value[v]["name"] for v in (1, 2, 3, 4)] == ["roof", "tree", "water", "snow"]
    assert not by_value[4]["in_reference"]


def test_vector_points_in_another_crs(rasters, tmp_path):
    import fiona
    from fiona.crs import CRS as FCRS
    from rasterio.transform import from_origin
    from rasterio.warp import transform as warp

    from spectralx.evaluate import evaluate

    pred, _ = rasters
    tr = from_origin(366000, 5810000, 30, 30)
    # pixel (row, col) -> class name; prediction there: 1, 3, 3 (and one point off the raster)
    pts = [((0, 0), "roof"), ((1, 1), "tree"), ((1, 2), "Water")]
    xs = [(tr * (c + 0.5, r + 0.5))[0] for (r, c), _ in pts] + [400000]
    ys = [(tr * (c + 0.5, r + 0.5))[1] for (r, c), _ in pts] + [5700000]
    lon, lat = warp(CRS, "EPSG:4326", xs, ys)
    path = str(tmp_path / "points.gpkg")
    schema = {"geometry": "Point", "properties": {"cover": "str"}}
    with fiona.open(path, "w", driver="GPKG", crs=FCRS.from_epsg(4326), schema=schema) as dst:
        for (x, y), name in zip(zip(lon, lat), [n for _, n in pts] + ["roof"]):
            dst.write({"geometry": {"type": "Point", "coordinates": (x, y)}, "properties": {"cover": name}})
    r = evaluate(pred, path, class_field="cover")
    assert r["pixels"] == 3
    assert r["overall_accuracy"] == pytest.approx(2 / 3)
    cm = np.array(r["confusion_matrix"])
    assert cm[0, 0] == 1 and cm[1, 2] == 1 and cm[2, 2] == 1
    assert any("outside the image" in n for n in r["notes"])


@pytest.mark.slow
def test_cli_table_and_json(rasters):
    pred, ref = rasters
    proc = run_cli("evaluate", pred, "--reference", ref)
    assert proc.returncode == 0, proc.stderr
    assert "overall accuracy: 0.8000" in proc.stdout and "kappa: 0.6970" in proc.stdout
    assert "water" in proc.stdout and "confusion matrix" in proc.stdout
    proc = run_cli("evaluate", pred, "--reference", ref, "--json")
    data = json.loads(proc.stdout)
    assert data["miou"] == pytest.approx(sum(IOU.values()) / 3)


def test_unknown_class_names_are_an_error(rasters, tmp_path):
    import fiona
    from fiona.crs import CRS as FCRS

    from spectralx.errors import LabelError
    from spectralx.evaluate import evaluate

    pred, _ = rasters
    path = str(tmp_path / "pts.geojson")
    schema = {"geometry": "Point", "properties": {"cover": "str"}}
    with fiona.open(path, "w", driver="GeoJSON", crs=FCRS.from_epsg(32633), schema=schema) as dst:
        dst.write({"geometry": {"type": "Point", "coordinates": (366015, 5809985)}, "properties": {"cover": "lava"}})
    with pytest.raises(LabelError, match="lava"):
        evaluate(pred, path)
