"""Streaming sliding-window inference over rasters of any size (SPEC §5)."""

from .api import SegmentResult, resolve_mapping, segment
from .tiling import TilePlan, axis_starts, plan_tiles

__all__ = ["segment", "SegmentResult", "resolve_mapping", "TilePlan", "plan_tiles", "axis_starts"]
