"""Streaming sliding-window inference (issue 3): tiling, blending, georeferencing, nodata, subsets,
cancel, output safety and bounded memory. Small synthetic rasters; models are tiny or per-pixel."""

from __future__ import annotations

import os
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import rasterio
import torch
from conftest import FIXTURES, run_cli
from rasterio.transform import from_origin
from rasterio.windows import Window
from rasterio.windows import transform as window_transform

from spectralx.checkpoint import BackboneRef, Band, ClassInfo, ModelCard, Normalization
from spectralx.config import ModelConfig
from spectralx.errors import Cancelled, RasterError, SpectralXError
from spectralx.inference import axis_starts, plan_tiles, segment
from spectralx.inference.blending import hann_1d
from spectralx.inference.pipeline import run_pipeline
from spectralx.inference.prepare import Preparer
from spectralx.inference.source import RasterStrips
from spectralx.progress import Progress

TILE = 64
WAVELENGTHS = (480.0, 560.0, 660.0)
CLASSES = [ClassInfo(1, "water", "#1f78b4"), ClassInfo(2, "crop", "#33a02c"), ClassInfo(3, "tree", "#e31a1c")]
MEAN, STD = 500.0, 250.0


def make_card(tile: int = TILE, bands=WAVELENGTHS, classes=CLASSES) -> ModelCard:
    cfg = ModelConfig.from_preset("vit_tiny_patch16", in_bands=len(bands), num_classes=len(classes), img_size=tile)
    return ModelCard(
        architecture=cfg.to_dict(),
        bands=[Band(f"B{i + 1}", w, 20.0) for i, w in enumerate(bands)],
        classes=list(classes),
        backbone=BackboneRef("none", "0" * 64, cfg.backbone_preset),
        normalization=Normalization("zscore", [MEAN] * len(bands), [STD] * len(bands), 6.0),
    )


class PixelModel(torch.nn.Module):
    """A 1x1 convolution: output independent of where the pixel sits in its tile."""

    def __init__(self, bands: int = 3, classes: int = 3, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv = torch.nn.Conv2d(bands, classes, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=g) * 2)
            self.conv.bias.copy_(torch.randn(classes, generator=g) * 0.1)
        self.calls = 0

    def forward(self, x):
        self.calls += 1
        return self.conv(x)


class Exploding(torch.nn.Module):
    def forward(self, x):
        raise AssertionError("the model must not run")


def identity_map(n: int = 3):
    return SimpleNamespace(source_indexes=list(range(1, n + 1)), weights=np.eye(n, dtype=np.float32), fill=[False] * n)


def write_raster(path, data, nodata=None, transform=None, crs="EPSG:32633", wavelengths=WAVELENGTHS):
    data = np.asarray(data)
    transform = transform or from_origin(500000.0, 5800000.0, 30.0, 30.0)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=data.shape[2],
        height=data.shape[1],
        count=data.shape[0],
        dtype=data.dtype,
        crs=crs,
        transform=transform,
        nodata=nodata,
    ) as ds:
        ds.write(data)
        for i, w in enumerate(wavelengths[: data.shape[0]], 1):
            ds.update_tags(i, wavelength=str(w), wavelength_units="Nanometers", fwhm="20")
    return str(path)


def random_raster(h, w, c=3, seed=0, dtype=np.int16):
    rng = np.random.default_rng(seed)
    # smooth-ish structure so classes form regions, plus noise
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([np.sin(xx / (7 + 3 * i)) * np.cos(yy / (11 + 2 * i)) for i in range(c)])
    return (MEAN + 300 * base + 80 * rng.standard_normal((c, h, w))).astype(dtype)


def whole_image_probs(model, data, card=None):
    card = card or make_card()
    prep = Preparer(np.eye(data.shape[0], dtype=np.float32), None, card.normalization)
    x, _ = prep(data.astype(np.float32), None)
    with torch.no_grad():
        return torch.softmax(model(torch.from_numpy(x)[None]), 1)[0].numpy()


