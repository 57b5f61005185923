"""Issue 18: hostile files and servers on the release importer, the model downloader, the installer,
the memory/Dask options and band maps. One regression test per cause (named test_regression_…): each
hostile input ends in one line naming the file and the problem, within a bounded time and memory,
with nothing half-written, and no wrong file is called a success. The real release layouts of
tests/backbone_releases.py still import (test_backbone_releases.py)."""
from __future__ import annotations

import json
import os
import time

import pytest
import torch

from backbone_releases import HEAD_DIM, WIDTH, dinov3_state, scale_mae_release, vit_encoder
from hostile_files import (deep_list_pickle, self_list_pickle, shared_tuples_pickle, tiny_vit, torch_zip,
                           zip_bomb_checkpoint)
from spectralx.cli import main as cli_main

pytestmark = pytest.mark.usefixtures("one_thread")


def _cli(capsys, *argv):
    try:
        code = cli_main([str(a) for a in argv])
    except SystemExit as exc:      # argparse's errors (printed on one line by OneLineParser)
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def _refused(capsys, *argv, words=()):
    """The command fails with exactly one `spectralx: error:` line holding `words`; returns it."""
    code, _out, err = _cli(capsys, *argv)
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("spectralx: error: "), err
    assert "Traceback" not in err
    for w in words:
        assert w in err, (w, err)
    return err


def _import_and_info_refuse(capsys, src, tmp_path, *words):
    """`backbone import` and `backbone info` both refuse `src` in one line, naming it; nothing written."""
    dst = tmp_path / "out.safetensors"
    name = os.path.basename(str(src))
    for argv in (("backbone", "import", src, "-o", dst), ("backbone", "info", src)):
        start = time.monotonic()
        err = _refused(capsys, *argv, words=(name, *words))
        assert time.monotonic() - start < 10, argv
    assert not dst.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".sx-")] == []
    return err


# -- 1. resource bombs in the release reader ---------------------------------------------------------

def test_regression_zip_bomb_refused_before_inflating(tmp_path, capsys):
    """A 3 MB zip whose data.pkl inflates to 3 GiB: the declared size is refused, nothing inflated."""
    src = tmp_path / "bomb.pth"
    zip_bomb_checkpoint(src, 3 << 30)
    assert os.path.getsize(src) < 4 << 20
    err = _import_and_info_refuse(capsys, src, tmp_path, "data.pkl", "3072 MiB")
    assert "refused unread" in err


def test_regression_repeating_view_refused(tmp_path, capsys):
    """One stored number viewed with stride 0 as 9 M position tokens (gigabytes once resized)."""
    state = tiny_vit()
    state["pos_embed"] = torch.zeros(1).expand(1, 9_000_001, 64)
    src = tmp_path / "stride0.pth"
    torch.save({"model": state}, src)
    assert os.path.getsize(src) < 1 << 20
    _import_and_info_refuse(capsys, src, tmp_path, "pos_embed", "stores only 4 bytes")


