"""Masked-autoencoder (MAE) pretraining of the plain ViT backbone on RGB chips.

This is how the project makes its own small, honest optical backbone for the demo (He et al., "Masked
Autoencoders Are Scalable Vision Learners", 2021, reimplemented here in plain PyTorch): each image is
cut into 16x16 patches, a random 75 % of them are masked, the ViT encoder sees only the visible
patches (plus the class token), and a light transformer decoder, given the encoded visible tokens and
a shared learned mask token at every masked position, predicts the pixels of the masked patches. The
loss is the mean squared error on masked patches only, against each patch's pixels normalized by
that patch's own mean and variance ("norm_pix_loss"): a loss of 1.0 is what predicting every masked
patch's mean would score, lower means the encoder learned something about image structure.

Encoder position embeddings are fixed 2-D sin-cos (as in MAE). The decoder is thrown away; only the
encoder's timm-named state dict is kept (see `spectralx.backbone_io.save_backbone`).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import nn

from .config import ModelConfig
from .errors import SpectralXError
from .model.backbone import Block, VisionTransformer
from .progress import Progress, ensure


def sincos_pos_embed(dim: int, grid: int, class_token: bool) -> torch.Tensor:
    """Fixed 2-D sin-cos position embedding, (1, [1 +] grid*grid, dim); zeros for the class token."""
    if dim % 4:
        raise ValueError("sin-cos position embedding needs a width divisible by 4")
    ys, xs = torch.meshgrid(
        torch.arange(grid, dtype=torch.float64), torch.arange(grid, dtype=torch.float64), indexing="ij"
    )
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4.0))

    def one(pos: torch.Tensor) -> torch.Tensor:
        out = pos.reshape(-1, 1) * omega[None]
        return torch.cat([out.sin(), out.cos()], dim=1)

    emb = torch.cat([one(ys), one(xs)], dim=1).float()  # (g*g, dim): first half rows, second cols
    if class_token:
        emb = torch.cat([torch.zeros(1, dim), emb], dim=0)
    return emb[None]


class MaskedAutoencoder(nn.Module):
    """ViT encoder (`VisionTransformer`, timm names) + a light MAE decoder."""

    def __init__(
        self,
        cfg: ModelConfig,
        in_chans: int = 3,
        mask_ratio: float = 0.75,
        decoder_dim: int = 128,
        decoder_depth: int = 2,
        decoder_heads: int = 4,
        norm_pix_loss: bool = True,
    ):
        super().__init__()
        if not 0.0 < mask_ratio < 1.0:
            raise SpectralXError(f"mask ratio must be between 0 and 1, got {mask_ratio}")
        self.cfg = cfg
        self.in_chans = in_chans
        self.patch = cfg.patch_size
        self.mask_ratio = mask_ratio
        self.norm_pix_loss = norm_pix_loss
        self.encoder = VisionTransformer(cfg, in_chans)
        prefix = self.encoder.num_prefix_tokens
        with torch.no_grad():  # fixed sin-cos encoder positions, as in MAE
            self.encoder.pos_embed.copy_(sincos_pos_embed(cfg.embed_dim, cfg.grid, prefix == 1))
        self.encoder.pos_embed.requires_grad_(False)
        w = self.encoder.patch_embed.proj.weight.data  # MAE: init the patch projection like a Linear
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))

        self.decoder_embed = nn.Linear(cfg.embed_dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.register_buffer("decoder_pos", sincos_pos_embed(decoder_dim, cfg.grid, prefix == 1), persistent=False)
        self.decoder_blocks = nn.ModuleList(Block(decoder_dim, decoder_heads, 4.0) for _ in range(decoder_depth))
        self.decoder_norm = nn.LayerNorm(decoder_dim, eps=1e-6)
        self.decoder_pred = nn.Linear(decoder_dim, self.patch * self.patch * in_chans)
        nn.init.normal_(self.mask_token, std=0.02)
        for m in [self.decoder_embed, self.decoder_pred, *self.decoder_blocks.modules()]:
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    # -- patches -----------------------------------------------------------------------------
    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, N, p*p*C), patches in row-major order."""
        b, c, h, w = imgs.shape
        p = self.patch
        x = imgs.reshape(b, c, h // p, p, w // p, p)
        return torch.einsum("bchpwq->bhwpqc", x).reshape(b, (h // p) * (w // p), p * p * c)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        p, c, g = self.patch, self.in_chans, int(math.isqrt(n))
        x = x.reshape(b, g, g, p, p, c)
        return torch.einsum("bhwpqc->bchpwq", x).reshape(b, c, g * p, g * p)

    # -- model -------------------------------------------------------------------------------
    def random_masking(
        self, n_batch: int, n_tokens: int, generator: Optional[torch.Generator], device: torch.device
    ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Per-sample random subset of visible tokens: (ids_keep, mask (1 = masked), ids_restore)."""
        keep = max(1, int(round(n_tokens * (1 - self.mask_ratio))))
        noise = torch.rand(n_batch, n_tokens, generator=generator, device=device)
        ids_shuffle = noise.argsort(dim=1)
        ids_restore = ids_shuffle.argsort(dim=1)
        ids_keep = ids_shuffle[:, :keep]
        mask = torch.ones(n_batch, n_tokens, device=device)
        mask[:, :keep] = 0
        return ids_keep, torch.gather(mask, 1, ids_restore), ids_restore

    def forward_encoder(self, imgs: torch.Tensor, generator: Optional[torch.Generator] = None):
        enc = self.encoder
        tokens = enc.add_position(enc.patch_embed(imgs))  # (B, prefix + N, D)
        prefix = enc.num_prefix_tokens
        head, patches = tokens[:, :prefix], tokens[:, prefix:]
        ids_keep, mask, ids_restore = self.random_masking(patches.shape[0], patches.shape[1], generator, imgs.device)
        visible = torch.gather(patches, 1, ids_keep[..., None].expand(-1, -1, patches.shape[2]))
        x = torch.cat([head, visible], dim=1)
        for blk in enc.blocks:
            x = blk(x)
        return enc.norm(x), mask, ids_restore

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        prefix = self.encoder.num_prefix_tokens
        x = self.decoder_embed(latent)
        head, visible = x[:, :prefix], x[:, prefix:]
        n = ids_restore.shape[1]
        filler = self.mask_token.expand(x.shape[0], n - visible.shape[1], -1)
        full = torch.cat([visible, filler], dim=1)
        full = torch.gather(full, 1, ids_restore[..., None].expand(-1, -1, x.shape[2]))  # unshuffle
        x = torch.cat([head, full], dim=1) + self.decoder_pos
        for blk in self.decoder_blocks:
            x = blk(x)
        return self.decoder_pred(self.decoder_norm(x))[:, prefix:]

    def loss(self, imgs: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        target = self.patchify(imgs)
        if self.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1e-6).sqrt()
        per_patch = ((pred - target) ** 2).mean(dim=-1)
        return (per_patch * mask).sum() / mask.sum()

    def forward(self, imgs: torch.Tensor, generator: Optional[torch.Generator] = None):
        latent, mask, ids_restore = self.forward_encoder(imgs, generator)
        pred = self.forward_decoder(latent, ids_restore)
        return self.loss(imgs, pred, mask), pred, mask

    def encoder_state(self) -> Dict[str, torch.Tensor]:
        """The encoder's timm-named tensors (what a backbone file holds)."""
        return {k: v.detach().clone().contiguous() for k, v in self.encoder.state_dict().items()}


# -- data ------------------------------------------------------------------------------------------
@dataclass
class ChipSet:
    chips: np.ndarray  # (N, H, W, 3) uint8, RGB
    source: np.ndarray  # (N,) index into `sources`
    sources: List[str]
    meta: dict = field(default_factory=dict)

    def counts(self) -> Dict[str, int]:
        return {name: int((self.source == i).sum()) for i, name in enumerate(self.sources)}


def load_chips(path: str) -> ChipSet:
    """Read an RGB chip file (.npz with `chips` (N,H,W,3) uint8, optional `source`/`sources`/`meta`)."""
    import json

    if not os.path.isfile(path):
        raise SpectralXError(f"chip file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as d:
            chips = d["chips"]
            source = d["source"] if "source" in d else np.zeros(len(chips), np.int16)
            sources = [str(s) for s in d["sources"]] if "sources" in d else [os.path.basename(path)]
            meta = json.loads(str(d["meta"])) if "meta" in d else {}
    except (OSError, ValueError, KeyError) as exc:
        raise SpectralXError(f"{path} is not a chip file (.npz with an array 'chips'): {exc}") from None
    if chips.ndim != 4 or chips.shape[-1] != 3 or chips.dtype != np.uint8:
        raise SpectralXError(f"{path}: chips must be (N, H, W, 3) uint8 RGB, got {chips.shape} {chips.dtype}")
    return ChipSet(chips, source, sources, meta)


def split_chips(n: int, every: int = 12) -> Tuple[np.ndarray, np.ndarray]:
    """Deterministic hold-out: every `every`-th chip is a validation chip."""
    idx = np.arange(n)
    val = idx[every - 1 :: every] if every > 1 else idx[:0]
    return np.setdiff1d(idx, val), val


def _dihedral(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Apply one of the 8 flips/rotations to each sample (k in 0..7)."""
    out = torch.empty_like(x)
    for code in range(8):
        sel = (k == code).nonzero(as_tuple=True)[0]
        if len(sel):
            y = x[sel]
            if code >= 4:
                y = y.flip(-1)
            out[sel] = torch.rot90(y, code % 4, dims=(-2, -1))
    return out


@dataclass
class MAEResult:
    state: Dict[str, torch.Tensor]
    cfg: ModelConfig
    history: List[float]  # training loss per step
    val_history: List[Tuple[int, float]]  # (step, validation loss) incl. step 0
    seconds: float
    n_train: int
    n_val: int
    mean: List[float]
    std: List[float]

    def summary(self) -> dict:
        h = np.asarray(self.history)
        w = max(1, min(20, len(h) // 10 or 1))
        return {
            "train_loss_first_steps": round(float(h[:w].mean()), 4) if len(h) else None,
            "train_loss_last_steps": round(float(h[-w:].mean()), 4) if len(h) else None,
            "averaged_over_steps": w,
            "val_loss_start": round(self.val_history[0][1], 4) if self.val_history else None,
            "val_loss_end": round(self.val_history[-1][1], 4) if self.val_history else None,
            "val_curve": [[s, round(v, 4)] for s, v in self.val_history],
            "train_curve": [
                [i + 1, round(float(h[max(0, i - w + 1) : i + 1].mean()), 4)]
                for i in range(w - 1, len(h), max(1, len(h) // 20))
            ],
            "loss_meaning": "masked-patch MSE on per-patch normalized pixels; 1.0 = predicting each "
            "masked patch's mean",
        }


def _to_tensor(chips: np.ndarray, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    x = torch.from_numpy(np.ascontiguousarray(chips)).permute(0, 3, 1, 2).float().div_(255.0)
    return (x - mean[None, :, None, None]) / std[None, :, None, None]


@torch.no_grad()
def _val_loss(model: MaskedAutoencoder, val: torch.Tensor, seed: int, batch: int = 64) -> float:
    model.eval()
    g = torch.Generator().manual_seed(seed + 7919)  # the same masks at every evaluation
    total, n = 0.0, 0
    for i in range(0, len(val), batch):
        x = val[i : i + batch]
        loss, _, _ = model(x, g)
        total += float(loss) * len(x)
        n += len(x)
    model.train()
    return total / max(n, 1)


def pretrain_mae(
    chips: np.ndarray,
    *,
    preset: str = "vit_tiny_patch16",
    img_size: int = 64,
    steps: int = 1000,
    batch_size: int = 64,
    lr: float = 1e-3,
    weight_decay: float = 0.05,
    warmup_fraction: float = 0.05,
    mask_ratio: float = 0.75,
    decoder_dim: int = 128,
    decoder_depth: int = 2,
    decoder_heads: int = 4,
    seed: int = 0,
    threads: Optional[int] = 1,
    val_every: int = 100,
    holdout_every: int = 12,
    progress: Optional[Progress] = None,
) -> MAEResult:
    """Train an MAE on (N, H, W, 3) uint8 chips; returns the encoder's state dict and the loss curve.

    Seeded and deterministic for a fixed thread count: data order, augmentation (flips/rotations,
    random crops when chips are larger than `img_size`) and masks all come from seeded generators.
    """
    previous_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(int(threads))
    try:
        return _pretrain(
            chips,
            preset,
            img_size,
            steps,
            batch_size,
            lr,
            weight_decay,
            warmup_fraction,
            mask_ratio,
            decoder_dim,
            decoder_depth,
            decoder_heads,
            seed,
            val_every,
            holdout_every,
            ensure(progress),
        )
    finally:
        torch.set_num_threads(previous_threads)


def _pretrain(
    chips,
    preset,
    img_size,
    steps,
    batch_size,
    lr,
    weight_decay,
    warmup_fraction,
    mask_ratio,
    decoder_dim,
    decoder_depth,
    decoder_heads,
    seed,
    val_every,
    holdout_every,
    progress,
) -> MAEResult:
    # Long (97 lines) on purpose: the demo backbone's MAE loop as one reading (data, masks, steps, checkpoints);
    # a developer tool.
    torch.manual_seed(seed)
    if chips.ndim != 4 or chips.shape[-1] != 3:
        raise SpectralXError(f"chips must be (N, H, W, 3), got {chips.shape}")
    h, w = chips.shape[1:3]
    if h < img_size or w < img_size:
        raise SpectralXError(f"chips of {h}x{w} px are smaller than the tile size {img_size}")
    train_idx, val_idx = split_chips(len(chips), holdout_every)
    if len(train_idx) < 2:
        raise SpectralXError(f"need at least 2 training chips, got {len(train_idx)}")
    train_np = chips[train_idx]
    mean = torch.tensor(train_np.reshape(-1, 3).mean(0) / 255.0, dtype=torch.float32)
    std = torch.tensor(train_np.reshape(-1, 3).std(0) / 255.0, dtype=torch.float32).clamp_min(1e-3)
    train = _to_tensor(train_np, mean, std)
    val = _to_tensor(chips[val_idx][:, :img_size, :img_size], mean, std)

    cfg = ModelConfig.from_preset(preset, img_size=img_size)
    model = MaskedAutoencoder(cfg, 3, mask_ratio, decoder_dim, decoder_depth, decoder_heads)
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "token" in name else decay).append(p)
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=lr,
        betas=(0.9, 0.95),
    )
    warmup = max(1, int(steps * warmup_fraction))

    def lr_at(step: int) -> float:  # linear warm-up, then cosine to zero
        if step < warmup:
            return lr * (step + 1) / warmup
        return lr * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))

    gen = torch.Generator().manual_seed(seed)
    history: List[float] = []
    val_history = [(0, _val_loss(model, val, seed))] if len(val) else []
    order = torch.randperm(len(train), generator=gen)
    pos = 0
    t0 = time.perf_counter()
    model.train()
    for step in range(steps):
        progress.check()
        if pos + batch_size > len(order):
            order, pos = torch.randperm(len(train), generator=gen), 0
        idx = order[pos : pos + batch_size]
        pos += batch_size
        x = train[idx]
        if h > img_size or w > img_size:
            r = int(torch.randint(0, h - img_size + 1, (1,), generator=gen))
            c = int(torch.randint(0, w - img_size + 1, (1,), generator=gen))
            x = x[:, :, r : r + img_size, c : c + img_size]
        x = _dihedral(x, torch.randint(0, 8, (len(x),), generator=gen))
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        loss, _, _ = model(x, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        history.append(float(loss.detach()))
        if len(val) and ((step + 1) % max(1, val_every) == 0 or step + 1 == steps):
            val_history.append((step + 1, _val_loss(model, val, seed)))
            progress.log(
                f"step {step + 1}/{steps}: train loss {np.mean(history[-val_every:]):.4f}, "
                f"validation loss {val_history[-1][1]:.4f}"
            )
        progress.update(step + 1, steps, f"loss {history[-1]:.4f}")
    seconds = time.perf_counter() - t0
    return MAEResult(
        model.encoder_state(),
        cfg,
        history,
        val_history,
        seconds,
        len(train_idx),
        len(val_idx),
        mean.tolist(),
        std.tolist(),
    )


__all__ = ["MaskedAutoencoder", "sincos_pos_embed", "ChipSet", "load_chips", "split_chips", "pretrain_mae", "MAEResult"]
