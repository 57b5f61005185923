"""`spectralx bands RASTER [-c CHECKPOINT]`: the raster's detected bands, or its mapping onto a checkpoint."""

import json
import os

from ..errors import RasterError
from ._validate import positive_float


def register(sub):
    from ..bands import STRATEGIES, list_sensors

    p = sub.add_parser(
        "bands",
        help="show a raster's band wavelengths, or how they map onto a checkpoint",
        description="Without -c: each band's wavelength, FWHM and where it came from. With -c: how "
        "the raster's bands map onto the checkpoint's input bands, with per-band quality.",
    )
    p.add_argument("raster")
    p.add_argument("-c", "--checkpoint", help="checkpoint whose input bands to map onto")
    p.add_argument(
        "--sensor",
        help="sensor preset, overrides file metadata: "
        + ", ".join(k for k, _ in list_sensors())
        + "; name the raster's bands in file order with e.g. landsat8:B2,B3,B4",
    )
    p.add_argument("--strategy", choices=STRATEGIES, default="auto", help="how to map bands (default: auto)")
    p.add_argument("--band-map", help="a band-map JSON to check against the raster and checkpoint instead")
    p.add_argument(
        "--tolerance",
        type=positive_float,
        metavar="NM",
        help="nearest-band tolerance in nm (default: max(0.5*FWHM, 15))",
    )
    p.add_argument(
        "--allow-fill",
        action="store_true",
        help="fill bands that cannot be mapped with the normalization mean instead of failing",
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("-o", "--output", metavar="MAPPING.json", help="write the band map (needs -c)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing -o file")
    p.set_defaults(func=run)


def _nm(v):
    return f"{v:8.1f}" if v is not None else "       ?"


def _print_bands(bands):
    print(f"{'band':>4}  {'name':<32} {'nm':>8} {'fwhm':>8}  source")
    for b in bands:
        flag = f"  [{b.note}]" if b.bad or b.note else ""
        print(f"{b.index:>4}  {b.name[:32]:<32} {_nm(b.wavelength_nm)} {_nm(b.fwhm_nm)}  {b.source}{flag}")
    known = [b for b in bands if b.wavelength_nm is not None]
    print(f"{len(bands)} bands, {len(known)} with a wavelength, {sum(b.bad for b in bands)} bad")
    if not known:
        from ..bands.detect import describe_unknown

        print("no wavelengths found: " + describe_unknown(bands))


def _print_mapping(mapping):
    print(f"{'#':>3}  {'checkpoint band':<16} {'nm':>8}  {'strategy':<11} {'quality':>7}  sources")
    for k, r in enumerate(mapping.rows, 1):
        srcs = r.get("sources", [])
        if len(srcs) <= 3:
            text = ", ".join(
                f"{s['index']}"
                + (f"×{s['weight']:.2f}" if len(srcs) > 1 else "")
                + (f" ({s['wavelength_nm']:.1f} nm)" if s.get("wavelength_nm") is not None else "")
                for s in srcs
            )
        else:
            text = f"{len(srcs)} bands {srcs[0]['index']}–{srcs[-1]['index']}"
        q = r.get("quality")
        print(
            f"{k:>3}  {str(r.get('target'))[:16]:<16} {_nm(r.get('target_wavelength_nm'))}  "
            f"{str(r.get('strategy', '?')):<11} {'?' if q is None else format(q, '.2f'):>7}  {text}  — {r.get('note', '')}"
        )
    print(
        f"reads {len(mapping.source_indexes)} raster bands; lowest quality {mapping.quality:.2f}"
        + (f"; {sum(mapping.fill)} filled" if any(mapping.fill) else "")
    )
    for w in mapping.warnings:
        print(f"warning: {w}")


def run(args):
    from ..bands import detect_bands, resolve_band_map

    if args.output and not args.checkpoint:
        raise RasterError("-o writes a band map, which needs a checkpoint: add -c CHECKPOINT")
    check_paths(args)
    if not args.checkpoint:
        bands = detect_bands(args.raster, sensor=args.sensor)
        if args.json:
            print(json.dumps({"raster": args.raster, "bands": [b.to_dict() for b in bands]}, indent=1))
        else:
            _print_bands(bands)
        return 0
    mapping = resolve_band_map(
        args.raster,
        args.checkpoint,
        band_map=args.band_map or args.strategy,
        sensor=args.sensor,
        tolerance_nm=args.tolerance,
        allow_fill=args.allow_fill,
    )
    if args.output:
        from ..fileio import write_text

        write_text(args.output, mapping.to_json())
    if args.json:
        print(mapping.to_json())
    else:
        _print_mapping(mapping)
        if args.output:
            print(f"band map written to {args.output}")
    return 0


def check_paths(args) -> None:
    """The raster opens and is whole; -o is none of the inputs (shared check, spectralx.fileio)."""
    from ..fileio import check_inputs, check_outputs, raster_files
    from ._validate import check_rasters, checkpoint_inputs

    band_map = args.band_map if args.band_map and os.path.isfile(args.band_map) else None
    check_inputs([(args.checkpoint, "checkpoint"), (band_map, "band map")])
    check_rasters(
        [(args.raster, "raster")],
        wavelengths=bool(args.checkpoint) and args.strategy != "index",
        sensor=args.sensor,
        band_map=band_map,
    )
    if args.output:
        inputs = raster_files(args.raster) + checkpoint_inputs(args.checkpoint, None) + [band_map]
        check_outputs([(args.output, "band map")], inputs, args.overwrite)
