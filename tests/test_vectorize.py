"""Class raster -> polygons with a minimum mapping unit (spectralx.vectorize, `spectralx vectorize`,
`spectralx segment --vector --mmu`): areas, MMU, seams, mean confidence, style, one-line refusals."""

from __future__ import annotations

import os

import numpy as np
import pytest
import rasterio
from conftest import run_cli
from rasterio.transform import from_origin

from spectralx.checkpoint import ClassInfo
from spectralx.outputs import open_class_raster
from spectralx.vectorize import MMUError, threshold_pixels, vectorize

CLASSES = [ClassInfo(1, "water", "#1f78b4"), ClassInfo(2, "crop", "#33a02c"), ClassInfo(3, "tree", "#e31a1c")]
PIXEL_HA = 0.01  # 10 m pixels


def class_raster(path, data, crs="EPSG:32633", res=10.0):
    h, w = data.shape
    with open_class_raster(str(path), w, h, crs, from_origin(500_000, 5_800_000, res, res), CLASSES) as ds:
        ds.write(data.astype(np.uint8), 1)
    return str(path)


def polygons(path):
    from osgeo import ogr

    ds = ogr.Open(str(path))
    layer = ds.GetLayerByName("classes")
    rows = [dict(f.items(), area_m2=f.GetGeometryRef().GetArea()) for f in layer]
    styles = ds.GetLayerByName("layer_styles")
    qml = [f.GetField("styleQML") for f in styles] if styles is not None else []
    return rows, qml


def sieve_with_gdal(src_path, threshold):
    """The reference the polygons are checked against: GDAL's sieve run directly, repeated to a fixed
    point, as a numpy array."""
    from osgeo import gdal

    mem = gdal.GetDriverByName("MEM")
    src = gdal.Open(src_path)
    cur = mem.CreateCopy("", src)
    for _ in range(8):
        out = mem.Create("", src.RasterXSize, src.RasterYSize, 1, gdal.GDT_Byte)
        b = cur.GetRasterBand(1)
        gdal.SieveFilter(b, b, out.GetRasterBand(1), threshold, 4)
        same = np.array_equal(out.ReadAsArray(), cur.ReadAsArray())
        cur = out
        if same:
            break
    return cur.ReadAsArray()


@pytest.fixture
def noisy(tmp_path):
    """Three class blocks with salt-and-pepper noise (clusters of small regions) and a nodata border."""
    rng = np.random.default_rng(5)
    a = np.ones((300, 330), np.uint8)
    a[:, 120:] = 2
    a[150:, 200:] = 3
    flip = rng.random(a.shape) < 0.08
    a[flip] = rng.integers(1, 4, flip.sum())
    a[50:56, 30:36] = 2  # 36 px: above the MMU of the tests, stays a polygon
    a[200:204, 250:254] = 1  # 16 px: below it, merged into its neighbour
    a[:4] = 0
    a[:, -3:] = 0
    return class_raster(tmp_path / "noisy.tif", a), a


def test_polygon_areas_equal_the_sieved_raster_and_respect_the_mmu(noisy, tmp_path):
    path, a = noisy
    out = tmp_path / "poly.gpkg"
    res = vectorize(path, str(out), mmu="0.2ha")  # 20 px
    assert res.threshold_pixels == 20 and res.mmu_ha == pytest.approx(0.2)
    rows, _ = polygons(out)
    assert len(rows) == res.polygons > 3
    assert any(r["class_id"] == 2 and r["pixels"] >= 36 and r["area_m2"] < 1e5 for r in rows)  # the 6 x 6 square
    sieved = sieve_with_gdal(path, 20)
    for value in (1, 2, 3):
        got = sum(r["area_m2"] for r in rows if r["class_id"] == value)
        n_poly = sum(r["class_id"] == value for r in rows)
        expected = (sieved == value).sum() * 100.0
        assert abs(got - expected) <= 100.0 * n_poly, value  # within one pixel per polygon
        assert sum(r["area_ha"] for r in rows if r["class_id"] == value) == pytest.approx(got / 1e4)
    assert min(r["area_ha"] for r in rows) >= 0.2 and min(r["pixels"] for r in rows) >= 20
    assert {r["class_name"] for r in rows} == {"water", "crop", "tree"}
    assert res.dropped == 0
    # no MMU: every 4-connected region is a polygon, and the areas are the raster's exactly
    res1 = vectorize(path, str(tmp_path / "all.gpkg"))
    rows1, _ = polygons(tmp_path / "all.gpkg")
    assert res1.polygons > 10 * res.polygons
    assert sum(r["pixels"] for r in rows1) == int((a > 0).sum())


