"""The engine's errors, and their wording for each audience (the command line, the QGIS plugin).

Every user-facing failure is a SpectralXError whose message names the problem and what to do.
`for_cli(exc)` is the line the `spectralx` command prints; `for_qgis(exc)` is the same message in
the plugin's words (its controls and Processing parameters instead of command-line flags).
Torch-free: the plugin imports this before PyTorch is installed.
"""
from __future__ import annotations

__all__ = ["SpectralXError", "CheckpointError", "BandMappingError", "RasterError", "LabelError", "Cancelled",
           "InputError", "OutputError", "ArgumentError", "Terminated", "one_line", "for_cli", "for_qgis",
           "MAX_ERROR_CHARS"]


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


MAX_ERROR_CHARS = 500     # an error line a terminal shows whole; long lists are cut in the middle


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
    from ..fileio import is_out_of_space   # stdlib only: still torch-free
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
    from .wording import explain
    if where not in ("dock", "processing"):
        raise ValueError("where must be 'dock' or 'processing'")
    return explain(exc, where)
