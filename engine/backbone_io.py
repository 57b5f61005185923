"""Frozen backbone weights: reading real foundation-model releases and the project's backbone files.

Releases (Scale-MAE, SatMAE++, DINOv3, timm, MAE) come as a bare state dict or wrapped under `model`
/ `state_dict` / `teacher`, with prefixes, decoder keys, a different position grid or patch-embedding
channel count. `spectralx.backbones` recognises the family and maps its encoder onto our ViT;
`import_backbone` writes that once as a project backbone file (safetensors + a JSON description:
family, preset, config, source and its sha256, license, tensor digest), which checkpoints reference
by sha256. `load_backbone` reads either kind for a given tile size.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from .backbones import FAMILIES, Converted, convert, strip_prefixes
from .backbones.common import shown, sincos_2d
from .backbones.limits import check_config, check_finite
from .config import BACKBONE_PRESETS, ModelConfig
from .contract.model_folder import user_model_dir
from .errors import CheckpointError
from .model.backbone import VisionTransformer, resize_pos_embed
from .safefile import (
    PICKLE_SUFFIXES,
    read_safetensors,
    read_safetensors_header,
    read_torch_pickle,
    sha256_file,
    sniff_format,
    write_safetensors_atomic,
)

BACKBONE_META_KEY = "spectralx_backbone"
_WRAPPER_KEYS = ("model", "state_dict", "model_state", "teacher", "student")
_DROPPED_PREFIXES = (
    "decoder",
    "mask_token",
    "head.",
    "fc_norm.",
    "pred",
    "fpn",
    "neck",
    "aux",
    "proj_up_",
    "up_block",
    "local_cls_norm.",
    "cls_norm.",
)


@dataclass
class MappingReport:
    dropped: List[str] = field(default_factory=list)  # decoder / head keys we do not use
    unknown: List[str] = field(default_factory=list)  # keys that match nothing in the encoder
    resized: List[str] = field(default_factory=list)
    replaced: List[str] = field(default_factory=list)  # patch embedding of another channel count
    missing: List[str] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)  # family-specific steps (folded, regenerated)

    def summary(self) -> str:
        parts = []
        for name in ("dropped", "unknown", "resized", "replaced", "missing"):
            keys = getattr(self, name)
            if keys:
                shown = ", ".join(keys[:6]) + (f" (+{len(keys) - 6} more)" if len(keys) > 6 else "")
                parts.append(f"{name}: {shown}")
        parts += self.notes
        return "; ".join(parts) or "all encoder keys matched"


@dataclass
class Release:
    """A weights file as read: tensors, safetensors metadata, and what wrapped them."""

    tensors: Dict[str, torch.Tensor]
    metadata: Dict[str, str]
    wrapper: Dict[str, Any]  # e.g. {"key": "model", "epoch": 799, "args_model": "mae_vit_large_patch16"}


def read_release(path: str) -> Release:
    """Tensors from a .safetensors file or, through the restricted unpickler, a torch checkpoint."""
    if os.path.isdir(path):
        raise CheckpointError(f"backbone {path} is a folder, not a file; give the weights file itself")
    if not os.path.isfile(path):
        raise CheckpointError(f"backbone file not found: {path}")
    kind = sniff_format(path)
    if kind == "safetensors":
        tensors, meta = read_safetensors(path)
        return Release(tensors, meta, {})
    if kind in ("torch-zip", "pickle"):
        state, wrapper = _unwrap(read_torch_pickle(path), path)
        return Release(state, {}, wrapper)
    if path.lower().endswith(".safetensors"):
        read_safetensors_header(path)  # raises the precise reason
    raise CheckpointError(f"{path}: unknown weights format (neither safetensors nor a torch checkpoint)")


def read_weights_file(path: str) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """Tensors (and safetensors metadata) of any weights file."""
    r = read_release(path)
    return r.tensors, r.metadata


def _unwrap(obj: object, path: str) -> Tuple[Dict[str, torch.Tensor], Dict[str, Any]]:
    wrapper: Dict[str, Any] = {}
    if isinstance(obj, dict):
        if isinstance(obj.get("epoch"), int):
            wrapper["epoch"] = obj["epoch"]
        args = obj.get("args")
        if isinstance(args, dict) and isinstance(args.get("model"), str):
            wrapper["args_model"] = args["model"]
    for _ in range(3):
        if isinstance(obj, dict) and not _looks_like_state_dict(obj):
            key = next((k for k in _WRAPPER_KEYS if k in obj and isinstance(obj[k], dict)), None)
            if key is None:
                break
            wrapper["key"] = ".".join(filter(None, [wrapper.get("key"), key]))
            obj = obj[key]
    if not isinstance(obj, dict) or not _looks_like_state_dict(obj):
        raise CheckpointError(f"{path} holds no state dict of tensors (looked under {', '.join(_WRAPPER_KEYS)})")
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}, wrapper


def _looks_like_state_dict(d: dict) -> bool:
    return bool(d) and sum(isinstance(v, torch.Tensor) for v in d.values()) >= max(1, len(d) // 2)


_strip_prefixes = strip_prefixes


def infer_preset(state: Dict[str, torch.Tensor]) -> str:
    """Name the preset whose width and depth match a (mapped) state dict."""
    width = state["norm.weight"].shape[0] if "norm.weight" in state else None
    depth = 1 + max((int(k.split(".")[1]) for k in state if k.startswith("blocks.")), default=-1)
    for name, p in BACKBONE_PRESETS.items():
        if p["embed_dim"] == width and p["depth"] == depth:
            return name
    raise CheckpointError(
        f"backbone has width {width} and {depth} blocks, which matches no preset; name one with "
        f"--backbone-preset ({', '.join(BACKBONE_PRESETS)})"
    )


def map_backbone_state(
    raw: Dict[str, torch.Tensor],
    cfg: ModelConfig,
    path: str = "backbone",
) -> Tuple[Dict[str, torch.Tensor], MappingReport]:
    """Fit encoder tensors (any prefixes) to our VisionTransformer's state dict for `cfg`.

    Decoder and head keys are dropped (and listed); an encoder key the network has no place for is an
    error naming it, because dropping it silently would compute another network (a timm ViT's
    LayerScale, a second family's RoPE periods). NaN or infinite weights are refused."""
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
                f"for {cfg.backbone_preset}; is this the right preset?"
            )
        out[k] = tensor.float()
    for k in target:
        if k not in out:
            if k.startswith("patch_embed.") or (
                k == "cls_token" and not any(_strip_prefixes(r) == "cls_token" for r in raw)
            ):
                # unused by SpectralX's forward (HyperT replaces the patch embedding) or absent in
                # cls-free releases: zeros
                out[k] = torch.zeros(target[k].shape)
            else:
                report.missing.append(k)
    if report.unknown:
        raise CheckpointError(
            f"{path}: encoder keys a {cfg.backbone_preset} backbone has no place for: {shown(report.unknown)}; "
            "dropping them would compute another network, so the file is refused (another architecture "
            "variant, or pass the right --family)"
        )
    if report.missing:
        raise CheckpointError(f"{path} is missing encoder keys: {shown(report.missing)}")
    check_finite(out, path)
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


