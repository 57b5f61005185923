"""Run options in one place: the CLI, the Processing algorithms and the dock all fill these.

Field defaults come from contract.defaults. Torch-free: the plugin builds and checks options before
PyTorch is installed; the engine's `segment`, `finetune` and `pretrain` take them.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Dict, Optional, Type, Union

from . import defaults as D
from .errors import SpectralXError

PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")  # segment's --precision names
CONFIDENCE_FORMATS = ("float32", "percent")
METHODS = ("spectralx", "lora", "slr", "full", "forest")
NETWORK_METHODS = METHODS[:4]
FUSIONS = ("forest", "none")
VARIANTS = ("default", "paper")
CLASS_WEIGHTINGS = ("none", "sqrt-inverse", "inverse")


def _build(cls: Type[Any], base: Any, kind: str, overrides: Dict[str, Any]) -> Any:
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(f"unknown {kind} option(s): {', '.join(unknown)}")
    opts = replace(base or cls(), **{k: v for k, v in overrides.items() if v is not None})
    opts.check()
    return opts


@dataclass
class SegmentOptions:
    """How `spectralx.inference.segment` runs (what, where and with which model are its arguments)."""

    overlap: float = D.OVERLAP
    batch_size: int = D.BATCH_SIZE
    device: str = D.DEVICE
    precision: str = D.PRECISION
    confidence_format: str = D.CONFIDENCE_FORMAT
    style: bool = True
    max_memory: Union[None, int, str] = None
    block_size: Optional[int] = None
    readers: Optional[int] = None

    @classmethod
    def build(cls, base: Optional["SegmentOptions"] = None, **overrides: Any) -> "SegmentOptions":
        """`base` (or the defaults) with the given fields replaced; None values keep the base's."""
        return _build(cls, base, "segment", overrides)

    def check(self) -> None:
        if not 0 <= float(self.overlap) < 1:
            raise SpectralXError(f"overlap must be in [0, 1), got {self.overlap}")
        if int(self.batch_size) < 1:
            raise SpectralXError(f"batch size must be at least 1, got {self.batch_size}")
        if self.precision not in PRECISIONS:
            raise SpectralXError(f"unknown precision '{self.precision}'; use one of {', '.join(PRECISIONS)}")
        if self.confidence_format not in CONFIDENCE_FORMATS:
            raise SpectralXError(f"confidence format must be one of {', '.join(CONFIDENCE_FORMATS)}")

    def to_kwargs(self) -> Dict[str, Any]:
        """The keywords of `segment()` these options stand for."""
        return asdict(self)


