"""Class raster -> polygons with a minimum mapping unit (MMU), through GDAL's sieve and polygonize.

1. Sieve: 4-connected regions smaller than the MMU take the class of their largest neighbour
   (GDALSieveFilter), written to a temporary GeoTIFF beside the output. One pass leaves clusters of
   small regions whose neighbours are all small (salt and pepper); passes repeat on the result until
   one changes nothing (two or three on pure noise, at most MAX_PASSES).
2. Polygonize the sieved raster, 4-connected as the sieve, so every polygon is exactly one sieved
   region (GDALPolygonize). A region the sieve could not merge (no classified neighbour: an island
   in nodata) and still below the MMU is dropped and counted.
3. Attributes: class id, class name, pixels, area in hectares, and the mean confidence of the
   polygon's pixels (a confidence raster on the same grid: the polygons are burnt back into a
   temporary id raster, which is read in strips beside the confidence).

GDAL's sieve and polygonize walk the raster scanline by scanline and keep only the polygons still
open on the current line: there are no blocks, so no seams, and memory grows with the open polygons
and the raster's width, not its height. The GeoPackage is written to a temporary name and renamed
when complete; the style (class colours) is stored inside it as QGIS's default style.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Dict, Optional

import numpy as np

from .class_raster import describe
from .errors import Cancelled, RasterError, SpectralXError
from .fileio import atomic_output, remove_quietly, temp_name
from .progress import Progress, ensure
from .raster_io import open_gdal
from .vector_io import gdal_exceptions, write_layer_style
from .vector_styles import categorized_qml

LAYER = "classes"
MAX_PASSES = 8
_UNITS = {"ha": 1.0, "m2": 1e-4, "m²": 1e-4, "km2": 100.0, "km²": 100.0, "": 1.0}


class MMUError(SpectralXError):
    """The minimum mapping unit cannot be used on this raster."""


@dataclass
class VectorizeResult:
    output: str
    polygons: int
    threshold_pixels: int
    mmu_ha: float
    dropped: int = 0  # regions below the MMU the sieve could not merge (islands in nodata)
    dropped_pixels: int = 0
    class_area_ha: Dict[int, float] = field(default_factory=dict)


def parse_mmu(text) -> tuple:
    """'0.5ha', '5000m2', '0.01km2', '12px' or a plain number of hectares -> (value, unit)."""
    if isinstance(text, (int, float)):
        return float(text), "ha"
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ha|m2|m²|km2|km²|px|)\s*", str(text).lower())
    if not m:
        raise MMUError(f"minimum mapping unit '{text}' is not an area; write e.g. 0.5ha, 5000m2 or 12px")
    return float(m.group(1)), (m.group(2) or "ha")


def threshold_pixels(mmu, pixel_area_ha: Optional[float]) -> int:
    """The MMU in whole pixels (a region of this many pixels or more is kept); an MMU below one pixel
    is refused: it would keep everything and suggest a precision the map does not have."""
    value, unit = parse_mmu(mmu)
    if unit == "px":
        pixels = value
        shown = f"{value:g} px"
    else:
        if not pixel_area_ha:
            raise MMUError(
                "the class raster has no projected CRS (metres), so an MMU in hectares cannot be "
                "converted to pixels; give it in pixels (e.g. 12px) or reproject the raster"
            )
        pixels = value * _UNITS[unit] / pixel_area_ha
        shown = f"{value:g} {unit}"
    if pixels < 1 - 1e-9:
        raise MMUError(
            f"the minimum mapping unit {shown} is smaller than one pixel"
            + (f" ({pixel_area_ha:.4g} ha)" if pixel_area_ha else "")
            + "; give at least one pixel's area, or no MMU"
        )
    return max(1, int(math.ceil(pixels - 1e-9)))


def _gdal_callback(progress: Progress, stage: int, stages: int, message: str):
    def callback(complete, _msg, _data):
        if progress.cancelled:
            return 0
        progress.update(int((stage + complete) * 1000), stages * 1000, message)
        return 1

    return callback


def _differs(a, b, budget: int) -> bool:
    """Two open GDAL rasters of one grid hold different values (compared in strips)."""
    from .class_raster import strip_rows

    w, h = a.RasterXSize, a.RasterYSize
    rows = strip_rows(w, h, budget, 256)
    ba, bb = a.GetRasterBand(1), b.GetRasterBand(1)
    return any(
        not np.array_equal(ba.ReadAsArray(0, r0, w, min(rows, h - r0)), bb.ReadAsArray(0, r0, w, min(rows, h - r0)))
        for r0 in range(0, h, rows)
    )


def _check_same_grid(info, confidence: str) -> None:
    from .raster_io import open_raster

    with open_raster(confidence, "confidence raster") as ds:
        if (ds.width, ds.height) != (info.width, info.height) or not ds.transform.almost_equals(info.transform):
            raise RasterError(
                f"the confidence raster {confidence} is not on the class raster's grid "
                f"({ds.width} x {ds.height} px vs {info.width} x {info.height}); give the "
                "confidence raster written with these classes"
            )


def _mean_confidence(gdal, ogr, layer, ref_ds, confidence: str, work_tif: str, count: int, budget: int):
    """Mean confidence per feature id: burn ids into an Int32 raster, then read it beside the
    confidence raster in strips (memory: a strip and two arrays as long as the polygons)."""
    from rasterio.windows import Window

    from .class_raster import strip_rows
    from .raster_io import open_raster

    ids = gdal.GetDriverByName("GTiff").Create(
        work_tif,
        ref_ds.RasterXSize,
        ref_ds.RasterYSize,
        1,
        gdal.GDT_Int32,
        options=["TILED=YES", "COMPRESS=DEFLATE", "BIGTIFF=IF_SAFER"],
    )
    ids.SetGeoTransform(ref_ds.GetGeoTransform())
    ids.SetProjection(ref_ds.GetProjection())
    gdal.RasterizeLayer(ids, [1], layer, options=["ATTRIBUTE=polygon_id"])
    ids = None
    sums = np.zeros(count + 1, np.float64)
    hits = np.zeros(count + 1, np.int64)
    with open_raster(work_tif, "polygon ids") as id_ds, open_raster(confidence, "confidence raster") as cf:
        rows = strip_rows(id_ds.width, id_ds.height, budget, 256)
        for r0 in range(0, id_ds.height, rows):
            win = Window(0, r0, id_ds.width, min(rows, id_ds.height - r0))
            fid = id_ds.read(1, window=win).ravel()
            conf = cf.read(1, window=win, masked=True)
            valid = ~np.ma.getmaskarray(conf).ravel() & (fid > 0)
            values = np.ma.getdata(conf).astype(np.float64).ravel()
            if cf.dtypes[0] == "uint8":  # the percent format (1..100)
                values = values / 100.0
            valid &= np.isfinite(values)
            sums += np.bincount(fid[valid], weights=values[valid], minlength=count + 1)
            hits += np.bincount(fid[valid], minlength=count + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(hits > 0, sums / np.maximum(hits, 1), np.nan)


def vectorize(
    classes: str,
    output: str,
    mmu=None,
    confidence: Optional[str] = None,
    budget: int = 256 * 2**20,
    progress: Optional[Progress] = None,
) -> VectorizeResult:
    """Write `output` (GeoPackage, layer 'classes') from the class raster; see the module text."""
    progress = ensure(progress)
    info = describe(classes)
    pixel_ha = info.pixel_area_ha
    threshold = threshold_pixels(mmu, pixel_ha) if mmu not in (None, "") else 1
    if confidence:
        _check_same_grid(info, confidence)
    sieved = [temp_name(output, ".tif"), temp_name(output, ".tif")]  # passes alternate between the two
    ids_tif = temp_name(output, ".tif")
    try:
        with gdal_exceptions() as (gdal, ogr, osr), atomic_output(output, ".gpkg") as tmp:
            before = gdal.GetCacheMax()
            gdal.SetCacheMax(min(before, max(16 * 2**20, min(256 * 2**20, budget // 8))))  # the budget's share
            try:
                result = _run(gdal, ogr, osr, info, tmp, threshold, confidence, sieved, ids_tif, budget, progress)
            finally:
                gdal.SetCacheMax(before)
            result.output = output
            result.mmu_ha = threshold * pixel_ha if pixel_ha else float("nan")
            return result
    except RuntimeError as exc:  # GDAL's own failure (exceptions on): one line, or the cancel
        if progress.cancelled:
            raise Cancelled("cancelled by the user; nothing was written") from None
        raise RasterError(f"vectorizing {classes} failed: {str(exc).splitlines()[0][:200]}") from None
    finally:
        remove_quietly(*sieved, *(p + ".aux.xml" for p in sieved), ids_tif, ids_tif + ".aux.xml")


def _run(gdal, ogr, osr, info, tmp, threshold, confidence, sieved, ids_tif, budget, progress) -> VectorizeResult:
    # Long (96 lines) on purpose: one GDAL session (sieve, polygonize, areas and fields, small regions)
    # whose datasets and layer transactions must stay open together and close in order.
    stages = 3 if confidence else 2
    src = open_gdal(info.path, "class raster", gdal)
    band = src.GetRasterBand(1)
    nodata = band.GetNoDataValue()
    work = src
    for done in range(MAX_PASSES if threshold > 1 else 0):
        out = gdal.GetDriverByName("GTiff").Create(
            sieved[done % 2],
            src.RasterXSize,
            src.RasterYSize,
            1,
            band.DataType,
            options=["TILED=YES", "COMPRESS=DEFLATE", "BIGTIFF=IF_SAFER"],
        )
        out.SetGeoTransform(src.GetGeoTransform())
        out.SetProjection(src.GetProjection())
        out.GetRasterBand(1).SetNoDataValue(nodata if nodata is not None else 0)
        wb = work.GetRasterBand(1)
        # the mask: the band itself (0 = no class) unless another nodata value marks it
        gdal.SieveFilter(
            wb,
            wb if nodata in (None, 0) else wb.GetMaskBand(),
            out.GetRasterBand(1),
            threshold,
            4,
            callback=_gdal_callback(progress, 0, stages, f"sieving (pass {done + 1})"),
        )
        out.FlushCache()
        changed = _differs(work, out, budget)
        work = wb = None
        work = out
        if not changed:
            break
    wband = work.GetRasterBand(1)
    wmask = wband if nodata in (None, 0) else wband.GetMaskBand()
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(tmp)
    srs = osr.SpatialReference(wkt=src.GetProjection()) if src.GetProjection() else None
    layer = ds.CreateLayer(LAYER, srs, ogr.wkbPolygon)
    for name, kind in (
        ("class_id", ogr.OFTInteger),
        ("class_name", ogr.OFTString),
        ("pixels", ogr.OFTInteger64),
        ("area_ha", ogr.OFTReal),
        ("confidence", ogr.OFTReal),
        ("polygon_id", ogr.OFTInteger),
    ):
        layer.CreateField(ogr.FieldDefn(name, kind))
    layer.StartTransaction()
    gdal.Polygonize(wband, wmask, layer, 0, [], callback=_gdal_callback(progress, 1, stages, "polygonizing"))
    layer.CommitTransaction()
    progress.check()

    gt = src.GetGeoTransform()
    pixel_units = abs(gt[1] * gt[5] - gt[2] * gt[4])
    result = VectorizeResult("", 0, threshold, 0.0)
    small = []
    layer.StartTransaction()
    layer.ResetReading()
    next_id = 0
    for f in layer:
        px = int(round(f.GetGeometryRef().GetArea() / pixel_units))
        if px < threshold:  # the sieve had no neighbour to merge it into
            small.append(f.GetFID())
            result.dropped_pixels += px
            continue
        next_id += 1
        value = f.GetField("class_id")
        f.SetField("class_name", info.name(value))
        f.SetField("pixels", px)
        if info.pixel_area_ha:
            area = px * info.pixel_area_ha
            f.SetField("area_ha", area)
            result.class_area_ha[value] = result.class_area_ha.get(value, 0.0) + area
        f.SetField("polygon_id", next_id)
        layer.SetFeature(f)
    for fid in small:
        layer.DeleteFeature(fid)
    layer.CommitTransaction()
    result.polygons, result.dropped = next_id, len(small)
    if confidence and next_id:
        means = _mean_confidence(gdal, ogr, layer, work, confidence, ids_tif, next_id, budget)
        progress.update(3 * 1000 - 1, stages * 1000, "mean confidence")
        layer.StartTransaction()
        layer.ResetReading()
        for f in layer:
            m = means[f.GetField("polygon_id")]
            if np.isfinite(m):
                f.SetField("confidence", float(m))
                layer.SetFeature(f)
        layer.CommitTransaction()
    layer = ds = work = src = out = band = wband = wmask = None  # close before the rename
    names = {v: info.name(v) for v in sorted(set(info.names) | set(result.class_area_ha))}
    write_layer_style(tmp, LAYER, categorized_qml("class_id", names, info.colours, kind="fill"))
    progress.update(stages * 1000, stages * 1000, "done")
    return result


__all__ = ["LAYER", "MMUError", "VectorizeResult", "parse_mmu", "threshold_pixels", "vectorize"]
