"""Sampling design for an accuracy assessment: a stratified random sample of reference points.

Strata are the map classes (nodata excluded). The sample size comes from the standard formula for a
target standard error of overall accuracy with the expected user's accuracies (Olofsson et al. 2014,
eq. 13, after Cochran 1977: n = (sum_i W_i S_i / S(O))^2, S_i = sqrt(U_i (1 - U_i))); it is then
allocated to the strata proportionally, equally, or proportionally with at least K per class (the
paper's advice for rare classes).

The draw streams the raster twice in the same strip order: the first pass counts the pixels of every
class (N_h), then n_h distinct ranks are drawn in 0..N_h-1 per class, and the second pass turns ranks
into pixels (the r-th pixel of class h in reading order). Memory is a strip plus the points, whatever
the raster's size. Each point is a pixel centre, chosen with equal probability within its stratum.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .class_raster import ClassRaster, count_classes, describe, strips
from .errors import SpectralXError

ALLOCATIONS = ("proportional", "equal", "min-per-class:K")


class SampleError(SpectralXError):
    """The design cannot be drawn from this map (sizes, allocation, empty strata)."""


def sample_size(weights: Sequence[float], expected_ua: Sequence[float], target_se: float) -> int:
    """Olofsson et al. 2014, eq. 13: the sample size that gives overall accuracy the target SE."""
    if not 0 < target_se < 1:
        raise SampleError(f"the target standard error must be between 0 and 1, not {target_se:g}")
    s = sum(w * math.sqrt(u * (1 - u)) for w, u in zip(weights, expected_ua))
    if s == 0:
        raise SampleError(
            "with expected user's accuracies of 0 or 1 the formula gives no sample; "
            "give expected accuracies below 1 (e.g. --expected-ua 0.9) or --n"
        )
    return int(math.ceil((s / target_se) ** 2 - 1e-9))


def parse_allocation(text: str) -> Tuple[str, int]:
    """'proportional' | 'equal' | 'min-per-class:K' -> (kind, K)."""
    text = (text or "").strip().lower()
    if text in ("proportional", "equal"):
        return text, 0
    if text.startswith("min-per-class:"):
        k = text.split(":", 1)[1]
        if k.isdigit() and int(k) >= 1:
            return "min-per-class", int(k)
    raise SampleError(
        f"allocation '{text}' is not one of proportional, equal, min-per-class:K "
        "(K a whole number, e.g. min-per-class:50)"
    )


def _largest_remainder(total: int, weights: np.ndarray) -> np.ndarray:
    """Whole numbers proportional to weights that sum to total (ties: the larger weight first)."""
    if total <= 0 or weights.sum() <= 0:
        return np.zeros(len(weights), np.int64)
    exact = total * weights / weights.sum()
    out = np.floor(exact).astype(np.int64)
    order = np.lexsort((-weights, -(exact - out)))
    out[order[: total - out.sum()]] += 1
    return out


def allocate(n: int, pixels: Sequence[int], allocation: str = "proportional") -> np.ndarray:
    """Points per stratum, summing to n exactly, never more than a stratum's pixels."""
    N = np.asarray(pixels, np.int64)
    kind, k = parse_allocation(allocation)
    if n > N.sum():
        raise SampleError(f"a sample of {n} points needs {n} mapped pixels; the map has {int(N.sum())}")
    if kind == "min-per-class" and n < k * len(N):
        raise SampleError(
            f"{n} points cannot give {len(N)} classes {k} each; give --n of at least " f"{k * len(N)} or a smaller K"
        )
    fixed = np.zeros(len(N), bool)
    out = np.zeros(len(N), np.int64)
    while True:  # fix the strata that a rule caps, share the rest among the others; repeat
        free = ~fixed
        rest = n - out[fixed].sum()
        weights = N[free].astype(np.float64) if kind != "equal" else np.ones(int(free.sum()))
        out[free] = _largest_remainder(int(rest), weights)
        cap = free & (out > N)
        floor = free & (out < k) if kind == "min-per-class" else np.zeros(len(N), bool)
        if not (cap.any() or floor.any()):
            if out.sum() != n:  # cannot happen while n <= the map's pixels; never return a wrong total
                raise SampleError(f"cannot allocate {n} points to strata of {N.tolist()} pixels")
            return out
        out[cap] = N[cap]
        out[floor] = np.minimum(k, N[floor])
        fixed |= cap | floor


@dataclass
class Sample:
    """A drawn sample: points (pixel centres in the map's CRS) and the design behind them."""

    raster: ClassRaster
    values: List[int]  # stratum (map class) values, ascending
    pixels: List[int]  # N_h
    allocated: List[int]  # n_h
    rows: np.ndarray  # per point
    cols: np.ndarray
    strata: np.ndarray
    design: Dict = field(default_factory=dict)

    def coordinates(self) -> Tuple[np.ndarray, np.ndarray]:
        t = self.raster.transform
        c, r = self.cols + 0.5, self.rows + 0.5
        return t.a * c + t.b * r + t.c, t.d * c + t.e * r + t.f


