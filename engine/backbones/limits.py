"""Sane bounds on a ViT encoder read from a file, checked before anything is built from it.

A depth, width or token count is either backed by tensors in the file (so bounded by its size) or
only *named* by it: one key `blocks.100000000.attn.qkv.weight`, or a description saying depth
100000000, would otherwise make the importer build a hundred million blocks. So: depths, widths,
heads, patch sizes, position grids and register counts have limits, every encoder tensor must have
the rank its name implies, be a dense floating-point tensor, and not share bytes with another one.

The limits hold every release in docs/backbones.md with room to spare (ViT-L/16: depth 24, width
1024, 16 heads, patch 16, 14 x 14 grid; DINOv3 ViT-7B: depth 40, width 4096, 4 registers).
"""

from __future__ import annotations

import math
import re
from typing import Any, Dict, Mapping

import torch

from ..errors import CheckpointError

MAX_DEPTH = 64  # ViT-7B (DINOv3, the largest released ViT) has 40 blocks
MAX_WIDTH = 8192  # ViT-7B: 4096
MAX_PATCH = 64  # released ViTs use 8, 14, 16 or 32
MAX_GRID = 256  # position tables: 14 x 14 at 224 px / 16; 37 x 37 at 518 px / 14
MAX_REGISTERS = 64  # DINOv2/v3: 4
MAX_MLP_RATIO = 16.0  # 4 in every released ViT (8/3 x 2 for SwiGLU)
MAX_TILE = 4096  # tile side recorded in a backbone description (the CLI allows 1024)

# rank each encoder tensor must have, by name
_RANKS = (
    (re.compile(r"^patch_embed\.proj\.weight$"), (4,)),
    (re.compile(r"^(cls_token|storage_tokens)$"), (3,)),
    (re.compile(r"^pos_embed$"), (2, 3)),
    (re.compile(r"\.(qkv|proj|fc1|fc2)\.weight$"), (2,)),
    (re.compile(r"(\.bias|norm\d?\.weight|\.gamma|^rope_embed\.periods)$"), (1,)),
)
_BLOCK = re.compile(r"^blocks\.(\d+)\.")


def _fail(path: str, what: str) -> CheckpointError:
    return CheckpointError(f"{path}: {what}")


def check_tensor_kind(key: str, t: Any, path: str) -> None:
    """A dense, CPU, floating-point tensor (integer, bool and complex weights are refused by name)."""
    if not isinstance(t, torch.Tensor):
        raise _fail(path, f"{key} is a {type(t).__name__}, not a tensor")
    if t.layout != torch.strided or t.is_quantized or t.device.type != "cpu":
        kind = "quantized" if t.is_quantized else str(t.layout if t.layout != torch.strided else t.device)
        raise _fail(
            path,
            f"{key} is a {kind.replace('torch.', '')} tensor; SpectralX reads dense floating-point "
            "weights (import the unquantized release)",
        )
    if not t.is_floating_point():
        raise _fail(
            path,
            f"{key} holds {str(t.dtype).replace('torch.', '')} values, not floating-point weights; "
            "is this a weights file?",
        )


def block_depth(keys, path: str) -> int:
    """Number of blocks; their indices must run 0..depth-1 without gaps, at most MAX_DEPTH."""
    found = set()
    for k in keys:
        m = _BLOCK.match(k)
        if m:
            if len(m.group(1)) > 6 or int(m.group(1)) >= MAX_DEPTH:
                raise _fail(
                    path,
                    f"{k} names block {m.group(1)[:12]}, beyond the {MAX_DEPTH} blocks any released "
                    "ViT has; the file is damaged or not a ViT",
                )
            found.add(int(m.group(1)))
    depth = max(found) + 1 if found else 0
    gaps = sorted(set(range(depth)) - found)
    if gaps:
        raise _fail(
            path,
            f"the encoder has blocks up to {depth - 1} but no block {gaps[0]}"
            + (f" (and {len(gaps) - 1} more missing)" if len(gaps) > 1 else "")
            + "; the file is incomplete",
        )
    return depth


