"""Every Processing algorithm through `qgis_process.bin` alone, as an analyst without Python would run it:
exit 0 on success, 1 on a handled error, never a signal (the three-GDAL abort, exit 134, is gone).

The Landsat scene here is a Level-1 crop without wavelength metadata: SENSOR=landsat8:B2,B3,B4 is what
makes it usable, for fine-tuning from the analyst's polygons and then for segmenting."""

from __future__ import annotations

import os
import shutil
import subprocess
import sysconfig
import zipfile

import numpy as np
import pytest
import rasterio
from test_plugin_common import FIXTURES, REPO

QGIS_PROCESS = shutil.which("qgis_process.bin") or "/usr/bin/qgis_process.bin"
LANDSAT = os.path.join(FIXTURES, "landsat8_224078_nowavelengths.tif")
POLYGONS = os.path.join(FIXTURES, "training_landsat8_224078_polygons.gpkg")
BACKBONE = os.path.join(REPO, "resources", "models", "demo-backbone.safetensors")
ENMAP_MODEL = os.path.join(REPO, "resources", "models", "demo.safetensors")

pytestmark = pytest.mark.skipif(not os.path.exists(QGIS_PROCESS), reason="qgis_process.bin not installed")


@pytest.fixture(scope="module")
def qp(tmp_path_factory):
    """Runs qgis_process.bin with the plugin installed from `make package`'s zip in a fresh profile."""
    proc = subprocess.run(["make", "-s", "package"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    root = tmp_path_factory.mktemp("qgis_process")
    plugins = root / "profile" / "profiles" / "default" / "python" / "plugins"
    plugins.mkdir(parents=True)
    with zipfile.ZipFile(os.path.join(REPO, "dist", "spectralx_qgis.zip")) as z:
        z.extractall(plugins)
    env = dict(
        os.environ,
        QT_QPA_PLATFORM="offscreen",
        QGIS_CUSTOM_CONFIG_PATH=str(root / "profile"),
        PYTHONPATH=sysconfig.get_paths()["purelib"],
        HOME=str(root),
    )

    def run(*args, timeout=600):
        return subprocess.run(
            [QGIS_PROCESS, *map(str, args)], capture_output=True, text=True, env=env, timeout=timeout, cwd=str(root)
        )

    proc = run("plugins", "enable", "spectralx_qgis")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return run


def _ok(proc):
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _handled_error(proc, *words):
    """Exit 1 (QGIS's 'algorithm failed'), not a signal, with a one-line reason in the user's terms."""
    assert proc.returncode == 1, f"exit {proc.returncode} (negative or >128: a signal)\n{proc.stderr[-3000:]}"
    text = proc.stdout + proc.stderr
    assert "free(): invalid pointer" not in text and "Traceback" not in text
    for w in words:
        assert w in text, text[-2000:]
    assert "--sensor" not in text and "--band-map" not in text  # no CLI flags in Processing's words
    return text


@pytest.fixture(scope="module")
def landsat_model(qp, tmp_path_factory):
    """spectralx:finetune on the Landsat crop + polygons, from the demo backbone, a few steps."""
    out = tmp_path_factory.mktemp("model") / "landsat.safetensors"
    proc = _ok(
        qp(
            "run",
            "spectralx:finetune",
            "--",
            f"INPUT={LANDSAT}",
            f"LABELS={POLYGONS}",
            "CLASS_FIELD=name",
            f"BACKBONE={BACKBONE}",
            "SENSOR=landsat8:B2,B3,B4",
            "STEPS=4",
            "BATCH_SIZE=4",
            "DEVICE=1",
            f"OUTPUT={out}",
        )
    )
    assert "step 4/4" in proc.stdout and "validation mIoU" in proc.stdout  # the training line
    return str(out), proc


@pytest.fixture(scope="module")
def landsat_classes(qp, landsat_model, tmp_path_factory):
    """spectralx:segment of the same crop with that checkpoint and SENSOR."""
    out = tmp_path_factory.mktemp("segment") / "classes.tif"
    _ok(
        qp(
            "run",
            "spectralx:segment",
            "--",
            f"INPUT={LANDSAT}",
            f"CHECKPOINT={landsat_model[0]}",
            "SENSOR=landsat8:B2,B3,B4",
            "DEVICE=1",
            "BATCH_SIZE=8",
            f"OUTPUT={out}",
        )
    )
    return out


@pytest.mark.slow
def test_finetune_then_segment_landsat_with_sensor(landsat_model, landsat_classes):
    from spectralx.checkpoint import read_card

    ckpt, proc = landsat_model
    card = read_card(ckpt)
    assert sorted(c.name for c in card.classes) == ["crop", "tree", "water"]
    # the raster's bands were read as Landsat 8 OLI B2, B3, B4
    assert [round(b.wavelength_nm, 1) for b in card.bands] == [482.6, 561.3, 654.6]
    assert "Labels: 3 polygons" in proc.stdout
    out = landsat_classes
    with rasterio.open(LANDSAT) as src, rasterio.open(out) as ds:
        assert (ds.width, ds.height, ds.crs, ds.transform) == (src.width, src.height, src.crs, src.transform)
        data = ds.read(1)
        cmap = ds.colormap(1)
    values = {c.value for c in card.classes}
    assert set(np.unique(data)) <= values and data.min() >= 1
    # styled: colour table from the card and a QGIS style beside it
    for c in card.classes:
        assert "#%02x%02x%02x" % cmap[c.value][:3] == c.color.lower()
    qml = out.with_suffix(".qml").read_text()
    assert all(c.name in qml for c in card.classes)


@pytest.mark.slow
def test_every_algorithm_exit_codes(qp, landsat_model, landsat_classes, tmp_path):
    # segment: success is above; a model that cannot fit this raster is a handled error, said plainly
    _handled_error(
        qp(
            "run",
            "spectralx:segment",
            "--",
            f"INPUT={LANDSAT}",
            f"CHECKPOINT={ENMAP_MODEL}",
            "SENSOR=landsat8:B2,B3,B4",
            "DEVICE=1",
            f"OUTPUT={tmp_path / 'x.tif'}",
        ),
        "this model needs 218 EnMAP HSI bands",
        "3 visible bands",
        "fine-tune a new model from this raster instead",
    )
    assert not (tmp_path / "x.tif").exists()
    # finetune without SENSOR on a file without wavelengths: the error names SENSOR, not --sensor
    _handled_error(
        qp(
            "run",
            "spectralx:finetune",
            "--",
            f"INPUT={LANDSAT}",
            f"LABELS={POLYGONS}",
            "CLASS_FIELD=name",
            f"BACKBONE={BACKBONE}",
            "STEPS=2",
            "DEVICE=1",
            f"OUTPUT={tmp_path / 'y.safetensors'}",
        ),
        "SENSOR",
    )
    assert not (tmp_path / "y.safetensors").exists()
    # pretrain: success, and an unknown sensor band
    pre = tmp_path / "stage1.safetensors"
    _ok(
        qp(
            "run",
            "spectralx:pretrain",
            "--",
            f"INPUT={LANDSAT}",
            f"BACKBONE={BACKBONE}",
            "SENSOR=landsat8:B2,B3,B4",
            "STEPS=2",
            "BATCH_SIZE=2",
            "DEVICE=1",
            f"OUTPUT={pre}",
        )
    )
    assert pre.is_file()
    _handled_error(
        qp(
            "run",
            "spectralx:pretrain",
            "--",
            f"INPUT={LANDSAT}",
            f"BACKBONE={BACKBONE}",
            "SENSOR=landsat8:B2,B3,B99",
            "STEPS=2",
            "DEVICE=1",
            f"OUTPUT={tmp_path / 'z.safetensors'}",
        ),
        "no band 'B99'",
    )
    # evaluate: a class raster against the polygons, and against a reference that does not exist
    seg = landsat_classes
    report = tmp_path / "report.json"
    proc = _ok(
        qp(
            "run",
            "spectralx:evaluate",
            "--",
            f"PREDICTION={seg}",
            f"REFERENCE={POLYGONS}",
            "CLASS_FIELD=name",
            f"OUTPUT={report}",
        )
    )
    assert "MIOU" in proc.stdout and report.is_file()
    _handled_error(
        qp(
            "run",
            "spectralx:evaluate",
            "--",
            f"PREDICTION={seg}",
            f"REFERENCE={tmp_path / 'missing.gpkg'}",
            "CLASS_FIELD=name",
        )
    )
