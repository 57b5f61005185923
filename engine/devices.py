"""Compute devices: what this machine offers (for the plugin's device picker) and "auto" resolution.

Autocast policy lives here too so the CLI, Processing and the dock all run a model the same way:
bf16 on CUDA when the card supports it (fp16 otherwise or on request), fp16 on Apple MPS, full
precision on CPU (CPU autocast is slower than fp32 for these convolution-heavy models). "int8"
is no autocast but the CPU's quantized-backbone path (spectralx.inference.precision), which segment()
takes, alone or through auto.
"""

from __future__ import annotations

import contextlib
import os
from typing import ContextManager, List, Optional, Tuple

import torch

from .contract.options import PRECISIONS  # noqa: F401  (the one list; re-exported here)
from .errors import SpectralXError


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def available_devices() -> List[Tuple[str, str]]:
    """(id, label) pairs, CPU first; ids are accepted by `pick_device`."""
    devices = [("cpu", f"CPU ({os.cpu_count() or 1} cores)")]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            devices.append((f"cuda:{i}", f"CUDA {i}: {torch.cuda.get_device_name(i)}"))
    if _mps_available():
        devices.append(("mps", "Apple MPS"))
    return devices


def pick_device(name: Optional[str] = "auto") -> str:
    """Resolve "auto" (CUDA, then MPS, then CPU) and check an explicit choice exists here."""
    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if _mps_available() else "cpu"
    kind, _, index = name.partition(":")
    ok = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": _mps_available()}.get(kind)
    if ok is None:
        raise SpectralXError(f"unknown device '{name}'; use auto, cpu, cuda, cuda:N or mps")
    if not ok:
        have = ", ".join(d for d, _ in available_devices())
        raise SpectralXError(
            f"device '{name}' is not available on this machine (available: {have}); " "use --device auto or cpu"
        )
    if kind == "cuda" and index:
        if not index.isdigit() or int(index) >= torch.cuda.device_count():
            raise SpectralXError(f"no CUDA device {index}: this machine has {torch.cuda.device_count()}")
    return name


def autocast_dtype(device: str, precision: str = "auto") -> Optional[torch.dtype]:
    """The autocast dtype for a device, or None for full precision."""
    if precision not in PRECISIONS:
        raise SpectralXError(f"unknown precision '{precision}'; use one of {', '.join(PRECISIONS)}")
    kind = torch.device(device).type
    if precision == "int8":  # a quantized network, run without autocast; dynamic int8 is CPU-only in torch
        if kind != "cpu":
            raise SpectralXError(f"precision int8 runs on the CPU only, not on {device}; use auto, bf16 or fp16 there")
        return None
    if precision == "fp32" or kind == "cpu" and precision == "auto":
        return None
    if precision == "fp16":
        return torch.float16
    if precision == "bf16":
        return torch.bfloat16
    if kind == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if kind == "mps":
        return torch.float16
    return None


def autocast(device: str, precision: str = "auto") -> ContextManager:
    """Context manager for inference on `device`; a no-op where no autocast applies."""
    dtype = autocast_dtype(device, precision)
    if dtype is None:
        return contextlib.nullcontext()
    try:
        return torch.autocast(device_type=torch.device(device).type, dtype=dtype)
    except RuntimeError:  # an older torch without autocast for this device (e.g. MPS): full precision
        return contextlib.nullcontext()