def test_regression_depth_width_and_tokens_are_bounded(tmp_path, capsys):
    """One key naming block 100000000, or a description saying depth 100000000, is refused before a
    network is built (it used to build a hundred million blocks); so are absurd widths and grids."""
    state = tiny_vit()
    state["blocks.100000000.attn.qkv.weight"] = torch.zeros(192, 64)
    src = tmp_path / "deep.pth"
    torch.save(state, src)
    _import_and_info_refuse(capsys, src, tmp_path, "block 100000000", "64 blocks")
    state = tiny_vit()
    state["pos_embed"] = torch.zeros(1, 300 * 300 + 1, 64)     # stored in full, but a 300 x 300 grid
    torch.save(state, tmp_path / "grid.pth")
    _import_and_info_refuse(capsys, tmp_path / "grid.pth", tmp_path, "90,001 positions")

    from spectralx.backbone_io import import_backbone, load_backbone
    good = tmp_path / "good.safetensors"
    torch.save(tiny_vit(), tmp_path / "tiny.pth")
    import_backbone(str(tmp_path / "tiny.pth"), str(good))
    bad = _with_description(good, tmp_path / "depth.safetensors", lambda d: d["config"].update(depth=100_000_000))
    start = time.monotonic()
    with pytest.raises(Exception) as err:
        load_backbone(str(bad))
    assert "depth = 100000000" in str(err.value) and time.monotonic() - start < 5
    _refused(capsys, "backbone", "info", bad, words=("depth = 100000000",))
    from conftest import FIXTURES
    image = os.path.join(FIXTURES, "training_landsat8_224078.tif")
    labels = os.path.join(FIXTURES, "training_landsat8_224078_polygons.gpkg")
    _refused(capsys, "finetune", "--image", image, "--labels", labels, "--backbone", bad, "--steps", "1",
             "--device", "cpu", "--quiet", "-o", tmp_path / "ft.safetensors", words=("depth = 100000000",))
    assert not (tmp_path / "ft.safetensors").exists()


def _with_description(src, dst, edit):
    """A copy of a project backbone file with its JSON description edited (or replaced)."""
    from safetensors.torch import load_file, save_file

    from spectralx.backbone_io import BACKBONE_META_KEY
    from spectralx.safefile import read_safetensors_header
    meta = dict(read_safetensors_header(str(src))["__metadata__"])
    desc = json.loads(meta[BACKBONE_META_KEY])
    new = edit(desc)
    meta[BACKBONE_META_KEY] = new if isinstance(new, str) else json.dumps(desc)
    save_file(load_file(str(src)), str(dst), metadata=meta)
    return dst


@pytest.mark.parametrize("case", ["shared", "deeper-shared", "self", "nested"])
def test_regression_pickle_structures_are_walked_once_and_bounded(case, tmp_path, capsys):
    """Tuples sharing references (2^30 paths in a few hundred bytes: no exit after minutes), a list
    that contains itself and lists nested 200 000 deep (RecursionError tracebacks) are one line."""
    from spectralx.errors import CheckpointError
    from spectralx.safefile import read_torch_pickle
    pkl = {"shared": lambda: shared_tuples_pickle(30), "deeper-shared": lambda: shared_tuples_pickle(40),
           "self": self_list_pickle, "nested": lambda: deep_list_pickle(200_000)}[case]()
    src = tmp_path / f"{case}.pth"
    torch_zip(src, pkl)
    start = time.monotonic()
    if case == "shared":       # each tuple once: read at once, then refused as holding no weights
        obj = read_torch_pickle(str(src))
        assert obj["model"] == {"w": 1}
        words = ("no state dict",)
    else:
        with pytest.raises(CheckpointError):
            read_torch_pickle(str(src))
        words = {"deeper-shared": ("more than 32 deep",), "self": ("contains itself",),
                 "nested": ("more than 32 deep",)}[case]
    assert time.monotonic() - start < 5
    _import_and_info_refuse(capsys, src, tmp_path, *words)


# -- 2. imports that succeeded with a wrong network -----------------------------------------------------

def test_regression_timm_layerscale_is_kept(tmp_path, capsys):
    """A DeiT-III-style timm ViT (ls1/ls2.gamma): every gamma was dropped and the import 'succeeded'."""
    from safetensors.torch import save_file

    from spectralx.backbone_io import load_backbone
    from spectralx.safefile import read_safetensors
    state = vit_encoder(3, pos="learned", layer_scale=True)
    src, dst = tmp_path / "model.safetensors", tmp_path / "deit3.safetensors"
    save_file(state, str(src))
    code, out, err = _cli(capsys, "backbone", "import", src, "-o", dst)
    assert code == 0, err
    tensors, _ = read_safetensors(str(dst))
    for i in range(4):
        assert torch.equal(tensors[f"blocks.{i}.ls1.gamma"], state[f"blocks.{i}.ls1.gamma"])
    _, bcfg, _ = load_backbone(str(dst))
    assert bcfg["layer_scale"] is True


