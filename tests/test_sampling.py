"""Sampling design (spectralx.sampling, `spectralx sample`): sizes, allocations, an exact stratified draw
that streams the raster, the points file, and one-line refusals that write nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import rasterio
from conftest import run_cli
from rasterio.transform import from_origin
from rasterio.windows import Window

from spectralx.checkpoint import ClassInfo
from spectralx.outputs import open_class_raster
from spectralx.sampling import SampleError, allocate, draw, sample_size

CLASSES = [ClassInfo(1, "water", "#1f78b4"), ClassInfo(2, "crop", "#33a02c"), ClassInfo(3, "tree", "#e31a1c")]
TRANSFORM = from_origin(500_000, 5_800_000, 10, 10)


def class_raster(path, data, classes=CLASSES):
    h, w = data.shape
    with open_class_raster(str(path), w, h, "EPSG:32633", TRANSFORM, classes) as ds:
        ds.write(data.astype(np.uint8), 1)
    return str(path)


@pytest.fixture
def small_map(tmp_path):
    a = np.ones((120, 150), np.uint8)
    a[:, 90:] = 2
    a[40:50, 10:20] = 3  # 100 px: a rare class
    a[:5, :] = 0  # nodata rows
    return class_raster(tmp_path / "map.tif", a), a


def read_points(path):
    from osgeo import ogr

    ds = ogr.Open(str(path))
    layer = ds.GetLayerByName("reference_sample")
    rows = [dict(f.items(), x=f.GetGeometryRef().GetX(), y=f.GetGeometryRef().GetY()) for f in layer]
    meta = json.loads(layer.GetMetadataItem("SPECTRALX_SAMPLE"))
    styles = ds.GetLayerByName("layer_styles")
    qml = [f.GetField("styleQML") for f in styles] if styles is not None else []
    return rows, meta, qml


def test_allocations_sum_exactly_and_respect_the_rules():
    pixels = [90_000, 9_000, 900, 100]
    prop = allocate(500, pixels, "proportional")
    assert prop.sum() == 500 and prop.tolist() == [450, 45, 5, 0]  # 4.5 vs 0.5: the larger stratum first
    eq = allocate(500, pixels, "equal")
    assert eq.tolist() == [134, 133, 133, 100]  # the smallest stratum has only 100 pixels: all of them, the rest shared
    mins = allocate(500, pixels, "min-per-class:50")
    assert mins.tolist() == [350, 50, 50, 50]  # 45 proportional points were below K too
    assert allocate(1000, pixels, "min-per-class:30").tolist() == [855, 85, 30, 30]  # the rest stays proportional
    assert allocate(10, [3, 1000], "min-per-class:5").tolist() == [3, 7]  # K capped by a tiny stratum
    with pytest.raises(SampleError, match="cannot give 4 classes 200 each"):
        allocate(500, pixels, "min-per-class:200")
    with pytest.raises(SampleError, match="needs 200000 mapped pixels"):
        allocate(200_000, pixels, "proportional")
    with pytest.raises(SampleError, match="not one of proportional, equal, min-per-class:K"):
        allocate(10, pixels, "stratified")


def test_draw_is_exact_within_strata_and_reproducible(small_map):
    path, a = small_map
    s = draw(path, n=60, allocation="min-per-class:12", seed=7)
    counts = {v: int((s.strata == v).sum()) for v in (1, 2, 3)}
    assert counts == dict(zip(s.values, s.allocated)) and sum(counts.values()) == 60 and counts[3] == 12
    assert np.all(a[s.rows, s.cols] == s.strata)  # each point is in its stratum
    assert len(set(zip(s.rows.tolist(), s.cols.tolist()))) == 60  # no pixel twice
    assert s.pixels == [int((a == v).sum()) for v in (1, 2, 3)]  # nodata (0) is no stratum
    x, y = s.coordinates()
    assert np.allclose(x, 500_000 + (s.cols + 0.5) * 10) and np.allclose(y, 5_800_000 - (s.rows + 0.5) * 10)
    again = draw(path, n=60, allocation="min-per-class:12", seed=7)
    assert np.array_equal(again.rows, s.rows) and np.array_equal(again.cols, s.cols)


def test_draw_is_uniform_within_a_stratum(tmp_path):
    """Every pixel of a stratum equally likely: the two halves of a class split across strips get
    points in proportion to their pixels (chi-square-free check over 40 draws)."""
    a = np.zeros((400, 50), np.uint8)
    a[:100] = 1  # top strip: 5000 px
    a[300:] = 1  # bottom: 5000 px
    a[100:300] = 2
    path = class_raster(tmp_path / "halves.tif", a)
    top = 0
    for seed in range(40):
        s = draw(path, n=100, allocation="equal", seed=seed, budget=64 * 2**20)
        top += int(((s.strata == 1) & (s.rows < 100)).sum())
    assert 0.45 <= top / (40 * 50) <= 0.55


@pytest.mark.slow
def test_cli_writes_points_with_empty_reference_and_style(small_map, tmp_path):
    path, a = small_map
    out = tmp_path / "points.gpkg"
    proc = run_cli(
        "sample",
        path,
        "-o",
        out,
        "--target-se",
        "0.03",
        "--expected-ua",
        "0.9,3=0.6",
        "--allocation",
        "min-per-class:10",
        "--seed",
        "1",
    )
    assert proc.returncode == 0, proc.stderr
    rows, meta, qml = read_points(out)
    w = np.array([(a == v).sum() for v in (1, 2, 3)], float)
    n = sample_size(w / w.sum(), [0.9, 0.9, 0.6], 0.03)
    assert len(rows) == n == meta["sample_size"] and f"{n} points" in proc.stdout
    assert {r["reference"] for r in rows} == {None}
    assert {r["map_class"] for r in rows} == {"water", "crop", "tree"}
    assert sorted(r["id"] for r in rows) == list(range(1, n + 1))
    assert all(a[r["row"], r["col"]] == r["stratum"] for r in rows)
    assert meta["points"] == {str(v): sum(r["stratum"] == v for r in rows) for v in (1, 2, 3)}
    assert qml and 'attr="stratum"' in qml[0] and "ValueMap" in qml[0] and "3 tree" in qml[0]
    # the same output again: refused, file untouched
    before = os.path.getmtime(out)
    again = run_cli("sample", path, "-o", out, "--n", "10")
    assert again.returncode != 0 and "already exists" in again.stderr and os.path.getmtime(out) == before


@pytest.mark.slow
@pytest.mark.parametrize(
    "case", ["all_nodata", "too_many", "bad_allocation", "multiband", "no_size", "bad_ua", "empty_stratum"]
)
def test_bad_input_is_one_line_and_writes_nothing(case, tmp_path, small_map):
    path, a = small_map
    out = tmp_path / "p.gpkg"
    args = [path, "-o", out, "--n", "20"]
    if case == "all_nodata":
        args[0] = class_raster(tmp_path / "empty.tif", np.zeros((20, 20), np.uint8))
        expect = "no classified pixel"
    elif case == "too_many":
        args[-1] = "100000"
        expect = "needs 100000 mapped pixels"
    elif case == "bad_allocation":
        args += ["--allocation", "min-per-class:0"]
        expect = "min-per-class:K"
    elif case == "multiband":
        with rasterio.open(
            tmp_path / "rgb.tif",
            "w",
            driver="GTiff",
            width=8,
            height=8,
            count=3,
            dtype="uint8",
            crs="EPSG:32633",
            transform=TRANSFORM,
        ) as ds:
            ds.write(np.ones((3, 8, 8), np.uint8))
        args[0] = str(tmp_path / "rgb.tif")
        expect = "has 3 bands"
    elif case == "no_size":
        args = [path, "-o", out]
        expect = "one of the arguments --n --target-se is required"
    elif case == "bad_ua":
        args = [path, "-o", out, "--target-se", "0.01", "--expected-ua", "high"]
        expect = "--expected-ua 'high'"
    else:  # proportional allocation of 20 points leaves the 100 px class without points
        expect = "gives class tree (100 px) 0 points; the estimates need at least 2 per class"
    proc = run_cli("sample", *args)
    assert proc.returncode == 2, proc.stderr
    assert expect in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not out.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".sx-")] == []


@pytest.mark.slow
def test_20000_square_sparse_raster_streams_within_the_budget(tmp_path):
    """A 20 000 x 20 000 class map (a sparse GeoTIFF: 400 M pixels, a few tiles written): the sample
    command's peak memory stays below its 64 MiB budget (the whole map would be 400 MB) and every
    stratum gets exactly its allocation."""
    path = tmp_path / "big.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=20_000,
        height=20_000,
        count=1,
        dtype="uint8",
        nodata=0,
        crs="EPSG:32633",
        transform=TRANSFORM,
        tiled=True,
        blockxsize=256,
        blockysize=256,
        compress="deflate",
        sparse_ok=True,
    ) as ds:
        ds.write(np.full((512, 512), 1, np.uint8), 1, window=Window(0, 0, 512, 512))
        ds.write(np.full((256, 768), 2, np.uint8), 1, window=Window(9_984, 10_240, 768, 256))
        rare = np.zeros((256, 256), np.uint8)
        rare[-6:, -7:] = 3  # 42 px in the last tile
        ds.write(rare, 1, window=Window(19_744, 19_744, 256, 256))
    assert os.path.getsize(path) < 2 * 2**20
    out = tmp_path / "big.gpkg"
    code = (
        "import resource, sys; from spectralx import cli, sampling, vector_io; import rasterio, osgeo.ogr; "
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; "
        f"rc = cli.main(['sample', {str(path)!r}, '-o', {str(out)!r}, '--n', '300', "
        "'--allocation', 'min-per-class:40', '--seed', '3', '--max-memory', '64M']); "
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; print('GROWTH_KB', after - before); "
        "sys.exit(rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    growth_mib = int(proc.stdout.split("GROWTH_KB")[1].split()[0]) / 1024
    assert growth_mib < 64, f"peak memory grew by {growth_mib:.0f} MiB"
    rows, meta, _ = read_points(out)
    assert meta["pixels"] == {"1": 512 * 512, "2": 256 * 768, "3": 42}
    allocated = allocate(300, [512 * 512, 256 * 768, 42], "min-per-class:40").tolist()
    assert [sum(r["stratum"] == v for r in rows) for v in (1, 2, 3)] == allocated == [149, 111, 40]
    assert all(19_994 <= r["row"] and 19_993 <= r["col"] for r in rows if r["stratum"] == 3)