# -- presets and configs ---------------------------------------------------------------------------


def preset_name(conv: Converted, preset: Optional[str], path: str) -> str:
    """The preset a converted release is: the one named (checked against its shapes), the standard
    preset of its width/depth/heads, or a descriptive custom name for other sizes."""
    c = conv.config
    custom = f"vit_custom_w{c['embed_dim']}_d{c['depth']}_h{c['num_heads']}_patch{c['patch_size']}"
    if preset and preset != custom:  # (a card of a model built on a custom-size release names that)
        p = BACKBONE_PRESETS.get(preset)
        if p is None:
            raise CheckpointError(f"unknown backbone preset '{preset}'; choose one of {', '.join(BACKBONE_PRESETS)}")
        if (p["embed_dim"], p["depth"]) != (c["embed_dim"], c["depth"]):
            raise CheckpointError(
                f"{path} has width {c['embed_dim']} and {c['depth']} blocks, but {preset} has width "
                f"{p['embed_dim']} and {p['depth']} blocks; is this the right preset?"
            )
        c["num_heads"] = p["num_heads"]
        return preset
    for name, p in BACKBONE_PRESETS.items():
        if (p["embed_dim"], p["depth"], p["num_heads"]) == (c["embed_dim"], c["depth"], c["num_heads"]):
            return name
    return custom


