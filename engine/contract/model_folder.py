"""The user's model folder and the one order a checkpoint's backbone is looked for in. Torch-free."""

from __future__ import annotations

import os
from typing import Any, List, Mapping, Optional, Union

from .card import FOREST_METHOD, ModelCard

__all__ = ["user_model_dir", "backbone_candidates"]


def user_model_dir() -> str:
    """`$SPECTRALX_MODELS`, else `$XDG_DATA_HOME` (or ~/.local/share) + spectralx/models."""
    return os.environ.get("SPECTRALX_MODELS") or os.path.join(
        os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share"), "spectralx", "models"
    )


def _backbone_of(card: Union[ModelCard, Mapping[str, Any]]):
    """(is a forest, backbone file, recorded path) of a ModelCard or of a card's JSON as a dict."""
    if isinstance(card, ModelCard):
        return card.is_forest, card.backbone.file, card.backbone.path
    arch = card.get("architecture") or {}
    ref = card.get("backbone") or {}
    forest = isinstance(arch, Mapping) and arch.get("method") == FOREST_METHOD
    ref = ref if isinstance(ref, Mapping) else {}
    return forest, str(ref.get("file") or ""), str(ref.get("path") or "")


def backbone_candidates(
    card: Union[ModelCard, Mapping[str, Any]], checkpoint_path: str, backbone: Optional[str] = None
) -> List[str]:
    """Where a card's backbone is looked for, in order: the one given, else beside the checkpoint,
    the path recorded in the card, the user's model folder. `card` is a ModelCard or the card's JSON
    as a dict (the plugin's listing reads cards it does not validate); a forest has no backbone,
    and neither has a card that names no backbone file."""
    forest, file, recorded = _backbone_of(card)
    if forest:
        return []
    if backbone:
        return [backbone]
    name = os.path.basename(file)
    if not name:
        return []
    candidates = [os.path.join(os.path.dirname(os.path.abspath(checkpoint_path)), name)]
    if recorded:
        candidates.append(recorded)
    candidates.append(os.path.join(user_model_dir(), name))
    return candidates
