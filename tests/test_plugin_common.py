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


@pytest.fixture
def checkpoint_for(make_checkpoint):
    """Factory: a tiny random checkpoint for a raster's wavelengths, with its scene statistics."""
    def factory(raster, classes=CLASSES, name="model"):
        from spectralx.checkpoint import Normalization, load_checkpoint, read_card, save_checkpoint
        path = make_checkpoint(wavelengths=raster_wavelengths(raster), classes=classes, name=name)
        model, card = load_checkpoint(path)
        mean, std = raster_stats(raster)
        card.normalization = Normalization("zscore", mean, std, 6.0)
        save_checkpoint(model, card, path)
        assert len(read_card(path).normalization.mean) == len(mean)
        return path
    return factory


@pytest.fixture
def enmap_checkpoint(checkpoint_for, enmap_tile):
    """A tiny random checkpoint expecting the EnMAP sample's 224 wavelengths and its 6 classes."""
    return checkpoint_for(enmap_tile, CLASSES, "enmap")


@pytest.fixture
def plugin(qgis_iface, qgis_processing):
    import spectralx_qgis
    plug = spectralx_qgis.classFactory(qgis_iface)
    plug.initGui()
    yield plug
    plug.unload()


@pytest.fixture
def dock(plugin, tmp_path):
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


def files_in(folder):
    return sorted(f for f in os.listdir(folder) if not f.startswith("."))


def test_plugin_imports_without_engine_side_effects():
    """Importing the plugin package and its Qt modules must not import torch (it loads lazily)."""
    code = ("import sys, spectralx_qgis, spectralx_qgis.plugin, spectralx_qgis.dock, "
            "spectralx_qgis.provider; print('torch' in sys.modules)")
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("False")
