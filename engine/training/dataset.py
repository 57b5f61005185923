"""Training scenes in memory, the region-wise train/validation split, chip sampling and tiled prediction.

A scene is the labelled part of one image (plus a margin), read through the band mapping and
normalized, padded so that any chip of the tile size around a labelled pixel fits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

IGNORE = -1


@dataclass
class Scene:
    image: str
    labels: str
    x: np.ndarray  # (C, Hp, Wp) float16/32, normalized, nodata = 0
    y: np.ndarray  # (Hp, Wp) int16 class index, IGNORE where unlabelled
    region: np.ndarray  # (Hp, Wp) int64 global region id, 0 = none
    role: np.ndarray = field(default=None)  # (Hp, Wp) uint8: 0 none, 1 train, 2 validation
    window: Tuple[int, int, int, int] = (0, 0, 0, 0)  # col_off, row_off, width, height (image grid)
    pad: int = 0


def label_window(bbox: Tuple[int, int, int, int], margin: int, width: int, height: int):
    """Image window around a labelled pixel bbox (row0, col0, row1, col1) with a margin, clipped."""
    from rasterio.windows import Window

    r0, c0, r1, c1 = bbox
    r0, c0 = max(0, r0 - margin), max(0, c0 - margin)
    r1, c1 = min(height, r1 + margin), min(width, c1 + margin)
    return Window(c0, r0, c1 - c0, r1 - r0)


def pad_scene(x: np.ndarray, y: np.ndarray, region: np.ndarray, tile: int):
    """Pad by tile//2 all round (and more if the scene is smaller than a tile)."""
    p = tile // 2
    h, w = y.shape
    extra_h = max(0, tile - (h + 2 * p))
    extra_w = max(0, tile - (w + 2 * p))
    ph = (p, p + extra_h)
    pw = (p, p + extra_w)
    x = np.pad(x, ((0, 0), ph, pw))
    y = np.pad(y, (ph, pw), constant_values=IGNORE)
    region = np.pad(region, (ph, pw))
    return x, y, region, p


# ---------------------------------------------------------------------------------------------
# split


@dataclass
class SplitReport:
    train_pixels: int = 0
    val_pixels: int = 0
    train_regions: int = 0
    val_regions: int = 0
    per_class: Dict[int, Dict[str, int]] = field(default_factory=dict)  # class index -> counts
    notes: List[str] = field(default_factory=list)
    cut_regions: int = 0  # polygons/regions split in space (far part validates): optimistic scores


def _region_table(scenes: Sequence[Scene], num_classes: int):
    """(region ids, majority class, pixel count) of every labelled region of the scenes."""
    ids, cls, counts = [], [], []
    for s in scenes:
        m = (s.region > 0) & (s.y >= 0)
        if not m.any():
            continue
        r = s.region[m]
        c = s.y[m].astype(np.int64)
        uniq, inv = np.unique(r, return_inverse=True)
        table = np.zeros((len(uniq), num_classes), np.int64)
        np.add.at(table, (inv, c), 1)
        ids.append(uniq)
        cls.append(table.argmax(1))
        counts.append(table.sum(1))
    if not ids:
        return None
    return np.concatenate(ids), np.concatenate(cls), np.concatenate(counts)


def _validation_regions(ids, cls, counts, num_classes: int, val_fraction: float, rng: np.random.Generator):
    """(region ids held out whole, {region id: class} of regions to split in space): per class, regions
    at random until about `val_fraction` of its pixels, always leaving one to train on."""
    val_ids: List[int] = []
    cut_regions: Dict[int, int] = {}  # region id -> class: split in space rather than held out whole
    if val_fraction <= 0:
        return val_ids, cut_regions
    for k in range(num_classes):
        sel = np.nonzero(cls == k)[0]
        if len(sel) == 0:
            continue
        if len(sel) == 1:
            cut_regions[int(ids[sel[0]])] = k
            continue
        total = counts[sel].sum()
        target = val_fraction * total
        order = rng.permutation(sel)
        got = 0
        chosen: List[int] = []
        for j in order:
            if len(chosen) >= len(sel) - 1:
                break
            if got >= target:
                break
            if got + counts[j] <= 1.5 * target or not chosen and counts[j] <= 0.5 * total:
                chosen.append(j)
                got += counts[j]
        if not chosen:  # every region is large: take the smallest unless it is most of the class
            j = sel[np.argmin(counts[sel])]
            if counts[j] <= 0.6 * total:
                chosen.append(j)
        val_ids.extend(int(ids[j]) for j in chosen)
        if not chosen:
            cut_regions[int(ids[sel[np.argmax(counts[sel])]])] = k
    return val_ids, cut_regions


