"""Which numeric path runs a network in segment(): fp32, bf16/fp16 autocast, or the int8 backbone.

`--precision auto` on the CPU is decided by measurement, once per network per process: the int8
copy (quantize.py) runs only if, on one random tile of the model's real shape, it agreed with fp32
(arg-max on >= 99 % of the pixels fp32 decides, mean |dp| <= 0.01) and was faster. ViT-Tiny/Small
backbones skip the check: there HyperT and the head take most of a tile's time, so int8 cannot pay
for the check. bf16 on the CPU is never chosen by auto (without AVX512-BF16/AMX it is emulated: 50x
slower than fp32 on the 2-core AVX2 dev machine); it stays available on request. GPUs keep the
device module's autocast policy. Fine-tuning and its validation never come here: they run float.
"""
from __future__ import annotations

import time
import weakref
from dataclasses import dataclass
from typing import Tuple

import torch
from torch import nn

from ..devices import autocast_dtype
from .quantize import quantize_backbone

AGREEMENT = 0.99       # arg-max agreement with fp32 the int8 path must reach
MAX_DELTA_P = 0.01     # and mean absolute probability difference it must stay under
NEAR_TIE = 0.01        # pixels whose top two fp32 probabilities are closer are not counted: a coin toss
MIN_SPEEDUP = 1.1      # int8 must beat fp32 by this much on the check (noise margin)
MIN_EMBED_DIM = 768    # ViT-B and wider: where the backbone is most of a tile's time


@dataclass(frozen=True)
class RunPath:
    name: str          # what runs: fp32, bf16, fp16 or int8
    autocast: str      # the precision run_pipeline's autocast gets
    note: str = ""     # one line for the log ("" = nothing worth saying)


@dataclass(frozen=True)
class Check:
    agreement: float       # over the pixels fp32 decides (see NEAR_TIE)
    agreement_all: float   # over every pixel
    delta_p: float         # mean |p_int8 - p_fp32|
    speedup: float         # fp32 seconds / int8 seconds, best of the rounds
    passed: bool           # agreement and delta_p within bounds (speed is judged separately)


def compare(reference: torch.Tensor, other: torch.Tensor) -> Tuple[float, float, float]:
    """(agreement on decided pixels, agreement on all pixels, mean |dp|) of two logit tensors (B, K, H, W)."""
    p, q = reference.float().softmax(1), other.float().softmax(1)
    same = p.argmax(1) == q.argmax(1)
    top2 = p.topk(2, dim=1).values if p.shape[1] > 1 else torch.cat([p, torch.zeros_like(p)], 1)
    decided = (top2[:, 0] - top2[:, 1]) >= NEAR_TIE
    agree = same[decided].float().mean().item() if decided.any() else 1.0
    return agree, same.float().mean().item(), (p - q).abs().mean().item()


# per network object: its int8 copy and check, so a second scene (or run) in this process reuses them
_CACHE: "weakref.WeakKeyDictionary[nn.Module, dict]" = weakref.WeakKeyDictionary()


def int8_copy(net: nn.Module) -> nn.Module:
    entry = _CACHE.setdefault(net, {})
    if "int8" not in entry:
        entry["int8"] = quantize_backbone(net)
    return entry["int8"]


def check_int8(net: nn.Module, rounds: int = 2, batch: int = 1) -> Check:
    """int8 against fp32 on `batch` random tiles of the model's bands and tile size (cached)."""
    entry = _CACHE.setdefault(net, {})
    if "check" in entry:
        return entry["check"]
    cfg = net.cfg
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, cfg.in_bands, cfg.img_size, cfg.img_size, generator=gen)
    q = int8_copy(net)
    best = {"fp32": float("inf"), "int8": float("inf")}
    out = {}
    with torch.inference_mode():
        for _ in range(max(1, rounds)):   # interleaved: a busy machine slows both alike
            for name, m in (("fp32", net), ("int8", q)):
                t0 = time.perf_counter()
                out[name] = m(x)
                best[name] = min(best[name], time.perf_counter() - t0)
    agree, agree_all, dp = compare(out["fp32"], out["int8"])
    check = Check(agree, agree_all, dp, best["fp32"] / best["int8"], agree >= AGREEMENT and dp <= MAX_DELTA_P)
    entry["check"] = check
    return check


def eligible(net: nn.Module) -> bool:
    """Whether auto should consider int8 for this network at all (see MIN_EMBED_DIM)."""
    cfg = getattr(net, "cfg", None)
    if getattr(net, "backbone", None) is None or cfg is None:
        return False
    if getattr(net, "forest", None) is not None and getattr(net, "fusion_weight", 0) >= 1:
        return False   # the forest alone: no network runs
    return cfg.embed_dim >= MIN_EMBED_DIM


FLOAT_NOTE = "the model card's accuracy was measured in float"


def select(net: nn.Module, dev: str, precision: str = "auto", *, measure: bool = True
           ) -> Tuple[nn.Module, RunPath]:
    """(the network to run, its path) for `precision` on `dev`. `measure=False` never runs the check
    (auto then stays float: Dask workers, so that every block of a run takes the same path)."""
    dtype = autocast_dtype(dev, precision)   # validates the name; int8 off the CPU is refused there
    if precision == "int8":
        return int8_copy(net), RunPath("int8", "fp32", f"int8 backbone linears (quantized; {FLOAT_NOTE})")
    kind = torch.device(dev).type
    if precision == "auto" and kind == "cpu" and measure:
        if eligible(net):
            c = check_int8(net)
            said = (f"int8 vs fp32 on a random tile: {c.agreement:.1%} of pixels agree, mean |dp| "
                    f"{c.delta_p:.4f}, {c.speedup:.2f}x the speed")
            if c.passed and c.speedup >= MIN_SPEEDUP:
                return int8_copy(net), RunPath("int8", "fp32", f"precision auto: int8 backbone ({said}; {FLOAT_NOTE})")
            _CACHE[net].pop("int8", None)   # not used: free the int8 weights (the check stays cached)
            return net, RunPath("fp32", "fp32", f"precision auto: fp32 ({said})")
    if dtype is None:
        return net, RunPath("fp32", precision)
    return net, RunPath({torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype], precision)

