"""Issue 19: the plugin reaches the engine through one import point and plain import statements, and keeps
no copy of the engine's rules.

- No `importlib` / `__import__` / string import of the engine anywhere in the plugin package. The only
  dynamic imports left are of third-party packages named in requirements.txt (the dependency check and
  the installer's verifier) and the verifier loading an engine folder it is asked to check, in another
  interpreter: listed below with why.
- Every engine import is `from <…>._vendor.spectralx import MODULE` (or from its `contract` / `commands`
  subpackages): the one import point (`spectralx_qgis/_vendor/__init__.py`) keeps one copy of each engine
  module, which the runtime check below confirms.
- One implementation of each rule: the model folder, the backbone search order, the safetensors header
  reader, the families and the release catalogue are the contract's objects (identity), and no plugin
  function re-implements them.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys

import pytest
from test_plugin_common import REPO

PLUGIN = os.path.join(REPO, "spectralx_qgis")
ENGINE = os.path.join(REPO, "engine")
IMPORT_POINT = os.path.join(PLUGIN, "_vendor", "__init__.py")

# (file, function) -> why a dynamic import is there; none of them names the engine
DYNAMIC_IMPORTS = {
    ("setup/deps.py", "_try_import"): "the packages of requirements.txt, imported by name to check them",
    ("setup/deps.py", "probably_missing"): "find_spec of the packages of requirements.txt (no import)",
    ("setup/deps.py", "check"): "importlib.invalidate_caches after an install (no import)",
    ("setup/verify_install.py", "import_all"): "the packages the installer just installed, by name",
    ("setup/verify_install.py", "_load_engine"): "the engine folder under test, in QGIS's interpreter",
    # the one import point itself, for a checkout run by a Python without `spectralx` installed
    ("_vendor/__init__.py", "_checkout_engine"): "the checkout's engine/ folder under the bundled name",
}
DYNAMIC_CALLS = {
    "import_module",
    "__import__",
    "spec_from_file_location",
    "module_from_spec",
    "find_spec",
    "invalidate_caches",
    "exec_module",
    "load_module",
}
ENGINE_PACKAGES = ("_vendor.spectralx", "_vendor.spectralx.contract", "_vendor.spectralx.commands")


def plugin_files():
    for root, dirs, files in os.walk(PLUGIN):
        dirs[:] = [
            d for d in dirs if d != "__pycache__" and not (root == os.path.join(PLUGIN, "_vendor") and d == "spectralx")
        ]
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(root, name)
                yield os.path.relpath(path, PLUGIN).replace(os.sep, "/"), path


def parsed():
    for rel, path in plugin_files():
        with open(path, encoding="utf-8") as f:
            yield rel, ast.parse(f.read(), path)


def enclosing_functions(tree):
    """{node: name of the innermost function around it}."""
    out = {}

    def visit(node, name):
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else name
            out[child] = inner
            visit(child, inner)

    visit(tree, None)
    return out


def test_no_dynamic_or_string_import_of_the_engine():
    found = {}
    for rel, tree in parsed():
        where = enclosing_functions(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name in DYNAMIC_CALLS:
                    key = (rel, where.get(node))
                    found.setdefault(key, []).append(node.lineno)
                    texts = [
                        a.value for a in ast.walk(node) if isinstance(a, ast.Constant) and isinstance(a.value, str)
                    ]
                    assert not any("spectralx" in t for t in texts), (key, texts)  # never by its name
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == "importlib" or alias.name.startswith("importlib."):
                        assert rel in {k[0] for k in DYNAMIC_IMPORTS}, (rel, node.lineno)
                    # the engine only through the one import point, never by its top-level name
                    assert rel == "_vendor/__init__.py" or alias.name.split(".")[0] != "spectralx", (rel, alias.name)
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                assert node.module.split(".")[0] not in ("spectralx", "importlib") or rel in {
                    k[0] for k in DYNAMIC_IMPORTS
                }, (rel, node.module)
    unexpected = {k: v for k, v in found.items() if k not in DYNAMIC_IMPORTS}
    assert not unexpected, f"dynamic imports outside the documented ones: {unexpected}"


def engine_imports():
    """(file, line, engine module) for every engine import of the plugin."""
    for rel, tree in parsed():
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.ImportFrom)
                and node.module
                and node.level > 0
                and node.module.startswith("_vendor")
            ):
                for alias in node.names:
                    yield rel, node.lineno, node.module, alias.name


def test_engine_imports_are_plain_and_one_level_and_name_real_modules():
    used = set()
    for rel, line, module, name in engine_imports():
        if (module, name) == ("_vendor", "spectralx"):  # the engine package itself (setup/deps.py)
            continue
        assert module in ENGINE_PACKAGES, (
            f"{rel}:{line}: import {module}'s modules as `from "
            f"{module.rsplit('.', 1)[0]} import …` (one copy of each engine module)"
        )
        sub = module[len("_vendor.spectralx") :].lstrip(".").replace(".", os.sep)
        base = os.path.join(ENGINE, sub)
        assert os.path.isfile(os.path.join(base, name + ".py")) or os.path.isfile(
            os.path.join(base, name, "__init__.py")
        ), f"{rel}:{line}: the engine has no module {module}.{name}"
        used.add(f"{module[len('_vendor.'):]}.{name}")
    # what the plugin uses of the engine, readable in one place (and never nothing)
    assert {
        "spectralx.contract.defaults",
        "spectralx.contract.errors",
        "spectralx.inference",
        "spectralx.training",
    } <= used, sorted(used)


@pytest.mark.slow
def test_one_copy_of_each_engine_module_at_run_time():
    """Importing every plugin module and the engine modules it names loads each engine module once,
    under its own name (the stand-in `_vendor.spectralx` of a checkout is the installed package)."""
    code = r"""
