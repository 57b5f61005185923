"""The model card (SPEC §3) and the safetensors header it rides in, read without torch.

A SpectralX checkpoint is one safetensors file whose metadata holds a JSON model card: bands,
classes, normalization, backbone reference, provenance. Reading a card needs only the file's header
(an 8-byte little-endian length N, then N bytes of JSON), so the plugin lists and checks models
while PyTorch is still missing; spectralx.checkpoint builds and loads the network from it.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import struct
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from .. import __version__
from .errors import CheckpointError, InputError

if TYPE_CHECKING:
    from ..config import ModelConfig

__all__ = [
    "CARD_KEY",
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "FOREST_METHOD",
    "NO_BACKBONE",
    "FOREST_NOT_NETWORK",
    "MAX_HEADER_BYTES",
    "Band",
    "ClassInfo",
    "Normalization",
    "BackboneRef",
    "ModelCard",
    "read_card",
    "read_header",
    "sniff_format",
]

MAX_HEADER_BYTES = 100_000_000  # the safetensors library's own limit on the JSON header
CARD_KEY = "spectralx_model_card"
FOREST_METHOD = "forest"
NO_BACKBONE = "none"  # a forest checkpoint's backbone reference
FOREST_NOT_NETWORK = (
    "a random forest, not a SpectralX network: it has no network or backbone to fine-tune; "
    "start a new model from a backbone (--backbone)"
)
FORMAT_NAME = "spectralx-checkpoint"
FORMAT_VERSION = 1


@dataclass
class Band:
    name: str
    wavelength_nm: float
    fwhm_nm: Optional[float] = None


@dataclass
class ClassInfo:
    value: int
    name: str
    color: str  # "#rrggbb"


@dataclass
class Normalization:
    """Scene-level per-band statistics: x' = (x * scale + offset - mean) / std, then clipped.

    `scale`/`offset` turn stored integers into physical units (e.g. reflectance 0.0001); the same
    transform is used in training and inference so tiles never get their own min-max (no seams).
    """

    method: str = "zscore"  # "zscore" or "none"
    mean: List[float] = field(default_factory=list)
    std: List[float] = field(default_factory=list)
    clip: float = 6.0


@dataclass
class BackboneRef:
    file: str
    sha256: str
    preset: str
    description: str = ""
    # where the backbone was when the checkpoint was written: found there too if it is not beside
    # the checkpoint (the user's file is referenced, never hard-linked); its sha256 is still checked
    path: str = ""


@dataclass
class ModelCard:
    architecture: Dict[str, Any]
    bands: List[Band]
    classes: List[ClassInfo]
    backbone: BackboneRef
    normalization: Normalization = field(default_factory=Normalization)
    gsd_m: Optional[float] = None
    stage: str = "init"  # init | pretrain | finetune
    training: Dict[str, Any] = field(default_factory=dict)
    metrics: Dict[str, Any] = field(default_factory=dict)
    description: str = ""
    format: str = FORMAT_NAME
    format_version: int = FORMAT_VERSION
    engine_version: str = __version__
    created: str = field(default_factory=lambda: _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))

    @property
    def config(self) -> "ModelConfig":
        if self.is_forest:
            raise CheckpointError(f"this checkpoint: {FOREST_NOT_NETWORK}")
        from ..config import ModelConfig  # torch-free; imported here because config imports errors

        return ModelConfig.from_dict(self.architecture)

    @property
    def is_forest(self) -> bool:
        """A forest-only checkpoint (`finetune --method forest`): no network, no backbone."""
        return self.architecture.get("method") == FOREST_METHOD

    @property
    def fusion_weight(self) -> float:
        """Weight of the forest pooled with the network at inference (0: the network alone)."""
        if self.is_forest:
            return 1.0
        w = ((self.training or {}).get("fusion") or {}).get("weight", 0.0)
        return float(w) if _is_number(w) and 0 <= w <= 1 else 0.0

    @property
    def map_source(self) -> str:
        """Which model makes this checkpoint's map, in words (cards, logs, the dock)."""
        w = self.fusion_weight
        if w >= 1:
            ctx = int((self.architecture.get("forest") or {}).get("context") or 0) if self.is_forest else 0
            return (
                f"random forest (spectra + {ctx}x{ctx} mean spectrum)" if ctx else "random forest (per-pixel spectra)"
            )
        if w > 0:
            return f"SpectralX network pooled with a random forest (forest weight {w:g})"
        return "SpectralX network"

    @property
    def tile_size(self) -> int:
        return int(self.architecture["img_size"])

    def to_json(self) -> str:
        d = asdict(self)
        d["tile_size"] = self.tile_size
        return json.dumps(d, indent=1)

    @classmethod
    def from_json(cls, text: str, source: str = "model card") -> "ModelCard":
        try:
            d = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{source}: model card is not valid JSON ({exc})") from None
        if not isinstance(d, dict) or d.get("format") != FORMAT_NAME:
            raise CheckpointError(f"{source}: not a SpectralX model card")
        if int(d.get("format_version", 0)) > FORMAT_VERSION:
            raise CheckpointError(
                f"{source}: checkpoint format {d['format_version']} is newer than this SpectralX "
                f"({FORMAT_VERSION}); update the plugin"
            )
        d.pop("tile_size", None)
        _check_card_values(d, source)
        try:
            return cls(
                architecture=d.pop("architecture"),
                bands=[Band(**b) for b in d.pop("bands")],
                classes=[ClassInfo(**c) for c in d.pop("classes")],
                backbone=BackboneRef(**d.pop("backbone")),
                normalization=Normalization(**d.pop("normalization", {})),
                **d,
            )
        except (KeyError, TypeError) as exc:
            raise CheckpointError(f"{source}: model card is incomplete or malformed ({exc})") from None

    def class_names(self) -> Dict[int, str]:
        return {c.value: c.name for c in self.classes}


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_card_values(d: dict, source: str) -> None:
    """Values a network cannot run with are named here, in one line, instead of failing later (a
    string wavelength) or silently producing garbage (a zero standard deviation)."""
    bands = d.get("bands")
    if not isinstance(bands, list) or not all(isinstance(b, dict) for b in bands):
        raise CheckpointError(f"{source}: model card 'bands' must be a list of objects")
    for i, b in enumerate(bands, 1):
        wl, fwhm = b.get("wavelength_nm"), b.get("fwhm_nm")
        if not _is_number(wl) or wl <= 0:
            raise CheckpointError(
                f"{source}: model card band {i} ({b.get('name', '?')}) has wavelength "
                f"{wl!r}; it must be a positive number of nm; the card is damaged"
            )
        if fwhm is not None and (not _is_number(fwhm) or fwhm < 0):
            raise CheckpointError(
                f"{source}: model card band {i} ({b.get('name', '?')}) has FWHM {fwhm!r}; "
                "it must be a number of nm or null"
            )
    norm = d.get("normalization") or {}
    if not isinstance(norm, dict):
        raise CheckpointError(f"{source}: model card 'normalization' must be an object")
    for key in ("mean", "std"):
        values = norm.get(key, [])
        if not isinstance(values, list) or not all(_is_number(v) for v in values):
            raise CheckpointError(f"{source}: normalization {key} must be a list of finite numbers")
        if values and len(values) != len(bands):
            raise CheckpointError(f"{source}: normalization {key} has {len(values)} values for " f"{len(bands)} bands")
    zero = [i for i, v in enumerate(norm.get("std", []), 1) if v <= 0]
    if zero and norm.get("method", "zscore") != "none":
        raise CheckpointError(
            f"{source}: normalization std of band {zero[0]} is {norm['std'][zero[0] - 1]:g} "
            f"({len(zero)} band(s) ≤ 0): dividing by it is undefined; the card is damaged, "
            "retrain or use another checkpoint"
        )
    classes = d.get("classes")
    if not isinstance(classes, list) or not all(isinstance(c, dict) for c in classes):
        raise CheckpointError(f"{source}: model card 'classes' must be a list of objects")
    for c in classes:
        v = c.get("value")
        if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 255:
            raise CheckpointError(
                f"{source}: class {c.get('name', '?')!r} has value {v!r}; class values " "are whole numbers 1..255"
            )


