"""Training/reference labels from what analysts have.

* Vectors (any OGR format fiona reads: GeoPackage, Shapefile, GeoJSON, …) with polygons or points and a
  class field (text or integer). Geometries are reprojected to the raster's CRS; features without a
  geometry, with an empty class, or outside the raster are skipped and counted. Each feature becomes
  its own region (the unit that training/validation splits keep whole).
* A label raster on exactly the image's grid (same CRS, transform and size); 0 and nodata are
  unlabelled. Regions are its connected components of one class (8-connectivity).

Reading is in two phases so that every input error surfaces before any pixel is rasterized:
`read_labels()` opens and checks, `LabelSource.rasterize()` burns class values and region ids into a
window of the image grid.
"""

from __future__ import annotations

import json
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from ..errors import LabelError, RasterError

RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".img", ".jp2", ".png", ".bil", ".bsq", ".dat", ".nc")
CLASS_FIELD_GUESSES = (
    "class",
    "classname",
    "class_name",
    "classid",
    "class_id",
    "label",
    "labels",
    "landcover",
    "land_cover",
    "lulc",
    "lc",
    "category",
    "type",
    "name",
    "value",
)


@dataclass
class Grid:
    """The pixel grid labels are burnt into (an image's CRS, transform and size)."""

    crs: Any
    transform: Any
    width: int
    height: int
    path: str = ""

    @classmethod
    def of(cls, dataset, path: str = "") -> "Grid":
        return cls(dataset.crs, dataset.transform, dataset.width, dataset.height, path or dataset.name)

    @property
    def bounds(self) -> Tuple[float, float, float, float]:
        from rasterio.transform import array_bounds

        west, south, east, north = array_bounds(self.height, self.width, self.transform)
        return west, south, east, north


@dataclass
class LabelSource:
    path: str
    kind: str  # "vector" or "raster"
    grid: Grid
    class_kind: str  # "text" or "int"
    keys: List[Any] = field(default_factory=list)  # distinct class keys seen (names or ints)
    skipped: Dict[str, int] = field(default_factory=dict)
    used: int = 0  # features (vector) or labelled pixels (raster) used
    class_field: Optional[str] = None
    geometry_kind: str = ""  # "polygon", "point", "mixed" or "raster"
    value_names: Dict[int, str] = field(default_factory=dict)
    value_colours: Dict[int, str] = field(default_factory=dict)
    _features: List[Tuple[dict, Any]] = field(default_factory=list, repr=False)
    _array: Optional[np.ndarray] = field(default=None, repr=False)
    pixel_bbox: Optional[Tuple[int, int, int, int]] = None  # row0, col0, row1, col1 (exclusive)

    def summary(self) -> str:
        what = "features" if self.kind == "vector" else "labelled pixels"
        text = f"{os.path.basename(self.path)}: {self.used} {what}"
        if self.class_field:
            text += f" (class field '{self.class_field}')"
        if self.skipped:
            text += "; skipped " + ", ".join(f"{n} {why}" for why, n in sorted(self.skipped.items()))
        return text

    def rasterize(self, lookup: Dict[Any, int], window=None) -> Tuple[np.ndarray, np.ndarray]:
        """(values, regions) on `window` of the grid (default: whole grid).

        values: uint16 class values (0 = unlabelled) via `lookup` (class key -> value);
        regions: int32 region ids (0 = none), one per feature / connected label region.
        """
        from rasterio.windows import Window
        from rasterio.windows import transform as window_transform

        if window is None:
            window = Window(0, 0, self.grid.width, self.grid.height)
        h, w = int(window.height), int(window.width)
        if self.kind == "vector":
            from rasterio.features import rasterize

            tr = window_transform(window, self.grid.transform)
            shapes = [(geom, i + 1) for i, (geom, _) in enumerate(self._features)]
            regions = (
                rasterize(shapes, out_shape=(h, w), transform=tr, fill=0, dtype="int32")
                if shapes
                else np.zeros((h, w), np.int32)
            )
            region_value = np.zeros(len(self._features) + 1, np.uint16)
            for i, (_, key) in enumerate(self._features):
                region_value[i + 1] = lookup[key]
            values = region_value[regions]
            return values, regions
        r0, c0 = int(window.row_off), int(window.col_off)
        raw = np.zeros((h, w), np.int64)
        rs, cs = max(r0, 0), max(c0, 0)
        re, ce = min(r0 + h, self.grid.height), min(c0 + w, self.grid.width)
        if re > rs and ce > cs:
            raw[rs - r0 : re - r0, cs - c0 : ce - c0] = self._array[rs:re, cs:ce]
        table = {int(k): int(v) for k, v in lookup.items()}
        values = np.zeros((h, w), np.uint16)
        for k, v in table.items():
            values[raw == k] = v
        return values, connected_regions(values)


