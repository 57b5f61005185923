"""Where the model-size tiles go: a regular grid with overlap, the last tile snapped to the edge.

Tiles never leave the processed window (the last one in a row/column is moved back to end exactly
at the edge) so no pixel is predicted from padding, except when the window is smaller than one
tile: then a single tile covers it and the missing part is padded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

from ..errors import SpectralXError


def axis_starts(length: int, tile: int, overlap: float) -> List[int]:
    """Tile start offsets along one axis covering [0, length)."""
    if not 0.0 <= overlap < 1.0:
        raise SpectralXError(f"overlap must be in [0, 1), got {overlap}")
    if length <= tile:
        return [0]
    stride = max(1, int(round(tile * (1.0 - overlap))))
    starts = list(range(0, length - tile, stride))
    starts.append(length - tile)
    return starts


@dataclass(frozen=True)
class TilePlan:
    """Tile grid over a height x width window. Tile row r covers rows ys[r] .. ys[r] + strip_height."""

    height: int
    width: int
    tile: int
    ys: List[int]
    xs: List[int]

    @property
    def strip_height(self) -> int:
        """Rows read per tile row (a tile, or the whole window if it is shorter than a tile)."""
        return min(self.tile, self.height)

    @property
    def tile_width(self) -> int:
        return min(self.tile, self.width)

    @property
    def n_tiles(self) -> int:
        return len(self.ys) * len(self.xs)

    def finished_rows(self, r: int) -> int:
        """Rows [0, n) are final once tile row r is accumulated (no later tile touches them)."""
        return self.ys[r + 1] if r + 1 < len(self.ys) else self.height


def plan_tiles(height: int, width: int, tile: int, overlap: float = 0.25) -> TilePlan:
    if height < 1 or width < 1:
        raise SpectralXError(f"nothing to process: window is {width} x {height} pixels")
    return TilePlan(height, width, tile, axis_starts(height, tile, overlap), axis_starts(width, tile, overlap))


@dataclass(frozen=True)
class Block:
    """An output rectangle of the window, rows [y0, y1) x columns [x0, x1), and the tiles of the
    whole window's plan that touch it: tile rows [r0, r1), tile columns [c0, c1). Tiles that straddle
    a block seam belong to both neighbours (the halo), so every pixel of the block receives exactly
    the tiles, weights and order of one whole-window pass: blending is exact across seams."""

    index: int
    y0: int
    y1: int
    x0: int
    x1: int
    r0: int
    r1: int
    c0: int
    c1: int

    @property
    def n_tiles(self) -> int:
        return (self.r1 - self.r0) * (self.c1 - self.c0)

    @property
    def shape(self) -> tuple:
        return self.y1 - self.y0, self.x1 - self.x0

    def describe(self) -> str:
        return f"block {self.index} (rows {self.y0}-{self.y1 - 1}, columns {self.x0}-{self.x1 - 1})"


def _touching(starts: List[int], size: int, lo: int, hi: int) -> tuple:
    """Indexes [first, last + 1) of the tiles (start, start + size) that overlap [lo, hi)."""
    first = next(i for i, s in enumerate(starts) if s + size > lo)
    last = max(i for i, s in enumerate(starts) if s < hi)
    return first, last + 1


def _edges(length: int, step: Optional[int]) -> List[int]:
    if not step or step >= length:
        return [0, length]
    return list(range(0, length, step)) + [length]


def plan_blocks(plan: TilePlan, block_width: Optional[int] = None, block_height: Optional[int] = None) -> List[Block]:
    """Split the window into blocks (row-major): `block_width` x `block_height` px, the last ones
    smaller; None = the whole width / height. Sizes should be multiples of the output's 256 px
    GeoTIFF blocks so that each compressed block is written once."""
    blocks = []
    ys, xs = _edges(plan.height, block_height), _edges(plan.width, block_width)
    for y0, y1 in zip(ys, ys[1:]):
        r0, r1 = _touching(plan.ys, plan.strip_height, y0, y1)
        for x0, x1 in zip(xs, xs[1:]):
            c0, c1 = _touching(plan.xs, plan.tile_width, x0, x1)
            blocks.append(Block(len(blocks), y0, y1, x0, x1, r0, r1, c0, c1))
    return blocks


def whole_window(plan: TilePlan) -> Block:
    return Block(0, 0, plan.height, 0, plan.width, 0, len(plan.ys), 0, len(plan.xs))
