"""Band-mapping advice in the words of whoever reads it: command-line flags for the CLI, the panel's
controls for the dock, parameter names for Processing.

Messages raised here are written once with `[[remedy]]` markers; `Advice` renders them for the CLI
as its text (so `str(exc)` is what the CLI prints) and `explain(exc, audience)` renders them for
the plugin. Messages from elsewhere in the engine that name CLI flags are translated phrase by
phrase with the same vocabulary, so a GUI user never reads a flag that exists nowhere in the GUI.
"""
from __future__ import annotations

import re
from typing import Dict

from .errors import BandMappingError

AUDIENCES = ("cli", "dock", "processing")

# remedy -> audience -> words
REMEDIES: Dict[str, Dict[str, str]] = {
    "sensor": {
        "cli": "--sensor (e.g. landsat8:B2,B3,B4)",
        "dock": "the Sensor picker (sensor and the raster's band order)",
        "processing": "the SENSOR parameter (e.g. landsat8:B2,B3,B4)",
    },
    "sensor_name": {"cli": "--sensor", "dock": "the Sensor picker", "processing": "SENSOR"},
    "band_map": {
        "cli": "a band-map JSON (--band-map)",
        "dock": "a saved band map (Load band map…)",
        "processing": "a band-map JSON file (BAND_MAP)",
    },
    "by_position": {
        "cli": "--strategy index",
        "dock": "a raster band chosen by hand in each row of the band table",
        "processing": "a band map listing one raster band number per model band, e.g. [3, 2, 1]",
    },
    "tolerance": {
        "cli": "widen --tolerance",
        "dock": "choose the nearest raster band by hand in the band table",
        "processing": "a band map that names the raster band to use (BAND_MAP)",
    },
    "allow_fill": {
        "cli": "allow filling missing bands with the normalization mean (--allow-fill)",
        "dock": "fine-tune a new model from this raster",
        "processing": "fine-tune a new model from this raster (SpectralX › Fine-tune)",
    },
    "write_band_map": {
        "cli": "`spectralx bands RASTER -c CHECKPOINT -o MAP.json`",
        "dock": "Save band map… in the SpectralX panel",
        "processing": "Save band map… in the SpectralX panel (or `spectralx bands -o`)",
    },
    "class_field": {"cli": "--class-field", "dock": "the Class field", "processing": "CLASS_FIELD"},
    "val_fraction": {"cli": "--val-fraction", "dock": "a validation fraction (SpectralX › Fine-tune in the "
                     "Processing toolbox)", "processing": "VAL_FRACTION"},
}

_MARK = re.compile(r"\[\[(\w+)\]\]")


def render(template: str, audience: str = "cli") -> str:
    if audience not in AUDIENCES:
        raise ValueError(f"audience must be one of {AUDIENCES}")
    return _MARK.sub(lambda m: REMEDIES[m.group(1)][audience], template)


class Advice(BandMappingError):
    """A band-mapping error whose remedies are named per audience (`str()` is the CLI wording)."""

    def __init__(self, template: str):
        self.template = template
        super().__init__(render(template, "cli"))

    def for_audience(self, audience: str) -> str:
        return render(self.template, audience)


# CLI phrases other engine modules use, longest first, -> remedy key
_FLAG_PHRASES = [
    (re.compile(r"\(e\.g\. --sensor [\w:,]+\)"), None),     # an example that only makes sense on the CLI
    (re.compile(r"`spectralx bands[^`]*-o[^`]*`"), "write_band_map"),
    (re.compile(r"--sensor \w+:\S*"), "sensor"),
    (re.compile(r"--sensor"), "sensor_name"),
    (re.compile(r"--band-map"), "band_map"),
    (re.compile(r"--strategy index"), "by_position"),
    (re.compile(r"widen --tolerance|--tolerance"), "tolerance"),
    (re.compile(r"--allow-fill"), "allow_fill"),
    (re.compile(r"--class-field"), "class_field"),
    (re.compile(r"--val-fraction"), "val_fraction"),
]


def translate(message: str, audience: str) -> str:
    """Replace CLI flags in a plain message by the `audience`'s words (no-op for the CLI)."""
    if audience == "cli":
        return message
    for pattern, key in _FLAG_PHRASES:
        message = pattern.sub("" if key is None else REMEDIES[key][audience], message)
    return re.sub(r"\s{2,}", " ", message).replace(" ;", ";").replace("( ", "(")


def explain(exc: BaseException, audience: str) -> str:
    """The one-line text of an engine error for `audience` ("cli", "dock" or "processing")."""
    if isinstance(exc, Advice):
        return exc.for_audience(audience)
    return translate(str(exc), audience)
