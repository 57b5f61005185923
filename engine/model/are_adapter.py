"""Are-adapter (Attribute-refined Adapter), one instance shared across the adapter blocks.

Backbone patch tokens, split into a spatial and a spectral half, query HyperT's spatial features
(positions) and spectral features (channels). The match is soft (softmax attention) instead of the
paper's arg-max so that gradients reach the queries; this is the documented improvement SPEC §2
allows (the paper's hard match and scalar output are the `paper` variant's switches
`are_match="hard"`, `are_output="scalar"`). Matched spatial features are refined by a small conv stack on the token grid, matched
spectral features by a 1-D conv along the feature axis; a per-token gate pooled from the refined
features scales what is added back to the residual stream, times a learnable scalar (init 0.01).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..config import ModelConfig


class AreAdapter(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        d, dh = cfg.embed_dim, cfg.hyper_dim
        self.half = d // 2
        match_dim = dh
        token_len = (cfg.img_size // 8) ** 2
        conv_dim = max(8, dh // 2)
        self.norm = nn.LayerNorm(d)
        # spatial: tokens query HyperT positions
        self.q_spatial = nn.Linear(self.half, match_dim)
        self.k_spatial = nn.Linear(dh, match_dim)
        self.refine_spatial = nn.Sequential(
            nn.Conv2d(dh, conv_dim, 3, 1, 1), nn.GELU(), nn.Conv2d(conv_dim, conv_dim, 3, 1, 1), nn.GELU()
        )
        self.out_spatial = nn.Linear(conv_dim, self.half)
        # spectral: tokens query HyperT channels
        self.q_spectral = nn.Linear(d - self.half, match_dim)
        self.k_spectral = nn.Linear(token_len, match_dim)
        self.v_spectral = nn.Linear(token_len, match_dim)
        self.refine_spectral = nn.Sequential(nn.Conv1d(1, 4, 5, 1, 2), nn.GELU(), nn.Conv1d(4, 1, 5, 1, 2))
        self.out_spectral = nn.Linear(match_dim, d - self.half)
        self.gate = nn.Linear(d, 1)
        self.alpha = nn.Parameter(torch.tensor(0.01))
        self.scale_qk = 1.0 / math.sqrt(match_dim)
        self.hard = cfg.are_match == "hard"
        self.scalar_output = cfg.are_output == "scalar"

    def _match(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Match weights (B, N, S): softmax attention, or the paper's one-hot arg-max (no gradient
        reaches the queries through an arg-max; the refinement convs still train)."""
        logits = q @ k.transpose(1, 2) * self.scale_qk
        if self.hard:
            return torch.zeros_like(logits).scatter_(-1, logits.argmax(-1, keepdim=True), 1.0)
        return logits.softmax(-1)

    def forward(self, tokens: torch.Tensor, spatial: torch.Tensor, spectral: torch.Tensor) -> torch.Tensor:
        """tokens (B, N, D) patch tokens; spatial (B, S, D_h); spectral (B, D_h, S)."""
        b, n, d = tokens.shape
        side = int(math.isqrt(n))
        x = self.norm(tokens)
        xs, xe = x[..., : self.half], x[..., self.half :]
        # spatial match and refinement on the token grid
        attn = self._match(self.q_spatial(xs), self.k_spatial(spatial))
        matched = (attn @ spatial).transpose(1, 2).reshape(b, -1, side, side)  # (B, D_h, g, g)
        refined_s = self.out_spatial(self.refine_spatial(matched).flatten(2).transpose(1, 2))
        # spectral match and refinement along the feature axis
        attn = self._match(self.q_spectral(xe), self.k_spectral(spectral))
        matched = attn @ self.v_spectral(spectral)  # (B, N, m)
        refined_e = matched + self.refine_spectral(matched.reshape(b * n, 1, -1)).reshape(b, n, -1)
        refined_e = self.out_spectral(refined_e)
        refined = torch.cat([refined_s, refined_e], dim=-1)
        if self.scalar_output:
            # the paper's output: refined features pooled to one non-negative scalar per token,
            # which rescales the token itself: x + a * s * x
            scalar = F.relu(self.gate(refined))  # (B, N, 1)
            return tokens + self.alpha * scalar * tokens
        gate = torch.sigmoid(self.gate(refined))  # (B, N, 1)
        return tokens + self.alpha * gate * refined
