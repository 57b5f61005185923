"""Fine-tuning options (defined in spectralx.contract.options, the torch-free contract the plugin
imports; re-exported here, where the engine always found them)."""
from ..contract.options import (CLASS_WEIGHTINGS, FUSIONS, METHODS, NETWORK_METHODS, VARIANTS,  # noqa: F401
                                FinetuneOptions, PretrainOptions)

__all__ = ["CLASS_WEIGHTINGS", "FUSIONS", "METHODS", "NETWORK_METHODS", "VARIANTS", "FinetuneOptions",
           "PretrainOptions"]
