"""Frozen backbone weights: reading real RSFM releases and the project's own backbone files.

Real releases (Scale-MAE, SatMAE++, MAE, timm) come as a bare state dict or wrapped under `model` /
`state_dict`, with `module.` / `encoder.` prefixes, MAE decoder keys, a different position grid and
a different patch-embedding channel count. `map_backbone_state` turns any of these into the exact
state dict of our `VisionTransformer` and reports what it did.
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import torch

from .config import BACKBONE_PRESETS, ModelConfig
from .errors import CheckpointError
from .model.backbone import VisionTransformer, resize_pos_embed
from .safefile import PICKLE_SUFFIXES, read_safetensors, read_torch_pickle, write_safetensors_atomic

BACKBONE_META_KEY = "spectralx_backbone"
_WRAPPER_KEYS = ("model", "state_dict", "model_state", "teacher", "student")
_PREFIXES = ("module.", "encoder.", "backbone.", "model.", "vit.")
_DROPPED_PREFIXES = ("decoder", "mask_token", "head.", "fc_norm.", "pred", "fpn", "neck", "aux")


@dataclass
class MappingReport:
    dropped: List[str] = field(default_factory=list)      # decoder / head keys we do not use
    unknown: List[str] = field(default_factory=list)      # keys that match nothing in the encoder
    resized: List[str] = field(default_factory=list)
    replaced: List[str] = field(default_factory=list)     # patch embedding of another channel count
    missing: List[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = []
        for name in ("dropped", "unknown", "resized", "replaced", "missing"):
            keys = getattr(self, name)
            if keys:
                shown = ", ".join(keys[:6]) + (f" (+{len(keys) - 6} more)" if len(keys) > 6 else "")
                parts.append(f"{name}: {shown}")
        return "; ".join(parts) or "all encoder keys matched"


def read_weights_file(path: str) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """Tensors (and safetensors metadata) from .safetensors or, safely, from a torch pickle."""
    if not os.path.isfile(path):
        raise CheckpointError(f"backbone file not found: {path}")
    if path.lower().endswith(".safetensors"):
        return read_safetensors(path)
    if path.lower().endswith(PICKLE_SUFFIXES):
        return _unwrap(read_torch_pickle(path), path), {}
    raise CheckpointError(f"{path}: unknown weights format; use .safetensors, .pth or .pt")


def _unwrap(obj: object, path: str) -> Dict[str, torch.Tensor]:
    for _ in range(3):
        if isinstance(obj, dict) and not _looks_like_state_dict(obj):
            inner = next((obj[k] for k in _WRAPPER_KEYS if k in obj and isinstance(obj[k], dict)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, dict) or not _looks_like_state_dict(obj):
        raise CheckpointError(f"{path} holds no state dict of tensors (looked under {', '.join(_WRAPPER_KEYS)})")
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def _looks_like_state_dict(d: dict) -> bool:
    return bool(d) and sum(isinstance(v, torch.Tensor) for v in d.values()) >= max(1, len(d) // 2)


def _strip_prefixes(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for p in _PREFIXES:
            if key.startswith(p):
                key, changed = key[len(p):], True
    return key


def infer_preset(state: Dict[str, torch.Tensor]) -> str:
    """Name the preset whose width and depth match a (mapped) state dict."""
    width = state["norm.weight"].shape[0] if "norm.weight" in state else None
    depth = 1 + max((int(k.split(".")[1]) for k in state if k.startswith("blocks.")), default=-1)
    for name, p in BACKBONE_PRESETS.items():
        if p["embed_dim"] == width and p["depth"] == depth:
            return name
    raise CheckpointError(
        f"backbone has width {width} and {depth} blocks, which matches no preset; name one with "
        f"--backbone-preset ({', '.join(BACKBONE_PRESETS)})")


def map_backbone_state(raw: Dict[str, torch.Tensor], cfg: ModelConfig) -> Tuple[Dict[str, torch.Tensor], MappingReport]:
    """Map a release's tensors onto our VisionTransformer's state dict for `cfg`."""
    report = MappingReport()
    with torch.device("meta"):  # only the target shapes are needed
        target = VisionTransformer(cfg).state_dict()
    out: Dict[str, torch.Tensor] = {}
    for key, tensor in raw.items():
        k = _strip_prefixes(key)
        if k.startswith(_DROPPED_PREFIXES):
            report.dropped.append(key)
            continue
        if k not in target:
            report.unknown.append(key)
            continue
        if k == "pos_embed":
            tensor = _fit_pos_embed(tensor, cfg, report)
        elif k.startswith("patch_embed.proj") and tensor.shape != target[k].shape:
            report.replaced.append(key)  # HyperT replaces the patch embedding; keep our init
            continue
        if tensor.shape != target[k].shape:
            raise CheckpointError(
                f"backbone tensor {key} has shape {tuple(tensor.shape)}, expected {tuple(target[k].shape)} "
                f"for {cfg.backbone_preset}; is this the right preset?")
        out[k] = tensor.float()
    for k in target:
        if k not in out:
            if k.startswith("patch_embed.") or (k == "cls_token" and not any(
                    _strip_prefixes(r) == "cls_token" for r in raw)):
                # unused by SpectralX's forward (HyperT replaces the patch embedding) or absent in
                # cls-free releases: zeros
                out[k] = torch.zeros(target[k].shape)
            else:
                report.missing.append(k)
    if report.missing:
        raise CheckpointError(f"backbone is missing encoder keys: {', '.join(report.missing)}")
    return out, report


def _fit_pos_embed(pos: torch.Tensor, cfg: ModelConfig, report: MappingReport) -> torch.Tensor:
    if pos.dim() == 2:
        pos = pos[None]
    n = pos.shape[1]
    src_prefix = 0 if math.isqrt(n) ** 2 == n else 1
    want_prefix = 1 if cfg.class_token else 0
    if src_prefix and not want_prefix:
        pos = pos[:, 1:]
    elif want_prefix and not src_prefix:
        pos = torch.cat([torch.zeros_like(pos[:, :1]), pos], dim=1)
    resized = resize_pos_embed(pos, cfg.grid, want_prefix)
    if resized.shape != pos.shape:
        report.resized.append(f"pos_embed {tuple(pos.shape)} -> {tuple(resized.shape)}")
    return resized


def load_backbone(path: str, preset: Optional[str] = None, img_size: Optional[int] = None,
                  ) -> Tuple[Dict[str, torch.Tensor], dict, MappingReport]:
    """Read a backbone file and map it for tiles of `img_size` (default: the file's own, else 224).

    Returns (state dict, backbone config dict, report). Files written by the project carry their
    config in their metadata; third-party files need `preset` or are matched to a preset by shape.
    """
    raw, meta = read_weights_file(path)
    own = json.loads(meta[BACKBONE_META_KEY]) if BACKBONE_META_KEY in meta else None
    if own is not None:
        bcfg = dict(own["config"])
        if img_size:
            bcfg["img_size"] = img_size
        if preset and preset != bcfg["backbone_preset"]:
            raise CheckpointError(f"{path} is a {bcfg['backbone_preset']} backbone, not {preset}")
    else:
        mapped_keys = {_strip_prefixes(k): v for k, v in raw.items()}
        name = preset or infer_preset(mapped_keys)
        p = BACKBONE_PRESETS.get(name)
        if p is None:
            raise CheckpointError(f"unknown backbone preset '{name}'; choose one of {', '.join(BACKBONE_PRESETS)}")
        has_cls = "cls_token" in mapped_keys
        bcfg = dict(backbone_preset=name, img_size=img_size or 224, patch_size=16, embed_dim=p["embed_dim"],
                    depth=p["depth"], num_heads=p["num_heads"], mlp_ratio=4.0, class_token=has_cls)
    cfg = ModelConfig.from_preset(bcfg["backbone_preset"], **{k: v for k, v in bcfg.items() if k != "backbone_preset"})
    state, report = map_backbone_state(raw, cfg)
    return state, bcfg, report


def save_backbone(state: Dict[str, torch.Tensor], cfg: ModelConfig, path: str, description: str,
                  provenance: Optional[dict] = None) -> None:
    """Write a project backbone: timm-named tensors + its config and description in the metadata."""
    meta = {"config": cfg.backbone_dict(), "description": description, "provenance": provenance or {}}
    write_safetensors_atomic(state, {BACKBONE_META_KEY: json.dumps(meta)}, path)


def backbone_description(path: str) -> Optional[dict]:
    """The metadata a project backbone file carries, or None for third-party files."""
    if not path.lower().endswith(".safetensors"):
        return None
    from .safefile import read_safetensors_header
    meta = read_safetensors_header(path).get("__metadata__") or {}
    return json.loads(meta[BACKBONE_META_KEY]) if BACKBONE_META_KEY in meta else None
