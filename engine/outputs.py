"""Georeferenced outputs: the class raster, the confidence raster and the QGIS style beside them.

Class rasters are tiled DEFLATE GeoTIFFs (BigTIFF when they might pass 4 GB), uint8, value 0 reserved
for nodata/unclassified, with the colour table and the class names embedded (GDAL band metadata in
the TIFF, so they travel with the file). GeoTIFF cannot hold GDAL category names (GDAL would put them
in an .aux.xml sidecar), so QGIS gets its legend from the `.qml` written beside the raster.
Rows arrive in strips of arbitrary height; the inference block writer
(`spectralx.inference.writer`) regroups them into whole block rows so every compressed block is
written exactly once (rewriting a DEFLATE block would bloat the file).
"""

from __future__ import annotations

import json
import os
from typing import Dict, Iterable, Optional, Sequence, Tuple
from xml.sax.saxutils import quoteattr

import rasterio

from .errors import RasterError
from .raster_io import open_raster

BLOCK = 256  # GeoTIFF tile side; also the row granularity of the block writer
NODATA = 0  # class value reserved for nodata / unclassified
CONFIDENCE_FORMATS = ("float32", "percent")


def _hex_rgb(color: str) -> Tuple[int, int, int]:
    c = color.lstrip("#")
    if len(c) != 6:
        raise RasterError(f"class colour '{color}' is not #rrggbb")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


def _check_classes(classes: Sequence) -> None:
    for c in classes:
        if not 1 <= int(c.value) <= 255:
            raise RasterError(
                f"class '{c.name}' has value {c.value}; class rasters hold 1..255 " "(0 is reserved for nodata)"
            )


def _common_profile(width: int, height: int, crs, transform) -> dict:
    return dict(
        driver="GTiff",
        width=width,
        height=height,
        count=1,
        crs=crs,
        transform=transform,
        tiled=True,
        blockxsize=BLOCK,
        blockysize=BLOCK,
        compress="deflate",
        BIGTIFF="IF_SAFER",
    )


def class_raster_profile(width: int, height: int, crs, transform) -> dict:
    """rasterio profile of a class raster (uint8, nodata 0, tiled, DEFLATE, BigTIFF if needed)."""
    return dict(_common_profile(width, height, crs, transform), dtype="uint8", nodata=NODATA)


def confidence_profile(width: int, height: int, crs, transform, fmt: str = "float32") -> dict:
    """Max class probability: float32 0..1, or uint8 percent 1..100; 0 is nodata in both."""
    if fmt not in CONFIDENCE_FORMATS:
        raise RasterError(f"confidence format must be one of {', '.join(CONFIDENCE_FORMATS)}, not '{fmt}'")
    dtype = "float32" if fmt == "float32" else "uint8"
    extra = {"predictor": 3} if dtype == "float32" else {}
    return dict(_common_profile(width, height, crs, transform), dtype=dtype, nodata=0, **extra)


def colormap(classes: Iterable) -> Dict[int, Tuple[int, int, int, int]]:
    cmap = {NODATA: (0, 0, 0, 0)}
    for c in classes:
        cmap[int(c.value)] = (*_hex_rgb(c.color), 255)
    return cmap


def class_tags(classes: Sequence) -> Dict[str, str]:
    """Band metadata naming each class: CLASS_<value>=name, and all classes as JSON."""
    tags = {f"CLASS_{int(c.value)}": str(c.name) for c in classes}
    tags["CLASSES"] = json.dumps([{"value": int(c.value), "name": c.name, "color": c.color} for c in classes])
    tags["NODATA_CLASS"] = "0 = nodata / unclassified"
    return tags


def read_class_names(path: str) -> Dict[int, str]:
    """Class names embedded by `open_class_raster` (value -> name)."""
    with open_raster(path, "class raster") as ds:
        tags = ds.tags(1)
    return {int(k[6:]): v for k, v in tags.items() if k.startswith("CLASS_") and k[6:].isdigit()}


def open_class_raster(
    path: str, width: int, height: int, crs, transform, classes: Sequence, tags: Optional[Dict[str, str]] = None
):
    """Create the class raster with colour table and class names; returns the open dataset."""
    _check_classes(classes)
    ds = rasterio.open(path, "w", **class_raster_profile(width, height, crs, transform))
    ds.write_colormap(1, colormap(classes))
    ds.set_band_description(1, "class")
    ds.update_tags(1, **class_tags(classes))
    if tags:
        ds.update_tags(**tags)
    return ds


def open_confidence_raster(
    path: str, width: int, height: int, crs, transform, fmt: str = "float32", tags: Optional[Dict[str, str]] = None
):
    ds = rasterio.open(path, "w", **confidence_profile(width, height, crs, transform, fmt))
    ds.set_band_description(1, "confidence (max class probability" + (", %)" if fmt == "percent" else ")"))
    if tags:
        ds.update_tags(**tags)
    return ds


def qml_text(classes: Sequence, nodata_transparent: bool = True) -> str:
    """A QGIS 3 paletted-renderer style listing each class value, colour and label."""
    entries = "\n".join(
        f'        <paletteEntry value="{int(c.value)}" color={quoteattr(c.color.lower())} '
        f'alpha="255" label={quoteattr(str(c.name))}/>'
        for c in classes
    )
    return f"""<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.22.0-Białowieża" styleCategories="AllStyleCategories" hasScaleBasedVisibilityFlag="0" minScale="1e+08" maxScale="0">
  <pipe>
    <provider>
      <resampling enabled="false" zoomedInResamplingMethod="nearestNeighbour" zoomedOutResamplingMethod="nearestNeighbour" maxOversampling="2"/>
    </provider>
    <rasterrenderer type="paletted" band="1" opacity="1" alphaBand="-1" nodataColor="">
      <rasterTransparency/>
      <minMaxOrigin>
        <limits>None</limits>
        <extent>WholeRaster</extent>
        <statAccuracy>Estimated</statAccuracy>
        <cumulativeCutLower>0.02</cumulativeCutLower>
        <cumulativeCutUpper>0.98</cumulativeCutUpper>
        <stdDevFactor>2</stdDevFactor>
      </minMaxOrigin>
      <colorPalette>
{entries}
      </colorPalette>
    </rasterrenderer>
    <brightnesscontrast brightness="0" contrast="0" gamma="1"/>
    <huesaturation saturation="0" grayscaleMode="0" colorizeOn="0" colorizeRed="255" colorizeGreen="128" colorizeBlue="128" colorizeStrength="100"/>
    <rasterresampler maxOversampling="2"/>
  </pipe>
  <blendMode>0</blendMode>
</qgis>
"""


def write_qml(path: str, classes: Sequence) -> str:
    """Write the paletted style (UTF-8) and return its path."""
    _check_classes(classes)
    from .fileio import write_text

    write_text(path, qml_text(classes))  # atomic: never half a style beside a raster
    return path


def style_path(raster_path: str) -> str:
    """QGIS loads `<name>.qml` beside `<name>.tif` as the layer's default style."""
    return os.path.splitext(raster_path)[0] + ".qml"


__all__ = [
    "BLOCK",
    "NODATA",
    "CONFIDENCE_FORMATS",
    "class_raster_profile",
    "confidence_profile",
    "colormap",
    "class_tags",
    "read_class_names",
    "open_class_raster",
    "open_confidence_raster",
    "qml_text",
    "write_qml",
    "style_path",
]
