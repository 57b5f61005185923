"""`spectralx info CHECKPOINT`: print the model card (reads the header only, no tensors)."""

import json

from ..checkpoint import read_card


def register(sub):
    p = sub.add_parser("info", help="show a checkpoint's model card")
    p.add_argument("checkpoint")
    p.add_argument("--json", action="store_true", help="print the card as JSON")
    p.add_argument(
        "--check", action="store_true", help="also find the backbone, verify its sha256 and load every tensor"
    )
    p.add_argument("--backbone", help="backbone file (default: beside the checkpoint, then the model folder)")
    p.set_defaults(func=run)


def run(args):
    from ..fileio import check_inputs

    check_inputs([(args.checkpoint, "checkpoint"), (args.backbone, "backbone")])
    card = read_card(args.checkpoint)
    if args.check:
        from ..checkpoint import load_checkpoint

        load_checkpoint(args.checkpoint, backbone=args.backbone)
    if args.json:
        print(card.to_json())
        return
    print(f"SpectralX checkpoint {args.checkpoint} (format {card.format_version}, stage {card.stage})")
    if card.description:
        print(card.description)
    if card.is_forest:
        f = card.architecture.get("forest") or {}
        print(
            f"random forest: {f.get('trees', '?')} trees, {f.get('nodes', '?')} nodes, {len(card.bands)} bands -> "
            f"{len(card.classes)} classes (no network, no backbone); tile {card.tile_size} px"
        )
    else:
        cfg = card.config
        print(
            f"network: {cfg.backbone_preset}, tile {cfg.img_size} px, {cfg.in_bands} bands -> {cfg.num_classes} classes"
        )
        print(f"backbone: {card.backbone.file} (sha256 {card.backbone.sha256[:16]}…) {card.backbone.description}")
    print(f"map made by: {card.map_source}")
    if card.gsd_m:
        print(f"ground sampling distance: {card.gsd_m} m")
    print(f"normalization: {card.normalization.method}")
    print("classes:")
    for c in card.classes:
        print(f"  {c.value:>3}  {c.color}  {c.name}")
    print("bands:")
    for i, b in enumerate(card.bands, 1):
        fwhm = f" fwhm {b.fwhm_nm:g} nm" if b.fwhm_nm else ""
        print(f"  {i:>3}  {b.name:<16} {b.wavelength_nm:8.1f} nm{fwhm}")
    if card.metrics:
        print("metrics: " + json.dumps({k: v for k, v in card.metrics.items() if not isinstance(v, (list, dict))}))
    if card.stage == "finetune":
        from ..training.baseline import comparison_line

        tr = card.training or {}
        if tr.get("method") or tr.get("variant"):
            print(
                f"method: {tr.get('method', 'spectralx')}, variant {tr.get('variant', 'default')}"
                + (", test-time flip averaging" if tr.get("tta") else "")
            )
        print("validation: " + comparison_line(card.metrics))
        for w in card.metrics.get("warnings") or []:
            print("WARNING: " + w)
