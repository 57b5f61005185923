"""`spectralx pretrain`: stage-1 masked reconstruction on unlabelled rasters of the target sensor."""

import shlex
import sys

from ..contract import defaults as D
from ._validate import count_int, learning_rate, open_fraction, positive_int, tile_size


def register(sub):
    p = sub.add_parser(
        "pretrain",
        help="stage-1 masked reconstruction on unlabelled rasters (start for finetune -c)",
        description="Train HyperT and the adapters (backbone frozen) to reconstruct 75 %% of masked "
        "16x16 patches of unlabelled rasters of the target sensor. The output checkpoint carries the "
        "bands and normalization statistics; `spectralx finetune -c` starts from it.",
    )
    p.add_argument("images", nargs="+", metavar="RASTER", help="unlabelled rasters (one sensor)")
    p.add_argument("-c", "--checkpoint", help="continue from this SpectralX checkpoint")
    p.add_argument("--backbone", help="frozen backbone file (new model; or the -c checkpoint's backbone)")
    p.add_argument("--backbone-preset", help="backbone preset when the file does not say")
    p.add_argument("--sensor", help="sensor preset for band wavelengths (when the image has no metadata)")
    p.add_argument("--band-map", default="auto", help="band mapping: auto or a JSON file (with -c)")
    p.add_argument("--tile-size", type=tile_size, help="model tile size in px (new model only; multiple of 32)")
    p.add_argument("--steps", type=positive_int, default=D.PRETRAIN_STEPS)
    p.add_argument("--batch-size", type=positive_int, default=D.PRETRAIN_BATCH_SIZE)
    p.add_argument("--mask-ratio", type=open_fraction, default=D.PRETRAIN_MASK_RATIO)
    p.add_argument("--lr", type=learning_rate, default=D.PRETRAIN_LR)
    p.add_argument("--device", default=D.DEVICE)
    p.add_argument("--seed", type=count_int, default=D.SEED)
    p.add_argument("-o", "--output", required=True, help="new checkpoint (.safetensors)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--description", help="model card description (default: generated from the run)")
    p.add_argument(
        "--variant",
        choices=("default", "paper"),
        default="default",
        help="network of a new model: default, or paper (the reference code's; its stage 1 hides "
        "75 %% of the tokens after HyperT instead of masking pixels)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args):
    from ..progress import TqdmProgress
    from ..training import PretrainOptions, pretrain

    check_paths(args)
    if args.backbone and not args.checkpoint:  # a release file (Scale-MAE, DINOv3, …): import it once
        from ..backbone_io import ensure_project_backbone

        args.backbone = ensure_project_backbone(
            args.backbone, args.backbone_preset, log=lambda note: print(f"spectralx: {note}", file=sys.stderr)
        )
    bar = TqdmProgress("pretrain", disable=args.quiet)
    try:
        options = PretrainOptions.build(
            steps=args.steps,
            batch_size=args.batch_size,
            mask_ratio=args.mask_ratio,
            lr=args.lr,
            device=args.device,
            seed=args.seed,
            variant=args.variant,
        )
        res = pretrain(
            args.images,
            args.output,
            options=options,
            checkpoint=args.checkpoint,
            backbone=args.backbone,
            backbone_preset=args.backbone_preset,
            tile_size=args.tile_size,
            progress=bar,
            sensor=args.sensor,
            band_map=args.band_map,
            description=args.description,
            command="spectralx " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        )
    finally:
        bar.close()
    m = res.metrics
    print(f"wrote {res.checkpoint}: masked MSE {m['masked_mse_first']:.4f} -> {m['masked_mse_final']:.4f}")


def check_paths(args) -> None:
    """Inputs exist and are files; the output is none of them (shared check, spectralx.fileio)."""
    from ..fileio import check_inputs, check_outputs, raster_files
    from ._validate import check_rasters, checkpoint_inputs

    band_map = args.band_map if args.band_map not in (None, "auto") else None
    check_inputs([(args.checkpoint, "checkpoint"), (args.backbone, "backbone"), (band_map, "band map")])
    check_rasters([(img, "image") for img in args.images], wavelengths=True, sensor=args.sensor, band_map=band_map)
    inputs = [f for img in args.images for f in raster_files(img)]
    inputs += checkpoint_inputs(args.checkpoint, args.backbone) + [band_map]
    check_outputs([(args.output, "checkpoint")], inputs, args.overwrite)
