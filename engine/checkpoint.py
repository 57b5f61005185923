"""SpectralX checkpoints (SPEC §3): one safetensors file + a JSON model card in its metadata.

The checkpoint holds every non-backbone tensor. The frozen backbone lives in its own file, named in
the card with its sha256; it is looked up explicitly, then beside the checkpoint, then in the user's
model folder, and its hash is verified before any weight is used.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import torch

from . import __version__
from .backbone_io import load_backbone
from .config import ModelConfig
from .errors import CheckpointError
from .model import SpectralX
from .model.decoder import ReconstructionHead
from .safefile import read_safetensors, read_safetensors_header, sha256_file, write_safetensors_atomic

CARD_KEY = "spectralx_model_card"
FORMAT_NAME = "spectralx-checkpoint"
FORMAT_VERSION = 1
# Tensors a checkpoint may leave out: the stage-1 reconstruction head, dropped from fine-tuned
# checkpoints (11 M of a ViT-Tiny checkpoint's 13 M values for 224 bands); loading keeps its init.
_OPTIONAL_PREFIXES = ("recon_head.",)


@dataclass
class Band:
    name: str
    wavelength_nm: float
    fwhm_nm: Optional[float] = None


@dataclass
class ClassInfo:
    value: int
    name: str
    color: str  # "#rrggbb"


@dataclass
class Normalization:
    """Scene-level per-band statistics: x' = (x * scale + offset - mean) / std, then clipped.

    `scale`/`offset` turn stored integers into physical units (e.g. reflectance 0.0001); the same
    transform is used in training and inference so tiles never get their own min-max (no seams).
    """
    method: str = "zscore"          # "zscore" or "none"
    mean: List[float] = field(default_factory=list)
    std: List[float] = field(default_factory=list)
    clip: float = 6.0


@dataclass
class BackboneRef:
    file: str
    sha256: str
    preset: str
    description: str = ""


@dataclass
class ModelCard:
    architecture: Dict[str, Any]
    bands: List[Band]
    classes: List[ClassInfo]
    backbone: BackboneRef
    normalization: Normalization = field(default_factory=Normalization)
    gsd_m: Optional[float] = None
    stage: str = "init"             # init | pretrain | finetune
    training: Dict[str, Any] = field(default_factory=dict)
    metrics: Dict[str, Any] = field(default_factory=dict)
    description: str = ""
    format: str = FORMAT_NAME
    format_version: int = FORMAT_VERSION
    engine_version: str = __version__
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))

    @property
    def config(self) -> ModelConfig:
        return ModelConfig.from_dict(self.architecture)

    @property
    def tile_size(self) -> int:
        return int(self.architecture["img_size"])

    def to_json(self) -> str:
        d = asdict(self)
        d["tile_size"] = self.tile_size
        return json.dumps(d, indent=1)

    @classmethod
    def from_json(cls, text: str, source: str = "model card") -> "ModelCard":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{source}: model card is not valid JSON ({exc})") from None
        if not isinstance(d, dict) or d.get("format") != FORMAT_NAME:
            raise CheckpointError(f"{source}: not a SpectralX model card")
        if int(d.get("format_version", 0)) > FORMAT_VERSION:
            raise CheckpointError(
                f"{source}: checkpoint format {d['format_version']} is newer than this SpectralX "
                f"({FORMAT_VERSION}); update the plugin")
        d.pop("tile_size", None)
        try:
            return cls(
                architecture=d.pop("architecture"),
                bands=[Band(**b) for b in d.pop("bands")],
                classes=[ClassInfo(**c) for c in d.pop("classes")],
                backbone=BackboneRef(**d.pop("backbone")),
                normalization=Normalization(**d.pop("normalization", {})),
                **d)
        except (KeyError, TypeError) as exc:
            raise CheckpointError(f"{source}: model card is incomplete or malformed ({exc})") from None

    def class_names(self) -> Dict[int, str]:
        return {c.value: c.name for c in self.classes}


def read_card(path: str) -> ModelCard:
    """Read only the model card (no tensors): cheap, for `info` and the plugin's checkpoint picker."""
    header = read_safetensors_header(path)
    meta = header.get("__metadata__") or {}
    if CARD_KEY not in meta:
        raise CheckpointError(f"{path} is a safetensors file without a SpectralX model card; "
                              "is it a backbone or another tool's weights?")
    return ModelCard.from_json(meta[CARD_KEY], source=path)