def check_encoder(encoder: Mapping[str, torch.Tensor], path: str) -> None:
    """Everything an encoder's tensors imply, before any network is built from them."""
    for key, t in encoder.items():
        check_tensor_kind(key, t, path)
        ranks = next((r for pattern, r in _RANKS if pattern.search(key)), None)
        if ranks and t.dim() not in ranks:
            raise _fail(
                path,
                f"{key} has shape {tuple(t.shape)}; a ViT's {key.rsplit('.', 1)[-1]} has "
                f"{' or '.join(map(str, ranks))} dimension(s)",
            )
        if t.numel() == 0:
            raise _fail(path, f"{key} is empty (shape {tuple(t.shape)})")
    depth = block_depth(encoder, path)
    if depth == 0 or "blocks.0.attn.qkv.weight" not in encoder:
        raise _fail(path, "the ViT encoder has no blocks.0.attn.qkv.weight")
    qkv = encoder["blocks.0.attn.qkv.weight"]
    width = qkv.shape[1]
    if not 2 <= width <= MAX_WIDTH or qkv.shape[0] != 3 * width:
        raise _fail(
            path,
            f"blocks.0.attn.qkv.weight has shape {tuple(qkv.shape)}; a ViT's is (3 x width, width) "
            f"with width up to {MAX_WIDTH}",
        )
    fc1 = encoder.get("blocks.0.mlp.fc1.weight")
    if fc1 is not None and (fc1.shape[1] != width or fc1.shape[0] > MAX_MLP_RATIO * width):
        raise _fail(path, f"blocks.0.mlp.fc1.weight has shape {tuple(fc1.shape)} for width {width}")
    patch = encoder.get("patch_embed.proj.weight")
    if patch is not None and (patch.shape[-1] != patch.shape[-2] or not 1 <= patch.shape[-1] <= MAX_PATCH):
        raise _fail(
            path,
            f"patch_embed.proj.weight has a {patch.shape[-2]} x {patch.shape[-1]} kernel; a ViT's "
            f"patches are square, 1 to {MAX_PATCH} px",
        )
    for key in ("cls_token", "storage_tokens", "pos_embed"):
        t = encoder.get(key)
        if t is not None and t.shape[-1] != width:
            raise _fail(path, f"{key} has width {t.shape[-1]}, the blocks {width}")
    regs = encoder.get("storage_tokens")
    if regs is not None and regs.shape[1] > MAX_REGISTERS:
        raise _fail(path, f"storage_tokens holds {regs.shape[1]} register tokens (at most {MAX_REGISTERS})")
    pos = encoder.get("pos_embed")
    if pos is not None:
        tokens = pos.reshape(-1, pos.shape[-1]).shape[0]
        if tokens > MAX_GRID**2 + 1 + MAX_REGISTERS:
            raise _fail(path, f"pos_embed has {tokens:,} positions; at most a {MAX_GRID} x {MAX_GRID} grid is read")
    _check_shared_bytes(encoder, path)


def _check_shared_bytes(encoder: Mapping[str, torch.Tensor], path: str) -> None:
    """No two encoder tensors read the same stored bytes: their total is then at most the file's."""
    spans = []
    for key, t in encoder.items():
        start = t.untyped_storage().data_ptr() + t.storage_offset() * t.element_size()
        spans.append((start, start + t.numel() * t.element_size(), key))
    spans.sort()
    end, owner = 0, ""
    for start, stop, key in spans:
        if start < end:
            raise _fail(
                path,
                f"{owner} and {key} are stored in the same bytes; a released encoder stores each "
                "tensor once, so it is refused",
            )
        if stop > end:
            end, owner = stop, key


def check_finite(state: Mapping[str, torch.Tensor], path: str) -> None:
    """NaN or infinite weights are refused at import (they would be blamed on training later)."""
    for key, t in state.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise _fail(
                path, f"tensor {key} holds {bad:,} NaN/infinite value(s); the release is damaged " "(download it again)"
            )


def check_config(cfg: Any, path: str) -> Dict[str, Any]:
    """A backbone description's `config` (depth, width, … as written in the file): types and ranges,
    before a network is built from it. Returns it unchanged."""
    if not isinstance(cfg, dict):
        raise _fail(path, "its backbone description has no 'config' object")

    def whole(key, lo, hi, default=None):
        v = cfg.get(key, default)
        if v is None and default is None and key not in cfg:
            return None
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            raise _fail(
                path,
                f"its backbone description gives {key} = {str(v)[:40]}; expected a whole number " f"from {lo} to {hi}",
            )
        return v

    def real(key, lo, hi):
        v = cfg.get(key)
        if v is None:
            return
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo < v <= hi:
            raise _fail(
                path,
                f"its backbone description gives {key} = {str(v)[:40]}; expected a number above {lo:g} "
                f"and at most {hi:g}",
            )

    from ..config import ModelConfig

    unknown = sorted(str(k)[:40] for k in cfg if k not in ModelConfig().backbone_dict())
    if unknown:
        raise _fail(path, f"its backbone description's config has unknown keys: {', '.join(unknown[:4])}")
    for key in ("backbone_preset", "embed_dim", "depth", "num_heads"):
        if key not in cfg:
            raise _fail(path, f"its backbone description's config lacks '{key}'")
    if not isinstance(cfg["backbone_preset"], str) or not cfg["backbone_preset"]:
        raise _fail(path, "its backbone description's backbone_preset is not a name")
    width = whole("embed_dim", 2, MAX_WIDTH)
    whole("depth", 1, MAX_DEPTH)
    heads = whole("num_heads", 1, width)
    if width % heads:
        raise _fail(path, f"its backbone description's width {width} does not split into {heads} heads")
    whole("patch_size", 1, MAX_PATCH)
    whole("img_size", 1, MAX_TILE)
    whole("num_register_tokens", 0, MAX_REGISTERS)
    real("mlp_ratio", 0.0, MAX_MLP_RATIO)
    real("rope_base", 0.0, 1e9)
    real("norm_eps", 0.0, 1.0)
    for key in ("class_token", "layer_scale"):
        if key in cfg and not isinstance(cfg[key], bool):
            raise _fail(path, f"its backbone description gives {key} = {str(cfg[key])[:40]}; expected true or false")
    if cfg.get("pos_embed", "absolute") not in ("absolute", "rope"):
        raise _fail(
            path,
            f"its backbone description gives pos_embed = {str(cfg['pos_embed'])[:40]}; expected " "absolute or rope",
        )
    return cfg