def split_regions(
    scenes: Sequence[Scene], num_classes: int, val_fraction: float, rng: np.random.Generator, class_names: Sequence[str]
) -> SplitReport:
    """Assign whole regions (polygons / connected label regions) to training or validation.

    Stratified by each region's majority class: per class, regions are drawn at random into
    validation until about `val_fraction` of the class's pixels are there, always leaving at least
    one region of the class for training. No region is ever split, so no validation pixel shares a
    polygon with a training pixel. Sets `scene.role`.
    """
    report = SplitReport()
    table = _region_table(scenes, num_classes)
    if table is None:
        return report
    ids = table[0]
    val_ids, cut_regions = _validation_regions(*table, num_classes, val_fraction, rng)
    val_set = np.array(sorted(val_ids), dtype=np.int64)
    split_done = set()
    for s in scenes:
        labelled = (s.y >= 0) & (s.region > 0)
        is_val = labelled & np.isin(s.region, val_set)
        for rid in cut_regions:
            far = far_part(s.region == rid, val_fraction)
            if far.any():
                split_done.add(rid)
                is_val |= far
        s.role = np.where(is_val, 2, np.where(labelled, 1, 0)).astype(np.uint8)
        for k in range(num_classes):
            d = report.per_class.setdefault(k, {"train": 0, "val": 0})
            d["train"] += int(((s.role == 1) & (s.y == k)).sum())
            d["val"] += int(((s.role == 2) & (s.y == k)).sum())
    for rid, k in cut_regions.items():
        if rid not in split_done:
            report.notes.append(
                f"class '{class_names[k]}' has a single polygon/region too small to split: all "
                "of it trains, none validates"
            )
            continue
        report.notes.append(
            f"class '{class_names[k]}' has no polygon/region to hold out whole: the far {val_fraction:.0%} of "
            "its largest one (along its longer axis) validates, the rest trains (validation pixels next to "
            "training pixels score optimistically: draw more polygons for a fair score)"
        )
    report.cut_regions = len(split_done)
    report.train_pixels = sum(d["train"] for d in report.per_class.values())
    report.val_pixels = sum(d["val"] for d in report.per_class.values())
    report.val_regions = len(val_set)
    report.train_regions = int(len(ids) - len(val_set))
    return report


def far_part(mask: np.ndarray, fraction: float) -> np.ndarray:
    """The pixels of `mask` beyond its (1 - fraction) quantile along its longer axis: one end of a
    polygon, held out when a class has nothing else to validate on (the bench's half-polygon split)."""
    rr, cc = np.nonzero(mask)
    out = np.zeros(mask.shape, bool)
    if len(rr) < 2:
        return out
    axis = rr if (rr.max() - rr.min()) >= (cc.max() - cc.min()) else cc
    far = axis > np.quantile(axis, 1 - fraction)
    if not far.any() or far.all():
        return out
    out[rr[far], cc[far]] = True
    return out


# ---------------------------------------------------------------------------------------------
# sampling