def test_a_region_across_tiles_and_strips_is_one_polygon(tmp_path):
    """A snake of class 3 crossing the 256 px tile seams of the GeoTIFF (and the strips the confidence
    pass reads, with a small budget) comes out as one polygon with its hole."""
    a = np.ones((700, 600), np.uint8)
    a[100:110, 20:580] = 3  # across the vertical tile seams at 256 and 512
    a[100:650, 570:580] = 3  # down across the horizontal seams
    a[640:650, 300:580] = 3
    a[300:400, 200:400] = 3  # a separate block with a hole of class 2 crossing the seam at 256
    a[330:370, 240:280] = 2
    path = class_raster(tmp_path / "snake.tif", a)
    with rasterio.open(path) as ds:
        assert ds.block_shapes[0] == (256, 256)
    conf = tmp_path / "conf.tif"
    with rasterio.open(path) as src:
        profile = dict(src.profile, dtype="float32", nodata=0)
    values = np.where(a == 3, 0.9, 0.6).astype(np.float32)
    values[300:400, 200:400] = np.where(a[300:400, 200:400] == 3, 0.5, 0.6)
    with rasterio.open(conf, "w", **{k: v for k, v in profile.items() if k != "photometric"}) as ds:
        ds.write(values, 1)
    out = tmp_path / "snake.gpkg"
    vectorize(path, str(out), confidence=str(conf), budget=64 * 2**20)
    rows, qml = polygons(out)
    threes = sorted((r for r in rows if r["class_id"] == 3), key=lambda r: r["pixels"])
    assert [r["pixels"] for r in threes] == [560 * 10 + 540 * 10 + 270 * 10, 200 * 100 - 40 * 40]
    assert threes[0]["confidence"] == pytest.approx(0.9, abs=1e-6)  # the snake
    assert threes[1]["confidence"] == pytest.approx(0.5, abs=1e-6)  # the block with the hole
    assert [r["confidence"] for r in rows if r["class_id"] == 2] == [pytest.approx(0.6, abs=1e-6)]
    from osgeo import ogr

    ds = ogr.Open(str(out))  # kept: a layer outlives its data source only in C, not in osgeo
    hole_block = ds.GetLayerByName("classes")
    hole_block.SetAttributeFilter(f"pixels = {200 * 100 - 40 * 40}")
    assert next(iter(hole_block)).GetGeometryRef().GetGeometryCount() == 2  # outer ring + the hole
    ds = None
    # styled in the classes' colours: QGIS's default style inside the GeoPackage
    assert qml and 'type="categorizedSymbol"' in qml[0] and 'attr="class_id"' in qml[0]
    assert "227,26,28,255" in qml[0] and 'label="tree"' in qml[0]


def test_islands_below_the_mmu_in_nodata_are_left_out_and_counted(tmp_path):
    a = np.zeros((60, 60), np.uint8)
    a[5:45, 5:45] = 1
    a[50:53, 50:53] = 2  # 9 px alone in nodata: nothing to merge into
    path = class_raster(tmp_path / "island.tif", a)
    res = vectorize(path, str(tmp_path / "i.gpkg"), mmu="12px")
    rows, _ = polygons(tmp_path / "i.gpkg")
    assert [r["class_id"] for r in rows] == [1] and res.dropped == 1 and res.dropped_pixels == 9


def test_mmu_units_and_refusals():
    assert threshold_pixels("0.5ha", 0.01) == 50
    assert threshold_pixels("5000m2", 0.01) == 50 and threshold_pixels("0.005km2", 0.01) == 50
    assert threshold_pixels("0.5", 0.09) == 6  # ceil: no kept polygon below the MMU
    assert threshold_pixels("7px", None) == 7
    with pytest.raises(MMUError, match="smaller than one pixel"):
        threshold_pixels("50m2", 0.01)
    with pytest.raises(MMUError, match="no projected CRS"):
        threshold_pixels("1ha", None)
    with pytest.raises(MMUError, match="is not an area"):
        threshold_pixels("half a hectare", 0.01)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["mmu_below_pixel", "geographic", "other_grid", "exists", "bad_mmu"])
def test_cli_bad_input_is_one_line_and_writes_nothing(case, noisy, tmp_path):
    path, a = noisy
    out = tmp_path / "out.gpkg"
    args = [path, "-o", out, "--mmu", "0.5ha"]
    if case == "mmu_below_pixel":
        args[-1] = "0.001ha"
        expect = "the minimum mapping unit 0.001 ha is smaller than one pixel (0.01 ha)"
    elif case == "geographic":
        args[0] = class_raster(tmp_path / "geo.tif", a, crs="EPSG:4326", res=0.0001)
        expect = "no projected CRS"
    elif case == "other_grid":
        conf = tmp_path / "conf.tif"
        with rasterio.open(
            conf,
            "w",
            driver="GTiff",
            width=10,
            height=10,
            count=1,
            dtype="float32",
            crs="EPSG:32633",
            transform=from_origin(500_000, 5_800_000, 10, 10),
        ) as ds:
            ds.write(np.ones((1, 10, 10), np.float32))
        args += ["--confidence", conf]
        expect = "is not on the class raster's grid"
    elif case == "exists":
        out.write_bytes(b"mine")
        expect = "already exists"
    else:
        args[-1] = "big"
        expect = "is not an area"
    proc = run_cli("vectorize", *args)
    assert proc.returncode == 2, proc.stderr
    assert expect in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert (out.read_bytes() == b"mine") if case == "exists" else not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".sx-")] == []


