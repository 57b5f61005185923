"""`spectralx quicklook CLASSES.tif -o OUT.png [--image INPUT]`: PNG of a class raster with a legend."""


def register(sub):
    p = sub.add_parser("quicklook", help="PNG quicklook of a class raster with a legend",
                       description="Render a class raster (colours and names from its embedded colour table "
                       "and class tags, or from --classes) as a PNG with a legend, optionally beside an RGB "
                       "rendering of the input raster (bands nearest 650/560/480 nm when wavelengths are known).")
    p.add_argument("classes_raster", help="class raster (e.g. the output of `spectralx segment`)")
    p.add_argument("-o", "--output", required=True, help="PNG to write")
    p.add_argument("--image", help="input raster to show in RGB beside the classes")
    p.add_argument("--rgb-bands", nargs=3, type=int, metavar=("R", "G", "B"), help="1-based bands for the RGB view")
    p.add_argument("--reference", help="reference class raster (e.g. labels) to show beside the classes")
    p.add_argument("--classes", help="class table JSON [{value, name, color}] (default: from the raster)")
    p.add_argument("--title", help="title line")
    p.add_argument("--max-side", type=int, default=1000, help="largest panel side in px (default 1000)")
    p.set_defaults(func=run)


def run(args):
    import json

    from ..errors import SpectralXError
    from ..quicklook import quicklook
    classes = None
    if args.classes:
        try:
            with open(args.classes) as f:
                data = json.load(f)
        except (OSError, ValueError) as exc:
            raise SpectralXError(f"cannot read class table {args.classes}: {exc}") from None
        classes = data["classes"] if isinstance(data, dict) and "classes" in data else data
    res = quicklook(args.classes_raster, args.output, image=args.image, rgb_bands=args.rgb_bands,
                    classes=classes, reference=args.reference, title=args.title, max_side=args.max_side)
    print(f"wrote {res['output']} ({res['size'][0]} x {res['size'][1]} px)")
