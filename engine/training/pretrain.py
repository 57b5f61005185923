"""Stage 1: masked reconstruction on unlabelled rasters of the target sensor (SPEC §2).

Chips of the tile size are read at random (windowed reads, so rasters of any size work) where at
least half the pixels are valid. 75 % of the 16x16 patch cells of the normalized chip are zeroed;
the network (HyperT + adapters + light reconstruction head, backbone frozen) reconstructs all bands
and the loss is the mean squared error on the masked, valid pixels only. The output checkpoint
(stage "pretrain", with bands and normalization) is a starting point for `finetune(checkpoint=…)`.
"""

from __future__ import annotations

import datetime as _dt
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np
import torch

from ..checkpoint import ClassInfo, ModelCard, new_model, save_checkpoint
from ..config import DEFAULT_SPECTRAL_SKIP, PAPER_SWITCHES
from ..errors import SpectralXError
from ..progress import Progress, ensure
from .common import check_output, count_parameters, load_base, pick_device, place_backbone, require_one_source
from .loop import run_loop
from .options import PretrainOptions
from .rasters import _open, gsd_of, mapping_for, normalize, read_mapped, same_sensor_mappings, scene_statistics

PLACEHOLDER_CLASSES = [
    ClassInfo(1, "class 1 (placeholder)", "#1f78b4"),
    ClassInfo(2, "class 2 (placeholder)", "#33a02c"),
]


@dataclass
class PretrainResult:
    checkpoint: Optional[str]
    metrics: Dict[str, Any]
    card: Optional[ModelCard] = None
    model: Any = None
    history: List[Dict[str, Any]] = field(default_factory=list)


def random_patch_mask(batch: int, grid: int, patch: int, ratio: float, gen: torch.Generator) -> torch.Tensor:
    """(B, 1, grid*patch, grid*patch) float mask: 1 on masked patch cells (exactly round(ratio*N) each)."""
    n = grid * grid
    n_mask = int(round(ratio * n))
    noise = torch.rand(batch, n, generator=gen)
    order = noise.argsort(1)
    m = torch.zeros(batch, n)
    m.scatter_(1, order[:, :n_mask], 1.0)
    m = m.reshape(batch, 1, grid, grid)
    return m.repeat_interleave(patch, 2).repeat_interleave(patch, 3)


class _ChipReader:
    """Random valid chips read straight from the rasters (bounded memory)."""

    def __init__(self, images: Sequence[str], mappings, norm, tile: int, rng: np.random.Generator):
        self.images = list(images)
        self.mappings = list(mappings)
        self.norm = norm
        self.tile = tile
        self.rng = rng
        self.datasets = [_open(p) for p in self.images]
        sizes = np.array([ds.width * ds.height for ds in self.datasets], np.float64)
        self.weights = sizes / sizes.sum()

    def close(self):
        for ds in self.datasets:
            ds.close()

    def chip(self):
        from rasterio.windows import Window

        t = self.tile
        best = None
        for _ in range(20):
            i = int(self.rng.choice(len(self.datasets), p=self.weights))
            ds = self.datasets[i]
            r0 = int(self.rng.integers(min(0, ds.height - t), max(1, ds.height - t + 1)))
            c0 = int(self.rng.integers(min(0, ds.width - t), max(1, ds.width - t + 1)))
            x = read_mapped(ds, self.mappings[i], window=Window(c0, r0, t, t))
            valid = np.isfinite(x).any(0)
            frac = valid.mean()
            if best is None or frac > best[2]:
                best = (x, valid, frac)
            if frac >= 0.5:
                break
        x, valid, _ = best
        return normalize(x, self.norm), valid

    def batch(self, n: int):
        xs, vs = zip(*(self.chip() for _ in range(n)))
        xs = [np.ascontiguousarray(x) for x in xs]
        out_x, out_v = [], []
        for x, v in zip(xs, vs):
            if self.rng.random() < 0.5:
                x, v = x[:, :, ::-1], v[:, ::-1]
            rot = int(self.rng.integers(4))
            x, v = np.rot90(x, rot, axes=(1, 2)), np.rot90(v, rot)
            out_x.append(np.ascontiguousarray(x))
            out_v.append(np.ascontiguousarray(v))
        return torch.from_numpy(np.stack(out_x)), torch.from_numpy(np.stack(out_v))


