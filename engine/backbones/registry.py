"""Family detection (most specific first) and conversion."""
from __future__ import annotations

from typing import Dict, Optional

import torch

from ..errors import CheckpointError
from . import dinov3, satmae_pp, scale_mae
from .common import Converted, refuse_other_architectures, strip_prefixes
from .timm_vit import MAE, TIMM

# Detection order matters: Scale-MAE and SatMAE++ checkpoints also carry MAE decoder keys.
FAMILIES = {m.NAME: m for m in (scale_mae, satmae_pp, dinov3, MAE, TIMM)}
FAMILY_NAMES = tuple(FAMILIES)


def detect_family(keys, path: str = "the file") -> str:
    """The family whose key names these are (prefixes already stripped); refuses non-ViTs by name."""
    keys = set(keys)
    refuse_other_architectures(keys, path)
    for name, module in FAMILIES.items():
        if module.detect(keys):
            return name
    raise CheckpointError(f"{path}: a ViT of no known family")  # unreachable: timm matches any ViT


def convert(raw: Dict[str, torch.Tensor], family: str = "auto", path: str = "the file",
            num_heads: Optional[int] = None, gsd_ratio: float = 1.0) -> Converted:
    """Map a release's tensors (any prefixes) onto the project's ViT names for `family`."""
    state = {}
    for key, tensor in raw.items():
        state[strip_prefixes(key)] = tensor
    if family == "auto":
        family = detected = detect_family(state, path)
    elif family not in FAMILIES:
        raise CheckpointError(f"unknown backbone family '{family}'; choose auto or one of {', '.join(FAMILIES)}")
    else:
        detected = detect_family(state, path)
    conv = FAMILIES[family].convert(state, path, num_heads=num_heads, gsd_ratio=gsd_ratio)
    if detected != family:   # allowed (an encoder-only MAE looks like timm), but worth a word
        conv.notes.append(f"mapped as {family} as asked; its keys look like {detected}")
    return conv
