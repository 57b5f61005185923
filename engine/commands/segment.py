"""`spectralx segment RASTER -c CHECKPOINT -o OUT.tif`: classify a raster (streaming, any size);
`spectralx segment A.tif B.tif … -c CHECKPOINT --output-dir DIR`: many scenes; `--dask`: on a cluster."""

import os

from .. import defaults
from ..outputs import CONFIDENCE_FORMATS
from ._validate import count_int, finite_float, fraction, positive_int


def register(sub):
    # Long (121 lines) on purpose: one add_argument per option with its help: a flat list, the CLI's
    # documentation.
    p = sub.add_parser(
        "segment",
        help="classify a raster with a checkpoint into a styled class GeoTIFF",
        description="Sliding-window segmentation with blended overlapping tiles. The raster "
        "is processed in blocks (tiles that straddle a block seam run in both blocks, so the "
        "blending is exact) and read in chunks of a few tiles, both sized by a memory budget "
        "(--max-memory): memory stays bounded whatever the raster's width, height and band "
        "count; --plan shows the plan. Writes OUT.tif (class values, colour table, class names), "
        "OUT.qml (QGIS style) and optionally a confidence raster. Several rasters go to "
        "--output-dir as NAME_classes.tif + NAME_confidence.tif each; --dask runs the blocks "
        "(or scenes) on a Dask cluster with the same result (docs/scale-out.md).",
    )
    p.add_argument("raster", nargs="+", help="input raster(s) (any GDAL format, /vsi paths and URLs too)")
    p.add_argument("-c", "--checkpoint", required=True, help="SpectralX checkpoint (.safetensors)")
    p.add_argument("-o", "--output", help="class raster to write (GeoTIFF); one input raster")
    p.add_argument(
        "--output-dir",
        metavar="DIR",
        help="folder for many scenes: NAME_classes.tif (+ .qml) and "
        "NAME_confidence.tif per input; a failed scene is reported and the others are written",
    )
    p.add_argument("--backbone", help="backbone file (default: beside the checkpoint, then the model folder)")
    p.add_argument(
        "--band-map",
        default="auto",
        metavar="auto|FILE.json",
        help="band mapping: auto (from wavelengths) or a JSON file from `spectralx bands --json`",
    )
    p.add_argument("--sensor", help="sensor preset for rasters without wavelength metadata (e.g. sentinel2, enmap)")
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--bbox",
        nargs=4,
        type=finite_float,
        metavar=("XMIN", "YMIN", "XMAX", "YMAX"),
        help="process only this box (raster CRS)",
    )
    where.add_argument(
        "--window",
        nargs=4,
        type=count_int,
        metavar=("COL", "ROW", "WIDTH", "HEIGHT"),
        help="process only this pixel window",
    )
    p.add_argument(
        "--overlap",
        type=fraction,
        default=defaults.OVERLAP,
        help=f"tile overlap fraction, 0..<1 (default {defaults.OVERLAP})",
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=defaults.BATCH_SIZE,
        help=f"tiles per forward pass (default {defaults.BATCH_SIZE})",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    from ..devices import PRECISIONS

    p.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="auto = bf16 on CUDA (fp16 if unsupported), fp16 on MPS; on the CPU int8 for ViT-B "
        "and larger backbones when it agreed with fp32 and ran faster on a test tile (checked "
        "once per run), fp32 otherwise. int8: the frozen backbone's linears quantized (CPU only; "
        "the model card's accuracy was measured in float). bf16 on a CPU without native bf16 "
        "is slow (docs/dev/cpu-speed.md)",
    )
    p.add_argument("--confidence", metavar="FILE", help="also write the max class probability raster")
    p.add_argument(
        "--confidence-format",
        default="float32",
        choices=CONFIDENCE_FORMATS,
        help="float32 0..1 (default) or percent (uint8 1..100)",
    )
    p.add_argument(
        "--vector",
        metavar="OUT.gpkg",
        help="also write the classes as polygons (GeoPackage, styled; "
        "see spectralx vectorize), with each polygon's mean confidence",
    )
    from .vectorize import add_mmu_argument

    add_mmu_argument(p)
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    scale = p.add_argument_group("memory and scale-out")
    scale.add_argument(
        "--max-memory",
        metavar="SIZE",
        help="working-memory budget that sizes blocks, reads and "
        "read-ahead, e.g. 2G or 800M (default: half the free RAM, at most 2G; the model itself "
        "comes on top)",
    )
    scale.add_argument(
        "--block-size",
        type=int,
        metavar="PX",
        help="force square blocks of PX pixels (a multiple "
        "of 256; default: whole-height blocks as wide as the budget allows, usually one)",
    )
    scale.add_argument(
        "--reader-threads",
        type=positive_int,
        default=None,
        metavar="N",
        help="threads that read and normalize the raster in turn (default 1; as many as "
        "--max-memory leaves room for): more can keep a GPU busy",
    )
    scale.add_argument("--plan", action="store_true", help="print the plan (blocks, tiles, budget) and exit")
    scale.add_argument(
        "--dask",
        metavar="ADDRESS",
        help="run on Dask distributed: local[:N] starts N worker "
        "processes on this machine (loopback only), tcp://HOST:PORT uses a running scheduler; "
        "workers load the checkpoint once and read their blocks themselves; needs "
        "pip install 'spectralx-qgis[dask]'",
    )
    p.set_defaults(func=run)