def test_regression_unknown_encoder_keys_and_mixed_families_are_refused(tmp_path, capsys):
    """Scale-MAE plus DINOv3's RoPE periods imported as Scale-MAE with the periods dropped; an
    encoder key with no place in the network is an error naming it (decoder keys are still dropped)."""
    model = scale_mae_release(tmp_path / "scalemae-vitlarge-800.pth")
    model["rope_embed.periods"] = torch.ones(HEAD_DIM // 4)
    model["storage_tokens"] = torch.zeros(1, 4, WIDTH)
    torch.save({"model": model}, tmp_path / "merged.pth")
    _import_and_info_refuse(capsys, tmp_path / "merged.pth", tmp_path, "Scale-MAE and DINOv3")
    state = dinov3_state()
    state["pos_embed"] = torch.zeros(1, 197, WIDTH)     # an absolute table a RoPE network has no place for
    torch.save(state, tmp_path / "rope-and-table.pth")
    _import_and_info_refuse(capsys, tmp_path / "rope-and-table.pth", tmp_path, "no place for: pos_embed")


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_regression_nonfinite_weights_refused_at_import(value, tmp_path, capsys):
    state = tiny_vit()
    state["blocks.1.mlp.fc1.weight"][3, 5] = value
    torch.save({"model": state}, tmp_path / "nan.pth")
    _import_and_info_refuse_import_only(capsys, tmp_path / "nan.pth", tmp_path, "blocks.1.mlp.fc1.weight",
                                        "NaN/infinite")


def _import_and_info_refuse_import_only(capsys, src, tmp_path, *words):
    dst = tmp_path / "out.safetensors"
    _refused(capsys, "backbone", "import", src, "-o", dst, words=(os.path.basename(str(src)), *words))
    assert not dst.exists()


def test_regression_gsd_ratio_is_bounded(tmp_path, capsys):
    """--gsd-ratio 1e308 wrote a non-finite Scale-MAE position table."""
    from spectralx.backbone_io import import_backbone
    from spectralx.errors import CheckpointError
    scale_mae_release(tmp_path / "s.pth")
    _refused(capsys, "backbone", "import", tmp_path / "s.pth", "-o", tmp_path / "o.safetensors", "--gsd-ratio",
             "1e308", words=("--gsd-ratio",))
    with pytest.raises(CheckpointError, match="GSD ratio"):
        import_backbone(str(tmp_path / "s.pth"), str(tmp_path / "o.safetensors"), gsd_ratio=1e308)
    assert not (tmp_path / "o.safetensors").exists()


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.complex64])
def test_regression_non_float_weights_refused_by_name(dtype, tmp_path, capsys):
    state = tiny_vit()
    state["blocks.0.norm2.weight"] = state["blocks.0.norm2.weight"].to(dtype)
    torch.save(state, tmp_path / "ints.pth")
    _import_and_info_refuse(capsys, tmp_path / "ints.pth", tmp_path, "blocks.0.norm2.weight",
                            str(dtype).replace("torch.", ""))


# -- 3. tracebacks in the release and backbone readers -------------------------------------------------

def _dinov3(edit):
    s = dinov3_state()
    edit(s)
    return s


def _drop_block0(s):
    for k in [k for k in s if k.startswith("blocks.0.")]:
        del s[k]


# {"args": PosixPath.__new__() with its _str slot set to 5}, as opcodes
_PATH_SLOT = b"\x80\x02}X\x04\x00\x00\x00argscpathlib\nPosixPath\n)\x81N}X\x04\x00\x00\x00_strK\x05s\x86bs."

