"""Reading training rasters: band mapping, nodata, scene-level normalization statistics.

Every read returns float32 (C, h, w) on the checkpoint's bands (`x = weights @ x_read`) with NaN where
the source is nodata; `normalize()` applies the card's z-score and sets NaN (nodata) to 0, exactly
as inference does (SPEC §2: scene-level statistics, never per-tile min-max).
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..bands import BandMapping, detect_bands, resolve_band_map
from ..checkpoint import Band, ModelCard, Normalization
from ..errors import BandMappingError
from ..inference.prepare import Preparer
from ..raster_io import open_raster


def _open(path: str):
    return open_raster(path, "image")


def detect_image_bands(path: str, sensor: Optional[str] = None) -> Tuple[List[Band], List[int]]:
    """Checkpoint bands for a new model from `path` (spectralx.bands.detect_bands), and the 1-based
    raster bands that feed them. Bad bands (bbl=0, or no valid pixel) are left out, as inference
    never uses them as a source."""
    found = [b for b in detect_bands(path, sensor) if not b.bad]
    rows = [(b.index, b.name, b.wavelength_nm, b.fwhm_nm) for b in found]
    if not rows:
        raise BandMappingError(f"{path}: no usable band (all bad or nodata)")
    missing = [r[0] for r in rows if r[2] is None]
    if missing:
        raise BandMappingError(
            f"{path}: no centre wavelength for band(s) {missing[:10]}; name the sensor (--sensor) or "
            "add GDAL `wavelength`/`wavelength_units` band metadata"
        )
    bands = [Band(str(n or f"band {i}"), float(w), float(f) if f else None) for i, n, w, f in rows]
    return bands, [int(r[0]) for r in rows]


def same_sensor_mappings(images: Sequence[str], sensor: Optional[str] = None):
    """New-model bands from the first image, and identity mappings (BandMapping.identity) for every
    image (they must carry the same bands)."""
    bands, idx = detect_image_bands(images[0], sensor)
    with _open(images[0]) as ds:
        count = ds.count
    for p in images[1:]:
        with _open(p) as ds:
            other_count = ds.count
        ok = other_count == count
        if ok:
            other = {b.index: b.wavelength_nm for b in detect_bands(p, sensor, check_nodata=False)}
            ok = all(other.get(i) is not None and abs(other[i] - b.wavelength_nm) <= 1.0 for i, b in zip(idx, bands))
        if not ok:
            raise BandMappingError(
                f"{p} does not have the same bands as {images[0]}; train from one sensor, or start from "
                "a checkpoint (-c) so that each image's bands are mapped"
            )
    mapping = BandMapping.identity(idx, [b.name for b in bands], raster_band_count=count, sensor=sensor)
    return bands, [mapping for _ in images]


def mapping_for(path: str, card: ModelCard, band_map="auto", sensor: Optional[str] = None):
    """How `path`'s bands feed the checkpoint (spectralx.bands.resolve_band_map)."""
    return resolve_band_map(path, card, band_map=band_map, sensor=sensor)


def read_mapped(ds, mapping, window=None, out_shape: Optional[Tuple[int, int]] = None) -> np.ndarray:
    """(C_checkpoint, h, w) float32, NaN where the source is nodata/masked/non-finite.

    `window` may extend beyond the raster; the outside is NaN. `out_shape` decimates (stats only).
    """
    from rasterio.windows import Window

    idx = list(mapping.source_indexes)
    weights = np.asarray(mapping.weights, dtype=np.float32)
    if window is None:
        window = Window(0, 0, ds.width, ds.height)
    r0, c0 = int(window.row_off), int(window.col_off)
    h, w = int(window.height), int(window.width)
    if out_shape is not None:
        h, w = out_shape
        arr = ds.read(idx, window=window, out_shape=(len(idx), h, w), masked=True, resampling=0)
        x = np.ma.filled(arr.astype(np.float32), np.nan)
        x[~np.isfinite(x)] = np.nan
    else:
        x = np.full((len(idx), h, w), np.nan, np.float32)
        rs, cs = max(r0, 0), max(c0, 0)
        re, ce = min(r0 + h, ds.height), min(c0 + w, ds.width)
        if re > rs and ce > cs:
            arr = ds.read(idx, window=Window(cs, rs, ce - cs, re - rs), masked=True)
            part = np.ma.filled(arr.astype(np.float32), np.nan)
            part[~np.isfinite(part)] = np.nan
            x[:, rs - r0 : re - r0, cs - c0 : ce - c0] = part
    # the inference Preparer's band mixing: a checkpoint band is nodata (NaN here) where a source band
    # it uses is nodata, and a filled band is NaN too (the normalization mean, 0 after `normalize`)
    invalid = np.isnan(x)
    out, bad = Preparer(weights, getattr(mapping, "fill", None), None).mix(x, invalid if invalid.any() else None)
    if bad is not None:
        out[bad] = np.nan
    return out


def scene_statistics(
    images: Sequence[str], mappings: Sequence, max_pixels: int = 1_000_000, clip: float = 6.0
) -> Tuple[Normalization, List[int]]:
    """Per-band mean/std over the valid pixels of all images (decimated reads, whole scenes).

    Returns the normalization and, per band, how many valid samples it saw.
    """
    sums = None
    for path, mapping in zip(images, mappings):
        with _open(path) as ds:
            scale = max(1.0, math.sqrt(ds.width * ds.height / max_pixels))
            shape = (max(1, int(round(ds.height / scale))), max(1, int(round(ds.width / scale))))
            x = read_mapped(ds, mapping, out_shape=shape if scale > 1 else None)
        x = x.reshape(x.shape[0], -1).astype(np.float64)
        valid = np.isfinite(x)
        n = valid.sum(1)
        s = np.where(valid, x, 0).sum(1)
        if sums is None:
            sums = [np.zeros_like(s), np.zeros_like(s), np.zeros_like(s)]
        sums[0] += n
        sums[1] += s
        # second pass-free variance: accumulate squares around a running shift (first image mean)
        sums[2] += np.where(valid, x * x, 0).sum(1)
    n, s, ss = sums
    mean = np.where(n > 0, s / np.maximum(n, 1), 0.0)
    var = np.where(n > 1, ss / np.maximum(n, 1) - mean**2, 1.0)
    std = np.sqrt(np.maximum(var, 0.0))
    std = np.where(std > 1e-6 * np.maximum(np.abs(mean), 1e-6), std, 1.0)
    std = np.where(std > 0, std, 1.0)
    return (
        Normalization(method="zscore", mean=[float(v) for v in mean], std=[float(v) for v in std], clip=clip),
        [int(v) for v in n],
    )


def normalize(x: np.ndarray, norm: Normalization) -> np.ndarray:
    """The card's normalization (the inference Preparer's, so the two never drift) on a copy of `x`;
    NaN/inf (nodata) -> 0 afterwards."""
    x = np.array(x, dtype=np.float32, copy=True)
    bad = ~np.isfinite(x)
    x[bad] = 0.0
    Preparer(np.eye(x.shape[0], dtype=np.float32), None, norm).normalize(x)
    x[bad] = 0.0
    return x


def gsd_of(path: str) -> Optional[float]:
    with _open(path) as ds:
        if ds.crs is not None and ds.crs.is_projected:
            try:
                factor = ds.crs.linear_units_factor[1]
            except Exception:
                factor = 1.0
            return float(abs(ds.transform.a) * factor)
    return None
