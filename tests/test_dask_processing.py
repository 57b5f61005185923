"""The Processing segment algorithm's advanced DASK_SCHEDULER parameter (issue 10 §2): empty runs in
QGIS's process; an address runs the blocks on that Dask scheduler with the same class raster."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from test_plugin_common import enmap_checkpoint, enmap_tile, plugin  # noqa: F401

distributed = pytest.importorskip("distributed")


@pytest.mark.slow
def test_segment_algorithm_runs_on_a_dask_scheduler(plugin, enmap_tile, enmap_checkpoint, tmp_path):
    import processing
    from qgis.core import QgsApplication, QgsProcessingParameterDefinition

    seg = QgsApplication.processingRegistry().algorithmById("spectralx:segment")
    param = seg.parameterDefinition("DASK_SCHEDULER")
    assert param is not None and param.type() == "string"
    assert param.flags() & QgsProcessingParameterDefinition.FlagAdvanced
    assert param.flags() & QgsProcessingParameterDefinition.FlagOptional
    # workers as threads of this process: the plumbing, without starting processes inside QGIS
    cluster = distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None)
    try:
        outs = {}
        for name, scheduler in (("local", ""), ("dask", cluster.scheduler_address)):
            outs[name] = str(tmp_path / f"{name}.tif")
            processing.run(
                "spectralx:segment",
                {
                    "INPUT": enmap_tile,
                    "CHECKPOINT": enmap_checkpoint,
                    "DEVICE": 1,
                    "DASK_SCHEDULER": scheduler,
                    "OUTPUT": outs[name],
                },
            )
    finally:
        cluster.close()
    with rasterio.open(outs["local"]) as a, rasterio.open(outs["dask"]) as b:
        np.testing.assert_array_equal(b.read(1), a.read(1))
        assert b.transform == a.transform
