"""`spectralx pretrain-backbone`: masked-autoencoder pretraining of a plain ViT on RGB chips.

Writes a project backbone file (timm-named encoder tensors + config, description and provenance in
its metadata) that `finetune --backbone` and `new_model` accept. The demo backbone
(`resources/models/demo-backbone.safetensors`) is made with it by `make demo-model`.
"""

import datetime as _dt
import os
import shlex
import sys

from ._validate import count_int, int_range, learning_rate, open_fraction, positive_int, tile_size


def register(sub):
    p = sub.add_parser(
        "pretrain-backbone",
        help="pretrain a small ViT backbone with a masked autoencoder on RGB chips",
        description="Masked-autoencoder pretraining (75%% of patches masked, encoder on visible patches, "
        "light decoder predicting normalized pixels) of a plain ViT on RGB chips; writes a "
        "backbone file with its description and provenance.",
    )
    p.add_argument("--chips", required=True, help="RGB chip file (.npz with 'chips' (N,H,W,3) uint8)")
    p.add_argument("-o", "--output", required=True, help="backbone file to write (.safetensors)")
    p.add_argument("--preset", default="vit_tiny_patch16", help="ViT preset (default vit_tiny_patch16)")
    p.add_argument("--img-size", type=tile_size, default=64, help="tile size in pixels (default 64)")
    p.add_argument("--steps", type=positive_int, default=800)
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--lr", type=learning_rate, default=1.5e-3, help="peak learning rate (warm-up, cosine decay)")
    p.add_argument("--mask-ratio", type=open_fraction, default=0.75)
    p.add_argument("--decoder-dim", type=int_range(8, 4096, multiple=4), default=128)
    p.add_argument("--decoder-depth", type=int_range(1, 32), default=2)
    p.add_argument("--seed", type=count_int, default=0)
    p.add_argument(
        "--threads",
        type=int_range(1, 1024),
        default=1,
        help="torch CPU threads, fixed for reproducibility (default 1: on a busy shared CPU, "
        "2+ threads were 12x slower here)",
    )
    p.add_argument("--val-every", type=positive_int, default=100, help="validation loss every N steps")
    p.add_argument("--data-note", default="", help="text naming the imagery (goes into the description)")
    p.add_argument(
        "--dtype",
        default="float16",
        choices=("float16", "float32"),
        help="storage precision of the weights (default float16: half the size; loaded as float32)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _describe_sources(counts):
    return "; ".join(f"{n} x {name}" for name, n in counts.items())


def run(args):
    # Long (98 lines) on purpose: the command's steps in order (chips, model, loop, save), a developer tool.
    import torch

    from .. import __version__
    from ..backbone_io import save_backbone
    from ..errors import SpectralXError
    from ..fileio import check_inputs, check_outputs
    from ..mae import load_chips, pretrain_mae
    from ..progress import TqdmProgress
    from ..safefile import sha256_file

    if not args.output.lower().endswith(".safetensors"):
        raise SpectralXError("the backbone file must end in .safetensors")
    check_inputs([(args.chips, "chip file")])
    check_outputs([(args.output, "backbone")], [args.chips], args.overwrite)
    chipset = load_chips(args.chips)
    progress = TqdmProgress("MAE pretraining", disable=args.quiet)
    try:
        result = pretrain_mae(
            chipset.chips,
            preset=args.preset,
            img_size=args.img_size,
            steps=args.steps,
            batch_size=args.batch_size,
            lr=args.lr,
            mask_ratio=args.mask_ratio,
            decoder_dim=args.decoder_dim,
            decoder_depth=args.decoder_depth,
            seed=args.seed,
            threads=args.threads,
            val_every=args.val_every,
            progress=progress,
        )
    finally:
        progress.close()
    summary = result.summary()
    n = len(chipset.chips)
    h, w = chipset.chips.shape[1:3]
    cfg = result.cfg
    what = args.data_note or _describe_sources(chipset.counts())
    description = (
        f"MAE-pretrained {args.preset} (width {cfg.embed_dim}, {cfg.depth} blocks, patch {cfg.patch_size}, "
        f"{cfg.img_size} px tiles) made by `spectralx pretrain-backbone`: masked-autoencoder training "
        f"(mask ratio {args.mask_ratio:g}) on {n} real RGB chips of {h}x{w} px ({result.n_train} for "
        f"training, {result.n_val} held out) from {what}, for {args.steps} steps of batch "
        f"{args.batch_size} (seed {args.seed}); held-out masked-patch loss {summary['val_loss_start']} -> "
        f"{summary['val_loss_end']} (1.0 = predicting each patch's mean). A small demo backbone, not a "
        f"remote-sensing foundation model (RSFM): use Scale-MAE or SatMAE++ weights for real work."
    )
    provenance = {
        "method": "masked autoencoder (He et al. 2021), plain PyTorch reimplementation in spectralx.mae",
        "command": "spectralx " + shlex.join(sys.argv[1:])
        if "pretrain-backbone" in sys.argv
        else f"spectralx pretrain-backbone --chips {args.chips} -o {args.output}",
        "data": {
            "file": os.path.basename(args.chips),
            "sha256": sha256_file(args.chips),
            "chips": n,
            "chip_size": [int(h), int(w)],
            "channels": "R,G,B uint8",
            "sources": chipset.counts(),
            "train_chips": result.n_train,
            "held_out_chips": result.n_val,
            "held_out": "every 12th chip",
            **{k: v for k, v in chipset.meta.items() if k in ("stretch", "attribution")},
        },
        "input_normalization": {
            "scale": "1/255",
            "mean": [round(v, 5) for v in result.mean],
            "std": [round(v, 5) for v in result.std],
        },
        "steps": args.steps,
        "batch_size": args.batch_size,
        "seed": args.seed,
        "threads": args.threads,
        "optimizer": f"AdamW lr {args.lr:g} (5% warm-up, cosine), betas 0.9/0.95, wd 0.05, grad clip 1.0",
        "augmentation": "random flips and 90-degree rotations",
        "mask_ratio": args.mask_ratio,
        "norm_pix_loss": True,
        "decoder": {"dim": args.decoder_dim, "depth": args.decoder_depth, "heads": 4, "kept": False},
        "position_embedding": "fixed 2-D sin-cos (MAE), resized by load_backbone for other tile sizes",
        "loss": summary,
        "train_seconds": round(result.seconds, 1),
        "stored_dtype": args.dtype,
        "device": "cpu",
        "torch": torch.__version__,
        "spectralx": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    state = {k: v.to(getattr(torch, args.dtype)) for k, v in result.state.items()}
    save_backbone(state, cfg, args.output, description, provenance)
    print(
        f"MAE pretraining: {n} chips, {args.steps} steps in {result.seconds:.0f} s; "
        f"train loss {summary['train_loss_first_steps']} -> {summary['train_loss_last_steps']}, "
        f"held-out loss {summary['val_loss_start']} -> {summary['val_loss_end']}"
    )
    print(f"wrote {args.output} ({os.path.getsize(args.output) / 1e6:.1f} MB)")