def read_card(path: str) -> ModelCard:
    """Read only the model card (no tensors): cheap, for `info` and the plugin's checkpoint picker."""
    if os.path.isdir(path):
        raise InputError(f"checkpoint {path} is a folder, not a file; give the .safetensors file itself")
    header = read_header(path)
    meta = header.get("__metadata__") or {}
    if CARD_KEY not in meta:
        raise CheckpointError(
            f"{path} is a safetensors file without a SpectralX model card; "
            "is it a backbone or another tool's weights?"
        )
    return ModelCard.from_json(meta[CARD_KEY], source=path)


# --- the safetensors header: an 8-byte little-endian length N, then N bytes of JSON object ----------


def _safetensors_header(f, size: int) -> Tuple[Optional[dict], int, str]:
    """(header, header length, "") if the open file is a safetensors file by its rules, else
    (None, 0, why not)."""
    f.seek(0)
    head = f.read(8)
    if len(head) < 8:
        return None, 0, "too short"
    (header_len,) = struct.unpack("<Q", head)
    if header_len < 2 or 8 + header_len > size:
        return None, 0, "damaged or truncated header"
    if header_len > MAX_HEADER_BYTES:
        return None, 0, f"header of {header_len:,} bytes, over the format's {MAX_HEADER_BYTES:,}"
    raw = f.read(header_len)
    if raw[:1] != b"{":
        return None, 0, "unreadable header"
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None, 0, "unreadable header"
    except RecursionError:
        return None, 0, "header nested too deeply"
    if not isinstance(header, dict):
        return None, 0, "bad header"
    return header, header_len, ""


