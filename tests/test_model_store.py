"""The model folder listing (spectralx_qgis.model_store) and the release catalogue, on the shipped demo
checkpoint and backbone: what the manager shows, backbone present/missing/wrong, damaged files listed
with their reason, the sha256 cache, and agreement with the engine's own rules."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys

import pytest

from spectralx_qgis.models import catalog as model_catalog
from spectralx_qgis.models import store as model_store

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DEMO = os.path.join(REPO, "resources", "models", "demo.safetensors")
DEMO_BACKBONE = os.path.join(REPO, "resources", "models", "demo-backbone.safetensors")


def split_safetensors(path):
    raw = open(path, "rb").read()
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def write_with_card(src, dst, edit):
    """A copy of a checkpoint with its card edited (tensors byte-identical): a real checkpoint
    trained on another backbone, as far as every reader is concerned."""
    header, data = split_safetensors(src)
    card = json.loads(header["__metadata__"]["spectralx_model_card"])
    edit(card)
    header["__metadata__"]["spectralx_model_card"] = json.dumps(card)
    blob = json.dumps(header).encode()
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(blob)) + blob + data)


def demo_card():
    header, _ = split_safetensors(DEMO)
    return json.loads(header["__metadata__"]["spectralx_model_card"])


def other_backbone(card):
    card["backbone"]["file"] = "scalemae-vitl16.safetensors"
    card["backbone"]["sha256"] = "ab" * 32
    card["description"] = "trained on a backbone this folder does not have"


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """A model folder: the demo checkpoint and its backbone, a checkpoint whose backbone is absent,
    a truncated copy, a file of garbage, a release file and a third-party safetensors file."""
    d = tmp_path / "models"
    d.mkdir()
    monkeypatch.setenv("SPECTRALX_MODELS", str(d))
    shutil.copy(DEMO, d / "demo.safetensors")
    shutil.copy(DEMO_BACKBONE, d / "demo-backbone.safetensors")
    write_with_card(DEMO, str(d / "needs-scalemae.safetensors"), other_backbone)
    raw = open(DEMO, "rb").read()
    (d / "truncated.safetensors").write_bytes(raw[: len(raw) // 2])
    (d / "garbage.safetensors").write_bytes(b"\x80\x02" + bytes(range(200)))
    (d / "scalemae-vitlarge-800.pth").write_bytes(b"PK\x03\x04" + b"\0" * 100)
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    (d / "other-tool.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 8)
    return str(d)


def by_name(entries):
    return {e.file_name: e for e in entries}


def test_listing_shows_checkpoints_backbones_and_why_others_cannot_be_used(folder):
    entries = model_store.list_models(folder)
    assert [e.kind for e in entries] == [
        "checkpoint",
        "checkpoint",
        "backbone",
        "release",
        "unknown",
        "damaged",
        "damaged",
    ]
    got = by_name(entries)
    card = demo_card()
    demo = got["demo.safetensors"]
    assert demo.bands == len(card["bands"]) == 218
    assert demo.classes == [c["name"] for c in card["classes"]]
    assert demo.tile == card["architecture"]["img_size"] == 64
    assert demo.val_miou == pytest.approx(card["metrics"]["val_miou"])
    assert demo.forest_miou == pytest.approx(card["metrics"]["baselines"]["random_forest"]["val_miou"])
    assert demo.method == card["training"]["method"] == "spectralx"
    assert demo.sensor == "218 bands, 418-2446 nm" and demo.gsd_m == 30.0  # no sensor in its card
    assert demo.size == os.path.getsize(DEMO)
    assert demo.backbone_status == "ok" and demo.backbone_path == os.path.join(folder, "demo-backbone.safetensors")
    assert "present" in demo.backbone_text()

    missing = got["needs-scalemae.safetensors"]
    assert missing.backbone_status == "missing" and missing.backbone_path is None
    assert "MISSING" in missing.backbone_text() and "scalemae-vitl16.safetensors" in missing.backbone_text()
    assert missing.backbone_searched == [os.path.join(folder, "scalemae-vitl16.safetensors")] * 2

    bb = got["demo-backbone.safetensors"]
    assert (bb.family, bb.preset, bb.embed_dim, bb.depth, bb.tile) == ("spectralx-mae", "vit_tiny_patch16", 192, 12, 64)
    assert bb.sha256 == card["backbone"]["sha256"]

    assert "truncated" in got["truncated.safetensors"].error
    assert "damaged" in got["garbage.safetensors"].error
    assert "import" in got["scalemae-vitlarge-800.pth"].error
    assert "without SpectralX metadata" in got["other-tool.safetensors"].error
    for e in entries:
        assert "\n" not in e.error


def test_a_backbone_with_the_right_name_but_other_content_is_flagged(folder):
    path = os.path.join(folder, "demo-backbone.safetensors")
    raw = bytearray(open(path, "rb").read())
    raw[-1] ^= 0xFF  # one byte of one tensor
    open(path, "wb").write(bytes(raw))
    demo = by_name(model_store.list_models(folder))["demo.safetensors"]
    assert demo.backbone_status == "mismatch" and "WRONG FILE" in demo.backbone_text()


def test_checkpoint_paths_lists_only_usable_checkpoints(folder):
    assert model_store.checkpoint_paths(folder) == [
        os.path.join(folder, "demo.safetensors"),
        os.path.join(folder, "needs-scalemae.safetensors"),
    ]
    assert model_store.checkpoint_paths(os.path.join(folder, "nowhere")) == []


def test_default_folder_follows_the_environment(folder, monkeypatch):
    assert model_store.user_model_dir() == folder
    assert len(model_store.list_models()) == 7
    monkeypatch.delenv("SPECTRALX_MODELS")
    monkeypatch.setenv("XDG_DATA_HOME", "/data/x")
    assert model_store.user_model_dir() == "/data/x/spectralx/models"


def test_digests_are_cached_and_refreshed_when_the_file_changes(folder, monkeypatch):
    calls = []
    real = model_store.sha256_of
    monkeypatch.setattr(model_store, "sha256_of", lambda p: calls.append(os.path.basename(p)) or real(p))
    model_store.list_models(folder)
    # one hash for the backbone entry and the checkpoint's check together
    assert calls == ["demo-backbone.safetensors"]
    cache_file = os.path.join(folder, model_store.DIGEST_CACHE)
    cache = json.load(open(cache_file))
    bb = os.path.join(folder, "demo-backbone.safetensors")
    assert cache[bb]["sha256"] == demo_card()["backbone"]["sha256"]
    assert cache[bb]["size"] == os.path.getsize(bb)
    assert [n for n in os.listdir(folder) if n.endswith(".tmp")] == []  # written atomically

    model_store.list_models(folder)
    assert calls == ["demo-backbone.safetensors"]  # second listing: from the cache

    st = os.stat(bb)
    os.utime(bb, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # touched: hashed again
    model_store.list_models(folder)
    assert calls == ["demo-backbone.safetensors"] * 2

    open(cache_file, "w").write("{not json")  # a damaged cache is rebuilt
    entries = by_name(model_store.list_models(folder))
    assert entries["demo.safetensors"].backbone_status == "ok" and len(calls) == 3
    assert json.load(open(cache_file))[bb]["sha256"] == demo_card()["backbone"]["sha256"]

    os.remove(os.path.join(folder, "demo-backbone.safetensors"))  # gone files leave the cache
    model_store.list_models(folder)
    assert bb not in json.load(open(cache_file))


def test_read_only_folder_lists_without_a_cache(folder, monkeypatch):
    def refuse(**kw):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(model_store.tempfile, "mkstemp", refuse)
    entries = by_name(model_store.list_models(folder))
    assert entries["demo.safetensors"].backbone_status == "ok"
    assert not os.path.exists(os.path.join(folder, model_store.DIGEST_CACHE))


# -- agreement with the engine (these tests import it; the module itself must not) -----------------


def test_rules_match_the_engine(folder):
    from spectralx import checkpoint
    from spectralx.backbone_io import BACKBONE_META_KEY
    from spectralx.backbones import FAMILIES

    assert model_store.CARD_KEY == checkpoint.CARD_KEY
    assert model_store.CARD_FORMAT == checkpoint.FORMAT_NAME
    assert model_store.BACKBONE_KEY == BACKBONE_META_KEY
    assert model_store.user_model_dir() == checkpoint.user_model_dir()
    assert set(model_catalog.FAMILIES) == set(FAMILIES)
    for name in ("demo.safetensors", "needs-scalemae.safetensors"):
        path = os.path.join(folder, name)
        card = checkpoint.read_card(path)
        header, _ = split_safetensors(path)
        raw = json.loads(header["__metadata__"][model_store.CARD_KEY])
        assert model_store.backbone_candidates(raw, path) == checkpoint.backbone_candidates(card, path)
    # what the listing calls ok / missing / mismatch is what loading the model will say
    checkpoint.resolve_backbone(
        checkpoint.read_card(os.path.join(folder, "demo.safetensors")), os.path.join(folder, "demo.safetensors")
    )
    with pytest.raises(Exception, match="not found"):
        path = os.path.join(folder, "needs-scalemae.safetensors")
        checkpoint.resolve_backbone(checkpoint.read_card(path), path)
    from spectralx.contract import CheckpointError

    for name in ("truncated.safetensors", "garbage.safetensors"):
        with pytest.raises(CheckpointError):
            checkpoint.read_card(os.path.join(folder, name))


def test_plugin_modules_import_without_torch_or_qt():
    # of the engine only its torch-free contract (spectralx.contract) is imported, and the empty
    # spectralx.commands package the plugin's import point registers (issue 19)
    code = (
        "import sys; import spectralx_qgis.models.store, spectralx_qgis.models.catalog, "
        "spectralx_qgis.models.download; print(sorted(m for m in ('torch', 'qgis', 'PyQt5', 'rasterio') "
        "if m in sys.modules) + sorted(m for m in sys.modules if m.startswith('spectralx.') "
        "and not m.startswith('spectralx.contract') and m != 'spectralx.commands'))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# -- the catalogue ----------------------------------------------------------------------------------


def test_catalogue_loads_and_says_what_is_verified():
    releases = {r.family + ":" + r.id: r for r in model_catalog.load()}
    fams = {r.family for r in releases.values()}
    assert {"scale-mae", "satmae++", "dinov3", "mae", "timm"} <= fams
    scale = next(r for r in releases.values() if r.family == "scale-mae")
    assert scale.url.startswith("https://github.com/bair-climate-initiative/scale-mae/releases/")
    # the authors publish no checksum: none is enforced; a rehost's digest is quoted, not trusted
    assert "CC BY-NC" in scale.license and scale.sha256 is None and "rehost" in scale.checksum_source
    satmae = next(r for r in releases.values() if r.family == "satmae++")
    assert len(satmae.sha256) == 64 and "authors' upload" in satmae.checksum_source
    dino = next(r for r in releases.values() if r.family == "dinov3")
    assert dino.url is None and not dino.downloadable and dino.sha256 is None  # gated: page only
    assert "DINOv3 License" in dino.license and dino.file.endswith(dino.sha256_prefix + ".pth")
    for r in releases.values():
        assert r.source_page.startswith("https://") and r.license
        if r.sha256 is None:
            assert r.checksum_text().startswith(model_catalog.NO_CHECKSUM)
    assert dino.check(sha256="eadcf0ff" + "0" * 56)[0] is True
    assert dino.check(sha256="0" * 64)[0] is False
    mae = model_catalog.by_file(list(releases.values()), "/x/mae_pretrain_vit_large.pth")
    assert mae.check(md5="b8b06e" + "0" * 26)[0] is True and mae.check(md5="0" * 32)[0] is False
    assert mae.check(sha256="1" * 64)[0] is None


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d["releases"][0].update(family="resnet"), "family 'resnet'"),
        (lambda d: d["releases"][0].update(sha256="1234"), "'sha256' must be 64"),
        (lambda d: d["releases"][0].update(url="http://insecure/x.pth"), "https://"),
        (lambda d: d["releases"][1].update(id=d["releases"][0]["id"]), "used twice"),
        (lambda d: d["releases"][0].pop("license"), "'license'"),
        (lambda d: d["releases"][0].update(size=-3), "'size'"),
        (lambda d: d["releases"][0].update(checksum="x"), "unknown field 'checksum'"),
        (lambda d: d.update(format="other"), "not a SpectralX model catalogue"),
    ],
)
def test_damaged_catalogue_is_refused_in_one_line(tmp_path, edit, message):
    data = json.load(open(model_catalog.CATALOG_FILE))
    edit(data)
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps(data))
    with pytest.raises(model_catalog.CatalogError) as err:
        model_catalog.load(str(path))
    assert message in str(err.value) and "\n" not in str(err.value)
    path.write_text("{")
    with pytest.raises(model_catalog.CatalogError, match="not valid JSON"):
        model_catalog.load(str(path))


def test_adding_copies_through_a_temporary_name_when_links_fail(tmp_path, monkeypatch):
    """Another file system (no hard link): a copy renamed into place; a cancelled copy leaves nothing."""
    from spectralx_qgis.models import add as model_add

    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(DEMO_BACKBONE, tmp_path / "bb.safetensors")

    def no_link(src, dst):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_link)
    plan = model_add.plan(str(tmp_path / "bb.safetensors"), str(folder))
    with pytest.raises(model_add.AddError, match="cancelled: nothing was added"):
        model_add.add(plan, cancelled=lambda: True)
    assert os.listdir(folder) == []
    assert model_add.add(plan) == ["copied"]
    assert open(folder / "bb.safetensors", "rb").read() == open(DEMO_BACKBONE, "rb").read()
    assert os.listdir(folder) == ["bb.safetensors"]
