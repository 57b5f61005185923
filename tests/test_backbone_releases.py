"""Issue 8 acceptance: real release layouts (tiny widths) import with --family auto, `backbone info
--json` reports them, and a SpectralX model built on each fine-tunes 2 steps and segments a raster."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from backbone_releases import HEADS, RELEASES, WIDTH, mae_sincos_table
from conftest import FIXTURES

from spectralx.cli import main as cli_main
from spectralx.safefile import read_safetensors, sha256_file

IMAGE = os.path.join(FIXTURES, "training_landsat8_224078.tif")
POLYGONS = os.path.join(FIXTURES, "training_landsat8_224078_polygons.gpkg")


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    """Each family's release file, written once, and its import by the CLI (stdout kept)."""
    out = {}
    for family, (name, write) in RELEASES.items():
        folder = tmp_path_factory.mktemp(family.replace("+", "p"))
        src = folder / name
        state = write(src)
        out[family] = {"src": str(src), "state": state, "dst": str(folder / f"{family}-backbone.safetensors")}
    return out


@pytest.fixture(scope="module")
def label_raster(tmp_path_factory):
    """The real hand-drawn polygons (crop, tree, water) burnt onto the training image's grid."""
    import fiona
    import rasterio
    from rasterio.features import rasterize

    path = str(tmp_path_factory.mktemp("labels") / "labels.tif")
    names = {"crop": 1, "tree": 2, "water": 3}
    with rasterio.open(IMAGE) as ds, fiona.open(POLYGONS) as src:
        shapes = [(f["geometry"], names[f["properties"]["name"]]) for f in src]
        labels = rasterize(shapes, out_shape=(ds.height, ds.width), transform=ds.transform, fill=0, dtype="uint8")
        profile = dict(
            driver="GTiff",
            width=ds.width,
            height=ds.height,
            count=1,
            dtype="uint8",
            crs=ds.crs,
            transform=ds.transform,
            nodata=0,
        )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(labels, 1)
    return path


def _cli(capsys, *argv):
    code = cli_main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.slow