def pretrain(
    images: Union[str, Sequence[str]],
    output: Optional[str],
    *,
    options: Optional[PretrainOptions] = None,
    checkpoint: Optional[str] = None,
    backbone: Optional[str] = None,
    backbone_preset: Optional[str] = None,
    tile_size: Optional[int] = None,
    progress: Optional[Progress] = None,
    sensor: Optional[str] = None,
    band_map="auto",
    command: Optional[str] = None,
    description: Optional[str] = None,
    **option_overrides: Any,
) -> PretrainResult:
    """Stage-1 masked reconstruction; writes a stage="pretrain" checkpoint to `output`.

    Training options: `options` (PretrainOptions) and/or its fields as keywords (steps, batch_size,
    mask_ratio, lr, weight_decay, balance_weight, variant, seed, device)."""
    # Long (110 lines) on purpose: stage 1's steps in order (inputs, model, loop, card, write), each short,
    # sharing the options.
    t_start = time.time()
    progress = ensure(progress)
    images = [str(images)] if isinstance(images, (str, os.PathLike)) else [str(p) for p in images]
    if not images:
        raise SpectralXError("no image given to pretrain on")
    opts = PretrainOptions.build(options, **option_overrides)
    steps, batch_size, mask_ratio, seed = opts.steps, opts.batch_size, opts.mask_ratio, opts.seed
    lr, weight_decay, balance_weight = opts.lr, opts.weight_decay, opts.balance_weight
    require_one_source(checkpoint, backbone)
    check_output(output)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    log = progress.log
    model, card, mappings, backbone_path = starting_model(
        images,
        opts,
        checkpoint=checkpoint,
        backbone=backbone,
        backbone_preset=backbone_preset,
        tile_size=tile_size,
        sensor=sensor,
        band_map=band_map,
    )
    tile = card.tile_size
    norm, nvalid = scene_statistics(images, mappings)
    if sum(nvalid) == 0:
        raise SpectralXError("the images hold no valid (non-nodata) pixel")
    reader = _ChipReader(images, mappings, norm, tile, rng)
    dev = pick_device(opts.device)
    model = model.to(dev)
    model.set_stage("pretrain")
    n_trainable, n_total = count_parameters(model)
    p = model.cfg.patch_size
    token_masking = model.cfg.variant == "paper"

    def step_fn(step: int):
        xb, vb = reader.batch(batch_size)
        mask = random_patch_mask(xb.shape[0], model.cfg.grid, p, mask_ratio, gen)
        xb, vb, mask = xb.to(dev), vb.to(dev), mask.to(dev)
        if token_masking:
            # the reference code: HyperT sees the whole tile; 75 % of its tokens are hidden from
            # the backbone (replaced by a learned mask token) and their pixels reconstructed
            token_mask = mask[:, 0, ::p, ::p].flatten(1)
            rec = model.reconstruct(xb, token_mask=token_mask)
        else:
            rec = model.reconstruct(xb * (1 - mask))
        weight = mask[:, 0] * vb.float()  # masked and valid pixels
        err = ((rec.float() - xb) ** 2).mean(1)  # (B, H, W), mean over bands
        rec_loss = (err * weight).sum() / weight.sum().clamp_min(1.0)
        return rec_loss + balance_weight * model.balance_loss().to(dev), float(rec_loss.detach())

    try:
        loop = run_loop(
            model,
            step_fn,
            steps=steps,
            lr=lr,
            weight_decay=weight_decay,
            device=dev,
            progress=progress,
            describe="masked_mse",
            log_every=max(1, steps // 10),
        )
    finally:
        reader.close()
    losses, history = loop.losses, loop.history
    model.eval()
    fill_card(
        card,
        opts,
        images,
        norm,
        losses,
        history,
        model,
        n_trainable,
        n_total,
        checkpoint,
        sensor,
        dev,
        time.time() - t_start,
        command,
        description,
    )
    if output is not None:
        save_checkpoint(model.to("cpu"), card, output)
        place_backbone(backbone_path, output, log)
        log(f"wrote {output}")
    return PretrainResult(checkpoint=output, metrics=card.metrics, card=card, model=model, history=history)


def starting_model(
    images: List[str],
    opts: PretrainOptions,
    *,
    checkpoint: Optional[str],
    backbone: Optional[str],
    backbone_preset: Optional[str],
    tile_size: Optional[int],
    sensor: Optional[str],
    band_map,
):
    """(model, card, band mapping per image, backbone file): a checkpoint to continue, or a new model
    on a backbone with the bands of the first image."""
    if checkpoint:
        model, card, backbone_path = load_base(checkpoint, backbone)
        if tile_size and int(tile_size) != card.tile_size:
            raise SpectralXError(f"the checkpoint's tile size is {card.tile_size} px; it cannot be changed")
        return model, card, [mapping_for(p, card, band_map=band_map, sensor=sensor) for p in images], backbone_path
    bands, mappings = same_sensor_mappings(images, sensor)
    # the head (unused in stage 1) gets the same options as a fine-tuned model's, so that
    # `finetune -c` starts from the architecture it would create itself
    arch = (
        {"variant": "paper", **PAPER_SWITCHES}
        if opts.variant == "paper"
        else {"variant": opts.variant, "spectral_skip": DEFAULT_SPECTRAL_SKIP}
    )
    model, card = new_model(backbone, bands, PLACEHOLDER_CLASSES, preset=backbone_preset, img_size=tile_size, **arch)
    return model, card, mappings, backbone


def fill_card(
    card: ModelCard,
    opts: PretrainOptions,
    images: List[str],
    norm,
    losses,
    history,
    model,
    n_trainable: int,
    n_total: int,
    checkpoint: Optional[str],
    sensor: Optional[str],
    dev,
    seconds: float,
    command: Optional[str],
    description: Optional[str],
) -> None:
    """The stage-1 card: normalization, reconstruction figures and provenance."""
    steps, batch_size, mask_ratio, seed = opts.steps, opts.batch_size, opts.mask_ratio, opts.seed
    lr, weight_decay = opts.lr, opts.weight_decay
    p = model.cfg.patch_size
    card.normalization = norm
    card.stage = "pretrain"
    card.gsd_m = gsd_of(images[0]) or card.gsd_m
    card.created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    first = float(np.mean(losses[: max(1, min(20, len(losses)))]))
    last = float(np.mean(losses[-max(1, min(20, len(losses))) :]))
    card.metrics = {"masked_mse_first": first, "masked_mse_final": last, "mask_ratio": mask_ratio}
    card.training = {
        "stage": "pretrain",
        "objective": f"masked reconstruction of {int(mask_ratio * 100)} % of "
        f"{p}x{p} patches (MSE on masked valid pixels)",
        "images": [os.path.basename(x) for x in images],
        "base_checkpoint": os.path.basename(checkpoint) if checkpoint else None,
        "steps": steps,
        "batch_size": batch_size,
        "lr": lr,
        "weight_decay": weight_decay,
        "optimizer": "AdamW(0.9, 0.95)",
        "trainable_parameters": n_trainable,
        "total_parameters": n_total,
        "sensor": sensor,
        "seed": seed,
        "device": str(dev),
        "seconds": round(seconds, 1),
        "finished": card.created,
        "history": history,
        "command": command
        or (
            "spectralx " + " ".join(sys.argv[1:])
            if sys.argv and "spectralx" in os.path.basename(sys.argv[0])
            else "spectralx.training.pretrain(...)"
        ),
    }
    card.description = description or (
        f"SpectralX stage-1 (masked reconstruction) on {len(images)} unlabelled image(s); classes are a "
        "placeholder: fine-tune it (finetune -c) before segmenting"
    )
