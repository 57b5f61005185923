"""Raw raster values -> normalized checkpoint bands, with nodata handling.

Order (docs/engine-interfaces.md): band mapping `x = weights @ x_read`, filled bands take the
normalization mean, scene-level normalization from the model card, then nodata inputs -> 0. The same
statistics are used for every tile, so neighbouring tiles agree (no per-tile min-max seams).
Training reads its chips through the same `mix` and `normalize` (spectralx.training.rasters), so the
two can never drift apart.
"""

from __future__ import annotations

from typing import Optional, Tuple

import numpy as np

from ..errors import CheckpointError


class Preparer:
    """Applies one band mapping and one normalization to (S, h, w) blocks of raw values."""

    def __init__(self, weights: np.ndarray, fill, normalization):
        self.weights = np.asarray(weights, dtype=np.float32)
        c, s = self.weights.shape
        self.identity = c == s and np.array_equal(self.weights, np.eye(c, dtype=np.float32))
        self.uses = (np.abs(self.weights) > 0).astype(np.float32)  # which read bands feed each band
        self.fill = np.asarray(list(fill) if fill is not None else [False] * c, dtype=bool)
        n = normalization
        # zscore without statistics is a no-op (a card written before statistics were computed)
        self.zscore = n is not None and n.method == "zscore" and bool(n.mean)
        if self.zscore:
            if len(n.mean) != c or len(n.std) != c:
                raise CheckpointError(
                    f"model card normalization has {len(n.mean)} means/{len(n.std)} stds " f"for {c} bands"
                )
            std = np.asarray(n.std, dtype=np.float32)
            std = np.where(std > 0, std, 1.0).astype(np.float32)
            self.scale = (1.0 / std).reshape(c, 1, 1)
            self.shift = (-np.asarray(n.mean, dtype=np.float32) / std).reshape(c, 1, 1)
            self.clip = float(n.clip) if n.clip else None
        elif n is not None and n.method not in ("none", "zscore", None):
            raise CheckpointError(f"unknown normalization method '{n.method}' in the model card")

    @property
    def bands(self) -> int:
        return self.weights.shape[0]

    def mix(self, raw: np.ndarray, invalid: Optional[np.ndarray]) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """raw (S, h, w) float32 (modified), invalid (S, h, w) bool or None -> (x (C, h, w) mapped but
        not normalized, bad (C, h, w) bool or None: values fed by a nodata source, or filled bands)."""
        s, h, w = raw.shape
        if invalid is not None:
            raw[invalid] = 0.0  # keep nodata values (e.g. -9999, NaN) out of the band mixing
        x = raw if self.identity else np.tensordot(self.weights, raw, axes=1).astype(np.float32, copy=False)
        bad = None
        if invalid is not None and invalid.any():
            bad = (self.uses @ invalid.reshape(s, -1).astype(np.float32)).reshape(x.shape) > 0
        if self.fill.any():
            bad = np.zeros(x.shape, dtype=bool) if bad is None else bad
            bad[self.fill] = True  # filled band = the mean, i.e. 0 after normalization
        return x, bad

    def normalize(self, x: np.ndarray) -> np.ndarray:
        """The card's scene-level normalization of mapped values, in place."""
        if self.zscore:
            x *= self.scale
            x += self.shift
            if self.clip:
                np.clip(x, -self.clip, self.clip, out=x)
        return x

    def __call__(self, raw: np.ndarray, invalid: Optional[np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
        """raw (S, h, w) float32 (modified), invalid (S, h, w) bool or None -> (x (C, h, w), valid (h, w))."""
        x, bad = self.mix(raw, invalid)
        self.normalize(x)
        if bad is not None:
            x[bad] = 0.0
        h, w = raw.shape[1:]
        return x, (np.ones((h, w), dtype=bool) if invalid is None else ~invalid.all(axis=0))
