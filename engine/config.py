"""Architecture configuration and backbone presets.

A `ModelConfig` fully determines the network's shapes; it is stored in every checkpoint's model card
so that a checkpoint rebuilds its network without guessing.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Dict, List

from .errors import CheckpointError

# ViT presets with timm's widths/depths/heads. `hyper_dim` (HyperT width D_h) and `head_dim` (UPerNet
# width) are the SpectralX defaults for that size: the paper's 512/512 for ViT-L, smaller for CPU.
BACKBONE_PRESETS: Dict[str, Dict[str, int]] = {
    "vit_tiny_patch16": dict(embed_dim=192, depth=12, num_heads=3, hyper_dim=128, head_dim=64),
    "vit_small_patch16": dict(embed_dim=384, depth=12, num_heads=6, hyper_dim=256, head_dim=128),
    "vit_base_patch16": dict(embed_dim=768, depth=12, num_heads=12, hyper_dim=384, head_dim=256),
    "vit_large_patch16": dict(embed_dim=1024, depth=24, num_heads=16, hyper_dim=512, head_dim=512),
}

# Spectral-skip width for models created by fine-tuning (ModelConfig keeps 0 so that cards written
# without the key still describe the plain UPerNet head). On the EnMAP Potsdam demo split it lifted
# test mIoU from 0.16 to 0.44 (see README, Benchmarks).
DEFAULT_SPECTRAL_SKIP = 32


@dataclass
class ModelConfig:
    backbone_preset: str = "vit_tiny_patch16"
    in_bands: int = 3
    num_classes: int = 2
    img_size: int = 224            # tile side in pixels; a multiple of 32
    patch_size: int = 16
    embed_dim: int = 192
    depth: int = 12
    num_heads: int = 3
    mlp_ratio: float = 4.0
    class_token: bool = True       # backbone has a cls token (timm default); dropped before decoding
    # Backbone variants beyond timm's ViT (DINOv3). The defaults are timm's, so cards and backbone
    # files written before these fields existed rebuild the same network.
    num_register_tokens: int = 0   # storage/register tokens after the cls token; skipped like it
    layer_scale: bool = False      # LayerScale (ls1/ls2 .gamma) on both residual branches
    pos_embed: str = "absolute"    # "absolute": a table added once (timm, MAE); "rope": 2-D RoPE in attention
    rope_base: float = 100.0       # RoPE period base (DINOv3: 100); the periods themselves are stored
    norm_eps: float = 1e-6         # LayerNorm epsilon of the backbone (DINOv3 ViT-L: 1e-5)
    hyper_dim: int = 128           # D_h: HyperT feature width at 1/8 resolution
    hyper_stem_dim: int = 64       # width after the 1x1 stem conv
    hyper_heads: int = 8           # heads of HyperT's windowed spatial attention
    lowrank_dim: int = 16          # HyperT low-rank shortcut width
    num_experts: int = 4           # AoMoA shared experts
    top_k: int = 2                 # AoMoA gating top-k
    adapter_blocks: List[int] = field(default_factory=list)  # empty: last block of each quarter
    head_dim: int = 64             # UPerNet width
    pool_scales: List[int] = field(default_factory=lambda: [1, 2, 3, 6])
    # Width of an optional full-resolution spectral skip in the head (0 = off, the paper's decoder).
    # The UPerNet logits are at 1/4 of the tile from 16-px tokens; at 30 m hyperspectral GSD a
    # per-pixel spectral path restores the detail a per-pixel classifier would see.
    spectral_skip: int = 0

    def __post_init__(self) -> None:
        if not self.adapter_blocks:
            q = self.depth // 4
            self.adapter_blocks = [q * (i + 1) - 1 for i in range(4)]
        if self.img_size % 32:
            raise CheckpointError(f"tile size {self.img_size} must be a multiple of 32")
        if self.embed_dim % 2:
            raise CheckpointError("backbone width must be even (split into spatial/spectral halves)")
        if len(self.adapter_blocks) != 4:
            raise CheckpointError("SpectralX needs exactly four adapter blocks for its 4-level neck")
        if self.pos_embed not in ("absolute", "rope"):
            raise CheckpointError(f"unknown backbone position embedding '{self.pos_embed}' (absolute or rope)")
        if self.pos_embed == "rope" and self.embed_dim % (4 * self.num_heads):
            raise CheckpointError("a RoPE backbone needs a head width that is a multiple of 4")

    @property
    def grid(self) -> int:
        """Token grid side (14 for 224/16)."""
        return self.img_size // self.patch_size

    @property
    def num_tokens(self) -> int:
        return self.grid * self.grid

    @classmethod
    def from_preset(cls, preset: str, **overrides: Any) -> "ModelConfig":
        # An imported backbone of a non-standard size names its own preset and gives every shape.
        custom = all(overrides.get(k) is not None for k in ("embed_dim", "depth", "num_heads"))
        if preset not in BACKBONE_PRESETS and not custom:
            raise CheckpointError(
                f"unknown backbone preset '{preset}'; choose one of {', '.join(BACKBONE_PRESETS)}")
        values = dict(BACKBONE_PRESETS.get(preset, {}))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(backbone_preset=preset, **values)

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise CheckpointError(f"model card has unknown architecture keys: {sorted(unknown)}")
        return cls(**data)

    def backbone_dict(self) -> Dict[str, Any]:
        """The subset that defines the frozen backbone's shapes (stored with backbone files)."""
        keys = ("backbone_preset", "img_size", "patch_size", "embed_dim", "depth", "num_heads",
                "mlp_ratio", "class_token", "num_register_tokens", "layer_scale", "pos_embed",
                "rope_base", "norm_eps")
        return {k: getattr(self, k) for k in keys}
