"""Fine-tuning options in one place: the CLI, the Processing algorithm and the dock all fill these.

The defaults are the recipe a user gets with no tuning flags. They were chosen on the two dev cases
of `bench/accuracy_bench.py` only (EnMAP Potsdam tile split, Landsat 8 polygon halves), over seeds;
docs/deviations.md has the ablation behind each one.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Dict, Optional

from ..errors import SpectralXError

METHODS = ("spectralx", "lora", "slr", "full", "forest")
NETWORK_METHODS = METHODS[:4]
FUSIONS = ("forest", "none")
VARIANTS = ("default", "paper")
CLASS_WEIGHTINGS = ("none", "sqrt-inverse", "inverse")


@dataclass
class FinetuneOptions:
    # what is trained
    method: str = "spectralx"          # spectralx | lora | slr | full (PEFT baselines, SPEC §2) | forest
    #                                    (the per-pixel random forest alone, no network)
    variant: str = "default"           # default | paper (the reference code's network and schedule)
    backbone_norms: Optional[bool] = None   # train the backbone's LayerNorms (None: yes)
    # schedule
    steps: int = 300
    batch_size: int = 4
    lr: Optional[float] = None         # None: 1e-3 (default) or 1e-4 (paper)
    weight_decay: float = 1e-4
    ema: float = 0.0                   # exponential moving average of the trained weights (0 = off)
    # data
    augment: bool = True
    spectral_jitter: float = 0.0       # sd of per-chip band gain/offset noise on normalized spectra
    class_weighting: str = "none"
    label_smoothing: float = 0.0
    # validation
    val_fraction: float = 0.2
    eval_every: Optional[int] = None   # None: steps/10, between 10 and 100
    patience: Optional[int] = 5
    # losses
    balance_weight: float = 0.01
    # after training
    baseline: bool = True              # fit and score the random-forest baseline (SPEC §7)
    tta: bool = False                  # flip averaging at inference (recorded in the card)
    calibrate: bool = True             # logit adjustment for rare classes, tau chosen on validation
    fuse: str = "forest"               # pool the network with the forest, weight chosen on validation
    forest_context: int = 3            # the deployed forest also sees each pixel's 3x3 mean spectrum
    #                                    (0: spectra alone; +0.018 test mIoU on the EnMAP dev case)
    # run
    seed: int = 0
    device: str = "auto"

    @classmethod
    def build(cls, base: Optional["FinetuneOptions"] = None, **overrides: Any) -> "FinetuneOptions":
        """`base` (or the defaults) with the given fields replaced; None values keep the base's."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TypeError(f"unknown fine-tuning option(s): {', '.join(unknown)}")
        opts = replace(base or cls(), **{k: v for k, v in overrides.items() if v is not None})
        opts.check()
        return opts

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else (1e-4 if self.variant == "paper" else 1e-3)

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
            raise SpectralXError(f"unknown class weighting '{self.class_weighting}'; use one of "
                                 f"{', '.join(CLASS_WEIGHTINGS)}")
        if self.forest_context not in (0, 3, 5, 7):
            raise SpectralXError(f"forest neighbourhood must be 0 (spectra alone), 3, 5 or 7 pixels, "
                                 f"got {self.forest_context}")
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
