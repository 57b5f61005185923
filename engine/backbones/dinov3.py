"""DINOv3 ViT (Siméoni et al., 2025), e.g. ViT-L/16 distilled on SAT-493M: a bare state dict.

Keys: `cls_token`, `storage_tokens` (4 register tokens after the cls token), `mask_token` (training
only, dropped), `patch_embed.proj`, `rope_embed.periods` (the RoPE period buffer: head_dim/4 values,
so it also gives the head count), `blocks.N.{norm1, attn.qkv, attn.proj, ls1.gamma, norm2,
mlp.fc1, mlp.fc2, ls2.gamma}`, `norm`, and in the satellite release `local_cls_norm` (a training-
time norm for local crops, dropped). The released ViTs mask the key part of the qkv bias with a
stored `attn.qkv.bias_mask` (1 for q and v, 0 for k); the import folds it into `attn.qkv.bias`.
LayerNorm epsilon is 1e-5 ("layernormbf16") for all DINOv3 hub ViTs. SwiGLU variants (ViT-S+,
ViT-L+, ViT-H+, 7B: `mlp.w1/w2/w3`) are refused by name.
"""

from __future__ import annotations

from typing import Dict

import torch

from ..errors import CheckpointError
from .common import Converted, shown, split_encoder, vit_shape
from .limits import check_tensor_kind

NAME = "dinov3"
TITLE = "DINOv3"
LICENSE = "DINOv3 License (custom; weights on request at ai.meta.com/resources/models-and-libraries/dinov3-downloads)"
# (dino_head / ibot_head: the projection heads of DINO training checkpoints under `teacher`)
DROP = ("mask_token", "local_cls_norm.", "cls_norm.", "head.", "dino_head.", "ibot_head.")


def detect(keys) -> bool:
    return "storage_tokens" in keys or "rope_embed.periods" in keys


def convert(state: Dict[str, torch.Tensor], path: str, num_heads=None, **_) -> Converted:
    swiglu = [k for k in state if ".mlp.w1" in k or ".mlp.w12" in k or ".mlp.w3" in k]
    if swiglu:
        raise CheckpointError(
            f"{path} is a DINOv3 model with a SwiGLU feed-forward (found {shown(swiglu, 2)}; ViT-S+/L+/H+/7B); "
            "only the plain-MLP DINOv3 ViTs (S/B/L) are supported"
        )
    state = dict(state)
    notes = []
    masks = [k for k in state if k.endswith(".attn.qkv.bias_mask")]
    for k in masks:
        mask = state.pop(k)
        bias_key = k[: -len("_mask")]
        bias = state.get(bias_key)
        if not isinstance(bias, torch.Tensor) or not isinstance(mask, torch.Tensor) or mask.shape != bias.shape:
            raise CheckpointError(
                f"{path}: {k} has shape {tuple(getattr(mask, 'shape', ()))} but {bias_key} "
                f"{tuple(getattr(bias, 'shape', ())) if bias is not None else 'is missing'}; "
                "a DINOv3 mask has one value per bias entry"
            )
        check_tensor_kind(bias_key, bias, path)
        if mask.is_complex() or not torch.isfinite(mask.float()).all():
            raise CheckpointError(f"{path}: {k} is not set (NaN); the checkpoint was saved before initialisation")
        state[bias_key] = bias * mask.to(bias.dtype)
    if masks:
        notes.append(f"folded {len(masks)} attn.qkv.bias_mask buffers into attn.qkv.bias")
    if "rope_embed.periods" not in state:
        raise CheckpointError(f"{path} is not a DINOv3 checkpoint (no rope_embed.periods); try --family auto")
    encoder, dropped = split_encoder(state, DROP, TITLE, path)  # checks ranks, kinds and limits
    periods = encoder["rope_embed.periods"].float()
    if not bool((periods > 0).all()):
        raise CheckpointError(f"{path}: rope_embed.periods must be positive periods, got {periods[:4].tolist()}")
    encoder["rope_embed.periods"] = periods
    width = encoder["blocks.0.attn.qkv.weight"].shape[1]
    head_dim = 4 * periods.numel()
    if width % head_dim:
        raise CheckpointError(f"{path}: {periods.numel()} RoPE periods do not fit width {width}")
    config = vit_shape(encoder, path, num_heads or width // head_dim)
    q = periods.numel()
    rope_base = float(periods[1] ** q) if q > 1 else 100.0
    if not 0 < rope_base <= 1e9:
        raise CheckpointError(f"{path}: rope_embed.periods imply a RoPE base of {rope_base:g}; DINOv3 uses 100")
    config.update(
        num_register_tokens=int(encoder["storage_tokens"].shape[1]) if "storage_tokens" in encoder else 0,
        layer_scale="blocks.0.ls1.gamma" in encoder,
        pos_embed="rope",
        norm_eps=1e-5,
        rope_base=rope_base,
    )
    return Converted(
        NAME,
        encoder,
        config,
        224,
        dropped,
        notes,
        {"kind": "rope", "coords": "patch centres in [-1, 1] per side (DINOv3 'separate')"},
    )
