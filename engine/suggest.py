"""Where to label next: N places where a new label helps the model most.

A pixel is worth labelling where the model is unsure (1 - the map's confidence) or where its two
views disagree (the network and the random forest pooled with it: half the L1 distance between
their class probabilities, 0 = same, 1 = no class in common). The score is the sum of the two,
averaged over a 3 x 3 neighbourhood so a point lands in an uncertain patch rather than on one noisy
pixel, and weighted by how uniform the map is around it (the share of the 5 x 5 neighbours predicted
the same class): a point on a mixed edge is hard to label and its polygon holds few pixels, while an
unsure patch inside one predicted region can be drawn and teaches the model a whole area. Points are then picked greedily, best score first, taking the classes in turn (the predicted
class of each point) and never closer than a minimum distance to a point already picked: spread in
space and across classes, so a round of labels does not pile up on one confused edge.

The raster (or the area given) is read into memory once, like a training scene; areas above a
memory bound are refused with the bound and the way out (a smaller area).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

from .errors import InputError, SpectralXError
from .progress import Progress, ensure

MAX_BYTES = 2 * 1024**3  # the normalized area in memory (float32, all model bands)
CANDIDATES_PER_POINT = 200  # best-scoring pixels considered per point asked for
LAYER = "suggestions"
REASONS = ("low confidence", "network and forest disagree")


@dataclass
class Suggestions:
    rows: np.ndarray  # pixel rows/cols in the raster (not the area)
    cols: np.ndarray
    xs: np.ndarray  # pixel centres in the raster's CRS
    ys: np.ndarray
    classes: np.ndarray  # predicted class value (the map's)
    confidence: np.ndarray  # the map's winning probability
    disagreement: np.ndarray  # network vs forest, 0..1 (0 without a forest)
    score: np.ndarray
    min_distance_px: float
    names: Dict[int, str] = field(default_factory=dict)
    colours: Dict[int, str] = field(default_factory=dict)
    crs_wkt: Optional[str] = None
    notes: List[str] = field(default_factory=list)
    output: Optional[str] = None

    def __len__(self) -> int:
        return len(self.rows)

    def reasons(self) -> List[str]:
        return [REASONS[1] if d > 1 - c else REASONS[0] for c, d in zip(self.confidence, self.disagreement)]


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def read_area(raster: str, card, band_map="auto", sensor: Optional[str] = None, bbox=None):
    """(x (C, h, w) normalized, valid (h, w), window, transform, crs wkt) of the area to score."""
    from rasterio.windows import Window, from_bounds

    from .inference.source import declares_nodata
    from .raster_io import open_raster
    from .training.rasters import mapping_for, normalize, read_mapped

    mapping = mapping_for(raster, card, band_map=band_map, sensor=sensor)
    with open_raster(raster) as ds:
        full = Window(0, 0, ds.width, ds.height)
        window = full
        if bbox is not None:
            window = from_bounds(*bbox, transform=ds.transform).round_offsets().round_lengths()
            try:
                window = window.intersection(full)
            except Exception:  # noqa: BLE001  (rasterio raises WindowError when they do not overlap)
                raise InputError(f"the area {tuple(bbox)} does not overlap {os.path.basename(raster)}") from None
        need = len(card.bands) * int(window.width) * int(window.height) * 4
        if need > MAX_BYTES:
            raise InputError(
                f"the area is {int(window.width)} x {int(window.height)} px x {len(card.bands)} bands "
                f"({need / 1024 ** 3:.1f} GiB in memory, at most {MAX_BYTES / 1024 ** 3:.0f}): choose a "
                "smaller area (a bounding box, or the current view in QGIS)"
            )
        raw = read_mapped(ds, mapping, window)
        fill_rule = not declares_nodata(ds, mapping.source_indexes)
        transform = ds.window_transform(window)
        crs = ds.crs.to_wkt() if ds.crs else None
    valid = np.isfinite(raw).all(0)
    if fill_rule:  # no nodata declared: a constant-zero collar is fill, not land cover
        valid &= ~(raw == 0).all(0)
    return normalize(raw, card.normalization), valid, window, transform, crs


def class_probabilities(
    model,
    card,
    x: np.ndarray,
    valid: np.ndarray,
    device: str = "cpu",
    batch_size: int = 8,
    progress: Optional[Progress] = None,
):
    """(map, network, forest) class probabilities (N, K) of the valid pixels (row-major); network or
    forest is None when the model has no such part."""
    from .model.forest import smoothed_log, with_context_at
    from .model.fusion import pool_numpy
    from .training.dataset import predict_logits

    progress = ensure(progress)
    tile = card.tile_size
    c, h, w = x.shape
    ph, pw = max(0, tile - h), max(0, tile - w)  # an area smaller than a tile: pad, mask the pad
    xp = np.pad(x, ((0, 0), (0, ph), (0, pw))) if ph or pw else x
    mask = np.pad(valid, ((0, ph), (0, pw))) if ph or pw else valid
    forest = getattr(model, "forest", None)
    p_forest = None
    if forest is not None:
        feats = with_context_at(xp, forest.context, mask) if forest.context else xp[:, mask].T
        p_forest = forest.predict_proba(np.ascontiguousarray(feats, dtype=np.float32))
    progress.check()
    if card.is_forest:
        return p_forest, None, p_forest
    weight = float(getattr(model, "fusion_weight", 0.0))
    model.fusion_weight = 0.0  # the network's own view
    try:
        logits = predict_logits(model, xp, mask, tile, device, batch_size=batch_size)
    finally:
        model.fusion_weight = weight
    progress.check()
    p_net = _softmax(logits.astype(np.float64))
    if p_forest is None or weight <= 0:
        return p_net, p_net, p_forest
    log_forest = smoothed_log(p_forest)
    return _softmax(pool_numpy(logits.astype(np.float64), log_forest, weight)), p_net, p_forest


def smooth(score: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """3 x 3 mean of the score over valid pixels (invalid pixels neither count nor get a score)."""
    s = torch.from_numpy(np.where(valid, score, 0.0)[None, None].astype(np.float32))
    n = torch.from_numpy(valid[None, None].astype(np.float32))
    num = torch.nn.functional.avg_pool2d(s, 3, 1, 1, count_include_pad=False)
    den = torch.nn.functional.avg_pool2d(n, 3, 1, 1, count_include_pad=False)
    out = (num / den.clamp_min(1e-6))[0, 0].numpy().astype(np.float64)
    out[~valid] = -np.inf
    return out


def uniformity(pred: np.ndarray, valid: np.ndarray, size: int = 5) -> np.ndarray:
    """Share of the valid pixels in each pixel's size x size window predicted the same class as it."""
    k = int(pred.max()) + 1 if pred.size else 1
    onehot = torch.nn.functional.one_hot(torch.from_numpy(pred.astype(np.int64)), k).permute(2, 0, 1).float()
    onehot = onehot * torch.from_numpy(valid.astype(np.float32))
    counts = torch.nn.functional.avg_pool2d(onehot[None], size, 1, size // 2, count_include_pad=True)[0]
    n = torch.nn.functional.avg_pool2d(
        torch.from_numpy(valid.astype(np.float32))[None, None], size, 1, size // 2, count_include_pad=True
    )[0, 0]
    same = counts.gather(0, torch.from_numpy(pred.astype(np.int64))[None])[0]
    return (same / n.clamp_min(1e-6)).numpy().astype(np.float64)


def place_scores(p_map: np.ndarray, p_net: Optional[np.ndarray], p_forest: Optional[np.ndarray], valid: np.ndarray):
    """(score, predicted class index, confidence, disagreement) per pixel of the area from the class
    probabilities of its valid pixels (rows of p_* in row-major order of `valid`)."""
    h, w = valid.shape
    conf = np.zeros((h, w))
    conf[valid] = p_map.max(1)
    pred = np.zeros((h, w), np.int64)
    pred[valid] = p_map.argmax(1)
    dis = np.zeros((h, w))
    if p_net is not None and p_forest is not None:
        dis[valid] = 0.5 * np.abs(p_net - p_forest).sum(1)
    score = smooth((1.0 - conf) + dis, valid)
    score[valid] *= uniformity(pred, valid)[valid]  # invalid pixels stay -inf
    return score, pred, conf, dis


def spread(score: np.ndarray, pred: np.ndarray, n: int, min_distance: float) -> List[int]:
    """Flat indices of up to n pixels: classes in turn (the class whose best remaining pixel scores
    highest first), each the best pixel of its class at least `min_distance` px from every pick."""
    h, w = score.shape
    flat = score.ravel()
    finite = np.flatnonzero(np.isfinite(flat))
    if not len(finite):
        return []
    m = min(len(finite), max(2000, CANDIDATES_PER_POINT * n))
    top = finite[np.argpartition(-flat[finite], m - 1)[:m]] if m < len(finite) else finite
    top = top[np.argsort(-flat[top], kind="stable")]
    queues: Dict[int, List[int]] = {}
    for i in top:
        queues.setdefault(int(pred.ravel()[i]), []).append(int(i))
    heads = {k: 0 for k in queues}
    picked: List[int] = []
    pr, pc = np.zeros(0), np.zeros(0)
    d2 = float(min_distance) ** 2
    while len(picked) < n:
        live = [k for k in queues if heads[k] < len(queues[k])]
        if not live:
            break
        live.sort(key=lambda k: -flat[queues[k][heads[k]]])
        for k in live:
            q = queues[k]
            while heads[k] < len(q):
                i = q[heads[k]]
                heads[k] += 1
                r, c = divmod(i, w)
                if not len(picked) or ((pr - r) ** 2 + (pc - c) ** 2).min() >= d2:
                    picked.append(i)
                    pr, pc = np.append(pr, r), np.append(pc, c)
                    break
            if len(picked) >= n:
                break
    return picked


def default_min_distance(valid_pixels: int, n: int) -> float:
    """Half the spacing of n points spread evenly over the valid pixels (at least 2 px)."""
    return max(2.0, 0.5 * math.sqrt(max(valid_pixels, 1) / max(n, 1)))


def suggest(
    raster: str,
    checkpoint: Optional[str],
    *,
    n: int = 20,
    min_distance: Optional[float] = None,
    backbone: Optional[str] = None,
    band_map: Any = "auto",
    sensor: Optional[str] = None,
    bbox: Optional[Sequence[float]] = None,
    device: str = "auto",
    batch_size: int = 8,
    model=None,
    progress: Optional[Progress] = None,
) -> Suggestions:
    """Score `raster` (or the part in `bbox`, raster CRS) with a checkpoint and pick n places to label.
    `min_distance` in the raster's map units (default: half the even spacing of n points).
    `model=(module, card)` uses an already loaded model."""
    from .checkpoint import load_checkpoint, read_card
    from .training.common import pick_device

    progress = ensure(progress)
    if n < 1:
        raise InputError(f"the number of points must be at least 1, not {n}")
    if min_distance is not None and not (min_distance >= 0 and math.isfinite(min_distance)):
        raise InputError(f"the minimum distance must be 0 or more map units, not {min_distance}")
    card = model[1] if model is not None else read_card(checkpoint)
    progress.update(0, 3, "reading the raster")
    x, valid, window, transform, crs = read_area(raster, card, band_map, sensor, bbox)
    if not valid.any():
        raise InputError(f"{os.path.basename(raster)} has no valid pixel in the area (all nodata)")
    progress.check()
    dev = str(pick_device(device))
    net = model[0] if model is not None else load_checkpoint(checkpoint, backbone=backbone, device=dev)[0]
    net = net.to(dev).eval()
    progress.update(1, 3, "predicting")
    with torch.no_grad():
        p_map, p_net, p_forest = class_probabilities(net, card, x, valid, dev, batch_size, progress)
    h, w = valid.shape
    progress.update(2, 3, "choosing places")
    score, pred, conf, dis = place_scores(p_map, p_net, p_forest, valid)
    pixel = abs(transform.a)
    min_px = default_min_distance(int(valid.sum()), n) if min_distance is None else min_distance / pixel
    picked = spread(score, pred, n, min_px)
    notes = []
    if len(picked) < n:
        notes.append(
            f"only {len(picked)} of {n} places are {min_px * pixel:g} map units apart in this area: "
            "lower the minimum distance or choose a larger area"
        )
    rr, cc = np.divmod(np.array(picked, dtype=np.int64), w)
    xs, ys = transform * (cc + 0.5, rr + 0.5)
    values = [c.value for c in card.classes]
    progress.update(3, 3, f"{len(picked)} places")
    return Suggestions(
        rows=rr + int(window.row_off),
        cols=cc + int(window.col_off),
        xs=np.asarray(xs),
        ys=np.asarray(ys),
        classes=np.array([values[k] for k in pred.ravel()[picked]], np.int64),
        confidence=conf.ravel()[picked],
        disagreement=dis.ravel()[picked],
        score=score.ravel()[picked],
        min_distance_px=float(min_px),
        names={c.value: c.name for c in card.classes},
        colours={c.value: c.color for c in card.classes},
        crs_wkt=crs,
        notes=notes,
    )


def save(s: Suggestions, path: str) -> str:
    """A GeoPackage point layer: rank (best first), the map's class and confidence, the network/forest
    disagreement, why the place was picked, and an empty `label` (a drop-down of the classes) to fill;
    styled by predicted class. Written under a temporary name and renamed when complete."""
    from .fileio import atomic_output
    from .vector_io import write_layer_style, write_points
    from .vector_styles import categorized_qml

    k = len(s)
    fields = {
        "rank": list(range(1, k + 1)),
        "map_value": [int(v) for v in s.classes],
        "map_class": [s.names.get(int(v), str(int(v))) for v in s.classes],
        "confidence": [round(float(v), 4) for v in s.confidence],
        "disagreement": [round(float(v), 4) for v in s.disagreement],
        "score": [round(float(v), 4) for v in s.score],
        "reason": s.reasons(),
        "label": [None] * k,
        "row": [int(r) for r in s.rows],
        "col": [int(c) for c in s.cols],
    }
    if not k:
        raise SpectralXError("no place to suggest: the area has no valid pixel")
    with atomic_output(path, ".gpkg") as tmp:
        write_points(tmp, s.xs, s.ys, fields, s.crs_wkt, layer_name=LAYER)
        write_layer_style(
            tmp, LAYER, categorized_qml("map_value", s.names, s.colours, kind="target", value_map_field="label")
        )
    s.output = path
    return path
