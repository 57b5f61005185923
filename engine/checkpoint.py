"""SpectralX checkpoints (SPEC §3): one safetensors file + a JSON model card in its metadata.

The checkpoint holds every non-backbone tensor. The frozen backbone lives in its own file, named in
the card with its sha256; it is looked up explicitly, then beside the checkpoint, then in the user's
model folder, and its hash is verified before any weight is used.
"""
from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import math
import os
from dataclasses import asdict, dataclass, field
from typing import Any, Dict, List, Optional, Tuple

import torch

from . import __version__
from .backbone_io import load_backbone
from .config import ModelConfig
from .errors import CheckpointError, InputError
from .fileio import write_bytes
from .model import SpectralX
from .model.decoder import ReconstructionHead
from .model.forest import ForestArrays, ForestModel
from .safefile import read_safetensors, read_safetensors_header, sha256_file

CARD_KEY = "spectralx_model_card"
FOREST_METHOD = "forest"
NO_BACKBONE = "none"           # a forest checkpoint's backbone reference
FOREST_NOT_NETWORK = ("a random forest, not a SpectralX network: it has no network or backbone to fine-tune; "
                      "start a new model from a backbone (--backbone)")
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
    # where the backbone was when the checkpoint was written: found there too if it is not beside
    # the checkpoint (the user's file is referenced, never hard-linked); its sha256 is still checked
    path: str = ""


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
        if self.is_forest:
            raise CheckpointError(f"this checkpoint: {FOREST_NOT_NETWORK}")
        return ModelConfig.from_dict(self.architecture)

    @property
    def is_forest(self) -> bool:
        """A forest-only checkpoint (`finetune --method forest`): no network, no backbone."""
        return self.architecture.get("method") == FOREST_METHOD

    @property
    def fusion_weight(self) -> float:
        """Weight of the forest pooled with the network at inference (0: the network alone)."""
        if self.is_forest:
            return 1.0
        w = ((self.training or {}).get("fusion") or {}).get("weight", 0.0)
        return float(w) if _is_number(w) and 0 <= w <= 1 else 0.0

    @property
    def map_source(self) -> str:
        """Which model makes this checkpoint's map, in words (cards, logs, the dock)."""
        w = self.fusion_weight
        if w >= 1:
            ctx = int((self.architecture.get("forest") or {}).get("context") or 0) if self.is_forest else 0
            return f"random forest (spectra + {ctx}x{ctx} mean spectrum)" if ctx else "random forest (per-pixel spectra)"
        if w > 0:
            return f"SpectralX network pooled with a random forest (forest weight {w:g})"
        return "SpectralX network"

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
        _check_card_values(d, source)
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


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_card_values(d: dict, source: str) -> None:
    """Values a network cannot run with are named here, in one line, instead of failing later (a
    string wavelength) or silently producing garbage (a zero standard deviation)."""
    bands = d.get("bands")
    if not isinstance(bands, list) or not all(isinstance(b, dict) for b in bands):
        raise CheckpointError(f"{source}: model card 'bands' must be a list of objects")
    for i, b in enumerate(bands, 1):
        wl, fwhm = b.get("wavelength_nm"), b.get("fwhm_nm")
        if not _is_number(wl) or wl <= 0:
            raise CheckpointError(f"{source}: model card band {i} ({b.get('name', '?')}) has wavelength "
                                  f"{wl!r}; it must be a positive number of nm; the card is damaged")
        if fwhm is not None and (not _is_number(fwhm) or fwhm < 0):
            raise CheckpointError(f"{source}: model card band {i} ({b.get('name', '?')}) has FWHM {fwhm!r}; "
                                  "it must be a number of nm or null")
    norm = d.get("normalization") or {}
    if not isinstance(norm, dict):
        raise CheckpointError(f"{source}: model card 'normalization' must be an object")
    for key in ("mean", "std"):
        values = norm.get(key, [])
        if not isinstance(values, list) or not all(_is_number(v) for v in values):
            raise CheckpointError(f"{source}: normalization {key} must be a list of finite numbers")
        if values and len(values) != len(bands):
            raise CheckpointError(f"{source}: normalization {key} has {len(values)} values for "
                                  f"{len(bands)} bands")
    zero = [i for i, v in enumerate(norm.get("std", []), 1) if v <= 0]
    if zero and norm.get("method", "zscore") != "none":
        raise CheckpointError(f"{source}: normalization std of band {zero[0]} is {norm['std'][zero[0] - 1]:g} "
                              f"({len(zero)} band(s) ≤ 0): dividing by it is undefined; the card is damaged, "
                              "retrain or use another checkpoint")
    classes = d.get("classes")
    if not isinstance(classes, list) or not all(isinstance(c, dict) for c in classes):
        raise CheckpointError(f"{source}: model card 'classes' must be a list of objects")
    for c in classes:
        v = c.get("value")
        if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 255:
            raise CheckpointError(f"{source}: class {c.get('name', '?')!r} has value {v!r}; class values "
                                  "are whole numbers 1..255")


