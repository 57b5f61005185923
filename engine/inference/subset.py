"""The part of the raster to process: everything, a pixel window, or a bounding box in its CRS."""

from __future__ import annotations

import math
from typing import Optional, Sequence

from rasterio.windows import Window, from_bounds

from ..errors import RasterError

EPS = 1e-6


def resolve_window(dataset, window: Optional[Sequence[int]] = None, bbox: Optional[Sequence[float]] = None) -> Window:
    """Integer window inside the raster; a bbox is widened to whole pixels and clipped to the raster."""
    full = Window(0, 0, dataset.width, dataset.height)
    if window is not None and bbox is not None:
        raise RasterError("give either a pixel window or a bounding box, not both")
    if window is not None:
        if len(window) != 4:
            raise RasterError("window must be COL ROW WIDTH HEIGHT")
        col, row, w, h = (int(v) for v in window)
        if w <= 0 or h <= 0 or col < 0 or row < 0 or col + w > dataset.width or row + h > dataset.height:
            raise RasterError(
                f"window {col} {row} {w} {h} is not inside the raster " f"({dataset.width} x {dataset.height} pixels)"
            )
        return Window(col, row, w, h)
    if bbox is not None:
        if len(bbox) != 4:
            raise RasterError("bbox must be XMIN YMIN XMAX YMAX")
        xmin, ymin, xmax, ymax = (float(v) for v in bbox)
        if xmin >= xmax or ymin >= ymax:
            raise RasterError(f"bbox {xmin} {ymin} {xmax} {ymax} is empty (need XMIN < XMAX and YMIN < YMAX)")
        win = from_bounds(xmin, ymin, xmax, ymax, dataset.transform)
        # whole pixels touched by the box (tolerance absorbs float noise in the transform)
        c0 = max(0, math.floor(win.col_off + EPS))
        r0 = max(0, math.floor(win.row_off + EPS))
        c1 = min(dataset.width, math.ceil(win.col_off + win.width - EPS))
        r1 = min(dataset.height, math.ceil(win.row_off + win.height - EPS))
        if c1 <= c0 or r1 <= r0:
            b = dataset.bounds
            raise RasterError(
                f"bbox {xmin} {ymin} {xmax} {ymax} does not overlap the raster "
                f"(bounds {b.left} {b.bottom} {b.right} {b.top}, in {dataset.crs})"
            )
        return Window(c0, r0, c1 - c0, r1 - r0)
    return full
