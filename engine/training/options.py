"""Fine-tuning options (defined in spectralx.contract.options, the torch-free contract the plugin
imports; re-exported here, where the engine always found them)."""

from ..contract.options import (  # noqa: F401
    CLASS_WEIGHTINGS,
    FUSIONS,
    METHODS,
    NETWORK_METHODS,
    VARIANTS,
    FinetuneOptions,
    PretrainOptions,
)

__all__ = [
    "CLASS_WEIGHTINGS",
    "FUSIONS",
    "METHODS",
    "NETWORK_METHODS",
    "VARIANTS",
    "FinetuneOptions",
    "PretrainOptions",
]