def connected_regions(values: np.ndarray) -> np.ndarray:
    """Region id per pixel: connected components (8-connectivity) of equal non-zero values."""
    from affine import Affine
    from rasterio.features import rasterize, shapes

    regions = np.zeros(values.shape, np.int32)
    if not values.any():
        return regions
    src = values.astype(np.int32)
    polys = [
        (geom, i + 1)
        for i, (geom, v) in enumerate(shapes(src, mask=src > 0, connectivity=8, transform=Affine.identity()))
        if v > 0
    ]
    # shapes() yields one pixel-aligned polygon per 8-connected component; they do not overlap, so
    # burning them all at once gives each pixel its component id
    if polys:
        regions = rasterize(polys, out_shape=values.shape, transform=Affine.identity(), fill=0, dtype="int32")
        regions[src == 0] = 0
    return regions


def is_raster(path: str) -> bool:
    """A label file is a raster when GDAL opens it as one (by extension first, then by trying)."""
    if path.lower().endswith(RASTER_SUFFIXES):
        return True
    if path.lower().endswith(
        (".gpkg", ".shp", ".geojson", ".json", ".kml", ".gml", ".fgb", ".sqlite", ".csv", ".tab", ".gdb", ".zip")
    ):
        return False
    from ..raster_io import open_raster

    try:
        with open_raster(path, "label file"):
            return True
    except Exception:  # RasterError, or anything GDAL raises for a file that is not a raster
        return False


def read_labels(path: str, grid: Grid, class_field: Optional[str] = None) -> LabelSource:
    if not os.path.exists(path):
        raise LabelError(f"label file not found: {path}")
    if is_raster(path):
        return read_label_raster(path, grid)
    return read_label_vector(path, grid, class_field)


# ---------------------------------------------------------------------------------------------
# vectors


def _coords_bbox(geom: dict) -> Optional[Tuple[float, float, float, float]]:
    xs: List[float] = []
    ys: List[float] = []

    def walk(c):
        if isinstance(c, (list, tuple)) and c and isinstance(c[0], (int, float)):
            xs.append(float(c[0]))
            ys.append(float(c[1]))
        elif isinstance(c, (list, tuple)):
            for item in c:
                walk(item)

    if geom.get("type") == "GeometryCollection":
        for g in geom.get("geometries", []):
            walk(g.get("coordinates"))
    else:
        walk(geom.get("coordinates"))
    if not xs:
        return None
    return min(xs), min(ys), max(xs), max(ys)


def _pick_field(fields: List[str], class_field: Optional[str], path: str) -> str:
    if class_field:
        if class_field in fields:
            return class_field
        lower = {f.lower(): f for f in fields}
        if class_field.lower() in lower:
            return lower[class_field.lower()]
        raise LabelError(
            f"class field '{class_field}' not found in {path}; available fields: " f"{', '.join(fields) or '(none)'}"
        )
    if len(fields) == 1:
        return fields[0]
    lower = {f.lower(): f for f in fields}
    for guess in CLASS_FIELD_GUESSES:
        if guess in lower:
            return lower[guess]
    raise LabelError(
        f"{path}: which field holds the class? pass --class-field, one of: " f"{', '.join(fields) or '(none)'}"
    )


