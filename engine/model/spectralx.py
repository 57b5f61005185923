"""The SpectralX network: HyperT -> frozen ViT with AoMoA + Are-adapter -> neck + UPerNet."""
from __future__ import annotations

from typing import Dict, Iterator, List, Optional, Tuple

import torch
from torch import nn

from ..config import ModelConfig
from .aomoa import AoMoA
from .are_adapter import AreAdapter
from .backbone import VisionTransformer
from .decoder import ReconstructionHead, SegmentationHead
from .hypert import HyperT

# Which parameter groups train in each stage (SPEC §2). The backbone is never among them.
STAGE_TRAINABLE = {
    "pretrain": ("hypert", "aomoa", "are_adapter", "recon_head"),
    "finetune": ("hypert.lowrank", "hypert.scale", "hypert.norms", "aomoa", "are_adapter", "head"),
    "frozen": (),
}


class SpectralX(nn.Module):
    def __init__(self, cfg: ModelConfig, wavelengths_nm: Optional[torch.Tensor] = None):
        super().__init__()
        self.cfg = cfg
        self.backbone = VisionTransformer(cfg)
        self.hypert = HyperT(cfg, wavelengths_nm)
        hidden = int(cfg.embed_dim * cfg.mlp_ratio)
        self.aomoa = nn.ModuleDict({
            str(i): AoMoA(cfg.embed_dim, hidden, cfg.num_experts, cfg.top_k) for i in cfg.adapter_blocks})
        self.are_adapter = AreAdapter(cfg)
        self.head = SegmentationHead(cfg.embed_dim, cfg.head_dim, cfg.num_classes, cfg.pool_scales,
                                     cfg.in_bands, cfg.spectral_skip)
        self.recon_head = ReconstructionHead(cfg.embed_dim, cfg.in_bands, cfg.patch_size)
        self.set_stage("finetune")

    # -- parameter groups ------------------------------------------------------------------
    def parameter_groups(self) -> Dict[str, List[Tuple[str, nn.Parameter]]]:
        """Every parameter under exactly one group name (see STAGE_TRAINABLE)."""
        groups: Dict[str, List[Tuple[str, nn.Parameter]]] = {}
        for name, p in self.named_parameters():
            top = name.split(".")[0]
            group = top
            if top == "hypert":
                sub = name.split(".")[1]
                if sub in ("lowrank", "scale"):
                    group = f"hypert.{sub}"
                elif _is_layernorm_param(self, name):
                    group = "hypert.norms"
            groups.setdefault(group, []).append((name, p))
        return groups

    def set_stage(self, stage: str) -> None:
        """Set requires_grad for a training stage; the backbone stays frozen in every stage."""
        if stage not in STAGE_TRAINABLE:
            raise ValueError(f"unknown stage {stage!r}")
        trainable = STAGE_TRAINABLE[stage]
        for group, params in self.parameter_groups().items():
            on = any(group == t or group.startswith(t + ".") for t in trainable)
            for _, p in params:
                p.requires_grad_(on and group != "backbone")
        self.stage = stage

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        return (p for p in self.parameters() if p.requires_grad)

    # -- forward ---------------------------------------------------------------------------
    def encode(self, x: torch.Tensor) -> List[torch.Tensor]:
        """x (B, C, H, W) normalized -> four (B, D, g, g) feature maps after the adapter blocks."""
        tokens, spatial, spectral = self.hypert(x)
        vit = self.backbone
        t = vit.add_position(tokens)
        prefix = vit.num_prefix_tokens  # cls + register tokens, skipped by the adapters
        g = self.cfg.grid
        rope = vit.rope(g, g)  # None unless the backbone uses rotary positions (DINOv3)
        feats = []
        for i, blk in enumerate(vit.blocks):
            key = str(i)
            if key in self.aomoa:
                moa = self.aomoa[key]
                t = blk.attn_residual(t, rope)
                t = blk.mlp_residual(t, lambda h, moa=moa, blk=blk: moa.mlp(blk.mlp, h))
                patches = self.are_adapter(t[:, prefix:], spatial, spectral)
                t = torch.cat([t[:, :prefix], patches], dim=1)
                feats.append(patches.transpose(1, 2).reshape(x.shape[0], -1, g, g))
            else:
                t = blk(t, rope)
        return feats

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Segmentation logits (B, K, H, W)."""
        return self.head(self.encode(x), x)

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Stage-1 reconstruction of all C bands from (masked) input."""
        return self.recon_head(self.encode(x)[-1])

    def reset_buffers(self) -> None:
        """Recompute buffers that are derived, not stored (after a meta-device build)."""
        for m in self.modules():
            if m is not self and hasattr(m, "reset_buffers"):
                m.reset_buffers()

    def balance_loss(self) -> torch.Tensor:
        return sum(m.balance_loss() for m in self.aomoa.values())


def _is_layernorm_param(model: nn.Module, name: str) -> bool:
    module_name = name.rsplit(".", 1)[0]
    return isinstance(model.get_submodule(module_name), nn.LayerNorm)