def _config(conv: Converted, preset: str, img_size: int) -> ModelConfig:
    return ModelConfig.from_preset(preset, img_size=img_size, **conv.config)


def _regenerate_position(state: Dict[str, torch.Tensor], position: dict, cfg: ModelConfig) -> List[str]:
    """Formula-defined position tables (Scale-MAE) are recomputed for the tile's grid, not resized."""
    if position.get("kind") != "sincos-gsd" or "pos_embed" not in state:
        return []
    want = cfg.num_tokens + (1 if cfg.class_token else 0)
    if state["pos_embed"].shape[1] == want:
        return []
    from .backbones.scale_mae import check_gsd_ratio

    ratio = check_gsd_ratio(position.get("gsd_ratio", 1.0), f"{cfg.backbone_preset} backbone description's gsd_ratio")
    state["pos_embed"] = sincos_2d(cfg.embed_dim, cfg.grid, ratio, cfg.class_token)
    return [f"pos_embed recomputed for a {cfg.grid}x{cfg.grid} grid (Scale-MAE GSD ratio {ratio:g})"]


# -- loading -----------------------------------------------------------------------------------------


def load_backbone(
    path: str,
    preset: Optional[str] = None,
    img_size: Optional[int] = None,
) -> Tuple[Dict[str, torch.Tensor], dict, MappingReport]:
    """Read a backbone file and map it for tiles of `img_size` (default: the file's own, else 224).

    Returns (state dict, backbone config dict, report). Project files carry their config in their
    metadata; release files are recognised by family and mapped in memory (`import_backbone` does
    the same once, to a file).
    """
    release = read_release(path)
    own = (
        parse_description(release.metadata[BACKBONE_META_KEY], path) if BACKBONE_META_KEY in release.metadata else None
    )
    if own is not None:
        bcfg = dict(own["config"])
        if img_size:
            bcfg["img_size"] = img_size
        if preset and preset != bcfg["backbone_preset"]:
            raise CheckpointError(f"{path} is a {bcfg['backbone_preset']} backbone, not {preset}")
        cfg = ModelConfig.from_preset(
            bcfg["backbone_preset"], **{k: v for k, v in bcfg.items() if k != "backbone_preset"}
        )
        tensors = dict(release.tensors)
        notes = _regenerate_position(tensors, own.get("position") or {}, cfg)
    else:
        conv = convert(release.tensors, "auto", path)
        name = preset_name(conv, preset, path)
        cfg = _config(conv, name, img_size or 224)
        tensors = conv.state
        notes = conv.notes + _regenerate_position(tensors, conv.position, cfg)
        bcfg = cfg.backbone_dict()
    state, report = map_backbone_state(tensors, cfg, path)
    if own is None:
        report.dropped = conv.dropped + report.dropped
    report.notes += notes
    return state, bcfg, report


def save_backbone(
    state: Dict[str, torch.Tensor],
    cfg: ModelConfig,
    path: str,
    description: str,
    provenance: Optional[dict] = None,
    **extra: Any,
) -> None:
    """Write a project backbone: timm-named tensors + its config and description in the metadata."""
    meta = {"config": cfg.backbone_dict(), "description": description, "provenance": provenance or {}, **extra}
    write_safetensors_atomic(state, {BACKBONE_META_KEY: json.dumps(meta)}, path)


