"""Issue 9: the paper variant, the PEFT baselines (LoRA, SLR, full) and the random-forest baseline.

Every method trains a couple of steps on the real Landsat crop with real polygons, is written to a
checkpoint, loads back through the one loader and segments through the one inference path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import FIXTURES, REPO, run_cli

IMAGE = os.path.join(FIXTURES, "training_landsat8_224078.tif")
POLYGONS = os.path.join(FIXTURES, "training_landsat8_224078_polygons.gpkg")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def block_labels(tmp_path_factory):
    """The real polygons burnt onto the image grid, cut into 6x6-pixel blocks (label regions), so that
    the region-wise split can hold whole blocks out for validation."""
    import fiona
    import rasterio
    from rasterio.features import rasterize

    with rasterio.open(IMAGE) as ds:
        profile, shape, tr = ds.profile, (ds.height, ds.width), ds.transform
    names = {"crop": 1, "tree": 2, "water": 3}
    with fiona.open(POLYGONS) as src:
        lab = rasterize(
            [(f["geometry"], names[f["properties"]["name"]]) for f in src],
            out_shape=shape,
            transform=tr,
            fill=0,
            dtype="uint8",
        )
    lab[::6, :] = 0  # 1-px gaps: separate connected regions
    lab[:, ::6] = 0
    path = str(tmp_path_factory.mktemp("labels") / "blocks.tif")
    profile.update(count=1, dtype="uint8", nodata=0)
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(lab, 1)
    return path


def _backbone_snapshot(model):
    return {k: v.detach().clone() for k, v in model.backbone.state_dict().items()}


def test_paper_variant_trains_backbone_norms_and_nothing_else_of_the_backbone():
    from spectralx.config import PAPER_SWITCHES, ModelConfig
    from spectralx.model import SpectralX

    torch.manual_seed(0)
    cfg = ModelConfig.from_preset(
        "vit_tiny_patch16", in_bands=5, num_classes=3, img_size=64, variant="paper", **PAPER_SWITCHES
    )
    model = SpectralX(cfg, torch.tensor([450.0, 550.0, 650.0, 850.0, 1650.0]))
    model.set_stage("finetune", backbone_norms=True)
    before = _backbone_snapshot(model)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    x = torch.randn(2, 5, 64, 64)
    y = torch.randint(0, 3, (2, 64, 64))
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    after = model.backbone.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    norms = {k for k in before if ".norm" in k or k.startswith("norm.")}
    # every LayerNorm that takes part in the forward (the final `norm` is not used by SpectralX)
    used_norms = {k for k in norms if not k.startswith("norm.")}
    assert used_norms and used_norms <= changed, sorted(used_norms - changed)[:4]
    assert changed <= norms, sorted(changed - norms)[:4]  # every other tensor bit-identical
    assert model.trained_backbone_keys == {"backbone." + k for k in norms}
    # the paper's pieces are really there
    assert model.hypert.scale_mode == "sum" and float(model.hypert.scale.detach().mean()) != 0.1
    assert model.are_adapter.hard and model.are_adapter.scalar_output
    assert model.head.skip is None
    assert type(model.aomoa[str(cfg.adapter_blocks[0])].fc1).__name__ == "SharedMixtureOfAdapters"


def test_paper_variant_parameter_budget_within_15_percent_of_the_paper():
    from spectralx.config import PAPER_SWITCHES, ModelConfig
    from spectralx.summary import parameter_summary

    with torch.device("meta"):
        cfg = ModelConfig.from_preset(
            "vit_large_patch16", in_bands=32, num_classes=6, variant="paper", **PAPER_SWITCHES
        )
        s = parameter_summary(cfg)
    print({k: v["trainable"] for k, v in s["parts"].items()})
    assert abs(s["adapter_trainable"] - 11.8e6) / 11.8e6 < 0.15, s["adapter_trainable"]


def test_stage1_paper_variant_hides_tokens_and_leaves_are_adapter_untrained():
    from spectralx.config import PAPER_SWITCHES, ModelConfig
    from spectralx.model import SpectralX

    torch.manual_seed(0)
    cfg = ModelConfig.from_preset(
        "vit_tiny_patch16", in_bands=4, num_classes=2, img_size=64, variant="paper", **PAPER_SWITCHES
    )
    model = SpectralX(cfg, torch.tensor([480.0, 560.0, 660.0, 860.0]))
    model.set_stage("pretrain")
    assert not any(p.requires_grad for p in model.are_adapter.parameters())
    assert model.mask_token.requires_grad
    x = torch.randn(2, 4, 64, 64)
    mask = torch.zeros(2, cfg.num_tokens)
    mask[:, ::2] = 1
    rec = model.reconstruct(x, token_mask=mask)
    assert rec.shape == x.shape
    rec.pow(2).mean().backward()
    assert model.mask_token.grad is not None and model.mask_token.grad.abs().sum() > 0


@pytest.mark.slow
@pytest.mark.parametrize("method", ["lora", "slr", "full"])
def test_peft_baselines_finetune_save_load_and_segment(method, tiny_backbone, block_labels, tmp_path):
    import rasterio

    from spectralx.checkpoint import load_checkpoint, read_card
    from spectralx.inference import segment
    from spectralx.training import finetune

    out = str(tmp_path / f"{method}.safetensors")
    res = finetune(
        IMAGE,
        block_labels,
        out,
        backbone=tiny_backbone,
        tile_size=64,
        steps=2,
        batch_size=2,
        method=method,
        baseline=False,
        device="cpu",
    )
    card = read_card(out)
    assert card.config.method == method and card.training["method"] == method
    model, _ = load_checkpoint(out, backbone=tiny_backbone)
    if method in ("lora", "slr"):
        assert len(model.lora) == 4 and len(model.aomoa) == 0 and model.are_adapter is None
        # the trained low-rank branch is in the checkpoint and changes the output
        ups = [m.up.weight for mods in model.lora.values() for m in mods.values()]
        assert any(float(u.abs().sum()) > 0 for u in ups)
        if method == "slr":
            assert any(
                not torch.equal(m.scale_out, torch.ones_like(m.scale_out))
                for mods in model.lora.values()
                for m in mods.values()
            )
    if method == "full":
        # the unfrozen backbone rides in the checkpoint and is restored over the backbone file
        assert card.training["backbone_tensors_in_checkpoint"] == len(dict(model.backbone.named_parameters()))
        trained = res.model.backbone.state_dict()
        loaded = model.backbone.state_dict()
        assert all(torch.equal(trained[k].cpu(), loaded[k]) for k in trained)
    pred = str(tmp_path / f"{method}.tif")
    segment(IMAGE, out, pred, backbone=tiny_backbone, device="cpu", overwrite=True)
    with rasterio.open(pred) as ds:
        classes = ds.read(1)
    assert set(np.unique(classes)) <= {1, 2, 3}


@pytest.mark.slow
def test_random_forest_baseline_lands_in_card_info_and_log(tiny_backbone, block_labels, tmp_path):
    from spectralx.training import finetune

    out = tmp_path / "model.safetensors"
    proc = run_cli(
        "finetune",
        "--image",
        IMAGE,
        "--labels",
        block_labels,
        "--backbone",
        tiny_backbone,
        "--tile-size",
        "64",
        "--steps",
        "4",
        "--batch-size",
        "2",
        "--eval-every",
        "2",
        "--device",
        "cpu",
        "-o",
        out,
        "--quiet",
    )
    assert proc.returncode == 0, proc.stderr
    assert "random forest" in proc.stdout and "validation pixels" in proc.stdout
    info = run_cli("info", out, "--json", check=True)
    card = json.loads(info.stdout)
    rf = card["metrics"]["baselines"]["random_forest"]
    assert rf["trees"] > 0 and rf["train_pixels"] > 100 and rf["seconds"] >= 0
    assert 0 <= rf["val_miou"] <= 1 and rf["val_pixels"] == card["metrics"]["val_pixels"]
    assert set(rf["per_class_iou"]) == set(card["metrics"]["per_class_iou"])
    # a forest on these clearly separable real classes is good: the baseline is a real one
    assert rf["val_oa"] > 0.8
    text = run_cli("info", out, check=True).stdout
    assert f"random forest {rf['val_miou']:.3f}" in text
    # --no-baseline skips it; no validation -> said plainly
    res = finetune(
        IMAGE,
        block_labels,
        None,
        backbone=tiny_backbone,
        tile_size=64,
        steps=2,
        batch_size=2,
        baseline=False,
        val_fraction=0.0,
        device="cpu",
    )
    assert res.metrics["baselines"] == {}
    assert res.comparison.startswith("not validated")


@pytest.mark.slow
def test_accuracy_bench_quick_smoke():
    """The accuracy bench runs end to end (forest + default SpectralX, 1 seed, 4 steps)."""
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run(
        [sys.executable, os.path.join(REPO, "bench", "accuracy_bench.py"), "--quick", "--threads", "1"],
        capture_output=True,
        text=True,
        timeout=900,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [ln for ln in proc.stdout.splitlines() if "SpectralX default" in ln and "vs forest" in ln]
    assert len(lines) == 2, proc.stdout  # one SpectralX row per case, compared with its forest
    # ... with the same models re-scored as the network alone and as their forest alone (paired)
    assert sum("the same models, network alone" in ln for ln in proc.stdout.splitlines()) == 2
    import re

    forest = [ln for ln in proc.stdout.splitlines() if ln.startswith("landsat") and "random forest" in ln]
    assert forest, proc.stdout
    miou = float(re.search(r"spectra\s+([0-9.]+) ±", forest[0]).group(1))
    assert miou > 0.9  # the forest on the easy polygon-halves case


def test_logit_adjustment_recovers_a_rare_class_and_is_neutral_when_balanced():
    """A network whose scores rank a rare class right but never pick it (a common failure on a few
    hundred roof pixels): the adjustment chosen on validation pixels gives the class back."""
    from spectralx.training.calibration import choose_adjustment

    rng = np.random.default_rng(0)
    n_common, n_rare = 900, 60
    labels = np.r_[np.zeros(n_common, int), np.ones(n_rare, int)]
    logits = np.zeros((len(labels), 2))
    logits[:, 0] = 1.0
    logits[:, 1] = 0.2 + 0.6 * labels + 0.2 * rng.standard_normal(len(labels))  # ranks well, below 1.0
    plain = (logits.argmax(1) == 1).sum()
    assert plain < 10  # the rare class is (almost) never predicted
    adj = choose_adjustment(logits, labels, train_counts=[3000, 150], class_values=[1, 2])
    assert adj["tau"] > 0 and adj["val_miou_after"] > adj["val_miou_before"] + 0.2
    assert adj["bias"][1] > adj["bias"][0]  # the rare class is pushed up
    # balanced priors: no reason to move anything
    adj = choose_adjustment(logits * 0 + np.eye(2)[labels], labels, train_counts=[500, 500], class_values=[1, 2])
    assert adj["tau"] == 0.0
    assert choose_adjustment(np.zeros((0, 2)), np.zeros(0, int), [1, 1], [1, 2]) is None


@pytest.mark.slow
def test_logit_adjustment_is_stored_in_the_card_and_applied_after_loading(tiny_backbone, block_labels, tmp_path):
    from spectralx.checkpoint import load_checkpoint
    from spectralx.training import finetune

    out = str(tmp_path / "cal.safetensors")
    res = finetune(
        IMAGE,
        block_labels,
        out,
        backbone=tiny_backbone,
        tile_size=64,
        steps=3,
        batch_size=2,
        eval_every=3,
        baseline=False,
        device="cpu",
    )
    adj = res.card.training["logit_adjustment"]
    assert adj is not None and len(adj["bias"]) == 3 and adj["val_miou_after"] >= adj["val_miou_before"]
    model, card = load_checkpoint(out, backbone=tiny_backbone)
    assert torch.allclose(model.class_bias, torch.tensor(adj["bias"]))
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        biased = model(x)
        model.class_bias.zero_()
        plain = model(x)
    assert torch.allclose(biased - plain, torch.tensor(adj["bias"]).view(1, -1, 1, 1), atol=1e-5)


def test_missing_scikit_learn_keeps_the_model_and_says_so(tiny_backbone, block_labels, tmp_path, monkeypatch):
    """A QGIS Python without scikit-learn: the fine-tune still writes its model; the card says why
    there is no forest instead of pretending one was compared."""
    from spectralx.training import baseline as bl
    from spectralx.training import finetune

    def missing():
        raise bl.MissingDependency("the random-forest baseline needs scikit-learn (pip install scikit-learn)")

    monkeypatch.setattr(bl, "_require_sklearn", missing)
    out = tmp_path / "m.safetensors"
    res = finetune(
        IMAGE,
        block_labels,
        str(out),
        backbone=tiny_backbone,
        tile_size=64,
        steps=2,
        batch_size=2,
        eval_every=2,
        device="cpu",
        calibrate=False,
    )
    assert out.is_file()
    rf = res.metrics["baselines"]["random_forest"]
    assert rf["validation"].startswith("not run: ") and "scikit-learn" in rf["validation"]
    assert "random forest not scored (not run:" in res.comparison
