"""Plain-PyTorch ViT with timm's state-dict names, so real RSFM checkpoints load by key mapping.

Only what SpectralX needs: blocks expose their MLP linears (`mlp.fc1`, `mlp.fc2`) so AoMoA can wrap
them, and the forward is driven block by block by the SpectralX model (HyperT replaces the patch
embedding at run time; `patch_embed` is kept so third-party weights load without missing keys).

DINOv3 variant (all off by default, so timm-style models compute exactly as before): register
("storage") tokens after the cls token, LayerScale on both residual branches (`ls1.gamma`,
`ls2.gamma`), and 2-D rotary position embedding on the patch tokens instead of an absolute table.
The block API for callers that drive blocks by hand: `attn_residual(x, rope)` then
`mlp_residual(x, mlp_fn)`; `VisionTransformer.rope(h, w)` gives the (sin, cos) tables (None without
RoPE) and `num_prefix_tokens` counts cls + register tokens.
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig


class PatchEmbed(nn.Module):
    def __init__(self, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


Rope = Optional[Tuple[torch.Tensor, torch.Tensor]]


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    """(x1, x2) -> (-x2, x1) over the last axis: the 90-degree rotation RoPE pairs channel i with i + d/2."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(x: torch.Tensor, rope: Tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Rotate the last len(sin) tokens of (B, heads, N, d) by the RoPE tables; prefix tokens stay."""
    sin, cos = rope
    prefix = x.shape[-2] - sin.shape[-2]
    patches = x[:, :, prefix:].float()
    patches = (patches * cos + rotate_half(patches) * sin).to(x.dtype)
    return torch.cat([x[:, :, :prefix], patches], dim=-2)


class RopePositionEmbedding(nn.Module):
    """DINOv3's axial 2-D RoPE: no weights, one stored buffer of D_head/4 periods.

    Patch centres are normalised to [-1, 1] along each side separately; a head's channels carry
    angles 2*pi*coord/period for (y, x) x periods, the list repeated twice to pair channel i with
    i + D_head/2 (see rotate_half). Train-time coordinate jitter/rescaling is not reproduced: the
    backbone is frozen here.
    """

    def __init__(self, head_dim: int, base: float):
        super().__init__()
        self.base = base
        self.head_dim = head_dim
        self.register_buffer("periods", self._base_periods(), persistent=True)

    def _base_periods(self) -> torch.Tensor:
        q = self.head_dim // 4
        return self.base ** (2 * torch.arange(q, dtype=torch.float32) / (2 * q))

    def reset_buffers(self) -> None:
        """A meta-device build leaves the buffer empty; a checkpoint load assigns the stored one."""
        if self.periods.is_meta:
            self.periods = self._base_periods()

    def forward(self, h: int, w: int) -> Tuple[torch.Tensor, torch.Tensor]:
        dev = self.periods.device
        ys = (torch.arange(h, device=dev, dtype=torch.float32) + 0.5) / h
        xs = (torch.arange(w, device=dev, dtype=torch.float32) + 0.5) / w
        coords = torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1).reshape(h * w, 2) * 2 - 1
        angles = 2 * math.pi * coords[:, :, None] / self.periods.float()[None, None, :]
        angles = angles.reshape(h * w, -1).repeat(1, 2)  # (hw, D_head)
        return torch.sin(angles), torch.cos(angles)


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, rope: Rope = None) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k = qkv[0], qkv[1]
        if rope is not None:
            q, k = apply_rope(q, rope), apply_rope(k, rope)
        x = F.scaled_dot_product_attention(q, k, qkv[2])
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class LayerScale(nn.Module):
    """Per-channel scale of a residual branch (`gamma`, timm/DINOv3 name)."""

    def __init__(self, dim: int, init: float = 1e-5):
        super().__init__()
        self.gamma = nn.Parameter(torch.full((dim,), init))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, layer_scale: bool = False, eps: float = 1e-6):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads)
        self.ls1 = LayerScale(dim) if layer_scale else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim) if layer_scale else nn.Identity()

    def attn_residual(self, x: torch.Tensor, rope: Rope = None) -> torch.Tensor:
        return x + self.ls1(self.attn(self.norm1(x), rope))

    def mlp_residual(
        self,
        x: torch.Tensor,
        mlp_fn: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
    ) -> torch.Tensor:
        """x + ls2(mlp(norm2(x))); `mlp_fn` replaces the MLP call (AoMoA wraps `self.mlp`)."""
        return x + self.ls2((mlp_fn or self.mlp)(self.norm2(x)))

    def forward(self, x: torch.Tensor, rope: Rope = None) -> torch.Tensor:
        return self.mlp_residual(self.attn_residual(x, rope))


