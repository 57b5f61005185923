"""Backbone families: recognise a released foundation-model state dict by its key names and map its
encoder onto the project's ViT (timm names plus the DINOv3 variant), dropping decoders.

`detect_family(keys)` names the family (or refuses an unsupported architecture in one line);
`convert(raw, family, ...)` returns the encoder state, the architecture it implies and what was dropped.
"""

from .common import Converted, strip_prefixes
from .registry import FAMILIES, FAMILY_NAMES, convert, detect_family

__all__ = ["Converted", "FAMILIES", "FAMILY_NAMES", "convert", "detect_family", "strip_prefixes"]