@pytest.mark.slow
def test_cli_vectorize_prints_what_it_wrote(noisy, tmp_path):
    path, _ = noisy
    proc = run_cli("vectorize", path, "-o", tmp_path / "v.gpkg", "--mmu", "0.2ha")
    assert proc.returncode == 0, proc.stderr
    assert "polygons, minimum mapping unit 20 px (0.2 ha)" in proc.stdout


@pytest.mark.slow
def test_segment_writes_polygons_with_mmu_and_confidence(make_checkpoint, tmp_path):
    """`segment --vector --mmu`: polygons of the class raster it wrote, each with a mean confidence (a
    temporary confidence raster is used and removed); an MMU below a pixel is refused before anything."""
    ckpt = make_checkpoint()
    raster = tmp_path / "scene.tif"
    rng = np.random.default_rng(0)
    with rasterio.open(
        raster,
        "w",
        driver="GTiff",
        width=72,
        height=64,
        count=3,
        dtype="int16",
        crs="EPSG:32633",
        transform=from_origin(500_000, 5_800_000, 10, 10),
    ) as ds:
        ds.write(rng.integers(0, 3000, (3, 64, 72)).astype(np.int16))
        for i, w in enumerate((480.0, 560.0, 660.0), 1):
            ds.update_tags(i, wavelength=str(w), wavelength_units="Nanometers", fwhm="20")
    out, vec = tmp_path / "classes.tif", tmp_path / "classes.gpkg"
    bad = run_cli("segment", raster, "-c", ckpt, "-o", out, "--vector", vec, "--mmu", "10m2", "--quiet")
    assert bad.returncode == 2 and "smaller than one pixel" in bad.stderr
    assert not out.exists() and not vec.exists()
    proc = run_cli(
        "segment", raster, "-c", ckpt, "-o", out, "--vector", vec, "--mmu", "0.05ha", "--quiet", "--device", "cpu"
    )
    assert proc.returncode == 0, proc.stderr
    rows, qml = polygons(vec)
    with rasterio.open(out) as ds:
        classified = int((ds.read(1) > 0).sum())
    assert sum(r["pixels"] for r in rows) == classified and min(r["pixels"] for r in rows) >= 5
    assert all(0 < r["confidence"] <= 1 for r in rows) and qml
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["scene.tif", "classes.tif", "classes.qml", "classes.gpkg", "model"]
    ), os.listdir(tmp_path)


@pytest.mark.slow
def test_large_raster_is_vectorized_without_holding_it(tmp_path):
    """10 000 x 10 000 px (a sparse GeoTIFF, 100 MB as an array): the peak memory of vectorize grows by
    less than its 64 MiB budget, and a 5 000 px tall region across 20 tile rows is one polygon."""
    import subprocess
    import sys

    from rasterio.windows import Window

    path = tmp_path / "big.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=10_000,
        height=10_000,
        count=1,
        dtype="uint8",
        nodata=0,
        crs="EPSG:32633",
        transform=from_origin(500_000, 5_800_000, 10, 10),
        tiled=True,
        blockxsize=256,
        blockysize=256,
        compress="deflate",
        sparse_ok=True,
    ) as ds:
        block = np.ones((5_000, 512), np.uint8)
        block[100:110] = 2
        block[3_000:3_003, 100:103] = 3  # 9 px: below the MMU, merged
        ds.write(block, 1, window=Window(4_744, 2_500, 512, 5_000))
    out = tmp_path / "big.gpkg"
    code = (
        "import resource; from spectralx.vectorize import vectorize; "
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; "
        f"r = vectorize({str(path)!r}, {str(out)!r}, mmu='0.1ha', budget=64 * 2 ** 20); "
        "print('GROWTH_KB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before, r.polygons)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    growth_kb, count = map(int, proc.stdout.split("GROWTH_KB")[1].split())
    assert growth_kb / 1024 < 64, f"peak memory grew by {growth_kb / 1024:.0f} MiB"
    rows, _ = polygons(out)
    assert count == 3 and sorted(r["pixels"] for r in rows) == [512 * 10, 100 * 512, 4_890 * 512]
