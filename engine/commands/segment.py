"""`spectralx segment RASTER -c CHECKPOINT -o OUT.tif`: classify a raster (streaming, any size)."""
from ..outputs import CONFIDENCE_FORMATS
from ._validate import count_int, fraction, positive_int


def register(sub):
    p = sub.add_parser("segment", help="classify a raster with a checkpoint into a styled class GeoTIFF",
                       description="Sliding-window segmentation with blended overlapping tiles, streamed "
                       "in strips (memory bounded whatever the raster height). Writes OUT.tif (class values, "
                       "colour table, class names), OUT.qml (QGIS style) and optionally a confidence raster.")
    p.add_argument("raster", help="input raster (any GDAL format)")
    p.add_argument("-c", "--checkpoint", required=True, help="SpectralX checkpoint (.safetensors)")
    p.add_argument("-o", "--output", required=True, help="class raster to write (GeoTIFF)")
    p.add_argument("--backbone", help="backbone file (default: beside the checkpoint, then the model folder)")
    p.add_argument("--band-map", default="auto", metavar="auto|FILE.json",
                   help="band mapping: auto (from wavelengths) or a JSON file from `spectralx bands --json`")
    p.add_argument("--sensor", help="sensor preset for rasters without wavelength metadata (e.g. sentinel2, enmap)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--bbox", nargs=4, type=float, metavar=("XMIN", "YMIN", "XMAX", "YMAX"),
                       help="process only this box (raster CRS)")
    where.add_argument("--window", nargs=4, type=count_int, metavar=("COL", "ROW", "WIDTH", "HEIGHT"),
                       help="process only this pixel window")
    p.add_argument("--overlap", type=fraction, default=0.25, help="tile overlap fraction, 0..<1 (default 0.25)")
    p.add_argument("--batch-size", type=positive_int, default=4, help="tiles per forward pass (default 4)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (default auto)")
    p.add_argument("--precision", default="auto", choices=("auto", "fp32", "bf16", "fp16"),
                   help="autocast on GPU: auto = bf16 on CUDA (fp16 if unsupported), fp16 on MPS; CPU runs fp32")
    p.add_argument("--confidence", metavar="FILE", help="also write the max class probability raster")
    p.add_argument("--confidence-format", default="float32", choices=CONFIDENCE_FORMATS,
                   help="float32 0..1 (default) or percent (uint8 1..100)")
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args):
    from ..inference import segment
    from ..progress import TqdmProgress
    from ..fileio import explain_failure
    from ._validate import check_segment_paths
    check_segment_paths(args)
    progress = TqdmProgress("segment", disable=args.quiet)
    try:
        result = segment(args.raster, args.checkpoint, args.output, backbone=args.backbone,
                         band_map=args.band_map, sensor=args.sensor, window=args.window, bbox=args.bbox,
                         overlap=args.overlap, batch_size=args.batch_size, device=args.device,
                         confidence=args.confidence, confidence_format=args.confidence_format,
                         precision=args.precision, overwrite=args.overwrite, progress=progress)
    except Exception as exc:   # GDAL's text for a full disk or a damaged input: one line instead
        raise explain_failure(exc, reading=args.raster, writing=args.output) from None
    finally:
        progress.close()
    col, row, w, h = result.window
    print(f"wrote {result.output} ({w} x {h} px, {result.tiles} tiles, {result.seconds:.1f} s on {result.device})")
    if result.confidence:
        print(f"wrote {result.confidence}")
    if result.style:
        print(f"wrote {result.style}")