class VisionTransformer(nn.Module):
    """timm-compatible ViT encoder (no classifier head)."""

    def __init__(self, cfg: ModelConfig, in_chans: int = 3):
        super().__init__()
        self.cfg = cfg
        dim = cfg.embed_dim
        self.patch_embed = PatchEmbed(cfg.patch_size, in_chans, dim)
        # Tokens before the patch tokens (cls, then registers): adapters and decoders skip them.
        self.num_prefix_tokens = (1 if cfg.class_token else 0) + cfg.num_register_tokens
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if cfg.class_token else None
        self.storage_tokens = (
            nn.Parameter(torch.zeros(1, cfg.num_register_tokens, dim)) if cfg.num_register_tokens else None
        )
        if cfg.pos_embed == "rope":
            self.pos_embed = None
            self.rope_embed = RopePositionEmbedding(dim // cfg.num_heads, cfg.rope_base)
        else:  # a table for the cls token (if any) and the patches, as in timm
            self.pos_embed = nn.Parameter(torch.zeros(1, cfg.num_tokens + (1 if cfg.class_token else 0), dim))
            self.rope_embed = None
        self.blocks = nn.ModuleList(
            Block(dim, cfg.num_heads, cfg.mlp_ratio, cfg.layer_scale, cfg.norm_eps) for _ in range(cfg.depth)
        )
        self.norm = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self._init_weights()

    def _init_weights(self) -> None:
        if self.norm.weight.is_meta:  # shapes only (checkpoint loading assigns every tensor)
            return
        if self.pos_embed is not None:
            nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=1e-6)
        if self.storage_tokens is not None:
            nn.init.normal_(self.storage_tokens, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def add_position(self, tokens: torch.Tensor) -> torch.Tensor:
        """Prepend the class and register tokens (if any) to (B, N, D) patch tokens and add the
        absolute position table (RoPE backbones encode position inside attention instead)."""
        prefix = [t for t in (self.cls_token, self.storage_tokens) if t is not None]
        if prefix:
            tokens = torch.cat([p.expand(tokens.shape[0], -1, -1) for p in prefix] + [tokens], dim=1)
        return tokens if self.pos_embed is None else tokens + self.pos_embed

    def rope(self, h: int, w: int) -> Rope:
        """(sin, cos) RoPE tables for an h x w patch grid, or None for absolute-position backbones."""
        return None if self.rope_embed is None else self.rope_embed(h, w)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Plain ViT forward on an RGB-like image (used by MAE pretraining and tests)."""
        p = self.cfg.patch_size
        rope = self.rope(x.shape[-2] // p, x.shape[-1] // p)
        x = self.add_position(self.patch_embed(x))
        for blk in self.blocks:
            x = blk(x, rope)
        return self.norm(x)


def resize_pos_embed(pos: torch.Tensor, new_grid: int, num_prefix: int) -> torch.Tensor:
    """Bicubic resize of a (1, prefix + g*g, D) position embedding to a new grid side."""
    prefix, grid_tokens = pos[:, :num_prefix], pos[:, num_prefix:]
    old_grid = int(math.isqrt(grid_tokens.shape[1]))
    if old_grid * old_grid != grid_tokens.shape[1]:
        raise ValueError(f"position embedding has {grid_tokens.shape[1]} grid tokens, not a square")
    if old_grid == new_grid:
        return pos
    dim = pos.shape[-1]
    g = grid_tokens.reshape(1, old_grid, old_grid, dim).permute(0, 3, 1, 2).float()
    g = F.interpolate(g, size=(new_grid, new_grid), mode="bicubic", align_corners=False)
    g = g.permute(0, 2, 3, 1).reshape(1, new_grid * new_grid, dim).to(pos.dtype)
    return torch.cat([prefix, g], dim=1)