def _to_key(value: Any, kind: str) -> Any:
    if kind == "int":
        return int(value)
    return str(value).strip()


def read_label_vector(path: str, grid: Grid, class_field: Optional[str] = None) -> LabelSource:
    raw, skipped, fname, ftype, src_crs = _read_vector_features(path, class_field)
    n_total = len(raw) + sum(skipped.values())
    kind, raw = _class_kind(raw, skipped, n_total, ftype, fname, path)
    feats, kinds = _features_over_grid(raw, kind, grid, src_crs, skipped)
    out = LabelSource(
        path=path,
        kind="vector",
        grid=grid,
        class_kind=kind,
        skipped=dict(skipped),
        class_field=fname,
        geometry_kind="mixed" if len(kinds) > 1 else (kinds.pop() if kinds else ""),
    )
    if not feats:
        crs_note = ""
        if src_crs is None:
            crs_note = " (the vector has no CRS; it was assumed to be the image's)"
        elif src_crs != grid.crs:
            crs_note = f" (reprojected from {src_crs.to_string()} to {grid.crs.to_string() if grid.crs else '?'})"
        raise LabelError(
            f"{path}: none of its {n_total} features lies over the image "
            f"{os.path.basename(grid.path)}{crs_note}; "
            + (f"skipped {', '.join(f'{n} {w}' for w, n in sorted(skipped.items()))}; " if skipped else "")
            + "check that the labels belong to this image"
        )
    out._features = feats
    out.used = len(feats)
    out.keys = sorted({k for _, k in feats}, key=lambda k: (str(type(k)), k))
    # pixel bounding box of all kept features (clipped to the grid)
    from rasterio.transform import rowcol

    xs0 = min(_coords_bbox(g)[0] for g, _ in feats)
    ys0 = min(_coords_bbox(g)[1] for g, _ in feats)
    xs1 = max(_coords_bbox(g)[2] for g, _ in feats)
    ys1 = max(_coords_bbox(g)[3] for g, _ in feats)
    rows, cols = rowcol(grid.transform, [xs0, xs1, xs0, xs1], [ys0, ys0, ys1, ys1])
    r0, r1 = max(0, min(rows) - 1), min(grid.height, max(rows) + 2)
    c0, c1 = max(0, min(cols) - 1), min(grid.width, max(cols) + 2)
    out.pixel_bbox = (r0, c0, r1, c1)
    return out


def _read_vector_features(path: str, class_field: Optional[str]):
    """(features as (geometry, class value), skipped counts, class field, its type, the layer's CRS)."""
    import fiona
    from rasterio.crs import CRS

    layer = None
    target = path
    if "|layername=" in path:  # QGIS-style "file.gpkg|layername=x"
        target, layer = path.split("|layername=", 1)
    try:
        layers = fiona.listlayers(target)
    except Exception as exc:
        raise LabelError(f"cannot open labels {path}: not a vector or raster GDAL can read ({exc})") from None
    if layer is None:
        # skip QGIS' style table and other non-spatial layers
        layer = next((lyr for lyr in layers if lyr not in ("layer_styles", "qgis_projects")), layers[0])
    try:
        src = fiona.open(target, layer=layer)
    except Exception as exc:
        raise LabelError(f"cannot open labels {path}: {exc}") from None
    with src:
        props = dict(src.schema.get("properties") or {})
        fields = list(props)
        fname = _pick_field(fields, class_field, path)
        ftype = str(props[fname]).split(":")[0]
        src_crs = None
        try:
            wkt = src.crs_wkt
            src_crs = CRS.from_wkt(wkt) if wkt else None
        except Exception:
            src_crs = None
        raw: List[Tuple[dict, Any]] = []
        skipped: Counter = Counter()
        for feat in src:
            geom = feat["geometry"]
            value = feat["properties"].get(fname)
            if geom is None:
                skipped["without geometry"] += 1
                continue
            if (
                value is None
                or (isinstance(value, str) and not value.strip())
                or (isinstance(value, float) and math.isnan(value))
            ):
                skipped["with an empty class"] += 1
                continue
            raw.append((geom.__geo_interface__ if hasattr(geom, "__geo_interface__") else dict(geom), value))
    return raw, skipped, fname, ftype, src_crs


