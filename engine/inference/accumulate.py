"""Strip accumulator: weighted class-probability sums for one tile row's rows, one block wide.

The buffers hold (K, strip_height, span) probability sums and (strip_height, span) weight sums on
the compute device, where span is the width covered by the block's tiles (the whole window when it
is one block), so memory depends on the block's width and the tile size, never the raster's height.
When a tile row is complete, the rows no later tile touches are divided out, handed on, and the
buffer slides down to the next tile row. Weights come from the whole window's plan (which tiles lie
on the window's edge), so a block adds exactly what a single pass adds.
"""

from __future__ import annotations

from typing import Dict, Tuple

import torch

from .blending import tile_weight
from .tiling import Block, TilePlan, whole_window


class StripAccumulator:
    def __init__(
        self, plan: TilePlan, num_classes: int, device: torch.device | str = "cpu", block: Block | None = None
    ):
        self.plan = plan
        self.block = block = block or whole_window(plan)
        self.device = torch.device(device)
        self.x_off = plan.xs[block.c0]  # first column of the span
        self.span = plan.xs[block.c1 - 1] + plan.tile_width - self.x_off
        self.prob = torch.zeros(num_classes, plan.strip_height, self.span, device=self.device)
        self.wsum = torch.zeros(plan.strip_height, self.span, device=self.device)
        self.row = block.r0  # tile row being accumulated
        self._weights: Dict[Tuple[bool, bool, bool, bool], torch.Tensor] = {}

    def _weight(self, r: int, c: int) -> torch.Tensor:
        p = self.plan
        key = (r == 0, r == len(p.ys) - 1, c == 0, c == len(p.xs) - 1)
        if key not in self._weights:
            self._weights[key] = tile_weight(p.strip_height, p.tile_width, *key, device=self.device)
        return self._weights[key]

    def add(self, r: int, c: int, probs: torch.Tensor) -> None:
        """Add tile (r, c)'s probabilities (K, strip_height, tile_width); call `finish` between rows."""
        if r != self.row:
            raise RuntimeError(f"tile row {r} added while accumulating row {self.row}")
        x = self.plan.xs[c] - self.x_off
        w = self._weight(r, c)
        tw = self.plan.tile_width
        self.prob[:, :, x : x + tw].addcmul_(probs, w)
        self.wsum[:, x : x + tw].add_(w)

    def finish(self) -> Tuple[int, torch.Tensor]:
        """Close the current tile row: return (first row, blended probs (K, n, span)) of the rows it
        completes (row relative to the window, columns from `x_off`), and slide to the next tile row."""
        p = self.plan
        top = p.ys[self.row]
        n = p.finished_rows(self.row) - top
        # weight 0 only where every covering tile was skipped (all nodata): 0, not NaN
        out = self.prob[:, :n] / self.wsum[:n].clamp_min(1e-12)
        keep = p.strip_height - n
        if keep:
            self.prob[:, :keep] = self.prob[:, n:].clone()
            self.wsum[:keep] = self.wsum[n:].clone()
        self.prob[:, keep:] = 0
        self.wsum[keep:] = 0
        self.row += 1
        return top, out
