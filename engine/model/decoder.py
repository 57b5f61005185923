"""Multi-level neck (rescale x4, x2, x1, x0.5) and UPerNet head (pyramid pooling + FPN)."""

from __future__ import annotations

from typing import List, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ConvNormAct

RESCALES = (4.0, 2.0, 1.0, 0.5)


class MultiLevelNeck(nn.Module):
    """Four same-resolution ViT feature maps -> a 4-level pyramid at head width."""

    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.norms = nn.ModuleList(nn.LayerNorm(in_dim) for _ in RESCALES)
        self.lateral = nn.ModuleList(ConvNormAct(in_dim, out_dim, 1) for _ in RESCALES)
        self.smooth = nn.ModuleList(ConvNormAct(out_dim, out_dim, 3) for _ in RESCALES)

    def forward(self, feats: Sequence[torch.Tensor]) -> List[torch.Tensor]:
        out = []
        for i, (f, scale) in enumerate(zip(feats, RESCALES)):
            f = self.norms[i](f.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            f = self.lateral[i](f)
            if scale > 1:
                f = F.interpolate(f, scale_factor=scale, mode="bilinear", align_corners=False)
            elif scale < 1:
                f = F.max_pool2d(f, kernel_size=int(1 / scale), ceil_mode=True)
            out.append(self.smooth[i](f))
        return out


class PyramidPooling(nn.Module):
    def __init__(self, dim: int, scales: Sequence[int]):
        super().__init__()
        self.scales = list(scales)
        self.stages = nn.ModuleList(ConvNormAct(dim, dim, 1) for _ in self.scales)
        self.bottleneck = ConvNormAct(dim * (len(self.scales) + 1), dim, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [x]
        for s, stage in zip(self.scales, self.stages):
            pooled = stage(F.adaptive_avg_pool2d(x, s))
            outs.append(F.interpolate(pooled, size=x.shape[-2:], mode="bilinear", align_corners=False))
        return self.bottleneck(torch.cat(outs, dim=1))


class UPerHead(nn.Module):
    def __init__(self, dim: int, num_classes: int, pool_scales: Sequence[int]):
        super().__init__()
        self.ppm = PyramidPooling(dim, pool_scales)
        self.fpn = nn.ModuleList(ConvNormAct(dim, dim, 3) for _ in range(3))
        self.fuse = ConvNormAct(4 * dim, dim, 3)
        self.classifier = nn.Conv2d(dim, num_classes, 1)

    def forward(self, levels: Sequence[torch.Tensor]) -> torch.Tensor:
        laterals = list(levels[:3]) + [self.ppm(levels[3])]
        for i in range(3, 0, -1):  # top-down pathway
            laterals[i - 1] = laterals[i - 1] + F.interpolate(
                laterals[i], size=laterals[i - 1].shape[-2:], mode="bilinear", align_corners=False
            )
        outs = [self.fpn[i](laterals[i]) for i in range(3)] + [laterals[3]]
        size = outs[0].shape[-2:]
        outs = [outs[0]] + [F.interpolate(o, size=size, mode="bilinear", align_corners=False) for o in outs[1:]]
        return self.classifier(self.fuse(torch.cat(outs, dim=1)))


class SpectralSkip(nn.Module):
    """Full-resolution refinement: upsampled logits + each pixel's own spectrum -> logit correction.

    The last layer is zero-initialised, so a fresh head starts exactly as the plain UPerNet one.
    """

    def __init__(self, in_bands: int, num_classes: int, width: int):
        super().__init__()
        self.pixel = nn.Sequential(nn.Conv2d(in_bands, width, 1), nn.GELU(), nn.Conv2d(width, width, 1), nn.GELU())
        self.mix = nn.Sequential(nn.Conv2d(width + num_classes, width, 1), nn.GELU(), nn.Conv2d(width, num_classes, 1))
        nn.init.zeros_(self.mix[-1].weight)
        nn.init.zeros_(self.mix[-1].bias)

    def forward(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return logits + self.mix(torch.cat([logits, self.pixel(x)], dim=1))


class SegmentationHead(nn.Module):
    """Neck + UPerNet: logits at 1/4 of the tile, upsampled, optionally refined per pixel."""

    def __init__(
        self,
        in_dim: int,
        dim: int,
        num_classes: int,
        pool_scales: Sequence[int],
        in_bands: int = 0,
        spectral_skip: int = 0,
    ):
        super().__init__()
        self.neck = MultiLevelNeck(in_dim, dim)
        self.uper = UPerHead(dim, num_classes, pool_scales)
        self.skip = SpectralSkip(in_bands, num_classes, spectral_skip) if spectral_skip else None

    def forward(self, feats: Sequence[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        logits = F.interpolate(self.uper(self.neck(feats)), size=x.shape[-2:], mode="bilinear", align_corners=False)
        return logits if self.skip is None else self.skip(logits, x)


class ReconstructionHead(nn.Module):
    """Light decoder for stage-1 masked reconstruction: last adapter features -> C bands per pixel.

    Each token predicts its 16x16 pixels in a low-rank spectral code (r = min(C, 16)), shared 1x1
    conv expands the code to C bands: spectra are highly correlated, and a direct D -> 16*16*C
    projection would be 11 M weights for 224 bands on ViT-Tiny, larger than the rest of the model.
    """

    def __init__(self, in_dim: int, in_bands: int, patch_size: int):
        super().__init__()
        self.patch_size = patch_size
        self.rank = min(in_bands, 16)
        self.norm = nn.LayerNorm(in_dim)
        self.proj = nn.Linear(in_dim, patch_size * patch_size * self.rank)
        self.expand = nn.Conv2d(self.rank, in_bands, 1)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        b, d, g, _ = feat.shape
        p = self.patch_size
        x = self.proj(self.norm(feat.flatten(2).transpose(1, 2)))  # (B, g², p²r)
        x = x.reshape(b, g, g, p, p, self.rank).permute(0, 5, 1, 3, 2, 4)
        return self.expand(x.reshape(b, self.rank, g * p, g * p))
