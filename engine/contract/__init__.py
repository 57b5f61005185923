"""The engine's torch-free contract: what the QGIS plugin (and any other front end) may rely on.

Importing it needs only the standard library and numpy: no torch, rasterio or GDAL. It holds the
error classes and their wording per audience (`errors`), run defaults (`defaults`) and option
dataclasses (`options`), the model card and safetensors header reader (`card`), the model folder
and backbone search order (`model_folder`), the band-mapping type (`band_mapping`) and the
release/family registry (`registry`). The engine's own modules re-export these names where they
always lived (spectralx.errors, spectralx.checkpoint, …); each is implemented here once.
"""

from . import defaults
from .band_mapping import BandMapping
from .card import BackboneRef, Band, ClassInfo, ModelCard, Normalization, read_card, read_header
from .errors import (
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
)
from .model_folder import backbone_candidates, user_model_dir
from .options import PRECISIONS, FinetuneOptions, PretrainOptions, SegmentOptions
from .registry import FAMILIES, CatalogError, Release, load_releases

__all__ = [
    "defaults",
    "BandMapping",
    "BackboneRef",
    "Band",
    "ClassInfo",
    "ModelCard",
    "Normalization",
    "read_card",
    "read_header",
    "ArgumentError",
    "BandMappingError",
    "Cancelled",
    "CheckpointError",
    "InputError",
    "LabelError",
    "OutputError",
    "RasterError",
    "SpectralXError",
    "Terminated",
    "for_cli",
    "for_qgis",
    "backbone_candidates",
    "user_model_dir",
    "PRECISIONS",
    "FinetuneOptions",
    "PretrainOptions",
    "SegmentOptions",
    "FAMILIES",
    "CatalogError",
    "Release",
    "load_releases",
]
