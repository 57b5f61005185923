"""The model manager dialog through the real QGIS API (pytest-qgis, offscreen): the folder's models
with a missing backbone flagged, "Add backbone from file" on a release-format fixture running the real
importer, and a release downloaded from a server on 127.0.0.1 through the dialog's task and imported."""

from __future__ import annotations

import hashlib
import json
import os
import shutil

import pytest
from backbone_releases import satmae_pp_release, scale_mae_release
from model_server import ModelServer
from test_model_store import DEMO, DEMO_BACKBONE, demo_card, other_backbone, write_with_card
from test_plugin_common import wait_for

pytestmark = pytest.mark.usefixtures("qgis_app", "one_thread")


@pytest.fixture
def folder(tmp_path, monkeypatch):
    d = tmp_path / "models"
    d.mkdir()
    monkeypatch.setenv("SPECTRALX_MODELS", str(d))  # never the real ~/.local/share
    shutil.copy(DEMO, d / "demo.safetensors")
    shutil.copy(DEMO_BACKBONE, d / "demo-backbone.safetensors")
    write_with_card(DEMO, str(d / "needs-scalemae.safetensors"), other_backbone)
    raw = open(DEMO, "rb").read()
    (d / "broken.safetensors").write_bytes(raw[:5000])
    return str(d)


def dialog(folder, **kw):
    from spectralx_qgis.models.manager import ModelManagerDialog

    return ModelManagerDialog(folder=folder, **kw)


def table_rows(table):
    return [
        [table.item(r, c).text() if table.item(r, c) else "" for c in range(table.columnCount())]
        for r in range(table.rowCount())
    ]


def column(name):
    from spectralx_qgis.models.manager import MODEL_COLUMNS

    return MODEL_COLUMNS.index(name)


def run_and_wait(dlg, start, count=1, timeout=300):
    """Start a dialog action and wait until `count` of its tasks have been handled."""
    done = []
    dlg.taskFinished.connect(done.append)
    try:
        assert start() is not None, dlg.status.text()
        wait_for(lambda: len(done) >= count and dlg.task is None, timeout)
    finally:
        dlg.taskFinished.disconnect(done.append)
    return done


def test_lists_the_folder_and_flags_the_missing_backbone(folder):
    from qgis.PyQt.QtCore import Qt

    dlg = dialog(folder)
    rows = {r[0]: r for r in table_rows(dlg.models_table)}
    assert list(rows) == ["demo", "needs-scalemae", "demo-backbone", "broken"]
    demo = rows["demo"]
    assert demo[column("Kind")] == "checkpoint (finetune)"
    assert demo[column("Bands")] == "218" and demo[column("Tile")] == "64"
    assert demo[column("Classes")].startswith("6: roof, pavement, low vegetation")
    metrics = demo_card()["metrics"]  # the demo model is rebuilt now and then
    assert demo[column("Val mIoU")] == f"{metrics['val_miou']:.3f}"
    assert demo[column("Forest mIoU")] == f"{metrics['baselines']['random_forest']['val_miou']:.3f}"
    assert demo[column("Sensor")] == "218 bands, 418-2446 nm"
    assert demo[column("Method")] == "spectralx"
    assert demo[column("Backbone")] == "present: demo-backbone.safetensors"
    from spectralx_qgis.models.store import human_size

    assert demo[column("Size")] == human_size(os.path.getsize(DEMO)) and demo[column("Size")].endswith(" MB")

    r = list(rows).index("needs-scalemae")
    flag = dlg.models_table.item(r, column("Backbone"))
    assert flag.text() == "MISSING: scalemae-vitl16.safetensors"
    assert flag.foreground().color().name() == "#b00020" and flag.font().bold()
    tip = flag.data(Qt.ItemDataRole.ToolTipRole)
    assert os.path.join(folder, "scalemae-vitl16.safetensors") in tip and "Add model or backbone" in tip
    assert dlg.models_table.item(0, column("Backbone")).foreground().color().name() != "#b00020"

    bb = rows["demo-backbone"]
    assert bb[column("Kind")] == "backbone (spectralx-mae)"
    assert bb[column("Backbone")] == "vit_tiny_patch16: width 192, 12 blocks"
    assert "damaged or truncated" in rows["broken"][2]

    releases = table_rows(dlg.releases_table)
    assert {r[1] for r in releases} >= {"scale-mae", "satmae++", "dinov3", "mae"}
    dino = next(i for i, r in enumerate(releases) if r[1] == "dinov3")
    dlg.releases_table.selectRow(dino)
    assert not dlg.download_button.isEnabled()  # gated: page only
    assert "ai.meta.com" in dlg.release_info.text() and "No direct download" in dlg.release_info.text()
    scale = next(i for i, r in enumerate(releases) if r[1] == "scale-mae")
    dlg.releases_table.selectRow(scale)
    assert dlg.download_button.isEnabled()
    assert "CC BY-NC 4.0" in dlg.release_info.text()


