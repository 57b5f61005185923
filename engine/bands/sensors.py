"""Sensor presets: centre wavelength and FWHM of each band of common sensors, by band name.

Sources (nominal values, nm):
- Sentinel-2A/B MSI: ESA Sentinel-2 User Handbook / S2 MSI spectral response functions (v3.0),
  central wavelength and bandwidth per band. `sentinel2` is the mean of 2A and 2B.
- Landsat 8 OLI (and OLI-2 on Landsat 9, same nominal bands): centre of mass and half-maximum width
  of the OLI relative spectral responses in the EnMAP-Box test data (GPL-3.0), USGS for TIRS.
- EnMAP HSI: `enmap.json` beside this file (see its attribution).
- Landsat 4/5 TM and 7 ETM+: centre and width of the USGS nominal band passes.
- `rgbn`: generic red/green/blue/NIR bands, approximate (Sentinel-2-like centres, broad FWHM), for
  cameras without a preset and files whose bands are only named by colour.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from ..errors import BandMappingError


@dataclass(frozen=True)
class SensorBand:
    name: str  # canonical: "B2", "B8A", "B10"; EnMAP: "B1".."B224"
    wavelength_nm: float
    fwhm_nm: float
    label: str = ""  # "blue", "red edge 1", …
    bad: bool = False  # preset-level bad band (e.g. deep water-vapour absorption)


@dataclass
class Sensor:
    key: str
    label: str
    bands: List[SensorBand]
    # Band subsets files commonly carry, by band count, in file order (e.g. Sentinel-2 L2A without B10).
    subsets: Dict[int, List[str]] = field(default_factory=dict)
    aliases: Tuple[str, ...] = ()
    # the value the sensor's products hold outside the scene footprint (Landsat Level-1 and Sentinel-2
    # collars are DN 0); with no nodata declared, a pixel with it in every band is nodata
    fill: float = 0.0

    def band(self, name: str) -> Optional[SensorBand]:
        canon = canonical_band_name(name) or _COLOUR_NAMES.get(str(name).strip().lower())
        return next((b for b in self.bands if b.name == canon), None)

    def layout_for(self, count: int) -> Optional[List[SensorBand]]:
        """The preset's bands in file order for a raster of `count` bands, if that count is known."""
        if count == len(self.bands):
            return list(self.bands)
        names = self.subsets.get(count)
        return [self.band(n) for n in names] if names else None  # type: ignore[misc]


def canonical_band_name(text: str) -> Optional[str]:
    """'B04', 'b4', 'SR_B4', 'Band 4 (red)', 'band_8a', 'B8A' -> 'B4' / 'B8A'; None if no band name."""
    if text is None:
        return None
    m = re.match(
        r"^\s*(?:(?:sr|toa|st|ref|refl)_)?(?:b|band)[\s_\-]*0*(\d{1,3})(a(?![a-z]))?(?![\d.])", str(text), re.IGNORECASE
    )
    if not m:
        return None
    return f"B{int(m.group(1))}" + ("A" if m.group(2) else "")


def _s2(values) -> List[SensorBand]:
    return [SensorBand(n, w, f, lab) for n, w, f, lab in values]


_S2_LABELS = [
    "coastal aerosol",
    "blue",
    "green",
    "red",
    "red edge 1",
    "red edge 2",
    "red edge 3",
    "nir",
    "narrow nir",
    "water vapour",
    "swir cirrus",
    "swir 1",
    "swir 2",
]
_S2_NAMES = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"]
_S2A = [
    (442.7, 21),
    (492.4, 66),
    (559.8, 36),
    (664.6, 31),
    (704.1, 15),
    (740.5, 15),
    (782.8, 20),
    (832.8, 106),
    (864.7, 21),
    (945.1, 20),
    (1373.5, 31),
    (1613.7, 91),
    (2202.4, 175),
]
_S2B = [
    (442.2, 21),
    (492.1, 66),
    (559.0, 36),
    (664.9, 31),
    (703.8, 16),
    (739.1, 15),
    (779.7, 20),
    (832.9, 106),
    (864.0, 22),
    (943.2, 21),
    (1376.9, 30),
    (1610.4, 94),
    (2185.7, 185),
]
_S2_SUBSETS = {
    12: [n for n in _S2_NAMES if n != "B10"],  # L2A
    10: ["B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B11", "B12"],  # 10+20 m stack
    4: ["B2", "B3", "B4", "B8"],  # 10 m stack
    3: ["B2", "B3", "B4"],
}

_OLI = [
    ("B1", 443.0, 15.0, "coastal aerosol"),
    ("B2", 482.6, 59.0, "blue"),
    ("B3", 561.3, 57.0, "green"),
    ("B4", 654.6, 37.0, "red"),
    ("B5", 864.6, 27.0, "nir"),
    ("B6", 1609.1, 84.0, "swir 1"),
    ("B7", 2201.2, 186.0, "swir 2"),
    ("B8", 591.7, 171.0, "panchromatic"),
    ("B9", 1373.5, 20.0, "cirrus"),
    ("B10", 10895.0, 590.0, "thermal 1"),
    ("B11", 12005.0, 1010.0, "thermal 2"),
]
_OLI_SUBSETS = {
    7: ["B1", "B2", "B3", "B4", "B5", "B6", "B7"],  # Collection 2 L2 SR
    6: ["B2", "B3", "B4", "B5", "B6", "B7"],
    4: ["B2", "B3", "B4", "B5"],
    3: ["B2", "B3", "B4"],
}

