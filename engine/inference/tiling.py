"""Where the model-size tiles go: a regular grid with overlap, the last tile snapped to the edge.

Tiles never leave the processed window (the last one in a row/column is moved back to end exactly
at the edge) so no pixel is predicted from padding, except when the window is smaller than one
tile: then a single tile covers it and the missing part is padded.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List

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
