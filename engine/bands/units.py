"""Wavelength units and ENVI-style lists: everything the detector reads is turned into nanometres."""

from __future__ import annotations

import re
from typing import List, Optional

# Unit spellings met in GDAL/ENVI/EnMAP-Box metadata, lower-cased, mapped to a factor to nm.
_UNIT_TO_NM = {
    "nm": 1.0,
    "nanometer": 1.0,
    "nanometers": 1.0,
    "nanometre": 1.0,
    "nanometres": 1.0,
    "um": 1000.0,
    "µm": 1000.0,
    "μm": 1000.0,
    "micrometer": 1000.0,
    "micrometers": 1000.0,
    "micrometre": 1000.0,
    "micrometres": 1000.0,
    "micron": 1000.0,
    "microns": 1000.0,
    "mm": 1e6,
    "millimeter": 1e6,
    "millimeters": 1e6,
}


def unit_factor(units: Optional[str]) -> Optional[float]:
    """Factor that turns a value in `units` into nm; None when units are missing or unknown."""
    if units is None:
        return None
    key = str(units).strip().lower()
    if key in ("", "unknown", "index", "none"):
        return None
    return _UNIT_TO_NM.get(key)


def to_nm(value: float, units: Optional[str] = None) -> float:
    """Convert one wavelength/FWHM to nm. Without (known) units, guess from magnitude: ENVI files
    often omit units, and optical wavelengths below 30 can only be micrometres."""
    factor = unit_factor(units)
    if factor is None:  # callers with a FWHM pass the centre's units: a 7 nm FWHM is not 7 µm
        factor = 1000.0 if 0 < abs(value) < 30 else 1.0
    return float(value) * factor


def guess_units(values: List[float]) -> str:
    """'Micrometers' or 'Nanometers' for a list of centre wavelengths with no units given."""
    finite = [v for v in values if v is not None and v > 0]
    return "Micrometers" if finite and max(finite) < 30 else "Nanometers"


def parse_number(text) -> Optional[float]:
    try:
        return float(str(text).strip())
    except (TypeError, ValueError):
        return None


def parse_envi_list(text: Optional[str]) -> Optional[List[float]]:
    """`{0.45, 0.55, …}` (ENVI header syntax, also plain comma lists) -> floats; None if unparsable."""
    if text is None:
        return None
    body = str(text).strip()
    if body.startswith("{") and body.endswith("}"):
        body = body[1:-1]
    parts = [p for p in re.split(r"[,\s]+", body) if p]
    values = [parse_number(p) for p in parts]
    if not values or any(v is None for v in values):
        return None
    return values  # type: ignore[return-value]


# "450 nm", "(418.24 Nanometers)", "0.665um" inside a band description.
_WAVELENGTH_IN_TEXT = re.compile(
    r"(\d+(?:\.\d+)?)\s*(nm|nanomet(?:er|re)s?|µm|μm|um|micromet(?:er|re)s?|microns?)\b", re.IGNORECASE
)


def wavelength_in_text(text: Optional[str]) -> Optional[float]:
    """A wavelength written with its unit in free text (band descriptions), in nm."""
    if not text:
        return None
    m = _WAVELENGTH_IN_TEXT.search(text)
    if not m:
        return None
    return to_nm(float(m.group(1)), m.group(2))
