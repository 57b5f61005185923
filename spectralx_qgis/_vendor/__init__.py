"""The plugin's one import point for the SpectralX engine: `spectralx_qgis._vendor.spectralx`.

The plugin zip bundles the engine here (`make package` copies engine/ to `_vendor/spectralx`). The engine
uses only relative imports, so the bundled copy is a plain subpackage and adds no top-level name to QGIS's
Python. In a checkout nothing is bundled: the installed `spectralx` package (`pip install -e .`) then
stands in under the same name, registered below (and where none is installed, the checkout's engine/
folder is loaded under this name), so every plugin module reads the same in all cases:

    from .._vendor.spectralx import inference            # a module (or subpackage) of the engine
    from .._vendor.spectralx.contract import errors       # a module of a subpackage registered below

Two rules keep one copy of each engine module (tests/test_plugin_engine_imports.py checks both):
- import a module of the engine root, or of the subpackages registered below, never deeper: a deeper
  dotted import of the stand-in would load a second copy of the engine's modules under this name;
- engine modules that need torch, rasterio or safetensors are imported inside the functions that use them,
  after `setup.deps.require()`, so the plugin loads (and explains what to install) without them.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
BUNDLED = os.path.isfile(os.path.join(HERE, "spectralx", "__init__.py"))


def _checkout_engine():
    """A checkout run by a Python that has no `spectralx` installed (QGIS's own interpreter, in
    development): the checkout's engine/ folder, loaded under this name as the zip's bundled copy is.
    The one place the plugin loads the engine from a path (documented exception of
    tests/test_plugin_engine_imports.py): an import statement cannot import a folder named `engine`
    as `spectralx`."""
    import importlib.util

    folder = os.path.join(os.path.dirname(os.path.dirname(HERE)), "engine")
    init = os.path.join(folder, "__init__.py")
    if not os.path.isfile(init):
        raise ModuleNotFoundError(
            "the SpectralX engine is neither bundled with the plugin nor installed", name="spectralx"
        )
    name = __name__ + ".spectralx"
    spec = importlib.util.spec_from_file_location(name, init, submodule_search_locations=[folder])
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)


if not BUNDLED:
    try:
        import spectralx
    except ModuleNotFoundError as exc:
        if exc.name != "spectralx":
            raise
        _checkout_engine()
    else:
        import spectralx.commands  # the command modules (their summaries and parsers); no torch
        import spectralx.contract  # the torch-free contract: errors, defaults, options, card, model folder, registry

        sys.modules[f"{__name__}.spectralx"] = spectralx
        sys.modules[f"{__name__}.spectralx.commands"] = spectralx.commands
        sys.modules[f"{__name__}.spectralx.contract"] = spectralx.contract
