"""The engine rooms behind the contract (issue 19): fine-tuning as prepare -> job -> run, pretrain's
options dataclass, one way to open rasters, and no two-file import cycles."""

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures")
IMAGE = os.path.join(FIXTURES, "training_landsat8_224078.tif")
POLYGONS = os.path.join(FIXTURES, "training_landsat8_224078_polygons.gpkg")


def _imports(rel_path):
    """Modules a file imports relatively (module level and inside functions), as dotted names under
    spectralx."""
    path = os.path.join(ROOT, "engine", rel_path)
    pkg = ["spectralx"] + os.path.dirname(rel_path).split(os.sep) if os.path.dirname(rel_path) else ["spectralx"]
    out = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = pkg[: len(pkg) - (node.level - 1)]
            target = ".".join(base + ([node.module] if node.module else []))
            out.add(target)
            out.update(f"{target}.{a.name}" for a in node.names)
    return out


@pytest.mark.parametrize("a, b", [("checkpoint.py", "backbone_io.py"), ("bands/fit.py", "bands/resolve.py")])
def test_no_two_file_import_cycle(a, b):
    name = lambda rel: "spectralx." + rel[:-3].replace("/", ".")  # noqa: E731
    assert not (name(b) in _imports(a) and name(a) in _imports(b)), f"{a} and {b} import each other"


def test_pretrain_takes_an_options_dataclass():
    import inspect

    from spectralx.errors import SpectralXError
    from spectralx.training import PretrainOptions, pretrain

    params = inspect.signature(pretrain).parameters
    assert "options" in params and "steps" not in params
    with pytest.raises(TypeError, match="unknown pretraining option"):
        pretrain([IMAGE], None, stepz=3)
    with pytest.raises(SpectralXError, match="mask ratio"):
        pretrain([IMAGE], None, options=PretrainOptions(mask_ratio=1.5))


def test_prepare_finetune_checks_and_reads_without_training(monkeypatch):
    import sys

    import numpy as np

    import spectralx.training  # noqa: F401
    from spectralx.training.options import FinetuneOptions

    ft = sys.modules["spectralx.training.finetune"]  # the module (the package's `finetune` is the function)
    monkeypatch.setattr(ft, "ChipSampler", lambda *a, **k: (_ for _ in ()).throw(AssertionError("trained")))
    job = ft.prepare_finetune(IMAGE, POLYGONS, None, FinetuneOptions(method="forest", seed=1))
    assert job.forest_only and job.model is None and job.card.is_forest
    assert len(job.scenes) == 1 and job.split.train_pixels > 0 and len(job.train_classes) >= 2
    assert job.names == [c.name for c in job.table]
    assert isinstance(job.rng, np.random.Generator)


def test_raster_opening_is_one_place(tmp_path):
    from spectralx.errors import RasterError
    from spectralx.raster_io import open_gdal, open_raster
    from spectralx.training.labels import is_raster

    missing = str(tmp_path / "nope.tif")
    for opener in (open_raster, open_gdal):
        with pytest.raises(RasterError, match="does not exist"):
            opener(missing, "image")
    junk = tmp_path / "junk.xyz"
    junk.write_bytes(b"not a raster at all")
    with pytest.raises(RasterError, match="not a raster GDAL can read"):
        open_gdal(str(junk))
    assert is_raster(IMAGE) and not is_raster(str(junk))
    ds = open_gdal(IMAGE)
    assert ds.RasterCount >= 3
    # no module of the engine opens a raster with rasterio.open / gdal.Open for reading but raster_io
    # (writes create files)
    offenders = []
    for dirpath, _, files in os.walk(os.path.join(ROOT, "engine")):
        for f in files:
            if not f.endswith(".py") or f == "raster_io.py":
                continue
            text = open(os.path.join(dirpath, f), encoding="utf-8").read()
            for line in text.splitlines():
                if ("rasterio.open(" in line and '"w"' not in line) or "gdal.Open(" in line:
                    offenders.append(os.path.relpath(os.path.join(dirpath, f), ROOT))
    assert not offenders, offenders
