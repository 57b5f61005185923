"""Verify an installation: import every package, run a matrix product on the chosen device, and say
what really happened ("CUDA: NVIDIA RTX 4070, matmul ok" or "CPU only: CUDA build found no GPU").

Runs standalone with QGIS's interpreter after an install (so a broken folder is found before it is
used), and in-process for Processing's "Check installation". Imports nothing from QGIS or the plugin.

    python verify_install.py --site FOLDER --device auto --modules torch,rasterio,... [--engine DIR]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from typing import Dict, List, Optional


def is_inside(path: Optional[str], folder: Optional[str]) -> bool:
    """`path` lies in `folder` (links resolved); False for a missing path or folder."""
    if not path or not folder:
        return False
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder + os.sep)


def import_all(modules: List[str], site: Optional[str] = None) -> Dict[str, dict]:
    """{module: {version, file, from_site} or {error}} for each module."""
    out = {}
    for name in modules:
        try:
            mod = importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001  ImportError, OSError (DLL), RuntimeError (ABI)…
            out[name] = {"error": f"{type(exc).__name__}: {exc}"[:400]}
            continue
        file = getattr(mod, "__file__", None)
        out[name] = {"version": str(getattr(mod, "__version__", "?")), "file": file, "from_site": is_inside(file, site)}
    return out


def _matmul_ok(torch, device: str) -> bool:
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(256, 256, generator=gen)
    expected = a.double() @ a.double()
    got = (a.to(device) @ a.to(device)).to("cpu").double()
    if device == "cuda":
        torch.cuda.synchronize()
    # TF32 on Ampere+ is ~1e-3 relative: a wrong device gives garbage, not 1 % errors
    return bool(torch.allclose(got, expected, rtol=1e-2, atol=1e-1))


def device_report(requested: str = "auto") -> dict:
    """Runs a product on `requested` (auto|cuda|mps|cpu) and reports the device that really ran it."""
    try:
        import torch
    except Exception as exc:  # noqa: BLE001
        return {"device": None, "ok": False, "line": f"PyTorch does not import: {type(exc).__name__}: {exc}"}
    version = torch.__version__
    cuda_build = getattr(torch.version, "cuda", None)
    notes = []
    if requested in ("auto", "cuda"):
        if torch.cuda.is_available():
            name = torch.cuda.get_device_name(0)
            try:
                ok = _matmul_ok(torch, "cuda")
            except Exception as exc:  # noqa: BLE001  (driver too old, no kernel image for this GPU, …)
                return {
                    "device": "cpu",
                    "ok": False,
                    "torch": version,
                    "cuda_build": cuda_build,
                    "line": f"CPU only: CUDA sees {name} but a product on it failed: {exc}"[:400],
                }
            return {
                "device": "cuda",
                "ok": ok,
                "name": name,
                "torch": version,
                "cuda_build": cuda_build,
                "line": f"CUDA: {name}, matmul {'ok' if ok else 'gave WRONG results'} "
                f"(torch {version}, CUDA {cuda_build})",
            }
        if cuda_build:
            notes.append(f"CUDA build (CUDA {cuda_build}) found no GPU")
        elif requested == "cuda":
            notes.append("this PyTorch is a CPU-only build")
    mps = getattr(getattr(torch, "backends", None), "mps", None)
    if requested in ("auto", "mps") and mps is not None and mps.is_available():
        ok = _matmul_ok(torch, "mps")
        return {
            "device": "mps",
            "ok": ok,
            "name": "Apple GPU",
            "torch": version,
            "line": f"MPS: Apple GPU, matmul {'ok' if ok else 'gave WRONG results'} (torch {version})",
        }
    if requested == "mps":
        notes.append("MPS (Apple GPU) is not available")
    ok = _matmul_ok(torch, "cpu")
    build = f"CUDA {cuda_build} build" if cuda_build else "CPU-only build"
    if notes:
        line = f"CPU only: {'; '.join(notes)}; matmul {'ok' if ok else 'gave WRONG results'} on the CPU"
    else:
        line = f"CPU: matmul {'ok' if ok else 'gave WRONG results'}"
    # a GPU asked for by name and not used is a failure, however well the CPU multiplies
    return {
        "device": "cpu",
        "ok": ok and requested in ("auto", "cpu"),
        "matmul_ok": ok,
        "torch": version,
        "cuda_build": cuda_build,
        "requested": requested,
        "line": f"{line} (torch {version}, {build}, {torch.get_num_threads()} threads)",
    }


def _load_engine(engine_dir: str):
    """The SpectralX engine from its folder, under a private name (it uses relative imports only).

    The one place the plugin package loads the engine from a path: this script checks the engine
    folder it is given (the plugin's bundled copy, or a copy under test) with a freshly installed
    package folder, in QGIS's own interpreter, where the plugin itself is not imported. The plugin's
    modules import the engine through `_vendor` (see _vendor/__init__.py)."""
    import importlib.util

    name = "_spectralx_verify"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(
        name, os.path.join(engine_dir, "__init__.py"), submodule_search_locations=[engine_dir]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def network_report(engine_dir: str, device: str) -> dict:
    """A small SpectralX network on `device` under the engine's own precision policy, against the CPU
    in float32: a matrix product can pass where the network's kernels fail (a dtype clash under
    CUDA autocast did exactly that)."""
    try:
        import torch

        _load_engine(engine_dir)
        from _spectralx_verify import config, devices
        from _spectralx_verify import model as model_mod

        torch.manual_seed(0)
        cfg = config.ModelConfig.from_preset("vit_tiny_patch16", in_bands=4, num_classes=3, img_size=32)
        model = model_mod.SpectralX(cfg, torch.tensor([490.0, 560.0, 665.0, 842.0])).eval()
        x = torch.randn(2, 4, 32, 32, generator=torch.Generator().manual_seed(1))
        with torch.inference_mode():
            ref = model(x).argmax(1)
            model = model.to(device)
            with devices.autocast(device, "auto"):
                got = model(x.to(device)).float().argmax(1).cpu()
        dtype = devices.autocast_dtype(device, "auto")
        precision = str(dtype).replace("torch.", "") if dtype is not None else "float32"
        agree = float((ref == got).float().mean())
    except Exception as exc:  # noqa: BLE001  the point is to catch what breaks
        return {"ok": False, "line": f"the SpectralX network fails on {device}: {type(exc).__name__}: {exc}"[:400]}
    ok = agree >= 0.9
    return {
        "ok": ok,
        "agreement": agree,
        "precision": precision,
        "line": f"SpectralX network {'ok' if ok else 'gives OTHER classes'} on {device} "
        f"({precision}, {agree:.1%} of pixels as on the CPU)",
    }


def verify(
    modules: List[str], device: str = "auto", site: Optional[str] = None, engine_dir: Optional[str] = None
) -> dict:
    if site:
        sys.path.insert(0, site)  # exactly as the plugin puts it at start
    imports = import_all(modules, site)
    failed = {k: v["error"] for k, v in imports.items() if "error" in v}
    report = device_report(device) if "torch" in modules and "torch" not in failed else None
    if report and report.get("device") and engine_dir and os.path.isdir(engine_dir):
        net = network_report(engine_dir, report["device"])
        report = dict(report, network=net, ok=report["ok"] and net["ok"], line=f"{report['line']}; {net['line']}")
        if not net["ok"]:
            report["matmul_ok"] = False  # the packages do not run the engine: not a usable install
    ok = not failed and (report is None or report["ok"])
    return {"ok": ok, "python": sys.executable, "imports": imports, "failed": failed, "device": report}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--site", default=None, help="package folder to put first on sys.path")
    parser.add_argument("--device", default="auto", choices=["auto", "cuda", "mps", "cpu"])
    parser.add_argument("--modules", required=True, help="comma-separated import names")
    parser.add_argument("--engine", default=None, help="the SpectralX engine folder: also run a small network")
    args = parser.parse_args(argv)
    result = verify([m for m in args.modules.split(",") if m], args.device, args.site, args.engine)
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
