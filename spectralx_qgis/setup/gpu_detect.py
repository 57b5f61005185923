"""Which PyTorch build fits this machine: NVIDIA GPUs seen by `nvidia-smi`, and the wheel index.

PyTorch's CUDA wheels carry their own CUDA runtime but need a driver at least as new as that runtime
(NVIDIA's table of minimum driver versions per CUDA toolkit). The choice is only an offer: the
installer verifies afterwards that the GPU really runs a matrix product, and says so when it does not.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

INDEX = "https://download.pytorch.org/whl/{}"

# (build id, CUDA version, minimum driver on Linux, on Windows) for the torch release the plugin pins;
# newest first. Minimums: NVIDIA's CUDA toolkit release notes, table "CUDA Toolkit and Corresponding
# Driver Versions" (the GA release's driver).
CUDA_BUILDS: List[Tuple[str, str, str, str]] = [
    ("cu130", "13.0", "580.65.06", "580.88"),
    ("cu128", "12.8", "570.26", "570.65"),
    ("cu126", "12.6", "560.28.03", "560.76"),
]
# CUDA minor-version compatibility: any 12.x runtime runs on a driver from 12.0 on (no PTX JIT for
# newer architectures, which PyTorch's wheels do not need for the GPUs they ship code for).
CUDA12_COMPAT = ("525.60.13", "528.33")


@dataclass(frozen=True)
class Gpu:
    name: str
    driver: str
    memory_mib: int


@dataclass(frozen=True)
class Build:
    id: str  # "cpu", "cu128", … or "default" (the package index's own torch: macOS)
    label: str
    index_url: Optional[str]

    def torch_line(self, pinned: str) -> str:
        """`torch==2.13.0` -> `torch==2.13.0+cu128`: the local tag selects the build whatever the index order."""
        if self.id == "default" or "+" in pinned or "==" not in pinned:
            return pinned
        return f"{pinned}+{self.id}"


def _version(text: str) -> Tuple[int, ...]:
    return tuple(int(p) for p in text.split(".") if p.isdigit())


def nvidia_gpus(run: Callable = subprocess.run) -> List[Gpu]:
    """GPUs the NVIDIA driver reports; [] without a driver (no nvidia-smi, or it fails)."""
    exe = shutil.which("nvidia-smi")
    if exe is None and sys.platform.startswith("win"):
        exe = shutil.which(r"C:\Windows\System32\nvidia-smi.exe")
    if exe is None:
        return []
    try:
        proc = run(
            [exe, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    if proc.returncode != 0:
        return []
    return parse_nvidia_smi(proc.stdout)


def parse_nvidia_smi(text: str) -> List[Gpu]:
    gpus = []
    for line in text.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 3 or not parts[1]:
            continue
        try:
            memory = int(float(parts[2]))
        except ValueError:
            memory = 0
        gpus.append(Gpu(parts[0], parts[1], memory))
    return gpus


def builds(gpus: List[Gpu], platform: str = sys.platform) -> List[Build]:
    """The torch builds to offer, the recommended one first."""
    if platform == "darwin":  # PyPI's macOS wheel: CPU and Apple GPU (MPS)
        return [Build("default", "PyTorch for macOS (CPU and Apple GPU)", None)]
    cpu = Build("cpu", "CPU only (smaller download)", INDEX.format("cpu"))
    if not gpus:
        return [cpu]
    driver = _version(gpus[0].driver)
    column = 3 if platform.startswith("win") else 2
    gpu = f"{gpus[0].name}, driver {gpus[0].driver}"
    fitting = [
        Build(b[0], f"CUDA {b[1]} ({gpu})", INDEX.format(b[0])) for b in CUDA_BUILDS if driver >= _version(b[column])
    ]
    if not fitting and driver >= _version(CUDA12_COMPAT[column - 2]):
        b = next(b for b in reversed(CUDA_BUILDS) if b[1].startswith("12."))  # widest GPU support
        fitting = [
            Build(
                b[0],
                f"CUDA {b[1]} through minor-version compatibility ({gpu}; a driver "
                f"from {b[column]} is recommended)",
                INDEX.format(b[0]),
            )
        ]
    return fitting + [cpu]


def describe(gpus: List[Gpu]) -> str:
    if not gpus:
        return "no NVIDIA GPU found (nvidia-smi absent or reports none)"
    return "; ".join(f"{g.name}, {g.memory_mib} MiB, driver {g.driver}" for g in gpus)
