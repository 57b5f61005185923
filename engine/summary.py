"""Parameter counts per part of the network, and the trainable share of the frozen backbone."""

from __future__ import annotations

from typing import Dict

from .config import ModelConfig
from .model import SpectralX

PARTS = ("hypert", "aomoa", "are_adapter", "lora", "head")


def parameter_summary(cfg: ModelConfig, stage: str = "finetune") -> Dict[str, object]:
    """Counts for a network built from `cfg` with the trainable set of `stage` (no weights needed)."""
    model = SpectralX(cfg)
    model.set_stage(stage)
    total: Dict[str, int] = {}
    trainable: Dict[str, int] = {}
    for group, params in model.parameter_groups().items():
        part = group.split(".")[0]
        total[part] = total.get(part, 0) + sum(p.numel() for _, p in params)
        trainable[part] = trainable.get(part, 0) + sum(p.numel() for _, p in params if p.requires_grad)
    backbone = total["backbone"]
    # the paper's count: HyperT's trainable part + AoMoA + Are-adapter (or the PEFT method's adapters)
    adapters = sum(trainable.get(p, 0) for p in ("hypert", "aomoa", "are_adapter", "lora"))
    return {
        "backbone_preset": cfg.backbone_preset,
        "bands": cfg.in_bands,
        "classes": cfg.num_classes,
        "stage": stage,
        "backbone_params": backbone,
        "parts": {p: {"total": total.get(p, 0), "trainable": trainable.get(p, 0)} for p in PARTS},
        "adapter_trainable": adapters,
        "adapter_share_of_backbone": adapters / backbone,
        "trainable_total": sum(trainable.values()),
        "trainable_share_of_backbone": sum(trainable.values()) / backbone,
    }


def format_summary(s: Dict[str, object]) -> str:
    lines = [
        f"SpectralX with {s['backbone_preset']}, {s['bands']} bands, {s['classes']} classes ({s['stage']})",
        f"{'part':<14}{'trainable':>14}{'total':>14}",
        f"{'backbone':<14}{0:>14,}{s['backbone_params']:>14,}  (frozen)",
    ]
    for name, c in s["parts"].items():
        lines.append(f"{name:<14}{c['trainable']:>14,}{c['total']:>14,}")
    lines.append(
        f"HyperT + AoMoA + Are-adapter trainable: {s['adapter_trainable'] / 1e6:.2f} M = "
        f"{100 * s['adapter_share_of_backbone']:.2f} % of the backbone"
    )
    lines.append(
        f"all trainable (with head): {s['trainable_total'] / 1e6:.2f} M = "
        f"{100 * s['trainable_share_of_backbone']:.2f} % of the backbone"
    )
    return "\n".join(lines)
