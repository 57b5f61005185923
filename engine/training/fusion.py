"""Choosing how much of the random forest to pool with the network, on the validation pixels only.

The pool (spectralx.model.fusion) is scored for every forest weight of its grid (0.8, 0.9 and 1, the
forest alone) and the best validation mIoU wins; the network alone and the forest alone are scored
too, so the card shows all three side by side. The grid stops at 0.8 because the network's own
validation score is optimistic (its early stop and logit bias were chosen on the same pixels): a
free weight followed it to 0-0.2 on dev-case seeds whose networks were far worse on test
(docs/deviations.md). Ties go to the smaller forest weight.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import numpy as np

from ..model.forest import smoothed_log
from ..model.fusion import FOREST, NETWORK, WEIGHT_GRID, pool_numpy
from .metrics import confusion, scores

WHICH = {0.0: "network", 1.0: "forest"}


def choose_fusion(
    net_logits: np.ndarray,
    forest_proba: Optional[np.ndarray],
    labels: np.ndarray,
    class_values: Sequence[int],
    class_names: Sequence[str],
    grid: Sequence[float] = WEIGHT_GRID,
) -> Optional[Dict[str, Any]]:
    """The card's `fusion` block (weight, the three validation scores, the grid); None without
    validation pixels or forest."""
    if forest_proba is None or len(labels) == 0 or net_logits.shape != forest_proba.shape:
        return None
    k = net_logits.shape[1]
    flog = smoothed_log(forest_proba)

    def score(w):
        pred = pool_numpy(net_logits, flog, w).argmax(1)
        return scores(confusion(labels, pred, k), list(class_values), list(class_names))

    tried = [(float(w), score(w)) for w in grid]
    best_w, best = max(tried, key=lambda t: (round(t[1]["miou"], 6), -t[0]))
    three = {"network": score(NETWORK), "forest": score(FOREST), "fused": best}
    winner = max(("fused", "network", "forest"), key=lambda n: round(three[n]["miou"], 6))
    return {
        "weight": best_w,
        "map": WHICH.get(best_w, "fused"),
        "val_miou": {n: round(float(m["miou"]), 4) for n, m in three.items()},
        "val_oa": {n: round(float(m["overall_accuracy"]), 4) for n, m in three.items()},
        "best_on_validation": winner,
        "per_class_iou": {
            n: {c["name"]: round(float(c["iou"]), 4) for c in m["per_class"] if c["in_reference"]}
            for n, m in three.items()
        },
        "grid": [[w, round(float(m["miou"]), 4)] for w, m in tried],
        "val_pixels": int(len(labels)),
        "method": "log-linear pool (1 - w) log p_network + w log p_forest, w chosen on the validation pixels",
    }
