"""Which numeric path runs a network in segment(): fp32, bf16/fp16 autocast, or the int8 backbone,
on torch or (CPU, optional) ONNX Runtime.

`--precision auto` on the CPU is decided by measurement, once per network per process: each
candidate (torch's int8 copy, quantize.py; with onnxruntime installed and a job big enough to repay
the export, ONNX Runtime in float32 and with int8 backbone linears, onnx_runtime.py) runs interleaved
with torch fp32 on random tiles of the model's real shape; the fastest that agreed with fp32 (arg-max
on >= 99 % of the pixels fp32 decides, mean |dp| <= 0.01) and was >= 1.1x faster runs, else torch
fp32. `--precision int8` takes the fastest int8 implementation that agreed (ONNX Runtime's when it
did, for a big enough job), else torch's. ViT-Tiny/Small backbones skip auto's check: there HyperT
and the head take most of a tile's time, so int8 cannot pay for the check. bf16 on the CPU is never chosen by auto (without AVX512-BF16/AMX it is emulated: 50x
slower than fp32 on the 2-core AVX2 dev machine); it stays available on request. GPUs keep the
device module's autocast policy. Fine-tuning and its validation never come here: they run float.
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass
from typing import Optional, Tuple

import torch
from torch import nn

from ..devices import autocast_dtype
from .quantize import quantize_backbone

AGREEMENT = 0.99  # arg-max agreement with fp32 the int8 path must reach
MAX_DELTA_P = 0.01  # and mean absolute probability difference it must stay under
NEAR_TIE = 0.01  # pixels whose top two fp32 probabilities are closer are not counted: a coin toss
MIN_SPEEDUP = 1.1  # int8 must beat fp32 by this much on the check (noise margin)
MIN_EMBED_DIM = 768  # ViT-B and wider: where the backbone is most of a tile's time
# ONNX Runtime is considered for jobs of at least this many tiles: its export and quantization take
# about a minute for ViT-B on the dev machine (more for ViT-L), which a job must pay back
ORT_MIN_TILES = 256


@dataclass(frozen=True)
class RunPath:
    name: str  # what runs: fp32, bf16, fp16 or int8
    autocast: str  # the precision run_pipeline's autocast gets
    note: str = ""  # one line for the log ("" = nothing worth saying)
    runtime: str = "torch"  # or "onnxruntime"


@dataclass(frozen=True)
class Check:
    agreement: float  # over the pixels fp32 decides (see NEAR_TIE)
    agreement_all: float  # over every pixel
    delta_p: float  # mean |p_int8 - p_fp32|
    speedup: float  # fp32 seconds / int8 seconds, best of the rounds
    passed: bool  # agreement and delta_p within bounds (speed is judged separately)


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
    """torch int8 against fp32 on `batch` random tiles of the model's bands and tile size (cached)."""
    entry = _CACHE.setdefault(net, {})
    if "check" not in entry:
        entry["check"] = check_against(net, {"int8": int8_copy(net)}, rounds, batch)["int8"]
    return entry["check"]


def check_against(net: nn.Module, candidates: dict, rounds: int = 2, batch: int = 1) -> dict:
    """{name: Check} of each candidate module against `net` in fp32, on `batch` random tiles of the
    model's bands and tile size, all run interleaved (a busy machine slows them alike), best of
    `rounds`."""
    cfg = net.cfg
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, cfg.in_bands, cfg.img_size, cfg.img_size, generator=gen)
    runs = {"fp32": net, **candidates}
    best = {name: float("inf") for name in runs}
    out = {}
    with torch.inference_mode():
        for _ in range(max(1, rounds)):
            for name, m in runs.items():
                t0 = time.perf_counter()
                out[name] = m(x)
                best[name] = min(best[name], time.perf_counter() - t0)
    checks = {}
    for name in candidates:
        agree, agree_all, dp = compare(out["fp32"], out[name])
        checks[name] = Check(agree, agree_all, dp, best["fp32"] / best[name], agree >= AGREEMENT and dp <= MAX_DELTA_P)
    return checks


def onnx_copies(net: nn.Module, batch: int, kinds=("fp32", "int8")) -> dict:
    """{kind: ONNX Runtime network} for `batch` tiles (cached per network and batch); {} when
    onnxruntime is not installed or the export failed (the reason is kept in the cache entry)."""
    from . import onnx_runtime

    entry = _CACHE.setdefault(net, {})
    key = f"onnx:{batch}"
    if key not in entry:
        entry[key] = {}
        if onnx_runtime.available():
            try:
                entry[key] = onnx_runtime.build(net, batch, kinds)
            except Exception as exc:  # an architecture the exporter cannot take: torch runs instead
                entry["onnx_error"] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:160]}"
    return entry[key]


