"""The ViT block API (attn_residual / mlp_residual, RoPE, registers, LayerScale).

timm-style backbones must compute exactly what the plain pre-norm ViT formulas give (bit-identical,
so checkpoints trained before the DINOv3 variant existed segment the same), and SpectralX.encode must
equal a hand-written loop over those formulas.
"""

from __future__ import annotations

import torch

from spectralx.config import ModelConfig
from spectralx.model.backbone import VisionTransformer
from spectralx.model.spectralx import SpectralX


def _plain_block(blk, x):
    """The timm pre-norm block written out: x + attn(norm1(x)), then x + mlp(norm2(x))."""
    a = blk.attn
    b, n, c = x.shape
    h = blk.norm1(x)
    qkv = a.qkv(h).reshape(b, n, 3, a.num_heads, c // a.num_heads).permute(2, 0, 3, 1, 4)
    att = torch.nn.functional.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
    x = x + a.proj(att.transpose(1, 2).reshape(b, n, c))
    h = blk.norm2(x)
    return x + blk.mlp.fc2(blk.mlp.act(blk.mlp.fc1(h)))


def test_timm_backbone_is_bit_identical_to_plain_vit_formulas():
    torch.manual_seed(0)
    cfg = ModelConfig.from_preset("vit_tiny_patch16", img_size=64, depth=4)
    vit = VisionTransformer(cfg).eval()
    assert vit.num_prefix_tokens == 1 and vit.rope(4, 4) is None
    assert not any(k.startswith(("storage_tokens", "rope_embed")) or ".ls1" in k for k in vit.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        t = torch.cat([vit.cls_token.expand(2, -1, -1), vit.patch_embed(x)], 1) + vit.pos_embed
        for blk in vit.blocks:
            t = _plain_block(blk, t)
        want = vit.norm(t)
        got = vit.forward_features(x)
    assert torch.equal(got, want)


def test_spectralx_encode_is_bit_identical_for_timm_backbones():
    torch.manual_seed(1)
    cfg = ModelConfig.from_preset("vit_tiny_patch16", img_size=64, depth=4, in_bands=5)
    model = SpectralX(cfg, torch.linspace(450, 900, 5)).eval()
    x = torch.randn(1, 5, 64, 64)
    with torch.no_grad():
        got = model.encode(x)
        tokens, spatial, spectral = model.hypert(x)
        vit = model.backbone
        t = vit.add_position(tokens)
        want = []
        for i, blk in enumerate(vit.blocks):
            if str(i) in model.aomoa:
                t = t + blk.attn(blk.norm1(t))
                t = t + model.aomoa[str(i)].mlp(blk.mlp, blk.norm2(t))
                patches = model.are_adapter(t[:, 1:], spatial, spectral)
                t = torch.cat([t[:, :1], patches], 1)
                want.append(patches.transpose(1, 2).reshape(1, -1, cfg.grid, cfg.grid))
            else:
                t = _plain_block(blk, t)
    assert len(got) == 4
    for g, w in zip(got, want):
        assert torch.equal(g, w)


def test_dinov3_variant_counts_registers_as_prefix_and_encodes():
    torch.manual_seed(2)
    cfg = ModelConfig.from_preset(
        "custom",
        embed_dim=64,
        depth=4,
        num_heads=2,
        img_size=64,
        in_bands=4,
        num_register_tokens=4,
        layer_scale=True,
        pos_embed="rope",
        norm_eps=1e-5,
    )
    model = SpectralX(cfg, torch.linspace(450, 900, 4)).eval()
    vit = model.backbone
    assert vit.num_prefix_tokens == 5 and vit.pos_embed is None
    keys = set(vit.state_dict())
    assert {"storage_tokens", "rope_embed.periods", "blocks.0.ls1.gamma", "blocks.3.ls2.gamma"} <= keys
    assert vit.rope_embed.periods.shape == (64 // 2 // 4,)
    with torch.no_grad():
        feats = model.encode(torch.randn(2, 4, 64, 64))
        logits = model(torch.randn(2, 4, 64, 64))
    assert [f.shape for f in feats] == [(2, 64, 4, 4)] * 4
    assert logits.shape == (2, cfg.num_classes, 64, 64) and torch.isfinite(logits).all()


def test_old_model_cards_without_variant_fields_rebuild_timm_backbones():
    old = ModelConfig.from_preset("vit_tiny_patch16").to_dict()
    for k in ("num_register_tokens", "layer_scale", "pos_embed", "rope_base", "norm_eps"):
        old.pop(k)
    cfg = ModelConfig.from_dict(old)
    assert (cfg.num_register_tokens, cfg.layer_scale, cfg.pos_embed, cfg.norm_eps) == (0, False, "absolute", 1e-6)
