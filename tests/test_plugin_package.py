"""`make package` zip: installs into a fresh QGIS profile and runs headless through qgis_process."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sysconfig
import zipfile

import numpy as np
import pytest
import rasterio
from test_plugin_common import CLASSES, ENMAP_TILE, REPO, checkpoint_for  # noqa: F401

QGIS_PROCESS = shutil.which("qgis_process.bin") or "/usr/bin/qgis_process.bin"
SAMPLE = os.path.join(REPO, "resources", "sample", "enmap_potsdam.tif")


@pytest.fixture(scope="module")
def plugin_zip():
    proc = subprocess.run(["make", "-s", "package"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    path = os.path.join(REPO, "dist", "spectralx_qgis.zip")
    assert os.path.isfile(path)
    return path


def test_zip_layout(plugin_zip):
    with zipfile.ZipFile(plugin_zip) as z:
        names = z.namelist()
        assert {n.split("/")[0] for n in names} == {"spectralx_qgis"}  # nothing else at the top
        for required in (
            "spectralx_qgis/__init__.py",
            "spectralx_qgis/metadata.txt",
            "spectralx_qgis/icons/spectralx.png",
            "spectralx_qgis/LICENSE",
            "spectralx_qgis/_vendor/__init__.py",
            "spectralx_qgis/_vendor/spectralx/__init__.py",
            "spectralx_qgis/_vendor/spectralx/inference/__init__.py",
            "spectralx_qgis/_vendor/spectralx/bands/enmap.json",
            # issue 12: the installer's pinned list, its verifier, the model catalogue
            "spectralx_qgis/requirements.txt",
            "spectralx_qgis/setup/verify_install.py",
            "spectralx_qgis/_vendor/spectralx/contract/releases.json",
        ):
            assert required in names, required
        with open(os.path.join(REPO, "spectralx_qgis", "requirements.txt"), encoding="utf-8") as f:
            assert z.read("spectralx_qgis/requirements.txt").decode() == f.read()
        assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
        meta = z.read("spectralx_qgis/metadata.txt").decode()
    with open(os.path.join(REPO, "metadata.txt"), encoding="utf-8") as f:
        assert f.read() == meta
    import configparser

    cp = configparser.ConfigParser()
    cp.read_string(meta)
    g = cp["general"]
    for key in (
        "name",
        "description",
        "about",
        "version",
        "qgisMinimumVersion",
        "qgisMaximumVersion",
        "author",
        "license",
        "tags",
        "icon",
        "hasProcessingProvider",
        "supportsQt6",
    ):
        assert g.get(key), key
    assert g["qgisMinimumVersion"] == "3.22" and g["hasProcessingProvider"] == "yes"
    assert g["qgisMaximumVersion"] == "4.99" and g["supportsQt6"] == "True"  # QGIS 4 may load it
    # no placeholder addresses: what the project does not have yet is left out, not invented
    assert not re.search(r"example\.(org|com)|spectralx/spectralx-qgis", meta)
    # an empty plugin_dependencies= makes QGIS 3.22's Install from ZIP crash in its dependency dialog
    assert g.get("plugin_dependencies", "x").strip()
    # Qt only through qgis.PyQt (Qt6-ready), no absolute engine import in the plugin code
    with zipfile.ZipFile(plugin_zip) as z:
        for n in names:
            if n.endswith(".py") and "/_vendor/" not in n:
                src = z.read(n).decode()
                assert "from PyQt5" not in src and "import PyQt5" not in src, n
                assert "from spectralx." not in src and "import spectralx\n" not in src, n


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists(QGIS_PROCESS), reason="qgis_process.bin not installed")
def test_qgis_process_segment_from_installed_zip(plugin_zip, checkpoint_for, tmp_path):
    raster = SAMPLE if os.path.isfile(SAMPLE) else ENMAP_TILE
    ckpt = checkpoint_for(raster, CLASSES, "sample")
    profile_root = tmp_path / "qgis-config"
    plugins_dir = profile_root / "profiles" / "default" / "python" / "plugins"
    plugins_dir.mkdir(parents=True)
    with zipfile.ZipFile(plugin_zip) as z:  # what "Install from ZIP" does
        z.extractall(plugins_dir)
    env = dict(
        os.environ,
        QT_QPA_PLATFORM="offscreen",
        QGIS_CUSTOM_CONFIG_PATH=str(profile_root),
        # QGIS's own Python (/usr/bin/python3) plus this venv's torch/rasterio/safetensors;
        # the engine itself comes from the zip's _vendor copy
        PYTHONPATH=sysconfig.get_paths()["purelib"],
        HOME=str(tmp_path),
    )

    def qp(*args, timeout=300):
        return subprocess.run([QGIS_PROCESS, *args], capture_output=True, text=True, env=env, timeout=timeout)

    proc = qp("plugins", "enable", "spectralx_qgis")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "* spectralx_qgis" in proc.stdout
    # a saved band map (as `spectralx bands -o` writes) through BAND_MAP; the automatic mapping is
    # covered by the processing.run tests
    from spectralx.bands import detect_bands, map_bands
    from spectralx.checkpoint import read_card

    band_map = tmp_path / "bands.json"
    band_map.write_text(map_bands(detect_bands(raster, check_nodata=False), read_card(ckpt).bands).to_json())
    out = tmp_path / "classes.tif"
    conf = tmp_path / "confidence.tif"
    proc = qp(
        "run",
        "spectralx:segment",
        "--",
        f"INPUT={raster}",
        f"CHECKPOINT={ckpt}",
        "DEVICE=1",
        f"BAND_MAP={band_map}",
        "BATCH_SIZE=8",
        f"OUTPUT={out}",
        f"CONFIDENCE={conf}",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "engine bundled" in proc.stdout  # the _vendor copy, not the checkout's engine
    with rasterio.open(raster) as src, rasterio.open(out) as ds:
        assert (ds.width, ds.height) == (src.width, src.height)
        assert ds.crs == src.crs and ds.transform == src.transform
        data = ds.read(1)
        cmap = ds.colormap(1)
    assert set(np.unique(data)) <= set(range(0, len(CLASSES) + 1)) and data.max() >= 1
    assert cmap[1][:3] != (0, 0, 0)
    with rasterio.open(conf) as ds:
        c = ds.read(1, masked=True)
        assert float(c.min()) >= 0.0 and float(c.max()) <= 1.0