def blended_probs(path, model, card, overlap=0.25, batch_size=3, window=None, readers=1, group=None):
    """Run the real pipeline over a raster and collect the blended (K, H, W) probabilities."""
    with rasterio.open(path) as ds:
        win = window or Window(0, 0, ds.width, ds.height)
    plan = plan_tiles(int(win.height), int(win.width), card.tile_size, overlap)
    src = RasterStrips(path, win, plan, [1, 2, 3], Preparer(np.eye(3, dtype=np.float32), None, card.normalization))
    out = np.full((len(card.classes), plan.height, plan.width), np.nan, np.float32)
    rows = []

    def encode(row, probs, valid):
        return row, probs.cpu().numpy()

    def write(payload):
        row, p = payload
        rows.append((row, p.shape[1]))
        out[:, row : row + p.shape[1]] = p

    run_pipeline(
        plan, src, model, len(card.classes), encode, write, batch_size=batch_size, readers=readers, group=group
    )
    return out, rows


# -- tiling and weights ------------------------------------------------------------------------


@pytest.mark.parametrize("length", [1, 17, 64, 65, 100, 111, 112, 300, 1000])
@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5])
def test_tiles_cover_every_pixel_inside_the_window(length, overlap):
    starts = axis_starts(length, TILE, overlap)
    covered = np.zeros(length, bool)
    for s in starts:
        assert 0 <= s and (s + TILE <= length or length < TILE)
        covered[s : s + TILE] = True
    assert covered.all()
    assert starts == sorted(set(starts))
    if length > TILE:  # neighbours overlap by at least the requested fraction
        assert min(b - a for a, b in zip(starts, starts[1:])) <= round(TILE * (1 - overlap))


