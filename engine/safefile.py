"""Safe reading of tensor files: safetensors directly, torch pickles through a restricted unpickler.

Nothing in a weights file is ever executed. safetensors has no code path. Torch pickles (zip or
legacy format) go through torch's own `weights_only` unpickler, which builds only tensors, storages
and plain containers and calls no function outside its allow-list; we extend that list with a few
classes that real releases pickle and that are inert when rebuilt (see SAFE_GLOBALS). Before that,
the pickle's global references are listed statically (pickletools, nothing is run) so a refusal names
the global the file would have called.

Formats are told apart by their real rules, not a first-byte guess: a safetensors file is an 8-byte
little-endian length N followed by N bytes of JSON object (so its first byte can be anything,
0x80 included); a torch zip starts with the zip signature `PK\x03\x04`; a legacy pickle starts with
the PROTO opcode 0x80 and a protocol number 2-5.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pathlib
import re
from typing import Dict, List, Tuple

import numpy as np
import torch

from .contract.card import MAX_HEADER_BYTES, _safetensors_header, read_header, sniff_format  # noqa: F401
from .errors import CheckpointError
from .pickle_walk import check_tensor, plain_objects
from .torchzip import pickle_globals

PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")
_hash_cache: Dict[Tuple[str, int, float], str] = {}

# Extra globals a release pickle may name, beyond torch's own weights-only list (tensors, storages,
# OrderedDict, torch dtypes/devices). Each is safe to rebuild: the unpickler only creates the object
# with `cls.__new__` or calls the constructor below with plain values (strings, numbers, bytes), and
# none of them runs code or touches files when built.
#  - argparse.Namespace: the `args` of Scale-MAE / SatMAE++ / MAE checkpoints; an attribute bag whose
#    state is set by dict update. Turned into a plain dict after loading (plain_containers).
#  - pathlib paths: argument values in some training scripts; building one is string handling only.
#  - numpy scalar / dtype / ndarray reconstruction: optimizer and args values saved as numpy numbers;
#    object arrays still get their elements from this same restricted unpickler. A dtype's state is
#    applied to an instance of its per-type class (`numpy.dtype[float64]`), so those are listed too.
_NUMPY_DTYPE_CLASSES = [
    type(np.dtype(c))
    for c in (
        "bool",
        "int8",
        "uint8",
        "int16",
        "uint16",
        "int32",
        "uint32",
        "int64",
        "uint64",
        "float16",
        "float32",
        "float64",
        "complex64",
        "complex128",
    )
]
SAFE_GLOBALS = [
    argparse.Namespace,
    pathlib.PosixPath,
    pathlib.WindowsPath,
    pathlib.PurePosixPath,
    pathlib.PureWindowsPath,
    np.core.multiarray.scalar,
    np.dtype,
    np.core.multiarray._reconstruct,
    np.ndarray,
    *_NUMPY_DTYPE_CLASSES,
]
_SAFE_NAMES = {f"{g.__module__}.{g.__qualname__}" for g in SAFE_GLOBALS} | {
    "numpy.core.multiarray.scalar",
    "numpy.core.multiarray._reconstruct",
}


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


# the header reader is torch-free (spectralx.contract.card, which the plugin uses too); re-exported
# under the engine's long-standing name
read_safetensors_header = read_header


def read_safetensors(path: str) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """Tensors and metadata of a safetensors file, validated first."""
    header = read_safetensors_header(path)
    from safetensors.torch import load_file

    try:
        tensors = load_file(path, device="cpu")
    except Exception as exc:  # safetensors raises its own error types for damaged data
        raise CheckpointError(f"{path} is not a valid safetensors file: {exc}") from None
    return tensors, dict(header.get("__metadata__") or {})


def _refused_globals(path: str) -> List[str]:
    """Globals a torch zip pickle names that are outside both allow-lists (static scan, runs nothing)."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # legacy format or damaged zip: the unpickler below decides
        return []
    return [n for n in names if n not in _SAFE_NAMES]


def _refusal(path: str, names: List[str], verb: str = "call") -> CheckpointError:
    more = f" (and {len(names) - 1} more: {', '.join(names[1:4])})" if len(names) > 1 else ""
    return CheckpointError(
        f"refusing to load {os.path.basename(path)}: the file would {verb} {names[0]}{more}; SpectralX "
        "only reads tensors, plain values and argparse arguments from checkpoints and runs nothing from them"
    )


def _unpickler_reason(text: str) -> str:
    """The informative line of torch's multi-paragraph weights-only error."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    for ln in lines:
        if (
            ln.startswith(
                (
                    "Weights only load failed",
                    "(1)",
                    "(2)",
                    "Please file",
                    "Check the documentation",
                    "WeightsUnpickler error",
                )
            )
            or "weights_only" in ln
            and "Re-running" in ln
        ):
            continue
        return ln
    return lines[0] if lines else "unreadable"


def read_torch_pickle(path: str) -> object:
    """A torch checkpoint (zip or legacy) read by the restricted unpickler; Namespaces become dicts.

    Bounded before anything is expanded (torchzip: declared record sizes, a streamed pickle scan with
    an instruction budget) and after (pickle_walk: each object once, depth and entry limits, tensors
    that hold their own data)."""
    if os.path.isdir(path):
        raise CheckpointError(f"{path} is a folder, not a file; give the weights file itself")
    kind = sniff_format(path)
    if kind not in ("torch-zip", "pickle"):
        raise CheckpointError(f"{path} is not a torch checkpoint (neither a zip archive nor a pickle)")
    pickle_globals(path, kind)  # limits first: raises before torch reads anything
    refused = _refused_globals(path) if kind == "torch-zip" else []
    if refused:
        raise _refusal(path, refused)
    try:
        # zip checkpoints are memory-mapped: a release's optimizer state (twice the model) and decoder
        # are never read into memory, only the encoder tensors that are used
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=kind == "torch-zip")
    except Exception as exc:
        text = str(exc)
        m = re.search(r"GLOBAL ([\w.]+)", text) or re.search(r"global[^\w]+([\w]+\.[\w.]+)", text)
        if m:
            raise _refusal(path, [m.group(1)]) from None
        m = re.search(r"but got <class '([^']+)'>", text)
        if m:  # an allowed global rebuilt into a type outside the list (e.g. a numpy object array)
            raise _refusal(path, [m.group(1)], "build") from None
        reason = (
            " ".join(_unpickler_reason(text).split())
            if text.strip()
            else ("the file ends early: damaged or truncated" if isinstance(exc, EOFError) else type(exc).__name__)
        )
        raise CheckpointError(
            f"{path} cannot be loaded safely as weights ({reason[:200]}); SpectralX only reads tensors "
            "from .pth/.pt files and never runs code from them; convert it to .safetensors"
        ) from None
    plain, tensors = plain_objects(obj, path)
    for t, label in tensors:
        check_tensor(t, path, label)
    return plain


def plain_containers(obj: object) -> object:
    """Namespaces -> dicts and paths -> strings (each object once, bounded; see pickle_walk)."""
    return plain_objects(obj, "the checkpoint")[0]


def write_safetensors_atomic(tensors: Dict[str, torch.Tensor], metadata: Dict[str, str], path: str) -> None:
    """Write to a temporary file beside the target, fsync and rename on success only."""
    from safetensors.torch import save_file

    from .fileio import atomic_output

    directory = os.path.dirname(os.path.abspath(path)) or "."
    if not os.path.isdir(directory):
        raise CheckpointError(f"cannot write {path}: folder {directory} does not exist")
    with atomic_output(path) as tmp:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata=metadata)
