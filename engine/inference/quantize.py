"""int8 copy of a network for CPU inference: the frozen backbone's linears only.

Dynamic quantization (int8 weights, per output channel; activations quantized per batch at run
time) of the ViT's nn.Linear modules, the bulk of its matrix work. Everything SpectralX trains
(HyperT, AoMoA, the Are-adapter, LoRA, the head) stays float: those are small, and they are what
fine-tuning fitted to this data. The copy shares every float tensor with the original, which is
left untouched (the plugin caches it; fine-tuning and its validation run on it in float), and it
uses channels-last convolutions, which oneDNN runs faster on the CPU (1.2x on ViT-B/16, 32 bands,
bench/cpu_backbone_bench.py) without changing a value beyond float rounding.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

# Set on a quantized copy: save_checkpoint refuses it, and segment() tags its outputs with it.
MARK = "spectralx_precision"


def quantize_backbone(net: nn.Module) -> nn.Module:
    """A copy of `net` whose backbone nn.Linear modules run int8 (per-channel dynamic quantization)."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    if getattr(net, MARK, None) == "int8":
        return net
    backbone = getattr(net, "backbone", None)
    if backbone is None:
        raise TypeError("int8 needs a network with a ViT backbone (a forest-only model has none)")
    # share parameters, buffers and the forest with the original: only module objects are copied,
    # so the copy costs the int8 weights, not a second float model. Conv kernels (4-D) are copied:
    # channels-last below rewrites them in place, which must not reach the original.
    memo = {id(t): t for t in list(net.parameters()) + list(net.buffers()) if t.dim() != 4}
    if getattr(net, "forest", None) is not None:
        memo[id(net.forest)] = net.forest
    q = copy.deepcopy(net, memo)
    with warnings.catch_warnings():  # torch.ao's deprecation notices: the API is what 2.x ships
        warnings.simplefilter("ignore")
        # in place on the copy's backbone: swaps its Linear objects, never the original's (LoRA's
        # hooks move to the swapped modules with them)
        quantize_dynamic(q.backbone, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True)
    q = q.to(memory_format=torch.channels_last).eval()
    setattr(q, MARK, "int8")
    return q


def is_quantized(net: nn.Module) -> bool:
    """Whether any module of `net` runs quantized (a quantized network is never saved as a model)."""
    if getattr(net, MARK, None) == "int8":
        return True
    return any(type(m).__module__.startswith("torch.ao.nn.quantized") for m in net.modules())
