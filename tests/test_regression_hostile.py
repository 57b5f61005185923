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
from hostile_files import (
    deep_list_pickle,
    self_list_pickle,
    shared_tuples_pickle,
    tiny_vit,
    torch_zip,
    zip_bomb_checkpoint,
)

from spectralx.cli import main as cli_main

pytestmark = pytest.mark.usefixtures("one_thread")


def _cli(capsys, *argv):
    try:
        code = cli_main([str(a) for a in argv])
    except SystemExit as exc:  # argparse's errors (printed on one line by OneLineParser)
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
    state["pos_embed"] = torch.zeros(1, 300 * 300 + 1, 64)  # stored in full, but a 300 x 300 grid
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
    _refused(
        capsys,
        "finetune",
        "--image",
        image,
        "--labels",
        labels,
        "--backbone",
        bad,
        "--steps",
        "1",
        "--device",
        "cpu",
        "--quiet",
        "-o",
        tmp_path / "ft.safetensors",
        words=("depth = 100000000",),
    )
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


@pytest.mark.slow
@pytest.mark.parametrize("case", ["shared", "deeper-shared", "self", "nested"])
def test_regression_pickle_structures_are_walked_once_and_bounded(case, tmp_path, capsys):
    """Tuples sharing references (2^30 paths in a few hundred bytes: no exit after minutes), a list
    that contains itself and lists nested 200 000 deep (RecursionError tracebacks) are one line."""
    from spectralx.errors import CheckpointError
    from spectralx.safefile import read_torch_pickle

    pkl = {
        "shared": lambda: shared_tuples_pickle(30),
        "deeper-shared": lambda: shared_tuples_pickle(40),
        "self": self_list_pickle,
        "nested": lambda: deep_list_pickle(200_000),
    }[case]()
    src = tmp_path / f"{case}.pth"
    torch_zip(src, pkl)
    start = time.monotonic()
    if case == "shared":  # each tuple once: read at once, then refused as holding no weights
        obj = read_torch_pickle(str(src))
        assert obj["model"] == {"w": 1}
        words = ("no state dict",)
    else:
        with pytest.raises(CheckpointError):
            read_torch_pickle(str(src))
        words = {
            "deeper-shared": ("more than 32 deep",),
            "self": ("contains itself",),
            "nested": ("more than 32 deep",),
        }[case]
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
    state["pos_embed"] = torch.zeros(1, 197, WIDTH)  # an absolute table a RoPE network has no place for
    torch.save(state, tmp_path / "rope-and-table.pth")
    _import_and_info_refuse(capsys, tmp_path / "rope-and-table.pth", tmp_path, "no place for: pos_embed")


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_regression_nonfinite_weights_refused_at_import(value, tmp_path, capsys):
    state = tiny_vit()
    state["blocks.1.mlp.fc1.weight"][3, 5] = value
    torch.save({"model": state}, tmp_path / "nan.pth")
    _import_and_info_refuse_import_only(
        capsys, tmp_path / "nan.pth", tmp_path, "blocks.1.mlp.fc1.weight", "NaN/infinite"
    )


def _import_and_info_refuse_import_only(capsys, src, tmp_path, *words):
    dst = tmp_path / "out.safetensors"
    _refused(capsys, "backbone", "import", src, "-o", dst, words=(os.path.basename(str(src)), *words))
    assert not dst.exists()


def test_regression_gsd_ratio_is_bounded(tmp_path, capsys):
    """--gsd-ratio 1e308 wrote a non-finite Scale-MAE position table."""
    from spectralx.backbone_io import import_backbone
    from spectralx.errors import CheckpointError

    scale_mae_release(tmp_path / "s.pth")
    _refused(
        capsys,
        "backbone",
        "import",
        tmp_path / "s.pth",
        "-o",
        tmp_path / "o.safetensors",
        "--gsd-ratio",
        "1e308",
        words=("--gsd-ratio",),
    )
    with pytest.raises(CheckpointError, match="GSD ratio"):
        import_backbone(str(tmp_path / "s.pth"), str(tmp_path / "o.safetensors"), gsd_ratio=1e308)
    assert not (tmp_path / "o.safetensors").exists()


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.complex64])
def test_regression_non_float_weights_refused_by_name(dtype, tmp_path, capsys):
    state = tiny_vit()
    state["blocks.0.norm2.weight"] = state["blocks.0.norm2.weight"].to(dtype)
    torch.save(state, tmp_path / "ints.pth")
    _import_and_info_refuse(
        capsys, tmp_path / "ints.pth", tmp_path, "blocks.0.norm2.weight", str(dtype).replace("torch.", "")
    )


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