class ChipSampler:
    """Chips of the tile size around training pixels, stratified by class, with flips/rotations."""

    def __init__(
        self,
        scenes: Sequence[Scene],
        num_classes: int,
        tile: int,
        rng: np.random.Generator,
        augment: bool = True,
        spectral_jitter: float = 0.0,
    ):
        self.scenes = list(scenes)
        self.tile = tile
        self.rng = rng
        self.augment = augment
        # per-chip, per-band gain and offset noise on the normalized spectra (z-scores): illumination
        # and calibration differences a few hundred labelled pixels never show
        self.spectral_jitter = float(spectral_jitter)
        self.pools: Dict[int, List[np.ndarray]] = {}
        for k in range(num_classes):
            rows = []
            for si, s in enumerate(self.scenes):
                rr, cc = np.nonzero((s.role == 1) & (s.y == k))
                if len(rr):
                    rows.append(np.stack([np.full_like(rr, si), rr, cc], 1))
            if rows:
                self.pools[k] = np.concatenate(rows)
        self.classes = sorted(self.pools)

    def chip(self, si: int, r: int, c: int) -> Tuple[np.ndarray, np.ndarray]:
        s = self.scenes[si]
        t = self.tile
        hp, wp = s.y.shape
        # the labelled pixel lands anywhere in the central half of the chip
        r0 = int(r - self.rng.integers(t // 4, t - t // 4))
        c0 = int(c - self.rng.integers(t // 4, t - t // 4))
        r0 = min(max(r0, 0), hp - t)
        c0 = min(max(c0, 0), wp - t)
        x = s.x[:, r0 : r0 + t, c0 : c0 + t]
        y = s.y[r0 : r0 + t, c0 : c0 + t].astype(np.int64)
        y = np.where(s.role[r0 : r0 + t, c0 : c0 + t] == 1, y, IGNORE)  # validation pixels never train
        return x, y

    def batch(self, batch_size: int) -> Tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        for _ in range(batch_size):
            k = self.classes[int(self.rng.integers(len(self.classes)))]
            pool = self.pools[k]
            si, r, c = pool[int(self.rng.integers(len(pool)))]
            x, y = self.chip(int(si), int(r), int(c))
            if self.augment:
                if self.rng.random() < 0.5:
                    x, y = x[:, :, ::-1], y[:, ::-1]
                if self.rng.random() < 0.5:
                    x, y = x[:, ::-1, :], y[::-1, :]
                rot = int(self.rng.integers(4))
                if rot:
                    x, y = np.rot90(x, rot, axes=(1, 2)), np.rot90(y, rot)
            if self.spectral_jitter:
                c = x.shape[0]
                gain = 1 + self.spectral_jitter * self.rng.standard_normal((c, 1, 1))
                offset = self.spectral_jitter * self.rng.standard_normal((c, 1, 1))
                x = (x.astype(np.float32) * gain + offset).astype(np.float32)
            xs.append(np.ascontiguousarray(x))
            ys.append(np.ascontiguousarray(y))
        return torch.from_numpy(np.stack(xs)).float(), torch.from_numpy(np.stack(ys))


# ---------------------------------------------------------------------------------------------
# prediction over a scene


def tile_origins(mask: np.ndarray, tile: int, stride: Optional[int] = None) -> List[Tuple[int, int]]:
    """Tile origins (row, col) covering every True pixel of `mask` (array at least tile x tile)."""
    stride = stride or tile
    h, w = mask.shape
    rows = np.nonzero(mask.any(1))[0]
    cols = np.nonzero(mask.any(0))[0]
    if not len(rows):
        return []
    out = []
    r_starts = list(range(int(rows[0]), int(rows[-1]) + 1, stride))
    c_starts = list(range(int(cols[0]), int(cols[-1]) + 1, stride))
    for r in r_starts:
        for c in c_starts:
            r0, c0 = min(r, h - tile), min(c, w - tile)
            if mask[r0 : r0 + tile, c0 : c0 + tile].any():
                out.append((r0, c0))
    return out


def predict_mask(model, x: np.ndarray, mask: np.ndarray, tile: int, device, batch_size: int = 8) -> np.ndarray:
    """Class index per pixel where `mask` is True (IGNORE elsewhere); non-overlapping tiles."""
    out = np.full(mask.shape, IGNORE, np.int16)
    logits = predict_logits(model, x, mask, tile, device, batch_size)
    if len(logits):
        out[mask] = logits.argmax(1).astype(np.int16)
    return out


@torch.no_grad()
def predict_logits(model, x: np.ndarray, mask: np.ndarray, tile: int, device, batch_size: int = 8) -> np.ndarray:
    """(N, K) logits of the pixels where `mask` is True, in row-major order of the mask."""
    origins = tile_origins(mask, tile)
    was_training = model.training
    model.eval()
    k = None
    out = None
    for i in range(0, len(origins), batch_size):
        part = origins[i : i + batch_size]
        xb = torch.from_numpy(np.stack([x[:, r : r + tile, c : c + tile] for r, c in part])).float().to(device)
        logits = model(xb).float().cpu().numpy()
        if out is None:
            k = logits.shape[1]
            out = np.zeros((k,) + mask.shape, np.float32)
        for (r, c), lg in zip(part, logits):
            m = mask[r : r + tile, c : c + tile]
            view = out[:, r : r + tile, c : c + tile]
            view[:, m] = lg[:, m]
    if was_training:
        model.train()
    if out is None:
        return np.zeros((0, 0), np.float32)
    return out[:, mask].T
