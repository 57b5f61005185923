"""`spectralx quicklook CLASSES.tif -o OUT.png [--image INPUT]`: PNG of a class raster with a legend."""

from ._validate import band_number, int_range

MAX_SIDE = 20000  # px per panel: beyond this the PNG is hundreds of MB


def register(sub):
    p = sub.add_parser(
        "quicklook",
        help="PNG quicklook of a class raster with a legend",
        description="Render a class raster (colours and names from its embedded colour table "
        "and class tags, or from --classes) as a PNG with a legend, optionally beside an RGB "
        "rendering of the input raster (bands nearest 650/560/480 nm when wavelengths are known).",
    )
    p.add_argument("classes_raster", help="class raster (e.g. the output of `spectralx segment`)")
    p.add_argument("-o", "--output", required=True, help="PNG to write")
    p.add_argument("--image", help="input raster to show in RGB beside the classes")
    p.add_argument(
        "--rgb-bands", nargs=3, type=band_number, metavar=("R", "G", "B"), help="1-based bands for the RGB view"
    )
    p.add_argument("--reference", help="reference class raster (e.g. labels) to show beside the classes")
    p.add_argument("--classes", help="class table JSON [{value, name, color}] (default: from the raster)")
    p.add_argument("--title", help="title line")
    p.add_argument(
        "--max-side", type=int_range(16, MAX_SIDE), default=1000, help="largest panel side in px (default 1000)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing PNG")
    p.set_defaults(func=run)


def run(args):
    import json

    from ..errors import SpectralXError
    from ..quicklook import quicklook

    check_paths(args)
    classes = None
    if args.classes:
        try:
            with open(args.classes) as f:
                data = json.load(f)
        except (OSError, ValueError) as exc:
            raise SpectralXError(f"cannot read class table {args.classes}: {exc}") from None
        classes = data["classes"] if isinstance(data, dict) and "classes" in data else data
        if not isinstance(classes, list) or not all(
            isinstance(c, dict) and {"value", "name", "color"} <= set(c) for c in classes
        ):
            raise SpectralXError(f"class table {args.classes} must be a list of {{value, name, color}} objects")
    res = quicklook(
        args.classes_raster,
        args.output,
        image=args.image,
        rgb_bands=args.rgb_bands,
        classes=classes,
        reference=args.reference,
        title=args.title,
        max_side=args.max_side,
    )
    print(f"wrote {res['output']} ({res['size'][0]} x {res['size'][1]} px)")


def check_paths(args) -> None:
    """Inputs open; RGB bands exist; -o is none of the inputs (shared check, spectralx.fileio)."""
    from ..fileio import check_inputs, check_outputs, raster_files
    from ._validate import check_band_list, check_rasters

    if args.rgb_bands and not args.image:
        from ..errors import ArgumentError

        raise ArgumentError("--rgb-bands picks bands of --image: add --image RASTER")
    check_rasters([(args.classes_raster, "class raster"), (args.image, "image"), (args.reference, "reference")])
    check_inputs([(args.classes, "class table")])
    check_band_list(args.rgb_bands, args.image, "--rgb-bands")
    inputs = [f for p in (args.classes_raster, args.image, args.reference) if p for f in raster_files(p)]
    check_outputs([(args.output, "quicklook")], inputs + [args.classes], args.overwrite)
