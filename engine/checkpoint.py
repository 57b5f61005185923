"""SpectralX checkpoints (SPEC §3): one safetensors file + a JSON model card in its metadata.

The checkpoint holds every non-backbone tensor. The frozen backbone lives in its own file, named in
the card with its sha256; it is looked up explicitly, then beside the checkpoint, then in the user's
model folder, and its hash is verified before any weight is used.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, List, Optional, Tuple

import torch

from .backbone_io import backbone_description, load_backbone
from .config import ModelConfig

# the card, its constants and the model-folder rules are torch-free (spectralx.contract); re-exported
# here, where the engine always found them
from .contract.card import (  # noqa: F401
    CARD_KEY,
    FOREST_METHOD,
    FOREST_NOT_NETWORK,
    FORMAT_NAME,
    FORMAT_VERSION,
    NO_BACKBONE,
    BackboneRef,
    Band,
    ClassInfo,
    ModelCard,
    Normalization,
    read_card,
)
from .contract.model_folder import backbone_candidates, user_model_dir  # noqa: F401
from .errors import CheckpointError, InputError
from .fileio import write_bytes
from .model import SpectralX
from .model.decoder import ReconstructionHead
from .model.forest import ForestArrays, ForestModel
from .safefile import read_safetensors, sha256_file

# Tensors a checkpoint may leave out: the stage-1 reconstruction head, dropped from fine-tuned
# checkpoints (11 M of a ViT-Tiny checkpoint's 13 M values for 224 bands); loading keeps its init.
_OPTIONAL_PREFIXES = ("recon_head.",)


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
            "pass it with --backbone or put it beside the checkpoint"
        )
    digest = sha256_file(found)
    if digest != card.backbone.sha256:
        raise CheckpointError(
            f"backbone {found} does not match the checkpoint: sha256 {digest[:12]}… but the model card "
            f"expects {card.backbone.sha256[:12]}…; use the backbone the checkpoint was trained with"
        )
    card.backbone.path = os.path.abspath(found)  # a checkpoint trained from this one finds it too
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
        raise CheckpointError(
            f"{path}: a random-forest checkpoint must hold the forest's arrays and nothing "
            f"else (found {sorted(tensors)[:5]}); the file is damaged"
        )
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
        raise CheckpointError(
            f"{path} does not match its architecture: missing {missing[:5]}, " f"unexpected {unexpected[:5]}"
        )
    for k, v in {**tensors, **overrides}.items():
        if v.shape != full_state[k].shape:
            raise CheckpointError(
                f"{path}: tensor {k} has shape {tuple(v.shape)}, expected {tuple(full_state[k].shape)}"
            )
    for what, file, part in (("checkpoint", path, tensors), ("backbone", backbone_path, bstate)):
        bad = non_finite(part)
        if bad:
            raise CheckpointError(
                f"{what} {file}: tensor {bad[0]} holds {bad[1]} NaN/infinite value(s) of {bad[2]}; a network "
                "with them gives meaningless classes: the file is damaged or its training diverged"
            )
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
        raise CheckpointError(
            f"{path}: the model card pools the network with a random forest, but the file "
            "holds no forest; the file is damaged"
        )
    model.forest = forest
    model.fusion_weight = card.fusion_weight if forest is not None else 0.0
    return model.to(device).eval(), card


def save_checkpoint(model: SpectralX, card: ModelCard, path: str) -> None:
    """Write every non-backbone tensor plus the card; atomic (temporary file, then rename)."""
    if isinstance(model, ForestModel):
        return _write(model.forest.to_tensors(), card, path)
    from .inference.quantize import is_quantized

    if is_quantized(model):  # an inference-only copy: a card's numbers always come from the float model
        raise CheckpointError(
            "this network runs with an int8 backbone (segment --precision int8); "
            "save the float model it was made from"
        )
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
        raise CheckpointError(
            f"training diverged: tensor {bad[0]} holds {bad[1]} NaN/infinite value(s); "
            f"{path} was not written; try a lower --lr"
        )
    if getattr(model, "forest", None) is not None:
        tensors.update(model.forest.to_tensors())
    _write(tensors, written, path)


def _write(tensors: Dict[str, torch.Tensor], card: ModelCard, path: str) -> None:
    from safetensors.torch import save as to_bytes

    # serialised in memory (non-backbone tensors only: tens of MB), then one atomic write: a full
    # disk is an OSError we can report, never a half-written checkpoint
    data = to_bytes({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata={CARD_KEY: card.to_json()})
    write_bytes(path, data)


def forest_card(
    bands: List[Band], classes: List[ClassInfo], tile_size: int, forest: Optional[ForestArrays] = None
) -> ModelCard:
    """The card of a forest-only checkpoint: bands, classes, tile size for the streaming pipeline, and
    the forest's size once it is fitted."""
    arch = {
        "method": FOREST_METHOD,
        "img_size": int(tile_size),
        "in_bands": len(bands),
        "num_classes": len(classes),
        "forest": forest.describe() if forest is not None else {},
    }
    return ModelCard(
        architecture=arch,
        bands=list(bands),
        classes=list(classes),
        backbone=BackboneRef(
            file="", sha256="", preset=NO_BACKBONE, description="none: a per-pixel random forest needs no backbone"
        ),
    )


def backbone_ref_for(path: str, preset: str, description: str = "") -> BackboneRef:
    return BackboneRef(
        file=os.path.basename(path),
        sha256=sha256_file(path),
        preset=preset,
        description=description,
        path=os.path.abspath(path),
    )


def new_model(
    backbone_path: str,
    bands: List[Band],
    classes: List[ClassInfo],
    preset: Optional[str] = None,
    img_size: Optional[int] = None,
    **arch: Any,
) -> Tuple[SpectralX, ModelCard]:
    """A fresh SpectralX (adapters initialised, backbone loaded from a file) and its card."""
    own = backbone_description(backbone_path)
    state, bcfg, _ = load_backbone(backbone_path, preset, img_size)
    backbone_shape = {k: v for k, v in bcfg.items() if k not in ("backbone_preset", "img_size")}
    cfg = ModelConfig.from_preset(
        bcfg["backbone_preset"],
        in_bands=len(bands),
        num_classes=len(classes),
        img_size=bcfg["img_size"],
        **{**backbone_shape, **arch},
    )
    card = ModelCard(
        architecture=cfg.to_dict(),
        bands=list(bands),
        classes=list(classes),
        backbone=backbone_ref_for(backbone_path, cfg.backbone_preset, (own or {}).get("description", "")),
    )
    model = build_model(card)
    model.backbone.load_state_dict(state, strict=True)
    return model, card
