"""Class/confidence GeoTIFFs and the QGIS style (spectralx.outputs)."""

from __future__ import annotations

import json
import shutil
import subprocess
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from spectralx.checkpoint import ClassInfo
from spectralx.errors import RasterError
from spectralx.inference.writer import BlockWindowWriter
from spectralx.outputs import (
    class_raster_profile,
    open_class_raster,
    open_confidence_raster,
    qml_text,
    read_class_names,
    style_path,
    write_qml,
)

CLASSES = [
    ClassInfo(1, "water", "#1F78B4"),
    ClassInfo(2, "crop & <grass>", "#33a02c"),
    ClassInfo(7, "Wald \"Nord\"", "#e31a1c"),
]
T = from_origin(400000.0, 5700000.0, 20.0, 20.0)


def write_class_raster(path, data):
    h, w = data.shape
    ds = open_class_raster(str(path), w, h, "EPSG:32633", T, CLASSES, tags={"SPECTRALX_SOURCE": "x.tif"})
    writer = BlockWindowWriter(ds, 0, 0, w, block_rows=256)
    row = 0
    for n in (37, 100, 1, 300, h):  # odd strip heights, regrouped into block rows
        n = min(n, h - row)
        if n <= 0:
            break
        writer.write(row, data[row : row + n])
        row += n
    writer.flush()
    ds.close()


def test_class_raster_is_tiled_compressed_with_colours_and_names(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.choice(np.array([0, 1, 2, 7], np.uint8), size=(600, 300))
    path = tmp_path / "cls.tif"
    write_class_raster(path, data)
    with rasterio.open(path) as ds:
        np.testing.assert_array_equal(ds.read(1), data)
        assert ds.profile["tiled"] and ds.profile["blockxsize"] == 256
        assert ds.compression.name.lower() == "deflate"
        assert ds.nodata == 0 and ds.dtypes[0] == "uint8"
        assert (ds.crs, ds.transform) == ("EPSG:32633", T)
        cmap = ds.colormap(1)
        assert cmap[1] == (0x1F, 0x78, 0xB4, 255) and cmap[7] == (0xE3, 0x1A, 0x1C, 255) and cmap[0][3] == 0
        assert ds.descriptions[0] == "class"
        assert json.loads(ds.tags(1)["CLASSES"])[2] == {"value": 7, "name": 'Wald "Nord"', "color": "#e31a1c"}
        assert ds.tags()["SPECTRALX_SOURCE"] == "x.tif"
    assert read_class_names(str(path)) == {1: "water", 2: "crop & <grass>", 7: 'Wald "Nord"'}
    assert not (tmp_path / "cls.tif.aux.xml").exists()  # everything is inside the TIFF


@pytest.mark.skipif(shutil.which("gdalinfo") is None, reason="gdalinfo not installed")
def test_gdal_reads_back_colour_table_and_class_names(tmp_path):
    path = tmp_path / "cls.tif"
    write_class_raster(path, np.ones((40, 50), np.uint8))
    info = json.loads(
        subprocess.run(["gdalinfo", "-json", str(path)], capture_output=True, text=True, check=True).stdout
    )
    band = info["bands"][0]
    assert band["colorInterpretation"] == "Palette"
    entries = band["colorTable"]["entries"]
    assert entries[2] == [0x33, 0xA0, 0x2C, 255]
    assert band["metadata"][""]["CLASS_1"] == "water"
    assert band["noDataValue"] == 0


def test_profile_uses_bigtiff_when_needed():
    p = class_raster_profile(10, 10, None, T)
    assert p["BIGTIFF"] == "IF_SAFER" and p["compress"] == "deflate" and p["tiled"]


def test_confidence_formats(tmp_path):
    for fmt, dtype in (("float32", "float32"), ("percent", "uint8")):
        ds = open_confidence_raster(str(tmp_path / f"{fmt}.tif"), 20, 10, "EPSG:4326", T, fmt)
        assert ds.dtypes[0] == dtype and ds.nodata == 0
        ds.close()
    with pytest.raises(RasterError):
        open_confidence_raster(str(tmp_path / "bad.tif"), 20, 10, None, T, "int16")


def test_block_row_writer_rejects_gaps(tmp_path):
    ds = open_class_raster(str(tmp_path / "c.tif"), 10, 10, None, T, CLASSES)
    w = BlockWindowWriter(ds, 0, 0, 10)
    w.write(0, np.ones((3, 10), np.uint8))
    with pytest.raises(RuntimeError):
        w.write(5, np.ones((3, 10), np.uint8))
    ds.close()


def test_class_values_must_fit_uint8(tmp_path):
    with pytest.raises(RasterError, match="1..255"):
        write_qml(str(tmp_path / "s.qml"), [ClassInfo(0, "nodata?", "#000000")])
    with pytest.raises(RasterError):
        open_class_raster(str(tmp_path / "c.tif"), 5, 5, None, T, [ClassInfo(300, "x", "#000000")])


def test_qml_is_a_paletted_style_with_every_class(tmp_path):
    path = write_qml(str(tmp_path / "cls.qml"), CLASSES)
    assert style_path(str(tmp_path / "cls.tif")) == path
    root = ET.parse(path).getroot()
    assert root.tag == "qgis"
    renderer = root.find("pipe/rasterrenderer")
    assert renderer.get("type") == "paletted" and renderer.get("band") == "1"
    entries = [
        (int(e.get("value")), e.get("color"), e.get("label")) for e in renderer.findall("colorPalette/paletteEntry")
    ]
    assert entries == [(1, "#1f78b4", "water"), (2, "#33a02c", "crop & <grass>"), (7, "#e31a1c", 'Wald "Nord"')]
    assert qml_text(CLASSES) == open(path, encoding="utf-8").read()


def test_qgis_loads_the_style_as_a_paletted_legend(tmp_path, qgis_app):
    """QGIS itself reads the class raster + .qml: paletted renderer with our values, colours, labels."""
    from qgis.core import QgsRasterLayer

    path = tmp_path / "cls.tif"
    write_class_raster(path, np.ones((40, 50), np.uint8))
    write_qml(style_path(str(path)), CLASSES)
    layer = QgsRasterLayer(str(path), "classes", "gdal")
    assert layer.isValid()
    message, ok = layer.loadDefaultStyle()  # the .qml beside the raster
    assert ok, message
    renderer = layer.renderer()
    assert renderer.type() == "paletted"
    classes = [(c.value, c.color.name(), c.label) for c in renderer.classes()]
    assert classes == [(1, "#1f78b4", "water"), (2, "#33a02c", "crop & <grass>"), (7, "#e31a1c", 'Wald "Nord"')]
