"""What every ViT family shares: encoder key names, shape inference, refusing other architectures."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import torch

from ..errors import CheckpointError
from .limits import block_depth, check_encoder

# Wrappers and prefixes releases put around the encoder (DDP `module.`, MAE-style `encoder.`,
# DINO training checkpoints `teacher` -> `backbone.`).
PREFIXES = ("module.", "encoder.", "backbone.", "model.", "vit.")

# Every tensor name of the project's ViT (timm names + the DINOv3 variant), as a pattern.
ENCODER_KEY = re.compile(
    r"^(cls_token|storage_tokens|pos_embed|rope_embed\.periods|patch_embed\.proj\.(weight|bias)"
    r"|norm\.(weight|bias)|blocks\.\d+\.(norm1|norm2)\.(weight|bias)|blocks\.\d+\.attn\.(qkv|proj)\.(weight|bias)"
    r"|blocks\.\d+\.mlp\.(fc1|fc2)\.(weight|bias)|blocks\.\d+\.ls[12]\.gamma)$"
)


@dataclass
class Converted:
    """A release's encoder in the project's names, plus the architecture its tensors imply."""

    family: str
    state: Dict[str, torch.Tensor]
    config: Dict[str, Any]  # ModelConfig backbone fields (no preset, no img_size)
    img_size: int  # tile side the release's position table was made for
    dropped: List[str] = field(default_factory=list)  # decoder / head / training-only keys
    notes: List[str] = field(default_factory=list)  # what else was done (folded, regenerated)
    position: Dict[str, Any] = field(default_factory=dict)  # how positions are encoded

    def shape_summary(self) -> str:
        c = self.config
        return f"width {c['embed_dim']}, {c['depth']} blocks, {c['num_heads']} heads, patch {c['patch_size']}"


def strip_prefixes(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for p in PREFIXES:
            if key.startswith(p):
                key, changed = key[len(p) :], True
    return key


def shown(keys: Sequence[str], n: int = 6) -> str:
    keys = list(keys)
    return ", ".join(keys[:n]) + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


# Key fragments of architectures SpectralX cannot adapt, for a refusal that says what the file is.
_OTHER_ARCHITECTURES = (
    ("Swin Transformer", re.compile(r"relative_position_bias_table|layers\.\d+\.blocks\.\d+\.")),
    ("ResNet", re.compile(r"^(conv1\.weight|layer[1-4]\.\d+\.(conv|bn)\d)")),
    ("ConvNeXt", re.compile(r"^(stages|downsample_layers)\.\d+\.")),
    ("EfficientNet / MobileNet", re.compile(r"^(features|_blocks|conv_stem)\.")),
)


# Hugging Face `transformers` conversions (DINOv3, ViT, ViTMAE) rename every tensor.
_TRANSFORMERS = re.compile(
    r"^(embeddings\.(cls_token|patch_embeddings|position_embeddings|register_tokens)"
    r"|layer\.\d+\.(attention|mlp|layernorm|norm))"
)


def refuse_other_architectures(keys: Iterable[str], path: str) -> None:
    keys = list(keys)
    if any(re.match(r"^blocks\.\d+\.attn\.qkv\.weight$", k) for k in keys):
        return
    hits = [k for k in keys if _TRANSFORMERS.search(k)]
    if hits:
        raise CheckpointError(
            f"{path} is a Hugging Face transformers conversion (found {shown(hits, 2)}); import the "
            "authors' original release file instead (see docs/backbones.md)"
        )
    for name, pattern in _OTHER_ARCHITECTURES:
        hits = [k for k in keys if pattern.search(k)]
        if hits:
            raise CheckpointError(
                f"{path} holds a {name} (found {shown(hits, 3)}), not a ViT; SpectralX adapts ViT "
                "backbones only (Scale-MAE, SatMAE++, DINOv3, timm ViT, MAE)"
            )
    raise CheckpointError(
        f"{path} holds no ViT encoder (no blocks.N.attn.qkv.weight; first keys: {shown(sorted(keys), 4)}); "
        "SpectralX adapts ViT backbones only (Scale-MAE, SatMAE++, DINOv3, timm ViT, MAE)"
    )


def split_encoder(
    state: Dict[str, torch.Tensor],
    drop: Tuple[str, ...],
    family: str,
    path: str,
) -> Tuple[Dict[str, torch.Tensor], List[str]]:
    """(encoder tensors, dropped keys); a key that is neither is an error naming it, because ignoring
    an unknown encoder tensor would silently compute a different network."""
    encoder, dropped, unknown = {}, [], []
    for key, tensor in state.items():
        if key.startswith(drop):
            dropped.append(key)
        elif ENCODER_KEY.match(key):
            encoder[key] = tensor
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(
            f"{path}: keys unknown to a {family} encoder: {shown(unknown)}; this architecture variant "
            "is not supported (or pass the right --family)"
        )
    check_encoder(encoder, path)  # ranks, kinds, depth and width limits: before anything is built
    return encoder, dropped


def depth_of(state: Dict[str, torch.Tensor], path: str = "the file") -> int:
    return block_depth(state, path)


def vit_shape(state: Dict[str, torch.Tensor], path: str, num_heads: Optional[int] = None) -> Dict[str, Any]:
    """Width, depth, MLP ratio, patch size and class token from tensor shapes. Heads cannot be read
    from a fused qkv; standard ViTs use 64-wide heads, so width/64 unless the family knows better."""
    if "blocks.0.attn.qkv.weight" not in state:
        raise CheckpointError(f"{path}: the ViT encoder has no blocks.0.attn.qkv.weight")
    width = state["blocks.0.attn.qkv.weight"].shape[1]
    depth = depth_of(state, path)
    fc1 = state.get("blocks.0.mlp.fc1.weight")
    patch = state.get("patch_embed.proj.weight")
    heads = num_heads or max(1, width // 64)
    if not 1 <= heads <= width or width % heads:
        raise CheckpointError(f"{path}: width {width} does not split into {heads} heads")
    return dict(
        embed_dim=int(width),
        depth=int(depth),
        num_heads=int(heads),
        mlp_ratio=float(fc1.shape[0] / width) if fc1 is not None else 4.0,
        patch_size=int(patch.shape[-1]) if patch is not None else 16,
        class_token="cls_token" in state,
    )


def grid_of(pos: torch.Tensor, class_token: bool) -> int:
    """Side of the square patch grid a (1, [1 +] g*g, D) position table covers."""
    n = pos.reshape(-1, pos.shape[-1]).shape[0]
    for prefix in (1, 0) if class_token else (0,):
        g = math.isqrt(n - prefix)
        if g * g == n - prefix:
            return g
    raise CheckpointError(f"position embedding has {n} tokens, not a square grid")


def sincos_2d(dim: int, grid: int, scale: float = 1.0, class_token: bool = True) -> torch.Tensor:
    """MAE / Scale-MAE fixed 2-D sin-cos table (1, [1 +] g*g, dim), row-major over the grid.

    Positions are grid indices times `scale` (Scale-MAE's ground-sample-distance ratio; 1 for MAE).
    The first half of the channels encodes the column index, the second half the row index; each half
    is [sin(p*w_k), cos(p*w_k)] with w_k = 10000^(-k/(dim/4)). The class token's entry is zero.
    """
    if dim % 4:
        raise CheckpointError("a sin-cos position embedding needs a width divisible by 4")
    rows, cols = torch.meshgrid(
        torch.arange(grid, dtype=torch.float64), torch.arange(grid, dtype=torch.float64), indexing="ij"
    )
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4.0))

    def half(pos: torch.Tensor) -> torch.Tensor:
        out = (pos.reshape(-1, 1) * scale) * omega[None]
        return torch.cat([out.sin(), out.cos()], dim=1)

    emb = torch.cat([half(cols), half(rows)], dim=1).float()
    if class_token:
        emb = torch.cat([torch.zeros(1, dim), emb], dim=0)
    return emb[None]
