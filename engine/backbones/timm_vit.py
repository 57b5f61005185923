"""timm / ImageNet ViTs and MAE (He et al., CVPR 2022) releases: `.safetensors` or `.pth` state dicts
under timm names, bare or wrapped (`model`, `state_dict`).

timm: the classifier (`head.*`) and the pooled-output norm (`fc_norm.*`) are dropped; LayerScale
(`blocks.N.ls1.gamma`, `ls2.gamma`: DeiT III and timm models made with `init_values`) is kept. MAE
pretraining checkpoints (`mae_pretrain_vit_*.pth`, `{model, optimizer, epoch, scaler, args}`) add the
decoder (`decoder_*`, `mask_token`), dropped. Position tables are kept and resized bicubically.
"""

from __future__ import annotations

from typing import Dict

import torch

from .common import Converted, grid_of, split_encoder, vit_shape


class _Family:
    def __init__(self, name: str, title: str, license: str, drop):
        self.NAME, self.TITLE, self.LICENSE, self.DROP = name, title, license, tuple(drop)

    def convert(self, state: Dict[str, torch.Tensor], path: str, num_heads=None, **_) -> Converted:
        encoder, dropped = split_encoder(state, self.DROP, self.TITLE, path)
        config = vit_shape(encoder, path, num_heads)
        # LayerScale (DeiT III, timm `init_values`): blocks.N.ls1/ls2.gamma scale both branches
        config["layer_scale"] = "blocks.0.ls1.gamma" in encoder
        grid = grid_of(encoder["pos_embed"], config["class_token"]) if "pos_embed" in encoder else 14
        return Converted(self.NAME, encoder, config, grid * config["patch_size"], dropped, [], {"kind": "table"})


MAE = _Family(
    "mae",
    "MAE",
    "CC BY-NC 4.0 (non-commercial; github.com/facebookresearch/mae)",
    ("decoder_", "mask_token", "head.", "fc_norm."),
)
TIMM = _Family(
    "timm", "timm ViT", "per model (see its model card; timm code is Apache-2.0)", ("head.", "fc_norm.", "head_drop.")
)
MAE.detect = lambda keys: any(k.startswith(("decoder_embed", "decoder_blocks.", "decoder_pred")) for k in keys)
TIMM.detect = lambda keys: "blocks.0.attn.qkv.weight" in keys