@pytest.mark.parametrize("family", list(RELEASES))
def test_release_imports_with_auto_family_and_info_reports_it(family, releases, capsys):
    r = releases[family]
    code, out, err = _cli(capsys, "backbone", "import", r["src"], "-o", r["dst"], "--family", "auto")
    assert code == 0, err
    assert "detected from its key names" in out and f"({family}," in out
    code, out, err = _cli(capsys, "backbone", "info", r["dst"], "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["family"] == family and info["kind"] == "spectralx-backbone"
    assert (info["embed_dim"], info["depth"], info["num_heads"], info["patch_size"]) == (WIDTH, 4, HEADS, 16)
    assert info["preset"] == "vit_custom_w128_d4_h2_patch16"
    assert info["sha256"] == sha256_file(r["dst"])
    assert info["source"]["file"] == os.path.basename(r["src"]) and info["source"]["sha256"] == sha256_file(r["src"])
    assert info["tensors_verified"] is True and info["license"]
    tensors, _ = read_safetensors(r["dst"])
    assert info["parameters"] == sum(t.numel() for t in tensors.values()) - (16 if family == "dinov3" else 0)
    # encoder weights are carried over unchanged (DINOv3's qkv bias has its key part masked)
    for k in ("blocks.3.mlp.fc2.weight", "blocks.0.attn.proj.weight", "norm.bias", "cls_token"):
        assert torch.equal(tensors[k], r["state"][k].float()), k
    # the same description comes from the release file itself (not imported)
    code, out, _ = _cli(capsys, "backbone", "info", r["src"], "--json")
    src_info = json.loads(out)
    assert src_info["kind"] == "release" and src_info["family"] == family
    assert src_info["parameters"] == info["parameters"]  # the RoPE period buffer is not a parameter


@pytest.mark.parametrize("family", ["scale-mae", "satmae++"])
def test_mae_style_releases_have_no_missing_encoder_keys_and_report_dropped_decoder(family, releases, tmp_path):
    from spectralx.backbone_io import import_backbone

    r = releases[family]
    res = import_backbone(r["src"], str(tmp_path / "b.safetensors"))
    assert res.report.missing == [] and res.report.unknown == []
    decoder = {
        k for k in r["state"] if not k.startswith(("blocks.", "patch_embed.", "cls_token", "pos_embed", "norm."))
    }
    assert set(res.report.dropped) == decoder
    extra = (
        ("fpn.fpn1.0.weight", "fcn_high.pred.7.weight", "mask_token_decoder")
        if family == "scale-mae"
        else ("proj_up_conv.weight", "up_block.res_block.conv2.weight", "decoder_pred.weight")
    )
    assert set(extra) <= set(res.report.dropped)
    assert res.metadata["mapping"]["dropped"] == len(decoder)
    assert res.metadata["source"]["epoch"] == 799 and res.metadata["source"]["args_model"] == "mae_vit_large_patch16"


def test_scale_mae_position_embedding_follows_its_gsd_formula(releases, tmp_path):
    from spectralx.backbone_io import import_backbone, load_backbone

    r = releases["scale-mae"]
    one = tmp_path / "r1.safetensors"
    import_backbone(r["src"], str(one))
    # ratio 1: the release's stored (MAE sin-cos) table
    assert torch.allclose(read_safetensors(str(one))[0]["pos_embed"], r["state"]["pos_embed"], atol=1e-6)
    # other tile sizes extend the grid (positions 0..g-1 scaled by the ratio), not a stretched table
    state, cfg, report = load_backbone(str(one), img_size=64)
    assert torch.allclose(state["pos_embed"], mae_sincos_table(WIDTH, 4), atol=1e-6)
    assert any("recomputed" in n for n in report.notes)
    two = tmp_path / "r2.safetensors"
    import_backbone(r["src"], str(two), gsd_ratio=2.0)
    pos2 = read_safetensors(str(two))[0]["pos_embed"][0, 1:].reshape(14, 14, WIDTH)
    ref = mae_sincos_table(WIDTH, 28)[0, 1:].reshape(28, 28, WIDTH)  # index 2*i on a 28-grid
    assert torch.allclose(pos2, ref[::2, ::2], atol=1e-5)


def _dinov3_reference(state, x, eps=1e-5):
    """DINOv3's forward written from its formulas on the raw release tensors (no project code)."""
    import math

    from backbone_releases import rope_reference_tables

    F = torch.nn.functional
    s = {k: v.double() for k, v in state.items()}
    b = x.shape[0]
    patches = F.conv2d(x.double(), s["patch_embed.proj.weight"], s["patch_embed.proj.bias"], stride=16)
    h, w = patches.shape[-2:]
    t = torch.cat(
        [s["cls_token"].expand(b, 1, -1), s["storage_tokens"].expand(b, -1, -1), patches.flatten(2).transpose(1, 2)],
        dim=1,
    )
    sin, cos = rope_reference_tables(h, w, WIDTH // HEADS)
    n_prefix = 5

    def ln(v, p):
        mu = v.mean(-1, keepdim=True)
        var = ((v - mu) ** 2).mean(-1, keepdim=True)
        return (v - mu) / torch.sqrt(var + eps) * s[p + ".weight"] + s[p + ".bias"]

    def rope(v):  # v: (B, heads, N, d); rotate pairs (i, i + d/2) of the patch tokens only
        d = v.shape[-1]
        pt = v[:, :, n_prefix:]
        rot = torch.cat([-pt[..., d // 2 :], pt[..., : d // 2]], dim=-1)
        return torch.cat([v[:, :, :n_prefix], pt * cos + rot * sin], dim=2)

    for i in range(4):
        p = f"blocks.{i}."
        y = ln(t, p + "norm1")
        bias = s[p + "attn.qkv.bias"] * s[p + "attn.qkv.bias_mask"]
        qkv = (y @ s[p + "attn.qkv.weight"].T + bias).reshape(b, t.shape[1], 3, HEADS, WIDTH // HEADS)
        q, k, v = (qkv[:, :, j].transpose(1, 2) for j in range(3))
        q, k = rope(q), rope(k)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(WIDTH // HEADS), dim=-1) @ v
        att = att.transpose(1, 2).reshape(b, t.shape[1], WIDTH) @ s[p + "attn.proj.weight"].T + s[p + "attn.proj.bias"]
        t = t + s[p + "ls1.gamma"] * att
        y = ln(t, p + "norm2")
        hidden = F.gelu(y @ s[p + "mlp.fc1.weight"].T + s[p + "mlp.fc1.bias"])
        t = t + s[p + "ls2.gamma"] * (hidden @ s[p + "mlp.fc2.weight"].T + s[p + "mlp.fc2.bias"])
    return ln(t, "norm")


def test_dinov3_backbone_equals_reference_computation(releases, tmp_path):
    from spectralx.backbone_io import import_backbone, load_backbone
    from spectralx.config import ModelConfig
    from spectralx.model.backbone import VisionTransformer

    r = releases["dinov3"]
    dst = tmp_path / "d.safetensors"
    import_backbone(r["src"], str(dst))
    state, bcfg, _ = load_backbone(str(dst), img_size=64)
    assert bcfg["pos_embed"] == "rope" and bcfg["num_register_tokens"] == 4 and bcfg["layer_scale"]
    cfg = ModelConfig.from_preset(bcfg["backbone_preset"], **{k: v for k, v in bcfg.items() if k != "backbone_preset"})
    vit = VisionTransformer(cfg).eval()
    vit.load_state_dict(state, strict=True)
    assert vit.num_prefix_tokens == 5
    x = torch.randn(2, 3, 64, 80, generator=torch.Generator().manual_seed(0))  # a 4 x 5 patch grid
    with torch.no_grad():
        got = vit.forward_features(x)
    want = _dinov3_reference(r["state"], x)
    assert got.shape == (2, 5 + 20, WIDTH)
    assert torch.allclose(got.double(), want, atol=1e-5, rtol=0), (got.double() - want).abs().max()
    # RoPE matters: with positions switched off the output is different
    vit.rope_embed = None
    with torch.no_grad():
        assert not torch.allclose(vit.forward_features(x).double(), want, atol=1e-3)


@pytest.mark.slow
@pytest.mark.parametrize("family", list(RELEASES))
def test_spectralx_on_each_release_finetunes_and_segments(family, releases, label_raster, tmp_path):
    import rasterio

    from spectralx.backbone_io import import_backbone
    from spectralx.checkpoint import read_card
    from spectralx.inference import segment
    from spectralx.training import finetune

    r = releases[family]
    backbone = str(tmp_path / "backbone.safetensors")
    import_backbone(r["src"], backbone)
    out = str(tmp_path / "ft.safetensors")
    res = finetune(
        IMAGE,
        label_raster,
        out,
        backbone=backbone,
        tile_size=32,
        steps=2,
        batch_size=2,
        val_images=[IMAGE],
        val_labels=[label_raster],
        device="cpu",
        seed=0,
    )
    card = read_card(out)
    assert card.backbone.sha256 == sha256_file(backbone)
    assert card.config.embed_dim == WIDTH and card.config.num_heads == HEADS
    assert res.card.training["steps_run"] == 2
    if family == "dinov3":
        assert (card.config.pos_embed, card.config.num_register_tokens, card.config.layer_scale) == ("rope", 4, True)
    seg = str(tmp_path / "seg.tif")
    segment(IMAGE, out, seg, backbone=backbone, window=(0, 0, 64, 64), device="cpu", style=False)
    with rasterio.open(seg) as ds:
        classes = ds.read(1)
    assert classes.shape == (64, 64)
    assert set(np.unique(classes)) <= {1, 2, 3}


@pytest.mark.slow
def test_release_file_given_to_finetune_is_imported_once_into_the_model_folder(
    releases, label_raster, tmp_path, monkeypatch, capsys
):
    models = tmp_path / "models"
    monkeypatch.setenv("SPECTRALX_MODELS", str(models))
    src = releases["dinov3"]["src"]
    before = sha256_file(src)
    out = tmp_path / "ft.safetensors"
    args = [
        "finetune",
        "--image",
        IMAGE,
        "--labels",
        label_raster,
        "--val-image",
        IMAGE,
        "--val-labels",
        label_raster,
        "--backbone",
        src,
        "--tile-size",
        "32",
        "--steps",
        "2",
        "--batch-size",
        "2",
        "--device",
        "cpu",
        "--quiet",
        "-o",
        out,
    ]
    code, stdout, err = _cli(capsys, *args)
    assert code == 0, err
    assert "note: imported" in err and "DINOv3" in err
    imported = list(models.iterdir())
    assert len(imported) == 1 and imported[0].suffix == ".safetensors"
    from spectralx.checkpoint import read_card

    assert read_card(str(out)).backbone.sha256 == sha256_file(str(imported[0]))
    assert sha256_file(src) == before  # the release itself is untouched
    code, _, err = _cli(capsys, *args[:-1], tmp_path / "ft2.safetensors")
    assert code == 0 and "using its import" in err and len(list(models.iterdir())) == 1


@pytest.mark.parametrize(
    "keys,what",
    [
        (
            {
                "conv1.weight": (64, 3, 7, 7),
                "bn1.weight": (64,),
                "layer1.0.conv1.weight": (64, 64, 1, 1),
                "fc.weight": (1000, 2048),
            },
            "ResNet",
        ),
        (
            {
                "patch_embed.proj.weight": (96, 3, 4, 4),
                "layers.0.blocks.0.attn.qkv.weight": (288, 96),
                "layers.0.blocks.0.attn.relative_position_bias_table": (169, 3),
            },
            "Swin Transformer",
        ),
    ],
)
def test_unsupported_architectures_are_refused_by_name(keys, what, tmp_path, capsys):
    src = tmp_path / "other.pth"
    torch.save({"state_dict": {k: torch.zeros(s) for k, s in keys.items()}, "epoch": 90}, src)
    code, _, err = _cli(capsys, "backbone", "import", src, "-o", tmp_path / "o.safetensors")
    assert code == 2 and err.count("\n") == 1
    assert f"holds a {what}" in err and "not a ViT" in err
    assert not (tmp_path / "o.safetensors").exists()


def test_missing_and_unknown_encoder_keys_are_named(releases, tmp_path, capsys):
    from backbone_releases import vit_encoder

    state = vit_encoder(1)
    del state["blocks.2.attn.proj.weight"]
    torch.save({"model": state}, tmp_path / "cut.pth")
    code, _, err = _cli(capsys, "backbone", "import", tmp_path / "cut.pth", "-o", tmp_path / "o.safetensors")
    assert code == 2 and "missing encoder keys: blocks.2.attn.proj.weight" in err
    state = vit_encoder(1)
    state["reg_token"] = torch.zeros(1, 4, WIDTH)
    state["blocks.0.attn.q_norm.weight"] = torch.ones(64)
    torch.save(state, tmp_path / "regs.pth")
    code, _, err = _cli(capsys, "backbone", "import", tmp_path / "regs.pth", "-o", tmp_path / "o.safetensors")
    assert code == 2 and "reg_token" in err and "blocks.0.attn.q_norm.weight" in err
    assert not (tmp_path / "o.safetensors").exists()


def test_wrong_preset_and_existing_output_are_one_line_errors(releases, tmp_path, capsys):
    r = releases["timm"]
    code, _, err = _cli(
        capsys, "backbone", "import", r["src"], "-o", tmp_path / "o.safetensors", "--preset", "vit_large_patch16"
    )
    assert code == 2 and "right preset" in err
    (tmp_path / "o.safetensors").write_bytes(b"keep")
    code, _, err = _cli(capsys, "backbone", "import", r["src"], "-o", tmp_path / "o.safetensors")
    assert code != 0 and "--overwrite" in err and (tmp_path / "o.safetensors").read_bytes() == b"keep"
    code, _, err = _cli(capsys, "backbone", "import", r["src"], "-o", r["src"], "--overwrite")
    assert code != 0 and "one of the inputs" in err


def test_release_file_given_to_pretrain_is_imported_too(releases, tmp_path, monkeypatch, capsys):
    models = tmp_path / "models"
    monkeypatch.setenv("SPECTRALX_MODELS", str(models))
    out = tmp_path / "stage1.safetensors"
    code, stdout, err = _cli(
        capsys,
        "pretrain",
        IMAGE,
        "--backbone",
        releases["satmae++"]["src"],
        "--tile-size",
        "32",
        "--steps",
        "2",
        "--batch-size",
        "2",
        "--device",
        "cpu",
        "--quiet",
        "-o",
        out,
    )
    assert code == 0, err
    assert "note: imported" in err and "SatMAE++" in err and "masked MSE" in stdout
    from spectralx.checkpoint import read_card

    (imported,) = models.iterdir()
    assert read_card(str(out)).backbone.sha256 == sha256_file(str(imported))


@pytest.mark.slow
def test_library_accepts_a_release_file_as_backbone_without_import(releases, label_raster, tmp_path):
    """The engine API maps a release in memory: the card references the release by its sha256 and
    the checkpoint loads back against it (the CLI imports it instead, see above)."""
    from spectralx.checkpoint import load_checkpoint, read_card
    from spectralx.training import finetune

    src = releases["dinov3"]["src"]
    out = str(tmp_path / "ft.safetensors")
    finetune(
        IMAGE,
        label_raster,
        out,
        backbone=src,
        tile_size=32,
        steps=1,
        batch_size=2,
        val_images=[IMAGE],
        val_labels=[label_raster],
        device="cpu",
        seed=0,
    )
    card = read_card(out)
    assert card.backbone.sha256 == sha256_file(src) and card.config.pos_embed == "rope"
    model, _ = load_checkpoint(out, backbone=src)
    with torch.no_grad():
        assert torch.isfinite(model(torch.randn(1, 3, 32, 32))).all()


def test_explicit_family_is_obeyed_and_a_mismatch_is_noted(releases, tmp_path, capsys):
    r = releases["timm"]
    code, out, err = _cli(capsys, "backbone", "import", r["src"], "-o", tmp_path / "a.safetensors", "--family", "mae")
    assert code == 0 and "(mae, as given)" in out and "its keys look like timm" in out
    code, _, err = _cli(capsys, "backbone", "import", r["src"], "-o", tmp_path / "b.safetensors", "--family", "dinov3")
    assert code == 2 and "not a DINOv3 checkpoint" in err and not (tmp_path / "b.safetensors").exists()


def test_transformers_conversion_is_refused_with_advice(tmp_path, capsys):
    from safetensors.torch import save_file

    src = tmp_path / "model.safetensors"  # facebook/dinov3-vitl16-pretrain-sat493m style names
    save_file(
        {
            "embeddings.cls_token": torch.zeros(1, 1, 8),
            "embeddings.register_tokens": torch.zeros(1, 4, 8),
            "layer.0.attention.q_proj.weight": torch.zeros(8, 8),
            "norm.weight": torch.ones(8),
        },
        str(src),
    )
    code, _, err = _cli(capsys, "backbone", "import", src, "-o", tmp_path / "o.safetensors")
    assert code == 2 and "transformers conversion" in err and "original release" in err
