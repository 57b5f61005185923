"""`spectralx sample CLASSES.tif -o POINTS.gpkg`: a stratified random sample of reference points."""

from ..errors import ArgumentError
from ._validate import float_range, int_range

target_se = float_range(0.0, 1.0, lo_open=True, hi_open=True)


def parse_expected(text: str):
    """'0.9' (every class), '1=0.7,2=0.6' (per class value) or both: '0.9,1=0.7' -> (default, {value: ua})."""
    default, per = None, {}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        key, _, value = part.rpartition("=")
        try:
            ua = float(value)
            if not 0.0 <= ua <= 1.0:
                raise ValueError
            if key:
                per[int(key)] = ua
            else:
                default = ua
        except ValueError:
            raise ArgumentError(
                f"--expected-ua '{part}': write an accuracy 0..1 for every class (0.9) or "
                "per class value (1=0.7,2=0.6)"
            ) from None
    return default, per


def register(sub):
    p = sub.add_parser(
        "sample",
        help="stratified random sample of reference points over a class raster",
        description="Draws reference points for an accuracy assessment: strata are the map classes (nodata "
        "excluded), the size is --n or the standard formula for a target standard error of overall accuracy "
        "(Olofsson et al. 2014, eq. 13) with the expected user's accuracies, allocated proportionally, equally "
        "or proportionally with at least K points per class. Streams the raster (any size). Writes a "
        "GeoPackage of pixel-centre points with the stratum, the map class and an empty 'reference' field to "
        "fill in QGIS; then run spectralx evaluate MAP --reference POINTS.gpkg --class-field reference --area.",
    )
    p.add_argument("classes", help="class raster (e.g. the output of spectralx segment)")
    p.add_argument("-o", "--output", required=True, help="GeoPackage of points to write")
    size = p.add_mutually_exclusive_group(required=True)
    size.add_argument("--n", type=int_range(1), help="number of points")
    size.add_argument(
        "--target-se", type=target_se, metavar="SE", help="target standard error of overall accuracy, e.g. 0.01"
    )
    p.add_argument(
        "--expected-ua",
        default="0.9",
        metavar="U|V=U,…",
        help="expected user's accuracies for --target-se: one for every class (default 0.9) or per "
        "class value, e.g. 0.9,3=0.7",
    )
    p.add_argument(
        "--allocation",
        default="proportional",
        metavar="proportional|equal|min-per-class:K",
        help="points per stratum (default proportional; min-per-class:50 gives rare classes at least 50)",
    )
    p.add_argument("--seed", type=int_range(0), help="random seed (the same seed draws the same points)")
    p.add_argument(
        "--max-memory",
        metavar="SIZE",
        help="memory for reading the raster, e.g. 256M (default: " "as segment: half the free RAM, at most 2G)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=run)


def run(args):
    from ..inference.memory import parse_memory
    from ..sampling import draw, parse_allocation, save

    parse_allocation(args.allocation)
    default, per = parse_expected(args.expected_ua)
    budget = parse_memory(args.max_memory)
    check_paths(args)
    sample = draw(
        args.classes,
        n=args.n,
        target_se=args.target_se,
        expected_ua=per,
        default_ua=0.9 if default is None else default,
        allocation=args.allocation,
        seed=args.seed,
        budget=budget,
    )
    save(sample, args.output)
    per_class = ", ".join(f"{sample.raster.name(v)} {k}" for v, k in zip(sample.values, sample.allocated))
    print(
        f"wrote {args.output}: {len(sample.rows)} points ({per_class}); fill the 'reference' field, then "
        f"spectralx evaluate {args.classes} --reference {args.output} --class-field reference --area"
    )


def check_paths(args) -> None:
    from ..fileio import check_outputs, raster_files
    from ._validate import check_rasters

    check_rasters([(args.classes, "class raster")])
    check_outputs([(args.output, "points")], raster_files(args.classes), args.overwrite)
