"""Writing one block's rows: regrouped into whole 256-row GeoTIFF block rows of the block's columns.

Blocks start on multiples of 256 px (`memory.plan_work`), so each compressed GeoTIFF block is written
exactly once, whichever block it belongs to (rewriting a DEFLATE block would bloat the file).
"""

from __future__ import annotations

import numpy as np
import rasterio

from ..outputs import BLOCK


class BlockWindowWriter:
    """Rows of columns [x0, x1) arrive in order from row y0 on; whole 256-row bands are written."""

    def __init__(self, dataset, y0: int, x0: int, x1: int, block_rows: int = BLOCK):
        self.ds = dataset
        self.x0, self.width = x0, x1 - x0
        self.buf = np.zeros((block_rows, self.width), dtype=dataset.dtypes[0])
        self.top = y0  # first raster row held in buf
        self.filled = 0  # rows of buf filled so far

    def write(self, row: int, data: np.ndarray) -> None:
        if row != self.top + self.filled:
            raise RuntimeError(f"rows out of order: got {row}, expected {self.top + self.filled}")
        i = 0
        while i < len(data):
            n = min(len(data) - i, len(self.buf) - self.filled)
            self.buf[self.filled : self.filled + n] = data[i : i + n]
            self.filled += n
            i += n
            if self.filled == len(self.buf):
                self.flush()

    def flush(self) -> None:
        if self.filled:
            window = rasterio.windows.Window(self.x0, self.top, self.width, self.filled)
            self.ds.write(self.buf[: self.filled], 1, window=window)
            self.top += self.filled
            self.filled = 0


class BlockArrays:
    """Collects one block's rows in memory (the distributed worker's result)."""

    def __init__(self, y0: int, shape, dtypes):
        self.y0 = y0
        self.arrays = [np.zeros(shape, dtype=d) for d in dtypes]

    def write(self, payload) -> None:
        row, arrays = payload
        for out, a in zip(self.arrays, arrays):
            out[row - self.y0 : row - self.y0 + len(a)] = a
