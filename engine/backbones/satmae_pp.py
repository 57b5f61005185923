"""SatMAE++ (Noman et al., CVPR 2024), fMoW-RGB release: `torch.save({model, optimizer, epoch,
scaler, args})`.

`model` holds the ViT encoder under timm names, the MAE decoder (`decoder_*`, `mask_token`) and the
multi-scale upsampling path (`proj_up_conv.*`, `proj_up_norm.*`, `up_block.*` / `up_block1.*`,
`up_block2.*`), which are dropped. The fixed sin-cos `pos_embed` is kept and resized bicubically
for other tile sizes, as the authors do when fine-tuning. The multispectral (grouped-channel)
release has a per-group patch embedding and a channel embedding: it is refused by name.
"""

from __future__ import annotations

from typing import Dict

import torch

from ..errors import CheckpointError
from .common import Converted, grid_of, split_encoder, vit_shape

NAME = "satmae++"
TITLE = "SatMAE++"
LICENSE = "code Apache-2.0 (github.com/techmn/satmae_pp); check the weights' model page"
DROP = ("decoder_", "mask_token", "proj_up_", "up_block")


def detect(keys) -> bool:
    return any(k.startswith(("proj_up_conv.", "proj_up_norm.", "up_block")) for k in keys)


def convert(state: Dict[str, torch.Tensor], path: str, num_heads=None, **_) -> Converted:
    grouped = [k for k in state if k == "channel_embed" or k.startswith("patch_embed.0.")]
    if grouped:
        raise CheckpointError(
            f"{path} is the SatMAE++ multispectral grouped-channel model (found {', '.join(grouped[:2])}); "
            "only the fMoW-RGB ViT release is supported"
        )
    encoder, dropped = split_encoder(state, DROP, TITLE, path)
    config = vit_shape(encoder, path, num_heads)
    grid = grid_of(encoder["pos_embed"], config["class_token"]) if "pos_embed" in encoder else 14
    return Converted(NAME, encoder, config, grid * config["patch_size"], dropped, [], {"kind": "table"})
