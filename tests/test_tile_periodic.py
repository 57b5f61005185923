"""Issue 20, item 5: no blobs on the tile grid over a homogeneous area.

The network is less sure of itself within ~12 px of a tile's edge (zero-padded convolutions, less
context); at 25 % overlap the pixels of each 16 px overlap band come only from two tiles' edges, so
that dip repeats every 48 px on the map. The default overlap (50 %, where the Hann weights of the
two tiles covering a pixel sum to one and favour the tile it is central in) must leave no such grid.

Reproduces the report: a short fine-tune from the demo backbone on the Landsat crop's four polygons
(network alone, no forest to hide it), segmented over a homogeneous water raster made from that
crop's open water; the periodic component is measured at the tile stride.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import rasterio
from conftest import REPO

sys.path.insert(0, os.path.join(REPO, "bench"))
from tile_periodic import homogeneous, periodic  # noqa: E402  (the bench's measurement, shared)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

LANDSAT = os.path.join(REPO, "bench", "fixtures", "landsat8_224078")
WATER_WINDOW = (74, 29, 15, 11)  # col, row, width, height: open water inside the water polygon
SENSOR = "landsat8:B2,B3,B4"


@pytest.fixture(scope="module")
def landsat_network(tmp_path_factory):
    from spectralx.training.finetune import finetune

    out = str(tmp_path_factory.mktemp("periodic") / "landsat.safetensors")
    finetune(
        os.path.join(LANDSAT, "landsat8_224078_crop.tif"),
        os.path.join(LANDSAT, "landsat8_224078_polygons.gpkg"),
        out,
        class_field="name",
        backbone=os.path.join(REPO, "resources", "models", "demo-backbone.safetensors"),
        sensor=SENSOR,
        steps=100,
        seed=0,
        fuse="none",
        device="cpu",
    )
    return out


def _confidence(model, raster, folder, overlap=None):
    from spectralx.inference.api import segment

    out = os.path.join(folder, f"map_{overlap}.tif")
    conf = out.replace(".tif", "_conf.tif")
    kw = {} if overlap is None else {"overlap": overlap}
    segment(raster, None, out, model=model, sensor=SENSOR, device="cpu", confidence=conf, overwrite=True, **kw)
    with rasterio.open(conf) as d:
        return d.read(1).astype(np.float64)


def test_default_overlap_leaves_no_tile_grid(landsat_network, tmp_path):
    from spectralx.checkpoint import load_checkpoint
    from spectralx.contract.defaults import OVERLAP

    model = load_checkpoint(landsat_network, device="cpu")
    assert model[1].fusion_weight == 0.0  # the network alone: nothing hides the grid
    raster = homogeneous(
        os.path.join(LANDSAT, "landsat8_224078_crop.tif"), WATER_WINDOW, str(tmp_path / "water.tif"), size=192
    )
    tile = model[1].tile_size

    old = _confidence(model, raster, str(tmp_path), overlap=0.25)
    old_share, _ = periodic(old, int(round(tile * 0.75)))
    # the measurement sees the grid the former default (25 % overlap) made
    assert old_share > 0.15, old_share

    new = _confidence(model, raster, str(tmp_path))
    share, fft = periodic(new, int(round(tile * (1 - OVERLAP))))
    assert share < 0.08 and fft < 0.05, (share, fft)
    assert share < old_share / 3
