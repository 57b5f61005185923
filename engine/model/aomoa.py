"""AoMoA: Attribute-oriented Mixture of Adapters on the frozen MLP linears of the adapter blocks.

`y = W x + s * MoA(x)`. MoA splits the features into a spatial and a spectral half; each half goes
LayerNorm -> down-projection -> LayerNorm -> a multi-gate mixture of shared experts (noisy top-k
gating, one gate per attribute) -> up-projection, and the halves are concatenated.

Two layouts (ModelConfig.aomoa_layout). "split" (this project's default): each half has its own
LayerNorms, down- and up-projection, with one D/8 bottleneck for both fc1 and fc2. "shared" (the
paper variant, as in the authors' reference code): one down/up projection shared by both halves, one
gate per attribute, a bottleneck of a quarter of each half's input (D/8 for fc1, D/2 for fc2).
"""

from __future__ import annotations

from typing import List

import torch
import torch.nn.functional as F
from torch import nn


class NoisyTopKGate(nn.Module):
    def __init__(self, dim: int, num_experts: int, top_k: int):
        super().__init__()
        self.top_k = top_k
        self.w_gate = nn.Linear(dim, num_experts, bias=False)
        self.w_noise = nn.Linear(dim, num_experts, bias=False)
        nn.init.zeros_(self.w_gate.weight)
        nn.init.zeros_(self.w_noise.weight)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        logits = self.w_gate(z)
        if self.training:  # noise only while training, so inference is deterministic
            logits = logits + torch.randn_like(logits) * F.softplus(self.w_noise(z))
        top_val, top_idx = logits.topk(self.top_k, dim=-1)
        # softmax in float32, scattered into a float32 tensor: under CUDA autocast softmax returns
        # float32 while the logits are bf16, and scatter() refuses mixed dtypes (every GPU run failed)
        soft = top_val.float().softmax(dim=-1)
        weights = torch.zeros(logits.shape, dtype=soft.dtype, device=logits.device).scatter(-1, top_idx, soft)
        return weights.to(logits.dtype)


