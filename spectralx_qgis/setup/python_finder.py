"""Find the Python interpreter that belongs to the running QGIS, verified by running it.

Inside QGIS `sys.executable` is often QGIS itself (qgis.exe, qgis_process.bin, QGIS.app's binary), and
a `python` found on PATH may be a pyenv shim or another installation entirely: pip run with either
installs packages QGIS never sees. A candidate is accepted only if, run, it reports the same Python
version and the same `sys.prefix` as the running QGIS.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from .errors import InstallError

# Printed by the candidate itself: what it is and what it already has.
PROBE = r"""
import importlib.util, json, sys, sysconfig
def version(name):
    try:
        mod = __import__(name)
        return getattr(mod, "__version__", "unknown")
    except Exception:
        return None
print(json.dumps({"version": list(sys.version_info[:2]), "prefix": sys.prefix, "executable": sys.executable,
                  "platform": sysconfig.get_platform(), "numpy": version("numpy"),
                  "pip": version("pip") if importlib.util.find_spec("pip") else None}))
"""


@dataclass(frozen=True)
class Interpreter:
    path: str
    version: Tuple[int, int]
    prefix: str
    platform: str
    numpy: Optional[str]
    pip: Optional[str]

    @property
    def tag(self) -> str:
        """Names the folder its packages go to: binary wheels fit one Python version and platform."""
        return site_tag(self.version, self.platform)

    def describe(self) -> str:
        return f"{self.path} (Python {self.version[0]}.{self.version[1]}, {self.platform})"


def site_tag(version: Sequence[int], platform: str) -> str:
    return f"python{version[0]}.{version[1]}-{platform}".replace(" ", "_")


def probe(path: str, timeout: float = 60.0) -> Interpreter:
    """Run `path` and read what it is; InstallError if it is not a working Python."""
    try:
        proc = subprocess.run([path, "-c", PROBE], capture_output=True, text=True, timeout=timeout, env=child_env())
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise InstallError(f"{path} could not be run as Python: {exc}") from None
    try:
        info = json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise InstallError(
            f"{path} is not a working Python (exit {proc.returncode}: "
            f"{(proc.stderr or proc.stdout).strip()[-300:]})"
        ) from None
    return Interpreter(path, tuple(info["version"]), info["prefix"], info["platform"], info["numpy"], info["pip"])


def child_env() -> dict:
    """The environment for QGIS's interpreter run as a child: QGIS's own, PYTHONPATH and PYTHONHOME
    included (OSGeo4W and some Linux launchers set them), so the child sees the packages QGIS sees."""
    env = dict(os.environ)
    env.pop("PYTHONSTARTUP", None)  # interactive only; never run someone's startup file
    return env


def candidates(executable: str, prefix: str, version: Sequence[int]) -> List[str]:
    """Where QGIS's interpreter is, in order, for the usual layouts."""
    ver = f"{version[0]}.{version[1]}"
    here = os.path.dirname(executable) if executable else ""
    out = []
    if executable and os.path.basename(executable).lower().startswith("python"):
        out.append(executable)  # QGIS from a venv, conda, tests
    out += [
        os.path.join(prefix, "python.exe"),  # Windows: OSGeo4W apps\Python3x
        os.path.join(prefix, "bin", f"python{ver}"),  # Linux, conda, macOS framework
        os.path.join(prefix, "bin", "python3"),
        os.path.join(here, "python3") if here else "",  # macOS: QGIS.app/Contents/MacOS
        os.path.join(here, "bin", "python3") if here else "",
        getattr(sys, "_base_executable", ""),
    ]
    seen, result = set(), []
    for c in out:
        if c and c not in seen and os.path.isfile(c):
            seen.add(c)
            result.append(c)
    return result


def _is_shim(path: str) -> bool:
    parts = os.path.normpath(path).split(os.sep)
    return "shims" in parts  # pyenv, asdf


def find(
    executable: Optional[str] = None, prefix: Optional[str] = None, version: Optional[Sequence[int]] = None
) -> Interpreter:
    """QGIS's own Python; the arguments describe the running QGIS (default: this process)."""
    executable = sys.executable if executable is None else executable
    prefix = sys.prefix if prefix is None else prefix
    version = tuple(sys.version_info[:2]) if version is None else tuple(version)
    rejected = []
    for path in candidates(executable, prefix, version):
        if _is_shim(path):
            rejected.append(f"{path}: a version-manager shim, not QGIS's Python")
            continue
        try:
            found = probe(path)
        except InstallError as exc:
            rejected.append(str(exc))
            continue
        if found.version != version:
            rejected.append(
                f"{path}: Python {found.version[0]}.{found.version[1]}, QGIS runs {version[0]}.{version[1]}"
            )
        elif os.path.realpath(found.prefix) != os.path.realpath(prefix):
            rejected.append(f"{path}: belongs to {found.prefix}, QGIS's Python is {prefix}")
        else:
            return found
    detail = "; ".join(rejected) or "no python executable next to it"
    raise InstallError(
        f"QGIS's Python interpreter was not found (QGIS runs Python {version[0]}.{version[1]} "
        f"from {prefix}; {detail}); give its path in the installer's Python field"
    )
