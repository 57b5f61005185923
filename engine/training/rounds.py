"""The rounds of the analyst's loop, kept in the model card.

A model fine-tuned from a fine-tuned model is the next round of the same loop: its card's
`training["rounds"]` is the base card's list plus one entry for this run (labels per class, the
validation scores of the network, the forest and the map), so the card shows how the labels and the
scores grew round by round. A model started from a backbone (or a stage-1 model) is round 1.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

MAX_ROUNDS = 100  # a card stays small whatever the loop's length: older rounds are dropped


def previous_rounds(training: Optional[dict]) -> List[Dict[str, Any]]:
    """The rounds recorded in a base card's training dict (a pre-history card counts as one round)."""
    if not isinstance(training, dict) or training.get("stage") != "finetune":
        return []
    rounds = training.get("rounds")
    if isinstance(rounds, list):
        return [r for r in rounds if isinstance(r, dict)]
    # a model fine-tuned before rounds were kept: what its card says is round 1
    return [
        {
            "round": 1,
            "labelled_pixels": (training.get("train_pixels") or 0) + (training.get("val_pixels") or 0),
            "finished": training.get("finished"),
        }
    ]


def _score(v) -> Optional[float]:
    return round(float(v), 4) if isinstance(v, (int, float)) else None


def add_round(
    base_training: Optional[dict],
    class_names: Sequence[str],
    per_class: Dict[int, Dict[str, int]],
    metrics: Dict[str, Any],
    steps_run: int,
    finished: Optional[str],
) -> List[Dict[str, Any]]:
    """The base card's rounds plus this run's entry."""
    rounds = previous_rounds(base_training)
    fusion = metrics.get("fusion") or {}
    scores = fusion.get("val_miou") or {}
    forest = ((metrics.get("baselines") or {}).get("random_forest") or {}).get("val_miou")
    labels = {
        name: int((per_class.get(k) or {}).get("train", 0) + (per_class.get(k) or {}).get("val", 0))
        for k, name in enumerate(class_names)
    }
    entry = {
        "round": (rounds[-1].get("round", len(rounds)) if rounds else 0) + 1,
        "labelled_pixels": int(sum(labels.values())),
        "labels": labels,
        # the map's score: the pool when the network is pooled with its forest, else the network's
        "val_miou": _score(scores.get("fused", metrics.get("val_miou"))),
        "network_val_miou": _score(scores.get("network", metrics.get("val_miou"))),
        "forest_val_miou": _score(scores.get("forest", forest)),
        "map": fusion.get("map"),
        "steps_run": int(steps_run),
        "finished": finished,
    }
    return (rounds + [entry])[-MAX_ROUNDS:]
