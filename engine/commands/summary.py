"""`spectralx summary`: parameter counts per part."""

import json

from ..config import BACKBONE_PRESETS, ModelConfig
from ..summary import format_summary, parameter_summary
from ._validate import MAX_CLASSES, int_range, tile_size

MAX_BANDS = 10000  # imaging spectrometers have a few hundred; more is a typo


def register(sub):
    p = sub.add_parser("summary", help="parameter counts of the backbone and each trainable part")
    p.add_argument("--backbone-preset", required=True, choices=list(BACKBONE_PRESETS))
    p.add_argument("--bands", type=int_range(1, MAX_BANDS), required=True, help="number of input bands C")
    p.add_argument("--classes", type=int_range(1, MAX_CLASSES), required=True, help="number of classes K")
    p.add_argument("--tile-size", type=tile_size, default=224)
    p.add_argument("--stage", choices=["finetune", "pretrain"], default="finetune")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args):
    cfg = ModelConfig.from_preset(
        args.backbone_preset, in_bands=args.bands, num_classes=args.classes, img_size=args.tile_size
    )
    s = parameter_summary(cfg, args.stage)
    print(json.dumps(s, indent=1) if args.json else format_summary(s))
