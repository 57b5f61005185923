"""HyperT, the Hyper Tokenizer (SPEC §2): turns a C-band tile into backbone tokens.

Stem (1x1 conv, residual 3x3 blocks, three stride-2 stages to D_h at 1/8) feeds two branches:
a spatial one (windowed self-attention over the H/8 x W/8 positions) and a spectral one (global
self-attention in which each of the D_h channels is a token; the bands' centre wavelengths enter
here through a sin-cos embedding resampled to D_h rows). Learned spatial and spectral queries
cross-attend to the two branches; a 4x feed-forward mixes them into backbone-width tokens, to which a
low-rank conv shortcut is added with a learnable per-channel scale.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig
from .layers import ConvNormAct, FeedForward, MultiHeadAttention, ResidualConvBlock, sincos_1d, sincos_2d


class Stem(nn.Module):
    def __init__(self, in_bands: int, stem_dim: int, out_dim: int):
        super().__init__()
        widths = [stem_dim, max(stem_dim, out_dim // 4), max(stem_dim, out_dim // 2), out_dim]
        self.inp = nn.Sequential(nn.Conv2d(in_bands, stem_dim, 1), ResidualConvBlock(stem_dim))
        self.stages = nn.ModuleList(
            nn.Sequential(ConvNormAct(widths[i], widths[i + 1], 3, 2), ResidualConvBlock(widths[i + 1]))
            for i in range(3)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.inp(x)
        for stage in self.stages:
            x = stage(x)
        return x


class WindowAttention(nn.Module):
    """Multi-head self-attention inside non-overlapping windows of half the feature side."""

    def __init__(self, dim: int, heads: int, side: int):
        super().__init__()
        self.window = max(1, side // 2)
        self.side, self.dim = side, dim
        self.norm = nn.LayerNorm(dim)
        self.attn = MultiHeadAttention(dim, dim, dim, heads, dim)
        self.register_buffer("pos", sincos_2d(side, dim), persistent=False)

    def reset_buffers(self) -> None:
        """Recompute the (non-persistent) position table, e.g. after building on the meta device."""
        self.pos = sincos_2d(self.side, self.dim).to(self.norm.weight.device)

    def forward(self, x: torch.Tensor, side: int) -> torch.Tensor:
        b, n, d = x.shape
        x = x + self.pos
        w = self.window
        win = x.reshape(b, side // w, w, side // w, w, d).permute(0, 1, 3, 2, 4, 5).reshape(-1, w * w, d)
        y = self.norm(win)
        win = win + self.attn(y, y)
        return win.reshape(b, side // w, side // w, w, w, d).permute(0, 1, 3, 2, 4, 5).reshape(b, n, d)


class SpectralAttention(nn.Module):
    """Global self-attention across channels: each of the D_h channels is a token of length H/8*W/8."""

    def __init__(self, token_len: int, heads: int = 1):
        super().__init__()
        self.norm = nn.LayerNorm(token_len)
        self.attn = MultiHeadAttention(token_len, token_len, token_len, heads, token_len)

    def forward(self, x: torch.Tensor, spectral_pos: torch.Tensor) -> torch.Tensor:
        x = x + spectral_pos
        y = self.norm(x)
        return x + self.attn(y, y)


class HyperT(nn.Module):
    def __init__(self, cfg: ModelConfig, wavelengths_nm: torch.Tensor | None = None):
        super().__init__()
        self.cfg = cfg
        c, dh, d = cfg.in_bands, cfg.hyper_dim, cfg.embed_dim
        self.side = cfg.img_size // 8
        token_len = self.side * self.side
        if wavelengths_nm is None:  # placeholder until the checkpoint's bands are known
            wavelengths_nm = torch.linspace(450.0, 2400.0, c) if c > 1 else torch.tensor([550.0])
        self.register_buffer("wavelengths_nm", wavelengths_nm.float().reshape(c).clone())
        self.stem = Stem(c, cfg.hyper_stem_dim, dh)
        self.spatial = WindowAttention(dh, cfg.hyper_heads, self.side)
        self.spectral = SpectralAttention(token_len)
        # attribute matching: learned queries, one head of cross-attention each, then a 4x FFN
        half = d // 2
        n = cfg.num_tokens
        self.spatial_queries = nn.Parameter(torch.randn(1, n, half) * 0.02)
        self.spectral_queries = nn.Parameter(torch.randn(1, n, d - half) * 0.02)
        self.spatial_match = MultiHeadAttention(half, dh, half, 1, half)
        self.spectral_match = MultiHeadAttention(d - half, token_len, d - half, 1, d - half)
        self.match_norm = nn.LayerNorm(d)
        self.match_ffn = FeedForward(d, 4)
        # low-rank conv shortcut C -> 16 -> D (two 4x4 stride-4 convs = one 16x16 patch)
        p = cfg.patch_size
        self.lowrank = nn.Sequential(nn.Conv2d(c, cfg.lowrank_dim, p // 4, p // 4), nn.Conv2d(cfg.lowrank_dim, d, 4, 4))
        # "shortcut": tokens + s*shortcut, s=0.1 (this project's default); "sum": the reference code's
        # s*(tokens + shortcut), s=1, which lets stage 2 down-weight the (there frozen) HyperT tokens
        self.scale_mode = cfg.hypert_scale
        self.scale = nn.Parameter(torch.full((d,), 1.0 if self.scale_mode == "sum" else 0.1))

    def spectral_position(self) -> torch.Tensor:
        """(D_h, L): sin-cos of each band's wavelength, resampled along the band axis to D_h rows."""
        token_len = self.side * self.side
        emb = sincos_1d(self.wavelengths_nm.cpu(), token_len).to(self.wavelengths_nm.device)  # (C, L)
        emb = F.interpolate(emb.t()[None], size=self.cfg.hyper_dim, mode="linear", align_corners=True)
        return emb[0].t()

    def forward(self, x: torch.Tensor):
        """x (B, C, H, W) -> tokens (B, N, D), spatial feats (B, side², D_h), spectral (B, D_h, side²)."""
        feat = self.stem(x)  # (B, D_h, s, s)
        b, dh, s, _ = feat.shape
        spatial = self.spatial(feat.flatten(2).transpose(1, 2), s)  # (B, s², D_h)
        spectral = self.spectral(feat.flatten(2), self.spectral_position())  # (B, D_h, s²)
        qs = self.spatial_queries.expand(b, -1, -1)
        qe = self.spectral_queries.expand(b, -1, -1)
        tokens = torch.cat([qs + self.spatial_match(qs, spatial), qe + self.spectral_match(qe, spectral)], dim=-1)
        tokens = tokens + self.match_ffn(self.match_norm(tokens))
        shortcut = self.lowrank(x).flatten(2).transpose(1, 2)  # (B, N, D)
        if self.scale_mode == "sum":
            return self.scale * (tokens + shortcut), spatial, spectral
        return tokens + self.scale * shortcut, spatial, spectral