def choose(net: nn.Module, batch: int, tiles: Optional[int], auto: bool) -> Tuple[nn.Module, RunPath]:
    """The fastest CPU path that agreed with fp32 among torch int8 and, for a job of >= ORT_MIN_TILES
    tiles with onnxruntime installed, ONNX Runtime fp32 (auto only) and int8; all measured once per
    network and batch (cached). `auto`: torch fp32 unless a candidate is >= MIN_SPEEDUP faster;
    otherwise (--precision int8) torch int8 when nothing else agreed."""
    entry = _CACHE.setdefault(net, {})
    key = f"choice:{batch}:{auto}:{tiles is None or tiles >= ORT_MIN_TILES}"
    if key in entry:
        return entry[key]
    candidates = {"int8": int8_copy(net)}
    if (tiles is None or tiles >= ORT_MIN_TILES) and _onnx_available():
        for kind, m in onnx_copies(net, batch, ("fp32", "int8") if auto else ("int8",)).items():
            candidates[f"onnx-{kind}"] = m
    checks = check_against(net, candidates, rounds=2, batch=batch if len(candidates) > 1 else 1)
    if "int8" in checks:
        entry.setdefault("check", checks["int8"])
    passed = {n: c for n, c in checks.items() if c.passed and (c.speedup >= MIN_SPEEDUP or not auto)}
    said = "; ".join(
        f"{_label(n)}: {c.agreement:.1%} of pixels agree, mean |dp| {c.delta_p:.4f}, " f"{c.speedup:.2f}x the speed"
        for n, c in checks.items()
    )
    head = "precision auto" if auto else "precision int8"
    if passed:
        name = max(passed, key=lambda n: passed[n].speedup)
        m = candidates[name]
        kind = "int8" if name.endswith("int8") else "fp32"
        runtime = "onnxruntime" if name.startswith("onnx") else "torch"
        what = {
            "int8": f"int8 backbone linears (quantized; {FLOAT_NOTE})",
            "onnx-int8": f"ONNX Runtime, int8 backbone linears (quantized; {FLOAT_NOTE})",
            "onnx-fp32": "ONNX Runtime in float32 (not quantized)",
        }[name]
        path = RunPath(kind, "fp32", f"{head}: {what} (vs torch fp32 on random tiles: {said})", runtime)
    elif auto:
        m, path = net, RunPath("fp32", "fp32", f"{head}: fp32 (vs torch fp32 on random tiles: {said})")
    else:
        m = candidates["int8"]
        path = RunPath(
            "int8",
            "fp32",
            f"{head}: torch int8 backbone linears (quantized; {FLOAT_NOTE}; " f"vs fp32 on random tiles: {said})",
        )
    for n in candidates:  # free what does not run (the checks stay cached)
        if candidates[n] is not m:
            if n == "int8":
                entry.pop("int8", None)
            else:
                entry.get(f"onnx:{batch}", {}).pop(n.split("-", 1)[1], None)
    entry[key] = (m, path)
    return m, path


def _label(name: str) -> str:
    return {"int8": "torch int8", "onnx-int8": "ONNX Runtime int8", "onnx-fp32": "ONNX Runtime fp32"}[name]


def eligible(net: nn.Module) -> bool:
    """Whether auto should consider int8 for this network at all (see MIN_EMBED_DIM)."""
    cfg = getattr(net, "cfg", None)
    if getattr(net, "backbone", None) is None or cfg is None:
        return False
    if getattr(net, "forest", None) is not None and getattr(net, "fusion_weight", 0) >= 1:
        return False  # the forest alone: no network runs
    return cfg.embed_dim >= MIN_EMBED_DIM


FLOAT_NOTE = "the model card's accuracy was measured in float"


def select(
    net: nn.Module,
    dev: str,
    precision: str = "auto",
    *,
    measure: bool = True,
    batch: int = 4,
    tiles: Optional[int] = None,
) -> Tuple[nn.Module, RunPath]:
    """(the network to run, its path) for `precision` on `dev`. `measure=False` never runs a check
    (auto then stays float and int8 is torch's: Dask workers, so that every block of a run takes the
    same path). `batch`: the run's batch size (ONNX Runtime's graph has a fixed batch); `tiles`: the
    job's tile count (None: unknown, ONNX Runtime is considered; see ORT_MIN_TILES)."""
    dtype = autocast_dtype(dev, precision)  # validates the name; int8 off the CPU is refused there
    kind = torch.device(dev).type
    if precision == "int8":
        if measure and kind == "cpu" and (tiles is None or tiles >= ORT_MIN_TILES) and _onnx_available():
            return choose(net, batch, tiles, auto=False)
        return int8_copy(net), RunPath("int8", "fp32", f"int8 backbone linears (quantized; {FLOAT_NOTE})")
    if precision == "auto" and kind == "cpu" and measure and eligible(net):
        return choose(net, batch, tiles, auto=True)
    if dtype is None:
        return net, RunPath("fp32", precision)
    return net, RunPath({torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype], precision)


def _onnx_available() -> bool:
    from .onnx_runtime import available

    return available()
