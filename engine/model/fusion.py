"""Pooling the network's class probabilities with the random forest's (a weighted log-linear pool).

log p = (1 - w) * log p_network + w * log p_forest, renormalized by the pipeline's softmax. The
network wins the common, spatially coherent classes; the per-pixel forest is steadier on rare
classes learnt from a few hundred pixels (the dev cases' roofs and soil) and from run to run. The
weight w is chosen on the validation pixels only (spectralx.training.fusion) and stored in the card;
w = 0 is the network alone, w = 1 the forest alone, so the pool can only be chosen when it helps there.
"""
from __future__ import annotations

import numpy as np
import torch

WEIGHT_GRID = tuple(round(0.1 * i, 1) for i in range(11))   # 0, 0.1, …, 1


def pool(net_logits: torch.Tensor, forest_log_proba: torch.Tensor, weight: float) -> torch.Tensor:
    """(B, K, …) network logits and forest log-probabilities -> pooled log-scores."""
    w = float(weight)
    return (1 - w) * torch.log_softmax(net_logits.float(), dim=1) + w * forest_log_proba.float()


def pool_numpy(net_logits: np.ndarray, forest_log_proba: np.ndarray, weight: float) -> np.ndarray:
    """The same pool on (N, K) arrays (validation pixels)."""
    z = net_logits - net_logits.max(1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(1, keepdims=True))
    return (1 - weight) * log_p + weight * forest_log_proba
