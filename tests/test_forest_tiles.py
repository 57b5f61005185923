"""Issue 22: a pooled forest's trees are walked once per pixel of a strip chunk, not once per tile
(at overlap 0.5 a pixel lies in about four tiles). The result must be the per-tile one: the same
log-probabilities as `forest_log_proba` on the stacked tiles, and the same maps from segment().

Real data: the bundled demo checkpoint (ViT-Tiny pooled with a 200-tree forest with 3x3 context) on
the EnMAP sample.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import rasterio
import torch
from conftest import REPO

from spectralx.checkpoint import load_checkpoint
from spectralx.inference import segment
from spectralx.model import forest_tiles
from spectralx.model import spectralx as network
from spectralx.model.forest import PROBA_FLOOR, ForestArrays, forest_log_proba
from spectralx.model.forest_tiles import tiles_log_proba

DEMO = os.path.join(REPO, "resources", "models", "demo.safetensors")
SAMPLE = os.path.join(REPO, "resources", "sample", "enmap_potsdam.tif")

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def demo():
    net, card = load_checkpoint(DEMO)
    assert net.forest is not None and net.forest.context == 3 and 0 < net.fusion_weight < 1
    return net.eval(), card


def sample_chunk(net, width: int) -> torch.Tensor:
    """A tile row of the EnMAP sample, normalized as segment() reads it, with a nodata stretch."""
    from spectralx.inference.prepare import Preparer

    with rasterio.open(SAMPLE) as ds:
        raw = ds.read(window=((0, 64), (0, width)), out_dtype=np.float32)
    bands = net.cfg.in_bands
    card = load_checkpoint(DEMO)[1]
    prep = Preparer(np.eye(bands, raw.shape[0], dtype=np.float32), None, card.normalization)
    x, _ = prep(raw, None)
    x[:, :, 70:90] = 0.0  # nodata is 0 after normalization: the context must skip it alike
    return torch.from_numpy(np.ascontiguousarray(x))


@pytest.mark.parametrize("context", [3, 0])
def test_chunk_forest_equals_the_per_tile_forest(demo, monkeypatch, context):
    net, _ = demo
    forest = net.forest
    chunk = sample_chunk(net, 160)  # the sample's width
    if context == 0:  # a forest on the spectra alone, fitted to the demo forest's own map of the chunk
        from sklearn.ensemble import RandomForestClassifier

        spectra = chunk.numpy().reshape(chunk.shape[0], -1).T
        labels = forest_log_proba(forest, chunk[None]).argmax(1).reshape(-1).numpy()
        rf = RandomForestClassifier(20, max_depth=8, random_state=0).fit(spectra[::7], labels[::7])
        forest = ForestArrays.from_sklearn(rf, forest.num_classes, context=0)
    # 32-px tiles overlapping by half, a gap where a skipped tile was, and pieces of 3 tiles (so a
    # piece's edge falls between overlapping tiles)
    x0s = [0, 16, 32, 64, 80, 96, 112, 128]
    monkeypatch.setattr(forest_tiles, "PIECE_TILES", 3)
    want = forest_log_proba(forest, torch.stack([chunk[:, :32, x : x + 32] for x in x0s]), PROBA_FLOOR)
    got = tiles_log_proba(forest, chunk, x0s, 32, PROBA_FLOOR)
    assert got.shape == want.shape == (len(x0s), forest.num_classes, 32, 32)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=0, atol=1e-6)


def test_rows_the_tile_row_above_walked_are_reused_with_the_same_values(demo, monkeypatch):
    """Two tile rows overlapping by half: the second walks only the rows the first could not give it
    (its top context row and the rows below the first chunk), and its values are the per-tile ones."""
    net, _ = demo
    forest = net.forest
    with rasterio.open(SAMPLE) as ds:
        raw = ds.read(window=((0, 48), (0, 96)), out_dtype=np.float32)
    from spectralx.inference.prepare import Preparer

    card = load_checkpoint(DEMO)[1]
    x, _ = Preparer(np.eye(net.cfg.in_bands, raw.shape[0], dtype=np.float32), None, card.normalization)(raw, None)
    x = torch.from_numpy(np.ascontiguousarray(x))
    x0s = [0, 16, 32, 48, 64]
    walked = []
    real = forest.predict_proba
    monkeypatch.setattr(forest, "predict_proba", lambda v, *a: walked.append(len(v)) or real(v, *a))
    cache = forest_tiles.StripCache()
    for y0 in (0, 16):
        chunk = x[:, y0 : y0 + 32]
        walked.clear()
        got = tiles_log_proba(forest, chunk, x0s, 32, PROBA_FLOOR, cache, (y0, 0))
        monkeypatch.setattr(forest, "predict_proba", real)
        want = forest_log_proba(forest, torch.stack([chunk[:, :, c : c + 32] for c in x0s]), PROBA_FLOOR)
        monkeypatch.setattr(forest, "predict_proba", lambda v, *a: walked.append(len(v)) or real(v, *a))
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=0, atol=1e-6)
        edges = len(x0s) * 2 * 32  # each tile's own left and right context column
        chunk_pixels = walked[0]
        assert sum(walked) - chunk_pixels == edges
        # row 0 walks the chunk once (96 columns x 32 rows); row 16 reuses rows 1..14 of its 32
        assert chunk_pixels == (96 * 32 if y0 == 0 else 96 * (32 - 14))


def test_segment_maps_are_those_of_the_per_tile_forest(demo, tmp_path, monkeypatch):
    """segment() through the pipeline's chunk forest gives the maps the per-tile forest gave."""
    net, card = demo
    outs = {}
    for name in ("per_tile", "chunk"):
        if name == "per_tile":  # the pipeline falls back to forward's own forest when the model has no chunk one
            monkeypatch.setattr(type(net), "forest_for_tiles", None)
        else:
            monkeypatch.undo()
        calls = []
        monkeypatch.setattr(
            network, "tiles_log_proba", lambda *a, calls=calls, **k: calls.append(1) or tiles_log_proba(*a, **k)
        )
        res = segment(
            SAMPLE,
            None,
            str(tmp_path / f"{name}.tif"),
            model=(net, card),
            confidence=str(tmp_path / f"{name}_conf.tif"),
            window=(0, 0, 160, 128),
            device="cpu",
        )
        assert res.tiles > 8
        with rasterio.open(tmp_path / f"{name}.tif") as a, rasterio.open(tmp_path / f"{name}_conf.tif") as b:
            outs[name] = (a.read(1), b.read(1), len(calls))
    assert outs["per_tile"][2] == 0 and outs["chunk"][2] > 0
    np.testing.assert_array_equal(outs["chunk"][0], outs["per_tile"][0])
    np.testing.assert_allclose(outs["chunk"][1], outs["per_tile"][1], atol=1e-5)


def test_strip_cache_stays_within_its_limit(monkeypatch):
    """The cache adds a bounded amount to the memory plan, however wide the raster: chunks beyond the
    limit are not kept (their next tile row walks every pixel again)."""
    monkeypatch.setattr(forest_tiles, "CACHE_LIMIT_BYTES", 3 * (32 * 100 * 4 * 8 + 32 * 100))
    cache = forest_tiles.StripCache()
    for key in range(5):  # five chunks of one tile row, room for three
        cache.keep(key, 0, np.zeros((32, 100, 4)), np.ones((32, 100), bool))
    assert sorted(cache.chunks) == [0, 1, 2]
    held = sum(p.nbytes + h.nbytes for _, p, h in cache.chunks.values())
    assert held <= forest_tiles.CACHE_LIMIT_BYTES
    # the next tile row replaces each chunk's entry instead of adding to it
    cache.keep(1, 16, np.zeros((32, 100, 4)), np.ones((32, 100), bool))
    assert sorted(cache.chunks) == [0, 1, 2] and cache.chunks[1][0] == 16
    assert cache.known(1, 32, 32, 100, 1) is not None and cache.known(3, 32, 32, 100, 1) is None
