"""The random-forest baseline every fine-tuned model is compared with (SPEC §7).

Analysts already run a per-pixel random forest (dzetsaka, SCP, EnMAP-Box); a SpectralX model is only
worth using where it beats one trained on the same labelled pixels and scored on the same held-out
pixels. This module fits that forest on exactly the spectra the network sees (band-mapped and
normalized with the checkpoint's statistics), so the two numbers in a model card are comparable.

scikit-learn's forest is the reference implementation analysts know; it is imported lazily so that
inference never needs it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence

import numpy as np

from ..errors import SpectralXError
from ..model.forest import MAX_LEAF_NODES, ForestArrays, with_context_at
from .metrics import confusion, scores

# 200 trees: within 0.005 mIoU of 500 on the dev cases, and ~3 s for the 3 806 pixels x 218 bands of
# the EnMAP sample on 2 cores. sqrt(features) per split is scikit-learn's default for classification.
RF_TREES = 200
RF_MAX_TRAIN_PIXELS = 200_000  # keeps the fit under ~15 s on big label sets (stratified subsample)


@dataclass
class ForestResult:
    forest: Any
    seconds: float
    train_pixels: int


class MissingDependency(SpectralXError):
    """scikit-learn is not installed (the fine-tune still finishes; its card says so)."""


def _require_sklearn():
    try:
        from sklearn.ensemble import RandomForestClassifier
    except ImportError:
        raise MissingDependency(
            "the random-forest baseline needs scikit-learn (pip install scikit-learn); " "or skip it with --no-baseline"
        ) from None
    return RandomForestClassifier


def subsample(y: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of at most `limit` samples, the same share from every class (all of small classes)."""
    if len(y) <= limit:
        return np.arange(len(y))
    keep = []
    classes, counts = np.unique(y, return_counts=True)
    per_class = max(1, limit // len(classes))
    for k, n in zip(classes, counts):
        idx = np.nonzero(y == k)[0]
        keep.append(idx if n <= per_class else rng.choice(idx, per_class, replace=False))
    return np.sort(np.concatenate(keep))


def fit_forest(
    features: np.ndarray, labels: np.ndarray, seed: int = 0, trees: int = RF_TREES, jobs: Optional[int] = None
) -> ForestResult:
    """Fit on (N, C) spectra and (N,) class indices."""
    if len(labels) == 0:
        raise SpectralXError("no training pixel for the random-forest baseline")
    forest_cls = _require_sklearn()
    rng = np.random.default_rng(seed)
    idx = subsample(labels, RF_MAX_TRAIN_PIXELS, rng)
    t0 = time.perf_counter()
    rf = forest_cls(
        n_estimators=trees, n_jobs=jobs if jobs is not None else -1, random_state=seed, max_leaf_nodes=MAX_LEAF_NODES
    )
    rf.fit(np.asarray(features[idx], np.float32), labels[idx])
    return ForestResult(rf, time.perf_counter() - t0, int(len(idx)))


def predict_forest(result: ForestResult, features: np.ndarray, batch: int = 100_000) -> np.ndarray:
    out = np.empty(len(features), np.int64)
    for i in range(0, len(features), batch):
        out[i : i + batch] = result.forest.predict(np.asarray(features[i : i + batch], np.float32))
    return out


def pixels_of(scenes: Sequence, role: int, context: int = 0):
    """(N, C) spectra (with `context`: (N, 2C), spectra and neighbourhood means,
    spectralx.model.forest.with_context) and (N,) class indices of the scene pixels with the given
    role (1 train, 2 val)."""
    xs, ys = [], []
    for s in scenes:
        m = (s.role == role) & (s.y >= 0)
        if m.any():
            xs.append(with_context_at(s.x, context, m))
            ys.append(s.y[m].astype(np.int64))
    if not xs:
        width = (scenes[0].x.shape[0] if scenes else 0) * (2 if context else 1)
        return np.zeros((0, width), np.float32), np.zeros(0, np.int64)
    return np.concatenate(xs), np.concatenate(ys)


@dataclass
class Baseline:
    card: Dict[str, Any]  # the card's block: scores on the validation pixels
    forest: ForestArrays  # the fitted forest as arrays (deployable, fusable)
    val_proba: Optional[np.ndarray]  # (N, K) its probabilities on the validation pixels


def forest_baseline(
    scenes: Sequence,
    num_classes: int,
    class_values: Sequence[int],
    class_names: Sequence[str],
    seed: int = 0,
    context: int = 0,
) -> Baseline:
    """Fit on the training pixels of `scenes`, score on their validation pixels. `context` 0: the
    per-pixel forest every card reports (SPEC §7); 3, 5, 7: spectra plus the mean spectrum of that
    neighbourhood (the deployed forest's option)."""
    t0 = time.perf_counter()
    x_train, y_train = pixels_of(scenes, 1, context)
    x_val, y_val = pixels_of(scenes, 2, context)
    fit = fit_forest(x_train, y_train, seed=seed)
    arrays = ForestArrays.from_sklearn(fit.forest, num_classes, context)
    what = "per-pixel spectra" if not context else f"spectra + {context}x{context} neighbourhood mean spectrum"
    out: Dict[str, Any] = {
        "method": f"random forest on {what} (scikit-learn)",
        "trees": RF_TREES,
        "train_pixels": fit.train_pixels,
        "seed": seed,
        "max_leaf_nodes": MAX_LEAF_NODES,
        "context": context,
    }
    proba = None
    if len(y_val):
        proba = arrays.predict_proba(x_val)
        pred = proba.argmax(1)
        m = scores(confusion(y_val, pred, num_classes), list(class_values), list(class_names))
        out.update(
            {
                "val_miou": m["miou"],
                "val_oa": m["overall_accuracy"],
                "val_kappa": m["kappa"],
                "val_pixels": int(len(y_val)),
                "per_class_iou": {c["name"]: c["iou"] for c in m["per_class"] if c["in_reference"]},
            }
        )
    else:
        out["validation"] = "none: no pixel was held out, so the forest was not scored"
    out["seconds"] = round(time.perf_counter() - t0, 2)
    return Baseline(out, arrays, proba)


def _thousands(n: int) -> str:
    return f"{int(n):,}".replace(",", " ")


def comparison_line(metrics: Dict[str, Any]) -> str:
    """One line for logs, `info`, the dock and Processing: the model beside the forest, or why not."""
    rf = (metrics.get("baselines") or {}).get("random_forest") or {}
    if metrics.get("model") == "forest" and "val_miou" in metrics:  # a forest checkpoint
        return (
            f"random forest val mIoU {metrics['val_miou']:.3f} (OA {metrics['val_oa']:.3f}) on "
            f"{_thousands(metrics['val_pixels'])} validation pixels; no network in this model"
        )
    if "val_miou" not in metrics:
        return (
            "not validated: no polygon/region could be held out, so neither SpectralX nor the random "
            "forest was scored; draw more than one polygon per class or give validation images"
        )
    line = f"SpectralX val mIoU {metrics['val_miou']:.3f} (OA {metrics['val_oa']:.3f})"
    if "val_miou" in rf:
        gap = metrics["val_miou"] - rf["val_miou"]
        line += (
            f" · random forest {rf['val_miou']:.3f} (OA {rf['val_oa']:.3f}) on the same "
            f"{_thousands(metrics.get('val_pixels', rf.get('val_pixels', 0)))} validation pixels "
            f"({'+' if gap >= 0 else '−'}{abs(gap):.3f})"
        )
    elif rf:
        line += " · random forest not scored (" + rf.get("validation", "no validation pixels") + ")"
    else:
        line += f" on {_thousands(metrics.get('val_pixels', 0))} validation pixels (random-forest baseline skipped)"
    return line + fusion_clause(metrics)


def fusion_clause(metrics: Dict[str, Any]) -> str:
    """' · map: pooled (forest weight 0.4) 0.512, the best of the three on validation' or ''."""
    f = metrics.get("fusion")
    if not f:
        return ""
    v = f["val_miou"]
    what = {"network": "the network alone", "forest": "the random forest alone"}.get(
        f["map"], f"network + forest pooled (forest weight {f['weight']:g})"
    )
    best = f["best_on_validation"]
    return f" · map: {what}, val mIoU {v['fused']:.3f}" + (
        " (the best of network, forest and pool on validation)"
        if v["fused"] >= max(v.values()) - 1e-9
        else f" ({best} scores best on validation)"
    )