def backbone_description(path: str) -> Optional[dict]:
    """The metadata a project backbone file carries, or None for third-party files."""
    if not os.path.isfile(path) or sniff_format(path) != "safetensors":
        return None
    meta = read_safetensors_header(path).get("__metadata__") or {}
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: its safetensors metadata is not an object; the file is damaged")
    return parse_description(meta[BACKBONE_META_KEY], path) if BACKBONE_META_KEY in meta else None


def parse_description(text: Any, path: str) -> dict:
    """The JSON description of a project backbone file, checked (types, and the config's ranges)
    before anything reads a field or builds a network from it."""
    try:
        own = json.loads(text) if isinstance(text, str) else None
    except (ValueError, RecursionError):
        own = None
    if not isinstance(own, dict):
        raise CheckpointError(
            f"{path}: its backbone description ({BACKBONE_META_KEY}) is not a JSON object; "
            "the file is damaged: import the release again"
        )
    check_config(own.get("config"), path)
    for key, kind in (
        ("description", str),
        ("family", str),
        ("preset", str),
        ("license", str),
        ("source", dict),
        ("position", dict),
        ("tensors_sha256", str),
    ):
        if own.get(key) is not None and not isinstance(own[key], kind):
            raise CheckpointError(
                f"{path}: its backbone description's '{key}' is not a {kind.__name__}; "
                "the file is damaged: import the release again"
            )
    params = own.get("parameters")
    if params is not None and (not isinstance(params, int) or isinstance(params, bool)):
        raise CheckpointError(f"{path}: its backbone description's 'parameters' is not a number")
    return own


def parameter_count(state: Dict[str, torch.Tensor]) -> int:
    """Learned weights only (the RoPE period buffer is derived, not learned)."""
    return int(sum(t.numel() for k, t in state.items() if not k.startswith("rope_embed.")))


def tensors_sha256(state: Dict[str, torch.Tensor]) -> str:
    """Digest of the tensors themselves (names, dtypes, shapes, bytes in name order). A file cannot
    hold its own sha256, so the project file records this, which `backbone info` re-checks."""
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].detach().contiguous().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


# -- import ------------------------------------------------------------------------------------------


@dataclass
class ImportResult:
    path: str
    family: str
    detected: bool  # family found by --family auto
    preset: str
    config: ModelConfig
    report: MappingReport
    metadata: dict


def import_backbone(
    src: str,
    dst: str,
    family: str = "auto",
    preset: Optional[str] = None,
    gsd_ratio: float = 1.0,
    license_note: Optional[str] = None,
) -> ImportResult:
    """Convert a release once into a project backbone file (encoder only, described)."""
    release = read_release(src)
    if BACKBONE_META_KEY in release.metadata:
        raise CheckpointError(f"{src} is already a SpectralX backbone file; use it directly")
    conv = convert(release.tensors, family, src, gsd_ratio=gsd_ratio)
    name = preset_name(conv, preset, src)
    cfg = _config(conv, name, conv.img_size)
    state, report = map_backbone_state(conv.state, cfg, src)
    report.dropped = conv.dropped + report.dropped
    report.notes += conv.notes
    fam = FAMILIES[conv.family]
    meta = {
        "family": conv.family,
        "preset": name,
        "source": {"file": os.path.basename(src), "sha256": sha256_file(src), **release.wrapper},
        "license": license_note or fam.LICENSE,
        "position": conv.position,
        "mapping": {
            "dropped": len(report.dropped),
            "dropped_keys": report.dropped[:200],
            "replaced": report.replaced,
            "notes": report.notes,
        },
        "parameters": parameter_count(state),
        "tensors_sha256": tensors_sha256(state),
    }
    description = f"{fam.TITLE} encoder ({conv.shape_summary()}) imported from {os.path.basename(src)}"
    save_backbone(state, cfg, dst, description, {"imported_by": "spectralx backbone import"}, **meta)
    return ImportResult(dst, conv.family, family == "auto", name, cfg, report, {"description": description, **meta})


