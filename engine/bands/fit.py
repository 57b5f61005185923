"""Can this model read this raster? One function for the CLI, Processing and the dock.

`plan_bands()` detects the raster's bands (with the sensor the user named, if any), maps them onto
the checkpoint's bands and, when that fails because the raster does not cover the model's spectrum,
replaces the technical message with a plain verdict ("this model needs 218 EnMAP HSI bands
418–2446 nm; this raster has 3 visible bands: fine-tune a new model from this raster instead").
`suggest_sensor()` pre-fills the sensor picker from what the file's band descriptions say.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from ..errors import BandMappingError
from .detect import RasterBand, _generic_name, detect_bands
from .mapping import BandMapping, _auto, map_bands
from .sensors import SENSORS, Sensor, canonical_band_name, find_sensor, sensor_from_names
from .wording import Advice

FIT_MIN_COVERED = 0.5  # below this share of the model's bands the raster cannot stand in for its sensor

# spectral regions used to describe a raster in words (upper bound in nm, name)
_REGIONS = ((700.0, "visible"), (1000.0, "NIR"), (2600.0, "SWIR"), (float("inf"), "thermal"))


class ModelDoesNotFit(Advice):
    """The raster covers too little of the checkpoint's spectrum for any band mapping to help."""


@dataclass
class BandPlan:
    raster_bands: List[RasterBand]
    mapping: Optional[BandMapping]
    sensor: Optional[str]  # the sensor spec used (the user's, or the training sensor's)
    error: Optional[BandMappingError] = None
    verdict: Optional[str] = None  # set when the model cannot fit this raster at all
    fallback: bool = False  # the checkpoint's training sensor was assumed

    @property
    def ok(self) -> bool:
        return self.mapping is not None


def short_label(sensor: Sensor) -> str:
    return sensor.label.split(" (")[0]


def sensor_of_bands(bands: Sequence) -> Optional[Sensor]:
    """The preset whose bands a checkpoint's bands are (each within 2 nm), if any."""
    wls = [getattr(b, "wavelength_nm", None) for b in bands]
    if not wls or any(w is None for w in wls):
        return None
    for s in SENSORS.values():
        centres = [sb.wavelength_nm for sb in s.bands]
        if all(min(abs(w - c) for c in centres) <= 2.0 for w in wls):
            return s
    return None


def _describe_raster(bands: Sequence[RasterBand]) -> str:
    wls = sorted(b.wavelength_nm for b in bands)
    counts = []
    for upper, name in _REGIONS:
        n = sum(1 for w in wls if w < upper) - sum(c for c, _ in counts)
        if n:
            counts.append((n, name))
    span = f"{wls[0]:.0f} nm" if len(wls) == 1 else f"{wls[0]:.0f}–{wls[-1]:.0f} nm"
    plural = "s" if len(wls) != 1 else ""
    if len(counts) == 1:
        return f"{len(wls)} {counts[0][1]} band{plural} ({span})"
    return f"{len(wls)} bands ({', '.join(f'{n} {name}' for n, name in counts)}; {span})"


def fit_verdict(targets: Sequence, raster_bands: Sequence[RasterBand]) -> Optional[str]:
    """A plain sentence when the raster cannot stand in for the model's sensor, else None."""
    usable = [b for b in raster_bands if not b.bad and b.wavelength_nm is not None]
    if not usable or not targets:
        return None
    covered = sum(1 for t in targets if t.wavelength_nm is not None and _auto(t, usable, None) is not None)
    if covered >= FIT_MIN_COVERED * len(targets):
        return None
    wls = [t.wavelength_nm for t in targets if t.wavelength_nm is not None]
    model_sensor = sensor_of_bands(targets)
    what = f"{short_label(model_sensor)} bands" if model_sensor else "bands"
    return (
        f"this model needs {len(targets)} {what} {min(wls):.0f}–{max(wls):.0f} nm; this raster has "
        f"{_describe_raster(usable)}, covering {covered} of them: fine-tune a new model from this "
        "raster instead"
    )


def detect_bands_for_card(
    raster_path: str, card, sensor: Optional[str] = None
) -> Tuple[List[RasterBand], Optional[str], bool]:
    """Detect `raster_path`'s bands; a raster without wavelength metadata that the user gave no
    sensor for is read with the sensor the checkpoint was trained on (same kind of file).
    Returns (bands, sensor used, whether that fallback was taken)."""
    raster_bands = detect_bands(raster_path, sensor=sensor)
    trained_on = (getattr(card, "training", None) or {}).get("sensor") if not sensor else None
    if trained_on and all(b.wavelength_nm is None for b in raster_bands):
        return detect_bands(raster_path, sensor=trained_on), trained_on, True
    return raster_bands, sensor, False


def plan_bands(
    raster_path: str,
    card,
    sensor: Optional[str] = None,
    strategy: str = "auto",
    tolerance_nm: Optional[float] = None,
    allow_fill: bool = False,
) -> BandPlan:
    """Detect and map in one go; mapping problems are returned in the plan, not raised (a raster
    that cannot be opened still raises). `card`: a ModelCard (or anything with `.bands`)."""
    targets = list(getattr(card, "bands", card))
    raster_bands, used, fallback = detect_bands_for_card(raster_path, card, sensor)
    try:
        mapping = map_bands(
            raster_bands, targets, strategy=strategy, tolerance_nm=tolerance_nm, allow_fill=allow_fill, sensor=used
        )
    except BandMappingError as exc:
        verdict = fit_verdict(targets, raster_bands)
        error = ModelDoesNotFit(verdict) if verdict else exc
        return BandPlan(raster_bands, None, used, error, verdict, fallback)
    if fallback:
        mapping.warnings.append(f"raster has no wavelengths: used the checkpoint's training sensor '{used}'")
    return BandPlan(raster_bands, mapping, used, None, None, fallback)


def suggest_sensor(raster_bands: Sequence[RasterBand]) -> Tuple[Optional[str], str]:
    """(preset key or None, band order like "B2,B3,B4" or "") from what the file says: a preset the
    detection recognised, or band descriptions that name sensor bands."""
    for b in raster_bands:
        if b.source.startswith("preset "):
            key = b.source.split()[1]
            sensor = find_sensor(key)
            if sensor is not None:
                names = [canonical_band_name(rb.name) or "" for rb in raster_bands]
                order = ",".join(names) if all(n and sensor.band(n) for n in names) else ""
                if not order and sensor.layout_for(len(raster_bands)):
                    order = ",".join(sb.name for sb in sensor.layout_for(len(raster_bands)))
                return sensor.key, order
    names = [None if _generic_name(b.name, b.index) else canonical_band_name(b.name) for b in raster_bands]
    if names and all(names):
        sensor = sensor_from_names([b.name for b in raster_bands])
        return (sensor.key if sensor else None), ",".join(names)  # type: ignore[arg-type]
    return None, ""


def default_order(sensor_key: str, band_count: int) -> str:
    """The preset's usual band order for a file with `band_count` bands ("" if it has none)."""
    sensor = find_sensor(sensor_key)
    layout = sensor.layout_for(band_count) if sensor else None
    return ",".join(b.name for b in layout) if layout else ""


def sensor_spec(sensor_key: Optional[str], order: str = "") -> Optional[str]:
    """'landsat8' + 'B2, B3,B4' -> 'landsat8:B2,B3,B4' (the form --sensor and SENSOR take)."""
    if not sensor_key:
        return None
    order = ",".join(p.strip() for p in (order or "").split(",") if p.strip())
    return f"{sensor_key}:{order}" if order else sensor_key