def test_hann_weights_positive_and_flat_at_window_edges():
    w = hann_1d(TILE)
    assert (w > 0).all() and w.max() <= 1 and w[0] < 0.01 and abs(w[TILE // 2] - 1) < 0.01
    left = hann_1d(TILE, flat_start=True)
    assert (left[: TILE // 2] == 1).all() and np.allclose(left[TILE // 2 :], w[TILE // 2 :])
    assert (hann_1d(TILE, True, True) == 1).all()


# -- blending ------------------------------------------------------------------------------------


def test_blending_equals_a_single_whole_image_pass(tmp_path):
    data = random_raster(150, 173)
    path = write_raster(tmp_path / "in.tif", data)
    model, card = PixelModel(), make_card()
    expected = whole_image_probs(model, data)
    got, rows = blended_probs(path, model, card, overlap=0.25, batch_size=3)
    assert not np.isnan(got).any(), "every row written exactly once"
    assert [r for r, _ in rows] == sorted(r for r, _ in rows)
    np.testing.assert_allclose(got, expected, atol=1e-5)

    # and through segment(): classes and confidence match the whole-image pass
    res = segment(
        path,
        None,
        str(tmp_path / "out.tif"),
        band_map=identity_map(),
        model=(model, card),
        confidence=str(tmp_path / "conf.tif"),
        overlap=0.4,
        batch_size=5,
    )
    with rasterio.open(res.output) as o, rasterio.open(res.confidence) as c:
        cls, conf = o.read(1), c.read(1)
    np.testing.assert_array_equal(cls, np.array([1, 2, 3], np.uint8)[expected.argmax(0)])
    np.testing.assert_allclose(conf, expected.max(0), atol=1e-5)


@pytest.mark.slow
def test_shifted_raster_gives_shifted_predictions(tmp_path):
    """Position-dependent tiny SpectralX: shifting by a whole tile stride keeps the tile grid aligned,
    so away from the borders the blended predictions are the same, shifted."""
    from spectralx.model import SpectralX

    torch.manual_seed(0)
    card = make_card()
    model = SpectralX(card.config, torch.tensor(WAVELENGTHS)).eval()
    stride = TILE - TILE // 4  # 48 for overlap 0.25
    size = TILE + 3 * stride  # 208: grid ends exactly at the edge, no snapped tile
    data = random_raster(size + stride, size + stride, seed=3)
    a = write_raster(tmp_path / "a.tif", data)
    b = write_raster(tmp_path / "b.tif", data[:, stride:, stride:])
    pa, _ = blended_probs(a, model, card, batch_size=4)
    pb, _ = blended_probs(b, model, card, batch_size=4)
    m = TILE  # away from the borders (where the first tiles differ)
    np.testing.assert_allclose(pb[:, m:-m, m:-m], pa[:, stride + m : -m, stride + m : -m], atol=1e-4)
    assert (pb.argmax(0)[m:-m, m:-m] == pa.argmax(0)[stride + m : -m, stride + m : -m]).mean() > 0.999


def test_raster_smaller_than_a_tile_is_padded(tmp_path):
    data = random_raster(20, 37)
    path = write_raster(tmp_path / "small.tif", data)
    model, card = PixelModel(), make_card()
    got, _ = blended_probs(path, model, card)
    np.testing.assert_allclose(got, whole_image_probs(model, data), atol=1e-5)


# -- georeferencing and subsets -------------------------------------------------------------------


def test_output_matches_input_grid_and_subsets(tmp_path):
    data = random_raster(130, 140)
    transform = from_origin(300000.0, 5000000.0, 10.0, 10.0)
    path = write_raster(tmp_path / "in.tif", data, transform=transform)
    model, card = PixelModel(), make_card()
    full = segment(path, None, str(tmp_path / "full.tif"), band_map=identity_map(), model=(model, card))
    with rasterio.open(path) as src, rasterio.open(full.output) as out:
        assert (out.crs, out.transform, out.width, out.height) == (src.crs, src.transform, src.width, src.height)
        full_cls = out.read(1)

    win = segment(
        path, None, str(tmp_path / "win.tif"), band_map=identity_map(), model=(model, card), window=(30, 20, 50, 70)
    )
    with rasterio.open(win.output) as out:
        assert (out.width, out.height) == (50, 70)
        assert out.transform == window_transform(Window(30, 20, 50, 70), transform)
        np.testing.assert_array_equal(out.read(1), full_cls[20:90, 30:80])  # per-pixel model

    # a bbox widened to whole pixels: x 300105..300555 -> cols 10..55, y top 4999800 -> row 20
    box = segment(
        path,
        None,
        str(tmp_path / "box.tif"),
        band_map=identity_map(),
        model=(model, card),
        bbox=(300105.0, 4999000.0, 300555.0, 4999800.0),
    )
    assert box.window == (10, 20, 46, 80)
    with rasterio.open(box.output) as out:
        assert out.transform == window_transform(Window(10, 20, 46, 80), transform)
        assert out.crs == "EPSG:32633"
        np.testing.assert_array_equal(out.read(1), full_cls[20:100, 10:56])

    with pytest.raises(RasterError, match="does not overlap"):
        segment(
            path, None, str(tmp_path / "x.tif"), band_map=identity_map(), model=(Exploding(), card), bbox=(0, 0, 10, 10)
        )
    with pytest.raises(RasterError, match="not inside"):
        segment(
            path,
            None,
            str(tmp_path / "x.tif"),
            band_map=identity_map(),
            model=(Exploding(), card),
            window=(100, 0, 50, 10),
        )
    assert not os.path.exists(tmp_path / "x.tif")


def test_colour_table_class_names_and_style(tmp_path):
    path = write_raster(tmp_path / "in.tif", random_raster(70, 90))
    res = segment(path, None, str(tmp_path / "out.tif"), band_map=identity_map(), model=(PixelModel(), make_card()))
    assert res.style == str(tmp_path / "out.qml") and os.path.exists(res.style)
    with rasterio.open(res.output) as out:
        cmap = out.colormap(1)
        assert cmap[1] == (0x1F, 0x78, 0xB4, 255) and cmap[3] == (0xE3, 0x1A, 0x1C, 255)
        assert cmap[0][3] == 0  # nodata transparent
        tags = out.tags(1)
        assert (tags["CLASS_1"], tags["CLASS_2"], tags["CLASS_3"]) == ("water", "crop", "tree")
        assert out.nodata == 0 and out.dtypes[0] == "uint8"
        assert set(np.unique(out.read(1))) <= {1, 2, 3}


# -- nodata ---------------------------------------------------------------------------------------


def test_nodata_pixels_stay_nodata(tmp_path):
    data = random_raster(100, 120)
    data[:, 10:30, 40:70] = -9999  # nodata in every band -> output nodata
    data[0, 60:70, 5:25] = -9999  # nodata in one band only -> still classified
    path = write_raster(tmp_path / "in.tif", data, nodata=-9999)
    res = segment(
        path,
        None,
        str(tmp_path / "out.tif"),
        band_map=identity_map(),
        model=(PixelModel(), make_card()),
        confidence=str(tmp_path / "conf.tif"),
        confidence_format="percent",
    )
    with rasterio.open(res.output) as out, rasterio.open(res.confidence) as conf:
        cls, cf = out.read(1), conf.read(1)
    assert (cls[10:30, 40:70] == 0).all() and (cf[10:30, 40:70] == 0).all()
    assert (cls[60:70, 5:25] > 0).all()
    mask = np.ones_like(cls, bool)
    mask[10:30, 40:70] = False
    assert (cls[mask] > 0).all() and (cf[mask] >= 1).all() and cf.max() <= 100


def test_all_nodata_tiles_are_skipped_and_the_rest_is_unchanged(tmp_path):
    data = random_raster(200, 200)
    data[:, :, :100] = -9999  # left half nodata: whole tiles there need no forward pass
    path = write_raster(tmp_path / "in.tif", data, nodata=-9999)
    model, card = PixelModel(), make_card()
    res = segment(
        path,
        None,
        str(tmp_path / "out.tif"),
        band_map=identity_map(),
        model=(model, card),
        confidence=str(tmp_path / "conf.tif"),
        batch_size=1,
        overlap=0.25,
    )
    assert res.tiles == 16 and res.skipped_tiles == 4 and model.calls == 12
    expected = whole_image_probs(model, data[:, :, 100:])
    with rasterio.open(res.output) as out, rasterio.open(res.confidence) as conf:
        cls, cf = out.read(1), conf.read(1)
    assert (cls[:, :100] == 0).all() and (cf[:, :100] == 0).all()
    np.testing.assert_allclose(cf[:, 100:], expected.max(0), atol=1e-5)


def test_nan_is_nodata_in_float_rasters(tmp_path):
    data = random_raster(80, 80).astype(np.float32)
    data[:, :8, :8] = np.nan
    path = write_raster(tmp_path / "in.tif", data)
    res = segment(path, None, str(tmp_path / "out.tif"), band_map=identity_map(), model=(PixelModel(), make_card()))
    with rasterio.open(res.output) as out:
        cls = out.read(1)
    assert (cls[:8, :8] == 0).all() and (cls[8:, 8:] > 0).all()


def test_prepare_applies_mapping_normalization_fill_and_nodata():
    norm = Normalization("zscore", [10.0, 20.0, 0.0], [2.0, 4.0, 1.0], 3.0)
    weights = np.array([[1, 0], [0.5, 0.5], [0, 0]], np.float32)
    prep = Preparer(weights, [False, False, True], norm)
    raw = np.array([[[12.0, 100.0]], [[28.0, 5.0]]], np.float32)  # (S=2, 1, 2)
    invalid = np.array([[[False, False]], [[False, True]]])
    x, valid = prep(raw.copy(), invalid)
    assert x[:, 0, 0] == pytest.approx([1.0, 0.0, 0.0])  # (12-10)/2, (20-20)/4, filled
    assert x[0, 0, 1] == pytest.approx(3.0)  # clipped at 3
    assert x[1, 0, 1] == 0.0  # uses a nodata source -> 0
    assert valid.tolist() == [[True, True]]  # not nodata in *all* bands


# -- cancel and output safety ---------------------------------------------------------------------


@pytest.mark.parametrize("readers,group", [(2, None), (3, 2), (8, 1)])
def test_several_reader_threads_give_the_same_blend(tmp_path, readers, group):
    """Reader threads take chunks in turn (chunk j by thread j % readers), each into its own queue: the
    model still sees them in order, so the blend is the single pass's, rows written once, in order."""
    data = random_raster(150, 173)
    path = write_raster(tmp_path / "in.tif", data)
    model, card = PixelModel(), make_card()
    got, rows = blended_probs(path, model, card, overlap=0.25, batch_size=3, readers=readers, group=group)
    assert not np.isnan(got).any() and [r for r, _ in rows] == sorted(r for r, _ in rows)
    np.testing.assert_allclose(got, whole_image_probs(model, data), atol=1e-5)


def test_reader_threads_stop_on_cancel_and_on_a_read_error(tmp_path):
    import threading

    path = write_raster(tmp_path / "in.tif", random_raster(300, 300))
    card = make_card()
    plan = plan_tiles(300, 300, card.tile_size, 0.25)
    prep = Preparer(np.eye(3, dtype=np.float32), None, card.normalization)
    updates = []
    progress = Progress(on_update=lambda d, t, m: updates.append(d), is_cancelled=lambda: len(updates) >= 2)
    model = PixelModel()
    with pytest.raises(Cancelled):
        run_pipeline(
            plan,
            RasterStrips(path, Window(0, 0, 300, 300), plan, [1, 2, 3], prep),
            model,
            3,
            lambda row, p, v: (row, p),
            lambda payload: None,
            batch_size=2,
            progress=progress,
            readers=3,
            group=1,
        )
    assert model.calls == 2

    class Failing(RasterStrips):  # the third chunk cannot be read (read by thread 2 of 3)
        def clone(self):
            return Failing(self.path, self.window, self.plan, self.indexes, self.prep)

        def read(self, r, c0=0, c1=None):
            if (r, c0) == (0, 2):
                raise RasterError("block 2 of the input raster is damaged")
            return super().read(r, c0, c1)

    with pytest.raises(RasterError, match="block 2 of the input raster is damaged"):
        run_pipeline(
            plan,
            Failing(path, Window(0, 0, 300, 300), plan, [1, 2, 3], prep),
            PixelModel(),
            3,
            lambda row, p, v: (row, p),
            lambda payload: None,
            batch_size=2,
            readers=3,
            group=1,
        )
    assert not [t for t in threading.enumerate() if t.name.startswith("spectralx-reader")]


def test_reader_threads_only_where_the_budget_has_room():
    from spectralx.inference.memory import plan_work

    plan = plan_tiles(4096, 4096, 224, 0.25)
    roomy = plan_work(plan, 32, 32, 8, budget=8 << 30, readers=4)
    assert roomy.readers == 4 and "x 4 reader threads" in roomy.describe()
    counts = []
    for budget in (96 << 20, 192 << 20, 384 << 20, 768 << 20):
        w = plan_work(plan, 32, 32, 8, budget=budget, readers=4)
        counts.append(w.readers)
        base = w.read_bytes + w.queued_bytes * w.queue + w.blend_bytes + w.gdal_cache
        # every reader beyond the first holds one chunk being read and one waiting, inside the budget
        assert w.readers == 1 or base + (w.readers - 1) * (w.read_bytes + w.queued_bytes) <= budget
    assert counts == sorted(counts) and counts[0] < 4
    assert plan_work(plan, 32, 32, 8, budget=8 << 30).readers == 1  # one unless asked (the CPU)


def test_cancel_stops_within_one_batch_and_leaves_no_file(tmp_path):
    path = write_raster(tmp_path / "in.tif", random_raster(300, 300))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    model = PixelModel()
    updates = []
    progress = Progress(on_update=lambda d, t, m: updates.append(d), is_cancelled=lambda: len(updates) >= 2)
    with pytest.raises(Cancelled):
        segment(
            path,
            None,
            str(out_dir / "out.tif"),
            band_map=identity_map(),
            model=(model, make_card()),
            confidence=str(out_dir / "conf.tif"),
            batch_size=2,
            progress=progress,
        )
    assert model.calls == 2  # the batch after the cancel request never ran
    assert os.listdir(out_dir) == []  # no output, no temporary, no style


def test_existing_output_is_an_error_before_any_compute(tmp_path):
    path = write_raster(tmp_path / "in.tif", random_raster(50, 50))
    out = tmp_path / "out.tif"
    out.write_bytes(b"keep me")
    with pytest.raises(RasterError, match="already exists"):
        segment(path, None, str(out), band_map=identity_map(), model=(Exploding(), make_card()))
    assert out.read_bytes() == b"keep me"
    conf = tmp_path / "conf.tif"
    conf.write_bytes(b"old")
    with pytest.raises(RasterError, match="already exists"):
        segment(
            path,
            None,
            str(tmp_path / "new.tif"),
            band_map=identity_map(),
            model=(Exploding(), make_card()),
            confidence=str(conf),
        )
    assert not os.path.exists(tmp_path / "new.tif")
    res = segment(path, None, str(out), band_map=identity_map(), model=(PixelModel(), make_card()), overwrite=True)
    with rasterio.open(res.output) as ds:
        assert ds.width == 50
    assert sorted(os.listdir(tmp_path)) == ["conf.tif", "in.tif", "out.qml", "out.tif"]


def test_unwritable_output_is_an_error_before_any_compute(tmp_path):
    path = write_raster(tmp_path / "in.tif", random_raster(50, 50))
    with pytest.raises(RasterError, match="does not exist"):
        segment(
            path, None, str(tmp_path / "missing" / "out.tif"), band_map=identity_map(), model=(Exploding(), make_card())
        )
    if os.name == "posix" and os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        target = locked / "out.tif"
    else:  # root writes anywhere except pseudo filesystems
        target = "/proc/spectralx-out.tif"
    with pytest.raises(RasterError, match="cannot write"):
        segment(path, None, str(target), band_map=identity_map(), model=(Exploding(), make_card()))
    with pytest.raises(RasterError, match="one of the inputs"):
        segment(path, None, path, band_map=identity_map(), model=(Exploding(), make_card()), overwrite=True)
    with pytest.raises(SpectralXError, match="not available|unknown device"):
        segment(
            path,
            None,
            str(tmp_path / "o.tif"),
            band_map=identity_map(),
            model=(Exploding(), make_card()),
            device="cuda" if not torch.cuda.is_available() else "tpu",
        )


# -- bounded memory -------------------------------------------------------------------------------


def test_buffers_do_not_grow_with_raster_height(tmp_path, monkeypatch):
    """Accumulator, strips and writer buffers depend on width and tile size only."""
    import spectralx.inference.api as seg_mod
    import spectralx.inference.pipeline as pipeline

    seen = {"acc": [], "strip": [], "writer": []}
    real_acc, real_read, real_writer = pipeline.StripAccumulator, RasterStrips.read, seg_mod.BlockWindowWriter

    class SpyAcc(real_acc):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            seen["acc"].append((tuple(self.prob.shape), tuple(self.wsum.shape)))

    def spy_read(self, r, c0=0, c1=None):
        x, valid = real_read(self, r, c0, c1)
        seen["strip"].append(x.shape)
        return x, valid

    class SpyWriter(real_writer):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            seen["writer"].append(self.buf.shape)

    monkeypatch.setattr(pipeline, "StripAccumulator", SpyAcc)
    monkeypatch.setattr(RasterStrips, "read", spy_read)
    monkeypatch.setattr(seg_mod, "BlockWindowWriter", SpyWriter)
    width = 96
    for height in (100, 1600):
        path = write_raster(tmp_path / f"h{height}.tif", random_raster(height, width))
        segment(
            path,
            None,
            str(tmp_path / f"o{height}.tif"),
            band_map=identity_map(),
            model=(PixelModel(), make_card()),
            batch_size=8,
        )
    (small, big) = seen["acc"]
    assert small == big == ((3, TILE, width), (TILE, width))
    assert {s for s in seen["strip"]} == {(3, TILE, width)}
    assert set(seen["writer"]) == {(256, width)}


# -- the real thing: checkpoint, band mapping, CLI ----------------------------------------------


@pytest.mark.slow
def test_segment_command_end_to_end(tmp_path, make_checkpoint):
    ckpt = make_checkpoint()
    path = write_raster(tmp_path / "in.tif", random_raster(90, 110))
    out = tmp_path / "out.tif"
    proc = run_cli(
        "segment",
        path,
        "-c",
        ckpt,
        "-o",
        out,
        "--confidence",
        tmp_path / "conf.tif",
        "--window",
        "5",
        "10",
        "80",
        "70",
        "--batch-size",
        "3",
        "--device",
        "cpu",
    )
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stdout
    with rasterio.open(out) as ds:
        assert (ds.width, ds.height) == (80, 70)
        assert set(np.unique(ds.read(1))) <= {1, 2, 3}
        assert ds.tags(1)["CLASS_2"] == "crop"
    assert os.path.exists(tmp_path / "out.qml") and os.path.exists(tmp_path / "conf.tif")
    again = run_cli("segment", path, "-c", ckpt, "-o", out)
    assert again.returncode == 2 and "already exists" in again.stderr and "Traceback" not in again.stderr
    assert run_cli("segment", path, "-c", ckpt, "-o", out, "--overwrite", "--quiet").returncode == 0
    # --reader-threads: the same classes and confidence, the plan says how many; 0 is a one-line error
    args = (
        path,
        "-c",
        ckpt,
        "-o",
        out,
        "--confidence",
        tmp_path / "conf.tif",
        "--window",
        "5",
        "10",
        "80",
        "70",
        "--batch-size",
        "3",
        "--device",
        "cpu",
        "--overwrite",
        "--quiet",
        "--overlap",
        "0.5",
    )
    assert run_cli("segment", *args).returncode == 0
    with rasterio.open(out) as ds, rasterio.open(tmp_path / "conf.tif") as cs:
        one_reader = (ds.read(1), cs.read(1))
    proc = run_cli("segment", *args, "--reader-threads", "3")
    assert proc.returncode == 0, proc.stderr
    with rasterio.open(out) as ds, rasterio.open(tmp_path / "conf.tif") as cs:
        np.testing.assert_array_equal(ds.read(1), one_reader[0])
        np.testing.assert_allclose(cs.read(1), one_reader[1], atol=1e-6)
    plan = run_cli("segment", path, "-c", ckpt, "--plan", "--reader-threads", "2", "--max-memory", "1G")
    assert plan.returncode == 0 and "x 2 reader threads" in plan.stdout, plan.stdout + plan.stderr
    bad = run_cli("segment", path, "-c", ckpt, "-o", tmp_path / "x.tif", "--reader-threads", "0")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.tif").exists()


def test_segment_real_enmap_tile(tmp_path, make_checkpoint):
    """224-band EnMAP tile (fixture) mapped by wavelength onto a 3-band checkpoint; nodata kept."""
    src = os.path.join(FIXTURES, "enmap_potsdam_tile_128_0.tif")
    if not os.path.exists(src):
        pytest.skip("EnMAP fixture not present")
    ckpt = make_checkpoint(wavelengths=(560.0, 660.0, 860.0))
    path = shutil.copy(src, tmp_path / "enmap.tif")
    res = segment(str(path), ckpt, str(tmp_path / "out.tif"), device="cpu")
    with rasterio.open(path) as ds, rasterio.open(res.output) as out:
        assert (out.crs, out.transform, out.shape) == (ds.crs, ds.transform, ds.shape)
        needed = ds.read(res.band_map.source_indexes, masked=True)
        all_nodata = np.ma.getmaskarray(needed).all(0)
        cls = out.read(1)
    assert ((cls == 0) == all_nodata).all()
    assert res.tiles == 1


def test_devices_and_autocast_policy():
    from spectralx.devices import autocast_dtype, available_devices, pick_device

    ids = [d for d, _ in available_devices()]
    assert ids[0] == "cpu" and pick_device("cpu") == "cpu" and pick_device("auto") in ("cpu", "cuda", "mps")
    assert autocast_dtype("cpu") is None  # CPU runs fp32
    assert autocast_dtype("cuda", "fp16") == torch.float16
    if torch.cuda.is_available():
        assert autocast_dtype("cuda") in (torch.bfloat16, torch.float16)
    with pytest.raises(SpectralXError, match="unknown device"):
        pick_device("tpu")
    with pytest.raises(SpectralXError, match="precision"):
        autocast_dtype("cpu", "int4")


def test_no_import_cycle_between_segment_and_its_cluster_runner():
    """distributed.py imports what it shares with api.py from job.py, never api.py itself (issue 19)."""
    import ast

    import spectralx.inference.distributed as dist

    with open(dist.__file__) as f:
        tree = ast.parse(f.read())
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level == 1}
    assert "api" not in imported and "job" in imported