def test_add_backbone_from_a_release_file_runs_the_importer(folder, tmp_path):
    from spectralx.backbone_io import backbone_info

    src = str(tmp_path / "scalemae-vitlarge-800.pth")
    scale_mae_release(src)
    dlg = dialog(folder)
    changed = []
    dlg.modelsChanged.connect(lambda: changed.append(1))
    run_and_wait(dlg, lambda: dlg.add_backbone(src))
    added = os.path.join(folder, "scalemae-vitlarge-800.safetensors")
    assert os.path.isfile(added), dlg.status.text()
    assert changed == [1]
    # hashed by the import task (worker thread), so listing the 1 GB file of a real release is instant
    cache = json.load(open(os.path.join(folder, ".spectralx-digests.json")))
    assert cache[added]["sha256"] == hashlib.sha256(open(added, "rb").read()).hexdigest()
    info = backbone_info(added)
    assert info["family"] == "scale-mae" and info["embed_dim"] == 128 and info["depth"] == 4
    assert info["source"]["file"] == "scalemae-vitlarge-800.pth"
    rows = {r[0]: r for r in table_rows(dlg.models_table)}
    assert rows["scalemae-vitlarge-800"][column("Kind")] == "backbone (scale-mae)"
    assert rows["scalemae-vitlarge-800"][column("Backbone")].endswith(": width 128, 4 blocks")
    # the catalogue knows this file name, but its authors publish no checksum: nothing is claimed
    assert "differs" not in dlg.status.text() and "matches" not in dlg.status.text()
    # importing the same release again does not overwrite the first import
    assert dlg.add_backbone(src) is None and "already imported" in dlg.status.text()
    assert dlg.task is None
    # a release whose authors publish a sha256 (SatMAE++): the fixture of that name is not that file
    sat = str(tmp_path / "checkpoint_ViT-L_pretrain_fmow_rgb.pth")
    satmae_pp_release(sat)
    run_and_wait(dlg, lambda: dlg.add_backbone(sat))
    assert "differs from the published" in dlg.status.text()


def test_a_release_safetensors_in_the_folder_is_imported_beside_itself(folder, tmp_path):
    """A timm model.safetensors dropped into the folder is listed as not usable; importing it writes
    model-backbone.safetensors and leaves the release file as it was."""
    from backbone_releases import timm_release

    src = os.path.join(folder, "model.safetensors")
    timm_release(src)
    before = open(src, "rb").read()
    dlg = dialog(folder)
    rows = {r[0]: r for r in table_rows(dlg.models_table)}
    assert rows["model"][column("Kind")] == "unknown" and "import it" in rows["model"][2]
    run_and_wait(dlg, lambda: dlg.add_backbone(src))
    rows = {r[0]: r for r in table_rows(dlg.models_table)}
    assert rows["model-backbone"][column("Kind")] == "backbone (timm)"
    assert open(src, "rb").read() == before


def test_import_of_a_non_release_file_fails_in_one_line(folder, tmp_path):
    src = tmp_path / "notes.pth"
    src.write_bytes(b"not weights at all")
    dlg = dialog(folder)
    before = sorted(os.listdir(folder))
    run_and_wait(dlg, lambda: dlg.add_backbone(str(src)))
    assert "Import of notes.pth failed" in dlg.status.text()
    assert sorted(os.listdir(folder)) == before  # nothing half-written


def test_add_backbone_without_dependencies_explains(folder, monkeypatch, tmp_path):
    from spectralx_qgis.setup import deps

    def missing(submodule=""):
        raise deps.MissingDependencies("torch is missing")

    monkeypatch.setattr(deps, "require", missing)
    dlg = dialog(folder)
    assert dlg.add_backbone(str(tmp_path / "x.pth")) is None
    assert "install the dependencies first" in dlg.status.text()