import importlib, pkgutil, sys
import spectralx_qgis
for m in pkgutil.walk_packages(spectralx_qgis.__path__, "spectralx_qgis."):
    if ".tools" not in m.name:
        importlib.import_module(m.name)
from spectralx_qgis._vendor.spectralx import bands, inference, training   # noqa: F401
from spectralx_qgis._vendor.spectralx.contract import card                # noqa: F401
vendored = sorted(n for n in sys.modules if n.startswith("spectralx_qgis._vendor.spectralx."))
copies = [n for n in vendored if sys.modules[n] is not sys.modules.get(n.replace("spectralx_qgis._vendor.", ""))]
print("COPIES", copies)
"""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "COPIES []" in proc.stdout, proc.stdout


def test_one_implementation_of_each_engine_rule():
    from spectralx.contract import model_folder, registry
    from spectralx_qgis.models import catalog as model_catalog
    from spectralx_qgis.models import store as model_store
    from spectralx_qgis.setup import deps

    assert model_store.user_model_dir is model_folder.user_model_dir
    assert model_store.backbone_candidates is model_folder.backbone_candidates
    assert model_catalog.FAMILIES is registry.FAMILIES
    assert model_catalog.Release is registry.Release
    assert model_catalog.CatalogError is registry.CatalogError
    assert model_catalog.load is registry.load_releases
    assert model_catalog.CATALOG_FILE == registry.CATALOG_FILE
    assert not os.path.exists(os.path.join(PLUGIN, "model_catalog.json"))  # the engine holds it
    assert not hasattr(deps, "engine") and not hasattr(deps, "defaults")  # no string look-ups, no ast
    for rel, tree in parsed():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                assert node.name not in (
                    "read_header",
                    "user_model_dir",
                    "backbone_candidates",
                    "load_releases",
                    "training_default",
                    "_pick",
                ), f"{rel}: {node.name} re-implements the engine"
            if isinstance(node, ast.Import):
                assert "ast" not in [a.name for a in node.names], f"{rel}: parses source code"
            if isinstance(node, ast.Constant) and node.value in ("mean_iou", "mIoU_"):
                raise AssertionError(f"{rel}: guesses at the engine's metric names")


def test_the_store_reads_headers_with_the_contract(tmp_path, monkeypatch):
    from spectralx.contract import card
    from spectralx_qgis.models import store as model_store

    calls = []
    real = card.read_header
    monkeypatch.setattr(card, "read_header", lambda p: calls.append(p) or real(p))
    path = tmp_path / "x.safetensors"
    path.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    model_store.describe_file(str(path))
    assert calls == [str(path)]
