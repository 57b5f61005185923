"""Shared helpers and fixtures for the QGIS plugin tests (pytest-qgis, offscreen).

Imported by the other tests/test_plugin_*.py files; the smoke test here checks the plugin imports
without touching torch at import time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
FIXTURES = os.path.join(HERE, "fixtures")
ENMAP_TILE = os.path.join(FIXTURES, "enmap_potsdam_tile_128_0.tif")
CLASSES = ("roof", "pavement", "low vegetation", "tree", "soil", "water")


def wait_for(predicate, timeout=180.0):
    """Spin the Qt event loop until predicate() is true (tasks finish on the main thread)."""
    from qgis.PyQt.QtCore import QCoreApplication

    t0 = time.time()
    while not predicate():
        QCoreApplication.processEvents()
        time.sleep(0.01)
        if time.time() - t0 > timeout:
            raise AssertionError("timed out waiting for the QGIS task")


def assert_done(task):
    """The background task ended with Done (else its Failed message or Cancelled is the failure text)."""
    from spectralx_qgis.panel.tasks import Done

    assert isinstance(task.outcome, Done), task.outcome


def assert_cancelled(task):
    from spectralx_qgis.panel.tasks import Cancelled

    assert isinstance(task.outcome, Cancelled), task.outcome


def raster_wavelengths(path):
    from spectralx.bands import detect_bands

    return [b.wavelength_nm for b in detect_bands(path, check_nodata=False)]


@pytest.fixture
def enmap_tile(tmp_path):
    """The real EnMAP tile (224 bands, 32x32 px, UTM 33N), copied so outputs can sit beside it."""
    if not os.path.isfile(ENMAP_TILE):
        pytest.skip(f"missing fixture {ENMAP_TILE}")
    dst = tmp_path / "enmap.tif"
    shutil.copy(ENMAP_TILE, dst)
    return str(dst)


def raster_stats(path):
    """Per-band mean/std of valid pixels (the scene statistics a checkpoint records)."""
    import numpy as np
    import rasterio

    with rasterio.open(path) as ds:
        data = ds.read(masked=True).astype("float64")
    mean = [float(m) if m is not np.ma.masked else 0.0 for m in data.mean(axis=(1, 2))]
    std = [float(s) if s is not np.ma.masked and s > 0 else 1.0 for s in data.std(axis=(1, 2))]
    return mean, std


def build_checkpoint(raster, classes, folder, backbone, name="model"):
    """A tiny random checkpoint for a raster's wavelengths with its scene statistics, written in
    `folder` beside a copy of `backbone` (random weights: for plumbing tests, not accuracy)."""
    import torch

    from spectralx.checkpoint import Band, ClassInfo, Normalization, new_model, save_checkpoint

    torch.manual_seed(0)
    os.makedirs(folder, exist_ok=True)
    local_backbone = os.path.join(folder, os.path.basename(backbone))
    if not os.path.exists(local_backbone):
        shutil.copy(backbone, local_backbone)
    palette = ["#e31a1c", "#9c9c9c", "#98e600", "#267300", "#a87000", "#0064ff", "#6a3d9a"]
    bands = [Band(f"B{i + 1}", float(w), 10.0) for i, w in enumerate(raster_wavelengths(raster))]
    cls = [ClassInfo(i + 1, n, palette[i % len(palette)]) for i, n in enumerate(classes)]
    model, card = new_model(local_backbone, bands, cls, img_size=64)
    mean, std = raster_stats(raster)
    card.normalization = Normalization("zscore", mean, std, 6.0)
    path = os.path.join(folder, f"{name}.safetensors")
    save_checkpoint(model, card, path)
    return path


@pytest.fixture
def checkpoint_for(tiny_backbone, tmp_path):
    """Factory: a tiny random checkpoint for a raster (see build_checkpoint)."""

    def factory(raster, classes=CLASSES, name="model"):
        return build_checkpoint(raster, classes, str(tmp_path / name), tiny_backbone, name)

    return factory


@pytest.fixture(scope="session")
def enmap_checkpoint(tiny_backbone, tmp_path_factory):
    """One tiny random checkpoint (shared, read-only) for the EnMAP tile's 224 wavelengths, 6 classes."""
    if not os.path.isfile(ENMAP_TILE):
        pytest.skip(f"missing fixture {ENMAP_TILE}")
    return build_checkpoint(ENMAP_TILE, CLASSES, str(tmp_path_factory.mktemp("enmap_ckpt")), tiny_backbone, "enmap")