BROKEN = {   # name -> (state dict to save, or raw pickle bytes; words the one-line error must hold)
    "qkv-1d": (lambda: {**tiny_vit(), "blocks.0.attn.qkv.weight": torch.zeros(192)}, ("blocks.0.attn.qkv.weight",)),
    "patch-0": (lambda: {**tiny_vit(), "patch_embed.proj.weight": torch.zeros(64, 3, 0, 0)}, ("patch_embed",)),
    "int-keys": (lambda: {**tiny_vit(), 7: torch.zeros(3)}, ("not a name",)),
    "periods-empty": (lambda: _dinov3(lambda s: s.update({"rope_embed.periods": torch.zeros(0)})),
                      ("rope_embed.periods",)),
    "periods-nan": (lambda: _dinov3(lambda s: s.update({"rope_embed.periods": torch.full((16,), float("nan"))})),
                    ("rope_embed.periods",)),
    "dinov3-no-block0": (lambda: _dinov3(_drop_block0), ("no block 0",)),
    "bias-mask-length": (lambda: _dinov3(lambda s: s.update({"blocks.1.attn.qkv.bias_mask": torch.ones(5)})),
                         ("bias_mask",)),
    "bias-mask-no-bias": (lambda: _dinov3(lambda s: s.pop("blocks.2.attn.qkv.bias")), ("bias_mask",)),
    "sparse": (lambda: {**tiny_vit(), "blocks.0.norm1.weight": torch.ones(64).to_sparse()}, ("sparse",)),
    "quantized": (lambda: {**tiny_vit(), "blocks.0.norm1.weight": torch.quantize_per_tensor(
        torch.ones(64), 0.1, 0, torch.qint8)}, ("quantized",)),
    "meta": (lambda: {**tiny_vit(), "norm.bias": torch.zeros(64, device="meta")}, ("meta",)),
    "block-name": (lambda: {**tiny_vit(), "blocks.x.attn.qkv.weight": torch.zeros(192, 64)}, ("blocks.x",)),
    "cls-1d": (lambda: {**tiny_vit(), "cls_token": torch.zeros(64)}, ("cls_token",)),
    "pos-width": (lambda: {**tiny_vit(), "pos_embed": torch.zeros(1, 17, 32)}, ("pos_embed",)),
    "non-tensor": (lambda: {**tiny_vit(), "norm.weight": torch.ones(64), "blocks.0.norm1.bias": [1.0]}, ()),
    "path-slot": (lambda: _PATH_SLOT, ("damaged path",)),
}


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("name", list(BROKEN))
def test_regression_broken_releases_are_one_line(name, tmp_path, capsys):
    make, words = BROKEN[name]
    obj = make()
    src = tmp_path / f"{name}.pth"
    if isinstance(obj, bytes):
        torch_zip(src, obj)
    else:
        torch.save({"model": obj}, src)
    _import_and_info_refuse(capsys, src, tmp_path, *words)


@pytest.mark.parametrize("desc", ["not json {", "[1, 2]", '{"description": "no config"}',
                                  '{"config": {"backbone_preset": "x", "embed_dim": 64, "depth": 2, '
                                  '"num_heads": 1, "surprise": 1}}',
                                  '{"config": {"backbone_preset": "x", "embed_dim": 64, "depth": 2, '
                                  '"num_heads": 1}, "description": 5}'])
def test_regression_damaged_backbone_descriptions_are_one_line(desc, tmp_path, capsys):
    """Descriptions that are not JSON, a list, lack `config`, or carry wrong types: KeyError/TypeError
    tracebacks in `backbone info`, loading and fine-tuning."""
    from spectralx.backbone_io import import_backbone, load_backbone
    from spectralx.errors import CheckpointError
    torch.save(tiny_vit(), tmp_path / "tiny.pth")
    good = tmp_path / "good.safetensors"
    import_backbone(str(tmp_path / "tiny.pth"), str(good))
    bad = _with_description(good, tmp_path / "bad.safetensors", lambda d: desc)
    _refused(capsys, "backbone", "info", bad, words=("bad.safetensors", "backbone description"))
    with pytest.raises(CheckpointError, match="backbone description"):
        load_backbone(str(bad))
