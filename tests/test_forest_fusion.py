"""Issue 17: the random forest as a deployable checkpoint, its fusion with the network, validation on
every run (a spatial part of a lone polygon), and warnings for a model that trained badly.

Real data: the Landsat 8 crop with its hand-drawn polygons (one polygon per class) and the tiny
random-weight backbone for the network parts.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import rasterio
import torch
from conftest import FIXTURES, REPO, run_cli

from spectralx.checkpoint import load_checkpoint, read_card
from spectralx.errors import CheckpointError
from spectralx.inference import segment
from spectralx.model.forest import ForestArrays

IMAGE = os.path.join(FIXTURES, "training_landsat8_224078.tif")
POLYGONS = os.path.join(FIXTURES, "training_landsat8_224078_polygons.gpkg")

pytestmark = pytest.mark.usefixtures("one_thread")


def mosaic(path) -> str:
    """The crop repeated 2 x 2 (448 x 512 px, same band metadata): several 256-px blocks."""
    with rasterio.open(IMAGE) as ds:
        profile = ds.profile
        data = np.tile(ds.read(), (1, 2, 2))
        tags = [ds.tags(i) for i in range(1, ds.count + 1)]
        desc = ds.descriptions
    profile.update(width=data.shape[2], height=data.shape[1], tiled=True, blockxsize=128, blockysize=128)
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
        for i, t in enumerate(tags, 1):
            ds.update_tags(i, **t)
            if desc[i - 1]:
                ds.set_band_description(i, desc[i - 1])
    return str(path)


def labelled_pixels():
    """(N, 3) normalized spectra and (N,) class indices of the polygons' pixels."""
    import fiona
    from rasterio.features import rasterize

    from spectralx.training.rasters import normalize, read_mapped, same_sensor_mappings, scene_statistics

    _, (mapping,) = same_sensor_mappings([IMAGE], None)
    norm, _ = scene_statistics([IMAGE], [mapping])
    with rasterio.open(IMAGE) as ds:
        x = normalize(read_mapped(ds, mapping), norm)
        shape, tr = (ds.height, ds.width), ds.transform
    names = {"crop": 1, "tree": 2, "water": 3}
    with fiona.open(POLYGONS) as src:
        lab = rasterize(
            [(f["geometry"], names[f["properties"]["name"]]) for f in src],
            out_shape=shape,
            transform=tr,
            fill=0,
            dtype="uint8",
        )
    ok = lab > 0
    return x[:, ok].T.astype(np.float32), lab[ok].astype(np.int64) - 1, x


@pytest.fixture(scope="module")
def forest_checkpoint(tmp_path_factory):
    """`spectralx finetune --method forest` on the real polygons: no backbone given or needed."""
    out = tmp_path_factory.mktemp("forest") / "forest.safetensors"
    proc = run_cli(
        "finetune",
        "--method",
        "forest",
        "--image",
        IMAGE,
        "--labels",
        POLYGONS,
        "--class-field",
        "name",
        "-o",
        out,
        "--quiet",
    )
    assert proc.returncode == 0, proc.stderr
    assert "map: random forest" in proc.stdout and "validation mIoU" in proc.stdout
    return str(out)


def test_forest_arrays_give_scikit_learns_probabilities():
    from sklearn.ensemble import RandomForestClassifier

    from spectralx.model.forest import MAX_LEAF_NODES

    x, y, _ = labelled_pixels()
    rng = np.random.default_rng(0)
    noisy = x + rng.normal(0, 0.5, x.shape).astype(np.float32)  # overlapping classes: deep, mixed trees
    rf = RandomForestClassifier(50, random_state=0, max_leaf_nodes=MAX_LEAF_NODES).fit(noisy, y)
    # four columns, the last class never trained: its column stays 0 and the others match exactly
    arrays = ForestArrays.from_sklearn(rf, 4)
    assert arrays.depth >= 5 and arrays.num_trees == 50
    test = np.concatenate([noisy[:500], rng.normal(0, 2, (500, 3)).astype(np.float32)])
    want = rf.predict_proba(test)
    for got in (arrays.predict_proba(test), arrays.predict_proba_numpy(test)):
        np.testing.assert_allclose(got[:, :3], want, atol=1e-6)
        assert (got[:, 3] == 0).all()
    # through tensors and back (the checkpoint's path), still the same forest
    again = ForestArrays.from_tensors(arrays.to_tensors(), 3, 4, "test")
    np.testing.assert_allclose(again.predict_proba(test)[:, :3], want, atol=1e-6)


