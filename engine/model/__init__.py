"""The SpectralX network (plain PyTorch)."""

from .spectralx import STAGE_TRAINABLE, SpectralX

__all__ = ["SpectralX", "STAGE_TRAINABLE"]
