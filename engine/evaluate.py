"""Accuracy of a class raster against reference labels (raster or vector).

`evaluate(prediction, reference, class_field=None)` returns overall accuracy, Cohen's kappa, per-class
IoU / F1 / precision / recall, mIoU and mean F1 over the classes present in the reference, and the
confusion matrix (rows = reference, columns = prediction). Vector references (polygons or points, any
OGR format, any CRS) are rasterized onto the prediction's grid (a point counts the pixel it falls in);
raster references on another grid are resampled onto it (nearest neighbour). Pixels where the
prediction is nodata (0) are not compared but counted. Class names come from the prediction raster's
metadata when present (spectralx class rasters carry them), else the values are used.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Optional

import numpy as np

from .class_raster import require_class_raster
from .errors import LabelError, RasterError
from .raster_io import open_raster
from .training.labels import Grid, is_raster, raster_class_metadata, read_label_vector, same_grid
from .training.metrics import confusion, format_table, scores


def _read_prediction(path: str):
    ds = open_raster(path, "prediction raster")  # one line: missing, folder, not a raster, …
    try:
        require_class_raster(ds, path, "prediction")
    except RasterError:
        ds.close()
        raise
    return ds


def _prediction_values(ds, window=None) -> np.ndarray:
    arr = ds.read(1, window=window, masked=True)
    data = np.asarray(arr.filled(0) if np.ma.isMaskedArray(arr) else arr)
    if data.dtype.kind == "f":
        data = np.where(np.isfinite(data), data, 0)
        if not np.all(np.mod(data, 1) == 0):
            raise RasterError("the prediction raster holds non-integer values; give a class raster")
    data = data.astype(np.int64)
    data[data < 0] = 0
    return data


def evaluate(prediction: str, reference: str, class_field: Optional[str] = None) -> Dict[str, Any]:
    """Compare a class raster with reference labels; see the module documentation."""
    notes: List[str] = []
    with _read_prediction(prediction) as ds:
        grid = Grid.of(ds, prediction)
        names, _ = raster_class_metadata(ds)
        if not os.path.exists(reference):
            raise LabelError(f"reference not found: {reference}")
        if is_raster(reference):
            pred = _prediction_values(ds)
            ref = _reference_raster(reference, ds, grid, names, notes)
            kind = "raster"
        else:
            ref, pred, kind = _reference_vector(reference, ds, grid, names, class_field, notes)
    labelled = ref > 0
    predicted = pred > 0
    compare = labelled & predicted
    if not labelled.any():
        raise LabelError(f"the reference {reference} has no labelled pixel over the prediction")
    if not compare.any():
        raise LabelError("the prediction is nodata wherever the reference is labelled; nothing to compare")
    values = sorted(
        set(np.unique(ref[compare]).tolist()) | set(np.unique(pred[compare]).tolist()) | {v for v in names if v > 0}
    )
    vals = np.array(values, np.int64)
    ri = np.searchsorted(vals, ref[compare])
    pi = np.searchsorted(vals, pred[compare])
    cm = confusion(ri, pi, len(vals))
    result = scores(cm, values, [names.get(v, str(v)) for v in values])
    result.update(
        {
            "prediction": prediction,
            "reference": reference,
            "reference_kind": kind,
            "reference_pixels": int(labelled.sum()),
            "unpredicted_reference_pixels": int((labelled & ~predicted).sum()),
            "notes": notes,
        }
    )
    return result


__all__ = ["evaluate", "format_table"]


def _reference_raster(reference: str, ds, grid: Grid, names: Dict[int, str], notes: List[str]) -> np.ndarray:
    """The reference raster's class values on the prediction's grid (resampled if need be); its class
    names complete `names`."""
    from rasterio.warp import Resampling, reproject

    with open_raster(reference, "reference raster") as rs:
        require_class_raster(rs, reference, "reference")
        rgrid = Grid.of(rs, reference)
        ref_names, _ = raster_class_metadata(rs)
        if same_grid(rgrid, grid):
            arr = rs.read(1, masked=True)
            ref = np.asarray(arr.filled(0) if np.ma.isMaskedArray(arr) else arr)
        else:
            if rs.crs is None or ds.crs is None:
                raise LabelError(
                    f"reference {reference} is on another grid than the prediction "
                    "and one of them has no CRS; cannot align them"
                )
            src = rs.read(1, masked=True)
            src = np.asarray(src.filled(0) if np.ma.isMaskedArray(src) else src).astype(np.float32)
            ref = np.zeros((grid.height, grid.width), np.float32)
            reproject(
                src,
                ref,
                src_transform=rs.transform,
                src_crs=rs.crs,
                dst_transform=grid.transform,
                dst_crs=grid.crs,
                resampling=Resampling.nearest,
                src_nodata=0,
                dst_nodata=0,
            )
            notes.append("reference raster resampled onto the prediction grid (nearest neighbour)")
    ref = np.where(np.isfinite(ref), ref, 0)
    if np.any(np.mod(ref, 1) != 0):
        raise LabelError(f"reference raster {reference} holds non-integer values")
    ref = ref.astype(np.int64)
    ref[ref < 0] = 0
    for v, n in ref_names.items():
        names.setdefault(v, n)
    return ref


def _reference_vector(
    reference: str, ds, grid: Grid, names: Dict[int, str], class_field: Optional[str], notes: List[str]
):
    """(reference values, prediction values, kind in words) over the reference features' window."""
    from rasterio.windows import Window

    src = read_label_vector(reference, grid, class_field)
    if src.class_kind == "text":
        by_name = {n.lower(): v for v, n in names.items()}
        lookup = {}
        unknown = []
        for k in src.keys:
            v = by_name.get(str(k).lower())
            if v is None:
                unknown.append(k)
            lookup[k] = v
        if unknown:
            known = ", ".join(f"{v}={n}" for v, n in sorted(names.items())) or "none"
            raise LabelError(
                f"reference classes {unknown[:10]} are not among the prediction's class "
                f"names ({known}); use integer class values or the same names"
            )
    else:
        lookup = {k: int(k) for k in src.keys}
    r0, c0, r1, c1 = src.pixel_bbox
    win = Window(c0, r0, c1 - c0, r1 - r0)
    ref, _ = src.rasterize(lookup, win)
    ref = ref.astype(np.int64)
    pred = _prediction_values(ds, window=win)
    kind = f"vector ({src.geometry_kind}s, field '{src.class_field}')"
    if src.skipped:
        notes.append("skipped features: " + ", ".join(f"{n} {w}" for w, n in sorted(src.skipped.items())))
    return ref, pred, kind
