"""Memory bounded in width, height and band count (issue 10 §1): blocks with exact seam blending,
chunked reads, the memory plan, and one clear line when a raster cannot be opened."""

from __future__ import annotations

import os

import numpy as np
import pytest
import rasterio
import torch
from rasterio.windows import Window
from test_inference import PixelModel, identity_map, make_card, random_raster, whole_image_probs, write_raster

from spectralx.errors import Cancelled, RasterError, SpectralXError
from spectralx.inference import plan_tiles, segment
from spectralx.inference.api import plan_segment
from spectralx.inference.memory import parse_memory, plan_work, read_cost_per_column
from spectralx.inference.pipeline import run_pipeline
from spectralx.inference.prepare import Preparer
from spectralx.inference.source import RasterStrips
from spectralx.inference.tiling import plan_blocks
from spectralx.progress import Progress
from spectralx.raster_io import open_raster

TILE = 64


class TileCounter(PixelModel):
    """A per-pixel model that counts the tiles it sees (not the batches)."""

    def forward(self, x):
        self.calls += x.shape[0] - 1
        return super().forward(x)


class ConvModel(torch.nn.Module):
    """A 5x5 convolution with zero padding: predictions near a tile's border depend on where the
    tile sits, so the blending of overlapping tiles shows in every output value."""

    def __init__(self, seed: int = 1):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv = torch.nn.Conv2d(3, 3, 5, padding=2)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=g) * 0.3)
            self.conv.bias.zero_()
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.conv(x)


def run(path, out, model, **kw):
    kw.setdefault("batch_size", 5)
    kw.setdefault("overlap", 0.25)  # the tile plans these tests count against
    res = segment(
        str(path),
        None,
        str(out),
        band_map=identity_map(),
        model=(model, make_card()),
        confidence=str(out).replace(".tif", "_conf.tif"),
        **kw,
    )
    with rasterio.open(res.output) as o, rasterio.open(res.confidence) as c:
        return res, o.read(1), c.read(1)


def test_blocks_cover_the_window_once_with_every_touching_tile():
    plan = plan_tiles(700, 900, TILE, 0.25)
    blocks = plan_blocks(plan, 256, 256)
    cover = np.zeros((700, 900), int)
    for b in blocks:
        cover[b.y0 : b.y1, b.x0 : b.x1] += 1
        assert b.y0 % 256 == 0 and b.x0 % 256 == 0
        for r, y in enumerate(plan.ys):  # a tile touching the block is in its tile range, and only those
            assert (b.r0 <= r < b.r1) == (y < b.y1 and y + TILE > b.y0)
        for c, x in enumerate(plan.xs):
            assert (b.c0 <= c < b.c1) == (x < b.x1 and x + TILE > b.x0)
    assert (cover == 1).all() and len(blocks) == 3 * 4


@pytest.mark.slow
def test_block_seam_blending_equals_a_single_pass(tmp_path):
    """Blocks forced to 256 px: 3 x 3 blocks with seams in both directions; a position-dependent model
    so that every tile straddling a seam must contribute to both sides exactly as in one pass."""
    data = random_raster(530, 560, seed=4)
    path = write_raster(tmp_path / "in.tif", data)
    one, cls1, conf1 = run(path, tmp_path / "one.tif", ConvModel())
    many, cls2, conf2 = run(path, tmp_path / "many.tif", ConvModel(), block_size=256)
    assert one.blocks == 1 and many.blocks == 9
    np.testing.assert_allclose(conf2, conf1, atol=1e-5)
    np.testing.assert_array_equal(cls2, cls1)
    assert many.tiles == one.tiles and many.skipped_tiles == 0

    # and against a single whole-image pass (a per-pixel model needs no blending to be exact)
    pixel = PixelModel()
    expected = whole_image_probs(pixel, data)
    _, cls, conf = run(path, tmp_path / "pixel.tif", pixel, block_size=256)
    np.testing.assert_allclose(conf, expected.max(0), atol=1e-5)
    np.testing.assert_array_equal(cls, np.array([1, 2, 3], np.uint8)[expected.argmax(0)])