@pytest.fixture
def plugin(qgis_iface, qgis_processing):
    import spectralx_qgis

    plug = spectralx_qgis.classFactory(qgis_iface)
    plug.initGui()
    yield plug
    plug.unload()


@pytest.fixture
def dock(plugin, tmp_path, monkeypatch):
    # the panel writes fine-tuned models to the model folder: never the real ~/.local/share
    monkeypatch.setenv("SPECTRALX_MODELS", str(tmp_path / "models"))
    d = plugin.show_dock()
    out = tmp_path / "out"
    out.mkdir()
    d.output_dir.setFilePath(str(out))
    d.device_combo.setCurrentIndex(d.device_combo.findData("cpu"))
    d.batch_spin.setValue(8)
    return d


def run_task(dock, start, timeout=180.0):
    """Start a dock action and wait until its task has finished; returns the task."""
    finished = []
    dock.runFinished.connect(finished.append)
    try:
        task = start()
        assert task is not None, dock.status.text()
        wait_for(lambda: finished, timeout)
    finally:
        dock.runFinished.disconnect(finished.append)
    return finished[0]


def test_plugin_imports_without_engine_side_effects():
    """Importing the plugin package and its Qt modules must not import torch (it loads lazily)."""
    code = (
        "import sys, spectralx_qgis, spectralx_qgis.plugin, spectralx_qgis.panel.dock, "
        "spectralx_qgis.processing.provider; print('torch' in sys.modules)"
    )
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("False")


@pytest.fixture
def project():
    """The QGIS project, emptied before and after the test."""
    from qgis.core import QgsProject

    QgsProject.instance().removeAllMapLayers()
    QgsProject.instance().layerTreeRoot().removeAllChildren()
    yield QgsProject.instance()
    QgsProject.instance().removeAllMapLayers()
    QgsProject.instance().layerTreeRoot().removeAllChildren()


def feedback_log():
    """A Processing feedback that keeps what an algorithm logs (`.lines`) and reports (`.errors`);
    qgis is imported here, after QT_QPA_PLATFORM is set above."""
    from qgis.core import QgsProcessingFeedback

    class FeedbackLog(QgsProcessingFeedback):
        def __init__(self):
            super().__init__()
            self.lines, self.errors = [], []

        def pushInfo(self, text):  # noqa: N802
            self.lines.append(text)

        def reportError(self, text, fatalError=False):  # noqa: N802
            self.errors.append(text)

    return FeedbackLog()


def halves_layer(raster: str, field: str = "landcover", fid: bool = False):
    """A memory polygon layer: a 'water' left half and a 'tree' right half of the raster's extent
    (what an analyst digitizes in a first round); `fid` adds an integer id field before the class
    field, numbered 1, 2 (a field unique per feature)."""
    import rasterio
    from qgis.core import QgsFeature, QgsGeometry, QgsRectangle, QgsVectorLayer

    with rasterio.open(raster) as ds:
        b, epsg = ds.bounds, ds.crs.to_epsg()
    ids = "&field=fid:integer" if fid else ""
    vl = QgsVectorLayer(f"Polygon?crs=EPSG:{epsg}{ids}&field={field}:string", "digitized", "memory")
    mid = (b.left + b.right) / 2
    feats = []
    for name, rect in (
        ("water", QgsRectangle(b.left, b.bottom, mid, b.top)),
        ("tree", QgsRectangle(mid, b.bottom, b.right, b.top)),
    ):
        f = QgsFeature(vl.fields())
        f.setGeometry(QgsGeometry.fromRect(rect))
        f[field] = name
        if fid:
            f["fid"] = len(feats) + 1
        feats.append(f)
    vl.dataProvider().addFeatures(feats)
    return vl