def _class_kind(raw: List[Tuple[dict, Any]], skipped: Counter, n_total: int, ftype: str, fname: str, path: str):
    """("int" or "text", the features left: integer classes <= 0 are skipped and counted)."""
    if ftype.startswith("int"):
        kind = "int"
    elif ftype.startswith("float") or ftype == "real":
        if all(float(v).is_integer() for _, v in raw):
            kind = "int"
        else:
            raise LabelError(
                f"{path}: class field '{fname}' holds non-integer numbers; classes must " "be text or integer codes"
            )
    else:
        kind = "int" if raw and all(str(v).strip().lstrip("-").isdigit() for _, v in raw) else "text"
    if kind == "int":
        bad = sorted({int(float(v)) for _, v in raw if int(float(v)) <= 0})
        if bad:
            # 0 (and negatives) mean "unlabelled" in rasters; as vector classes they are skipped
            raw = [(g, v) for g, v in raw if int(float(v)) > 0]
            skipped["with class value <= 0"] += n_total - len(raw) - sum(skipped.values())
    return kind, raw


def _features_over_grid(raw: List[Tuple[dict, Any]], kind: str, grid: Grid, src_crs, skipped: Counter):
    """The features over the image, in its CRS, with their class keys; and their geometry kinds."""
    from rasterio.warp import transform_geom

    left, bottom, right, top = grid.bounds
    feats: List[Tuple[dict, Any]] = []
    kinds = set()
    for geom, value in raw:
        if src_crs is not None and grid.crs is not None and src_crs != grid.crs:
            try:
                geom = transform_geom(src_crs, grid.crs, geom)
            except Exception:
                skipped["that cannot be reprojected"] += 1
                continue
        bb = _coords_bbox(geom)
        if bb is None:
            skipped["with an empty geometry"] += 1
            continue
        if bb[0] > right or bb[2] < left or bb[1] > top or bb[3] < bottom:
            skipped["outside the image"] += 1
            continue
        kinds.add("point" if "Point" in geom.get("type", "") else "polygon")
        feats.append((geom, _to_key(float(value) if kind == "int" else value, kind)))
    return feats, kinds


# ---------------------------------------------------------------------------------------------
# rasters


def same_grid(a: Grid, b: Grid, tol: float = 1e-6) -> bool:
    if a.width != b.width or a.height != b.height:
        return False
    if (a.crs is None) != (b.crs is None) or (a.crs is not None and a.crs != b.crs):
        return False
    px = max(abs(a.transform.a), abs(a.transform.e), 1e-12)
    return all(abs(x - y) <= tol * max(px, 1.0) for x, y in zip(tuple(a.transform)[:6], tuple(b.transform)[:6]))


def describe_grid(g: Grid) -> str:
    crs = g.crs.to_string() if g.crs else "no CRS"
    t = g.transform
    return f"{g.width}x{g.height} px, {crs}, origin ({t.c:.3f}, {t.f:.3f}), pixel {t.a:g}x{-t.e:g}"