def draw(
    path: str,
    n: Optional[int] = None,
    target_se: Optional[float] = None,
    expected_ua: Optional[Dict[int, float]] = None,
    default_ua: float = 0.9,
    allocation: str = "proportional",
    seed: Optional[int] = None,
    budget: int = 256 * 2**20,
    exclude: Sequence[int] = (),
) -> Sample:
    """Stratified random sample of `n` points (or the size for `target_se`) over the class raster."""
    # Long (85 lines) on purpose: the design's steps in order (strata, allocation, draws per stratum, seeds,
    # points) over shared state.
    info = describe(path)
    parse_allocation(allocation)
    counts = count_classes(path, budget)
    values = [v for v in range(1, len(counts)) if counts[v] > 0 and v not in set(exclude)]
    if not values:
        raise SampleError(f"the class raster {path} has no classified pixel (all nodata)")
    pixels = np.array([counts[v] for v in values], np.int64)
    uas = [float((expected_ua or {}).get(v, default_ua)) for v in values]
    unknown = sorted(set(expected_ua or {}) - set(values))
    if unknown:
        raise SampleError(
            f"expected accuracy given for class {unknown[0]}, which the map does not hold; "
            f"its classes are {', '.join(map(str, values))}"
        )
    if n is None:
        if target_se is None:
            raise SampleError(
                "give the sample size (--n N) or a target standard error of overall accuracy " "(--target-se 0.01)"
            )
        n = sample_size(pixels / pixels.sum(), uas, target_se)
    if n < 1:
        raise SampleError(f"the sample size must be at least 1, not {n}")
    n_h = allocate(int(n), pixels, allocation)
    few = [i for i, k in enumerate(n_h) if k < min(2, pixels[i])]
    if few:  # the area estimate needs two points in every mapped class: refuse now, not after labelling
        i = few[0]
        raise SampleError(
            f"{allocation} allocation of {n} points gives class {info.name(values[i])} "
            f"({int(pixels[i])} px) {int(n_h[i])} points; the estimates need at least 2 per class: "
            "use --allocation min-per-class:K (e.g. 50) or a larger sample"
        )
    rng = np.random.default_rng(seed)
    ranks = {v: np.sort(rng.choice(int(N), size=int(k), replace=False)) for v, N, k in zip(values, pixels, n_h) if k}
    rows, cols, strata = [], [], []
    seen = np.zeros(len(counts), np.int64)  # pixels of each class before this strip
    done = {v: 0 for v in ranks}  # ranks already placed
    for r0, strip in strips(path, budget):
        per = np.bincount(strip.ravel(), minlength=len(counts))
        for v, rk in ranks.items():
            stop = int(np.searchsorted(rk, seen[v] + per[v]))
            if stop > done[v]:
                where = np.flatnonzero(strip == v)[rk[done[v] : stop] - seen[v]]
                rr, cc = np.divmod(where, strip.shape[1])
                rows.append(rr + r0)
                cols.append(cc)
                strata.append(np.full(len(where), v, np.int64))
                done[v] = stop
        seen += per
    if any(done[v] != len(rk) for v, rk in ranks.items()):  # the file changed between the two passes
        raise SampleError(f"the class raster {path} changed while it was read; run again")
    rows_a = np.concatenate(rows) if rows else np.zeros(0, np.int64)
    order = rng.permutation(len(rows_a))  # labelling order: not grouped by map class
    design = {
        "design": "stratified random",
        "strata": "map classes",
        "allocation": allocation,
        "sample_size": int(n),
        "target_se": target_se,
        "seed": seed,
        "expected_users_accuracy": {str(v): u for v, u in zip(values, uas)} if target_se else None,
        "pixels": {str(v): int(N) for v, N in zip(values, pixels)},
        "points": {str(v): int(k) for v, k in zip(values, n_h)},
    }
    return Sample(
        info,
        values,
        pixels.tolist(),
        n_h.tolist(),
        rows_a[order],
        np.concatenate(cols)[order],
        np.concatenate(strata)[order],
        design,
    )


def save(sample: Sample, path: str) -> str:
    """Write the points to a GeoPackage (temporary name, renamed when complete): id, stratum (the map
    class value), map_class (its name), an empty `reference` for the analyst, and the pixel's row/col;
    the design travels in the layer's metadata, the style (class colours, a class drop-down on
    `reference`) inside the file."""
    import json

    from .fileio import atomic_output
    from .vector_io import SAMPLE_LAYER, SAMPLE_TAG, write_layer_style, write_points
    from .vector_styles import categorized_qml

    info = sample.raster
    xs, ys = sample.coordinates()
    n = len(xs)
    fields = {
        "id": list(range(1, n + 1)),
        "stratum": [int(v) for v in sample.strata],
        "map_class": [info.name(v) for v in sample.strata],
        "reference": [None] * n,
        "row": [int(r) for r in sample.rows],
        "col": [int(c) for c in sample.cols],
    }
    names = {v: info.name(v) for v in sorted(set(sample.values) | set(info.names))}
    with atomic_output(path, ".gpkg") as tmp:
        write_points(
            tmp,
            xs,
            ys,
            fields,
            info.crs.to_wkt() if info.crs else None,
            metadata={SAMPLE_TAG: json.dumps(dict(sample.design, map=info.path))},
        )
        write_layer_style(
            tmp,
            SAMPLE_LAYER,
            categorized_qml("stratum", names, info.colours, kind="marker", value_map_field="reference"),
        )
    return path


__all__ = ["ALLOCATIONS", "SampleError", "Sample", "sample_size", "parse_allocation", "allocate", "draw", "save"]
