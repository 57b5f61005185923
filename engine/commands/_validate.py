"""Checks at the command-line edge, shared by the subcommands.

Argument types turn an out-of-range value into one argparse line (`spectralx: error: argument
--lr: …`) before anything is loaded; `check_rasters` opens each input raster once so that a folder, a
damaged or truncated file, complex pixels or unreadable wavelength metadata are named in one line
instead of surfacing later as raw GDAL text or a silently wrong result.
"""

from __future__ import annotations

import argparse
import math
import os
from typing import Iterable, Optional, Sequence, Tuple

from ..errors import BandMappingError, InputError, RasterError

MAX_TILE = 1024  # ViT tiles: 1024 px is already 4096 tokens per tile (attention is quadratic)
MAX_CLASSES = 255  # class rasters are uint8, 0 = nodata


def int_range(lo: int, hi: Optional[int] = None, multiple: int = 1):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
        if value < lo or (hi is not None and value > hi):
            span = f"from {lo} to {hi}" if hi is not None else f"at least {lo}"
            raise argparse.ArgumentTypeError(f"must be {span}, not {value}")
        if value % multiple:
            raise argparse.ArgumentTypeError(f"must be a multiple of {multiple}, not {value}")
        return value

    return parse


def float_range(lo: float, hi: Optional[float] = None, lo_open: bool = False, hi_open: bool = False):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, not {text}")
        bad_lo = value <= lo if lo_open else value < lo
        bad_hi = hi is not None and (value >= hi if hi_open else value > hi)
        if bad_lo or bad_hi:
            left = f"{'>' if lo_open else '≥'} {lo:g}"
            right = f" and {'<' if hi_open else '≤'} {hi:g}" if hi is not None else ""
            raise argparse.ArgumentTypeError(f"must be {left}{right}, not {value:g}")
        return value

    return parse


positive_int = int_range(1)
count_int = int_range(0)
tile_size = int_range(32, MAX_TILE, multiple=32)
learning_rate = float_range(0.0, 1.0, lo_open=True)
fraction = float_range(0.0, 1.0, hi_open=True)
open_fraction = float_range(0.0, 1.0, lo_open=True, hi_open=True)
positive_float = float_range(0.0, lo_open=True)
finite_float = float_range(-math.inf)
band_number = int_range(1)


def checkpoint_inputs(checkpoint: Optional[str], backbone: Optional[str]) -> list:
    """Files a checkpoint run reads: the checkpoint, the backbone given, and the backbone files the
    card would be found as (beside it, recorded path, model folder) so that no output replaces them."""
    files = [p for p in (checkpoint, backbone) if p]
    if checkpoint and os.path.isfile(checkpoint):
        try:
            from ..checkpoint import backbone_candidates, read_card

            files += [c for c in backbone_candidates(read_card(checkpoint), checkpoint) if os.path.isfile(c)]
        except Exception:  # an unreadable card is reported by the command itself, in its words
            pass
    return files


def _bad_wavelength_tags(ds) -> list:
    """Bands whose wavelength tag is present but not a positive finite number ("abc", "nan")."""
    out = []
    for i in range(1, ds.count + 1):
        tags = {k.lower(): v for k, v in ds.tags(i).items()}
        for key in ("wavelength", "central_wavelength", "center_wavelength"):
            if key in tags:
                try:
                    ok = math.isfinite(float(str(tags[key]).strip())) and float(str(tags[key]).strip()) > 0
                except ValueError:
                    ok = False
                if not ok:
                    out.append((i, tags[key]))
                break
    return out


def check_rasters(
    paths: Iterable[Tuple[Optional[str], str]],
    wavelengths: bool = False,
    sensor: Optional[str] = None,
    band_map: Optional[str] = None,
) -> None:
    """Open each (path, what) once: a folder, a missing file, a file GDAL cannot open, a truncated
    file (its last block unreadable) or complex pixels are one-line errors. With `wavelengths`,
    wavelength tags that are not numbers are an error unless --sensor or a band-map file replaces them."""
    from rasterio.windows import Window

    from ..raster_io import open_raster

    for path, what in paths:
        if not path:
            continue
        local = not (path.startswith("/vsi") or "://" in path)  # GDAL virtual paths: only GDAL can tell
        if local and os.path.isdir(path):
            raise InputError(f"{what} {path} is a folder, not a raster file; give the raster file itself")
        if local and not os.path.exists(path):
            raise InputError(f"{what} not found: {path}")
        with open_raster(path, what) as ds:  # the one wording for rasters GDAL cannot open
            complex_types = [t for t in ds.dtypes if t.startswith("complex")]
            if complex_types:
                raise RasterError(
                    f"{what} {path} holds complex pixels ({complex_types[0]}); SpectralX reads "
                    "real-valued bands: convert it first (e.g. to amplitude, Float32)"
                )
            try:  # the end of the file: a truncated GeoTIFF fails here, not at open
                h, w = ds.block_shapes[-1] if ds.block_shapes else (1, 1)
                row = max(0, ds.height - min(h, ds.height))
                col = max(0, ds.width - min(w, ds.width))
                ds.read(ds.count, window=Window(col, row, min(w, ds.width), min(h, ds.height)))
            except Exception as exc:
                raise RasterError(
                    f"{what} {path} is damaged or truncated: its last block cannot be read "
                    f"({_first_line(exc)}); copy or export it again"
                ) from None
            if wavelengths and not sensor and not (band_map and band_map not in ("auto",) and os.path.isfile(band_map)):
                bad = _bad_wavelength_tags(ds)
                if bad:
                    shown = ", ".join(f"band {i} '{v}'" for i, v in bad[:3]) + (" …" if len(bad) > 3 else "")
                    raise BandMappingError(
                        f"{what} {path} has wavelength metadata that is not a number ({shown}); fix the "
                        "metadata, or name the sensor (--sensor) or give a band map (--band-map FILE.json)"
                    )


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:160] or type(exc).__name__


def check_band_list(bands: Optional[Sequence[int]], raster: Optional[str], option: str) -> None:
    """1-based band numbers that must exist in `raster`."""
    if not bands or not raster:
        return
    from ..raster_io import open_raster

    with open_raster(raster, "raster") as ds:
        count = ds.count
    bad = [b for b in bands if not 1 <= b <= count]
    if bad:
        raise InputError(
            f"{option} {' '.join(map(str, bands))}: band {bad[0]} does not exist; " f"{raster} has bands 1 to {count}"
        )


def check_segment_paths(args) -> None:
    """segment: the inputs open; the class raster, its .qml style and the confidence raster are none
    of the inputs (raster and sidecars, checkpoint, its backbone, band map) and exist only with
    --overwrite (the style too: it may be the user's own)."""
    from ..fileio import check_inputs, check_outputs, raster_files
    from ..outputs import style_path

    band_map = args.band_map if args.band_map not in (None, "auto") else None
    check_inputs([(args.checkpoint, "checkpoint"), (args.backbone, "backbone"), (band_map, "band map")])
    check_rasters([(args.raster, "raster")], wavelengths=True, sensor=args.sensor, band_map=band_map)
    output = getattr(args, "output", None)
    outputs = [
        (output, "class raster"),
        (style_path(output) if output else None, "style"),
        (getattr(args, "confidence", None), "confidence raster"),
    ]
    inputs = raster_files(args.raster) + checkpoint_inputs(args.checkpoint, args.backbone) + [band_map]
    check_outputs(outputs, inputs, args.overwrite)
