"""Typed run requests: what the dock gathers and the Processing algorithms parse, turned into the
engine's keyword arguments in exactly one place per kind of run.

`FinetuneRequest.engine_kwargs()` is THE place a fine-tune call is built (dock and Processing): new
training options (method, variant, …) are added as fields here and passed on below.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence


def _drop_none(d: Dict[str, Any]) -> Dict[str, Any]:
    """Unset options are left out so the engine's own defaults apply (one place for defaults)."""
    return {k: v for k, v in d.items() if v is not None}


@dataclass
class SegmentRequest:
    raster: str
    checkpoint: str
    output: str
    confidence: Optional[str] = None
    backbone: Optional[str] = None
    band_map: Any = "auto"  # "auto", a file path, a dict or a BandMapping
    sensor: Optional[str] = None  # "landsat8:B2,B3,B4"
    bbox: Optional[Sequence[float]] = None
    overlap: Optional[float] = None
    batch_size: Optional[int] = None
    device: str = "auto"
    precision: Optional[str] = None  # auto | fp32 | bf16 | fp16 | int8 (None: the engine's default)
    overwrite: bool = False

    def engine_args(self):
        """(positional, keyword) arguments of `spectralx.inference.segment`."""
        return (self.raster, self.checkpoint, self.output), _drop_none(
            dict(
                backbone=self.backbone,
                band_map=self.band_map,
                sensor=self.sensor,
                bbox=tuple(self.bbox) if self.bbox is not None else None,
                overlap=self.overlap,
                batch_size=self.batch_size,
                device=self.device,
                precision=self.precision,
                confidence=self.confidence,
                overwrite=self.overwrite,
            )
        )

    def outputs(self) -> List[str]:
        import os

        return [p for p in (self.output, self.confidence, os.path.splitext(self.output)[0] + ".qml") if p]


@dataclass
class FinetuneRequest:
    raster: str
    labels: str  # label raster burnt from the polygons (or a vector path)
    output: str
    class_field: Optional[str] = None
    checkpoint: Optional[str] = None
    backbone: Optional[str] = None
    sensor: Optional[str] = None
    band_map: Any = None
    steps: Optional[int] = None
    batch_size: Optional[int] = None
    lr: Optional[float] = None
    val_fraction: Optional[float] = None
    seed: Optional[int] = None
    device: str = "auto"
    method: Optional[str] = None  # spectralx (default) | lora | slr | full | forest
    variant: Optional[str] = None  # default | paper
    fuse: Optional[str] = None  # forest (default: pooled, weight chosen on validation) | none
    extra: Dict[str, Any] = field(default_factory=dict)  # further spectralx.training.finetune options

    def engine_args(self):
        """(positional, keyword) arguments of `spectralx.training.finetune`."""
        kwargs = _drop_none(
            dict(
                class_field=self.class_field,
                checkpoint=self.checkpoint,
                backbone=self.backbone,
                sensor=self.sensor,
                band_map=self.band_map,
                steps=self.steps,
                batch_size=self.batch_size,
                lr=self.lr,
                val_fraction=self.val_fraction,
                seed=self.seed,
                device=self.device,
                method=self.method,
                variant=self.variant,
                fuse=self.fuse,
            )
        )
        kwargs.update(self.extra)
        if self.method == "forest":  # trained from the raster's own bands: no network to start from
            kwargs.pop("checkpoint", None)
            kwargs.pop("backbone", None)
        return (self.raster, self.labels, self.output), kwargs


@dataclass
class PretrainRequest:
    images: List[str]
    output: str
    checkpoint: Optional[str] = None
    backbone: Optional[str] = None
    sensor: Optional[str] = None
    steps: Optional[int] = None
    batch_size: Optional[int] = None
    device: str = "auto"

    def engine_args(self):
        return (list(self.images), self.output), _drop_none(
            dict(
                checkpoint=self.checkpoint,
                backbone=self.backbone,
                sensor=self.sensor,
                steps=self.steps,
                batch_size=self.batch_size,
                device=self.device,
            )
        )
