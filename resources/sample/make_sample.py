"""Build the demo sample in resources/sample/ from the shared EnMAP Potsdam data (run once, by a developer).

The 18 EnMAP L2A tiles (32x32 px, 224 bands) are put back on the 330x200 grid of
`enmap_landcover_unstyled.tif` (file names give each tile's column/row offset) and the result is
cropped to the tiles' bounding box; pixels without a tile are nodata (-32768). Values are stored as
Int16 with the tiles' scale 0.0001 (EnMAP L2A's own encoding; the tiles hold integer values, checked
below), so nothing is lost. Band metadata (wavelength, wavelength_units, fwhm, bbl, description) is
copied from the tiles. The label raster is the scene's level-3 land-cover raster on the same crop,
with labels kept only where image data exists (0 = unlabelled elsewhere), so it matches the 18 label
tiles exactly. The class table comes from landcover_potsdam_polygon.level_3.qml.

    python resources/sample/make_sample.py [DATA_DIR]
"""

import glob
import json
import os
import re
import sys
import xml.etree.ElementTree as ET

import numpy as np
import rasterio
from rasterio.windows import Window

HERE = os.path.dirname(os.path.abspath(__file__))
NODATA = -32768
TILE = 32
IMAGE = "enmap_potsdam.tif"
LABELS = "enmap_potsdam_labels.tif"
CLASSES = "enmap_potsdam_classes.json"
SPLIT = "enmap_potsdam_labels_{}.tif"


def class_table(qml_path: str, label_values) -> list:
    """Classes (value, name, colour) from the QML's categorized renderer, values 1..n in its order."""
    root = ET.parse(qml_path).getroot()
    renderer = root.find("renderer-v2")
    colors = {}
    for sym in renderer.find("symbols"):
        rgba = next(o.get("value") for o in sym.iter("Option") if o.get("name") == "color")
        colors[sym.get("name")] = "#%02x%02x%02x" % tuple(int(v) for v in rgba.split(",")[:3])
    classes = []
    for cat in renderer.find("categories"):
        if cat.get("value"):
            classes.append({"value": len(classes) + 1, "name": cat.get("label"), "color": colors[cat.get("symbol")]})
    assert [c["name"] for c in classes] == ["roof", "pavement", "low vegetation", "tree", "soil", "water"], classes
    assert set(int(v) for v in label_values) <= {0} | {c["value"] for c in classes}
    return classes


def recompress(tmp: str, path: str) -> None:
    """Rewrite with the system GDAL's DEFLATE (about 20 % smaller here than rasterio's bundled GDAL's)."""
    opts = ["COMPRESS=DEFLATE", "PREDICTOR=2", "ZLEVEL=9", "TILED=YES", f"BLOCKXSIZE={TILE}", f"BLOCKYSIZE={TILE}"]
    try:
        from osgeo import gdal

        gdal.UseExceptions()
        gdal.Translate(path, tmp, creationOptions=opts)
        os.remove(tmp)
    except ImportError:
        os.replace(tmp, path)
    for aux in (path + ".aux.xml", tmp + ".aux.xml"):
        if os.path.exists(aux):
            os.remove(aux)


