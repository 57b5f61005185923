"""The SpectralX network: HyperT -> frozen ViT with AoMoA + Are-adapter -> neck + UPerNet."""

from __future__ import annotations

from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from torch import nn

from ..config import ModelConfig
from .aomoa import AoMoA
from .are_adapter import AreAdapter
from .backbone import VisionTransformer
from .decoder import ReconstructionHead, SegmentationHead
from .forest import PROBA_FLOOR, forest_log_proba
from .forest_tiles import tiles_log_proba
from .fusion import pool
from .hypert import HyperT
from .lora import attach_lora, build_lora

# Which parameter groups train in each stage (SPEC §2). The backbone's weights are never among them
# for SpectralX (its LayerNorms may be: `backbone_norms`, see set_stage); `full` unfreezes it all.
STAGE_TRAINABLE = {
    "pretrain": ("hypert", "aomoa", "are_adapter", "lora", "recon_head", "mask_token"),
    "finetune": ("hypert.lowrank", "hypert.scale", "hypert.norms", "aomoa", "are_adapter", "lora", "head"),
    "frozen": (),
}


class SpectralX(nn.Module):
    def __init__(self, cfg: ModelConfig, wavelengths_nm: Optional[torch.Tensor] = None):
        super().__init__()
        self.cfg = cfg
        self.backbone = VisionTransformer(cfg)
        self.hypert = HyperT(cfg, wavelengths_nm)
        hidden = int(cfg.embed_dim * cfg.mlp_ratio)
        self.aomoa = (
            nn.ModuleDict(
                {
                    str(i): AoMoA(cfg.embed_dim, hidden, cfg.num_experts, cfg.top_k, cfg.aomoa_layout)
                    for i in cfg.adapter_blocks
                }
            )
            if cfg.uses_adapters
            else nn.ModuleDict()
        )
        self.are_adapter = AreAdapter(cfg) if cfg.uses_adapters else None
        self.lora = (
            build_lora(self.backbone, cfg.adapter_blocks, cfg.lora_rank, cfg.method == "slr")
            if cfg.uses_lora
            else nn.ModuleDict()
        )
        self._lora_hooks = attach_lora(self.backbone, self.lora) if cfg.uses_lora else {}
        # backbone tensors that training changed (LayerNorms, or all of it for `full`): a checkpoint
        # stores these beside its own tensors; every other backbone tensor comes from the backbone file
        self.trained_backbone_keys: set = set()
        self.tta_flips = False  # test-time flip averaging (set from the card at load)
        # per-class logit bias chosen after training (spectralx.training.calibration; from the card)
        self.register_buffer("class_bias", torch.zeros(cfg.num_classes), persistent=False)
        # the per-pixel random forest pooled with the network at inference (spectralx.model.fusion;
        # weight 0 = network alone, 1 = forest alone); arrays, not parameters: never trained here
        self.forest = None
        self.fusion_weight = 0.0
        self.head = SegmentationHead(
            cfg.embed_dim, cfg.head_dim, cfg.num_classes, cfg.pool_scales, cfg.in_bands, cfg.spectral_skip
        )
        self.recon_head = ReconstructionHead(cfg.embed_dim, cfg.in_bands, cfg.patch_size)
        # the paper variant's stage 1 hides tokens after HyperT behind a learned mask token
        self.mask_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim)) if cfg.variant == "paper" else None
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

    def set_stage(self, stage: str, backbone_norms: bool = False) -> None:
        """Set requires_grad for a training stage. The backbone stays frozen, except its LayerNorms
        when `backbone_norms` (the reference code trains them in stage 2) and all of it for the
        `full` method (a comparison baseline) in stage 2."""
        if stage not in STAGE_TRAINABLE:
            raise ValueError(f"unknown stage {stage!r}")
        trainable = STAGE_TRAINABLE[stage]
        if stage == "pretrain" and not self.cfg.are_in_stage1:
            trainable = tuple(t for t in trainable if t != "are_adapter")
        for group, params in self.parameter_groups().items():
            on = any(group == t or group.startswith(t + ".") for t in trainable)
            for _, p in params:
                p.requires_grad_(on and group != "backbone")
        self.trained_backbone_keys = set()
        if stage == "finetune":
            for name, p in self.backbone.named_parameters():
                norm = _is_layernorm_param(self.backbone, name)
                if self.cfg.method == "full" or (backbone_norms and norm):
                    p.requires_grad_(True)
                    self.trained_backbone_keys.add("backbone." + name)
        self.stage = stage

    def trainable_parameters(self) -> Iterator[nn.Parameter]:
        return (p for p in self.parameters() if p.requires_grad)

    # -- forward ---------------------------------------------------------------------------
    def encode(self, x: torch.Tensor, token_mask: Optional[torch.Tensor] = None) -> List[torch.Tensor]:
        """x (B, C, H, W) normalized -> four (B, D, g, g) feature maps after the adapter blocks.
        token_mask (B, N), 1 = hidden: those HyperT tokens are replaced by the mask token (stage 1
        of the paper variant)."""
        tokens, spatial, spectral = self.hypert(x)
        if token_mask is not None:
            m = token_mask.unsqueeze(-1).to(tokens.dtype)
            tokens = tokens * (1 - m) + self.mask_token.to(tokens.dtype) * m
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
                patches = t[:, prefix:]
                if self.are_adapter is not None and (self.stage != "pretrain" or self.cfg.are_in_stage1):
                    patches = self.are_adapter(patches, spatial, spectral)
                    t = torch.cat([t[:, :prefix], patches], dim=1)
                feats.append(patches.transpose(1, 2).reshape(x.shape[0], -1, g, g))
            else:
                t = blk(t, rope)  # LoRA (when present) reaches the block's linears through hooks
                if key in self.lora:
                    feats.append(t[:, prefix:].transpose(1, 2).reshape(x.shape[0], -1, g, g))
        return feats

    def fused(self) -> bool:
        """Whether forward pools the network with its forest (eval mode, a forest, a weight > 0)."""
        return self.forest is not None and self.fusion_weight > 0 and not self.training

    def forest_for_tiles(
        self, chunk: torch.Tensor, x0s: Sequence[int], tile: int, cache=None, at=None
    ) -> Optional[torch.Tensor]:
        """The forest's part of `forward` for the tiles chunk[:, :tile, x0:x0+tile] of one strip chunk,
        each pixel's trees walked about once (spectralx.model.forest_tiles: `cache`, `at`), to hand to
        forward as `forest_lp`; None when forward pools no forest."""
        if not self.fused():
            return None
        return tiles_log_proba(self.forest, chunk, x0s, tile, PROBA_FLOOR, cache, at)

    def forward(self, x: torch.Tensor, forest_lp: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Segmentation logits (B, K, H, W); in eval mode with `tta_flips`, averaged over the four
        horizontal/vertical flips of the tile (each flipped back). In eval mode with a forest attached,
        the result is pooled with the forest's (spectralx.model.fusion): `forest_lp`, the forest's
        log-probabilities for these tiles when the caller has them (`forest_for_tiles`), else computed."""
        fused = self.fused()
        if fused and forest_lp is None:
            forest_lp = forest_log_proba(self.forest, x)
        if fused and self.fusion_weight >= 1:
            return forest_lp  # the forest alone: no network to run
        if self.tta_flips and not self.training:
            out = 0
            for dims in ((), (-1,), (-2,), (-2, -1)):
                xi = x.flip(dims) if dims else x
                yi = self.head(self.encode(xi), xi)
                out = out + (yi.flip(dims) if dims else yi)
            out = out / 4
        else:
            out = self.head(self.encode(x), x)
        if self.training:
            return out
        out = out + self.class_bias.to(out.dtype).view(1, -1, 1, 1)
        return pool(out, forest_lp, self.fusion_weight) if fused else out

    def reconstruct(self, x: torch.Tensor, token_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Stage-1 reconstruction of all C bands from (masked) input or hidden tokens."""
        return self.recon_head(self.encode(x, token_mask)[-1])

    def reset_buffers(self) -> None:
        """Recompute buffers that are derived, not stored (after a meta-device build)."""
        for m in self.modules():
            if m is not self and hasattr(m, "reset_buffers"):
                m.reset_buffers()
        if self.class_bias.is_meta:
            self.class_bias = torch.zeros(self.cfg.num_classes, device=self.hypert.scale.device)

    def balance_loss(self) -> torch.Tensor:
        return sum((m.balance_loss() for m in self.aomoa.values()), torch.zeros(()))


def _is_layernorm_param(model: nn.Module, name: str) -> bool:
    if "." not in name:  # a bare parameter of the model itself (cls token, pos embed)
        return False
    module_name = name.rsplit(".", 1)[0]
    return isinstance(model.get_submodule(module_name), nn.LayerNorm)
