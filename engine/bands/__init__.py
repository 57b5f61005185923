"""Band reading and mapping (SPEC §4): wavelengths from file metadata or sensor presets, and the
weight matrix that turns a raster's bands into a checkpoint's input bands.

No torch, no QGIS: the plugin's band table imports this directly.
"""

from .detect import RasterBand, detect_bands
from .fit import (
    BandPlan,
    ModelDoesNotFit,
    default_order,
    fit_verdict,
    plan_bands,
    sensor_of_bands,
    sensor_spec,
    suggest_sensor,
)
from .mapping import STRATEGIES, BandMapping, map_bands
from .resolve import detect_bands_for_card, resolve_band_map, validate_mapping
from .sensors import SENSORS, Sensor, SensorBand, canonical_band_name, list_sensors, parse_sensor

__all__ = [
    "RasterBand",
    "detect_bands",
    "BandMapping",
    "map_bands",
    "STRATEGIES",
    "resolve_band_map",
    "detect_bands_for_card",
    "validate_mapping",
    "SENSORS",
    "Sensor",
    "SensorBand",
    "canonical_band_name",
    "list_sensors",
    "parse_sensor",
    "BandPlan",
    "ModelDoesNotFit",
    "plan_bands",
    "fit_verdict",
    "sensor_of_bands",
    "suggest_sensor",
    "default_order",
    "sensor_spec",
    "explain",
]
from .wording import explain  # noqa: E402
