"""Plain-PyTorch ViT with timm's state-dict names, so real RSFM checkpoints load by key mapping.

Only what SpectralX needs: blocks expose their MLP linears (`mlp.fc1`, `mlp.fc2`) so AoMoA can wrap
them, and the forward is driven block by block by the SpectralX model (HyperT replaces the patch
embedding at run time; `patch_embed` is kept so third-party weights load without missing keys).
"""
from __future__ import annotations

import math

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


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class VisionTransformer(nn.Module):
    """timm-compatible ViT encoder (no classifier head)."""

    def __init__(self, cfg: ModelConfig, in_chans: int = 3):
        super().__init__()
        self.cfg = cfg
        dim = cfg.embed_dim
        self.patch_embed = PatchEmbed(cfg.patch_size, in_chans, dim)
        self.num_prefix_tokens = 1 if cfg.class_token else 0
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim)) if cfg.class_token else None
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.num_tokens + self.num_prefix_tokens, dim))
        self.blocks = nn.ModuleList(Block(dim, cfg.num_heads, cfg.mlp_ratio) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self._init_weights()

    def _init_weights(self) -> None:
        if self.pos_embed.is_meta:  # shapes only (checkpoint loading assigns every tensor)
            return
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        if self.cls_token is not None:
            nn.init.normal_(self.cls_token, std=1e-6)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def add_position(self, tokens: torch.Tensor) -> torch.Tensor:
        """Prepend the class token (if any) and add position embeddings to (B, N, D) patch tokens."""
        if self.cls_token is not None:
            tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        return tokens + self.pos_embed

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Plain ViT forward on an RGB-like image (used by MAE pretraining and tests)."""
        x = self.add_position(self.patch_embed(x))
        for blk in self.blocks:
            x = blk(x)
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