def test_forest_threads_are_torchs_share_of_the_cores(monkeypatch):
    """Issue 22: tree walks ran on every core of the machine whatever torch was given, so each Dask
    worker (one core) competed with the others for all of them; they now take torch's thread count."""
    import concurrent.futures

    from sklearn.ensemble import RandomForestClassifier

    x, y, _ = labelled_pixels()
    arrays = ForestArrays.from_sklearn(RandomForestClassifier(8, random_state=0).fit(x, y), 3)
    pools = []
    real = concurrent.futures.ThreadPoolExecutor

    def recording(workers, *a, **k):
        pools.append(workers)
        return real(workers, *a, **k)

    monkeypatch.setattr(concurrent.futures, "ThreadPoolExecutor", recording)
    threads = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            arrays.predict_proba(x[:100])
    finally:
        torch.set_num_threads(threads)
    assert pools == [1, 2]


@pytest.mark.slow
def test_forest_checkpoint_is_plain_tensors_and_damage_is_refused(forest_checkpoint, tmp_path):
    from safetensors import safe_open

    with open(forest_checkpoint, "rb") as f:
        head = f.read(16)
    assert not head.startswith((b"PK", b"\x80"))  # neither a torch zip nor a pickle
    with safe_open(forest_checkpoint, "pt") as f:
        keys = set(f.keys())
        dtypes = {k: f.get_tensor(k).dtype for k in keys}
    assert keys == {f"forest.{k}" for k in ("feature", "threshold", "left", "right", "value", "roots", "context")}
    assert dtypes["forest.threshold"] == torch.float64 and dtypes["forest.left"] == torch.int32
    card = read_card(forest_checkpoint)
    assert card.is_forest and card.backbone.file == "" and card.fusion_weight == 1.0
    # the same content saved as a pickle is refused by name, nothing unpickled
    tensors, meta = load_safetensors(forest_checkpoint)
    pickled = tmp_path / "forest.safetensors"
    torch.save({"tensors": tensors, "card": meta}, pickled)
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(str(pickled))
    # a child that points back to its parent (an endless descent) is refused before any use
    from safetensors.torch import save_file

    bad = dict(tensors)
    left = bad["forest.left"].clone()
    inner = int(torch.nonzero(left >= 0)[1])
    left[inner] = inner
    bad["forest.left"] = left
    looped = tmp_path / "looped.safetensors"
    save_file(bad, str(looped), metadata=meta)
    with pytest.raises(CheckpointError, match="child does not follow it"):
        load_checkpoint(str(looped))
    # a split on a band the model does not have
    bad = dict(tensors)
    feat = bad["forest.feature"].clone()
    feat[int(torch.nonzero(feat >= 0)[0])] = 7
    bad["forest.feature"] = feat
    save_file(bad, str(looped), metadata=meta)
    with pytest.raises(CheckpointError, match="band the model does not have"):
        load_checkpoint(str(looped))


def load_safetensors(path):
    from spectralx.safefile import read_safetensors

    return read_safetensors(path)


@pytest.mark.slow
def test_forest_checkpoint_streams_like_in_memory_and_shows_in_info(forest_checkpoint, tmp_path):
    from spectralx.model.forest import with_context
    from spectralx.training.rasters import mapping_for, normalize, read_mapped

    model, card = load_checkpoint(forest_checkpoint)
    assert model.forest.context == 3  # the default: spectra + 3x3 mean spectrum
    big = mosaic(tmp_path / "mosaic.tif")
    with rasterio.open(big) as ds:
        x = normalize(read_mapped(ds, mapping_for(big, card)), card.normalization)
    feats = with_context(x, model.forest.context)
    proba = model.forest.predict_proba(feats.reshape(feats.shape[0], -1).T)
    values = np.array([c.value for c in card.classes])
    want = values[proba.argmax(1)].reshape(x.shape[1:])
    # several blocks and overlapping tiles: blending per-pixel probabilities changes nothing except
    # where a tile's edge cuts a pixel's 3x3 neighbourhood (those weigh little in the blend)
    res = segment(
        big,
        forest_checkpoint,
        str(tmp_path / "rf.tif"),
        device="cpu",
        block_size=256,
        max_memory="64M",
        confidence=str(tmp_path / "rf_conf.tif"),
    )
    assert res.blocks > 1
    with rasterio.open(res.output) as ds:
        got = ds.read(1)
    assert (got == want).mean() > 0.995, (got != want).sum()
    with rasterio.open(res.confidence) as ds:
        conf = ds.read(1)
    close = np.isclose(conf, proba.max(1).reshape(x.shape[1:]), atol=1e-4)
    assert close.mean() > 0.99
    info = run_cli("info", forest_checkpoint, "--check", check=True).stdout
    assert "random forest: 200 trees" in info and "no network, no backbone" in info
    assert "map made by: random forest" in info