def release_for(url, data, **kw):
    from spectralx_qgis.models.catalog import Release

    fields = dict(
        id="satmae-test",
        name="SatMAE++ (test server)",
        family="satmae++",
        file="checkpoint_ViT-L_pretrain_fmow_rgb.pth",
        source_page="https://github.com/techmn/satmae_pp",
        license="Apache-2.0",
        url=url,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )
    fields.update(kw)
    return Release(**fields)


def test_download_through_the_dialog_lands_in_the_folder(folder, tmp_path):
    src = tmp_path / "release.pth"
    satmae_pp_release(str(src))
    data = src.read_bytes()
    with ModelServer(data, name="checkpoint_ViT-L_pretrain_fmow_rgb.pth", cut_after=[len(data) // 3]) as srv:
        rel = release_for(srv.url, data)
        dlg = dialog(folder, releases=[rel])
        assert dlg.download_button.isEnabled()
        # first try: the server drops the connection; the part stays for a resume
        run_and_wait(dlg, lambda: dlg.download_release())
        assert "resume" in dlg.status.text()
        part = os.path.join(folder, "releases", rel.file + ".part")
        assert os.path.getsize(part) == len(data) // 3
        changed = []
        dlg.modelsChanged.connect(lambda: changed.append(1))
        run_and_wait(dlg, lambda: dlg.download_release(), count=2)  # download, then import
    assert srv.requests[1]["range"] == f"bytes={len(data) // 3}-"
    downloaded = os.path.join(folder, "releases", rel.file)
    assert open(downloaded, "rb").read() == data and not os.path.exists(part)
    imported = os.path.join(folder, "checkpoint_ViT-L_pretrain_fmow_rgb.safetensors")
    assert os.path.isfile(imported), dlg.status.text()
    assert changed == [1]
    rows = {r[0]: r for r in table_rows(dlg.models_table)}
    assert rows["checkpoint_ViT-L_pretrain_fmow_rgb"][column("Kind")] == "backbone (satmae++)"
    from spectralx.backbone_io import backbone_info

    assert backbone_info(imported)["source"]["sha256"] == rel.sha256


def test_download_with_a_wrong_checksum_is_refused(folder):
    data = b"a release file" * 5000
    with ModelServer(data, name="m.pth") as srv:
        rel = release_for(srv.url, data, sha256=hashlib.sha256(b"other").hexdigest(), file="m.pth")
        dlg = dialog(folder, releases=[rel])
        before = sorted(os.listdir(folder))
        run_and_wait(dlg, lambda: dlg.download_release())
    assert "does not match" in dlg.status.text()
    assert not os.path.exists(os.path.join(folder, "releases", "m.pth"))
    assert not os.path.exists(os.path.join(folder, "releases", "m.pth.part"))
    assert sorted(n for n in os.listdir(folder) if n != "releases") == before


def test_release_without_sha256_is_checked_by_its_published_md5_prefix(folder, tmp_path):
    """MAE publishes only an md5 prefix: a match is reported and the import follows; a mismatch
    deletes the download."""
    from backbone_releases import mae_release

    src = tmp_path / "mae_pretrain_vit_large.pth"
    mae_release(str(src))
    data = src.read_bytes()
    md5 = hashlib.md5(data).hexdigest()
    with ModelServer(data, name="mae_pretrain_vit_large.pth") as srv:
        good = release_for(
            srv.url, data, sha256=None, md5_prefix=md5[:6], family="mae", file="mae_pretrain_vit_large.pth"
        )
        dlg = dialog(folder, releases=[good])
        statuses = []
        dlg.taskFinished.connect(lambda t: statuses.append(dlg.status.text()))
        run_and_wait(dlg, lambda: dlg.download_release(), count=2)
        assert f"md5 starts with the published {md5[:6]}" in statuses[0]
        assert hashlib.sha256(data).hexdigest() in statuses[0]  # shown, since none is published
        rows = {r[0]: r for r in table_rows(dlg.models_table)}
        assert rows["mae_pretrain_vit_large"][column("Kind")] == "backbone (mae)"

        bad = release_for(srv.url, data, sha256=None, md5_prefix="000000", family="mae", file="other.pth")
        dlg = dialog(folder, releases=[bad])
        run_and_wait(dlg, lambda: dlg.download_release())
    assert "does not start with the published 000000" in dlg.status.text()
    assert not os.path.exists(os.path.join(folder, "releases", "other.pth"))
    assert not os.path.exists(os.path.join(folder, "other.safetensors"))
