"""Issue 12: the one-click dependency installer, end to end with the real QGIS Python.

A QGIS whose Python has no torch (Debian's system interpreter, not the project venv), a fresh profile
with the plugin installed from `make package`'s zip, and a local folder of wheels (`make wheelhouse`:
pip download of the pinned list). Processing ▸ SpectralX ▸ Setup ▸ Install dependencies installs into
the profile's own folder offline; a *fresh* qgis_process then loads the plugin, imports the packages
from that folder and segments the sample with them. Cancel (through the panel's dialog) leaves nothing
that the next start would pick up."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest
from test_plugin_common import REPO, wait_for

QGIS_PROCESS = shutil.which("qgis_process.bin") or "/usr/bin/qgis_process.bin"
SYSTEM_PYTHON = f"/usr/bin/python{sys.version_info.major}.{sys.version_info.minor}"
SAMPLE = os.path.join(REPO, "resources", "sample", "enmap_potsdam.tif")
DEMO_MODEL = os.path.join(REPO, "resources", "models", "demo.safetensors")
TAG = f"python{sys.version_info.major}.{sys.version_info.minor}-linux-x86_64"


def _system_python_lacks_torch() -> bool:
    if not os.path.exists(SYSTEM_PYTHON):
        return False
    proc = subprocess.run([SYSTEM_PYTHON, "-c", "import torch"], capture_output=True, env={"PATH": "/usr/bin:/bin"})
    return proc.returncode != 0


pytestmark = [
    pytest.mark.skipif(not os.path.exists(QGIS_PROCESS), reason="qgis_process.bin not installed"),
    pytest.mark.skipif(
        not _system_python_lacks_torch(), reason="needs a system Python (QGIS's) without torch, as a new user's QGIS is"
    ),
]


@pytest.fixture(scope="module")
def wheelhouse():
    """The pinned list's wheels for QGIS's Python (make wheelhouse: pip download, cached in build/)."""
    proc = subprocess.run(["make", "-s", "wheelhouse"], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    folder = os.path.join(REPO, "build", "wheelhouse")
    assert any(f.startswith("torch-") for f in os.listdir(folder))
    return folder


@pytest.fixture(scope="module")
def fresh_qgis(tmp_path_factory):
    """qgis_process.bin of the system QGIS with a fresh profile holding the plugin zip; no PYTHONPATH,
    no venv: QGIS's Python as a new user has it."""
    proc = subprocess.run(["make", "-s", "package"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    root = tmp_path_factory.mktemp("new_user")
    profile = root / "profile" / "profiles" / "default"
    plugins = profile / "python" / "plugins"
    plugins.mkdir(parents=True)
    with zipfile.ZipFile(os.path.join(REPO, "dist", "spectralx_qgis.zip")) as z:
        z.extractall(plugins)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "PIP_", "SPECTRALX"))}
    env.update(
        QT_QPA_PLATFORM="offscreen",
        QGIS_CUSTOM_CONFIG_PATH=str(root / "profile"),
        HOME=str(root),
        PATH="/usr/local/bin:/usr/bin:/bin",
    )

    def run(*args, timeout=900):
        return subprocess.run(
            [QGIS_PROCESS, *map(str, args)], capture_output=True, text=True, env=env, timeout=timeout, cwd=str(root)
        )

    assert run("plugins", "enable", "spectralx_qgis").returncode == 0
    run.profile = profile
    run.packages = profile / "spectralx" / "python-packages"
    yield run
    shutil.rmtree(run.packages, ignore_errors=True)  # ~0.8 GB of torch: not kept by pytest's tmp


