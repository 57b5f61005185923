"""Vector files through GDAL's own Python bindings (`osgeo`): reference points and class polygons.

Why osgeo and not fiona: the same code runs inside QGIS, which ships osgeo on the GDAL it uses and
where the plugin never loads fiona (a second GDAL in QGIS's process aborts it). Exceptions are
switched on only while our calls run, and restored after (QGIS and other plugins expect their own
setting).
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional

from .errors import LabelError, SpectralXError

SAMPLE_LAYER = "reference_sample"
SAMPLE_TAG = "SPECTRALX_SAMPLE"


def osgeo():
    """(gdal, ogr, osr), or one line saying how to get them."""
    try:
        from osgeo import gdal, ogr, osr
    except ImportError:
        raise SpectralXError(
            "vector outputs need GDAL's Python bindings (osgeo): install python3-gdal "
            "(Debian/Ubuntu) or the GDAL package matching your GDAL; QGIS ships them"
        ) from None
    return gdal, ogr, osr


@contextmanager
def gdal_exceptions() -> Iterator[tuple]:
    gdal, ogr, osr = osgeo()
    before = [m.GetUseExceptions() for m in (gdal, ogr, osr)]
    for m in (gdal, ogr, osr):
        m.UseExceptions()
    try:
        yield gdal, ogr, osr
    finally:
        for m, on in reversed(list(zip((gdal, ogr, osr), before))):  # GDAL keeps them as a stack
            if not on:
                m.DontUseExceptions()


def srs_from_wkt(wkt: Optional[str]):
    _, _, osr = osgeo()
    if not wkt:
        return None
    srs = osr.SpatialReference()
    srs.ImportFromWkt(wkt)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)  # x = easting/longitude, always
    return srs


def write_points(
    path: str,
    xs,
    ys,
    fields: Dict[str, List[Any]],
    crs_wkt: Optional[str],
    layer_name: str = SAMPLE_LAYER,
    metadata: Optional[Dict[str, str]] = None,
) -> None:
    """A GeoPackage point layer; `fields` maps name -> values (int, float, str or None for an empty
    integer field the analyst fills in)."""
    with gdal_exceptions() as (gdal, ogr, osr):
        ds = ogr.GetDriverByName("GPKG").CreateDataSource(path)
        try:
            layer = ds.CreateLayer(layer_name, srs_from_wkt(crs_wkt), ogr.wkbPoint)
            kinds = {}
            for name, values in fields.items():
                sample = next((v for v in values if v is not None), None)
                kind = (
                    ogr.OFTString
                    if isinstance(sample, str)
                    else ogr.OFTReal
                    if isinstance(sample, float)
                    else ogr.OFTInteger
                )
                layer.CreateField(ogr.FieldDefn(name, kind))
                kinds[name] = kind
            defn = layer.GetLayerDefn()
            layer.StartTransaction()
            for i in range(len(xs)):
                f = ogr.Feature(defn)
                for name, values in fields.items():
                    if values[i] is not None:
                        f.SetField(name, values[i])
                g = ogr.Geometry(ogr.wkbPoint)
                g.AddPoint_2D(float(xs[i]), float(ys[i]))
                f.SetGeometry(g)
                layer.CreateFeature(f)
            layer.CommitTransaction()
            for key, value in (metadata or {}).items():
                layer.SetMetadataItem(key, value)
        finally:
            ds = None


def write_layer_style(path: str, layer_name: str, qml: str, style_name: str = "SpectralX") -> None:
    """Store `qml` as the layer's default style inside the GeoPackage (QGIS's layer_styles table), so
    QGIS opens the layer styled without any file beside it."""
    with gdal_exceptions() as (gdal, ogr, osr):
        ds = ogr.Open(path, 1)
        try:
            table = ds.GetLayerByName("layer_styles")
            if table is None:
                table = ds.CreateLayer("layer_styles", None, ogr.wkbNone)
                for name, kind in (
                    ("f_table_catalog", ogr.OFTString),
                    ("f_table_schema", ogr.OFTString),
                    ("f_table_name", ogr.OFTString),
                    ("f_geometry_column", ogr.OFTString),
                    ("styleName", ogr.OFTString),
                    ("styleQML", ogr.OFTString),
                    ("styleSLD", ogr.OFTString),
                    ("useAsDefault", ogr.OFTInteger),
                    ("description", ogr.OFTString),
                    ("owner", ogr.OFTString),
                    ("ui", ogr.OFTString),
                    ("update_time", ogr.OFTDateTime),
                ):
                    defn = ogr.FieldDefn(name, kind)
                    if name == "useAsDefault":
                        defn.SetSubType(ogr.OFSTBoolean)
                    table.CreateField(defn)
            geometry_column = ds.GetLayerByName(layer_name).GetGeometryColumn() or "geom"
            f = ogr.Feature(table.GetLayerDefn())
            for key, value in (
                ("f_table_catalog", ""),
                ("f_table_schema", ""),
                ("f_table_name", layer_name),
                ("f_geometry_column", geometry_column),
                ("styleName", style_name),
                ("styleQML", qml),
                ("styleSLD", ""),
                ("useAsDefault", 1),
                ("description", "written by SpectralX"),
                ("owner", ""),
            ):
                f.SetField(key, value)
            table.CreateFeature(f)
        finally:
            ds = None


def open_vector(path: str, what: str = "reference points", layer: Optional[str] = None):
    """(dataset, layer) of a vector file: the layer named, else `reference_sample`, else its only layer."""
    with gdal_exceptions() as (gdal, ogr, osr):
        try:
            ds = ogr.Open(path, 0)
        except RuntimeError as exc:
            raise LabelError(
                f"{what} {path} is not a vector file OGR can read ({str(exc).splitlines()[0][:120]})"
            ) from None
        names = [ds.GetLayerByIndex(i).GetName() for i in range(ds.GetLayerCount())]
        names = [n for n in names if n not in ("layer_styles",)]
        if not names:
            raise LabelError(f"{what} {path} holds no layer")
        if layer and layer not in names:
            raise LabelError(f"{what} {path} has no layer '{layer}'; its layers are: {', '.join(names)}")
        name = layer or (SAMPLE_LAYER if SAMPLE_LAYER in names else names[0] if len(names) == 1 else None)
        if name is None:
            raise LabelError(
                f"{what} {path} holds several layers ({', '.join(names[:6])}); keep the points in a "
                f"layer named {SAMPLE_LAYER} or in a file of their own"
            )
        return ds, ds.GetLayerByName(name)


def read_points(
    path: str,
    class_field: str,
    crs_wkt: Optional[str],
    stratum_field: str = "stratum",
    what: str = "reference points",
    layer_name: Optional[str] = None,
) -> Dict[str, Any]:
    """Points of a vector file in the raster's CRS: ids, x, y, the reference value (None where empty)
    and the stratum (None when there is no stratum field), plus the layer's sample metadata."""
    with gdal_exceptions() as (gdal, ogr, osr):
        ds, layer = open_vector(path, what, layer_name)
        defn = layer.GetLayerDefn()
        fields = [defn.GetFieldDefn(i).GetName() for i in range(defn.GetFieldCount())]
        if class_field not in fields:
            raise LabelError(
                f"the class field '{class_field}' is not in {what} {path}; its fields are: "
                f"{', '.join(fields) or '(none)'}"
            )
        has_stratum = stratum_field in fields
        src = layer.GetSpatialRef()
        dst = srs_from_wkt(crs_wkt)
        transform = None
        if src is not None and dst is not None:
            src.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
            if not src.IsSame(dst):
                transform = osr.CoordinateTransformation(src, dst)
        out = {
            "ids": [],
            "x": [],
            "y": [],
            "reference": [],
            "stratum": [] if has_stratum else None,
            "skipped": {},
            "reprojected": transform is not None,
            "layer": layer.GetName(),
            "sample": json.loads(layer.GetMetadataItem(SAMPLE_TAG) or "null"),
        }
        for f in layer:
            g = f.GetGeometryRef()
            if g is None or g.IsEmpty():
                out["skipped"]["without geometry"] = out["skipped"].get("without geometry", 0) + 1
                continue
            if g.GetGeometryType() not in (ogr.wkbPoint, ogr.wkbPoint25D, ogr.wkbPointM, ogr.wkbPointZM):
                raise LabelError(
                    f"{what} {path} holds {g.GetGeometryName().lower()} geometries; the area "
                    "estimate needs points (one reference pixel each), e.g. from spectralx sample"
                )
            g = g.Clone()
            if transform is not None:
                g.Transform(transform)
            out["ids"].append(f.GetFID())
            out["x"].append(g.GetX())
            out["y"].append(g.GetY())
            out["reference"].append(f.GetField(class_field) if f.IsFieldSetAndNotNull(class_field) else None)
            if has_stratum:
                out["stratum"].append(f.GetField(stratum_field) if f.IsFieldSetAndNotNull(stratum_field) else None)
        del ds  # closes the dataset (the layer is read)
        return out


def remove_vector(path: str) -> None:
    """A GeoPackage and its journal files."""
    from .fileio import remove_quietly

    remove_quietly(path, path + "-wal", path + "-shm", path + "-journal")


__all__ = [
    "SAMPLE_LAYER",
    "SAMPLE_TAG",
    "osgeo",
    "gdal_exceptions",
    "srs_from_wkt",
    "write_points",
    "write_layer_style",
    "open_vector",
    "read_points",
    "remove_vector",
]