# Landsat 4/5 TM and Landsat 7 ETM+: centre and width of the nominal band-pass edges (USGS "What are
# the band designations for the Landsat satellites?").
_TM = [
    ("B1", 485.0, 70.0, "blue"),
    ("B2", 560.0, 80.0, "green"),
    ("B3", 660.0, 60.0, "red"),
    ("B4", 830.0, 140.0, "nir"),
    ("B5", 1650.0, 200.0, "swir 1"),
    ("B6", 11450.0, 2100.0, "thermal"),
    ("B7", 2215.0, 270.0, "swir 2"),
]
_ETM = [
    ("B1", 482.5, 65.0, "blue"),
    ("B2", 565.0, 80.0, "green"),
    ("B3", 660.0, 60.0, "red"),
    ("B4", 835.0, 130.0, "nir"),
    ("B5", 1650.0, 200.0, "swir 1"),
    ("B6", 11450.0, 2100.0, "thermal"),
    ("B7", 2220.0, 260.0, "swir 2"),
    ("B8", 710.0, 380.0, "panchromatic"),
]
_TM_SUBSETS = {
    6: ["B1", "B2", "B3", "B4", "B5", "B7"],  # Collection 2 L2 SR
    4: ["B1", "B2", "B3", "B4"],
    3: ["B1", "B2", "B3"],
}

# Generic colour/NIR bands for cameras without a preset (approximate: Sentinel-2-like centres, broad).
_GENERIC = [("red", 665.0, 40.0), ("green", 560.0, 45.0), ("blue", 490.0, 65.0), ("nir", 842.0, 115.0)]
_COLOUR_NAMES = {
    "red": "red",
    "r": "red",
    "green": "green",
    "g": "green",
    "blue": "blue",
    "b": "blue",
    "nir": "nir",
    "n": "nir",
    "near infrared": "nir",
    "near-infrared": "nir",
    "infrared": "nir",
}


def _enmap() -> List[SensorBand]:
    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "enmap.json"), encoding="utf-8") as f:
        doc = json.load(f)
    return [SensorBand(f"B{i}", w, fw, "", bad=not bbl) for i, (w, fw, bbl) in enumerate(doc["bands"], 1)]


def _build() -> Dict[str, Sensor]:
    s2a = _s2((n, w, f, lab) for n, (w, f), lab in zip(_S2_NAMES, _S2A, _S2_LABELS))
    s2b = _s2((n, w, f, lab) for n, (w, f), lab in zip(_S2_NAMES, _S2B, _S2_LABELS))
    s2 = [
        SensorBand(
            a.name, round((a.wavelength_nm + b.wavelength_nm) / 2, 2), round((a.fwhm_nm + b.fwhm_nm) / 2, 1), a.label
        )
        for a, b in zip(s2a, s2b)
    ]
    oli = [SensorBand(*b) for b in _OLI]
    sensors = [
        Sensor(
            "sentinel2", "Sentinel-2 MSI (mean of 2A/2B)", s2, _S2_SUBSETS, ("s2", "sentinel-2", "msi", "sentinel2_msi")
        ),
        Sensor("sentinel2a", "Sentinel-2A MSI", s2a, _S2_SUBSETS, ("s2a", "sentinel-2a")),
        Sensor("sentinel2b", "Sentinel-2B MSI", s2b, _S2_SUBSETS, ("s2b", "sentinel-2b")),
        Sensor("landsat8", "Landsat 8 OLI/TIRS", oli, _OLI_SUBSETS, ("l8", "oli", "landsat-8", "landsat_8", "lc08")),
        Sensor(
            "landsat9",
            "Landsat 9 OLI-2/TIRS-2",
            oli,
            _OLI_SUBSETS,
            ("l9", "oli2", "oli-2", "landsat-9", "landsat_9", "lc09"),
        ),
        Sensor(
            "landsat7",
            "Landsat 7 ETM+",
            [SensorBand(*b) for b in _ETM],
            _TM_SUBSETS,
            ("l7", "etm", "etm+", "landsat-7", "landsat_7", "le07"),
        ),
        Sensor(
            "landsat5",
            "Landsat 4/5 TM",
            [SensorBand(*b) for b in _TM],
            _TM_SUBSETS,
            ("l5", "l4", "tm", "landsat4", "landsat-5", "landsat_5", "lt05", "lt04"),
        ),
        Sensor("enmap", "EnMAP HSI (224 bands)", _enmap(), {}, ("enmap_hsi", "enmap-hsi"), fill=-32768.0),
        Sensor(
            "rgbn",
            "Generic red, green, blue, NIR camera (approximate wavelengths)",
            [SensorBand(*b) for b in _GENERIC],
            {3: ["red", "green", "blue"]},
            ("rgb", "generic"),
        ),
    ]
    return {s.key: s for s in sensors}