def backbone_info(path: str, verify: bool = True) -> dict:
    """What a backbone file is: family, preset, shapes, parameter count, sha256, source."""
    own = backbone_description(path)
    digest = sha256_file(path)
    if own is None:  # a release file: describe what an import would make of it
        release = read_release(path)
        conv = convert(release.tensors, "auto", path)
        name = preset_name(conv, None, path)
        c = conv.config
        state, _ = map_backbone_state(conv.state, _config(conv, name, conv.img_size), path)  # as import would
        return {
            "file": path,
            "kind": "release",
            "family": conv.family,
            "preset": name,
            "embed_dim": c["embed_dim"],
            "depth": c["depth"],
            "num_heads": c["num_heads"],
            "patch_size": c["patch_size"],
            "parameters": parameter_count(state),
            "sha256": digest,
            "source": {"file": os.path.basename(path), "sha256": digest, **release.wrapper},
            "license": FAMILIES[conv.family].LICENSE,
            "dropped": len(conv.dropped),
            "config": {**c, "img_size": conv.img_size},
        }
    c = own["config"]
    # files written before `backbone import` existed: the demo MAE of `spectralx pretrain-backbone`
    family = own.get("family") or ("spectralx-mae" if "pretrain-backbone" in own.get("description", "") else "unknown")
    info = {
        "file": path,
        "kind": "spectralx-backbone",
        "family": family,
        "preset": own.get("preset", c.get("backbone_preset")),
        "embed_dim": c["embed_dim"],
        "depth": c["depth"],
        "num_heads": c["num_heads"],
        "patch_size": c.get("patch_size", 16),
        "parameters": own.get("parameters"),
        "sha256": digest,
        "source": own.get("source", {}),
        "license": own.get("license", ""),
        "description": own.get("description", ""),
        "config": c,
    }
    if verify and ("tensors_sha256" in own or info["parameters"] is None):
        tensors, _ = read_safetensors(path)
        info["parameters"] = parameter_count(tensors)
        if "tensors_sha256" in own:
            info["tensors_sha256"] = own["tensors_sha256"]
            info["tensors_verified"] = tensors_sha256(tensors) == own["tensors_sha256"]
    return info


def is_release_file(path: str) -> bool:
    """True for a weights file that is not a SpectralX backbone (needs `backbone import`)."""
    return os.path.isfile(path) and backbone_description(path) is None


def ensure_project_backbone(
    path: str, preset: Optional[str] = None, log: Optional[Callable[[str], None]] = None
) -> str:
    """A release file given where a backbone is expected is imported once into the user's model
    folder (named after it and its sha256, so the same release is imported only once); project
    backbone files are returned as they are."""
    if not path or not is_release_file(path):
        return path
    folder = user_model_dir()
    os.makedirs(folder, exist_ok=True)
    stem = os.path.splitext(os.path.basename(path))[0]
    dst = os.path.join(folder, f"{stem}-{sha256_file(path)[:12]}{'-' + preset if preset else ''}.safetensors")
    if os.path.isfile(dst) and backbone_description(dst) is not None:
        if log:
            log(f"note: {path} is a release file; using its import {dst}")
        return dst
    res = import_backbone(path, dst, preset=preset)
    if log:
        log(
            f"note: imported {path} ({FAMILIES[res.family].TITLE}, {res.preset}) once into {dst}; "
            f"checkpoints reference that file ({res.report.summary()[:200]})"
        )
    return dst


__all__ = [
    "BACKBONE_META_KEY",
    "MappingReport",
    "ImportResult",
    "read_release",
    "read_weights_file",
    "map_backbone_state",
    "load_backbone",
    "save_backbone",
    "backbone_description",
    "import_backbone",
    "backbone_info",
    "ensure_project_backbone",
    "is_release_file",
    "infer_preset",
    "tensors_sha256",
    "PICKLE_SUFFIXES",
]
