"""The engine's errors, and their wording for each audience (the command line, the QGIS plugin).

Every user-facing failure is a SpectralXError whose message names the problem and what to do.
`for_cli(exc)` is the line the `spectralx` command prints; `for_qgis(exc)` is the same message in
the plugin's words (its controls and Processing parameters instead of command-line flags).
Torch-free: the plugin imports this before PyTorch is installed.
"""

from __future__ import annotations

import re
from typing import Dict

__all__ = [
    "SpectralXError",
    "CheckpointError",
    "BandMappingError",
    "RasterError",
    "LabelError",
    "Cancelled",
    "InputError",
    "OutputError",
    "ArgumentError",
    "Terminated",
    "one_line",
    "for_cli",
    "for_qgis",
    "MAX_ERROR_CHARS",
    "AUDIENCES",
    "REMEDIES",
    "Advice",
    "render",
    "translate",
    "explain",
]


class SpectralXError(Exception):
    """Base class: a problem with the user's input, not a bug."""


class CheckpointError(SpectralXError):
    """A checkpoint or backbone file is missing, damaged, unsafe or inconsistent."""


class BandMappingError(SpectralXError):
    """Raster bands cannot be mapped onto the checkpoint's input bands."""


class RasterError(SpectralXError):
    """A raster cannot be read, or an output cannot be written."""


class LabelError(SpectralXError):
    """Training or reference labels are unusable (field, extent, grid, classes)."""


class Cancelled(SpectralXError):
    """The user cancelled a run; partial outputs have been removed."""


class InputError(SpectralXError):
    """An input path is missing, a folder, or unreadable."""


class OutputError(SpectralXError):
    """An output cannot be written: it is an input, exists without --overwrite, or the write failed
    (nothing is left behind either way)."""


class ArgumentError(SpectralXError):
    """A command-line value is out of range (tile size, learning rate, band numbers, …)."""


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised like Ctrl-C so every cleanup path for an interrupt runs."""

    def __init__(self, signum: int, name: str):
        super().__init__(name)
        self.signum = signum
        self.name = name


# --- advice in the words of whoever reads it: command-line flags for the CLI, the panel's controls
# for the dock, parameter names for Processing. Messages raised with `[[remedy]]` markers (Advice)
# render per audience (`str(exc)` is the CLI's text); messages from elsewhere in the engine that name
# CLI flags are translated phrase by phrase with the same vocabulary, so a GUI user never reads a
# flag that exists nowhere in the GUI.

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
    "val_fraction": {
        "cli": "--val-fraction",
        "dock": "a validation fraction (SpectralX › Fine-tune in the " "Processing toolbox)",
        "processing": "VAL_FRACTION",
    },
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
    (re.compile(r"\(e\.g\. --sensor [\w:,]+\)"), None),  # an example that only makes sense on the CLI
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


MAX_ERROR_CHARS = 500  # an error line a terminal shows whole; long lists are cut in the middle


def one_line(text: object, limit: int = MAX_ERROR_CHARS) -> str:
    """Whitespace folded, control characters shown as escapes (a raw ESC from a file name or a
    band map would reach the terminal), and the middle of an overlong line elided so that what to do
    (at the end) stays."""
    text = " ".join(str(text).split())
    text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
    if len(text) > limit:
        head = limit * 2 // 3
        text = f"{text[:head]} … {text[-(limit - head - 3):]}"
    return text


def _system_message(exc: BaseException) -> str:
    """One line for an error from the system or a library (out of memory, disk full, a bad file)."""
    from ..fileio import is_out_of_space  # stdlib only: still torch-free

    if isinstance(exc, MemoryError):
        return "out of memory; try a smaller --batch-size or --tile-size, or a smaller window"
    if is_out_of_space(exc):
        return "no space left on the device; nothing was written"
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return one_line(first)


def for_cli(exc: BaseException) -> str:
    """The line `spectralx` prints on stderr for `exc` (flags named as on the command line)."""
    if isinstance(exc, Cancelled):
        return f"spectralx: {exc}"
    if isinstance(exc, Terminated):
        return f"spectralx: stopped by {exc.name}; unfinished outputs were removed"
    if isinstance(exc, KeyboardInterrupt):
        return "spectralx: interrupted; unfinished outputs were removed"
    if isinstance(exc, SpectralXError):
        return f"spectralx: error: {one_line(exc)}"
    return f"spectralx: error: {_system_message(exc)}"


def for_qgis(exc: BaseException, where: str = "dock") -> str:
    """The one-line text of an engine error in QGIS: `where` is "dock" (the panel's controls) or
    "processing" (parameter names such as SENSOR / BAND_MAP); never a command-line flag."""
    if where not in ("dock", "processing"):
        raise ValueError("where must be 'dock' or 'processing'")
    return explain(exc, where)
