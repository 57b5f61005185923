"""The forest's log-probabilities for the overlapping tiles of one strip chunk, each pixel's trees
walked once.

`forest_log_proba` on a batch of tiles walks every tree for every pixel of every tile: at the default
overlap of 0.5 a pixel lies in about four tiles, so the forest (200 trees, tens of µs per pixel) did
four times the work it needs and took most of a fused model's time. Here the trees are walked once per
pixel of the chunk the reader produced (a tile row, several tiles wide). The result is the per-tile
one: a pixel's context features (the mean spectrum of its neighbourhood, `with_context`) depend on
its tile only within `context // 2` columns of the tile's left and right edges (the chunk has the
tile's rows, so top and bottom edges are the same), and those columns are computed again from the
tile alone. Values agree with `forest_log_proba` up to float rounding (tests/test_forest_tiles.py).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from .forest import ForestArrays, with_context, with_context_at

# tiles per piece of the chunk: the context features of a piece (2 x bands x tile x width float32)
# stay the size of a batch's, however wide the chunk (a whole block's width in one read)
PIECE_TILES = 8


def tiles_log_proba(
    forest: ForestArrays, chunk: torch.Tensor, x0s: Sequence[int], tile: int, floor: float
) -> torch.Tensor:
    """chunk (C, >=tile, W) normalized, tiles at columns x0s (ascending) -> (n, K, tile, tile) float32
    log of the smoothed forest probabilities, on the chunk's device, as `forest_log_proba` gives them
    for the stacked tiles."""
    arr = chunk.detach()[:, :tile].float().cpu().numpy()
    k = forest.num_classes
    out = np.empty((len(x0s), tile, tile, k), np.float64)
    for p in range(0, len(x0s), PIECE_TILES):
        piece = list(x0s[p : p + PIECE_TILES])
        out[p : p + len(piece)] = _piece(forest, arr, piece, tile)
    out = (out + floor) / (1 + floor * k)
    logp = torch.from_numpy(np.log(out).astype(np.float32)).permute(0, 3, 1, 2).contiguous()
    return logp.to(chunk.device)


def _piece(forest: ForestArrays, arr: np.ndarray, x0s: Sequence[int], tile: int) -> np.ndarray:
    """(n, tile, tile, K) probabilities of consecutive tiles of one piece of the chunk."""
    size = forest.context
    r = size // 2 if size else 0
    w = arr.shape[2]
    # the piece's columns with r columns of the chunk either side, so its context is the chunk's
    a, b = max(0, x0s[0] - r), min(w, x0s[-1] + tile + r)
    feats = with_context(arr[:, :, a:b], size) if size else arr[:, :, a:b]
    # only the columns some tile covers (tiles beside skipped all-nodata ones leave gaps)
    cover = np.zeros(b - a, bool)
    for x0 in x0s:
        cover[x0 - a : x0 - a + tile] = True
    cols = np.flatnonzero(cover)
    flat = feats[:, :, cols].transpose(1, 2, 0).reshape(-1, feats.shape[0])
    probs = np.zeros((tile, b - a, forest.num_classes), np.float64)
    probs[:, cols] = forest.predict_proba(flat).reshape(tile, len(cols), -1)
    out = np.stack([probs[:, x0 - a : x0 - a + tile] for x0 in x0s])
    if r:
        # the tile's own context in its r edge columns on either side (the neighbourhood stops at the
        # tile's edge there, as in `forest_log_proba`)
        edge = np.zeros((tile, tile), bool)
        edge[:, :r] = edge[:, tile - r :] = True
        for i, x0 in enumerate(x0s):
            out[i][edge] = forest.predict_proba(with_context_at(arr[:, :, x0 : x0 + tile], size, edge))
    return out
