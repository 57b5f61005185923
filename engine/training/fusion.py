"""Choosing how much of the random forest to pool with the network, on the validation pixels only.

The pool (spectralx.model.fusion) is scored for every weight of a small grid; the best validation
mIoU wins. The grid holds 0 (the network alone) and 1 (the forest alone), so the model a checkpoint
deploys is whichever of the three scores best on the user's own held-out pixels, and the card shows
all three side by side. Ties go to the weight nearest 0.5: an even pool is steadier than either
model alone from one training run to the next (docs/deviations.md).
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import numpy as np

from ..model.forest import PROBA_FLOOR
from ..model.fusion import WEIGHT_GRID, pool_numpy
from .metrics import confusion, scores

WHICH = {0.0: "network", 1.0: "forest"}


def choose_fusion(net_logits: np.ndarray, forest_proba: Optional[np.ndarray], labels: np.ndarray,
                  class_values: Sequence[int], class_names: Sequence[str],
                  grid: Sequence[float] = WEIGHT_GRID) -> Optional[Dict[str, Any]]:
    """The card's `fusion` block (weight, the three validation scores, the grid); None without
    validation pixels or forest."""
    if forest_proba is None or len(labels) == 0 or net_logits.shape != forest_proba.shape:
        return None
    k = net_logits.shape[1]
    flog = np.log((forest_proba + PROBA_FLOOR) / (1 + PROBA_FLOOR * k))
    tried = []
    for w in grid:
        pred = pool_numpy(net_logits, flog, w).argmax(1)
        tried.append((float(w), scores(confusion(labels, pred, k), list(class_values), list(class_names))))
    by_weight = dict(tried)
    best_w, best = max(tried, key=lambda t: (round(t[1]["miou"], 6), -abs(t[0] - 0.5)))
    three = {"network": by_weight[0.0], "forest": by_weight[1.0], "fused": best}
    winner = max(("fused", "network", "forest"), key=lambda n: round(three[n]["miou"], 6))
    return {
        "weight": best_w,
        "map": WHICH.get(best_w, "fused"),
        "val_miou": {n: round(float(m["miou"]), 4) for n, m in three.items()},
        "val_oa": {n: round(float(m["overall_accuracy"]), 4) for n, m in three.items()},
        "best_on_validation": winner,
        "per_class_iou": {n: {c["name"]: round(float(c["iou"]), 4) for c in m["per_class"] if c["in_reference"]}
                          for n, m in three.items()},
        "grid": [[w, round(float(m["miou"]), 4)] for w, m in tried],
        "val_pixels": int(len(labels)),
        "method": "log-linear pool (1 - w) log p_network + w log p_forest, w chosen on the validation pixels",
    }