def sniff_format(path: str) -> str:
    """'safetensors', 'torch-zip', 'pickle' or 'unknown', by each format's own rules."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(4)
        if head == b"PK\x03\x04":
            return "torch-zip"
        if _safetensors_header(f, size)[0] is not None:
            return "safetensors"
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return "pickle"
    return "unknown"


def read_header(path: str) -> dict:
    """Parse the JSON header of a safetensors file, with one-line errors for anything else."""
    if os.path.isdir(path):
        raise CheckpointError(f"{path} is a folder, not a file; give the weights file itself")
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: file not found")
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        header, header_len, why = _safetensors_header(f, size)
    if header is None:
        if sniff_format(path) in ("torch-zip", "pickle"):
            raise CheckpointError(
                f"{path} is a pickle/zip file, not safetensors; pickles are never loaded as checkpoints "
                "because unpickling can run code"
            )
        raise CheckpointError(f"{path} is not a valid safetensors file ({why})")
    ends = []
    for k, v in header.items():
        if k == "__metadata__" or not isinstance(v, dict) or "data_offsets" not in v:
            continue
        offsets = v["data_offsets"]
        if not (
            isinstance(offsets, list)
            and len(offsets) == 2
            and all(isinstance(o, int) and not isinstance(o, bool) and o >= 0 for o in offsets)
        ):
            raise CheckpointError(
                f"{path} is not a valid safetensors file (tensor {str(k)[:60]!r} has " "damaged data offsets)"
            )
        ends.append(offsets[1])
    data_end = max(ends, default=0)
    if 8 + header_len + data_end > size:
        raise CheckpointError(
            f"{path} is truncated: it holds {size} bytes but its header describes {8 + header_len + data_end}; "
            "copy or download it again"
        )
    return header
