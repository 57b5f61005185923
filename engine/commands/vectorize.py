"""`spectralx vectorize CLASSES.tif -o OUT.gpkg [--mmu 0.5ha]`: class polygons with a minimum mapping unit."""


def register(sub):
    p = sub.add_parser(
        "vectorize",
        help="class raster to polygons (GeoPackage) with a minimum mapping unit",
        description="Regions smaller than the minimum mapping unit take the class of their largest neighbour "
        "(GDAL's sieve), then the classes become polygons (GDAL's polygonize, 4-connected like the sieve) with "
        "class id, class name, pixels, area in hectares and, with --confidence, the mean confidence of their "
        "pixels. GDAL walks the raster line by line: no tile seams, memory bounded by the raster's width. The "
        "layer 'classes' carries the class colours as its QGIS style.",
    )
    p.add_argument("classes", help="class raster (e.g. the output of spectralx segment)")
    p.add_argument("-o", "--output", required=True, help="GeoPackage to write")
    add_mmu_argument(p)
    p.add_argument(
        "--confidence",
        metavar="FILE",
        help="confidence raster on the same grid (spectralx segment "
        "--confidence): adds each polygon's mean confidence",
    )
    p.add_argument(
        "--max-memory", metavar="SIZE", help="memory for GDAL's cache and the confidence pass " "(default as segment)"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=run)


def add_mmu_argument(p) -> None:
    p.add_argument(
        "--mmu",
        metavar="AREA",
        help="minimum mapping unit: 0.5ha, 5000m2, 0.01km2 or 12px (a plain "
        "number is hectares); regions smaller than it are merged into their largest neighbour; "
        "default: none (every region becomes a polygon)",
    )


def run(args):
    from ..class_raster import describe
    from ..inference.memory import parse_memory
    from ..vectorize import threshold_pixels, vectorize

    budget = parse_memory(args.max_memory)
    check_paths(args)
    if args.mmu:
        threshold_pixels(args.mmu, describe(args.classes).pixel_area_ha)  # an MMU below a pixel: before any work
    result = vectorize(args.classes, args.output, mmu=args.mmu, confidence=args.confidence, budget=budget)
    print(summary(result))


def summary(result) -> str:
    text = f"wrote {result.output}: {result.polygons} polygons"
    if result.threshold_pixels > 1:
        text += f", minimum mapping unit {result.threshold_pixels} px ({result.mmu_ha:g} ha)"
    if result.dropped:
        text += (
            f"; {result.dropped} regions below the MMU with no classified neighbour (islands in nodata, "
            f"{result.dropped_pixels} px) were left out"
        )
    return text


def check_paths(args) -> None:
    from ..fileio import check_outputs, raster_files
    from ._validate import check_rasters

    check_rasters([(args.classes, "class raster"), (args.confidence, "confidence raster")])
    inputs = raster_files(args.classes) + (raster_files(args.confidence) if args.confidence else [])
    check_outputs([(args.output, "polygons")], inputs, args.overwrite)


# --- `spectralx segment … --vector OUT.gpkg --mmu 0.5ha` -------------------------------------------


def check_segment_vector(args) -> None:
    """Before segmenting: the polygons file may be written and the MMU is at least a pixel of the raster."""
    from ..errors import SpectralXError

    vector, mmu = getattr(args, "vector", None), getattr(args, "mmu", None)
    if mmu and not vector:
        raise SpectralXError("--mmu is the minimum mapping unit of the polygons: add --vector OUT.gpkg")
    if not vector:
        return
    from ..class_raster import pixel_area_ha
    from ..fileio import check_outputs, raster_files
    from ..raster_io import open_raster
    from ..vectorize import threshold_pixels

    check_outputs([(vector, "polygons")], raster_files(args.raster) + [args.output, args.confidence], args.overwrite)
    if mmu:
        with open_raster(args.raster, "raster") as ds:
            threshold_pixels(mmu, pixel_area_ha(ds.crs, ds.transform))


def segment_then_vectorize(args, run_segment):
    """Run the segmentation (with a temporary confidence raster when none is asked for, so the polygons
    get their mean confidence), then the polygons; the temporary raster is removed either way."""
    from ..fileio import remove_quietly, temp_name
    from ..vectorize import vectorize

    temporary = None
    if args.vector and not args.confidence:
        temporary = args.confidence = temp_name(args.output, ".tif")
        args.temporary_confidence = True  # not announced as an output
    try:
        result = run_segment()
        if args.vector:
            from ..inference.memory import parse_memory

            done = vectorize(
                result.output,
                args.vector,
                mmu=args.mmu,
                confidence=args.confidence,
                budget=parse_memory(args.max_memory),
            )
            print(summary(done))
        return result
    finally:
        if temporary:
            remove_quietly(temporary, temporary + ".aux.xml")
            args.confidence, args.temporary_confidence = None, False
