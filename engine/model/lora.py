"""PEFT baselines on the frozen backbone: LoRA and SLR (LoRA + input/output scaling vectors).

The adapters live outside the backbone (in `SpectralX.lora`) and reach its frozen linears through
forward hooks, so the backbone keeps its timm state-dict names (checkpoints still reference the
backbone file by hash) and its own weights stay bit-identical.

LoRA: y = W x + b + (alpha / r) * B A x, with A Kaiming-initialised and B zero (the adapted model
starts as the frozen one). SLR adds learnable scaling vectors on the linear's input and output,
initialised at 1: y = s_out * (W (s_in * x) + b) + LoRA(x).
"""

from __future__ import annotations

import math
from typing import Dict

import torch
from torch import nn

LORA_TARGETS = ("attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2")


class LoRA(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, rank: int, scaling: bool = False, alpha: float = None):
        super().__init__()
        self.down = nn.Linear(in_dim, rank, bias=False)
        self.up = nn.Linear(rank, out_dim, bias=False)
        nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.up.weight)
        self.factor = (alpha if alpha is not None else rank) / rank
        if scaling:
            self.scale_in = nn.Parameter(torch.ones(in_dim))
            self.scale_out = nn.Parameter(torch.ones(out_dim))
        else:
            self.scale_in = self.scale_out = None

    def pre_hook(self, module: nn.Module, args):
        if self.scale_in is None:
            return None
        self._x = args[0]  # the unscaled input, for the low-rank branch
        return (args[0] * self.scale_in,) + tuple(args[1:])

    def hook(self, module: nn.Module, args, output: torch.Tensor) -> torch.Tensor:
        x = getattr(self, "_x", None) if self.scale_in is not None else args[0]
        self._x = None
        if self.scale_out is not None:
            output = output * self.scale_out
        return output + self.factor * self.up(self.down(x))


def build_lora(backbone: nn.Module, blocks, rank: int, scaling: bool) -> nn.ModuleDict:
    """LoRA modules for LORA_TARGETS of the given backbone blocks (not yet attached)."""
    out = nn.ModuleDict()
    for i in blocks:
        blk = backbone.blocks[int(i)]
        mods = nn.ModuleDict()
        for target in LORA_TARGETS:
            lin = blk.get_submodule(target)
            mods[target.replace(".", "_")] = LoRA(lin.in_features, lin.out_features, rank, scaling)
        out[str(i)] = mods
    return out


def attach_lora(backbone: nn.Module, lora: nn.ModuleDict) -> Dict[str, object]:
    """Register the hooks that add each LoRA branch to its frozen linear; returns the handles."""
    handles = {}
    for i, mods in lora.items():
        blk = backbone.blocks[int(i)]
        for target in LORA_TARGETS:
            lin = blk.get_submodule(target)
            mod = mods[target.replace(".", "_")]
            handles[f"{i}.{target}.pre"] = lin.register_forward_pre_hook(mod.pre_hook)
            handles[f"{i}.{target}"] = lin.register_forward_hook(mod.hook)
    return handles