@pytest.mark.slow
def test_forest_checkpoint_on_dask_gives_the_same_class_raster(forest_checkpoint, tmp_path):
    pytest.importorskip("distributed")
    big = mosaic(tmp_path / "mosaic.tif")
    local = segment(big, forest_checkpoint, str(tmp_path / "local.tif"), device="cpu")
    remote = segment(big, forest_checkpoint, str(tmp_path / "dask.tif"), device="cpu", dask="local:2", block_size=256)
    assert remote.workers == 2 and remote.blocks == 4
    with rasterio.open(local.output) as a, rasterio.open(remote.output) as b:
        np.testing.assert_array_equal(a.read(1), b.read(1))


@pytest.fixture(scope="module")
def fused(tiny_backbone, tmp_path_factory):
    """A few-step network on the real polygons, pooled with its forest (the default)."""
    from spectralx.training import finetune

    out = str(tmp_path_factory.mktemp("fused") / "fused.safetensors")
    res = finetune(
        IMAGE,
        POLYGONS,
        out,
        class_field="name",
        backbone=tiny_backbone,
        tile_size=64,
        steps=6,
        batch_size=2,
        eval_every=3,
        device="cpu",
    )
    return res, out


@pytest.mark.slow
def test_every_landsat_finetune_is_validated_and_fusion_is_recorded(fused):
    res, out = fused
    m = res.metrics
    # one polygon per class: the far part of each validates instead of "not validated"
    assert "val_miou" in m and m["val_pixels"] > 50, m.get("validation")
    f = m["fusion"]
    assert set(f["val_miou"]) == {"network", "forest", "fused"}
    # the forest alone is one of the weights tried, so the map is never below it on validation
    assert f["val_miou"]["fused"] >= f["val_miou"]["forest"] - 1e-9
    assert [w for w, _ in f["grid"]] == [0.8, 0.9, 1.0] and f["weight"] in (0.8, 0.9, 1.0)
    assert "3x3 neighbourhood" in res.card.training["fusion"]["forest"]
    card = read_card(out)
    assert card.fusion_weight == f["weight"] and card.training["fusion"]["weight"] == f["weight"]
    assert "map:" in res.comparison and "random forest" in res.comparison
    # the forest rides in the network's checkpoint and is applied after loading
    model, card = load_checkpoint(out, backbone=res.card.backbone.path or None)
    assert model.forest is not None and model.fusion_weight == f["weight"]