def read_card(path: str) -> ModelCard:
    """Read only the model card (no tensors): cheap, for `info` and the plugin's checkpoint picker."""
    if os.path.isdir(path):
        raise InputError(f"checkpoint {path} is a folder, not a file; give the .safetensors file itself")
    header = read_safetensors_header(path)
    meta = header.get("__metadata__") or {}
    if CARD_KEY not in meta:
        raise CheckpointError(f"{path} is a safetensors file without a SpectralX model card; "
                              "is it a backbone or another tool's weights?")
    return ModelCard.from_json(meta[CARD_KEY], source=path)


def user_model_dir() -> str:
    return os.environ.get("SPECTRALX_MODELS") or os.path.join(
        os.environ.get("XDG_DATA_HOME") or os.path.expanduser("~/.local/share"), "spectralx", "models")


def backbone_candidates(card: ModelCard, checkpoint_path: str, backbone: Optional[str] = None) -> List[str]:
    """Where a card's backbone is looked for, in order: the one given, else beside the checkpoint,
    the path recorded in the card, the user's model folder."""
    if card.is_forest:
        return []
    if backbone:
        return [backbone]
    name = os.path.basename(card.backbone.file)
    candidates = [os.path.join(os.path.dirname(os.path.abspath(checkpoint_path)), name)]
    if card.backbone.path:
        candidates.append(card.backbone.path)
    candidates.append(os.path.join(user_model_dir(), name))
    return candidates


def resolve_backbone(card: ModelCard, checkpoint_path: str, backbone: Optional[str] = None) -> str:
    """Find the backbone file for a card and verify its sha256."""
    if card.is_forest:
        raise CheckpointError(f"{checkpoint_path}: {FOREST_NOT_NETWORK}")
    if backbone and os.path.isdir(backbone):
        raise InputError(f"backbone {backbone} is a folder, not a file; give the backbone file itself")
    candidates = backbone_candidates(card, checkpoint_path, backbone)
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
    card.backbone.path = os.path.abspath(found)   # a checkpoint trained from this one finds it too
    return found


def non_finite(tensors: Dict[str, torch.Tensor]) -> Optional[Tuple[str, int, int]]:
    """(name, non-finite values, values) of the first floating tensor holding NaN or infinity."""
    for k, v in tensors.items():
        if v.is_floating_point() and v.numel():
            bad = int((~torch.isfinite(v)).sum())
            if bad:
                return k, bad, v.numel()
    return None


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


def load_forest_checkpoint(path: str, card: ModelCard, tensors: Dict[str, torch.Tensor]) -> ForestModel:
    forest = ForestArrays.from_tensors(tensors, len(card.bands), len(card.classes), path)
    if forest is None or tensors:
        raise CheckpointError(f"{path}: a random-forest checkpoint must hold the forest's arrays and nothing "
                              f"else (found {sorted(tensors)[:5]}); the file is damaged")
    return ForestModel(forest).eval()


