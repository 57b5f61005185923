"""Where a fine-tune started in the panel begins: the selected checkpoint when it can read the raster;
when it cannot (an EnMAP model on a 3-band Landsat file), that checkpoint's backbone, said in one line,
since the analyst asked for a new model for this raster and the checkpoint was only left selected.

No hashing here (this runs on the UI thread; a ViT-L backbone is 1.2 GB): the engine verifies the
backbone's sha256 when it loads it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Optional

from .._vendor.spectralx.contract import defaults, model_folder


class StartError(Exception):
    """No starting point: one line that names the control to change."""


@dataclass
class Start:
    checkpoint: Optional[str]
    backbone: Optional[str]
    band_map: Any
    sensor: Optional[str]
    note: str = ""  # said to the analyst when the start is not the selected checkpoint


def cannot_read(error) -> bool:
    """A band-plan error that no band mapping fixes: the raster does not cover the model's spectrum."""
    from .._vendor.spectralx import bands

    return isinstance(error, bands.ModelDoesNotFit)


def find_backbone(card, checkpoint: str) -> Optional[str]:
    """The card's backbone file where the engine looks for it (beside the checkpoint, the card's
    path, the model folder) or where the panel last saw it; None if not found."""
    if card is None or card.is_forest or not card.backbone.file:
        return None
    for path in model_folder.backbone_candidates(card, checkpoint):
        if os.path.isfile(path):
            return path
    from qgis.core import QgsSettings

    known = QgsSettings().value(defaults.backbone_setting(card.backbone.sha256), "")
    return known if known and os.path.isfile(known) else None


def from_backbone(card, checkpoint: str, explicit_backbone: str, sensor: Optional[str], reason: str) -> Start:
    """A new model from the backbone of `card` (or the one chosen by hand) instead of the checkpoint."""
    name = os.path.basename(checkpoint)
    backbone = explicit_backbone or find_backbone(card, checkpoint)
    if not backbone:
        raise StartError(
            f"The checkpoint {name} cannot read this raster ({reason}) and its backbone was not "
            "found: choose a backbone file under Model ▸ Backbone, or Method ▸ Random forest"
        )
    return Start(
        None,
        backbone,
        None,
        sensor,
        f"{name} cannot read this raster ({reason}): the new model starts from its backbone "
        f"{os.path.basename(backbone)} instead (the checkpoint is not changed).",
    )