@pytest.mark.slow
def test_fused_model_streams_like_one_block(fused, tmp_path):
    res, out = fused
    model, card = load_checkpoint(out, backbone=res.card.backbone.path or None)
    model.fusion_weight = 0.5  # a real pool whatever validation chose
    big = mosaic(tmp_path / "mosaic.tif")
    one = segment(big, None, str(tmp_path / "one.tif"), model=(model, card), device="cpu")
    many = segment(
        big, None, str(tmp_path / "many.tif"), model=(model, card), device="cpu", block_size=256, max_memory="64M"
    )
    assert one.blocks == 1 and many.blocks > 1
    with rasterio.open(one.output) as a, rasterio.open(many.output) as b:
        np.testing.assert_array_equal(a.read(1), b.read(1))
    # weight 1 is the forest alone (the network is not even run), weight 0 the network alone
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        model.fusion_weight = 1.0
        forest_only = torch.softmax(model(x), 1)
        model.fusion_weight = 0.0
        net_only = model(x)
        model.fusion_weight = 0.5
        pooled = model(x)
    from spectralx.model.forest import with_context

    feats = with_context(x[0].numpy(), model.forest.context)
    p = model.forest.predict_proba(feats.reshape(feats.shape[0], -1).T)
    np.testing.assert_allclose(forest_only[0].permute(1, 2, 0).reshape(-1, 3).numpy(), p, atol=5e-3)
    want = 0.5 * torch.log_softmax(net_only, 1) + 0.5 * torch.log(
        (torch.from_numpy(p).float().T.reshape(1, 3, 64, 64) + 1e-3) / (1 + 3e-3)
    )
    torch.testing.assert_close(pooled, want, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_degenerate_flag_fires_untrained_and_not_on_the_demo_model(tiny_backbone, tmp_path):
    from spectralx.training import finetune
    from spectralx.training.health import card_warnings

    res = finetune(
        IMAGE,
        POLYGONS,
        str(tmp_path / "zero.safetensors"),
        class_field="name",
        backbone=tiny_backbone,
        tile_size=64,
        steps=0,
        device="cpu",
    )
    warnings = res.metrics["warnings"]
    assert any("not trained (0 steps)" in w for w in warnings), warnings
    assert read_card(str(tmp_path / "zero.safetensors")).metrics["warnings"] == warnings
    demo = read_card(os.path.join(REPO, "resources", "models", "demo.safetensors"))
    assert card_warnings(demo) == [] and demo.metrics["warnings"] == []
    # and the checks themselves: a collapsed network, a loss at chance, a network far below the forest
    from spectralx.training.health import model_warnings

    cm = np.array([[0, 40, 0], [0, 50, 0], [0, 30, 2]])
    w = model_warnings(
        steps_run=300,
        final_loss=1.05,
        train_classes=3,
        confusion=cm,
        class_names=["crop", "tree", "water"],
        network_val_miou=0.20,
        forest_val_miou=0.60,
    )
    assert len(w) == 3 and "near chance" in w[0] and "'tree' on 98%" in w[1] and "0.400 below" in w[2]
    assert (
        model_warnings(
            steps_run=300,
            final_loss=0.2,
            train_classes=3,
            confusion=np.eye(3) * 30,
            class_names=["a", "b", "c"],
            network_val_miou=0.6,
            forest_val_miou=0.62,
        )
        == []
    )


@pytest.mark.slow
def test_finetune_cli_fuse_option_and_forest_method_refuse_a_checkpoint(tmp_path, forest_checkpoint):
    proc = run_cli(
        "finetune",
        "--method",
        "forest",
        "-c",
        forest_checkpoint,
        "--image",
        IMAGE,
        "--labels",
        POLYGONS,
        "--class-field",
        "name",
        "-o",
        tmp_path / "x.safetensors",
    )
    assert proc.returncode != 0 and "not from a checkpoint" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.safetensors").exists()
    proc = run_cli("finetune", "--fuse", "maybe", "--image", IMAGE, "--labels", POLYGONS, "-o", tmp_path / "y")
    assert proc.returncode == 2 and "invalid choice: 'maybe'" in proc.stderr
    # a network cannot be fine-tuned from a forest checkpoint: said in one line
    proc = run_cli(
        "finetune",
        "-c",
        forest_checkpoint,
        "--image",
        IMAGE,
        "--labels",
        POLYGONS,
        "--class-field",
        "name",
        "-o",
        tmp_path / "z.safetensors",
    )
    assert proc.returncode != 0 and "random forest, not a SpectralX network" in proc.stderr
    assert (
        json.loads(run_cli("info", forest_checkpoint, "--json", check=True).stdout)["architecture"]["method"]
        == "forest"
    )


def test_context_features_are_the_mean_of_valid_neighbours():
    from spectralx.model.forest import with_context, with_context_at

    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 9, 11)).astype(np.float32)
    x[:, 2:4, 5:8] = 0  # nodata is 0 in every band: never counted
    got = with_context(x, 3)
    assert got.shape == (8, 9, 11) and np.array_equal(got[:4], x)
    valid = (x != 0).any(0)
    for r, c in ((0, 0), (3, 4), (8, 10), (5, 6)):
        rows, cols = slice(max(r - 1, 0), r + 2), slice(max(c - 1, 0), c + 2)
        want = x[:, rows, cols][:, valid[rows, cols]].mean(1)
        np.testing.assert_allclose(got[4:, r, c], want, rtol=1e-5)
    mask = rng.random((9, 11)) > 0.5
    np.testing.assert_allclose(with_context_at(x, 3, mask), got[:, mask].T, rtol=1e-6)


def test_validation_on_the_far_part_says_so(fused):
    res, _ = fused
    # one polygon per class on the Landsat crop: nothing can be held out whole
    assert res.metrics["validation"].startswith("the far 20% of 3 class(es)' only polygon/region")
    assert "optimistic" in res.metrics["validation"]