def raster_class_metadata(dataset) -> Tuple[Dict[int, str], Dict[int, str]]:
    """(names, colours) per class value from a class raster's metadata, when it carries any.

    Understood: GDAL category names (via osgeo, when importable), a JSON tag `spectralx_classes` /
    `classes` / `class_names` (list of {value,name,color} or {value: name}), the colour table, and
    a QGIS .qml style beside the file (paletteEntry value/label/color).
    """
    names: Dict[int, str] = {}
    colours: Dict[int, str] = {}
    try:
        cmap = dataset.colormap(1)
        colours = {int(v): "#%02x%02x%02x" % tuple(c[:3]) for v, c in cmap.items()}
    except Exception:
        colours = {}
    tags: Dict[str, str] = {}
    for getter in (lambda: dataset.tags(), lambda: dataset.tags(1)):
        try:
            tags.update(getter())
        except Exception:
            pass
    for key in ("spectralx_classes", "SPECTRALX_CLASSES", "classes", "class_names", "CLASSES"):
        if key in tags:
            try:
                data = json.loads(tags[key])
            except (TypeError, ValueError):
                continue
            if isinstance(data, dict) and "classes" in data:
                data = data["classes"]
            if isinstance(data, dict):
                names.update({int(k): str(v) for k, v in data.items() if str(k).lstrip("-").isdigit()})
            elif isinstance(data, list):
                for item in data:
                    if isinstance(item, dict) and "value" in item:
                        names[int(item["value"])] = str(item.get("name", item["value"]))
                        if item.get("color"):
                            colours.setdefault(int(item["value"]), str(item["color"]))
            break
    if not names:  # spectralx.outputs convention: band tags CLASS_<value>=name
        names = {int(k[6:]): str(v) for k, v in tags.items() if k.startswith("CLASS_") and k[6:].isdigit()}
    if not names:
        try:
            from ..raster_io import open_gdal  # optional: GDAL's Python bindings (present alongside QGIS)

            ds = open_gdal(dataset.name, "label raster")
            cats = ds.GetRasterBand(1).GetCategoryNames()
            if cats:
                names = {i: str(n) for i, n in enumerate(cats) if n}
        except Exception:
            pass
    if not names:
        qml = os.path.splitext(dataset.name)[0] + ".qml"
        if os.path.isfile(qml):
            try:
                import xml.etree.ElementTree as ET

                for e in ET.parse(qml).iter("paletteEntry"):
                    v = int(float(e.get("value")))
                    if e.get("label"):
                        names[v] = e.get("label")
                    if e.get("color"):
                        colours.setdefault(v, e.get("color")[:7])
            except Exception:
                pass
    return names, colours


def read_label_raster(path: str, grid: Optional[Grid]) -> LabelSource:
    from ..raster_io import open_raster

    try:
        ds = open_raster(path, "label raster")
    except RasterError as exc:
        raise LabelError(str(exc)) from None
    with ds:
        lgrid = Grid.of(ds, path)
        if grid is not None and not same_grid(lgrid, grid):
            raise LabelError(
                f"label raster {path} is on another grid than the image {grid.path}: labels "
                f"{describe_grid(lgrid)} vs image {describe_grid(grid)}; resample the labels onto the "
                "image grid (nearest neighbour, e.g. gdalwarp -r near with the image's extent and size)"
            )
        arr = ds.read(1, masked=True)
        names, colours = raster_class_metadata(ds)
    data = np.asarray(arr.filled(0) if np.ma.isMaskedArray(arr) else arr)
    if data.dtype.kind == "f":
        data = np.where(np.isfinite(data), data, 0)
        if not np.all(np.mod(data, 1) == 0):
            raise LabelError(
                f"label raster {path} holds non-integer values; class values must be " "integers (0 = unlabelled)"
            )
    data = data.astype(np.int64)
    if (data < 0).any():
        data[data < 0] = 0
    values = np.unique(data)
    values = [int(v) for v in values if v > 0]
    out = LabelSource(
        path=path,
        kind="raster",
        grid=grid or lgrid,
        class_kind="int",
        keys=values,
        geometry_kind="raster",
        value_names=names,
        value_colours=colours,
    )
    out._array = data
    out.used = int((data > 0).sum())
    if out.used == 0:
        raise LabelError(f"label raster {path} has no labelled pixel (all 0 or nodata)")
    rows = np.nonzero(data.any(axis=1))[0]
    cols = np.nonzero(data.any(axis=0))[0]
    out.pixel_bbox = (int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1)
    return out


def open_grid(image: str) -> Grid:
    from ..raster_io import open_raster

    with open_raster(image, "image") as ds:
        return Grid.of(ds, image)
