"""Scale-MAE (Reed et al., ICCV 2023): `torch.save({model, optimizer, epoch, scaler, args})`.

`model` holds the ViT encoder under timm names plus the MAE decoder, its Laplacian-pyramid FPN and
FCN heads (`decoder_*`, `mask_token`, `mask_token_decoder`, `fpn.*`, `fcn_high.*`, `fcn_low.*`,
`fcn.*`, `pos_emb_projection.*`), all dropped. Scale-MAE's encoder does not add its stored
`pos_embed`: it computes a sin-cos table on the patch grid scaled by the ground-sample-distance ratio
of the input (`get_2d_sincos_pos_embed_with_resolution`). The import computes that table from the
formula for the chosen ratio (1.0, Scale-MAE's evaluation default, reproduces the stored table) and
the project file records it, so other tile sizes extend the grid instead of stretching a table.
"""

from __future__ import annotations

from typing import Dict

import torch

from ..errors import CheckpointError
from .common import Converted, grid_of, sincos_2d, split_encoder, vit_shape

NAME = "scale-mae"
TITLE = "Scale-MAE"
LICENSE = "CC BY-NC 4.0 (non-commercial; github.com/bair-climate-initiative/scale-mae)"
DROP = ("decoder_", "mask_token", "fpn.", "fcn_high.", "fcn_low.", "fcn.", "pos_emb_projection.")


# GSD ratios a position table is computed for: Scale-MAE's evaluations use 0.1-10; beyond 1e3 the
# positions times the ratio leave the range where the sin-cos table means anything (1e308: infinite)
MIN_GSD_RATIO, MAX_GSD_RATIO = 1e-3, 1e3


def check_gsd_ratio(value, where: str = "--gsd-ratio") -> float:
    try:
        ratio = float(value)
    except (TypeError, ValueError):
        ratio = float("nan")
    if not MIN_GSD_RATIO <= ratio <= MAX_GSD_RATIO:
        raise CheckpointError(
            f"{where} {str(value)[:40]}: a Scale-MAE GSD ratio must be from {MIN_GSD_RATIO:g} to " f"{MAX_GSD_RATIO:g}"
        )
    return ratio


def detect(keys) -> bool:
    return "mask_token_decoder" in keys or any(k.startswith(("fpn.", "fcn_high.", "fcn_low.", "fcn.")) for k in keys)


def convert(state: Dict[str, torch.Tensor], path: str, num_heads=None, gsd_ratio: float = 1.0) -> Converted:
    gsd_ratio = check_gsd_ratio(gsd_ratio)
    encoder, dropped = split_encoder(state, DROP, TITLE, path)
    config = vit_shape(encoder, path, num_heads)
    notes = []
    grid = 224 // config["patch_size"]
    if "pos_embed" in encoder:
        grid = grid_of(encoder["pos_embed"], config["class_token"])
        encoder["pos_embed"] = sincos_2d(config["embed_dim"], grid, gsd_ratio, config["class_token"])
        notes.append(f"pos_embed computed with Scale-MAE's GSD-scaled sin-cos formula at ratio {gsd_ratio:g}")
    return Converted(
        NAME,
        encoder,
        config,
        grid * config["patch_size"],
        dropped,
        notes,
        {"kind": "sincos-gsd", "gsd_ratio": float(gsd_ratio)},
    )