class MixtureOfAdapters(nn.Module):
    """The MoA branch for one frozen linear (in_dim -> out_dim)."""

    def __init__(self, in_dim: int, out_dim: int, bottleneck: int, num_experts: int, top_k: int):
        super().__init__()
        self.in_half = in_dim // 2
        self.out_half = out_dim // 2
        halves = [(self.in_half, self.out_half), (in_dim - self.in_half, out_dim - self.out_half)]
        self.norm_in = nn.ModuleList(nn.LayerNorm(i) for i, _ in halves)
        self.down = nn.ModuleList(nn.Linear(i, bottleneck) for i, _ in halves)
        self.norm_mid = nn.ModuleList(nn.LayerNorm(bottleneck) for _ in halves)
        self.gates = nn.ModuleList(NoisyTopKGate(bottleneck, num_experts, top_k) for _ in halves)
        self.experts = nn.ModuleList(
            nn.Sequential(nn.Linear(bottleneck, 2 * bottleneck), nn.GELU(), nn.Linear(2 * bottleneck, bottleneck))
            for _ in range(num_experts)
        )
        self.up = nn.ModuleList(nn.Linear(bottleneck, o) for _, o in halves)
        for up in self.up:  # zero-init: the adapted model starts as the frozen one
            nn.init.zeros_(up.weight)
            nn.init.zeros_(up.bias)
        self.last_gate_load: List[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = (x[..., : self.in_half], x[..., self.in_half :])
        outs, loads = [], []
        for a, part in enumerate(parts):  # a = 0 spatial, 1 spectral
            z = self.norm_mid[a](self.down[a](self.norm_in[a](part)))
            gate = self.gates[a](z)  # (..., E)
            expert_out = torch.stack([e(z) for e in self.experts], dim=-1)  # (..., r, E)
            mixed = (expert_out * gate.unsqueeze(-2)).sum(-1)
            outs.append(self.up[a](mixed))
            loads.append(gate.reshape(-1, gate.shape[-1]).sum(0))
        self.last_gate_load = loads
        return torch.cat(outs, dim=-1)

    def balance_loss(self) -> torch.Tensor:
        """Squared coefficient of variation of expert load (keeps experts from collapsing)."""
        total = 0.0
        for load in self.last_gate_load:
            total = total + load.var(unbiased=False) / (load.mean() ** 2 + 1e-8)
        return torch.as_tensor(total)


class SharedMixtureOfAdapters(nn.Module):
    """The reference code's layout for one frozen linear: the spatial and spectral halves share one
    down- and one up-projection and the experts, and differ only in their gate (one per attribute).
    The bottleneck is a quarter of each half's input, so fc2's branch (input 4D) is 4x wider than
    fc1's. Experts are r -> r/4 -> r MLPs: with them the ViT-L total (4 blocks) is ~8.8 M, within
    15 % of the paper's 7.8 M for AoMoA (its expert width is not published)."""

    def __init__(self, in_dim: int, out_dim: int, num_experts: int, top_k: int):
        super().__init__()
        self.in_half, self.out_half = in_dim // 2, out_dim // 2
        r = max(8, self.in_half // 4)
        self.norm_in = nn.LayerNorm(self.in_half)
        self.down = nn.Linear(self.in_half, r)
        self.norm_mid = nn.LayerNorm(r)
        self.gates = nn.ModuleList(NoisyTopKGate(r, num_experts, top_k) for _ in range(2))
        self.experts = nn.ModuleList(
            nn.Sequential(nn.Linear(r, max(4, r // 4)), nn.GELU(), nn.Linear(max(4, r // 4), r))
            for _ in range(num_experts)
        )
        self.up = nn.Linear(r, self.out_half)
        nn.init.zeros_(self.up.weight)  # zero-init: the adapted model starts as the frozen one
        nn.init.zeros_(self.up.bias)
        self.last_gate_load: List[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # both halves through the shared projections at once: (2, ..., in_half)
        halves = torch.stack((x[..., : self.in_half], x[..., self.in_half : 2 * self.in_half]))
        z = self.norm_mid(self.down(self.norm_in(halves)))
        expert_out = torch.stack([e(z) for e in self.experts], dim=-1)  # (2, ..., r, E)
        outs, loads = [], []
        for a in range(2):  # a = 0 spatial, 1 spectral: one gate per attribute
            gate = self.gates[a](z[a])
            outs.append(self.up((expert_out[a] * gate.unsqueeze(-2)).sum(-1)))
            loads.append(gate.reshape(-1, gate.shape[-1]).sum(0))
        self.last_gate_load = loads
        return torch.cat(outs, dim=-1)

    balance_loss = MixtureOfAdapters.balance_loss


class AoMoA(nn.Module):
    """MoA branches for fc1 and fc2 of one backbone block, with their learnable scales s."""

    def __init__(self, dim: int, hidden: int, num_experts: int, top_k: int, layout: str = "split"):
        super().__init__()
        if layout == "shared":
            self.fc1 = SharedMixtureOfAdapters(dim, hidden, num_experts, top_k)
            self.fc2 = SharedMixtureOfAdapters(hidden, dim, num_experts, top_k)
        else:
            bottleneck = max(8, dim // 8)
            self.fc1 = MixtureOfAdapters(dim, hidden, bottleneck, num_experts, top_k)
            self.fc2 = MixtureOfAdapters(hidden, dim, bottleneck, num_experts, top_k)
        self.scale1 = nn.Parameter(torch.ones(hidden))
        self.scale2 = nn.Parameter(torch.ones(dim))

    def mlp(self, mlp: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The frozen block MLP with the parallel MoA branches: y = W x + s * MoA(x)."""
        h = mlp.fc1(x) + self.scale1 * self.fc1(x)
        h = mlp.act(h)
        return mlp.fc2(h) + self.scale2 * self.fc2(h)

    def balance_loss(self) -> torch.Tensor:
        return self.fc1.balance_loss() + self.fc2.balance_loss()
