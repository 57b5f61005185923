"""Issue 2: real RSFM checkpoint layouts load into the backbone by key mapping."""

import pytest
import torch

from spectralx.backbone_io import load_backbone, map_backbone_state
from spectralx.config import ModelConfig
from spectralx.errors import CheckpointError


def timm_vit_state(dim=192, depth=12, grid=16, in_chans=3, cls=True):
    """A state dict with timm's real ViT key names and shapes."""
    s = {
        "patch_embed.proj.weight": torch.randn(dim, in_chans, 16, 16),
        "patch_embed.proj.bias": torch.randn(dim),
        "pos_embed": torch.randn(1, grid * grid + (1 if cls else 0), dim),
        "norm.weight": torch.randn(dim),
        "norm.bias": torch.randn(dim),
    }
    if cls:
        s["cls_token"] = torch.randn(1, 1, dim)
    for i in range(depth):
        p = f"blocks.{i}."
        s.update(
            {
                p + "norm1.weight": torch.randn(dim),
                p + "norm1.bias": torch.randn(dim),
                p + "attn.qkv.weight": torch.randn(3 * dim, dim),
                p + "attn.qkv.bias": torch.randn(3 * dim),
                p + "attn.proj.weight": torch.randn(dim, dim),
                p + "attn.proj.bias": torch.randn(dim),
                p + "norm2.weight": torch.randn(dim),
                p + "norm2.bias": torch.randn(dim),
                p + "mlp.fc1.weight": torch.randn(4 * dim, dim),
                p + "mlp.fc1.bias": torch.randn(4 * dim),
                p + "mlp.fc2.weight": torch.randn(dim, 4 * dim),
                p + "mlp.fc2.bias": torch.randn(dim),
            }
        )
    return s


def mae_decoder_keys(dim=128):
    return {
        "mask_token": torch.randn(1, 1, dim),
        "decoder_embed.weight": torch.randn(dim, 192),
        "decoder_pos_embed": torch.randn(1, 257, dim),
        "decoder_blocks.0.attn.qkv.weight": torch.randn(3 * dim, dim),
        "decoder_norm.weight": torch.randn(dim),
        "decoder_pred.weight": torch.randn(768, dim),
    }


def test_mae_release_wrapped_under_model_with_16x16_grid(tmp_path):
    state = timm_vit_state(grid=16)
    state.update(mae_decoder_keys())
    path = tmp_path / "scalemae-like.pth"
    torch.save({"model": state, "epoch": 799}, path)
    mapped, bcfg, report = load_backbone(str(path), "vit_tiny_patch16", 224)
    assert report.missing == []
    assert bcfg["backbone_preset"] == "vit_tiny_patch16"
    assert mapped["pos_embed"].shape == (1, 1 + 14 * 14, 192)
    assert any("decoder_pred" in k for k in report.dropped) and "mask_token" in report.dropped
    assert torch.equal(mapped["blocks.11.mlp.fc2.weight"], state["blocks.11.mlp.fc2.weight"])
    # the class token embedding is kept, the grid is interpolated (not truncated)
    assert torch.equal(mapped["pos_embed"][:, 0], state["pos_embed"][:, 0])
    from spectralx.model.backbone import VisionTransformer

    VisionTransformer(ModelConfig.from_preset("vit_tiny_patch16")).load_state_dict(mapped, strict=True)


def test_prefixes_state_dict_wrapper_and_other_patch_channels(tmp_path):
    state = {f"module.encoder.{k}": v for k, v in timm_vit_state(grid=14, in_chans=13).items()}
    path = tmp_path / "ddp.pt"
    torch.save({"state_dict": state}, path)
    mapped, bcfg, report = load_backbone(str(path))  # preset inferred from shapes
    assert bcfg["backbone_preset"] == "vit_tiny_patch16"
    assert report.missing == []
    assert report.replaced == ["patch_embed.proj.weight"]  # named after the DDP/encoder prefixes are stripped
    assert mapped["patch_embed.proj.weight"].shape == (192, 3, 16, 16)


def test_safetensors_release_without_cls_token(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "nocls.safetensors"
    save_file(timm_vit_state(grid=8, cls=False), str(path))
    mapped, bcfg, report = load_backbone(str(path), "vit_tiny_patch16", 224)
    assert bcfg["class_token"] is False
    assert mapped["pos_embed"].shape == (1, 196, 192)


def test_missing_encoder_keys_are_named():
    state = timm_vit_state()
    del state["blocks.3.attn.qkv.weight"], state["norm.bias"]
    with pytest.raises(CheckpointError) as err:
        map_backbone_state(state, ModelConfig.from_preset("vit_tiny_patch16"))
    assert "blocks.3.attn.qkv.weight" in str(err.value) and "norm.bias" in str(err.value)


def test_unknown_keys_are_an_error_naming_them():
    """Issue 18: an encoder key the network has no place for was dropped with a note (another network)."""
    state = timm_vit_state(grid=14)
    state["blocks.0.attn.rel_pos_bias"] = torch.randn(3)
    with pytest.raises(CheckpointError, match=r"no place for: blocks\.0\.attn\.rel_pos_bias"):
        map_backbone_state(state, ModelConfig.from_preset("vit_tiny_patch16"))


def test_wrong_preset_is_a_clear_error(tmp_path):
    path = tmp_path / "tiny.pth"
    torch.save(timm_vit_state(grid=14), path)
    with pytest.raises(CheckpointError, match="right preset"):
        load_backbone(str(path), "vit_small_patch16")
