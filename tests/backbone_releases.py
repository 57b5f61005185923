"""Tiny-width foundation-model release files in exactly their published on-disk structures.

Key names, dict layout and pickled objects follow the authors' released files (read from their
public code for the facts: Scale-MAE `mae/models_mae.py` + `lib/fpn.py` + `util/misc.save_model`,
SatMAE++ `models_mae.py` + `util/misc.py`, DINOv3 `models/vision_transformer.py` + `layers/*`,
timm's ViT and MAE). Only the widths are small (width 128, 4 blocks, 2 heads of 64) so tests run in
seconds. Weights are random but well-scaled (linear std 0.02, norms near 1) so forward passes are
meaningful.
"""

from __future__ import annotations

import argparse
import math
from typing import Dict

import numpy as np
import torch
from torch import nn

WIDTH, DEPTH, HEADS = 128, 4, 2
HEAD_DIM = WIDTH // HEADS


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _normal(g, *shape, std=0.02):
    return torch.randn(*shape, generator=g) * std


def mae_sincos_table(dim: int, grid: int, cls: bool = True) -> torch.Tensor:
    """MAE's fixed 2-D sin-cos table, written out with numpy as the MAE code does: meshgrid(w, h),
    first half of the channels from the first grid (column index), second half from the row index."""
    gh = np.arange(grid, dtype=np.float32)
    gw = np.arange(grid, dtype=np.float32)
    mesh = np.stack(np.meshgrid(gw, gh), axis=0).reshape(2, 1, grid, grid)

    def one(d, pos):
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1).astype(np.float64), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    emb = np.concatenate([one(dim // 2, mesh[0]), one(dim // 2, mesh[1])], axis=1)
    if cls:
        emb = np.concatenate([np.zeros([1, dim]), emb], axis=0)
    return torch.from_numpy(emb).float()[None]


def vit_encoder(
    seed: int,
    grid: int = 14,
    *,
    cls: bool = True,
    pos: str = "sincos",
    qkv_bias_mask: bool = False,
    layer_scale: bool = False,
    dim: int = WIDTH,
    depth: int = DEPTH,
) -> Dict[str, torch.Tensor]:
    """timm-named encoder tensors (blocks.N.norm1/attn.qkv/attn.proj/norm2/mlp.fc1/mlp.fc2, norm)."""
    g = _gen(seed)
    s = {"patch_embed.proj.weight": _normal(g, dim, 3, 16, 16), "patch_embed.proj.bias": _normal(g, dim)}
    if cls:
        s["cls_token"] = _normal(g, 1, 1, dim)
    if pos == "sincos":
        s["pos_embed"] = mae_sincos_table(dim, grid, cls)
    elif pos == "learned":
        s["pos_embed"] = _normal(g, 1, grid * grid + (1 if cls else 0), dim)
    for i in range(depth):
        p = f"blocks.{i}."
        s[p + "norm1.weight"] = 1 + _normal(g, dim, std=0.1)
        s[p + "norm1.bias"] = _normal(g, dim)
        s[p + "attn.qkv.weight"] = _normal(g, 3 * dim, dim, std=0.08)
        s[p + "attn.qkv.bias"] = _normal(g, 3 * dim, std=0.1)
        if qkv_bias_mask:  # DINOv3's LinearKMaskedBias: 1 for q and v, 0 for k
            mask = torch.ones(3 * dim)
            mask[dim : 2 * dim] = 0
            s[p + "attn.qkv.bias_mask"] = mask
        s[p + "attn.proj.weight"] = _normal(g, dim, dim, std=0.05)
        s[p + "attn.proj.bias"] = _normal(g, dim)
        if layer_scale:
            s[p + "ls1.gamma"] = 0.5 + _normal(g, dim, std=0.2)
        s[p + "norm2.weight"] = 1 + _normal(g, dim, std=0.1)
        s[p + "norm2.bias"] = _normal(g, dim)
        s[p + "mlp.fc1.weight"] = _normal(g, 4 * dim, dim, std=0.05)
        s[p + "mlp.fc1.bias"] = _normal(g, 4 * dim)
        s[p + "mlp.fc2.weight"] = _normal(g, dim, 4 * dim, std=0.03)
        s[p + "mlp.fc2.bias"] = _normal(g, dim)
        if layer_scale:
            s[p + "ls2.gamma"] = 0.5 + _normal(g, dim, std=0.2)
    s["norm.weight"] = 1 + _normal(g, dim, std=0.1)
    s["norm.bias"] = _normal(g, dim)
    return s


# -- MAE decoder and the Scale-MAE / SatMAE++ extras, as modules so names and shapes are the real ones --


def _vit_block_state(g, prefix: str, dim: int) -> Dict[str, torch.Tensor]:
    return {
        prefix + k: _normal(g, *shape)
        for k, shape in {
            "norm1.weight": (dim,),
            "norm1.bias": (dim,),
            "attn.qkv.weight": (3 * dim, dim),
            "attn.qkv.bias": (3 * dim,),
            "attn.proj.weight": (dim, dim),
            "attn.proj.bias": (dim,),
            "norm2.weight": (dim,),
            "norm2.bias": (dim,),
            "mlp.fc1.weight": (4 * dim, dim),
            "mlp.fc1.bias": (4 * dim,),
            "mlp.fc2.weight": (dim, 4 * dim),
            "mlp.fc2.bias": (dim,),
        }.items()
    }


def mae_decoder(
    seed: int, dec: int = 64, depth: int = 2, grid: int = 14, pred: bool = True, dim: int = WIDTH
) -> Dict[str, torch.Tensor]:
    g = _gen(seed)
    s = {
        "decoder_embed.weight": _normal(g, dec, dim),
        "decoder_embed.bias": _normal(g, dec),
        "mask_token": _normal(g, 1, 1, dec),
        "decoder_pos_embed": mae_sincos_table(dec, grid),
        "decoder_norm.weight": torch.ones(dec),
        "decoder_norm.bias": torch.zeros(dec),
    }
    for i in range(depth):
        s.update(_vit_block_state(g, f"decoder_blocks.{i}.", dec))
    if pred:
        s["decoder_pred.weight"] = _normal(g, 16 * 16 * 3, dec)
        s["decoder_pred.bias"] = _normal(g, 16 * 16 * 3)
    return s


class _Norm2d(nn.Module):  # Scale-MAE lib/fpn.py: a LayerNorm named `ln` over channels
    def __init__(self, d):
        super().__init__()
        self.ln = nn.LayerNorm(d, eps=1e-6)


class _HFFB(nn.Module):
    def __init__(self, h):
        super().__init__()
        self.convs = nn.Sequential(
            nn.GELU(), nn.Conv2d(h, h // 2, 3, padding=1, groups=h // 2), nn.GELU(), nn.Conv2d(h // 2, h, 1)
        )
        self.residual = nn.Conv2d(h, h, 1)


class _FCNHead(nn.Module):
    def __init__(self, d, h, layers):
        super().__init__()
        self.proj = nn.Conv2d(d, h, 1)
        self.conv_blocks = nn.Sequential(*[_HFFB(h) for _ in range(layers)])
        self.pred = nn.Sequential(
            _Norm2d(h),
            nn.ConvTranspose2d(h, h // 2, 4, 4),
            nn.GELU(),
            nn.Conv2d(h // 2, h // 4, 3, padding=1, groups=h // 4),
            nn.GELU(),
            nn.Conv2d(h // 4, h // 2, 1),
            nn.GELU(),
            nn.ConvTranspose2d(h // 2, 3, 2, 2),
        )


class _FPNHead(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.fpn1 = nn.Sequential(nn.ConvTranspose2d(d, d, 2, 2), _Norm2d(d), nn.GELU(), nn.ConvTranspose2d(d, d, 2, 2))
        self.fpn2 = nn.Sequential(nn.ConvTranspose2d(d, d, 2, 2))


class _LayerNormCF(nn.Module):  # SatMAE++ channels-first LayerNorm: bare weight/bias parameters
    def __init__(self, d):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.bias = nn.Parameter(torch.zeros(d))


class _ResidualBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1)


class _UpsampleBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.up_conv = nn.ConvTranspose2d(cin, cin, 4, 2, 1)
        self.up_norm = _LayerNormCF(cin)
        self.res_block = _ResidualBlock(cin)
        self.res_norm = _LayerNormCF(cin)
        self.proj_out = nn.Conv2d(cin, cout, 3, padding=1)


def _module_state(prefix: str, module: nn.Module) -> Dict[str, torch.Tensor]:
    return {f"{prefix}.{k}": v.detach().clone() for k, v in module.state_dict().items()}


def _optimizer_state(model_state: Dict[str, torch.Tensor]) -> dict:
    """A real AdamW state_dict (after one step) over tensors shaped like the trainable ones."""
    params = [nn.Parameter(torch.zeros_like(v)) for k, v in list(model_state.items())[:6]]
    opt = torch.optim.AdamW(params, lr=1.5e-4, betas=(0.9, 0.95), weight_decay=0.05)
    for p in params:
        p.grad = torch.ones_like(p)
    opt.step()
    return opt.state_dict()


_SCALER = {
    "scale": 65536.0,
    "growth_factor": 2.0,
    "backoff_factor": 0.5,
    "growth_interval": 2000,
    "_growth_tracker": 117,
}


def scale_mae_release(path, seed: int = 10) -> Dict[str, torch.Tensor]:
    """`scalemae-vitlarge-800.pth` layout: {model, optimizer, epoch, scaler, args}."""
    torch.manual_seed(seed)
    model = vit_encoder(seed)
    dec = mae_decoder(seed + 1, pred=False)
    dec["mask_token_decoder"] = _normal(_gen(seed + 2), 1, 1, 64)
    model.update(dec)
    model.update(_module_state("fpn", _FPNHead(64)))
    model.update(_module_state("fcn_high", _FCNHead(64, 32, 2)))
    model.update(_module_state("fcn_low", _FCNHead(64, 32, 2)))
    args = argparse.Namespace(
        batch_size=64,
        epochs=800,
        accum_iter=1,
        model="mae_vit_large_patch16",
        input_size=224,
        mask_ratio=0.75,
        norm_pix_loss=False,
        weight_decay=0.05,
        lr=None,
        blr=1.5e-4,
        min_lr=0.0,
        warmup_epochs=40,
        config="config/fmow.yaml",
        output_dir="./output_dir",
        log_dir="./output_dir",
        device="cuda",
        seed=0,
        resume="",
        start_epoch=0,
        num_workers=10,
        pin_mem=True,
        world_size=8,
        local_rank=-1,
        dist_on_itp=False,
        dist_url="env://",
        decoder_depth=3,
        decoder_aux_loss_layers=1,
        target_size=[224],
        source_size=[224],
        fixed_output_size_min=224,
        fixed_output_size_max=336,
        base_resolution=2.5,
        independent_fcn_head=True,
        progressive=False,
        use_mask_token=True,
        loss_masking=True,
        self_attention=False,
        absolute_scale=False,
        fcn_dim=512,
        fcn_layers=2,
        scale_min=0.2,
        scale_max=1.0,
        eval_base_resolution=1.0,
        distributed=True,
        rank=0,
        gpu=0,
    )
    torch.save(
        {"model": model, "optimizer": _optimizer_state(model), "epoch": 799, "scaler": dict(_SCALER), "args": args},
        path,
    )
    return model


def satmae_pp_release(path, seed: int = 20) -> Dict[str, torch.Tensor]:
    """SatMAE++ fMoW-RGB pretrain checkpoint layout: {model, optimizer, epoch, scaler, args}."""
    torch.manual_seed(seed)
    model = vit_encoder(seed)
    model.update(mae_decoder(seed + 1))
    model.update(_module_state("proj_up_conv", nn.Conv2d(3, 12, 1)))
    model.update(_module_state("proj_up_norm", _LayerNormCF(12)))
    model.update(_module_state("up_block", _UpsampleBlock(12, 3)))
    args = argparse.Namespace(
        batch_size=64,
        epochs=800,
        accum_iter=16,
        model_type=None,
        model="mae_vit_large_patch16",
        input_size=224,
        patch_size=16,
        mask_ratio=0.75,
        spatial_mask=False,
        norm_pix_loss=False,
        weight_decay=0.05,
        lr=None,
        blr=1.5e-4,
        min_lr=0.0,
        warmup_epochs=20,
        train_path="/home/fmow-rgb/train_62classes.json",
        dataset_type="rgb",
        masked_bands=None,
        dropped_bands=None,
        grouped_bands=[],
        output_dir="./output_dir",
        log_dir="./output_dir",
        device="cuda",
        seed=0,
        resume="",
        wandb=None,
        start_epoch=0,
        num_workers=8,
        pin_mem=True,
        world_size=8,
        local_rank=0,
        dist_on_itp=False,
        dist_url="env://",
        distributed=True,
    )
    torch.save(
        {"model": model, "optimizer": _optimizer_state(model), "epoch": 799, "scaler": dict(_SCALER), "args": args},
        path,
    )
    return model


def dinov3_state(seed: int = 30) -> Dict[str, torch.Tensor]:
    """`dinov3_vitl16_pretrain_sat493m-eadcf0ff.pth` layout, tiny width: a bare state dict."""
    g = _gen(seed)
    s = vit_encoder(seed, pos="none", qkv_bias_mask=True, layer_scale=True)
    s["storage_tokens"] = _normal(g, 1, 4, WIDTH, std=0.5)
    s["cls_token"] = _normal(g, 1, 1, WIDTH, std=0.5)
    s["mask_token"] = torch.zeros(1, WIDTH)
    s["rope_embed.periods"] = 100.0 ** (2 * torch.arange(HEAD_DIM // 4, dtype=torch.float32) / (HEAD_DIM // 2))
    s["local_cls_norm.weight"] = torch.ones(WIDTH)
    s["local_cls_norm.bias"] = torch.zeros(WIDTH)
    return s


def dinov3_release(path, seed: int = 30) -> Dict[str, torch.Tensor]:
    s = dinov3_state(seed)
    torch.save(s, path)
    return s


def timm_release(path, seed: int = 40) -> Dict[str, torch.Tensor]:
    """`model.safetensors` of a timm ViT (augreg-style): learned pos_embed, classifier head."""
    from safetensors.torch import save_file

    s = vit_encoder(seed, pos="learned")
    g = _gen(seed + 1)
    s["head.weight"] = _normal(g, 1000, WIDTH)
    s["head.bias"] = torch.zeros(1000)
    save_file(s, str(path), metadata={"format": "pt"})
    return s


def mae_release(path, seed: int = 50) -> Dict[str, torch.Tensor]:
    """MAE `mae_visualize_vit_*.pth` layout: {model: encoder + decoder}."""
    s = vit_encoder(seed)
    s.update(mae_decoder(seed + 1))
    torch.save({"model": s}, path)
    return s


RELEASES = {  # family -> (file name as published, writer)
    "scale-mae": ("scalemae-vitlarge-800.pth", scale_mae_release),
    "satmae++": ("checkpoint_ViT-L_pretrain_fmow_rgb.pth", satmae_pp_release),
    "dinov3": ("dinov3_vitl16_pretrain_sat493m-eadcf0ff.pth", dinov3_release),
    "timm": ("model.safetensors", timm_release),
    "mae": ("mae_visualize_vit_large.pth", mae_release),
}


def rope_reference_tables(h: int, w: int, head_dim: int, base: float = 100.0):
    """DINOv3 RoPE written from its definition: patch centres normalised to [-1, 1] per side, periods
    base^(2k/(head_dim/2)), angles 2*pi*coord/period for (y, x), the list tiled twice."""
    periods = base ** (2 * torch.arange(head_dim // 4, dtype=torch.float64) / (head_dim // 2))
    ys = (torch.arange(h, dtype=torch.float64) + 0.5) / h * 2 - 1
    xs = (torch.arange(w, dtype=torch.float64) + 0.5) / w * 2 - 1
    angles = []
    for i in range(h):
        for j in range(w):
            a = [2 * math.pi * ys[i] / p for p in periods] + [2 * math.pi * xs[j] / p for p in periods]
            angles.append(torch.stack(a + a))
    angles = torch.stack(angles)
    return torch.sin(angles), torch.cos(angles)
