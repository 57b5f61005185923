"""Family detection (most specific first) and conversion."""

from __future__ import annotations

from typing import Dict, Optional

import torch

from ..contract.registry import FAMILIES as FAMILY_NAMES
from ..errors import CheckpointError
from . import dinov3, satmae_pp, scale_mae
from .common import Converted, refuse_other_architectures, strip_prefixes
from .timm_vit import MAE, TIMM

# Detection order matters: Scale-MAE and SatMAE++ checkpoints also carry MAE decoder keys.
_CONVERTERS = {m.NAME: m for m in (scale_mae, satmae_pp, dinov3, MAE, TIMM)}
# the family names and their detection order are the contract's (spectralx.contract.registry): one
# converter module per name, in that order
if set(_CONVERTERS) != set(FAMILY_NAMES):
    raise ImportError(f"backbone converters {sorted(_CONVERTERS)} differ from the registry's families {FAMILY_NAMES}")
FAMILIES = {name: _CONVERTERS[name] for name in FAMILY_NAMES}
_EXCLUSIVE = ("scale-mae", "satmae++", "dinov3")


def detect_family(keys, path: str = "the file") -> str:
    """The family whose key names these are (prefixes already stripped); refuses non-ViTs by name."""
    keys = set(keys)
    refuse_other_architectures(keys, path)
    # a file with the marks of two of these families is neither: importing it as one would drop the
    # other's tensors (Scale-MAE and SatMAE++ both also carry MAE's decoder, which is expected)
    marked = [FAMILIES[n].TITLE for n in _EXCLUSIVE if FAMILIES[n].detect(keys)]
    if len(marked) > 1:
        raise CheckpointError(
            f"{path} has the keys of both {marked[0]} and {marked[1]}; a release is one model, "
            "so this file is refused (was it merged from two?)"
        )
    for name, module in FAMILIES.items():
        if module.detect(keys):
            return name
    raise CheckpointError(f"{path}: a ViT of no known family")  # unreachable: timm matches any ViT


def convert(
    raw: Dict[str, torch.Tensor],
    family: str = "auto",
    path: str = "the file",
    num_heads: Optional[int] = None,
    gsd_ratio: float = 1.0,
) -> Converted:
    """Map a release's tensors (any prefixes) onto the project's ViT names for `family`."""
    state = {}
    for key, tensor in raw.items():
        if not isinstance(key, str):
            raise CheckpointError(
                f"{path}: the state dict has a key that is not a name ({type(key).__name__} "
                f"{str(key)[:40]}); a weights file names every tensor"
            )
        if not isinstance(tensor, torch.Tensor) or tensor.layout != torch.strided or tensor.is_quantized:
            what = (
                type(tensor).__name__
                if not isinstance(tensor, torch.Tensor)
                else ("quantized" if tensor.is_quantized else str(tensor.layout).replace("torch.", ""))
            )
            raise CheckpointError(
                f"{path}: {key[:80]} is a {what} tensor; SpectralX reads dense floating-point "
                "weights (import the unquantized release)"
            )
        name = strip_prefixes(key)
        if name in state:
            raise CheckpointError(
                f"{path}: two tensors are both {name} once prefixes are removed; the file " "holds two models"
            )
        state[name] = tensor
    if family == "auto":
        family = detected = detect_family(state, path)
    elif family not in FAMILIES:
        raise CheckpointError(f"unknown backbone family '{family}'; choose auto or one of {', '.join(FAMILIES)}")
    else:
        detected = detect_family(state, path)
    conv = FAMILIES[family].convert(state, path, num_heads=num_heads, gsd_ratio=gsd_ratio)
    if detected != family:  # allowed (an encoder-only MAE looks like timm), but worth a word
        conv.notes.append(f"mapped as {family} as asked; its keys look like {detected}")
    return conv
