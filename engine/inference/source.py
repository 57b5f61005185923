"""Windowed reads of one tile row of one block, in column chunks, ready for the model.

A read covers a tile row's rows and the columns of a group of consecutive tiles (`read(r, c0, c1)`),
so its size is bounded by the memory plan whatever the raster's width and band count: only the
needed bands are read, converted to float32, mapped and normalized (`Preparer`) chunk by chunk, and
padded to at least one tile when the window is smaller than a tile. Neighbouring chunks re-read the
columns their tiles share (a few kilobytes of I/O, no extra forward pass). Runs in the reader thread,
which owns the dataset for the whole run (GDAL handles are not shared between threads). GDAL's block
cache is held to the plan's share of the memory budget while the reader runs (GDAL would otherwise
keep up to 5 % of the machine's RAM of decoded blocks, whatever the budget).
"""

from __future__ import annotations

from typing import List, Optional, Tuple

import numpy as np
import rasterio
from rasterio.enums import MaskFlags
from rasterio.windows import Window

from ..raster_io import open_raster
from .prepare import Preparer
from .tiling import TilePlan


def declares_nodata(ds, indexes: List[int]) -> bool:
    """Whether the raster says where its nodata is (a nodata value, a mask or an alpha band) for
    these bands. Without it, pixels equal to the fill value in every band are nodata (see `fill`)."""
    return not all(MaskFlags.all_valid in ds.mask_flag_enums[i - 1] for i in indexes)


class RasterStrips:
    """`fill`: the value a raster without declared nodata holds outside its footprint (the Landsat
    Level-1 and Sentinel-2 collar is DN 0): a pixel with that value in every band read is nodata."""

    def __init__(
        self,
        path: str,
        window: Window,
        plan: TilePlan,
        indexes: List[int],
        preparer: Preparer,
        gdal_cache: Optional[int] = None,
        fill: Optional[float] = 0.0,
    ):
        self.path = path
        self.gdal_cache = gdal_cache  # bytes of GDAL block cache while reading (None: GDAL's default)
        self._env = None
        self.window = window
        self.plan = plan
        self.indexes = list(indexes)
        self.prep = preparer
        self.ds = None
        self.mask_mode = "none"
        self.fill = fill

    def clone(self) -> "RasterStrips":
        """Another reader of the same window (its own dataset handle, for another reader thread)."""
        return RasterStrips(self.path, self.window, self.plan, self.indexes, self.prep, self.gdal_cache, self.fill)

    def open(self) -> None:
        if self.gdal_cache:
            self._env = rasterio.Env(GDAL_CACHEMAX=max(100_001, int(self.gdal_cache)))  # > 100000: bytes
            self._env.__enter__()
        self.ds = open_raster(self.path, "input raster")
        flags = [self.ds.mask_flag_enums[i - 1] for i in self.indexes]
        nodatavals = [self.ds.nodatavals[i - 1] for i in self.indexes]
        if all(MaskFlags.all_valid in f for f in flags):
            self.mask_mode = "none" if self.fill is None else "fill"
        elif all(MaskFlags.nodata in f for f in flags):
            self.mask_mode = "nodata"
            self.nodata = np.array([np.nan if v is None else v for v in nodatavals], dtype=np.float64)
        else:
            self.mask_mode = "masks"  # per-dataset mask, alpha band or internal masks
        self.floating = any(np.dtype(self.ds.dtypes[i - 1]).kind == "f" for i in self.indexes)

    def close(self) -> None:
        if self.ds is not None:
            self.ds.close()
            self.ds = None
        if self._env is not None:
            self._env.__exit__(None, None, None)
            self._env = None

    def _invalid(self, raw: np.ndarray, window: Window) -> Optional[np.ndarray]:
        invalid = None
        if self.mask_mode == "nodata":
            invalid = raw == self.nodata.astype(raw.dtype)[:, None, None]
        elif self.mask_mode == "masks":
            invalid = self.ds.read_masks(self.indexes, window=window) == 0
        elif self.mask_mode == "fill":
            collar = (raw == np.float32(self.fill)).all(0)
            if collar.any():
                invalid = np.broadcast_to(collar, raw.shape).copy()
        if self.floating:  # NaN/inf are nodata in float rasters whatever the metadata says (as in training)
            bad = ~np.isfinite(raw)
            if bad.any():
                invalid = bad if invalid is None else (invalid | bad)
        return invalid

    def read(self, r: int, c0: int = 0, c1: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
        """Tile row r, tile columns [c0, c1) (default: all) -> (x (C, >=tile, >=tile) float32
        normalized, valid (strip_height, span) bool), columns starting at the tile plan's xs[c0]."""
        p = self.plan
        c1 = len(p.xs) if c1 is None else c1
        x0 = p.xs[c0]
        span = p.xs[c1 - 1] + p.tile_width - x0
        window = Window(self.window.col_off + x0, self.window.row_off + p.ys[r], span, p.strip_height)
        raw = self.ds.read(self.indexes, window=window, out_dtype=np.float32)
        x, valid = self.prep(raw, self._invalid(raw, window))
        return pad_to_tile(x, p.tile), valid


def pad_to_tile(x: np.ndarray, tile: int) -> np.ndarray:
    """Mirror-pad a (C, h, w) block to at least tile x tile (only windows smaller than a tile)."""
    _, h, w = x.shape
    if h >= tile and w >= tile:
        return x
    return np.pad(x, ((0, 0), (0, max(0, tile - h)), (0, max(0, tile - w))), mode="symmetric")