BROKEN = {  # name -> (state dict to save, or raw pickle bytes; words the one-line error must hold)
    "qkv-1d": (lambda: {**tiny_vit(), "blocks.0.attn.qkv.weight": torch.zeros(192)}, ("blocks.0.attn.qkv.weight",)),
    "patch-0": (lambda: {**tiny_vit(), "patch_embed.proj.weight": torch.zeros(64, 3, 0, 0)}, ("patch_embed",)),
    "int-keys": (lambda: {**tiny_vit(), 7: torch.zeros(3)}, ("not a name",)),
    "periods-empty": (
        lambda: _dinov3(lambda s: s.update({"rope_embed.periods": torch.zeros(0)})),
        ("rope_embed.periods",),
    ),
    "periods-nan": (
        lambda: _dinov3(lambda s: s.update({"rope_embed.periods": torch.full((16,), float("nan"))})),
        ("rope_embed.periods",),
    ),
    "dinov3-no-block0": (lambda: _dinov3(_drop_block0), ("no block 0",)),
    "bias-mask-length": (
        lambda: _dinov3(lambda s: s.update({"blocks.1.attn.qkv.bias_mask": torch.ones(5)})),
        ("bias_mask",),
    ),
    "bias-mask-no-bias": (lambda: _dinov3(lambda s: s.pop("blocks.2.attn.qkv.bias")), ("bias_mask",)),
    "sparse": (lambda: {**tiny_vit(), "blocks.0.norm1.weight": torch.ones(64).to_sparse()}, ("sparse",)),
    "quantized": (
        lambda: {**tiny_vit(), "blocks.0.norm1.weight": torch.quantize_per_tensor(torch.ones(64), 0.1, 0, torch.qint8)},
        ("quantized",),
    ),
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


@pytest.mark.parametrize(
    "desc",
    [
        "not json {",
        "[1, 2]",
        '{"description": "no config"}',
        '{"config": {"backbone_preset": "x", "embed_dim": 64, "depth": 2, ' '"num_heads": 1, "surprise": 1}}',
        '{"config": {"backbone_preset": "x", "embed_dim": 64, "depth": 2, ' '"num_heads": 1}, "description": 5}',
    ],
)
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


# -- 4. the model downloader ------------------------------------------------------------------------------

PAYLOAD = bytes(range(256)) * 4000  # 1 024 000 bytes


def _headers(h, status=200, **headers):
    h.send_response(status)
    for k, v in headers.items():
        h.send_header(k.replace("_", "-"), str(v))
    h.end_headers()


def _write_for(h, seconds, piece=b"x", pause=0.05, limit=None):
    """Write `piece` every `pause` s for at most `seconds` (or `limit` bytes); stops when the client goes."""
    end, sent = time.monotonic() + seconds, 0
    try:
        while time.monotonic() < end and (limit is None or sent < limit):
            h.wfile.write(piece)
            h.wfile.flush()
            sent += len(piece)
            time.sleep(pause)
    except OSError:
        pass
    h.close_connection = True


@pytest.mark.slow
@pytest.mark.parametrize("where", ["body", "headers"])
def test_regression_download_cancel_acts_while_the_server_trickles(where, tmp_path):
    """A server sending a byte now and then (or its headers slowly) held cancel for up to 100 s."""
    from model_server import ModelServer

    from spectralx_qgis.models.download import DownloadCancelled, download, part_path

    def trickle(h, data):
        if where == "headers":
            time.sleep(3)
        _headers(h, Content_Length=len(data))
        _write_for(h, 5)

    dest = str(tmp_path / "release.pth")
    with ModelServer(PAYLOAD, answer=trickle) as srv:
        start = time.monotonic()
        with pytest.raises(DownloadCancelled):
            download(srv.url, dest, proxy="", timeout=20, cancelled=lambda: time.monotonic() - start > 0.5)
        assert time.monotonic() - start < 1.5
    assert not os.path.exists(dest)
    if where == "body":
        assert 0 < os.path.getsize(part_path(dest)) < 100  # what came is kept for a resume


@pytest.mark.slow
def test_regression_download_never_writes_past_the_release_size(tmp_path):
    """An endless stream wrote 317 MB: the catalogue's size (else a cap) stops it, nothing is kept."""
    from model_server import ModelServer

    from spectralx_qgis.models.download import DownloadError, download, part_path

    def endless(h, data):  # no length, just bytes (bounded here at 8 MiB / 5 s)
        _headers(h, Connection="close")
        _write_for(h, 5, piece=b"\0" * 65536, pause=0, limit=8 << 20)

    def lying(h, data):
        _headers(h, Content_Length=10 * len(data))
        _write_for(h, 1, piece=b"\0" * 65536, pause=0, limit=len(data))

    dest = str(tmp_path / "release.pth")
    for answer, kwargs, words in (
        (endless, {"expected_size": len(PAYLOAD)}, "more than the release's size"),
        (endless, {"max_size": 2 << 20}, "more than the 2097152 bytes allowed"),
        (lying, {"expected_size": len(PAYLOAD)}, "the release is 1024000 bytes"),
    ):
        with ModelServer(PAYLOAD, answer=answer) as srv:
            with pytest.raises(DownloadError, match=words) as err:
                download(srv.url, dest, proxy="", **kwargs)
        assert "\n" not in str(err.value)
        assert not os.path.exists(dest) and not os.path.exists(part_path(dest))


@pytest.mark.slow
def test_regression_download_partial_answers_and_short_bodies_are_not_complete(tmp_path):
    """A 206 for other bytes than asked, a 206 ending before the total, a 0-byte or short body and a
    body of unknown length were all accepted as complete when no sha256 was known."""
    from model_server import ModelServer

    from spectralx_qgis.models.download import DownloadError, download, part_path

    size = len(PAYLOAD)
    dest = str(tmp_path / "release.pth")

    def wrong_start(h, data):  # asked for bytes 1000-, sends the file from 0 as a 206
        _headers(h, 206, Content_Range=f"bytes 0-{size - 1}/{size}", Content_Length=size)
        h.wfile.write(data)

    def ends_early(h, data):  # the right start, but only up to byte 1999 of the file
        _headers(h, 206, Content_Range=f"bytes 1000-1999/{size}", Content_Length=1000)
        h.wfile.write(data[1000:2000])

    for answer in (wrong_start, ends_early):
        with open(part_path(dest), "wb") as f:
            f.write(PAYLOAD[:1000])
        with ModelServer(PAYLOAD, answer=answer) as srv:
            with pytest.raises(DownloadError) as err:
                download(srv.url, dest, proxy="")
        assert not os.path.exists(dest) and "\n" not in str(err.value)
        kept = open(part_path(dest), "rb").read()
        assert kept == PAYLOAD[: len(kept)]  # never another offset's bytes
        os.remove(part_path(dest))

    def empty(h, data):
        _headers(h, Content_Length=0)

    def short(h, data):
        _headers(h, Content_Length=1000)
        h.wfile.write(data[:1000])

    def unknown_length(h, data):
        _headers(h, Connection="close")
        h.wfile.write(data)
        h.close_connection = True

    for answer, kwargs, words in (
        (empty, {}, "empty file"),
        (short, {"expected_size": size}, "announces 1000"),
        (unknown_length, {}, "cannot be called complete"),
    ):
        with ModelServer(PAYLOAD, answer=answer) as srv:
            with pytest.raises(DownloadError, match=words):
                download(srv.url, dest, proxy="", **kwargs)
        assert not os.path.exists(dest)
    with ModelServer(PAYLOAD, answer=unknown_length) as srv:  # with the size known it is complete
        assert download(srv.url, dest, proxy="", expected_size=size).size == size


@pytest.mark.slow
def test_regression_download_part_symlink_and_redirect_loop(tmp_path):
    """A `.part` that is a symbolic link had the bytes appended to its target; a redirect loop gave
    a three-line error."""
    from model_server import ModelServer

    from spectralx_qgis.models.download import DownloadError, download, part_path

    dest = str(tmp_path / "release.pth")
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious")
    os.symlink(victim, part_path(dest))
    with ModelServer(PAYLOAD) as srv:
        with pytest.raises(DownloadError, match="symbolic link"):
            download(srv.url, dest, proxy="")
    assert victim.read_bytes() == b"precious" and not os.path.exists(dest)
    os.remove(part_path(dest))

    def loop(h, data):
        h.send_response(302)
        h.send_header("Location", h.path)
        h.send_header("Content-Length", "0")
        h.end_headers()

    with ModelServer(PAYLOAD, answer=loop) as srv:
        with pytest.raises(DownloadError) as err:
            download(srv.url, dest, proxy="")
    assert "redirects in a loop" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize(
    "field,value,words",
    [
        ("file", "..", "bare file name"),
        ("file", "a\x00b.pth", "control character"),
        ("file", "../x.pth", "bare file name"),
        ("file", ".hidden.pth", "bare file name"),
        ("name", "bad\x1b[31mname", "control character"),
        ("size", None, "needs its 'size'"),
    ],
)
def test_regression_catalogue_entries_are_checked(field, value, words, tmp_path):
    from spectralx_qgis.models import catalog as model_catalog

    doc = json.load(open(model_catalog.CATALOG_FILE, encoding="utf-8"))
    entry = next(r for r in doc["releases"] if r["id"].startswith("scale-mae"))
    entry[field] = value
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(model_catalog.CatalogError, match=words) as err:
        model_catalog.load(str(path))
    assert "\n" not in str(err.value) and "\x1b" not in str(err.value)


# -- 5. the installer ---------------------------------------------------------------------------------------


def _one_package_plan(monkeypatch):
    from spectralx_qgis.setup.installer import Installer

    monkeypatch.setattr(Installer, "_plan", lambda self, *a: [("tqdm", "4.67.1", "", 0)])


def test_regression_installer_unwritable_profile_is_one_line(tmp_path, monkeypatch):
    """A read-only (or not-a-folder) profile let an OSError escape Installer.run."""
    import errno
    import sys

    from spectralx_qgis.setup import site_dir
    from spectralx_qgis.setup.errors import InstallError
    from spectralx_qgis.setup.installer import Installer, InstallOptions

    _one_package_plan(monkeypatch)
    blocker = tmp_path / "profile"
    blocker.write_text("a file where the profile folder should be")
    with pytest.raises(InstallError, match="cannot write the package folder") as err:
        Installer(
            InstallOptions(python=sys.executable, build="cpu", root=str(blocker / "packages")), log=lambda _m: None
        ).run()
    assert "\n" not in str(err.value)

    def read_only(root, tag):
        raise OSError(errno.EROFS, "Read-only file system", root)

    monkeypatch.setattr(site_dir, "new_staging", read_only)
    with pytest.raises(InstallError, match="Read-only file system"):
        Installer(
            InstallOptions(python=sys.executable, build="cpu", root=str(tmp_path / "packages")), log=lambda _m: None
        ).run()


def test_regression_concurrent_commits_and_a_plain_file_in_place(tmp_path):
    """Concurrent site_dir.commit() calls raised ENOTEMPTY/FileNotFoundError; a plain file where the
    folder belongs left a `.old-PID` file behind."""
    import threading

    from spectralx_qgis.setup import site_dir

    root, tag = str(tmp_path / "packages"), "python3.11-linux-x86_64"
    errors = []

    def install(n):
        try:
            for round_ in range(3):
                staging = site_dir.new_staging(root, tag)
                with open(os.path.join(staging, "pkg.py"), "w") as f:
                    f.write(f"N = {n}{round_}\n")
                site_dir.commit(staging, root, tag, {"n": n}, in_use=False)
        except Exception as exc:  # noqa: BLE001
            errors.append(repr(exc))

    threads = [threading.Thread(target=install, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    final = site_dir.folder(root, tag)
    assert site_dir.record(final) is not None
    assert os.listdir(root) == [tag]

    os.remove(os.path.join(final, site_dir.MARKER))
    import shutil

    shutil.rmtree(final)
    with open(final, "w") as f:
        f.write("not a folder")
    staging = site_dir.new_staging(root, tag)
    assert site_dir.commit(staging, root, tag, {"n": 0}, in_use=False)
    assert os.path.isdir(final) and os.listdir(root) == [tag]


SYSTEM_PYTHON = "/usr/bin/python3.11"


@pytest.mark.skipif(not os.path.exists(SYSTEM_PYTHON), reason="no system Python")
def test_regression_offline_folder_never_builds_source_packages(tmp_path):
    """pip ran an sdist's build backend (code) from an offline wheel folder: wheels only now."""
    import io
    import tarfile

    from spectralx_qgis.setup.errors import InstallError
    from spectralx_qgis.setup.installer import Installer, InstallOptions

    marker = tmp_path / "backend-ran"
    files = {
        "pyproject.toml": '[build-system]\nrequires = []\nbuild-backend = "backend"\nbackend-path = ["."]\n',
        "backend.py": f"open({str(marker)!r}, 'w').write('ran')\n",
        "PKG-INFO": "Metadata-Version: 2.1\nName: torch\nVersion: 2.13.0\n",
    }
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    with tarfile.open(wheels / "torch-2.13.0.tar.gz", "w:gz") as tar:
        for name, text in files.items():
            info = tarfile.TarInfo(f"torch-2.13.0/{name}")
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    log = []
    with pytest.raises(InstallError) as err:
        Installer(
            InstallOptions(python=SYSTEM_PYTHON, wheel_folder=str(wheels), root=str(tmp_path / "p")), log=log.append
        ).run()
    assert not marker.exists(), "pip ran the source package's build backend"
    assert "\n" not in str(err.value)
    assert any("use a folder you trust" in line for line in log)


# -- 6. options and band maps -------------------------------------------------------------------------------

LANDSAT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "landsat8_224078_crop64.tif")


def _s2(names=("B2", "B3", "B4")):
    from spectralx.bands import SENSORS
    from spectralx.checkpoint import Band

    s2 = SENSORS["sentinel2"]
    return [Band(n, s2.band(n).wavelength_nm, s2.band(n).fwhm_nm) for n in names]


@pytest.mark.parametrize(
    "option,value,words",
    [
        ("--dask", "tcp://", "no host name"),
        ("--dask", "tcp://:8786", "no host name"),
        ("--dask", "tcp://host:99999", "port"),
        ("--max-memory", "9" * 400, "not a size"),
        ("--max-memory", "1T", "more than this machine's"),
    ],
)
def test_regression_dask_and_memory_options_are_one_line(option, value, words, make_checkpoint, capsys):
    """`--dask tcp://` and a 400-digit --max-memory gave tracebacks; 1T on a 23 GB machine was
    accepted without a word."""
    from spectralx.inference.memory import total_ram

    if value == "1T" and (total_ram() or 0) >= 1 << 40:
        pytest.skip("this machine has a terabyte of memory")
    ckpt = make_checkpoint(wavelengths=(482.6, 561.3, 654.6))
    err = _refused(
        capsys, "segment", LANDSAT, "-c", ckpt, "--plan", "--sensor", "landsat8", option, value, words=(words,)
    )
    assert len(err) < 600


def test_regression_a_file_given_as_output_dir_is_named(make_checkpoint, tmp_path, capsys):
    ckpt = make_checkpoint(wavelengths=(482.6, 561.3, 654.6))
    not_a_folder = tmp_path / "results"
    not_a_folder.write_text("a file")
    _refused(
        capsys,
        "segment",
        LANDSAT,
        LANDSAT,
        "-c",
        ckpt,
        "--sensor",
        "landsat8",
        "--output-dir",
        not_a_folder,
        words=("is a file, not a folder",),
    )
    assert not_a_folder.read_text() == "a file"


def _stored_map():
    from spectralx.bands import resolve_band_map

    return resolve_band_map(LANDSAT, _s2(), sensor="landsat8").to_dict()


def _edit(**changes):
    def make():
        doc = _stored_map()
        for k, v in changes.items():
            if callable(v):
                v(doc)
            else:
                doc[k] = v
        return doc

    return make


def _weights(value):
    def edit(doc):
        doc["weights"] = [[value * abs(w) for w in row] for row in doc["weights"]]

    return edit


def _fraction(doc):
    doc["source_indexes"] = [i + 0.5 for i in doc["source_indexes"]]


BAD_MAPS = {  # name -> (JSON text or a document maker, words of the one-line error)
    "nested": ('{"rows": ' + "[" * 100_000 + "]" * 100_000 + "}", "nested too deeply"),
    "format-version": (_edit(format_version="abc"), "unsupported band-map format"),
    "warnings": (_edit(warnings=5), "'warnings' must be a list"),
    "negative": (_edit(w=_weights(-1.0)), "must not be negative"),
    "fraction": (_edit(f=_fraction), "not a whole number"),
    "band-count": (_edit(raster_band_count=11), "made for a 11-band raster"),
    "count-type": (_edit(raster_band_count="7"), "raster_band_count"),
    "zero-row": (_edit(w=_weights(0.0)), "neither filled nor given any weight"),
}


@pytest.mark.parametrize("name", list(BAD_MAPS))
def test_regression_band_map_files_are_checked(name, tmp_path):
    """Deep nesting, a non-numeric format_version and non-list warnings gave tracebacks; negative
    or all-zero weights, fractional band numbers and a raster_band_count that contradicts the raster
    were accepted silently."""
    from spectralx.bands import resolve_band_map
    from spectralx.errors import BandMappingError

    make, words = BAD_MAPS[name]
    path = tmp_path / "map.json"
    path.write_text(make if isinstance(make, str) else json.dumps(make()))
    with pytest.raises(BandMappingError, match=words) as err:
        resolve_band_map(LANDSAT, _s2(), band_map=str(path), sensor="landsat8")
    assert "\n" not in str(err.value) and len(str(err.value)) < 500


def test_regression_sensor_strings_and_error_lines(tmp_path, capsys):
    """`landsat8:B9,B9,B9` was accepted; a raw ESC was echoed in an error; an error line ran to 1 093
    characters."""
    from spectralx.bands import parse_sensor
    from spectralx.errors import BandMappingError

    with pytest.raises(BandMappingError, match="B9 is listed twice"):
        parse_sensor("landsat8:B9,B9,B9")
    err = _refused(capsys, "bands", LANDSAT, "--sensor", "landsat8:B2,\x1b[31mB3")
    assert "\x1b" not in err and "[31mB3" in err
    err = _refused(capsys, "bands", LANDSAT, "--sensor", "\x1b]0;pwned\x07landsat8")
    assert "\x1b" not in err and "\x07" not in err
    names = {f"not_a_band_{i:03d}": i for i in range(300)}  # 300 unknown names in a hand-written map
    path = tmp_path / "names.json"
    path.write_text(json.dumps(names))
    from spectralx.bands import resolve_band_map

    with pytest.raises(BandMappingError) as exc:
        resolve_band_map(LANDSAT, _s2(), band_map=str(path), sensor="landsat8")
    assert "(+294 more)" in str(exc.value) and len(str(exc.value)) < 400
    from spectralx.cli import one_line

    assert len(one_line("x" * 1093 + " do this")) <= 500 and one_line("x" * 1093 + " do this").endswith("do this")
