"""Reading a class raster in row strips: per-class pixel counts, pixel area, class names.

A class raster is one band of whole numbers 1..255 (0 and the raster's nodata value are "no class",
as in every SpectralX class raster). It is read in full-width strips sized by a memory budget, so a
20 000 x 20 000 map costs a few strips, never the whole array.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterator, Optional, Tuple

import numpy as np

from .errors import RasterError
from .raster_io import open_raster

MAX_VALUE = 255
BYTES_PER_PIXEL = 24  # one strip: the values, their mask, a comparison and int64 positions of one class


@dataclass
class ClassRaster:
    """What the sampling and area code need to know about a class raster."""

    path: str
    width: int
    height: int
    crs: object
    transform: object
    nodata: Optional[float]
    names: Dict[int, str] = field(default_factory=dict)
    colours: Dict[int, str] = field(default_factory=dict)

    @property
    def pixel_area_ha(self) -> Optional[float]:
        return pixel_area_ha(self.crs, self.transform)

    def name(self, value: int) -> str:
        return self.names.get(int(value), str(int(value)))


def pixel_area_ha(crs, transform) -> Optional[float]:
    """Hectares per pixel, None in a geographic CRS (degrees: pixel areas vary with latitude) or none."""
    if crs is None or not getattr(crs, "is_projected", False):
        return None
    try:
        unit = float(crs.linear_units_factor[1])  # metres per CRS unit
    except Exception:
        unit = 1.0
    t = transform
    return abs(t.a * t.e - t.b * t.d) * unit * unit / 10_000.0


def class_metadata(ds) -> Tuple[Dict[int, str], Dict[int, str]]:
    """(names, colours) per class value: the JSON class table or CLASS_<value> tags that SpectralX class
    rasters carry, the colour table, else a .qml style beside the file. (spectralx.training.labels reads
    more forms, but importing it loads torch: seconds and 200 MB for a sample or polygons.)"""
    import json
    import os

    names: Dict[int, str] = {}
    colours: Dict[int, str] = {}
    try:
        colours = {int(v): "#%02x%02x%02x" % tuple(c[:3]) for v, c in ds.colormap(1).items()}
    except Exception:  # no colour table
        pass
    tags = dict(ds.tags())
    tags.update(ds.tags(1))
    for key in ("spectralx_classes", "SPECTRALX_CLASSES", "CLASSES", "classes"):
        try:
            table = json.loads(tags[key])
        except (KeyError, TypeError, ValueError):
            continue
        table = table.get("classes", table) if isinstance(table, dict) else table
        for item in table if isinstance(table, list) else []:
            if isinstance(item, dict) and "value" in item:
                names[int(item["value"])] = str(item.get("name", item["value"]))
                if item.get("color"):
                    colours[int(item["value"])] = str(item["color"])
        if names:
            break
    if not names:
        names = {int(k[6:]): str(v) for k, v in tags.items() if k.startswith("CLASS_") and k[6:].isdigit()}
    qml = os.path.splitext(ds.name)[0] + ".qml"
    if not names and os.path.isfile(qml):
        import xml.etree.ElementTree as ET

        try:
            for e in ET.parse(qml).iter("paletteEntry"):
                v = int(float(e.get("value")))
                names[v] = e.get("label") or str(v)
                if e.get("color"):
                    colours[v] = e.get("color")[:7]
        except (ET.ParseError, TypeError, ValueError):
            pass
    return names, colours


def require_class_raster(ds, path: str, what: str) -> None:
    """A class raster is one band of class values: a multi-band image (e.g. the input scene given by
    mistake) or complex pixels would otherwise be read on band 1 as if they were classes."""
    if ds.count != 1:
        raise RasterError(
            f"the {what} {path} has {ds.count} bands; a class raster has one band of class "
            "values (e.g. the output of spectralx segment)"
        )
    dtype = ds.dtypes[0]
    if dtype.startswith("complex"):
        raise RasterError(
            f"the {what} {path} holds complex values ({dtype}); a class raster holds " "whole-number class values"
        )


def describe(path: str, what: str = "class raster") -> ClassRaster:
    """Open and check a class raster (one band, whole numbers); one-line errors otherwise."""
    with open_raster(path, what) as ds:
        require_class_raster(ds, path, what)
        names, colours = class_metadata(ds)
        return ClassRaster(
            path,
            ds.width,
            ds.height,
            ds.crs,
            ds.transform,
            ds.nodata,
            {int(k): v for k, v in names.items() if 0 < int(k) <= MAX_VALUE},
            colours,
        )


def strip_rows(width: int, height: int, budget: int, block_height: int = 1) -> int:
    """Rows per strip so that one strip costs at most a quarter of the budget; whole GDAL blocks
    where that fits (each block is then decompressed once)."""
    rows = max(1, int(budget // 4 // (BYTES_PER_PIXEL * max(1, width))))
    if block_height > 1 and rows >= block_height:
        rows = rows // block_height * block_height
    return min(rows, height)


def class_values(arr, nodata: Optional[float], path: str) -> np.ndarray:
    """A strip as uint8 class values, 0 where there is no class; values that are no class are an error."""
    data = np.ma.filled(arr, 0) if np.ma.isMaskedArray(arr) else np.asarray(arr)
    if nodata is not None and not (isinstance(nodata, float) and np.isnan(nodata)):
        data = np.where(data == nodata, 0, data)
    if data.dtype == np.uint8:
        return data
    if data.dtype.kind == "f":
        data = np.where(np.isfinite(data), data, 0)
        if np.any(np.mod(data, 1) != 0):
            raise RasterError(
                f"the class raster {path} holds non-integer values; give a class raster "
                "(whole numbers 1..255, 0 = nodata)"
            )
    low, high = data.min(initial=0), data.max(initial=0)
    if low < 0 or high > MAX_VALUE:
        raise RasterError(
            f"the class raster {path} holds the value {int(low if low < 0 else high)}; class "
            f"values must be 1..{MAX_VALUE} (0 = nodata)"
        )
    return data.astype(np.uint8)


def strips(path: str, budget: int, what: str = "class raster") -> Iterator[Tuple[int, np.ndarray]]:
    """(first row, uint8 strip) over the whole raster, top to bottom, same order every time."""
    import rasterio
    from rasterio.windows import Window

    cache = max(100_001, min(256 * 2**20, budget // 8))  # GDAL's block cache (> 100000: bytes)
    with rasterio.Env(GDAL_CACHEMAX=cache):
        with open_raster(path, what) as ds:
            block_h = ds.block_shapes[0][0] if ds.block_shapes else 1
            rows = strip_rows(ds.width, ds.height, budget, block_h)
            for r0 in range(0, ds.height, rows):
                h = min(rows, ds.height - r0)
                arr = ds.read(1, window=Window(0, r0, ds.width, h), masked=True)
                yield r0, class_values(arr, ds.nodata, path)


def count_classes(path: str, budget: int) -> np.ndarray:
    """Pixels per class value (index 0..255; index 0 = no class), streaming."""
    counts = np.zeros(MAX_VALUE + 1, np.int64)
    for _, strip in strips(path, budget):
        counts += np.bincount(strip.ravel(), minlength=MAX_VALUE + 1)
    return counts


__all__ = [
    "ClassRaster",
    "pixel_area_ha",
    "class_metadata",
    "describe",
    "strip_rows",
    "class_values",
    "strips",
    "count_classes",
]
