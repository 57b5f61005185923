"""Run defaults and settings keys shared by the CLI, the Processing algorithms and the dock.

One place for every number a user sees pre-filled, so the three front ends cannot drift apart.
Each is a plain constant; the option dataclasses (contract.options) take their field defaults from
here, and `training_default()` reads those fields, so the QGIS toolbox can show them while PyTorch
is still missing. Torch-free.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = [
    "OVERLAP",
    "OVERLAP_MAX",
    "BATCH_SIZE",
    "BATCH_SIZE_MAX",
    "DEVICE",
    "PRECISION",
    "CONFIDENCE_FORMAT",
    "BAND_MAP",
    "FINETUNE_METHOD",
    "FINETUNE_VARIANT",
    "FINETUNE_STEPS",
    "FINETUNE_BATCH_SIZE",
    "FINETUNE_LR",
    "FINETUNE_PAPER_LR",
    "FINETUNE_WEIGHT_DECAY",
    "FINETUNE_EMA",
    "FINETUNE_AUGMENT",
    "FINETUNE_SPECTRAL_JITTER",
    "FINETUNE_CLASS_WEIGHTING",
    "FINETUNE_LABEL_SMOOTHING",
    "FINETUNE_VAL_FRACTION",
    "FINETUNE_PATIENCE",
    "FINETUNE_BALANCE_WEIGHT",
    "FINETUNE_BASELINE",
    "FINETUNE_TTA",
    "FINETUNE_CALIBRATE",
    "FINETUNE_FUSE",
    "FINETUNE_FOREST_CONTEXT",
    "SEED",
    "PRETRAIN_STEPS",
    "PRETRAIN_BATCH_SIZE",
    "PRETRAIN_MASK_RATIO",
    "PRETRAIN_LR",
    "PRETRAIN_WEIGHT_DECAY",
    "PRETRAIN_BALANCE_WEIGHT",
    "PRETRAIN_VARIANT",
    "STEPS_MAX",
    "LEARNING_RATE_MIN",
    "LEARNING_RATE_MAX",
    "VAL_FRACTION_MAX",
    "SETTINGS_GROUP",
    "SETTING_OUTPUT_DIR",
    "SETTING_CHECKPOINTS",
    "SETTING_BACKBONES",
    "SETTING_BAND_MAP_DIR",
    "SETTING_SENSORS",
    "backbone_setting",
    "default_output_dir",
    "training_default",
]

# --- inference (segment) ---------------------------------------------------------------------------
# fraction of a tile shared with each neighbour (Hann-blended). 0.5: the network is less sure within
# ~12 px of a tile's edge; at 0.25 each overlap band comes only from tile edges and the dip repeats on
# the tile grid (tests/test_tile_periodic.py, docs/analyst-loop.md); at 0.5 the two weights sum to one
# and favour the tile a pixel is central in. Costs 2.25x the tiles of 0.25 (--overlap 0.25: faster).
OVERLAP = 0.5
OVERLAP_MAX = 0.75  # beyond this almost every pixel is predicted many times for little gain
BATCH_SIZE = 4  # tiles per forward pass: safe on a CPU and a 4 GB GPU
BATCH_SIZE_MAX = 256
DEVICE = "auto"  # CUDA, then Apple MPS, then CPU
PRECISION = "auto"  # measured on this machine (spectralx.inference.precision)
CONFIDENCE_FORMAT = "float32"
BAND_MAP = "auto"  # band mapping strategy / file when none is given

# --- fine-tuning (stage 2): the recipe a user gets with no tuning flags. Chosen on the two dev cases
# of bench/accuracy_bench.py only (EnMAP Potsdam tile split, Landsat 8 polygon halves), over seeds;
# docs/deviations.md has the ablation behind each one.
FINETUNE_METHOD = "spectralx"
FINETUNE_VARIANT = "default"
FINETUNE_STEPS = 300
FINETUNE_BATCH_SIZE = 4
FINETUNE_LR = 1e-3  # the default variant's learning rate (lr=None picks it)
FINETUNE_PAPER_LR = 1e-4  # the paper variant's
FINETUNE_WEIGHT_DECAY = 1e-4
FINETUNE_EMA = 0.0
FINETUNE_AUGMENT = True
FINETUNE_SPECTRAL_JITTER = 0.0
FINETUNE_CLASS_WEIGHTING = "none"
FINETUNE_LABEL_SMOOTHING = 0.0
FINETUNE_VAL_FRACTION = 0.2
FINETUNE_PATIENCE = 5
FINETUNE_BALANCE_WEIGHT = 0.01
FINETUNE_BASELINE = True
FINETUNE_TTA = False
FINETUNE_CALIBRATE = True
FINETUNE_FUSE = "forest"
FINETUNE_FOREST_CONTEXT = 3  # +0.018 test mIoU on the EnMAP dev case over spectra alone
SEED = 0

# --- pretraining (stage 1, masked reconstruction) --------------------------------------------------
PRETRAIN_STEPS = 500
PRETRAIN_BATCH_SIZE = 4
PRETRAIN_MASK_RATIO = 0.75
PRETRAIN_LR = 1e-3
PRETRAIN_WEIGHT_DECAY = 0.05
PRETRAIN_BALANCE_WEIGHT = 0.01
PRETRAIN_VARIANT = "default"

# --- training: limits of the input widgets ---------------------------------------------------------
STEPS_MAX = 1_000_000
LEARNING_RATE_MIN, LEARNING_RATE_MAX = 1e-7, 1.0
VAL_FRACTION_MAX = 0.9

# --- QGIS settings keys (QgsSettings), one place for the dock, Processing and the tools ------------
SETTINGS_GROUP = "SpectralX"
SETTING_OUTPUT_DIR = f"{SETTINGS_GROUP}/outputDir"  # the dock's output folder
SETTING_CHECKPOINTS = f"{SETTINGS_GROUP}/checkpoints"  # recently used checkpoints (list)
SETTING_BACKBONES = f"{SETTINGS_GROUP}/backbones"  # + "/<sha256>": backbone file path
SETTING_BAND_MAP_DIR = f"{SETTINGS_GROUP}/bandMapDir"  # last folder of Load/Save band map
SETTING_SENSORS = f"{SETTINGS_GROUP}/sensors"  # + "/<raster path hash>": sensor spec


def backbone_setting(sha256: str) -> str:
    return f"{SETTING_BACKBONES}/{sha256}"


def default_output_dir() -> str:
    return os.path.join(os.path.expanduser("~"), "SpectralX")


def training_default(function: str, name: str) -> Any:
    """The default of option `name` of `spectralx.training.<function>` ("finetune" or "pretrain"):
    the field of its options dataclass (FinetuneOptions, PretrainOptions). None when the engine
    leaves it to the method (e.g. the fine-tuning learning rate) or for an unknown name."""
    from dataclasses import MISSING, fields

    # imported here, not above: the options dataclasses take their field defaults from this module
    from .options import FinetuneOptions, PretrainOptions

    cls = {"finetune": FinetuneOptions, "pretrain": PretrainOptions}[function]
    for f in fields(cls):
        if f.name == name:
            return None if f.default is MISSING else f.default
    return None