def test_chunked_reads_equal_one_read_per_tile_row(tmp_path):
    """A tile row read in chunks of 1, 2 or 5 tile columns blends to the same probabilities."""
    data = random_raster(150, 300, seed=5)
    path = write_raster(tmp_path / "in.tif", data)
    card, model = make_card(), ConvModel()
    plan = plan_tiles(150, 300, TILE, 0.25)
    results = []
    for group in (None, 1, 2, 5):
        src = RasterStrips(
            path,
            Window(0, 0, 300, 150),
            plan,
            [1, 2, 3],
            Preparer(np.eye(3, dtype=np.float32), None, card.normalization),
        )
        out = np.full((3, 150, 300), np.nan, np.float32)
        reads = []
        real = src.read
        src.read = lambda r, c0, c1, real=real, reads=reads: reads.append(c1 - c0) or real(r, c0, c1)

        def write(payload, out=out):
            row, p = payload
            out[:, row : row + p.shape[1]] = p

        run_pipeline(plan, src, model, 3, lambda row, p, v: (row, p.numpy()), write, batch_size=3, group=group)
        assert max(reads) == (group or len(plan.xs))
        results.append(out)
    for other in results[1:]:
        np.testing.assert_allclose(other, results[0], atol=1e-6)
    assert not np.isnan(results[0]).any()


def test_nodata_subsets_and_nodata_only_blocks_with_small_blocks(tmp_path):
    data = random_raster(520, 600, seed=6)
    data[:, :256, :300] = -9999  # the top-left block is all nodata (and a bit beyond)
    data[:, 300:340, 200:420] = -9999  # a nodata band across a block seam
    path = write_raster(tmp_path / "in.tif", data, nodata=-9999)
    model = TileCounter()
    whole, cls1, conf1 = run(path, tmp_path / "one.tif", model)
    calls_one = model.calls
    model.calls = 0
    blocks, cls2, conf2 = run(path, tmp_path / "blocks.tif", model, block_size=256)
    np.testing.assert_array_equal(cls2, cls1)
    np.testing.assert_allclose(conf2, conf1, atol=1e-5)
    assert (cls2[:256, :300] == 0).all() and (conf2[:256, :300] == 0).all()
    assert (cls2[300:340, 200:420] == 0).all()
    assert (cls2[cls1 > 0] > 0).all()
    # all-nodata tiles run no forward pass in either; blocks re-run only the tiles straddling seams
    plan = plan_tiles(520, 600, TILE, 0.25)
    assert calls_one == whole.tiles - whole.skipped_tiles and whole.skipped_tiles > 0
    assert model.calls == sum(b.n_tiles for b in plan_blocks(plan, 256, 256)) - blocks.skipped_tiles
    assert blocks.skipped_tiles >= whole.skipped_tiles

    # --window and --bbox with blocks: the same pixels as the full run (per-pixel model)
    win = segment(
        path,
        None,
        str(tmp_path / "win.tif"),
        band_map=identity_map(),
        model=(PixelModel(), make_card()),
        window=(100, 200, 400, 300),
        block_size=256,
    )
    assert win.blocks == 4
    with rasterio.open(win.output) as o:
        np.testing.assert_array_equal(o.read(1), cls1[200:500, 100:500])
    with rasterio.open(path) as ds:
        left, top = ds.transform * (0, 0)
    box = segment(
        path,
        None,
        str(tmp_path / "box.tif"),
        band_map=identity_map(),
        model=(PixelModel(), make_card()),
        bbox=(left + 30 * 300, top - 30 * 500, left + 30 * 590, top - 30 * 10),
        block_size=256,
    )
    assert box.window == (300, 10, 290, 490)
    with rasterio.open(box.output) as o:
        np.testing.assert_array_equal(o.read(1), cls1[10:500, 300:590])


def test_cancel_in_a_later_block_leaves_no_file(tmp_path):
    path = write_raster(tmp_path / "in.tif", random_raster(300, 600, seed=7))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    plan = plan_tiles(300, 600, TILE, 0.25)
    first_block = plan_blocks(plan, 256, 256)[0].n_tiles
    updates = []
    progress = Progress(
        on_update=lambda d, t, m: updates.append(d), is_cancelled=lambda: updates and updates[-1] > first_block
    )
    with pytest.raises(Cancelled):
        segment(
            path,
            None,
            str(out_dir / "out.tif"),
            band_map=identity_map(),
            model=(PixelModel(), make_card()),
            confidence=str(out_dir / "conf.tif"),
            block_size=256,
            batch_size=2,
            progress=progress,
        )
    assert os.listdir(out_dir) == []