@dataclass
class FinetuneOptions:
    # what is trained
    method: str = D.FINETUNE_METHOD  # spectralx | lora | slr | full (PEFT baselines, SPEC §2) | forest
    #                                    (the per-pixel random forest alone, no network)
    variant: str = D.FINETUNE_VARIANT  # default | paper (the reference code's network and schedule)
    backbone_norms: Optional[bool] = None  # train the backbone's LayerNorms (None: yes)
    # schedule
    steps: int = D.FINETUNE_STEPS
    batch_size: int = D.FINETUNE_BATCH_SIZE
    lr: Optional[float] = None  # None: 1e-3 (default) or 1e-4 (paper)
    weight_decay: float = D.FINETUNE_WEIGHT_DECAY
    ema: float = D.FINETUNE_EMA  # exponential moving average of the trained weights (0 = off)
    # data
    augment: bool = D.FINETUNE_AUGMENT
    spectral_jitter: float = D.FINETUNE_SPECTRAL_JITTER  # sd of per-chip band gain/offset noise
    class_weighting: str = D.FINETUNE_CLASS_WEIGHTING
    label_smoothing: float = D.FINETUNE_LABEL_SMOOTHING
    # validation
    val_fraction: float = D.FINETUNE_VAL_FRACTION
    eval_every: Optional[int] = None  # None: steps/10, between 10 and 100
    patience: Optional[int] = D.FINETUNE_PATIENCE
    # losses
    balance_weight: float = D.FINETUNE_BALANCE_WEIGHT
    # after training
    baseline: bool = D.FINETUNE_BASELINE  # fit and score the random-forest baseline (SPEC §7)
    tta: bool = D.FINETUNE_TTA  # flip averaging at inference (recorded in the card)
    calibrate: bool = D.FINETUNE_CALIBRATE  # logit adjustment for rare classes, tau chosen on validation
    fuse: str = D.FINETUNE_FUSE  # pool the network with the forest, weight chosen on validation
    forest_context: int = D.FINETUNE_FOREST_CONTEXT  # the deployed forest also sees each pixel's 3x3
    #                                    mean spectrum (0: spectra alone)
    # run
    seed: int = D.SEED
    device: str = D.DEVICE

    @classmethod
    def build(cls, base: Optional["FinetuneOptions"] = None, **overrides: Any) -> "FinetuneOptions":
        """`base` (or the defaults) with the given fields replaced; None values keep the base's."""
        return _build(cls, base, "fine-tuning", overrides)

    @property
    def learning_rate(self) -> float:
        if self.lr is not None:
            return self.lr
        return D.FINETUNE_PAPER_LR if self.variant == "paper" else D.FINETUNE_LR

    @property
    def train_backbone_norms(self) -> bool:
        """On unless switched off: the reference code trains them in stage 2, and on the EnMAP dev
        case they were worth +0.03 test mIoU with the logit adjustment (docs/deviations.md)."""
        return True if self.backbone_norms is None else bool(self.backbone_norms)

    def check(self) -> None:
        if self.method not in METHODS:
            raise SpectralXError(f"unknown method '{self.method}'; use one of {', '.join(METHODS)}")
        if self.variant not in VARIANTS:
            raise SpectralXError(f"unknown variant '{self.variant}'; use one of {', '.join(VARIANTS)}")
        if self.class_weighting not in CLASS_WEIGHTINGS:
            raise SpectralXError(
                f"unknown class weighting '{self.class_weighting}'; use one of " f"{', '.join(CLASS_WEIGHTINGS)}"
            )
        if self.forest_context not in (0, 3, 5, 7):
            raise SpectralXError(
                f"forest neighbourhood must be 0 (spectra alone), 3, 5 or 7 pixels, " f"got {self.forest_context}"
            )
        if self.fuse not in FUSIONS:
            raise SpectralXError(f"unknown fusion '{self.fuse}'; use one of {', '.join(FUSIONS)}")
        # 0 steps is allowed from Python (the untrained network, flagged in its card); the command
        # line asks for at least 1
        if int(self.steps) < 0 or int(self.batch_size) < 1:
            raise SpectralXError("steps must be 0 or more and the batch size at least 1")
        if not math.isfinite(self.learning_rate) or self.learning_rate <= 0:
            raise SpectralXError(f"learning rate must be a positive number, got {self.learning_rate}")
        if not 0 <= self.val_fraction < 1:
            raise SpectralXError(f"validation fraction must be in [0, 1), got {self.val_fraction}")
        if not 0 <= self.ema < 1:
            raise SpectralXError(f"EMA decay must be in [0, 1), got {self.ema}")
        if not 0 <= self.spectral_jitter <= 1:
            raise SpectralXError(f"spectral jitter must be in [0, 1], got {self.spectral_jitter}")
        if not 0 <= self.label_smoothing < 1:
            raise SpectralXError(f"label smoothing must be in [0, 1), got {self.label_smoothing}")

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["lr"] = self.learning_rate
        d["backbone_norms"] = self.train_backbone_norms
        return d


@dataclass
class PretrainOptions:
    """Stage-1 (masked reconstruction) options of `spectralx.training.pretrain`."""

    steps: int = D.PRETRAIN_STEPS
    batch_size: int = D.PRETRAIN_BATCH_SIZE
    mask_ratio: float = D.PRETRAIN_MASK_RATIO
    lr: float = D.PRETRAIN_LR
    weight_decay: float = D.PRETRAIN_WEIGHT_DECAY
    balance_weight: float = D.PRETRAIN_BALANCE_WEIGHT
    variant: str = D.PRETRAIN_VARIANT  # network of a new model: default | paper
    seed: int = D.SEED
    device: str = D.DEVICE

    @classmethod
    def build(cls, base: Optional["PretrainOptions"] = None, **overrides: Any) -> "PretrainOptions":
        """`base` (or the defaults) with the given fields replaced; None values keep the base's."""
        return _build(cls, base, "pretraining", overrides)

    def check(self) -> None:
        if not 0 < self.mask_ratio < 1:
            raise SpectralXError(f"mask ratio must be in (0, 1), got {self.mask_ratio}")
        if self.steps < 1 or self.batch_size < 1:
            raise SpectralXError("steps and batch size must be at least 1")

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)
