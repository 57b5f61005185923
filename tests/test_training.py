"""Training from hand-labelled data (issue 4): labels, finetune, pretrain, leakage, bad input."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
import torch
from conftest import FIXTURES, run_cli

IMAGE = os.path.join(FIXTURES, "training_landsat8_224078.tif")
POLYGONS = os.path.join(FIXTURES, "training_landsat8_224078_polygons.gpkg")
TILE = 64

pytestmark = pytest.mark.usefixtures("one_thread")


def _grid():
    import rasterio

    with rasterio.open(IMAGE) as ds:
        return ds.crs, ds.transform, ds.width, ds.height


def _class_raster():
    """The real polygons (water, crop, tree) burnt onto the image grid: values 1..3."""
    import fiona
    from rasterio.features import rasterize

    crs, transform, w, h = _grid()
    names = {"crop": 1, "tree": 2, "water": 3}
    with fiona.open(POLYGONS) as src:
        shapes = [(f["geometry"], names[f["properties"]["name"]]) for f in src]
    return rasterize(shapes, out_shape=(h, w), transform=transform, fill=0, dtype="uint8")


@pytest.fixture(scope="module")
def split_polygons(tmp_path_factory):
    """Many small real polygons: 3x3-pixel blocks inside each hand-drawn polygon, in EPSG:4326."""
    import fiona
    from fiona.crs import CRS as FCRS
    from rasterio.warp import transform_geom

    crs, transform, w, h = _grid()
    labels = _class_raster()
    inv = {1: "crop", 2: "tree", 3: "water"}
    feats = []
    for r in range(0, h - 2, 3):
        for c in range(0, w - 2, 3):
            block = labels[r : r + 3, c : c + 3]
            if block.min() > 0 and (block == block[0, 0]).all():
                x0, y0 = transform * (c, r)
                x1, y1 = transform * (c + 3, r + 3)
                ring = [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]
                geom = transform_geom(crs, "EPSG:4326", {"type": "Polygon", "coordinates": [ring]})
                feats.append((geom, inv[int(block[0, 0])]))
    path = str(tmp_path_factory.mktemp("labels") / "blocks_4326.gpkg")
    schema = {"geometry": "Polygon", "properties": {"landcover": "str", "note": "str"}}
    with fiona.open(path, "w", driver="GPKG", crs=FCRS.from_epsg(4326), schema=schema) as dst:
        for geom, name in feats:
            dst.write({"geometry": geom, "properties": {"landcover": name, "note": "block"}})
        # one feature with an empty class and one far outside the image: skipped and counted
        dst.write({"geometry": feats[0][0], "properties": {"landcover": "", "note": "empty"}})
        dst.write(
            {
                "geometry": {"type": "Polygon", "coordinates": [[(10, 10), (10.1, 10), (10.1, 10.1), (10, 10)]]},
                "properties": {"landcover": "water", "note": "far away"},
            }
        )
    return path, len(feats)


@pytest.fixture(scope="module")
def label_raster(tmp_path_factory):
    import rasterio

    crs, transform, w, h = _grid()
    path = str(tmp_path_factory.mktemp("labels") / "labels.tif")
    with rasterio.open(
        path, "w", driver="GTiff", width=w, height=h, count=1, dtype="uint8", crs=crs, transform=transform, nodata=0
    ) as dst:
        dst.write(_class_raster(), 1)
    return path


def test_vector_labels_reprojected_and_counted(split_polygons):
    from spectralx.training.labels import open_grid, read_labels

    path, n = split_polygons
    src = read_labels(path, open_grid(IMAGE), "landcover")
    assert src.class_kind == "text" and src.keys == ["crop", "tree", "water"]
    assert src.used == n
    assert src.skipped == {"with an empty class": 1, "outside the image": 1}
    values, regions = src.rasterize({"crop": 1, "tree": 2, "water": 3})
    truth = _class_raster()
    # reprojected to EPSG:4326 and back: the burnt labels agree with the originals almost everywhere
    labelled = values > 0
    assert labelled.sum() > 0.9 * 9 * n
    assert (values[labelled] == truth[labelled]).mean() > 0.98
    assert len(np.unique(regions[regions > 0])) == n


def test_class_table_derivation_and_json(tmp_path):
    from spectralx.training.classes import parse_classes, table_from_names, table_from_values

    t = table_from_names(["water", "crop", "tree", "crop"])
    assert [(c.value, c.name) for c in t] == [(1, "crop"), (2, "tree"), (3, "water")]
    t = table_from_values([7, 3, 3])
    assert [c.value for c in t] == [3, 7]
    p = tmp_path / "classes.json"
    p.write_text(json.dumps([{"value": 5, "name": "water", "color": "#0000ff"}, {"value": 2, "name": "crop"}]))
    t = parse_classes(str(p))
    assert [(c.value, c.name) for c in t] == [(2, "crop"), (5, "water")] and t[1].color == "#0000ff"
    assert [c.name for c in parse_classes('{"1": "a", "2": "b"}')] == ["a", "b"]


def test_split_never_shares_a_polygon(split_polygons):
    """Leakage: no polygon has pixels on both sides, and training chips never see validation pixels."""
    from spectralx.training.dataset import ChipSampler, Scene, pad_scene, split_regions
    from spectralx.training.labels import open_grid, read_labels

    path, _ = split_polygons
    src = read_labels(path, open_grid(IMAGE), "landcover")
    values, regions = src.rasterize({"crop": 1, "tree": 2, "water": 3})
    y = np.where(values > 0, values.astype(np.int16) - 1, -1).astype(np.int16)
    x = np.zeros((3,) + y.shape, np.float32)
    xp, yp, rp, pad = pad_scene(x, y, regions.astype(np.int64), TILE)
    scene = Scene(IMAGE, path, xp, yp, rp, pad=pad)
    rep = split_regions([scene], 3, 0.3, np.random.default_rng(1), ["crop", "tree", "water"])
    train_regions = set(np.unique(rp[scene.role == 1]))
    val_regions = set(np.unique(rp[scene.role == 2]))
    assert train_regions and val_regions and not (train_regions & val_regions)
    # every region lies wholly on one side
    for rid in np.unique(rp[rp > 0]):
        assert len(set(np.unique(scene.role[rp == rid]))) == 1
    for k in range(3):
        assert rep.per_class[k]["train"] > 0 and rep.per_class[k]["val"] > 0
        assert 0.1 < rep.per_class[k]["val"] / (rep.per_class[k]["val"] + rep.per_class[k]["train"]) < 0.6
    # training targets never contain a validation pixel
    scene.y = np.where(scene.role == 2, 99, scene.y).astype(np.int16)  # mark validation pixels
    sampler = ChipSampler([scene], 3, TILE, np.random.default_rng(0))
    for _ in range(10):
        _, yb = sampler.batch(4)
        assert not (yb == 99).any()


@pytest.mark.slow
def test_finetune_from_polygons_in_another_crs(split_polygons, tiny_backbone, tmp_path):
    from spectralx.checkpoint import load_checkpoint, read_card
    from spectralx.progress import Progress
    from spectralx.training import finetune

    path, _ = split_polygons
    out = str(tmp_path / "ft.safetensors")
    updates = []
    res = finetune(
        IMAGE,
        path,
        out,
        class_field="landcover",
        backbone=tiny_backbone,
        tile_size=TILE,
        steps=12,
        batch_size=2,
        eval_every=6,
        device="cpu",
        seed=0,
        progress=Progress(on_update=lambda d, t, m: updates.append((d, t))),
    )
    assert os.path.isfile(out) and res.checkpoint == out
    assert updates[-1][0] == updates[-1][1] or res.card.training["stopped_early"]
    card = read_card(out)
    assert card.stage == "finetune"
    assert [(c.value, c.name) for c in card.classes] == [(1, "crop"), (2, "tree"), (3, "water")]
    assert card.normalization.method == "zscore" and len(card.normalization.mean) == 3
    assert all(s > 0 for s in card.normalization.std)
    m = card.metrics
    assert 0.0 <= m["val_miou"] <= 1.0 and set(m["per_class_iou"]) == {"crop", "tree", "water"}
    cm = np.array(m["confusion_matrix"])
    assert cm.shape == (3, 3) and cm.sum() == m["val_pixels"] == card.training["val_pixels"] > 0
    assert card.training["images"] == [os.path.basename(IMAGE)]
    assert card.training["class_field"] == "landcover" and card.training["backbone_frozen"]
    assert card.training["train_pixels"] > 0 and card.gsd_m == 30.0
    model, card2 = load_checkpoint(out, backbone=tiny_backbone)
    with torch.no_grad():
        logits = model(torch.randn(1, 3, TILE, TILE))
    assert logits.shape == (1, 3, TILE, TILE) and torch.isfinite(logits).all()
    _segment_if_available(out, tiny_backbone, tmp_path, {1, 2, 3})


def _segment_if_available(checkpoint, backbone, tmp_path, values):
    try:
        from spectralx.inference import segment
    except ImportError:
        return
    import rasterio

    pred = str(tmp_path / "pred.tif")
    segment(IMAGE, checkpoint, pred, backbone=backbone, device="cpu")
    with rasterio.open(pred) as ds:
        assert (ds.width, ds.height) == (224, 256)
        assert set(np.unique(ds.read(1))) <= values | {0, ds.nodata}


@pytest.mark.slow
def test_finetune_from_label_raster_and_cli(label_raster, tiny_backbone, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    from spectralx.checkpoint import load_checkpoint, read_card

    out = tmp_path / "ft_raster.safetensors"
    classes = tmp_path / "classes.json"
    classes.write_text(
        json.dumps(
            {
                "classes": [
                    {"value": 1, "name": "crop", "color": "#e6c229"},
                    {"value": 2, "name": "tree", "color": "#1b7837"},
                    {"value": 3, "name": "water", "color": "#1f78b4"},
                ]
            }
        )
    )
    proc = run_cli(
        "finetune",
        "--image",
        IMAGE,
        "--labels",
        label_raster,
        "--classes",
        classes,
        "--backbone",
        tiny_backbone,
        "--tile-size",
        TILE,
        "--steps",
        6,
        "--batch-size",
        2,
        "--val-fraction",
        0.3,
        "--device",
        "cpu",
        "-o",
        out,
    )
    assert proc.returncode == 0, proc.stderr
    card = read_card(str(out))
    assert [c.color for c in card.classes] == ["#e6c229", "#1b7837", "#1f78b4"]
    # one connected region per hand-drawn polygon: with one region per class nothing can be held out
    assert "none" in card.metrics["validation"] or card.metrics["val_pixels"] > 0
    assert card.training["command"].startswith("spectralx finetune")
    model, _ = load_checkpoint(str(out))  # backbone placed beside the new checkpoint
    assert model.cfg.num_classes == 3


@pytest.mark.slow
def test_pretrain_then_finetune_adopts_new_classes(tiny_backbone, split_polygons, tmp_path, monkeypatch):
    from spectralx.checkpoint import load_checkpoint, read_card
    from spectralx.training import finetune

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    pre = str(tmp_path / "pre.safetensors")
    proc = run_cli(
        "pretrain",
        IMAGE,
        "--backbone",
        tiny_backbone,
        "--tile-size",
        TILE,
        "--steps",
        4,
        "--batch-size",
        2,
        "--device",
        "cpu",
        "-o",
        pre,
    )
    assert proc.returncode == 0, proc.stderr
    card = read_card(pre)
    assert card.stage == "pretrain" and len(card.normalization.mean) == 3
    assert np.isfinite(card.metrics["masked_mse_final"]) and card.training["steps"] == 4
    pre_model, _ = load_checkpoint(pre, backbone=tiny_backbone)
    path, _ = split_polygons
    out = str(tmp_path / "ft.safetensors")
    finetune(
        IMAGE, path, out, checkpoint=pre, backbone=tiny_backbone, steps=3, batch_size=2, eval_every=3, device="cpu"
    )
    ft_model, ft_card = load_checkpoint(out, backbone=tiny_backbone)
    assert ft_card.training["base_stage"] == "pretrain" and ft_model.cfg.num_classes == 3
    assert ft_model.cfg.spectral_skip == card.config.spectral_skip > 0  # same head as a new model
    pre_state, ft_state = pre_model.state_dict(), ft_model.state_dict()
    # stage-1 tensors that stage 2 does not train are carried over unchanged
    for key in ("hypert.stem.inp.0.weight", "hypert.spatial_queries", "hypert.spectral.attn.q.weight"):
        if key in pre_state:
            assert torch.equal(pre_state[key], ft_state[key]), key
    # stage-1 trained them: they differ from a fresh initialisation with the same seed
    assert not torch.equal(
        pre_state["hypert.stem.inp.0.weight"], _fresh_state(tiny_backbone)["hypert.stem.inp.0.weight"]
    )


def _fresh_state(backbone):
    from spectralx.checkpoint import Band, new_model
    from spectralx.training.pretrain import PLACEHOLDER_CLASSES

    torch.manual_seed(0)
    model, _ = new_model(
        backbone,
        [Band(f"B{i}", w, None) for i, w in enumerate((482.0, 561.4, 654.6))],
        PLACEHOLDER_CLASSES,
        img_size=TILE,
    )
    return model.state_dict()


def test_random_patch_mask_ratio():
    from spectralx.training.pretrain import random_patch_mask

    m = random_patch_mask(3, 4, 16, 0.75, torch.Generator().manual_seed(0))
    assert m.shape == (3, 1, 64, 64)
    assert torch.allclose(m.mean((1, 2, 3)), torch.tensor(0.75))


# --- bad input: each a clear error before training starts ------------------------------------


@pytest.fixture
def no_training(monkeypatch):
    """Fail loudly if a training step would start."""
    import sys

    import spectralx.training  # noqa: F401

    ft = sys.modules["spectralx.training.finetune"]

    def boom(*a, **k):
        raise AssertionError("training started despite bad input")

    monkeypatch.setattr(ft, "ChipSampler", boom)


@pytest.mark.slow
def test_bad_class_field_lists_fields(split_polygons, tiny_backbone, tmp_path, no_training, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    from spectralx.errors import LabelError
    from spectralx.training import finetune

    with pytest.raises(LabelError, match=r"class field 'klass' not found.*available fields: landcover, note"):
        finetune(
            IMAGE,
            split_polygons[0],
            str(tmp_path / "x.safetensors"),
            class_field="klass",
            backbone=tiny_backbone,
            tile_size=TILE,
            steps=1,
        )
    proc = run_cli(
        "finetune",
        "--image",
        IMAGE,
        "--labels",
        split_polygons[0],
        "--class-field",
        "klass",
        "--backbone",
        tiny_backbone,
        "--tile-size",
        TILE,
        "-o",
        tmp_path / "x.safetensors",
    )
    assert proc.returncode == 2 and "available fields: landcover, note" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "x.safetensors").exists()


def test_vector_with_no_feature_over_image(tiny_backbone, tmp_path, no_training):
    import fiona
    from fiona.crs import CRS as FCRS

    from spectralx.errors import LabelError
    from spectralx.training import finetune

    path = str(tmp_path / "elsewhere.geojson")
    schema = {"geometry": "Point", "properties": {"class": "str"}}
    with fiona.open(path, "w", driver="GeoJSON", crs=FCRS.from_epsg(4326), schema=schema) as dst:
        for i, name in enumerate(["water", "crop"]):
            dst.write({"geometry": {"type": "Point", "coordinates": (13.0 + i, 52.4)}, "properties": {"class": name}})
    with pytest.raises(LabelError, match=r"none of its 2 features lies over the image"):
        finetune(IMAGE, path, str(tmp_path / "x.safetensors"), backbone=tiny_backbone, tile_size=TILE, steps=1)


def test_label_raster_on_another_grid(label_raster, tiny_backbone, tmp_path, no_training):
    import rasterio

    from spectralx.errors import LabelError
    from spectralx.training import finetune

    shifted = str(tmp_path / "shifted.tif")
    with rasterio.open(label_raster) as src:
        prof = src.profile.copy()
        data = src.read(1)
    prof["transform"] = prof["transform"] * rasterio.Affine.translation(3, 0)
    with rasterio.open(shifted, "w", **prof) as dst:
        dst.write(data, 1)
    with pytest.raises(LabelError, match=r"is on another grid than the image"):
        finetune(IMAGE, shifted, str(tmp_path / "x.safetensors"), backbone=tiny_backbone, tile_size=TILE, steps=1)


def test_single_class_training_set(tiny_backbone, tmp_path, no_training):
    import rasterio

    from spectralx.errors import LabelError
    from spectralx.training import finetune

    crs, transform, w, h = _grid()
    one = str(tmp_path / "one.tif")
    data = np.where(_class_raster() == 3, 3, 0).astype("uint8")
    with rasterio.open(
        one, "w", driver="GTiff", width=w, height=h, count=1, dtype="uint8", crs=crs, transform=transform, nodata=0
    ) as dst:
        dst.write(data, 1)
    with pytest.raises(LabelError, match=r"single class"):
        finetune(IMAGE, one, str(tmp_path / "x.safetensors"), backbone=tiny_backbone, tile_size=TILE, steps=1)


def test_cancel_writes_nothing(split_polygons, tiny_backbone, tmp_path):
    from spectralx.errors import Cancelled
    from spectralx.progress import Progress
    from spectralx.training import finetune

    calls = []

    def cancelled():
        calls.append(1)
        return len(calls) > 2

    out = tmp_path / "never.safetensors"
    with pytest.raises(Cancelled):
        finetune(
            IMAGE,
            split_polygons[0],
            str(out),
            backbone=tiny_backbone,
            tile_size=TILE,
            steps=50,
            batch_size=1,
            device="cpu",
            progress=Progress(is_cancelled=cancelled),
        )
    assert not out.exists() and not list(tmp_path.glob("*.safetensors*"))


@pytest.mark.slow
def test_points_with_integer_classes(tiny_backbone, tmp_path):
    """Points (integer class field, image CRS): every point is its own region; held out whole."""
    import fiona
    from fiona.crs import CRS as FCRS

    from spectralx.checkpoint import read_card
    from spectralx.training import finetune

    crs, transform, w, h = _grid()
    truth = _class_raster()
    rng = np.random.default_rng(0)
    path = str(tmp_path / "points.geojson")
    schema = {"geometry": "Point", "properties": {"code": "int"}}
    with fiona.open(path, "w", driver="GeoJSON", crs=FCRS.from_epsg(32621), schema=schema) as dst:
        for v in (1, 2, 3):
            rr, cc = np.nonzero(truth == v)
            for i in rng.choice(len(rr), 12, replace=False):
                x, y = transform * (cc[i] + 0.5, rr[i] + 0.5)
                dst.write({"geometry": {"type": "Point", "coordinates": (x, y)}, "properties": {"code": 10 * v}})
    out = str(tmp_path / "pts.safetensors")
    finetune(
        IMAGE,
        path,
        out,
        backbone=tiny_backbone,
        tile_size=TILE,
        steps=4,
        batch_size=2,
        eval_every=4,
        val_fraction=0.25,
        device="cpu",
    )
    card = read_card(out)
    assert [c.value for c in card.classes] == [10, 20, 30]  # integer classes keep their values
    assert card.training["val_pixels"] == 9 and card.training["train_pixels"] == 27
    assert card.metrics["validation"] == "held-out whole points"


def test_connected_regions_of_a_label_raster():
    from spectralx.training.labels import connected_regions

    a = np.zeros((6, 6), np.uint16)
    a[0:2, 0:2] = 1
    a[2, 2] = 1  # touches the first block diagonally: same region (8-connectivity)
    a[0:2, 4:6] = 1  # separate block of the same class
    a[4:6, 0:3] = 2
    r = connected_regions(a)
    assert r[0, 0] == r[2, 2] != r[0, 4] and r[4, 0] not in (r[0, 0], r[0, 4])
    assert len(np.unique(r[r > 0])) == 3 and (r[a == 0] == 0).all()


def test_training_says_how_long_it_will_take():
    """Issue 22: a ViT-B fine-tune takes about half an hour on a 2-core CPU; the loop logs the whole
    run's estimate after its first timed steps (the progress bars, CLI and plugin, show the time
    left), so an analyst sees the budget before spending it."""
    from spectralx.progress import Progress
    from spectralx.training.loop import ETA_AFTER, run_loop

    model = torch.nn.Linear(3, 2)
    x, y = torch.randn(8, 3), torch.randint(0, 2, (8,))
    logs = []

    def step_fn(step):
        time.sleep(0.02)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        return loss, float(loss.detach())

    progress = Progress(on_log=logs.append)
    run_loop(model, step_fn, steps=8, lr=1e-3, weight_decay=0.0, device="cpu", progress=progress, log_every=4)
    estimates = [line for line in logs if "s per step on cpu" in line]
    assert len(estimates) == 1 and "8 steps take about" in estimates[0]
    per_step = float(estimates[0].split("about ")[1].split(" s per step")[0])
    assert 0.0 < per_step < 5.0
    # logged once the first timed steps are done, before the run ends
    assert logs.index(estimates[0]) < logs.index(next(line for line in logs if line.startswith("step 8/8")))
    assert ETA_AFTER == 3
