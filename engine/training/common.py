"""Pieces shared by stage-1 and stage-2 training: device, base model, optimizer, schedule, output."""
from __future__ import annotations

import math
import os
import shutil
from typing import List, Optional, Tuple

import torch

from .. import devices
from ..checkpoint import ModelCard, build_model, load_checkpoint, resolve_backbone
from ..errors import CheckpointError, SpectralXError


def pick_device(device: Optional[str] = "auto") -> torch.device:
    """spectralx.devices.pick_device as a torch.device (training moves tensors with it)."""
    return torch.device(devices.pick_device(device))


def check_output(output: Optional[str]) -> None:
    if output is None:
        return
    folder = os.path.dirname(os.path.abspath(output)) or "."
    if not os.path.isdir(folder):
        raise SpectralXError(f"output folder does not exist: {folder}")
    if not os.access(folder, os.W_OK):
        raise SpectralXError(f"output folder is not writable: {folder}")
    if os.path.isdir(output):
        raise SpectralXError(f"output {output} is a folder; give a file name ending in .safetensors")


HEAD_ARCH_KEYS = ("spectral_skip",)   # head options a checkpoint may gain or change when fine-tuned


def adopt_classes(model, card: ModelCard, classes, architecture: Optional[dict] = None
                  ) -> Tuple[object, ModelCard, bool]:
    """Give a loaded model a new class table (and head options): rebuild, keep every other tensor.

    Returns (model, card, rebuilt). Tensors whose shape depends on the class count (the final 1x1
    classifier, the spectral skip's output) or that are new (a spectral skip the base lacked) are
    freshly initialised; everything else (HyperT, adapters, neck, UPerNet) is kept.
    """
    changes = {k: v for k, v in (architecture or {}).items() if card.architecture.get(k, 0) != v}
    bad = sorted(set(changes) - set(HEAD_ARCH_KEYS))
    if bad:
        raise SpectralXError(f"cannot change {', '.join(bad)} of an existing checkpoint when fine-tuning "
                             "from it (only the head's options can change)")
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


def place_backbone(backbone_path: str, output: str, log) -> None:
    """Make the new checkpoint loadable on its own: its backbone beside it (link, else copy if small)."""
    dest = os.path.join(os.path.dirname(os.path.abspath(output)), os.path.basename(backbone_path))
    if os.path.abspath(dest) == os.path.abspath(backbone_path) or os.path.exists(dest):
        return
    try:
        os.link(backbone_path, dest)
        log(f"linked the backbone beside the checkpoint: {dest}")
        return
    except OSError:
        pass
    if os.path.getsize(backbone_path) <= 512 * 1024 * 1024:
        try:
            shutil.copyfile(backbone_path, dest)
            log(f"copied the backbone beside the checkpoint: {dest}")
            return
        except OSError:
            pass
    log(f"note: keep the backbone {backbone_path} beside {output} (or pass --backbone) to use it")


def make_optimizer(params: List[torch.nn.Parameter], lr: float, weight_decay: float = 1e-4):
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]   # norms, biases, scales: no weight decay
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
    return {k: v.detach().clone() for k, v in model.state_dict().items() if not k.startswith("backbone.")}


def require_one_source(checkpoint: Optional[str], backbone: Optional[str]) -> None:
    if not checkpoint and not backbone:
        raise CheckpointError("give a starting point: a SpectralX checkpoint (-c) or a backbone file "
                              "(--backbone)")