def test_memory_plan_is_bounded_in_width_and_band_count():
    """224 read bands, 218 model bands (the demo checkpoint's shape): one read is a few tile columns,
    the same for a 1024 px and a 16384 px wide raster, and within the read share of the budget."""
    budget = parse_memory("2G")
    small = plan_work(plan_tiles(1024, 1024, TILE, 0.25), 224, 218, 6, budget)
    wide = plan_work(plan_tiles(64, 16384, TILE, 0.25), 224, 218, 6, budget)
    tall = plan_work(plan_tiles(16384, 1024, TILE, 0.25), 224, 218, 6, budget)
    assert small.group == wide.group == tall.group and small.read_bytes == wide.read_bytes
    assert small.read_bytes + small.queued_bytes * small.queue <= budget // 8 and 1 < small.group < 21
    assert small.read_bytes >= read_cost_per_column(TILE, 224, 218) * TILE
    four = plan_work(plan_tiles(1024, 1024, TILE, 0.25), 4, 4, 6, budget)
    assert four.group == len(four.tiles.xs)  # few bands: a whole tile row in one read
    # blending follows the class count only; a tiny budget splits the width into 256-aligned panels
    tight = plan_work(plan_tiles(512, 20000, TILE, 0.25), 224, 218, 40, parse_memory("64M"))
    assert len(tight.blocks) > 1 and all(b.y1 - b.y0 == 512 for b in tight.blocks)
    assert all(b.x0 % 256 == 0 for b in tight.blocks) and tight.blend_bytes <= parse_memory("64M") // 2
    assert "blocks" in tight.describe() and "budget" in tight.describe()


@pytest.mark.parametrize(
    "text,expected", [("2G", 2 * 2**30), ("1.5GB", int(1.5 * 2**30)), ("800M", 800 * 2**20), ("512MiB", 512 * 2**20)]
)
def test_parse_memory(text, expected):
    assert parse_memory(text) == expected


def test_bad_budget_and_block_size_are_one_line_errors(tmp_path):
    path = write_raster(tmp_path / "in.tif", random_raster(50, 50))
    for bad in ("lots", "2X", "10M"):
        with pytest.raises(SpectralXError, match="memory budget"):
            parse_memory(bad)
    with pytest.raises(SpectralXError, match="multiple of 256"):
        plan_segment(path, None, band_map=identity_map(), card=make_card(), block_size=300)
    plan = plan_segment(path, None, band_map=identity_map(), card=make_card(), max_memory="1G")
    assert plan.budget == 2**30 and len(plan.blocks) == 1


def test_open_raster_fails_with_one_clear_line(tmp_path):
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"II*\x00" + b"\x00" * 20)
    cases = {
        str(tmp_path / "missing.tif"): "does not exist",
        str(tmp_path): "is a folder",
        str(junk): "not a raster GDAL can read",
    }
    for path, words in cases.items():
        with pytest.raises(RasterError, match=words) as err:
            open_raster(path, "input raster")
        assert "\n" not in str(err.value) and path in str(err.value)
    good = write_raster(tmp_path / "ok.tif", random_raster(10, 10))
    with open_raster(good) as ds:
        assert ds.count == 3


def test_training_reads_chips_through_the_inference_preparer(tmp_path):
    """training.rasters (read_mapped + normalize) and inference (Preparer on a chunk read) give the
    same normalized values and the same nodata, for a mixing band map with a filled band."""
    from types import SimpleNamespace

    from spectralx.checkpoint import Normalization
    from spectralx.training.rasters import normalize, read_mapped

    data = random_raster(40, 50, seed=8)
    data[1, 5:9, 5:9] = -9999  # nodata in a source band used by checkpoint bands 1 and 2
    path = write_raster(tmp_path / "in.tif", data, nodata=-9999)
    weights = np.array([[0, 1, 0], [0.5, 0.5, 0], [0, 0, 1], [0, 0, 0]], np.float32)
    mapping = SimpleNamespace(source_indexes=[1, 2, 3], weights=weights, fill=[False, False, False, True])
    norm = Normalization("zscore", [500.0, 480.0, 520.0, 0.0], [250.0, 200.0, 0.0, 1.0], 2.5)
    with rasterio.open(path) as ds:
        train = normalize(read_mapped(ds, mapping), norm)
    prep = Preparer(weights, mapping.fill, norm)
    plan = plan_tiles(40, 50, TILE, 0.25)
    src = RasterStrips(path, Window(0, 0, 50, 40), plan, [1, 2, 3], prep)
    src.open()
    try:
        infer, valid = src.read(0)
    finally:
        src.close()
    np.testing.assert_allclose(train, infer[:, :40, :50], atol=1e-6)
    assert (train[0:2, 5:9, 5:9] == 0).all() and (train[3] == 0).all() and valid.all()
    assert np.abs(train).max() <= 2.5