def load_checkpoint(path: str, backbone: Optional[str] = None, device: str = "cpu") -> Tuple[SpectralX, ModelCard]:
    """Load a checkpoint and its verified backbone into a ready (eval-mode) model (a forest checkpoint
    gives a ForestModel, which segments the same way and needs no backbone)."""
    card = read_card(path)
    if card.is_forest:
        tensors, _ = read_safetensors(path)
        return load_forest_checkpoint(path, card, tensors).to(device), card
    backbone_path = resolve_backbone(card, path, backbone)
    tensors, _ = read_safetensors(path)
    # the forest pooled with the network (when the card says so) rides beside the network's tensors
    forest = ForestArrays.from_tensors(tensors, len(card.bands), len(card.classes), path)
    # Built on the meta device: random initialisation of weights that are overwritten next cost
    # seconds (tens of seconds for ViT-L).
    model = build_model(card, materialize=False)
    bstate, _, _ = load_backbone(backbone_path, card.backbone.preset, card.tile_size)
    full_state = model.state_dict()
    own = {k: v for k, v in full_state.items() if not k.startswith("backbone.")}
    # backbone tensors that training changed (LayerNorms; everything for `full`) ride in the
    # checkpoint and take precedence over the backbone file's
    overrides = {k: tensors.pop(k) for k in [k for k in tensors if k.startswith("backbone.")]}
    stray = sorted(k for k in overrides if k not in full_state)
    if stray:
        raise CheckpointError(f"{path} holds backbone tensors its backbone does not have: {stray[:5]}")
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
    for k, v in {**tensors, **overrides}.items():
        if v.shape != full_state[k].shape:
            raise CheckpointError(f"{path}: tensor {k} has shape {tuple(v.shape)}, expected {tuple(full_state[k].shape)}")
    for what, file, part in (("checkpoint", path, tensors), ("backbone", backbone_path, bstate)):
        bad = non_finite(part)
        if bad:
            raise CheckpointError(
                f"{what} {file}: tensor {bad[0]} holds {bad[1]} NaN/infinite value(s) of {bad[2]}; a network "
                "with them gives meaningless classes: the file is damaged or its training diverged")
    state = {**tensors, **{f"backbone.{k}": v for k, v in bstate.items()}, **overrides}
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
    model.load_state_dict(state, strict=True, assign=True)
    model.reset_buffers()
    if any(t.is_meta for t in list(model.parameters()) + list(model.buffers())):
        raise CheckpointError(f"{path}: some tensors of the network were not filled from the files")
    model.set_stage("frozen")
    model.trained_backbone_keys = set(overrides)
    model.tta_flips = bool((card.training or {}).get("tta", False))
    bias = ((card.training or {}).get("logit_adjustment") or {}).get("bias")
    if bias is not None and len(bias) == model.cfg.num_classes:
        model.class_bias = torch.tensor(bias, dtype=torch.float32)
    if card.fusion_weight > 0 and forest is None:
        raise CheckpointError(f"{path}: the model card pools the network with a random forest, but the file "
                              "holds no forest; the file is damaged")
    model.forest = forest
    model.fusion_weight = card.fusion_weight if forest is not None else 0.0
    return model.to(device).eval(), card


def save_checkpoint(model: SpectralX, card: ModelCard, path: str) -> None:
    """Write every non-backbone tensor plus the card; atomic (temporary file, then rename)."""
    if isinstance(model, ForestModel):
        return _write(model.forest.to_tensors(), card, path)
    from .inference.quantize import is_quantized
    if is_quantized(model):   # an inference-only copy: a card's numbers always come from the float model
        raise CheckpointError("this network runs with an int8 backbone (segment --precision int8); "
                              "save the float model it was made from")
    card.architecture = model.cfg.to_dict()
    written = card
    ref = card.backbone
    if ref.path and os.path.dirname(os.path.abspath(ref.path)) == os.path.dirname(os.path.abspath(path)):
        # beside the checkpoint it is found first anyway: no machine-specific path in a file people share
        written = dataclasses.replace(card, backbone=dataclasses.replace(ref, path=""))
    keep = getattr(model, "trained_backbone_keys", set())
    tensors = {k: v for k, v in model.state_dict().items() if not k.startswith("backbone.") or k in keep}
    if card.stage == "finetune":  # segmentation never uses the reconstruction head (16*16*C*D weights)
        tensors = {k: v for k, v in tensors.items() if not k.startswith(_OPTIONAL_PREFIXES)}
    bad = non_finite(tensors)
    if bad:
        raise CheckpointError(f"training diverged: tensor {bad[0]} holds {bad[1]} NaN/infinite value(s); "
                              f"{path} was not written; try a lower --lr")
    if getattr(model, "forest", None) is not None:
        tensors.update(model.forest.to_tensors())
    _write(tensors, written, path)


def _write(tensors: Dict[str, torch.Tensor], card: ModelCard, path: str) -> None:
    from safetensors.torch import save as to_bytes
    # serialised in memory (non-backbone tensors only: tens of MB), then one atomic write: a full
    # disk is an OSError we can report, never a half-written checkpoint
    data = to_bytes({k: v.detach().contiguous().cpu() for k, v in tensors.items()},
                    metadata={CARD_KEY: card.to_json()})
    write_bytes(path, data)


def forest_card(bands: List[Band], classes: List[ClassInfo], tile_size: int,
                forest: Optional[ForestArrays] = None) -> ModelCard:
    """The card of a forest-only checkpoint: bands, classes, tile size for the streaming pipeline, and
    the forest's size once it is fitted."""
    arch = {"method": FOREST_METHOD, "img_size": int(tile_size), "in_bands": len(bands),
            "num_classes": len(classes), "forest": forest.describe() if forest is not None else {}}
    return ModelCard(architecture=arch, bands=list(bands), classes=list(classes),
                     backbone=BackboneRef(file="", sha256="", preset=NO_BACKBONE,
                                          description="none: a per-pixel random forest needs no backbone"))


def backbone_ref_for(path: str, preset: str, description: str = "") -> BackboneRef:
    return BackboneRef(file=os.path.basename(path), sha256=sha256_file(path), preset=preset,
                       description=description, path=os.path.abspath(path))


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
