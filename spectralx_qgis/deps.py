"""Dependency check and engine import for the plugin.

The plugin must load even when QGIS's Python lacks torch, rasterio or safetensors: nothing here
imports them at module level. `check()` tries the real imports once (a broken install fails as
clearly as a missing one) and `guidance()` explains, for *this* QGIS (its own Python executable),
exactly what to install and how. The Processing algorithms and the dock show the same text.

The engine is imported from a copy bundled inside the plugin (`spectralx_qgis._vendor.spectralx`,
added by `make package`) when present, else from an installed `spectralx` package. The engine uses
only relative imports, so the bundled copy needs no sys.path change and adds no top-level name.
"""
from __future__ import annotations

import importlib
import os
import sys
import sysconfig
from typing import Dict, List, Optional, Tuple

# (import name, pip requirement, what it is for)
REQUIREMENTS: List[Tuple[str, str, str]] = [
    ("numpy", "numpy<2", "arrays"),
    ("torch", "torch", "PyTorch, runs the neural network"),
    # rasterio 1.4 with affine 3 misbehaves with the numpy/GDAL of QGIS 3.22-era systems
    ("rasterio", "rasterio>=1.3,<1.4 affine>=2.3,<3", "reading and writing rasters"),
    ("safetensors", "safetensors>=0.4", "reading checkpoints safely"),
    ("sklearn", "scikit-learn>=1.1", "the random-forest baseline every fine-tuned model is compared with"),
]

_state: Dict[str, object] = {}


class MissingDependencies(Exception):
    """Raised by `engine()` when the engine or one of its dependencies cannot be imported."""


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
    """The Python interpreter that belongs to the running QGIS (not QGIS's own executable)."""
    exe = sys.executable or ""
    base = os.path.basename(exe).lower()
    if base.startswith("python") and os.path.isfile(exe):
        return exe
    ver = f"{sys.version_info.major}.{sys.version_info.minor}"
    prefix = sys.exec_prefix or sys.prefix
    candidates = [
        os.path.join(prefix, "python.exe"),                     # Windows / OSGeo4W apps\Python3x
        os.path.join(prefix, "bin", f"python{ver}"),            # Linux, macOS framework
        os.path.join(prefix, "bin", "python3"),
        os.path.join(os.path.dirname(exe), "python3"),          # macOS QGIS.app/Contents/MacOS
        os.path.join(os.path.dirname(exe), "bin", "python3"),
        getattr(sys, "_base_executable", ""),
    ]
    for c in candidates:
        if c and os.path.isfile(c):
            return c
    return f"python{ver}"


def _externally_managed() -> bool:
    try:
        return os.path.isfile(os.path.join(sysconfig.get_paths()["stdlib"], "EXTERNALLY-MANAGED"))
    except Exception:
        return False


def install_command(packages: Optional[List[str]] = None) -> str:
    """The pip command line that installs `packages` into this QGIS's Python."""
    if packages is None:
        packages = [pip for mod, pip, _ in REQUIREMENTS if mod in check()] or \
                   [pip for _m, pip, _w in REQUIREMENTS]
    py = qgis_python()
    quoted = f'"{py}"' if " " in py else py
    packages = [p for spec in packages for p in spec.split()]
    if "numpy" not in check() and not any(p.startswith("numpy") for p in packages):
        try:  # keep QGIS's own numpy: GDAL's and QGIS's bindings are built against it
            import numpy
            packages.append(f"numpy=={numpy.__version__}")
        except Exception:  # noqa: BLE001
            pass
    packages = [f'"{p}"' if any(c in p for c in "<>") else p for p in packages]
    flags = ""
    in_venv = sys.prefix != getattr(sys, "base_prefix", sys.prefix)
    if not in_venv and (sys.platform.startswith("linux") or sys.platform == "darwin"):
        flags = " --user"
        if _externally_managed():
            flags += " --break-system-packages"
    return f"{quoted} -m pip install{flags} {' '.join(packages)}"


