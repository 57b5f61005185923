"""Dependency check and engine import for the plugin.

The plugin must load even when QGIS's Python lacks torch, rasterio or safetensors: nothing here
imports them at module level. `check()` tries the real imports once (a broken install fails as
clearly as a missing one) and `guidance()` says what is missing and how to get it: the installer
(panel button, Processing algorithm) first, the manual pip command as the fallback. Both use the one
pinned list, `requirements.txt` (see requirements.py).

The engine is imported through the plugin's one import point, `spectralx_qgis._vendor.spectralx`: the
copy bundled by `make package` when present, else the installed `spectralx` package (see
`_vendor/__init__.py`). Plugin modules import engine modules that need torch inside functions, after
`require()`, which raises MissingDependencies with the guidance.
"""

from __future__ import annotations

import importlib
import os
import sys
import sysconfig
from typing import Dict, List, Optional, Tuple

from . import requirements

# (import name, pip requirement, what it is for): numpy always comes from QGIS; the rest is the pinned list
REQUIREMENTS: List[Tuple[str, str, str]] = [("numpy", "numpy", "arrays (QGIS's own)")] + [
    (r.import_name, r.line, r.why) for r in requirements.load()
]

_state: Dict[str, object] = {}


class MissingDependencies(Exception):
    """Raised by `require()` when the engine or one of its dependencies cannot be imported."""


def _try_import(name: str) -> Optional[str]:
    try:
        importlib.import_module(name)
    except Exception as exc:  # ImportError, OSError (DLL), RuntimeError (ABI mismatch)…
        return f"{type(exc).__name__}: {exc}".strip()
    return None


def check(refresh: bool = False) -> Dict[str, str]:
    """Return {package: reason} for every dependency (and the engine) that cannot be imported."""
    if refresh:
        _state.clear()
        importlib.invalidate_caches()  # a folder the installer just filled is seen now
    if "missing" not in _state:
        missing: Dict[str, str] = {}
        for mod, _pip, _why in REQUIREMENTS:
            err = _try_import(mod)
            if err:
                missing[mod] = err
        if not missing:
            try:
                _import_engine()
            except Exception as exc:
                missing["spectralx"] = f"{type(exc).__name__}: {exc}"
        _state["missing"] = missing
    return dict(_state["missing"])  # type: ignore[arg-type]


def ok() -> bool:
    return not check()


def probably_missing() -> List[str]:
    """Cheap check without importing anything (for QGIS start-up paths such as the toolbox):
    the packages Python cannot even find. `check()` is the real test."""
    if "missing" in _state:
        return sorted(_state["missing"])  # type: ignore[arg-type]
    import importlib.util

    out = []
    for mod, _pip, _why in REQUIREMENTS:
        try:
            if importlib.util.find_spec(mod) is None:
                out.append(mod)
        except Exception:  # noqa: BLE001  (ValueError/AttributeError for odd sys.modules entries)
            out.append(mod)
    return out


def qgis_python() -> str:
    """The Python interpreter that belongs to the running QGIS, verified (python_finder); a plain
    `pythonX.Y` when none is found (the guidance then says so)."""
    if "python" not in _state:
        from . import python_finder

        try:
            _state["python"] = python_finder.find().path
        except Exception:  # noqa: BLE001  (InstallError: none found)
            _state["python"] = f"python{sys.version_info.major}.{sys.version_info.minor}"
    return _state["python"]  # type: ignore[return-value]


def _externally_managed() -> bool:
    try:
        return os.path.isfile(os.path.join(sysconfig.get_paths()["stdlib"], "EXTERNALLY-MANAGED"))
    except Exception:
        return False


def install_command() -> str:
    """The manual fallback: pip installs the pinned list into this QGIS's Python (user site)."""
    py = qgis_python()
    quoted = f'"{py}"' if " " in py else py
    req = requirements.PATH
    req = f'"{req}"' if " " in req else req
    flags = ""
    in_venv = sys.prefix != getattr(sys, "base_prefix", sys.prefix)
    if not in_venv and (sys.platform.startswith("linux") or sys.platform == "darwin"):
        flags = " --user"
        if _externally_managed():
            flags += " --break-system-packages"
    keep = ""
    try:  # keep QGIS's own numpy: GDAL's and QGIS's bindings are built against it
        import numpy

        keep = f" numpy=={numpy.__version__}"
    except Exception:  # noqa: BLE001
        pass
    return f"{quoted} -m pip install{flags} -r {req}{keep}"


def requirement_list() -> str:
    """The pinned list, one requirement a line (what the panel, Processing and the README show)."""
    return "\n".join(requirements.lines())


def guidance(html: bool = False, command: bool = True) -> str:
    """What is missing and how to install it for this QGIS; empty when everything imports.
    `command=False` leaves out the manual command (the panel shows it in a field of its own)."""
    missing = check()
    if not missing:
        return ""
    lines = [
        "SpectralX cannot run yet: Python packages are missing from QGIS's Python "
        f"({qgis_python()}, Python {sys.version.split()[0]})."
    ]
    need = []
    for mod, pip, why in REQUIREMENTS:
        if mod in missing:
            lines.append(f"- {mod} ({why}): {missing[mod]}")
            need.append(pip)
    if "spectralx" in missing:
        lines.append(
            f"- the SpectralX engine could not be imported: {missing['spectralx']}. "
            "Reinstall the plugin from its zip (it bundles the engine)."
        )
    if need:
        lines.append(
            "Install them with the Install dependencies button in the SpectralX panel, or with "
            "Processing ▸ SpectralX ▸ Setup ▸ Install dependencies: it installs the pinned list "
            "into a folder of your QGIS profile (no administrator rights) and checks the GPU."
        )
        lines.append("Pinned list: " + ", ".join(requirements.lines()))
        if command:
            lines.append("Manual fallback, in a terminal:")
            lines.append("    " + install_command())
            if sys.platform.startswith("win"):
                lines.append("(on Windows run it in the OSGeo4W Shell that comes with QGIS)")
            lines.append("Then restart QGIS.")
    text = "\n".join(lines)
    if html:
        import html as _html

        body = []
        for ln in lines:
            esc = _html.escape(ln)
            # the command wraps at spaces (white-space:pre-wrap), never cut off at the panel's edge
            body.append(
                f"<p style='white-space:pre-wrap;font-family:monospace'>{esc.strip()}</p>"
                if ln.startswith("    ")
                else f"<p>{esc}</p>"
            )
        return "".join(body)
    return text


def engine_folder() -> Optional[str]:
    """The engine's source folder: the copy bundled in the plugin, else the checkout's engine/ (a
    development install); None when the engine is only an installed package."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the plugin folder
    for path in (os.path.join(here, "_vendor", "spectralx"), os.path.join(os.path.dirname(here), "engine")):
        if os.path.isfile(os.path.join(path, "__init__.py")):
            return path
    return None


def _import_engine():
    """The engine package, through the plugin's one import point (`_vendor`, see its docstring)."""
    from .._vendor import spectralx as engine

    return engine


def require() -> None:
    """Raise MissingDependencies with the guidance unless the engine and every dependency import: call
    it before importing an engine module that needs torch, rasterio or safetensors."""
    if check():
        raise MissingDependencies(guidance())


def engine_source() -> str:
    try:
        mod = _import_engine()
    except Exception:
        return "unavailable"
    kind = "bundled" if "._vendor." in mod.__name__ else "installed"
    return f"{kind} ({os.path.dirname(mod.__file__)})"