@pytest.mark.slow
def test_offline_install_then_a_fresh_qgis_imports_from_the_profile_folder(fresh_qgis, wheelhouse, tmp_path):
    # before: the check fails and names what is missing (exit 1, QGIS's "algorithm failed", no traceback)
    before = fresh_qgis("run", "spectralx:check_installation")
    assert before.returncode == 1, before.stdout[-2000:] + before.stderr[-2000:]
    assert "torch: MISSING" in before.stdout and "Traceback" not in before.stdout + before.stderr
    assert "Install dependencies" in before.stdout + before.stderr

    # install, headless, from the wheel folder only
    proc = fresh_qgis("run", "spectralx:install_dependencies", "--", f"WHEEL_FOLDER={wheelhouse}")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    # the real interpreter (Debian's, by either of its names), not qgis_process.bin or the venv
    assert "QGIS's Python: /usr/bin/python3" in out and sys.prefix not in out.split("QGIS's Python: ")[1][:60]
    assert "Already in QGIS's Python: rasterio, affine, pillow" in out  # Debian's, built on QGIS's GDAL
    assert "To install: torch 2.13.0" in out
    # the verification reports the device honestly: this machine has no GPU and a CPU build of torch
    assert "CPU: matmul ok (torch 2.13.0+cpu, CPU-only build" in out
    assert "SpectralX network ok on cpu (float32, 100.0% of pixels as on the CPU)" in out  # the bundled engine
    folder = fresh_qgis.packages / TAG
    record = json.loads((folder / "spectralx-install.json").read_text())
    assert os.path.realpath(record["python"]) == os.path.realpath(SYSTEM_PYTHON)
    assert record["device"]["device"] == "cpu"
    installed = {name for name, _v in record["installed"]}
    assert {"torch", "safetensors", "scikit-learn", "tqdm"} <= installed
    assert not installed & {"numpy", "rasterio", "setuptools"}  # QGIS's own copies are kept
    assert (folder / "torch" / "__init__.py").is_file()
    assert sorted(os.listdir(fresh_qgis.packages)) == [TAG]  # no staging or pending left

    # a fresh QGIS process loads the plugin and imports the packages from that folder
    check = fresh_qgis("run", "spectralx:check_installation")
    assert check.returncode == 0, check.stdout[-3000:] + check.stderr[-2000:]
    assert f"torch 2.13.0+cpu (plugin folder: {folder}/torch)" in check.stdout
    assert f"safetensors 0.4.5 (plugin folder: {folder}/safetensors)" in check.stdout
    assert "numpy 1.24.2 (QGIS's Python: /usr/lib/python3/dist-packages/numpy)" in check.stdout
    assert "Device: CPU: matmul ok" in check.stdout and "SpectralX network ok on cpu" in check.stdout
    assert "Engine: bundled" in check.stdout

    # and the engine runs on them: segment the sample with the demo model in that fresh QGIS
    out_tif = tmp_path / "classes.tif"
    seg = fresh_qgis(
        "run", "spectralx:segment", "--", f"INPUT={SAMPLE}", f"CHECKPOINT={DEMO_MODEL}", "DEVICE=1", f"OUTPUT={out_tif}"
    )
    assert seg.returncode == 0, seg.stdout[-3000:] + seg.stderr[-2000:]
    import numpy as np
    import rasterio

    with rasterio.open(out_tif) as ds, rasterio.open(SAMPLE) as src:
        assert (ds.width, ds.height) == (src.width, src.height)
        assert len(np.unique(ds.read(1))) >= 3  # a real map, not one class


@pytest.mark.slow
def test_cancel_in_the_panel_dialog_leaves_nothing_for_the_next_start(qgis_app, wheelhouse, tmp_path):
    from spectralx_qgis.setup import site_dir
    from spectralx_qgis.setup.install_dialog import InstallDialog

    root = str(tmp_path / "packages")
    dialog = InstallDialog(None, root=root, python=SYSTEM_PYTHON)
    assert dialog.python_widget.filePath() == SYSTEM_PYTHON
    dialog.offline_check.setChecked(True)
    dialog.wheel_widget.setFilePath(wheelhouse)
    task = dialog.start()
    assert task is not None and dialog.cancel_button.isEnabled()
    # cancel while pip unpacks torch into the staging folder
    wait_for(lambda: "Processing " in dialog.log_view.toPlainText() or dialog.last_task is not None, 300)
    staging = [n for n in os.listdir(root) if n.startswith(".staging-")]
    assert staging, os.listdir(root)
    dialog.cancel()
    wait_for(lambda: dialog.last_task is task, 120)
    from spectralx_qgis.outcomes import Cancelled

    assert isinstance(task.outcome, Cancelled)
    assert dialog.verdict.text().startswith("Cancelled")
    assert os.listdir(root) == []  # staging removed, nothing pending
    assert site_dir.activate(root, TAG) is None  # the next start finds nothing to use


def test_a_crashed_install_is_never_put_on_sys_path(tmp_path):
    """A staging folder left by a killed QGIS (dead pid) is removed at start and never activated; a
    finished one waiting as .pending is swapped in."""
    from spectralx_qgis.setup import site_dir

    root = tmp_path / "packages"
    dead = root / f".staging-{TAG}-999999999-abc"
    (dead / "torch").mkdir(parents=True)
    (dead / "torch" / "__init__.py").write_text("raise SystemExit('half-installed')\n")
    assert site_dir.activate(str(root), TAG) is None
    assert not dead.exists()
    pending = root / f"{TAG}.pending"
    pending.mkdir()
    (pending / site_dir.MARKER).write_text(json.dumps({"installed": [["tqdm", "4.67.1"]]}))
    before = list(sys.path)
    try:
        added = site_dir.activate(str(root), TAG)
        assert added == str(root / TAG) and sys.path[0] == added and not pending.exists()
    finally:
        sys.path[:] = before


@pytest.mark.slow
def test_cancel_during_verification_keeps_nothing(wheelhouse, tmp_path):
    """Importing torch and running the network takes a while: a cancel then stops the check at once
    and the verified-looking folder is not kept either."""
    import time

    from spectralx_qgis.setup.errors import InstallCancelled
    from spectralx_qgis.setup.installer import Installer, InstallOptions

    root = tmp_path / "packages"
    log, asked = [], {}

    def cancelled():
        if any(line.startswith("Verifying with") for line in log):
            asked.setdefault("at", time.monotonic())
            return True
        return False

    with pytest.raises(InstallCancelled):
        Installer(
            InstallOptions(python=SYSTEM_PYTHON, wheel_folder=wheelhouse, root=str(root)),
            log=log.append,
            cancelled=cancelled,
        ).run()
    assert time.monotonic() - asked["at"] < 5  # not after the whole check
    assert not any(line.startswith("CPU: matmul") for line in log)
    assert os.listdir(root) == []
