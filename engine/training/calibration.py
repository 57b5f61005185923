"""Post-hoc logit adjustment for rare classes, chosen on the held-out validation pixels.

Cross-entropy on a few hundred pixels of a rare class (roofs, bare soil) learns a network that
seldom predicts it, although its scores still rank those pixels well: mIoU then loses the class
entirely while a per-pixel random forest gets some of it. Logit adjustment (Menon et al., "Long-tail
learning via logit adjustment", ICLR 2021) corrects the decision, not the training: predict
argmax(logits - tau * log prior), with the class prior of the training pixels. tau = 0 is the
plain network; tau = 1 is the balanced-error optimum. tau is picked from a small grid by the
validation mIoU of the model as trained (ties go to the smaller tau), so it never sees test data;
without validation pixels nothing is adjusted.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import numpy as np

from .metrics import confusion, scores

TAU_GRID = tuple(round(0.05 * i, 2) for i in range(31))  # 0, 0.05, …, 1.5


def class_prior(train_counts: Sequence[float]) -> np.ndarray:
    c = np.asarray(train_counts, np.float64) + 1.0  # +1: a class without pixels is not -inf
    return c / c.sum()


def choose_adjustment(
    logits: np.ndarray,
    labels: np.ndarray,
    train_counts: Sequence[float],
    class_values: Sequence[int],
    grid: Sequence[float] = TAU_GRID,
) -> Optional[Dict[str, Any]]:
    """The tau (and its per-class bias) that maximizes validation mIoU; None without validation."""
    if logits.size == 0 or len(labels) == 0:
        return None
    k = logits.shape[1]
    log_prior = np.log(class_prior(train_counts))
    tried = []
    for tau in grid:
        pred = (logits - tau * log_prior).argmax(1)
        miou = scores(confusion(labels, pred, k), list(class_values))["miou"]
        tried.append((tau, miou))
    base = tried[0][1]
    best_tau, best = max(tried, key=lambda t: (round(t[1], 6), -t[0]))
    return {
        "tau": float(best_tau),
        "bias": [float(-best_tau * v) for v in log_prior],
        "val_miou_before": float(base),
        "val_miou_after": float(best),
        "grid": [[float(t), round(float(m), 4)] for t, m in tried],
        "method": "logit adjustment: argmax(logits - tau * log prior of the training pixels), tau "
        "chosen on the validation pixels (Menon et al. 2021)",
    }
