"""Errors the engine raises on bad input (defined in spectralx.contract.errors, the torch-free
contract the plugin imports; re-exported here, where the engine always found them)."""

from .contract.errors import (  # noqa: F401
    ArgumentError,
    BandMappingError,
    Cancelled,
    CheckpointError,
    InputError,
    LabelError,
    OutputError,
    RasterError,
    SpectralXError,
    Terminated,
    for_cli,
    for_qgis,
    one_line,
)

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
    "for_cli",
    "for_qgis",
    "one_line",
]