def run(args):
    if args.output_dir or len(args.raster) > 1:
        return run_scenes(args)
    if not args.output and not args.plan:
        from ..errors import SpectralXError

        raise SpectralXError("give the class raster to write (-o OUT.tif), or --output-dir DIR")
    args.raster = args.raster[0]
    if args.plan:
        return show_plan(args)
    from ._validate import check_segment_paths
    from .vectorize import check_segment_vector, segment_then_vectorize

    check_segment_paths(args)
    check_segment_vector(args)  # --vector OUT.gpkg [--mmu AREA]: refused before any work
    segment_then_vectorize(args, lambda: _segment_one(args))


def _segment_one(args):
    from ..fileio import explain_failure
    from ..inference import segment
    from ..progress import TqdmProgress

    progress = TqdmProgress("segment", disable=args.quiet)
    try:
        result = segment(
            args.raster,
            args.checkpoint,
            args.output,
            backbone=args.backbone,
            band_map=args.band_map,
            sensor=args.sensor,
            window=args.window,
            bbox=args.bbox,
            overlap=args.overlap,
            batch_size=args.batch_size,
            device=args.device,
            confidence=args.confidence,
            confidence_format=args.confidence_format,
            precision=args.precision,
            overwrite=args.overwrite,
            progress=progress,
            max_memory=args.max_memory,
            block_size=args.block_size,
            dask=args.dask,
            readers=args.reader_threads,
        )
    except Exception as exc:  # GDAL's text for a full disk or a damaged input: one line instead
        raise explain_failure(exc, reading=args.raster, writing=args.output) from None
    finally:
        progress.close()
    col, row, w, h = result.window
    print(f"wrote {result.output} ({w} x {h} px, {result.tiles} tiles, {result.seconds:.1f} s on {result.device})")
    if result.confidence and not getattr(args, "temporary_confidence", False):
        print(f"wrote {result.confidence}")
    if result.style:
        print(f"wrote {result.style}")
    return result


def _options(args) -> dict:
    return dict(
        backbone=args.backbone,
        band_map=args.band_map,
        sensor=args.sensor,
        window=args.window,
        bbox=args.bbox,
        overlap=args.overlap,
        batch_size=args.batch_size,
        device=args.device,
        confidence_format=args.confidence_format,
        precision=args.precision,
        max_memory=args.max_memory,
        block_size=args.block_size,
        readers=args.reader_threads,
    )


def _workers(args) -> int:
    if not args.dask:
        return 0
    from ..inference.distributed import planned_workers

    return planned_workers(args.dask)


def show_plan(args) -> int:
    from ..inference.api import plan_segment

    print(plan_segment(args.raster, args.checkpoint, workers=_workers(args), **_options(args)).describe())
    return 0


def run_scenes(args) -> int:
    """Many scenes into --output-dir; a summary table; exit status 1 if any scene failed."""
    from ..errors import SpectralXError
    from ..inference.scenes import segment_scenes, summary_table
    from ..progress import TqdmProgress

    if not args.output_dir or args.output or args.confidence or args.vector:
        raise SpectralXError(
            "several rasters go to --output-dir DIR (each gets NAME_classes.tif and "
            "NAME_confidence.tif); -o, --confidence and --vector name the files of one raster "
            "(spectralx vectorize makes polygons of each class raster)"
        )
    if args.plan:
        from ..inference.api import plan_segment

        for raster in args.raster:
            print(f"{raster}:")
            print(plan_segment(raster, args.checkpoint, workers=1 if args.dask else 0, **_options(args)).describe())
        return 0
    bars = []

    def progress_for(raster: str):
        bars.append(TqdmProgress(os.path.basename(raster), disable=args.quiet))
        return bars[-1]

    progress = TqdmProgress("segment", disable=args.quiet)
    try:
        outcomes = segment_scenes(
            args.raster,
            args.checkpoint,
            args.output_dir,
            dask=args.dask,
            progress=progress,
            progress_for=progress_for,
            overwrite=args.overwrite,
            **_options(args),
        )
    finally:
        for bar in [progress] + bars:
            bar.close()
    print(summary_table(outcomes))
    return 0 if all(o.error is None for o in outcomes) else 1