def user_model_dir() -> str:
    return os.environ.get("SPECTRALX_MODELS") or os.path.join(
        os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share"), "spectralx", "models")


def resolve_backbone(card: ModelCard, checkpoint_path: str, backbone: Optional[str] = None) -> str:
    """Find the backbone file for a card and verify its sha256."""
    if backbone:
        candidates = [backbone]
    else:
        name = os.path.basename(card.backbone.file)
        candidates = [os.path.join(os.path.dirname(os.path.abspath(checkpoint_path)), name),
                      os.path.join(user_model_dir(), name)]
    found = next((c for c in candidates if os.path.isfile(c)), None)
    if found is None:
        raise CheckpointError(
            f"backbone '{card.backbone.file}' not found (looked in: {', '.join(candidates)}); "
            "pass it with --backbone or put it beside the checkpoint")
    digest = sha256_file(found)
    if digest != card.backbone.sha256:
        raise CheckpointError(
            f"backbone {found} does not match the checkpoint: sha256 {digest[:12]}… but the model card "
            f"expects {card.backbone.sha256[:12]}…; use the backbone the checkpoint was trained with")
    return found


def build_model(card: ModelCard, materialize: bool = True) -> SpectralX:
    """The network a card describes. materialize=False builds it on the meta device (no random
    init, no memory) for `load_checkpoint`, which then assigns every tensor from the files."""
    wl = torch.tensor([b.wavelength_nm for b in card.bands], dtype=torch.float32)
    cfg = card.config
    if len(card.bands) != cfg.in_bands:
        raise CheckpointError(f"model card lists {len(card.bands)} bands but the network expects {cfg.in_bands}")
    if len(card.classes) != cfg.num_classes:
        raise CheckpointError(f"model card lists {len(card.classes)} classes but the network has {cfg.num_classes}")
    if materialize:
        return SpectralX(cfg, wl)
    with torch.device("meta"):
        return SpectralX(cfg, wl)


def load_checkpoint(path: str, backbone: Optional[str] = None, device: str = "cpu") -> Tuple[SpectralX, ModelCard]:
    """Load a checkpoint and its verified backbone into a ready (eval-mode) model."""
    card = read_card(path)
    backbone_path = resolve_backbone(card, path, backbone)
    tensors, _ = read_safetensors(path)
    # Built on the meta device: random initialisation of weights that are overwritten next cost
    # seconds (tens of seconds for ViT-L).
    model = build_model(card, materialize=False)
    bstate, _, _ = load_backbone(backbone_path, card.backbone.preset, card.tile_size)
    own = {k: v for k, v in model.state_dict().items() if not k.startswith("backbone.")}
    # fine-tuned checkpoints leave out the stage-1 reconstruction head (see save_checkpoint)
    if not any(k.startswith(_OPTIONAL_PREFIXES) for k in tensors):
        cfg = model.cfg
        model.recon_head = ReconstructionHead(cfg.embed_dim, cfg.in_bands, cfg.patch_size)
        tensors.update({f"recon_head.{k}": v for k, v in model.recon_head.state_dict().items()})
    missing = sorted(set(own) - set(tensors))
    unexpected = sorted(set(tensors) - set(own))
    if missing or unexpected:
        raise CheckpointError(f"{path} does not match its architecture: missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]}")
    for k, v in tensors.items():
        if v.shape != own[k].shape:
            raise CheckpointError(f"{path}: tensor {k} has shape {tuple(v.shape)}, expected {tuple(own[k].shape)}")
    state = {**tensors, **{f"backbone.{k}": v for k, v in bstate.items()}}
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    model.reset_buffers()
    if any(t.is_meta for t in list(model.parameters()) + list(model.buffers())):
        raise CheckpointError(f"{path}: some tensors of the network were not filled from the files")
    model.set_stage("frozen")
    return model.to(device).eval(), card


def save_checkpoint(model: SpectralX, card: ModelCard, path: str) -> None:
    """Write every non-backbone tensor plus the card; atomic (temporary file, then rename)."""
    card.architecture = model.cfg.to_dict()
    tensors = {k: v for k, v in model.state_dict().items() if not k.startswith("backbone.")}
    if card.stage == "finetune":  # segmentation never uses the reconstruction head (16*16*C*D weights)
        tensors = {k: v for k, v in tensors.items() if not k.startswith(_OPTIONAL_PREFIXES)}
    write_safetensors_atomic(tensors, {CARD_KEY: card.to_json()}, path)


def backbone_ref_for(path: str, preset: str, description: str = "") -> BackboneRef:
    return BackboneRef(file=os.path.basename(path), sha256=sha256_file(path), preset=preset,
                       description=description)


def new_model(backbone_path: str, bands: List[Band], classes: List[ClassInfo], preset: Optional[str] = None,
              img_size: Optional[int] = None, **arch: Any) -> Tuple[SpectralX, ModelCard]:
    """A fresh SpectralX (adapters initialised, backbone loaded from a file) and its card."""
    from .backbone_io import backbone_description
    own = backbone_description(backbone_path)
    state, bcfg, _ = load_backbone(backbone_path, preset, img_size)
    backbone_shape = {k: v for k, v in bcfg.items() if k not in ("backbone_preset", "img_size")}
    cfg = ModelConfig.from_preset(bcfg["backbone_preset"], in_bands=len(bands), num_classes=len(classes),
                                  img_size=bcfg["img_size"], **{**backbone_shape, **arch})
    card = ModelCard(architecture=cfg.to_dict(), bands=list(bands), classes=list(classes),
                     backbone=backbone_ref_for(backbone_path, cfg.backbone_preset,
                                               (own or {}).get("description", "")))
    model = build_model(card)
    model.backbone.load_state_dict(state, strict=True)
    return model, card
