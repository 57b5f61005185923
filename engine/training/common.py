"""Pieces shared by stage-1 and stage-2 training: device, base model, optimizer, schedule, output."""

from __future__ import annotations

import math
import os
from typing import List, Optional, Tuple

import torch

from .. import devices
from ..checkpoint import ModelCard, build_model, load_checkpoint, resolve_backbone
from ..errors import CheckpointError, SpectralXError
from ..safefile import sha256_file


def pick_device(device: Optional[str] = "auto") -> torch.device:
    """spectralx.devices.pick_device as a torch.device (training moves tensors with it)."""
    return torch.device(devices.pick_device(device))


def check_output(output: Optional[str], inputs=(), overwrite: bool = True) -> None:
    """The shared output check (spectralx.fileio): folder, name length, not an input; the CLI
    passes overwrite=False and every input, the Python API keeps replacing by default."""
    if output is None:
        return
    from ..fileio import check_outputs

    check_outputs([(output, "checkpoint")], inputs, overwrite)


HEAD_ARCH_KEYS = ("spectral_skip",)  # head options a checkpoint may gain or change when fine-tuned


def adopt_classes(
    model, card: ModelCard, classes, architecture: Optional[dict] = None
) -> Tuple[object, ModelCard, bool]:
    """Give a loaded model a new class table (and head options): rebuild, keep every other tensor.

    Returns (model, card, rebuilt). Tensors whose shape depends on the class count (the final 1x1
    classifier, the spectral skip's output) or that are new (a spectral skip the base lacked) are
    freshly initialised; everything else (HyperT, adapters, neck, UPerNet) is kept.
    """
    changes = {k: v for k, v in (architecture or {}).items() if card.architecture.get(k, 0) != v}
    bad = sorted(set(changes) - set(HEAD_ARCH_KEYS))
    if bad:
        raise SpectralXError(
            f"cannot change {', '.join(bad)} of an existing checkpoint when fine-tuning "
            "from it (only the head's options can change)"
        )
    same = [(c.value, c.name) for c in card.classes] == [(c.value, c.name) for c in classes]
    if same and not changes:
        card.classes = list(classes)
        return model, card, False
    arch = dict(card.architecture)
    arch.update(changes)
    arch["num_classes"] = len(classes)
    new_card = ModelCard(**{**card.__dict__, "architecture": arch, "classes": list(classes)})
    new = build_model(new_card)
    old_state = model.state_dict()
    own = new.state_dict()
    keep = {k: v for k, v in old_state.items() if k in own and own[k].shape == v.shape}
    new.load_state_dict(keep, strict=False)
    return new, new_card, True


def load_base(checkpoint: str, backbone: Optional[str]) -> Tuple[object, ModelCard, str]:
    model, card = load_checkpoint(checkpoint, backbone=backbone)
    return model, card, resolve_backbone(card, checkpoint, backbone)


COPY_LIMIT = 512 * 1024 * 1024  # larger backbones are referenced, not duplicated


def place_backbone(backbone_path: str, output: str, log) -> str:
    """Make the new checkpoint find its backbone, never by hard-linking the user's file (a later
    write to either name would change both). The card already references the backbone by path and
    sha256; beside the checkpoint goes a reflink (shared blocks, copy-on-write) where the file system
    offers one, else a copy of a small backbone. Returns what was done: "beside", "reflink", "copy"
    or "reference"; a failed copy (full disk) leaves nothing and falls back to the reference."""
    from ..fileio import copy_file, same_file

    dest = os.path.join(os.path.dirname(os.path.abspath(output)), os.path.basename(backbone_path))
    if os.path.exists(dest):
        if same_file(dest, backbone_path) or sha256_file(dest) == sha256_file(backbone_path):
            log(f"backbone: {dest} is already beside the checkpoint")
            return "beside"
        log(
            f"backbone: referenced by path and sha256 in the card ({backbone_path}); {dest} is "
            "another file and was left alone"
        )
        return "reference"
    small = os.path.getsize(backbone_path) <= COPY_LIMIT
    try:
        how = copy_file(backbone_path, dest, allow_copy=small)
    except SpectralXError as exc:  # e.g. no space left: the checkpoint still finds it by path
        log(f"backbone: not copied ({exc}); referenced by path and sha256 in the card ({backbone_path})")
        return "reference"
    if how is None:
        log(
            f"backbone: referenced by path and sha256 in the card ({backbone_path}); keep it there "
            "or pass --backbone"
        )
        return "reference"
    log(
        f"backbone: {'reflinked (copy-on-write, no extra space)' if how == 'reflink' else 'copied'} "
        f"beside the checkpoint: {dest}"
    )
    return how


def make_optimizer(params: List[torch.nn.Parameter], lr: float, weight_decay: float = 1e-4):
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]  # norms, biases, scales: no weight decay
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr, betas=(0.9, 0.95))


def lr_factor(step: int, total: int, warmup: Optional[int] = None) -> float:
    """Linear warm-up, then cosine decay to 5 % of the base rate."""
    warmup = warmup if warmup is not None else max(1, min(20, total // 10))
    if step < warmup:
        return (step + 1) / warmup
    t = (step - warmup) / max(1, total - warmup)
    return 0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))


def count_parameters(model) -> Tuple[int, int]:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, sum(p.numel() for p in model.parameters())


def non_backbone_state(model) -> dict:
    """A copy of every tensor training can change: the non-backbone ones and the backbone tensors
    the method trains (model.trained_backbone_keys)."""
    keep = getattr(model, "trained_backbone_keys", set())
    return {k: v.detach().clone() for k, v in model.state_dict().items() if not k.startswith("backbone.") or k in keep}


def require_one_source(checkpoint: Optional[str], backbone: Optional[str]) -> None:
    if not checkpoint and not backbone:
        raise CheckpointError("give a starting point: a SpectralX checkpoint (-c) or a backbone file " "(--backbone)")
