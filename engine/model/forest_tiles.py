"""The forest's log-probabilities for the overlapping tiles of one strip chunk, each pixel's trees
walked about once.

`forest_log_proba` on a batch of tiles walks every tree for every pixel of every tile: at the default
overlap of 0.5 a pixel lies in about four tiles, so the forest (200 trees, tens of µs per pixel) did
four times the work it needs and took most of a fused model's time. Here the trees are walked once per
pixel of the chunk the reader produced (a tile row, several tiles wide), and rows the previous tile
row's chunk already walked are taken from it (`StripCache`, at most 64 MB in all).

The result is the per-tile one. A pixel's context features (the mean spectrum of its neighbourhood,
`with_context`) depend on its tile only within `context // 2` pixels of the tile's edges: the left
and right edge columns are computed again from the tile alone; the chunk has the tile's rows, so the
top and bottom edges are the chunk's own, and a row is taken from the previous chunk only where its
whole neighbourhood lies inside both chunks. Values agree with `forest_log_proba` up to float
rounding (tests/test_forest_tiles.py).
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch

from .forest import ForestArrays, smoothed_log, with_context, with_context_at

# tiles per piece of the chunk: the context features of a piece (2 x bands x tile x width float32)
# stay the size of a batch's, however wide the chunk (a whole block's width in one read)
PIECE_TILES = 8
# the most a StripCache keeps in all (tile x chunk width x classes float64 per chunk of a tile row):
# chunks beyond it are not kept, and their next tile row walks every pixel again, so the cache adds a
# bounded amount to the memory plan whatever the raster's width
CACHE_LIMIT_BYTES = 64 << 20


class StripCache:
    """The last tile row's chunk probabilities, by chunk (its first tile column): one per pipeline run."""

    def __init__(self) -> None:
        self.chunks: Dict[object, Tuple[int, np.ndarray, np.ndarray]] = {}  # key -> (y0, probs, have)

    def known(self, key, y0: int, tile: int, width: int, rr: int) -> Optional[Tuple[np.ndarray, np.ndarray]]:
        """(probs (tile, width, K), have (tile, width)) for the chunk at row y0 from the one above it,
        `have` true where a value may be reused: rows whose (2 rr + 1)-row neighbourhood lies inside
        both chunks, columns the one above walked."""
        if key not in self.chunks:
            return None
        y_prev, probs, have = self.chunks[key]
        d = y0 - y_prev
        lo, hi = rr, tile - d - rr
        if not 0 < d < tile or hi <= lo or probs.shape[1] != width:
            return None
        kp = np.zeros_like(probs)
        kh = np.zeros_like(have)
        kp[lo:hi], kh[lo:hi] = probs[lo + d : hi + d], have[lo + d : hi + d]
        return kp, kh

    def keep(self, key, y0: int, probs: np.ndarray, have: np.ndarray) -> None:
        self.chunks.pop(key, None)
        others = sum(p.nbytes + h.nbytes for _, p, h in self.chunks.values())
        if others + probs.nbytes + have.nbytes <= CACHE_LIMIT_BYTES:
            self.chunks[key] = (y0, probs, have)


def tiles_log_proba(
    forest: ForestArrays,
    chunk: torch.Tensor,
    x0s: Sequence[int],
    tile: int,
    floor: float,
    cache: Optional[StripCache] = None,
    at: Optional[Tuple[int, object]] = None,
) -> torch.Tensor:
    """chunk (C, >=tile, W) normalized, tiles at columns x0s (ascending) -> (n, K, tile, tile) float32
    log of the smoothed forest probabilities, on the chunk's device, as `forest_log_proba` gives them
    for the stacked tiles. With `cache` and `at` = (the chunk's first row in the window, a key for its
    columns), rows the previous tile row's chunk of the same columns walked are taken from it."""
    arr = chunk.detach()[:, :tile].float().cpu().numpy()
    k, w = forest.num_classes, arr.shape[2]
    known = cache.known(at[1], at[0], tile, w, forest.context // 2) if cache is not None and at is not None else None
    probs = np.zeros((tile, w, k), np.float64)  # the chunk's probabilities (context from the chunk)
    have = np.zeros((tile, w), bool)
    out = np.empty((len(x0s), tile, tile, k), np.float64)
    for p in range(0, len(x0s), PIECE_TILES):
        piece = list(x0s[p : p + PIECE_TILES])
        out[p : p + len(piece)] = _piece(forest, arr, piece, tile, known, probs, have)
    if cache is not None and at is not None:
        cache.keep(at[1], at[0], probs, have)
    logp = torch.from_numpy(smoothed_log(out, floor).astype(np.float32))
    return logp.permute(0, 3, 1, 2).contiguous().to(chunk.device)


def _piece(forest, arr, x0s, tile, known, probs, have) -> np.ndarray:
    """(n, tile, tile, K) probabilities of consecutive tiles of one piece of the chunk; fills the
    chunk's `probs` and `have` at the columns the piece's tiles cover."""
    size = forest.context
    rr = size // 2  # 0 without context
    w = arr.shape[2]
    # the piece's columns with rr columns of the chunk either side, so its context is the chunk's
    a, b = max(0, x0s[0] - rr), min(w, x0s[-1] + tile + rr)
    feats = with_context(arr[:, :, a:b], size) if size else arr[:, :, a:b]
    need = np.zeros((tile, b - a), bool)  # pixels some tile covers (skipped tiles leave gaps)
    for x0 in x0s:
        need[:, x0 - a : x0 - a + tile] = True
    mine = need.copy()
    local = np.zeros((tile, b - a, forest.num_classes), np.float64)
    if known is not None:  # rows the tile row above walked
        kp, kh = known
        reuse = need & kh[:, a:b]
        local[reuse] = kp[:, a:b][reuse]
        need &= ~reuse
    # pixels an earlier piece of this chunk walked (its last tile overlaps this piece's first)
    done = need & have[:, a:b]
    local[done] = probs[:, a:b][done]
    need &= ~done
    if need.any():
        local[need] = forest.predict_proba(feats[:, need].T)
    probs[:, a:b][mine] = local[mine]
    have[:, a:b] |= mine
    out = np.stack([local[:, x0 - a : x0 - a + tile] for x0 in x0s])
    if rr:
        # the tile's own context in its rr edge columns on either side (the neighbourhood stops at
        # the tile's edge there, as in `forest_log_proba`)
        edge = np.zeros((tile, tile), bool)
        edge[:, :rr] = edge[:, tile - rr :] = True
        for i, x0 in enumerate(x0s):
            out[i][edge] = forest.predict_proba(with_context_at(arr[:, :, x0 : x0 + tile], size, edge))
    return out
