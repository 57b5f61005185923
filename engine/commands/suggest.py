"""`spectralx suggest RASTER -c CHECKPOINT -o POINTS.gpkg`: where to label next (spectralx.suggest)."""

from ._validate import finite_float, float_range, int_range


def register(sub):
    p = sub.add_parser(
        "suggest",
        help="places where a new label helps the model most (a point layer)",
        description="Scores every pixel of the raster (or --bbox) by the model's uncertainty (1 - confidence) "
        "plus the disagreement between its network and its random forest, weighted by how uniform the map is "
        "around each pixel (a patch you can label, not a mixed edge), and picks N places, best first, "
        "taking the predicted classes in turn and at least --min-distance apart. Writes a GeoPackage of "
        "points with the predicted class, confidence, disagreement, why each was picked and an empty "
        "'label' field; label them (or digitize polygons there), then fine-tune again with -c CHECKPOINT.",
    )
    p.add_argument("raster", help="the raster the model maps")
    p.add_argument("-c", "--checkpoint", required=True, help="SpectralX checkpoint (.safetensors)")
    p.add_argument("-o", "--output", required=True, help="GeoPackage of points to write")
    p.add_argument("--n", type=int_range(1, 10000), default=20, help="number of places (default 20)")
    p.add_argument(
        "--min-distance",
        type=float_range(0.0),
        metavar="D",
        help="minimum distance between places, in the raster's map units (default: half the spacing "
        "of N places spread evenly over the valid pixels)",
    )
    p.add_argument("--backbone", help="backbone file (default: beside the checkpoint, then the model folder)")
    p.add_argument("--band-map", default="auto", metavar="auto|FILE.json", help="band map (as segment)")
    p.add_argument("--sensor", help="sensor preset for rasters without wavelength metadata (e.g. landsat8:B2,B3,B4)")
    p.add_argument(
        "--bbox",
        nargs=4,
        type=finite_float,
        metavar=("XMIN", "YMIN", "XMAX", "YMAX"),
        help="only this area, in the raster's CRS",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    p.add_argument("--batch-size", type=int_range(1, 1024), default=8, help="tiles per forward pass (default 8)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=run)


def run(args):
    from ..fileio import check_outputs
    from ..progress import TqdmProgress
    from ..suggest import save, suggest
    from ._validate import check_rasters, checkpoint_inputs

    check_rasters([(args.raster, "raster")])
    check_outputs(
        [(args.output, "points")], [args.raster] + checkpoint_inputs(args.checkpoint, args.backbone), args.overwrite
    )
    result = suggest(
        args.raster,
        args.checkpoint,
        n=args.n,
        min_distance=args.min_distance,
        backbone=args.backbone,
        band_map=args.band_map,
        sensor=args.sensor,
        bbox=args.bbox,
        device=args.device,
        batch_size=args.batch_size,
        progress=TqdmProgress("suggest", disable=getattr(args, "quiet", False)),
    )
    save(result, args.output)
    reasons = result.reasons()
    per = ", ".join(
        f"{result.names.get(int(v), v)} {int((result.classes == v).sum())}"
        for v in sorted(set(result.classes.tolist()))
    )
    print(
        f"wrote {args.output}: {len(result)} places ({per}; {reasons.count('network and forest disagree')} where "
        f"the network and the forest disagree), at least {result.min_distance_px:.1f} px apart"
    )
    for note in result.notes:
        print("note: " + note)
