"""Blending weights: a Hann (cosine) taper, so overlapping tiles fade into each other without seams.

Where a tile touches the edge of the processed window no other tile overlaps it, so that half of the
window is flat (1): border pixels get full weight instead of a near-zero one. A small floor keeps
every weight strictly positive (every pixel's weight sum is defined).
"""

from __future__ import annotations

import functools

import numpy as np
import torch

FLOOR = 1e-3


def hann_1d(n: int, flat_start: bool = False, flat_end: bool = False) -> np.ndarray:
    """sin^2 taper sampled at pixel centres (never exactly 0), flattened at window edges."""
    i = np.arange(n, dtype=np.float64)
    w = np.sin(np.pi * (i + 0.5) / n) ** 2
    half = n // 2
    if flat_start:
        w[:half] = 1.0
    if flat_end:
        w[n - half :] = 1.0
    return np.maximum(w, FLOOR).astype(np.float32)


@functools.lru_cache(maxsize=64)
def _weight(th: int, tw: int, top: bool, bottom: bool, left: bool, right: bool) -> np.ndarray:
    return np.outer(hann_1d(th, top, bottom), hann_1d(tw, left, right))


def tile_weight(
    th: int, tw: int, top: bool, bottom: bool, left: bool, right: bool, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """(th, tw) weights for a tile; the flags say which sides lie on the window's edge."""
    return torch.from_numpy(_weight(th, tw, top, bottom, left, right)).to(device)
