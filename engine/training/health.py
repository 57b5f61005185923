"""Warnings for a model that trained badly, so that the card, the dock and the logs can say so.

An analyst trains once. A run whose loss never left chance, whose network paints one class almost
everywhere, or whose network scores well below the random forest on the same validation pixels is
flagged in words; the map the checkpoint deploys (network, forest or pool, chosen on validation)
is named beside the warnings so the user knows which model made it.
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence

import numpy as np

# a training loss above this share of ln(classes) has learnt next to nothing (uniform guessing)
CHANCE_SHARE = 0.8
# one class on this share of the validation pixels while the labels' largest class holds less than
# DOMINANT_REFERENCE of them: the network collapsed onto that class
DOMINANT_SHARE = 0.9
DOMINANT_REFERENCE = 0.75
# network validation mIoU this far below the forest's: the network is not worth its cost on these
# labels (one seed in three of the old default fell ~0.07 below on the EnMAP dev case; seed noise
# of a good run is ~0.02, so 0.05 flags the bad runs without flagging ordinary spread)
FOREST_MARGIN = 0.05


def model_warnings(
    *,
    steps_run: Optional[int],
    final_loss: Optional[float],
    train_classes: int,
    confusion: Optional[np.ndarray],
    class_names: Sequence[str],
    network_val_miou: Optional[float],
    forest_val_miou: Optional[float],
) -> List[str]:
    """The warnings for a network; `confusion` is its validation confusion matrix (rows reference,
    columns prediction), so a card alone is enough to re-check a model (`card_warnings`)."""
    out: List[str] = []
    if steps_run == 0:
        out.append("the network was not trained (0 steps): its classes come from random initial weights")
    elif final_loss is not None and train_classes >= 2:
        chance = math.log(train_classes)
        if final_loss >= CHANCE_SHARE * chance:
            out.append(
                f"training loss {final_loss:.2f} is still near chance ({chance:.2f} for "
                f"{train_classes} classes): the network learnt little; train longer or check the labels"
            )
    cm = np.asarray(confusion, np.float64) if confusion is not None else None
    if cm is not None and cm.ndim == 2 and cm.shape[0] == cm.shape[1] == len(class_names) and cm.sum() > 0:
        pred_share = cm.sum(0) / cm.sum()
        true_share = cm.sum(1) / cm.sum()
        top = int(pred_share.argmax())
        if pred_share[top] >= DOMINANT_SHARE and true_share.max() < DOMINANT_REFERENCE:
            out.append(
                f"the network predicts '{class_names[top]}' on {pred_share[top]:.0%} of the validation "
                f"pixels (the labels: {true_share[top]:.0%})"
            )
    if network_val_miou is not None and forest_val_miou is not None:
        gap = forest_val_miou - network_val_miou
        if gap > FOREST_MARGIN:
            out.append(
                f"the network's validation mIoU {network_val_miou:.3f} is {gap:.3f} below the random "
                f"forest's {forest_val_miou:.3f} on the same pixels"
            )
    return out


def card_warnings(card) -> List[str]:
    """The same checks from what a model card records (for cards written before the warnings were)."""
    m = card.metrics or {}
    tr = card.training or {}
    rf = (m.get("baselines") or {}).get("random_forest") or {}
    fusion = m.get("fusion") or {}
    net = (fusion.get("val_miou") or {}).get("network", m.get("val_miou"))
    weights = tr.get("class_weights") or []
    return model_warnings(
        steps_run=tr.get("steps_run"),
        final_loss=m.get("final_train_loss"),
        train_classes=sum(1 for w in weights if w) or len(card.classes),
        confusion=m.get("confusion_matrix"),
        class_names=[c.name for c in card.classes],
        network_val_miou=net,
        forest_val_miou=rf.get("val_miou"),
    )
