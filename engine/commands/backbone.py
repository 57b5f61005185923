"""`spectralx backbone import|info`: convert a foundation-model release once into a project backbone
file, and describe any backbone file."""

import json

FAMILY_CHOICES = ("auto", "scale-mae", "satmae++", "dinov3", "timm", "mae")


def register(sub):
    p = sub.add_parser(
        "backbone",
        help="import a foundation-model release (Scale-MAE, SatMAE++, DINOv3, "
        "timm, MAE) or describe a backbone file",
        description="Backbones are the frozen foundation models SpectralX adapts. `import` "
        "reads a release exactly as published (safely: nothing in it is executed), keeps the "
        "encoder, and writes a SpectralX backbone file that checkpoints reference by sha256.",
    )
    cmds = p.add_subparsers(dest="backbone_command", metavar="ACTION", parser_class=type(p))
    cmds.required = True

    imp = cmds.add_parser("import", help="convert a release into a backbone file (.safetensors)")
    imp.add_argument("source", metavar="SRC", help="release file (.pth/.pt/.ckpt/.bin or .safetensors)")
    imp.add_argument("-o", "--output", required=True, metavar="DST", help="backbone file to write (.safetensors)")
    imp.add_argument(
        "--family",
        default="auto",
        choices=FAMILY_CHOICES,
        help="model family (default auto: detected from the key names)",
    )
    imp.add_argument("--preset", help="backbone preset to check the shapes against (default: from the shapes)")
    imp.add_argument(
        "--gsd-ratio",
        type=_gsd_ratio,
        default=1.0,
        help="Scale-MAE only: ground-sample-distance ratio its position embedding is computed "
        "for, 0.001 to 1000 (default 1.0, Scale-MAE's evaluation default)",
    )
    imp.add_argument("--license", dest="license_note", help="license note to record (default: the family's)")
    imp.add_argument("--overwrite", action="store_true", help="replace DST if it exists")
    imp.set_defaults(func=run_import)

    info = cmds.add_parser("info", help="family, preset, shapes, parameters, sha256 and source of a backbone file")
    info.add_argument("file", metavar="FILE")
    info.add_argument("--json", action="store_true", help="print as JSON")
    info.set_defaults(func=run_info)


def _gsd_ratio(text):
    from ..backbones.scale_mae import MAX_GSD_RATIO, MIN_GSD_RATIO
    from ._validate import float_range

    return float_range(MIN_GSD_RATIO, MAX_GSD_RATIO)(text)


def run_import(args):
    from ..backbone_io import import_backbone
    from ..backbones import FAMILIES
    from ..errors import OutputError
    from ..fileio import check_inputs, check_outputs

    check_inputs([(args.source, "backbone release")])
    if not args.output.lower().endswith(".safetensors"):
        raise OutputError(f"backbone output {args.output} must end in .safetensors")
    check_outputs([(args.output, "backbone")], inputs=[args.source], overwrite=args.overwrite)
    res = import_backbone(
        args.source,
        args.output,
        family=args.family,
        preset=args.preset,
        gsd_ratio=args.gsd_ratio,
        license_note=args.license_note,
    )
    title = FAMILIES[res.family].TITLE
    how = "detected from its key names" if res.detected else "as given"
    c = res.config
    print(f"family: {title} ({res.family}, {how})")
    print(
        f"wrote {res.path}: {res.preset} (width {c.embed_dim}, {c.depth} blocks, {c.num_heads} heads, "
        f"patch {c.patch_size}), {res.metadata['parameters']:,} parameters"
    )
    if res.report.dropped:
        print(
            f"dropped {len(res.report.dropped)} non-encoder keys: {', '.join(res.report.dropped[:5])}"
            + (" …" if len(res.report.dropped) > 5 else "")
        )
    for note in res.report.notes + [f"patch embedding replaced by HyperT: {k}" for k in res.report.replaced]:
        print(f"note: {note}")
    print(f"license: {res.metadata['license']}")


def run_info(args):
    from ..backbone_io import backbone_info
    from ..fileio import check_inputs

    check_inputs([(args.file, "backbone")])
    info = backbone_info(args.file)
    if args.json:
        print(json.dumps(info, indent=2))
        return
    kind = "SpectralX backbone" if info["kind"] == "spectralx-backbone" else "release file (not imported)"
    print(f"{args.file}: {kind}")
    if info.get("description"):
        print(info["description"])
    print(f"family: {info['family']}")
    print(f"preset: {info['preset']}")
    print(
        f"shape: width {info['embed_dim']}, depth {info['depth']}, {info['num_heads']} heads, "
        f"patch {info['patch_size']}"
    )
    print(f"parameters: {info['parameters']:,}")
    print(f"sha256: {info['sha256']}")
    src = info.get("source") or {}
    if src:
        print(f"source: {src.get('file', '?')} (sha256 {str(src.get('sha256', '?'))[:16]}…)")
    if info.get("license"):
        print(f"license: {info['license']}")
    if "tensors_verified" in info:
        print(
            "tensors: "
            + (
                "match the recorded digest"
                if info["tensors_verified"]
                else "DO NOT match the recorded digest (the file was changed after import)"
            )
        )
