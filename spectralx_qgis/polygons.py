"""The analyst's polygons -> a label raster on the training image's grid, through QGIS and its GDAL.

Inside QGIS the plugin never opens vector files itself (no fiona): QGIS reads the layer (any provider,
memory layers, edits not yet saved, a selection or a Processing feature source), reprojects each
geometry with QGIS's own transform, and GDAL's rasterizer (the `osgeo` bindings QGIS ships) burns the
class values into a GeoTIFF on exactly the image's grid. The engine takes that raster as labels;
class names and colours travel in its `spectralx_classes` tag.

Pixels follow GDAL's rule (a pixel is labelled when its centre lies inside the polygon); a later
polygon overwrites an earlier one where they overlap. 0 means unlabelled.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Dict, List, Tuple

from qgis.core import QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsProject, QgsWkbTypes


class PolygonError(Exception):
    """The polygons cannot be used as labels (one line, in the panel's/Processing's terms)."""


@dataclass
class BurntLabels:
    path: str
    classes: List[Dict[str, Any]]  # [{"value", "name", "color"}] in value order
    used: int  # features burnt
    skipped: Dict[str, int] = field(default_factory=dict)
    labelled_pixels: int = 0


def _empty(value) -> bool:
    if value is None:
        return True
    try:
        from qgis.PyQt.QtCore import QVariant

        if isinstance(value, QVariant) and value.isNull():
            return True
    except ImportError:  # pragma: no cover
        pass
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


def _class_table(values: List[Any], engine_classes) -> Tuple[Dict[Any, int], List[Dict[str, Any]]]:
    """Text classes: values 1..K in sorted name order (the engine's rule); integer codes keep theirs."""

    def as_int(v):
        if isinstance(v, bool):
            return None
        if isinstance(v, int):
            return v
        if isinstance(v, float) and v.is_integer():
            return int(v)
        text = str(v).strip()
        return int(text) if text.lstrip("-").isdigit() else None

    codes = [as_int(v) for v in values]
    if values and all(c is not None for c in codes):
        table = engine_classes.table_from_values([c for c in codes if c > 0])
        lookup = {v: c for v, c in zip(values, codes)}
    else:
        table = engine_classes.table_from_names(str(v).strip() for v in values)
        by_name = {c.name: c.value for c in table}
        lookup = {v: by_name[str(v).strip()] for v in values}
    return lookup, [{"value": int(c.value), "name": c.name, "color": c.color} for c in table]


def rasterize_polygons(
    features,
    fields,
    class_field: str,
    source_crs: QgsCoordinateReferenceSystem,
    raster_path: str,
    output: str,
    engine_classes,
    what: str = "the polygon layer",
    feedback=None,
) -> BurntLabels:
    """Burn `features` (QgsFeature iterable; class in `class_field`) into `output` (GeoTIFF, uint16)
    on the grid of `raster_path`. `engine_classes`: spectralx.training.classes (the class-table rules)."""
    # Long (~85 lines) on purpose: one GDAL session (memory layer -> reprojection -> burn -> count) whose
    # handles must all be released in order before the file is read; split, each part would re-open them.
    from osgeo import gdal, ogr, osr

    index = fields.indexOf(class_field)
    if index < 0:
        names = ", ".join(f.name() for f in fields) or "(none)"
        raise PolygonError(f"the class field '{class_field}' is not in {what}; its fields are: {names}")
    image = gdal.Open(raster_path)
    if image is None:
        raise PolygonError(f"cannot open the training raster {raster_path}")
    width, height, gt, wkt = image.RasterXSize, image.RasterYSize, image.GetGeoTransform(), image.GetProjection()
    image = None
    dest_crs = QgsCoordinateReferenceSystem.fromWkt(wkt) if wkt else source_crs
    transform = None
    if source_crs.isValid() and dest_crs.isValid() and source_crs != dest_crs:
        transform = QgsCoordinateTransform(source_crs, dest_crs, QgsProject.instance())

    kept: List[Tuple[bytes, Any]] = []
    skipped: Dict[str, int] = {}

    def skip(why):
        skipped[why] = skipped.get(why, 0) + 1

    for feature in features:
        if feedback is not None and feedback.isCanceled():
            break
        geom = feature.geometry()
        value = feature.attribute(index)
        if geom is None or geom.isEmpty():
            skip("without geometry")
            continue
        if geom.type() != QgsWkbTypes.GeometryType.PolygonGeometry:
            skip("that are not polygons")
            continue
        if _empty(value):
            skip("with an empty class")
            continue
        if transform is not None:
            geom = type(geom)(geom)  # copy: never change the analyst's feature
            try:
                geom.transform(transform)
            except Exception:  # noqa: BLE001  (QgsCsException)
                skip("that cannot be reprojected")
                continue
        kept.append((bytes(geom.asWkb()), value))
    if not kept:
        detail = "; ".join(f"{n} {why}" for why, n in sorted(skipped.items()))
        raise PolygonError(
            f"{what} has no polygon with a class in '{class_field}'" + (f" ({detail})" if detail else "")
        )

    lookup, classes = _class_table([v for _, v in kept], engine_classes)
    burn = [(wkb, lookup[v]) for wkb, v in kept if lookup[v] > 0]
    if len(burn) < len(kept):
        skipped["with class value <= 0"] = len(kept) - len(burn)

    srs = osr.SpatialReference()
    if wkt:
        srs.ImportFromWkt(wkt)
    mem = ogr.GetDriverByName("Memory").CreateDataSource("labels")
    layer = mem.CreateLayer("labels", srs if wkt else None, ogr.wkbMultiPolygon)
    layer.CreateField(ogr.FieldDefn("value", ogr.OFTInteger))
    for wkb, value in burn:
        f = ogr.Feature(layer.GetLayerDefn())
        f.SetGeometry(ogr.CreateGeometryFromWkb(wkb))
        f.SetField("value", int(value))
        layer.CreateFeature(f)
    out = gdal.GetDriverByName("GTiff").Create(
        output, width, height, 1, gdal.GDT_UInt16, options=["COMPRESS=DEFLATE", "TILED=YES"]
    )
    out.SetGeoTransform(gt)
    if wkt:
        out.SetProjection(wkt)
    out.SetMetadataItem("spectralx_classes", json.dumps(classes))
    band = out.GetRasterBand(1)
    band.Fill(0)
    gdal.RasterizeLayer(out, [1], layer, options=["ATTRIBUTE=value"])
    import numpy as np

    labelled = int(np.count_nonzero(band.ReadAsArray()))
    out.FlushCache()
    out = None
    if labelled == 0:
        raise PolygonError(
            f"none of the {len(burn)} polygons of {what} covers a pixel centre of the training "
            "raster; check that they lie over it (and are larger than a pixel)"
        )
    return BurntLabels(output, classes, len(burn), skipped, labelled)