def guidance(html: bool = False) -> str:
    """What is missing and how to install it for this QGIS; empty when everything imports."""
    missing = check()
    if not missing:
        return ""
    lines = ["SpectralX cannot run: some Python packages are missing from QGIS's Python "
             f"({qgis_python()}, Python {sys.version.split()[0]})."]
    need = []
    for mod, pip, why in REQUIREMENTS:
        if mod in missing:
            lines.append(f"- {mod} ({why}) is missing: {missing[mod]}")
            need.append(pip)
    if "spectralx" in missing:
        lines.append(f"- the SpectralX engine could not be imported: {missing['spectralx']}. "
                     "Reinstall the plugin from its zip (it bundles the engine).")
    if need:
        import importlib.util
        if importlib.util.find_spec("pip") is None:
            lines.append("pip is not installed for this Python; install it first (Debian/Ubuntu: "
                         "sudo apt install python3-pip).")
        lines.append("Install them for this QGIS with:")
        lines.append("    " + install_command(need))
        if sys.platform.startswith("win"):
            lines.append("(on Windows run it in the OSGeo4W Shell that comes with QGIS)")
        if "rasterio" in missing:
            # pip's rasterio wheel bundles its own GDAL; beside QGIS's it is a second GDAL in one process
            lines.append("Prefer a rasterio built against QGIS's own GDAL where your platform has one: "
                         "Debian/Ubuntu: sudo apt install python3-rasterio; OSGeo4W (Windows): the "
                         "python3-rasterio package in the OSGeo4W installer.")
        if "torch" in need:
            lines.append("For a smaller CPU-only PyTorch add "
                         "--index-url https://download.pytorch.org/whl/cpu when installing torch.")
        lines.append("Then restart QGIS.")
    text = "\n".join(lines)
    if html:
        import html as _html
        body = []
        for ln in lines:
            esc = _html.escape(ln)
            body.append(f"<pre>{esc.strip()}</pre>" if ln.startswith("    ") else f"<p>{esc}</p>")
        return "".join(body)
    return text


def _import_engine():
    if "engine" in _state:
        return _state["engine"]
    here = os.path.dirname(os.path.abspath(__file__))
    module = None
    if os.path.isfile(os.path.join(here, "_vendor", "spectralx", "__init__.py")):
        module = importlib.import_module(f"{__package__}._vendor.spectralx")
    else:
        module = importlib.import_module("spectralx")
    _state["engine"] = module
    return module


def engine(submodule: str = ""):
    """The engine package (or one of its submodules); raises MissingDependencies with guidance."""
    if check():
        raise MissingDependencies(guidance())
    root = _import_engine()
    if not submodule:
        return root
    try:
        return importlib.import_module(f"{root.__name__}.{submodule}")
    except ImportError as exc:
        raise MissingDependencies(
            f"this SpectralX engine has no '{submodule}' module ({exc}); update the plugin") from None


def engine_source() -> str:
    try:
        mod = _import_engine()
    except Exception:
        return "unavailable"
    kind = "bundled" if "._vendor." in mod.__name__ else "installed"
    return f"{kind} ({os.path.dirname(mod.__file__)})"


def defaults():
    """`spectralx.defaults` (run defaults, settings keys): pure Python, importable before torch is,
    so the toolbox and the panel show the same numbers as the CLI even while dependencies are missing.
    When the engine package itself cannot be imported, the module is loaded from its file (bundled
    copy or checkout), so that the panel and toolbox still build and show the guidance."""
    if "defaults" in _state:
        return _state["defaults"]
    try:
        module = importlib.import_module(f"{_import_engine().__name__}.defaults")
    except Exception:  # noqa: BLE001
        import importlib.util
        here = os.path.dirname(os.path.abspath(__file__))
        for path in (os.path.join(here, "_vendor", "spectralx", "defaults.py"),
                     os.path.join(os.path.dirname(here), "engine", "defaults.py")):
            if os.path.isfile(path):
                spec = importlib.util.spec_from_file_location("spectralx_qgis_engine_defaults", path)
                module = importlib.util.module_from_spec(spec)
                spec.loader.exec_module(module)
                break
        else:
            raise
    _state["defaults"] = module
    return module
