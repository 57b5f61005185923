"""Accuracy and error-adjusted areas of a class map from reference points (the `evaluate --area` path).

Reads the points (any OGR format, any CRS: reprojected to the map's), finds the map class under each
point and the mapped pixels of every class in one streaming pass over the map, checks the design, and
hands the error matrix of sample counts to `spectralx.area_estimate`.

Designs: `stratified` (points carry a `stratum` field that must equal the map class under them: the
estimators are those for strata = map classes; other strata would be mis-estimated and are refused),
`simple` (simple random or systematic sample: the map classes serve as post-strata), `auto` (stratified
when the points have a stratum field). Points without a reference value are left out and counted.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import numpy as np

from .area_estimate import estimate
from .class_raster import MAX_VALUE, describe, strips
from .errors import LabelError
from .vector_io import read_points

DESIGNS = ("auto", "stratified", "simple")


def _reference_values(raw: List[Any], names: Dict[int, str], field: str, path: str) -> List[Optional[int]]:
    """Reference entries as class values: whole numbers, or class names (any case) of the map."""
    by_name = {n.strip().lower(): v for v, n in names.items()}
    out, unknown = [], []
    for value in raw:
        if value is None or (isinstance(value, str) and not value.strip()):
            out.append(None)
            continue
        text = str(value).strip()
        if isinstance(value, (int, np.integer)) or text.lstrip("-").isdigit():
            out.append(int(text))
        elif isinstance(value, float) and float(value).is_integer():
            out.append(int(value))
        elif text.lower() in by_name:
            out.append(by_name[text.lower()])
        else:
            out.append(None)
            unknown.append(text)
    if unknown:
        known = ", ".join(f"{v}={n}" for v, n in sorted(names.items())) or "none named"
        raise LabelError(
            f"reference class '{unknown[0]}' in field '{field}' of {path} is not a class of the "
            f"map ({known}); use the map's class values or names"
        )
    return out


def assess(
    prediction: str,
    points: str,
    class_field: str,
    design: str = "auto",
    budget: int = 256 * 2**20,
    stratum_field: str = "stratum",
    layer: Optional[str] = None,
) -> Dict[str, Any]:
    """The full area/accuracy result (JSON-ready) of `prediction` against the reference `points`."""
    # Long (90 lines) on purpose: the report's steps in order (reference, confusion, areas, intervals, notes),
    # each a call.
    if design not in DESIGNS:
        raise LabelError(f"design must be one of {', '.join(DESIGNS)}, not '{design}'")
    info = describe(prediction, "map")
    wkt = info.crs.to_wkt() if info.crs else None
    pts = read_points(points, class_field, wkt, stratum_field=stratum_field, layer_name=layer)
    notes = []
    if pts["reprojected"]:
        notes.append("reference points reprojected to the map's CRS")
    refs = _reference_values(pts["reference"], info.names, class_field, points)
    labelled = [i for i, r in enumerate(refs) if r is not None]
    if not labelled:
        raise LabelError(
            f"no point of {points} has a reference class in '{class_field}' yet; fill the field "
            "in QGIS (one class per point) first"
        )
    if len(labelled) < len(refs):
        notes.append(
            f"{len(refs) - len(labelled)} points without a reference class were left out; the "
            "estimates assume the labelled ones are a random subset of each stratum"
        )
    x = np.array([pts["x"][i] for i in labelled])
    y = np.array([pts["y"][i] for i in labelled])
    ref = np.array([refs[i] for i in labelled], np.int64)
    ids = [pts["ids"][i] for i in labelled]
    inv = ~info.transform
    cols_f, rows_f = inv * (x, y)
    cols, rows = np.floor(cols_f).astype(np.int64), np.floor(rows_f).astype(np.int64)
    outside = (cols < 0) | (rows < 0) | (cols >= info.width) | (rows >= info.height)
    if outside.any():
        i = int(np.flatnonzero(outside)[0])
        raise LabelError(
            f"{int(outside.sum())} reference points lie outside the map {prediction} (first: point "
            f"{ids[i]} at {x[i]:.1f}, {y[i]:.1f}); the points must come from this map's area"
        )
    bad = [v for v in np.unique(ref).tolist() if not 1 <= v <= MAX_VALUE]
    if bad:
        raise LabelError(f"reference class value {bad[0]} in '{class_field}' is not a class value (1..{MAX_VALUE})")

    counts, mapped = _map_under_points(prediction, budget, rows, cols, ids)
    chosen = _design(design, pts, labelled, mapped, ids, points, stratum_field)

    known = set(np.flatnonzero(counts[1:] > 0) + 1) | set(info.names)
    strange = sorted(set(ref.tolist()) - known)
    if strange:
        raise LabelError(
            f"reference class {strange[0]} is not a class of the map {prediction} (its classes: "
            f"{', '.join(map(str, sorted(known)))}); correct the reference field"
        )
    values = sorted(set(np.flatnonzero(counts[1:] > 0) + 1) | set(ref.tolist()))
    index = {v: i for i, v in enumerate(values)}
    matrix = np.zeros((len(values), len(values)), np.int64)
    np.add.at(matrix, (np.array([index[v] for v in mapped]), np.array([index[v] for v in ref])), 1)
    labels = [f"{v} {info.name(v)}" if info.name(v) != str(v) else str(v) for v in values]
    result = estimate(matrix, [counts[v] for v in values], labels, info.pixel_area_ha)
    for row, v in zip(result["classes"], values):
        row["value"] = int(v)
        row["name"] = info.name(v)
        row["colour"] = info.colours.get(v)
    if info.pixel_area_ha is None:
        notes.append("the map has no projected CRS: areas are given in pixels only")
    if chosen == "simple":
        result["method"] = "Olofsson et al. 2014 estimators, map classes as post-strata (simple random sample)"
    sample_meta = pts.get("sample") or {}
    drawn = sample_meta.get("pixels")
    if drawn and {int(k): int(n) for k, n in drawn.items()} != {v: int(counts[v]) for v in values if counts[v]}:
        notes.append("the sample was drawn on a map whose class pixel counts differ from this one's")
    result.update(
        {
            "map": prediction,
            "reference": points,
            "class_field": class_field,
            "design": chosen,
            "labelled_points": len(labelled),
            "unlabelled_points": len(refs) - len(labelled),
            "skipped": pts["skipped"],
            "notes": notes,
            "crs": wkt and info.crs.to_string(),
        }
    )
    return result


def _map_under_points(prediction: str, budget: int, rows: np.ndarray, cols: np.ndarray, ids: list):
    """One pass over the map: (mapped pixels per class value, the map class under every point)."""
    counts = np.zeros(MAX_VALUE + 1, np.int64)
    mapped = np.zeros(len(rows), np.int64)
    order = np.argsort(rows, kind="stable")
    for r0, strip in strips(prediction, budget, "map"):
        counts += np.bincount(strip.ravel(), minlength=MAX_VALUE + 1)
        lo, hi = np.searchsorted(rows[order], [r0, r0 + strip.shape[0]])
        sel = order[lo:hi]
        mapped[sel] = strip[rows[sel] - r0, cols[sel]]
    nodata = mapped == 0
    if nodata.any():
        i = int(np.flatnonzero(nodata)[0])
        raise LabelError(
            f"{int(nodata.sum())} reference points fall on map nodata (first: point {ids[i]}); "
            "the sample must be drawn over the mapped area"
        )
    return counts, mapped


def _design(
    design: str, pts: Dict[str, Any], labelled: list, mapped: np.ndarray, ids: list, points: str, stratum_field: str
) -> str:
    """The sampling design used ("simple" or "stratified"), its strata checked against the map."""
    chosen = design
    if design == "auto":
        chosen = "stratified" if pts["stratum"] is not None else "simple"
    if chosen == "stratified":
        if pts["stratum"] is None:
            raise LabelError(
                f"{points} has no '{stratum_field}' field; a stratified design needs each point's "
                "stratum (spectralx sample writes it), or choose the simple design"
            )
        strata = np.array([pts["stratum"][i] if pts["stratum"][i] is not None else -1 for i in labelled], np.int64)
        differ = strata != mapped
        if differ.any():
            i = int(np.flatnonzero(differ)[0])
            raise LabelError(
                f"{int(differ.sum())} points have a stratum other than the map class under them (first: point "
                f"{ids[i]}, stratum {strata[i]}, map class {mapped[i]}); these estimators need strata = map "
                "classes of this map: draw the sample on this map (spectralx sample) or use the simple design"
            )
    return chosen


__all__ = ["DESIGNS", "assess"]
