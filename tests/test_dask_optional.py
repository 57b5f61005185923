"""Dask is optional (issue 10 §2): without it the engine imports and segments in-process, and asking
for --dask ends in one line that says how to install it."""

from __future__ import annotations

import subprocess
import sys

import pytest
from test_inference import random_raster, write_raster

HIDE_DASK = (
    "import sys; sys.modules['dask'] = None; sys.modules['distributed'] = None; "
    "from spectralx.cli import main; sys.exit(main(sys.argv[1:]))"
)


def run_without_dask(*args):
    return subprocess.run(
        [sys.executable, "-c", HIDE_DASK, *map(str, args)], capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow
def test_engine_runs_without_dask(tmp_path, make_checkpoint):
    ckpt = make_checkpoint()
    raster = write_raster(tmp_path / "in.tif", random_raster(70, 90))
    ok = run_without_dask("segment", raster, "-c", ckpt, "-o", tmp_path / "out.tif", "--device", "cpu", "--quiet")
    assert ok.returncode == 0, ok.stderr
    assert (tmp_path / "out.tif").exists()
    no = run_without_dask("segment", raster, "-c", ckpt, "-o", tmp_path / "d.tif", "--dask", "local:2", "--quiet")
    assert no.returncode == 2 and "Traceback" not in no.stderr
    assert no.stderr.strip().count("\n") == 0 and "pip install 'spectralx-qgis[dask]'" in no.stderr
    assert not (tmp_path / "d.tif").exists()
    plan = run_without_dask("segment", raster, "-c", ckpt, "--plan", "--max-memory", "512M")
    assert plan.returncode == 0 and "budget   512 MiB" in plan.stdout and "blocks   1 of" in plan.stdout
