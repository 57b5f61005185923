"""Shared fixtures. Engine tests need no QGIS; pytest-qgis provides `qgis_app`/`qgis_iface` where used."""

from __future__ import annotations

import os
import sys

import pytest
import torch

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "fixtures")
REPO = os.path.dirname(HERE)


def run_cli(*args: str, check: bool = False):
    """Run the real `spectralx` entry point in a subprocess; returns CompletedProcess."""
    import subprocess

    proc = subprocess.run(
        [sys.executable, "-m", "spectralx.cli", *map(str, args)], capture_output=True, text=True, timeout=900
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"spectralx {' '.join(map(str, args))} failed:\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory) -> str:
    """A ViT-Tiny backbone file in the project's format (random weights: for shape/IO tests only)."""
    from spectralx.backbone_io import save_backbone
    from spectralx.config import ModelConfig
    from spectralx.model.backbone import VisionTransformer

    torch.manual_seed(0)
    cfg = ModelConfig.from_preset("vit_tiny_patch16", img_size=64)
    path = str(tmp_path_factory.mktemp("backbone") / "tiny-backbone.safetensors")
    save_backbone(VisionTransformer(cfg).state_dict(), cfg, path, "random ViT-Tiny for tests")
    return path


@pytest.fixture
def make_checkpoint(tiny_backbone, tmp_path):
    """Factory: a fresh tiny checkpoint (beside a copy of the backbone) for given wavelengths/classes."""
    import shutil

    from spectralx.checkpoint import Band, ClassInfo, new_model, save_checkpoint

    def factory(
        wavelengths=(480.0, 560.0, 660.0), classes=("water", "crop", "tree"), name="model", seed=0, img_size=64
    ):
        torch.manual_seed(seed)
        folder = tmp_path / name
        folder.mkdir(exist_ok=True)
        backbone = folder / os.path.basename(tiny_backbone)
        shutil.copy(tiny_backbone, backbone)
        bands = [Band(f"B{i + 1}", float(w), 20.0) for i, w in enumerate(wavelengths)]
        palette = ["#1f78b4", "#33a02c", "#e31a1c", "#ff7f00", "#6a3d9a", "#b15928", "#a6cee3"]
        cls = [ClassInfo(i + 1, n, palette[i % len(palette)]) for i, n in enumerate(classes)]
        model, card = new_model(str(backbone), bands, cls, img_size=img_size)
        path = str(folder / f"{name}.safetensors")
        save_checkpoint(model, card, path)
        return path

    return factory


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a test module: on a shared 2-core machine two spinning OpenMP threads
    per process make small training steps many times slower; restored afterwards. Use with
    `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