SENSORS: Dict[str, Sensor] = _build()


def list_sensors() -> List[Tuple[str, str]]:
    """(key, label) of every preset, for the CLI help and the plugin's sensor combo box."""
    return [(s.key, s.label) for s in SENSORS.values()]


def find_sensor(name: str) -> Optional[Sensor]:
    key = re.sub(r"[\s]+", "", str(name)).lower()
    for s in SENSORS.values():
        if key == s.key or key in s.aliases:
            return s
    return None


def fill_value(sensor: Optional[str]) -> float:
    """The fill value of a sensor named by key, alias or 'key:bands' (0 for an unknown or no sensor)."""
    found = find_sensor(str(sensor).partition(":")[0]) if sensor else None
    return found.fill if found is not None else 0.0


def parse_sensor(spec: str) -> Tuple[Sensor, Optional[List[SensorBand]]]:
    """'landsat8' or 'landsat8:B4,B3,B2' (the raster's bands in file order) -> (sensor, bands|None)."""
    name, _, band_list = str(spec).partition(":")
    sensor = find_sensor(name)
    if sensor is None:
        raise BandMappingError(
            f"unknown sensor preset '{_printable(name, 40)}'; choose one of: " + ", ".join(k for k, _ in list_sensors())
        )
    if not band_list.strip():
        return sensor, None
    chosen = []
    for item in band_list.split(","):
        band = sensor.band(item) or next((b for b in sensor.bands if b.name == item.strip()), None)
        if band is None:
            raise BandMappingError(
                f"sensor preset '{sensor.key}' has no band '{_printable(item.strip(), 30)}'; its bands are "
                + ", ".join(b.name for b in sensor.bands[:16])
                + (" …" if len(sensor.bands) > 16 else "")
            )
        if band in chosen:
            raise BandMappingError(
                f"sensor preset '{sensor.key}': band {band.name} is listed twice in "
                f"'{_printable(band_list)}'; list each of the raster's bands once, in file order"
            )
        chosen.append(band)
    return sensor, chosen


def _printable(text: str, limit: int = 60) -> str:
    text = "".join(c if c.isprintable() else "?" for c in str(text))
    return text if len(text) <= limit else text[: limit - 1] + "…"


# Dataset tags that name the platform (Sentinel-2 SAFE, Landsat MTL, generic GDAL/ENVI keys).
_PLATFORM_KEYS = (
    "SPACECRAFT_NAME",
    "SPACECRAFT_ID",
    "SPACECRAFT",
    "SATELLITE",
    "PLATFORM",
    "SENSOR",
    "SENSOR_ID",
    "MISSION",
    "sensor_type",
    "sensor type",
)


def sensor_from_tags(tags: Dict[str, str]) -> Optional[Sensor]:
    """Recognise a preset from dataset tags such as SPACECRAFT_NAME=Sentinel-2A or SPACECRAFT_ID=LANDSAT_8."""
    lowered = {k.lower(): v for k, v in tags.items()}
    for key in _PLATFORM_KEYS:
        value = lowered.get(key.lower())
        if not value:
            continue
        v = re.sub(r"[\s_\-]+", "", str(value)).lower()
        if "sentinel2a" in v:
            return SENSORS["sentinel2a"]
        if "sentinel2b" in v:
            return SENSORS["sentinel2b"]
        if "sentinel2" in v or v == "msi":
            return SENSORS["sentinel2"]
        if "landsat8" in v:
            return SENSORS["landsat8"]
        if "landsat9" in v:
            return SENSORS["landsat9"]
        if "landsat7" in v:
            return SENSORS["landsat7"]
        if "landsat5" in v or "landsat4" in v:
            return SENSORS["landsat5"]
        if "enmap" in v:
            return SENSORS["enmap"]
    return None


def sensor_from_names(descriptions: List[Optional[str]]) -> Optional[Sensor]:
    """Recognise a preset from band descriptions, when they are unambiguous together with the count:
    'B8A' or zero-padded 'B04' is Sentinel-2, 'SR_B4' is Landsat; plain 'B4' needs a count only one
    preset layout has (13/12/10 bands: Sentinel-2; 11/7 bands: Landsat 8)."""
    if descriptions and all(d and str(d).strip().lower() in _COLOUR_NAMES for d in descriptions):
        return SENSORS["rgbn"]  # "Red", "Green", "Blue", "NIR": colours, not a sensor's bands
    names = [canonical_band_name(d) if d else None for d in descriptions]
    if not names or any(n is None for n in names):
        return None
    raw = " ".join(d for d in descriptions if d)
    count = len(names)
    if "B8A" in names or re.search(r"\bB0\d\b", raw, re.IGNORECASE):
        return SENSORS["sentinel2"]
    if re.search(r"\b(SR|ST)_B\d", raw, re.IGNORECASE):
        return SENSORS["landsat8"]
    if count in (13, 12, 10):
        return SENSORS["sentinel2"]
    if count in (11, 7):
        return SENSORS["landsat8"]
    return None
