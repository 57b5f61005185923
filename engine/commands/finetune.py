"""`spectralx finetune`: stage-2 training from polygons, points or label rasters."""

import argparse
import os
import shlex
import sys

from ..config import DEFAULT_SPECTRAL_SKIP
from ..training.options import CLASS_WEIGHTINGS, FUSIONS, METHODS, VARIANTS, FinetuneOptions
from ._validate import count_int, fraction, learning_rate, positive_int, tile_size

D = FinetuneOptions()  # the defaults, shown in --help


def register(sub):
    # Long (130 lines) on purpose: one add_argument per option with its help: a flat list, the CLI's
    # documentation.
    p = sub.add_parser(
        "finetune",
        help="fine-tune SpectralX on labelled polygons/points/label rasters (stage 2)",
        description="Fine-tune SpectralX (backbone frozen) from hand-labelled data. Give --image and "
        "--labels in pairs (labels: any OGR vector with a class field, or a label raster on the image's "
        "grid, 0 = unlabelled). Validation holds out whole polygons / label regions; the best "
        "checkpoint (by validation mIoU) is written with its metrics.",
    )
    p.add_argument(
        "--image", action="append", required=True, metavar="RASTER", help="training image (repeat for several images)"
    )
    p.add_argument(
        "--labels",
        action="append",
        required=True,
        metavar="FILE",
        help="labels for the preceding --image: vector (gpkg, shp, geojson, …) or label raster",
    )
    p.add_argument("--class-field", help="vector field holding the class (text or integer)")
    p.add_argument("--classes", help="class table JSON: [{\"value\":1,\"name\":\"water\",\"color\":\"#1f78b4\"}, …]")
    p.add_argument("-c", "--checkpoint", help="start from this SpectralX checkpoint (e.g. a pretrain output)")
    p.add_argument("--backbone", help="frozen backbone file (new model; or the -c checkpoint's backbone)")
    p.add_argument(
        "--backbone-preset",
        help="backbone preset when the file does not say "
        "(vit_tiny_patch16, vit_small_patch16, vit_base_patch16, vit_large_patch16)",
    )
    p.add_argument("--sensor", help="sensor preset for band wavelengths (when the image has no metadata)")
    p.add_argument("--band-map", default="auto", help="band mapping: auto or a JSON file (with -c)")
    p.add_argument("--tile-size", type=tile_size, help="model tile size in px (new model only; multiple of 32)")
    p.add_argument(
        "--method",
        choices=METHODS,
        default=D.method,
        help="spectralx (default: HyperT + AoMoA + Are-adapter on the frozen backbone), or a "
        "PEFT baseline on the same HyperT and head: lora (rank 16 on the adapter blocks' "
        "qkv/proj/fc1/fc2 + LayerNorms), slr (LoRA + scaling vectors), full (backbone unfrozen), "
        "or forest: the per-pixel random forest alone, written as a checkpoint that segments "
        "like any other (no network, no backbone needed)",
    )
    p.add_argument(
        "--forest-context",
        type=int,
        choices=(0, 3, 5, 7),
        default=D.forest_context,
        help="the deployed forest (--fuse forest, --method forest) also sees the mean spectrum of each "
        f"pixel's N x N neighbourhood; 0 = per-pixel spectra alone (default {D.forest_context}; the "
        "card's random-forest baseline is always per-pixel)",
    )
    p.add_argument(
        "--fuse",
        choices=FUSIONS,
        default=D.fuse,
        help="forest (default): pool the network's class probabilities with a random forest's on "
        "the same pixels, the forest's weight (0 = network alone .. 1 = forest alone) chosen on "
        "the validation pixels; none: the network alone",
    )
    p.add_argument(
        "--variant",
        choices=VARIANTS,
        default=D.variant,
        help="default (this project's measured-best network and recipe) or paper (the "
        "reference code's network, lr 1e-4; docs/deviations.md lists every difference)",
    )
    p.add_argument("--steps", type=positive_int, help=f"training steps (default {D.steps})")
    p.add_argument("--batch-size", type=positive_int, help=f"chips per step (default {D.batch_size})")
    p.add_argument("--lr", type=learning_rate, help="learning rate (default 1e-3; 1e-4 for --variant paper)")
    p.add_argument("--ema", type=fraction, help=f"weight averaging decay, 0 = off (default {D.ema:g})")
    p.add_argument(
        "--backbone-norms",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="train the backbone's LayerNorms, stored in the checkpoint (default: on)",
    )
    p.add_argument(
        "--class-weighting", choices=CLASS_WEIGHTINGS, help=f"loss class weights (default {D.class_weighting})"
    )
    p.add_argument(
        "--tta",
        action=argparse.BooleanOptionalAction,
        default=None,
        help=f"flip averaging when the model segments (stored in the card; default {'on' if D.tta else 'off'})",
    )
    p.add_argument(
        "--no-calibrate",
        dest="calibrate",
        action="store_false",
        default=True,
        help="no logit adjustment for rare classes (by default tau is chosen on the validation pixels)",
    )
    p.add_argument(
        "--no-baseline",
        dest="baseline",
        action="store_false",
        default=True,
        help="skip the random-forest baseline on the same pixels (shown beside the model's score)",
    )
    p.add_argument(
        "--val-fraction",
        type=fraction,
        default=D.val_fraction,
        help="share of each class's polygons/regions held out for validation (default 0.2)",
    )
    p.add_argument(
        "--val-image",
        action="append",
        default=[],
        metavar="RASTER",
        help="explicit validation image (with --val-labels; replaces --val-fraction)",
    )
    p.add_argument("--val-labels", action="append", default=[], metavar="FILE")
    p.add_argument("--eval-every", type=positive_int, help="validate every N steps (default steps/10)")
    p.add_argument(
        "--patience", type=positive_int, help=f"early stop after N validations without gain (default {D.patience})"
    )
    p.add_argument("--device", default=D.device, help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--seed", type=count_int, default=D.seed)
    p.add_argument("-o", "--output", required=True, help="new checkpoint (.safetensors)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--description", help="model card description (default: a generated summary)")
    p.add_argument(
        "--spectral-skip",
        type=count_int,
        metavar="WIDTH",
        help="width of the head's full-resolution spectral skip for a new model "
        f"(default {DEFAULT_SPECTRAL_SKIP}, 0 with --variant paper: the paper's 1/4-resolution UPerNet output)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args):
    # Long (81 lines) on purpose: maps every flag onto FinetuneOptions and prints the card: a flat list.
    from ..progress import TqdmProgress
    from ..training import finetune

    if len(args.image) != len(args.labels):
        from ..errors import LabelError

        raise LabelError(f"give --labels once per --image ({len(args.image)} images, {len(args.labels)} labels)")
    if not args.checkpoint and not args.backbone and args.method != "forest":
        from ..errors import CheckpointError

        raise CheckpointError("give a starting point: -c CHECKPOINT or --backbone FILE")
    check_paths(args)
    if args.method == "forest":
        args.backbone = None  # a forest needs none: never import or reference one
    if args.backbone and not args.checkpoint:  # a release file (Scale-MAE, DINOv3, …): import it once
        from ..backbone_io import ensure_project_backbone

        args.backbone = ensure_project_backbone(
            args.backbone, args.backbone_preset, log=lambda note: print(f"spectralx: {note}", file=sys.stderr)
        )
    bar = TqdmProgress("finetune", disable=args.quiet)
    try:
        res = finetune(
            args.image,
            args.labels,
            args.output,
            class_field=args.class_field,
            classes=args.classes,
            checkpoint=args.checkpoint,
            backbone=args.backbone,
            backbone_preset=args.backbone_preset,
            tile_size=args.tile_size,
            steps=args.steps,
            batch_size=args.batch_size,
            val_fraction=args.val_fraction,
            lr=args.lr,
            device=args.device,
            seed=args.seed,
            method=args.method,
            variant=args.variant,
            ema=args.ema,
            backbone_norms=args.backbone_norms,
            class_weighting=args.class_weighting,
            tta=args.tta,
            baseline=args.baseline,
            calibrate=args.calibrate,
            fuse=args.fuse,
            forest_context=args.forest_context,
            progress=bar,
            sensor=args.sensor,
            band_map=args.band_map,
            val_images=args.val_image,
            val_labels=args.val_labels,
            eval_every=args.eval_every,
            patience=args.patience,
            description=args.description,
            architecture=None if args.spectral_skip is None else {"spectral_skip": args.spectral_skip},
            command="spectralx " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        )
    finally:
        bar.close()
    m = res.metrics
    rf = (m.get("baselines") or {}).get("random_forest") or {}
    if "val_miou" in m:
        step = f"best step {m['best_step']}, " if m.get("best_step") is not None else ""
        print(
            f"wrote {res.checkpoint}: validation mIoU {m['val_miou']:.3f}, OA {m['val_oa']:.3f} "
            f"({step}{m['validation']})"
        )
        print(res.comparison)
        for name, iou in m["per_class_iou"].items():
            forest = rf.get("per_class_iou", {}).get(name)
            print(f"  {name:<20} IoU {iou:.3f}" + (f"   random forest {forest:.3f}" if forest is not None else ""))
    else:
        print(f"wrote {res.checkpoint}")
        print(res.comparison)
    if res.card is not None:
        print(f"map: {res.card.map_source}")
    for w in m.get("warnings") or []:
        print(f"WARNING: {w}")


def check_paths(args) -> None:
    """Inputs exist and are files; the output is none of them (shared check, spectralx.fileio)."""
    from ..fileio import check_inputs, check_outputs, raster_files, vector_files
    from ._validate import check_rasters, checkpoint_inputs

    images = list(args.image) + list(args.val_image)
    labels = list(args.labels) + list(args.val_labels)
    band_map = args.band_map if args.band_map not in (None, "auto") else None
    check_inputs(
        [
            (args.checkpoint, "checkpoint"),
            (args.backbone, "backbone"),
            (args.classes, "class table"),
            (band_map, "band map"),
        ]
    )
    check_inputs([(lab, "labels") for lab in labels], folders_ok=True)  # OGR reads some folders (.gdb)
    check_rasters([(img, "image") for img in images], wavelengths=True, sensor=args.sensor, band_map=band_map)
    from ..training.labels import is_raster

    check_rasters([(lab, "label raster") for lab in labels if os.path.isfile(lab) and is_raster(lab)])
    inputs = [f for img in images for f in raster_files(img)] + [f for lab in labels for f in vector_files(lab)]
    inputs += checkpoint_inputs(args.checkpoint, args.backbone) + [args.classes, band_map]
    check_outputs([(args.output, "checkpoint")], inputs, args.overwrite)
