"""Safe reading of tensor files: safetensors directly, torch pickles only with weights_only=True.

Nothing in a weights file is ever executed: safetensors has no code path, and torch.load with
weights_only=True refuses any pickle opcode that would import or call an arbitrary object.
"""
from __future__ import annotations

import hashlib
import json
import os
import struct
from typing import Dict, Tuple

import torch

from .errors import CheckpointError

PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")
_hash_cache: Dict[Tuple[str, int, float], str] = {}


def sha256_file(path: str) -> str:
    """sha256 of a file, cached per (path, size, mtime) so repeated runs do not re-hash a backbone."""
    st = os.stat(path)
    key = (os.path.abspath(path), st.st_size, st.st_mtime)
    if key not in _hash_cache:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
        _hash_cache[key] = h.hexdigest()
    return _hash_cache[key]


def read_safetensors_header(path: str) -> dict:
    """Parse the JSON header of a safetensors file, with one-line errors for anything else."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: file not found")
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if head[:1] == b"\x80" or head[:2] == b"PK":
            raise CheckpointError(
                f"{path} is a pickle/zip file, not safetensors; pickles are never loaded as checkpoints "
                "because unpickling can run code")
        if len(head) < 8:
            raise CheckpointError(f"{path} is not a safetensors file (too short)")
        (header_len,) = struct.unpack("<Q", head)
        if header_len <= 1 or 8 + header_len > size:
            raise CheckpointError(f"{path} is not a valid safetensors file (damaged or truncated header)")
        try:
            header = json.loads(f.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise CheckpointError(f"{path} is not a valid safetensors file (unreadable header)") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path} is not a valid safetensors file (bad header)")
    data_end = max((v["data_offsets"][1] for k, v in header.items()
                    if k != "__metadata__" and isinstance(v, dict) and "data_offsets" in v), default=0)
    if 8 + header_len + data_end > size:
        raise CheckpointError(
            f"{path} is truncated: it holds {size} bytes but its header describes {8 + header_len + data_end}; "
            "copy or download it again")
    return header


def read_safetensors(path: str) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """Tensors and metadata of a safetensors file, validated first."""
    header = read_safetensors_header(path)
    from safetensors.torch import load_file
    try:
        tensors = load_file(path, device="cpu")
    except Exception as exc:  # safetensors raises its own error types for damaged data
        raise CheckpointError(f"{path} is not a valid safetensors file: {exc}") from None
    return tensors, dict(header.get("__metadata__") or {})


def read_torch_pickle(path: str) -> object:
    """torch.load restricted to tensors and plain containers (weights_only=True)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path} cannot be loaded safely as weights ({first[:200]}); SpectralX only reads tensors "
            "from .pth/.pt files and never runs code from them; convert it to .safetensors") from None


def write_safetensors_atomic(tensors: Dict[str, torch.Tensor], metadata: Dict[str, str], path: str) -> None:
    """Write to a temporary file beside the target and rename on success only."""
    from safetensors.torch import save_file
    directory = os.path.dirname(os.path.abspath(path)) or "."
    if not os.path.isdir(directory):
        raise CheckpointError(f"cannot write {path}: folder {directory} does not exist")
    tmp = os.path.join(directory, f".{os.path.basename(path)}.partial")
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata=metadata)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
