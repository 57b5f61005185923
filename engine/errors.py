"""Errors the engine raises on bad input.

Every user-facing failure is a SpectralXError whose message names the problem and what to do;
the CLI prints it on one line and exits non-zero, the plugin shows it in the message bar.
"""


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
