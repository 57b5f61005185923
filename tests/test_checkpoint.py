"""Issue 2: checkpoint round trip, model card, and refusal of bad or unsafe files."""

import json
import os
import pickle
import shutil

import pytest
import torch
from conftest import run_cli

from spectralx.checkpoint import load_checkpoint, read_card
from spectralx.errors import CheckpointError


def test_round_trip_is_bit_exact(make_checkpoint):
    path = make_checkpoint(wavelengths=(443, 490, 560, 665, 842), classes=("a", "b"))
    model, card = load_checkpoint(path)
    x = torch.randn(2, 5, 64, 64)
    with torch.no_grad():
        ref = model(x)
    # save the loaded model again and reload: identical outputs and card
    from spectralx.checkpoint import save_checkpoint

    again = os.path.join(os.path.dirname(path), "again.safetensors")
    save_checkpoint(model, card, again)
    model2, card2 = load_checkpoint(again)
    with torch.no_grad():
        assert torch.equal(model2(x), ref)
    assert card2.to_json() == card.to_json()
    assert [b.wavelength_nm for b in card2.bands] == [443, 490, 560, 665, 842]
    assert [c.name for c in card2.classes] == ["a", "b"]
    assert card2.tile_size == 64
    assert card2.backbone.sha256 == card.backbone.sha256 and len(card.backbone.sha256) == 64


def test_checkpoint_holds_no_backbone_tensors(make_checkpoint):
    from safetensors import safe_open

    path = make_checkpoint()
    with safe_open(path, "pt") as f:
        keys = list(f.keys())
    assert keys and not any(k.startswith("backbone.") for k in keys)
    assert any(k.startswith("aomoa.") for k in keys) and any(k.startswith("hypert.stem") for k in keys)


@pytest.mark.slow
def test_info_cli_prints_card(make_checkpoint):
    path = make_checkpoint(classes=("water", "crop", "tree"))
    out = run_cli("info", path, check=True).stdout
    assert "water" in out and "vit_tiny_patch16" in out and "560.0 nm" in out
    card = json.loads(run_cli("info", path, "--json", check=True).stdout)
    assert card["format"] == "spectralx-checkpoint" and card["tile_size"] == 64


def test_backbone_found_in_user_model_dir(make_checkpoint, tmp_path, monkeypatch):
    path = make_checkpoint()
    folder = os.path.dirname(path)
    models = tmp_path / "models"
    models.mkdir()
    name = read_card(path).backbone.file
    shutil.move(os.path.join(folder, name), models / name)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(path)
    monkeypatch.setenv("SPECTRALX_MODELS", str(models))
    load_checkpoint(path)


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):  # unpickling this would create the marker file
        return (open, (self.marker, "w"))


def _assert_one_line_error(proc, *needles):
    assert proc.returncode != 0
    err = proc.stderr.strip()
    assert "Traceback" not in err, err
    assert len(err.splitlines()) == 1, err
    for n in needles:
        assert n in err, err


@pytest.mark.slow
def test_pickle_is_never_executed(tmp_path, make_checkpoint):
    marker = tmp_path / "PWNED"
    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as f:
        pickle.dump({"model": _Evil(str(marker))}, f)
    # as a checkpoint
    _assert_one_line_error(run_cli("info", evil), "pickle")
    # as a backbone for a checkpoint
    ckpt = make_checkpoint()
    _assert_one_line_error(run_cli("info", ckpt, "--check", "--backbone", evil), "does not match")
    # as a third-party backbone (weights_only refuses the callable)
    from spectralx.backbone_io import load_backbone

    with pytest.raises(CheckpointError, match="safely"):
        load_backbone(str(evil), "vit_tiny_patch16")
    assert not marker.exists()


@pytest.mark.slow
def test_truncated_safetensors(make_checkpoint, tmp_path):
    path = make_checkpoint()
    cut = tmp_path / "cut.safetensors"
    data = open(path, "rb").read()
    cut.write_bytes(data[: len(data) // 2])
    _assert_one_line_error(run_cli("info", cut, "--check"), "truncated")
    with pytest.raises(CheckpointError):
        load_checkpoint(str(cut))


@pytest.mark.slow
def test_safetensors_without_card(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(3)}, str(path))
    _assert_one_line_error(run_cli("info", path), "without a SpectralX model card")


@pytest.mark.slow
def test_backbone_hash_mismatch(make_checkpoint, tmp_path):
    path = make_checkpoint()
    from spectralx.backbone_io import save_backbone
    from spectralx.config import ModelConfig
    from spectralx.model.backbone import VisionTransformer

    cfg = ModelConfig.from_preset("vit_tiny_patch16", img_size=64)
    other = tmp_path / "other-backbone.safetensors"
    save_backbone(VisionTransformer(cfg).state_dict(), cfg, str(other), "another backbone")
    _assert_one_line_error(run_cli("info", path, "--check", "--backbone", other), "does not match", "sha256")
    with pytest.raises(CheckpointError, match="does not match"):
        load_checkpoint(path, backbone=str(other))


@pytest.mark.slow
def test_not_a_file(tmp_path):
    _assert_one_line_error(run_cli("info", tmp_path / "nope.safetensors"), "not found")
