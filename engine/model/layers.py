"""Small building blocks shared by HyperT, the adapters and the decoder."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def group_norm(channels: int) -> nn.GroupNorm:
    # GroupNorm, not BatchNorm: training batches on a CPU are tiny and inference must not depend
    # on which tiles share a batch.
    groups = math.gcd(channels, 8)
    return nn.GroupNorm(groups, channels)


class ConvNormAct(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1):
        super().__init__(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), group_norm(cout), nn.GELU())


class ResidualConvBlock(nn.Module):
    """Two 3x3 convs with a skip: the stem's residual block."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = ConvNormAct(channels, channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.norm2 = group_norm(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x + self.norm2(self.conv2(self.conv1(x))))


class MultiHeadAttention(nn.Module):
    """Self- or cross-attention with separate q and kv projections."""

    def __init__(self, q_dim: int, kv_dim: int, dim: int, num_heads: int, out_dim: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"attention width {dim} not divisible by {num_heads} heads")
        self.num_heads = num_heads
        self.q = nn.Linear(q_dim, dim)
        self.kv = nn.Linear(kv_dim, 2 * dim)
        self.proj = nn.Linear(dim, out_dim)

    def forward(self, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
        b, n, _ = q.shape
        h = self.num_heads
        qh = self.q(q).reshape(b, n, h, -1).transpose(1, 2)
        k, v = self.kv(kv).reshape(b, kv.shape[1], 2, h, -1).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(qh, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, -1))


class FeedForward(nn.Sequential):
    def __init__(self, dim: int, ratio: int = 4):
        super().__init__(nn.Linear(dim, dim * ratio), nn.GELU(), nn.Linear(dim * ratio, dim))


def sincos_1d(positions: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """(P,) positions -> (P, dim) sin-cos embedding (transformer style)."""
    half = dim // 2
    freq = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    angles = positions.float()[:, None] * freq[None, :]
    emb = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros(len(positions), 1)], dim=1)
    return emb


def sincos_2d(side: int, dim: int) -> torch.Tensor:
    """(side*side, dim) 2-D sin-cos embedding: half the channels for rows, half for columns."""
    coords = torch.arange(side, dtype=torch.float32)
    rows = sincos_1d(coords, dim // 2)
    cols = sincos_1d(coords, dim - dim // 2)
    grid_r = rows[:, None, :].expand(side, side, -1)
    grid_c = cols[None, :, :].expand(side, side, -1)
    return torch.cat([grid_r, grid_c], dim=-1).reshape(side * side, dim)
