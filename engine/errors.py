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