def main(data: str) -> None:
    src_dir = os.path.join(data, "enmap_potsdam")
    with rasterio.open(os.path.join(src_dir, "enmap_landcover_unstyled.tif")) as ref:
        grid_h, grid_w, transform, crs = ref.height, ref.width, ref.transform, ref.crs
        full_labels = ref.read(1)
    tiles = []
    for f in sorted(glob.glob(os.path.join(src_dir, "images", "enmap_potsdam_tile_*.tif"))):
        x, y = map(int, re.search(r"_(\d+)_(\d+)\.tif$", f).groups())  # column, row offsets
        tiles.append((f, x, y))
    c0, r0 = min(t[1] for t in tiles), min(t[2] for t in tiles)
    c1, r1 = max(t[1] for t in tiles) + TILE, max(t[2] for t in tiles) + TILE
    assert 0 <= c0 < c1 <= grid_w and 0 <= r0 < r1 <= grid_h
    win = Window(c0, r0, c1 - c0, r1 - r0)
    out_transform = rasterio.windows.transform(win, transform)

    with rasterio.open(tiles[0][0]) as first:
        count, scales, offsets = first.count, first.scales, first.offsets
        band_tags = [first.tags(i + 1) for i in range(count)]
        descriptions = first.descriptions
        ds_tags = first.tags()
    image = np.full((count, r1 - r0, c1 - c0), NODATA, np.int16)
    has_data = np.zeros((r1 - r0, c1 - c0), bool)
    for f, x, y in tiles:
        with rasterio.open(f) as src:
            assert src.count == count and src.crs == crs and src.scales == scales
            # the tile's georeference must agree with its name
            assert abs(src.transform.c - (transform.c + x * transform.a)) < 1e-6
            assert abs(src.transform.f - (transform.f + y * transform.e)) < 1e-6
            a = src.read()
        valid = a != NODATA
        assert np.array_equal(a[valid], np.round(a[valid])) and a[valid].min() > NODATA and a[valid].max() < 32768
        image[:, y - r0 : y - r0 + TILE, x - c0 : x - c0 + TILE] = np.where(valid, a, NODATA).astype(np.int16)
        has_data[y - r0 : y - r0 + TILE, x - c0 : x - c0 + TILE] = True

    profile = dict(
        driver="GTiff",
        width=c1 - c0,
        height=r1 - r0,
        count=count,
        dtype="int16",
        nodata=NODATA,
        crs=crs,
        transform=out_transform,
        tiled=True,
        blockxsize=TILE,
        blockysize=TILE,
        compress="deflate",
        predictor=2,
        zlevel=9,
        interleave="band",
    )
    image_path = os.path.join(HERE, IMAGE)
    with rasterio.open(image_path + ".tmp.tif", "w", **profile) as dst:
        # metadata before pixels: GDAL then writes each compressed block once (no dead space)
        dst.update_tags(
            **ds_tags,
            source="EnMAP L2A ENMAP01-____L2A-DT0000001867_20220724T104526Z (c) DLR, "
            "via EnMAP-Box test data (GPL-3.0); 18 tiles of 32x32 px on the scene grid",
        )
        dst.scales = scales
        dst.offsets = offsets
        for i in range(count):
            dst.update_tags(i + 1, **band_tags[i])
            if descriptions[i]:
                dst.set_band_description(i + 1, descriptions[i])
        dst.write(image)
    recompress(image_path + ".tmp.tif", image_path)

    labels = full_labels[r0:r1, c0:c1].astype(np.uint8)
    labels[~has_data] = 0
    classes = class_table(os.path.join(src_dir, "landcover_potsdam_polygon.level_3.qml"), np.unique(labels))
    # labels must agree with the label tiles exactly
    for f, x, y in tiles:
        with rasterio.open(f.replace(os.sep + "images" + os.sep, os.sep + "labels" + os.sep)) as lt:
            assert np.array_equal(lt.read(1).astype(np.uint8), labels[y - r0 : y - r0 + TILE, x - c0 : x - c0 + TILE])
    lprofile = dict(
        driver="GTiff",
        width=c1 - c0,
        height=r1 - r0,
        count=1,
        dtype="uint8",
        nodata=None,
        crs=crs,
        transform=out_transform,
        compress="deflate",
        zlevel=9,
    )
    with rasterio.open(os.path.join(HERE, LABELS), "w", **lprofile) as dst:
        dst.write(labels, 1)
        dst.write_colormap(
            1,
            {
                0: (0, 0, 0, 0),
                **{c["value"]: tuple(int(c["color"][i : i + 2], 16) for i in (1, 3, 5)) + (255,) for c in classes},
            },
        )
        # the same class tags as SpectralX's own class rasters (spectralx.outputs.class_tags)
        dst.update_tags(
            1,
            CLASSES=json.dumps(classes),
            NODATA_CLASS="0 = unlabelled",
            **{f"CLASS_{c['value']}": c["name"] for c in classes},
        )
        dst.update_tags(
            source="EnMAP-Box test data (GPL-3.0); labels from aerial imagery, GeoBasis-DE/LGB, " "dl-de/by-2-0"
        )
        dst.set_band_description(1, "land cover (level 3)")
    # the dataset's own 14/2/2 tile split, as label rasters on the same grid (training on the train
    # tiles and validating on the validation tiles keeps whole 32x32 tiles apart: no leakage)
    for part in ("train", "validation", "test"):
        with open(os.path.join(src_dir, f"{part}_files.csv")) as f:
            names = [line.split(",")[0].strip() for line in f.read().splitlines()[1:] if line.strip()]
        keep = np.zeros_like(has_data)
        for name in names:
            x, y = map(int, re.search(r"_(\d+)_(\d+)\.tif$", name).groups())
            keep[y - r0 : y - r0 + TILE, x - c0 : x - c0 + TILE] = True
        part_labels = np.where(keep, labels, 0).astype(np.uint8)
        with rasterio.open(os.path.join(HERE, SPLIT.format(part)), "w", **lprofile) as dst:
            dst.write(part_labels, 1)
            dst.write_colormap(
                1,
                {
                    0: (0, 0, 0, 0),
                    **{c["value"]: tuple(int(c["color"][i : i + 2], 16) for i in (1, 3, 5)) + (255,) for c in classes},
                },
            )
            dst.update_tags(
                1,
                CLASSES=json.dumps(classes),
                NODATA_CLASS="0 = unlabelled",
                **{f"CLASS_{c['value']}": c["name"] for c in classes},
            )
            dst.update_tags(split=f"{part} tiles of the EnMAP-Box Potsdam split: {', '.join(names)}")
            dst.set_band_description(1, f"land cover (level 3), {part} tiles only")
        print(f"{SPLIT.format(part)}: {len(names)} tiles, {(part_labels > 0).sum()} labelled pixels")
    with open(os.path.join(HERE, CLASSES), "w") as f:
        json.dump(classes, f, indent=1)
        f.write("\n")
    for name in (IMAGE, LABELS, CLASSES):
        print(f"{name}: {os.path.getsize(os.path.join(HERE, name)) / 1e6:.2f} MB")
    print(
        f"crop: columns {c0}..{c1}, rows {r0}..{r1} of the {grid_w}x{grid_h} scene grid; "
        f"{has_data.sum()} image pixels, {(labels > 0).sum()} labelled"
    )


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "..", "..", "shared", "data"))
