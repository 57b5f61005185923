"""Run defaults and settings keys shared by the CLI, the Processing algorithms and the dock.

One place for every number a user sees pre-filled, so the three front ends cannot drift apart.
Inference defaults live here. Training defaults belong to `spectralx.training` (its function
signatures): `training_default()` reads them from there without importing torch, so the QGIS
toolbox can show them while PyTorch is still missing.
"""
from __future__ import annotations

import ast
import functools
import os
from typing import Any

# --- inference (segment) ---------------------------------------------------------------------------
OVERLAP = 0.25            # fraction of a tile shared with each neighbour (blended)
OVERLAP_MAX = 0.75        # beyond this almost every pixel is predicted many times for little gain
BATCH_SIZE = 4            # tiles per forward pass: safe on a CPU and a 4 GB GPU
BATCH_SIZE_MAX = 256
DEVICE = "auto"           # CUDA, then Apple MPS, then CPU
CONFIDENCE_FORMAT = "float32"

# --- training: limits of the input widgets (the defaults themselves: training_default()) -----------
STEPS_MAX = 1_000_000
LEARNING_RATE_MIN, LEARNING_RATE_MAX = 1e-7, 1.0
VAL_FRACTION_MAX = 0.9

# --- QGIS settings keys (QgsSettings), one place for the dock, Processing and the tools ------------
SETTINGS_GROUP = "SpectralX"
SETTING_OUTPUT_DIR = f"{SETTINGS_GROUP}/outputDir"              # the dock's output folder
SETTING_CHECKPOINTS = f"{SETTINGS_GROUP}/checkpoints"           # recently used checkpoints (list)
SETTING_BACKBONES = f"{SETTINGS_GROUP}/backbones"               # + "/<sha256>": backbone file path
SETTING_BAND_MAP_DIR = f"{SETTINGS_GROUP}/bandMapDir"           # last folder of Load/Save band map
SETTING_SENSORS = f"{SETTINGS_GROUP}/sensors"                   # + "/<raster path hash>": sensor spec


def backbone_setting(sha256: str) -> str:
    return f"{SETTING_BACKBONES}/{sha256}"


def default_output_dir() -> str:
    return os.path.join(os.path.expanduser("~"), "SpectralX")


_TRAINING_FILES = {"finetune": "finetune.py", "pretrain": "pretrain.py"}


def _parse(name: str):
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "training", name)
    if not os.path.isfile(path):
        return None
    with open(path, encoding="utf-8") as f:
        return ast.parse(f.read(), path)


def _function_defaults(tree, function: str) -> dict:
    for node in tree.body if tree is not None else []:
        if isinstance(node, ast.FunctionDef) and node.name == function:
            args = node.args
            out = {}
            positional = args.posonlyargs + args.args
            for arg, default in zip(positional[len(positional) - len(args.defaults):], args.defaults):
                out[arg.arg] = default
            for arg, default in zip(args.kwonlyargs, args.kw_defaults):
                if default is not None:
                    out[arg.arg] = default
            return out
    return {}


def _options_defaults(tree, cls: str) -> dict:
    """Field defaults of a dataclass such as `FinetuneOptions` (training/options.py)."""
    for node in tree.body if tree is not None else []:
        if isinstance(node, ast.ClassDef) and node.name == cls:
            return {n.target.id: n.value for n in node.body
                    if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name) and n.value is not None}
    return {}


@functools.lru_cache(maxsize=None)
def _literal_defaults(function: str) -> dict:
    found = _options_defaults(_parse("options.py"), f"{function.capitalize()}Options")
    found.update(_function_defaults(_parse(_TRAINING_FILES[function]), function))
    return {k: ast.literal_eval(v) for k, v in found.items() if _is_literal(v)}


def _is_literal(node) -> bool:
    try:
        ast.literal_eval(node)
        return True
    except ValueError:
        return False


def training_default(function: str, name: str) -> Any:
    """The default of option `name` of `spectralx.training.<function>` ("finetune" or "pretrain"):
    its keyword default, or its options dataclass field (`FinetuneOptions`), read from the source
    without importing torch. None when the engine leaves it to the method (e.g. the learning rate).
    The training package stays the one place these are set."""
    return _literal_defaults(function).get(name)
