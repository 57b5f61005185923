"""Find each raster band's centre wavelength and FWHM from what real files carry.

Order (first hit wins per band): GDAL band metadata (EnMAP-Box `wavelength`/`wavelength_units`/`fwhm`,
GDAL 3.10 IMAGERY `CENTRAL_WAVELENGTH_UM`/`FWHM_UM`), the ENVI metadata domain (`wavelength = {…}`
lists), a wavelength written in the band description, then a sensor preset recognised from dataset
tags, band names or the EnMAP band count. A preset the user names (`sensor=`) overrides the file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..errors import BandMappingError
from .sensors import Sensor, SensorBand, canonical_band_name, parse_sensor, sensor_from_names, sensor_from_tags
from .units import guess_units, parse_envi_list, parse_number, to_nm, unit_factor, wavelength_in_text
from .wording import Advice

# Read every pixel for the empty-band check only below this many values; larger rasters are sampled.
_FULL_READ_LIMIT = 16_000_000
_SAMPLE_SIDE = 128


@dataclass
class RasterBand:
    index: int  # 1-based, as GDAL counts
    name: str
    wavelength_nm: Optional[float]
    fwhm_nm: Optional[float]
    source: str  # where the wavelength came from: metadata, ENVI, description, preset …
    bad: bool = False  # bad band list (bbl=0) or no valid pixel: never used as a source
    note: str = ""  # why it is bad, or what was assumed

    def to_dict(self) -> dict:
        return {
            "index": self.index,
            "name": self.name,
            "wavelength_nm": self.wavelength_nm,
            "fwhm_nm": self.fwhm_nm,
            "source": self.source,
            "bad": self.bad,
            "note": self.note,
        }


def _ci(tags: Dict[str, str], *keys: str) -> Optional[str]:
    """Case-insensitive tag lookup ('wavelength units' and 'wavelength_units' are both in use)."""
    lowered = {k.lower(): v for k, v in tags.items()}
    for k in keys:
        if k.lower() in lowered:
            return lowered[k.lower()]
    return None


_UNIT_KEYS = ("wavelength_units", "wavelength units", "wavelength_unit")


def _from_band_metadata(ds, bands: List[RasterBand]) -> None:
    # units may sit once on the dataset (ENVI driver, some EnMAP-Box exports) instead of on each band
    dataset_units = _ci(ds.tags(), *_UNIT_KEYS) or _ci(ds.tags(ns="ENVI") or {}, *_UNIT_KEYS)
    for b in bands:
        tags = ds.tags(b.index)
        wl = parse_number(_ci(tags, "wavelength", "central_wavelength", "center_wavelength"))
        if wl is not None and wl > 0:
            units = _ci(tags, *_UNIT_KEYS, "units") or dataset_units
            if unit_factor(units) is None:  # missing/unknown: the centre's magnitude decides for both
                units = guess_units([wl])
                b.note = f"no wavelength units: read as {units.lower()}"
            b.wavelength_nm = to_nm(wl, units)
            fwhm = parse_number(_ci(tags, "fwhm", "bandwidth"))
            fwhm_units = _ci(tags, "fwhm_units", "bandwidth_unit")
            b.fwhm_nm = to_nm(fwhm, fwhm_units if unit_factor(fwhm_units) else units) if fwhm else None
            b.source = "metadata"
        else:
            imagery = ds.tags(b.index, ns="IMAGERY")
            wl = parse_number(imagery.get("CENTRAL_WAVELENGTH_UM"))
            if wl:
                b.wavelength_nm = wl * 1000.0
                fwhm = parse_number(imagery.get("FWHM_UM"))
                b.fwhm_nm = fwhm * 1000.0 if fwhm else None
                b.source = "metadata (IMAGERY)"
        bandname = _ci(tags, "bandname", "band_name")
        if bandname and b.name.startswith("band "):
            b.name = bandname  # GDAL's SENTINEL2 driver: BANDNAME=B4
        bbl = parse_number(_ci(tags, "bbl", "bad_band"))
        if bbl is not None and bbl == 0:
            b.bad, b.note = True, "bad band (bbl=0)"


def _envi_lists(ds) -> Dict[str, str]:
    """The ENVI domain; some converters leave the same keys as `{…}` lists in the default domain."""
    envi = dict(ds.tags(ns="ENVI") or {})
    if not _ci(envi, "wavelength"):
        default = ds.tags()
        wl = _ci(default, "wavelength")
        if wl and str(wl).strip().startswith("{"):
            envi = default
    return envi


def _from_envi(ds, bands: List[RasterBand]) -> None:
    envi = _envi_lists(ds)
    if not envi:
        return
    count = len(bands)
    wls = parse_envi_list(_ci(envi, "wavelength"))
    if wls is not None and len(wls) != count:
        if all(b.wavelength_nm is not None for b in bands):
            return  # band metadata already complete: an inconsistent list is not needed
        raise Advice(
            f"ENVI metadata lists {len(wls)} wavelengths for {count} bands; "
            "fix the header, or name the sensor with [[sensor]], or use [[band_map]]"
        )
    units = _ci(envi, "wavelength_units", "wavelength units")
    if wls is not None and units is None:
        units = guess_units(wls)
    fwhms = parse_envi_list(_ci(envi, "fwhm"))
    fwhms = fwhms if fwhms is not None and len(fwhms) == count else None
    bbl = parse_envi_list(_ci(envi, "bbl"))
    bbl = bbl if bbl is not None and len(bbl) == count else None
    for i, b in enumerate(bands):
        if wls is not None and b.wavelength_nm is None:
            b.wavelength_nm = to_nm(wls[i], units)
            b.source = "ENVI metadata"
        # GDAL's ENVI driver copies `wavelength` to each band but not `fwhm`: take it from the list
        if fwhms and b.fwhm_nm is None and fwhms[i] > 0 and b.wavelength_nm is not None:
            b.fwhm_nm = to_nm(fwhms[i], units or ("Micrometers" if max(fwhms) < 1 else "Nanometers"))
        if bbl is not None and bbl[i] == 0 and not b.bad:
            b.bad, b.note = True, "bad band (ENVI bbl=0)"


def _from_descriptions(bands: List[RasterBand], descriptions: Sequence[Optional[str]]) -> None:
    for b, desc in zip(bands, descriptions):
        if b.wavelength_nm is None:
            wl = wavelength_in_text(desc)
            if wl:
                b.wavelength_nm, b.source = wl, "description"


def _generic_name(description: str, position: int) -> bool:
    """'Band 3' at position 3 (ENVI/GDAL default names) says nothing about which sensor band it is."""
    return bool(re.match(rf"^\s*band[\s_]*0*{position}(?!\d)", description, re.IGNORECASE)) and not re.search(
        r"\b(?:b\d|sr_|toa_)", description, re.IGNORECASE
    )


def _preset_layout(sensor: Sensor, chosen: Optional[List[SensorBand]], descriptions, count: int):
    """Which preset band each raster band is: named by the user, by the descriptions, or by count."""
    if chosen is not None:
        if len(chosen) != count:
            raise Advice(
                f"the band order given with [[sensor_name]] lists {len(chosen)} bands but the raster has "
                f"{count}; name one {sensor.label} band per raster band, in file order"
            )
        return chosen, f"preset {sensor.key}"
    named = [sensor.band(d) if d and not _generic_name(d, i) else None for i, d in enumerate(descriptions, 1)]
    if all(named):
        return named, f"preset {sensor.key} (band names)"
    layout = sensor.layout_for(count)
    if layout is None:
        known = sorted({len(sensor.bands), *sensor.subsets})
        example = ",".join(b.name for b in sensor.bands[1 : 1 + min(count, 3)])
        raise Advice(
            f"raster has {count} bands, which is not a {sensor.label} layout ({', '.join(map(str, known))} bands); "
            f"name its bands in file order with [[sensor_name]], e.g. {sensor.key}:{example}"
        )
    if count == len(sensor.bands):
        return layout, f"preset {sensor.key}"
    return layout, (
        f"preset {sensor.key} (assumed {','.join(b.name for b in layout)} from {count} bands; "
        f"pass --sensor {sensor.key}:… if the order differs)"
    )


def _apply_preset(bands: List[RasterBand], sensor: Sensor, chosen, descriptions, override: bool) -> None:
    layout, source = _preset_layout(sensor, chosen, descriptions, len(bands))
    for b, sb in zip(bands, layout):
        if override or b.wavelength_nm is None:
            b.wavelength_nm, b.fwhm_nm, b.source = sb.wavelength_nm, sb.fwhm_nm, source
            if not b.bad:
                b.note = ""  # notes about the file's own wavelengths no longer apply
            if b.name.startswith("band "):
                b.name = f"{sb.name} {sb.label}".strip() if sb.label else sb.name
        if sb.bad and not b.bad:
            b.bad, b.note = True, f"bad band in the {sensor.key} preset (water-vapour absorption)"


def _recognise(ds, bands: List[RasterBand], descriptions) -> Optional[Sensor]:
    if all(b.wavelength_nm is not None for b in bands):
        return None
    names = [None if d and _generic_name(d, i) else d for i, d in enumerate(descriptions, 1)]
    sensor = sensor_from_tags(ds.tags()) or sensor_from_names(names)
    if sensor is None and len(bands) == 224:
        from .sensors import SENSORS

        sensor = SENSORS["enmap"]
    return sensor


def _sample_windows(h: int, w: int):
    """A 3×3 grid of small windows: a few blocks per band, whatever the raster size."""
    from rasterio.windows import Window

    side = min(_SAMPLE_SIDE, h, w)
    rows = sorted({int(f * (h - side)) for f in (0.0, 0.5, 1.0)})
    cols = sorted({int(f * (w - side)) for f in (0.0, 0.5, 1.0)})
    return [Window(c, r, side, side) for r in rows for c in cols]


def _mark_empty_bands(ds, bands: List[RasterBand]) -> None:
    """Flag bands without one valid pixel (EnMAP L2A water-vapour bands are all nodata). Large rasters
    are sampled in a few windows; a band is only flagged when another band has data in that sample,
    so a mostly-empty scene is never wholesale rejected."""
    if ds.nodata is None and all(v is None for v in ds.nodatavals):
        return
    h, w = ds.height, ds.width
    windows = [None] if h * w * ds.count <= _FULL_READ_LIMIT else _sample_windows(h, w)
    has_data = np.zeros(len(bands), bool)
    nodata = np.array(
        [ds.nodatavals[b.index - 1] if ds.nodatavals[b.index - 1] is not None else ds.nodata for b in bands],
        dtype="float64",
    )[:, None]
    try:
        for win in windows:
            # plain read + compare: read_masks on pixel-interleaved DEFLATE files is ~500x slower
            values = ds.read([b.index for b in bands], window=win).reshape(len(bands), -1)
            valid = ~np.isnan(values) if np.issubdtype(values.dtype, np.floating) else np.ones(values.shape, bool)
            has_data |= (valid & (values != nodata) & ~np.isnan(nodata)).any(axis=1) | (
                np.isnan(nodata[:, 0]) & valid.any(axis=1)
            )
    except Exception:  # unreadable blocks: detection still works, the check is skipped
        return
    if not has_data.any():
        return
    note = "no valid pixel (all nodata)" if windows == [None] else "no valid pixel in the sampled windows (all nodata)"
    for b, ok in zip(bands, has_data):
        if not ok and not b.bad:
            b.bad, b.note = True, note


def detect_bands(path: str, sensor: Optional[str] = None, check_nodata: bool = True) -> List[RasterBand]:
    """Each band of `path` with its wavelength/FWHM in nm (None if unknown) and where that came from.

    `sensor`: a preset key ('sentinel2', 'landsat8', 'enmap', …, see `list_sensors()`), optionally
    with the raster's bands in file order ('landsat8:B2,B3,B4'); it overrides the file's metadata.
    """
    from ..raster_io import open_raster

    with open_raster(path) as ds:
        descriptions = list(ds.descriptions)
        bands = [
            RasterBand(i, (descriptions[i - 1] or f"band {i}"), None, None, "unknown") for i in range(1, ds.count + 1)
        ]
        if sensor:
            preset, chosen = parse_sensor(sensor)
            _from_band_metadata(ds, bands)  # for the file's bad-band flags; wavelengths are replaced
            try:
                _from_envi(ds, bands)
            except BandMappingError:
                pass  # a broken ENVI list is what --sensor works around
            _apply_preset(bands, preset, chosen, descriptions, override=True)
        else:
            _from_band_metadata(ds, bands)
            _from_envi(ds, bands)
            _from_descriptions(bands, descriptions)
            recognised = _recognise(ds, bands, descriptions)
            if recognised is not None:
                try:
                    _apply_preset(bands, recognised, None, descriptions, override=False)
                except BandMappingError:
                    pass  # a guess that does not fit the file is no guess: leave bands unknown
        if check_nodata:
            _mark_empty_bands(ds, bands)
    return bands


def describe_unknown(bands: List[RasterBand]) -> str:
    """Hint for rasters whose bands have no wavelength: what the user can do."""
    names = [canonical_band_name(b.name) for b in bands if not re.match(r"^band \d+$", b.name)]
    hint = "pass --sensor (sentinel2, landsat8, landsat9, enmap, rgbn, …; e.g. landsat8:B2,B3,B4)"
    if names and len(names) == len(bands) and all(names):
        hint += f"; band names {','.join(names)} do not identify one sensor"
    return hint
