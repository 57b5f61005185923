"""The torch-free contract layer (spectralx.contract): it imports without torch, rasterio or GDAL, holds
each rule once, and the engine's old module paths re-export it."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_contract_imports_without_torch_rasterio_or_gdal():
    code = (
        "import sys\n"
        "for m in ('torch', 'rasterio', 'osgeo', 'osgeo.gdal', 'fiona', 'safetensors', 'scipy', 'sklearn'):\n"
        "    sys.modules[m] = None\n"
        "import spectralx.contract as c\n"
        "from spectralx.contract import errors, defaults, options, card, model_folder, registry, band_mapping\n"
        "import spectralx.errors, spectralx.defaults\n"
        "assert c.defaults.training_default('finetune', 'steps') == 300\n"
        "assert c.load_releases()\n"
        "assert c.for_qgis(c.BandMappingError('use --sensor')) != 'use --sensor'\n"
        "c.BandMapping.identity([1, 2]).to_json()\n"
        "c.FinetuneOptions.build(steps=5); c.PretrainOptions.build(steps=5); c.SegmentOptions.build(batch_size=2)\n"
        "heavy = [m for m in ('torch', 'rasterio', 'osgeo') if sys.modules.get(m) is not None]\n"
        "assert not heavy, heavy\n"
        "print('ok')\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_old_paths_re_export_the_one_implementation():
    import spectralx.checkpoint as ckpt
    import spectralx.defaults as old_defaults
    import spectralx.devices as devices
    import spectralx.errors as old_errors
    import spectralx.safefile as safefile
    from spectralx import contract
    from spectralx.backbones import FAMILY_NAMES
    from spectralx.backbones.registry import FAMILIES as converters
    from spectralx.bands import BandMapping, wording
    from spectralx.training.options import FinetuneOptions, PretrainOptions

    assert old_errors.SpectralXError is contract.SpectralXError
    assert old_errors.Terminated is contract.Terminated
    assert old_defaults.OVERLAP == contract.defaults.OVERLAP
    assert old_defaults.training_default is contract.defaults.training_default
    assert ckpt.ModelCard is contract.ModelCard and ckpt.read_card is contract.read_card
    assert ckpt.user_model_dir is contract.user_model_dir
    assert ckpt.backbone_candidates is contract.backbone_candidates
    assert safefile.read_safetensors_header is contract.read_header
    assert devices.PRECISIONS is contract.PRECISIONS
    assert FAMILY_NAMES is contract.FAMILIES and tuple(converters) == contract.FAMILIES
    assert BandMapping is contract.BandMapping
    assert wording.explain is contract.errors.explain and wording.Advice is contract.errors.Advice
    assert FinetuneOptions is contract.FinetuneOptions and PretrainOptions is contract.PretrainOptions


def test_no_ast_parsing_left_in_defaults():
    for path in ("engine/defaults.py", "engine/contract/defaults.py"):
        assert "import ast" not in open(os.path.join(ROOT, path), encoding="utf-8").read()


def test_training_defaults_come_from_the_option_dataclasses():
    from spectralx.contract import defaults as D
    from spectralx.contract.options import FinetuneOptions, PretrainOptions

    assert D.training_default("finetune", "steps") == FinetuneOptions().steps == D.FINETUNE_STEPS
    assert D.training_default("finetune", "batch_size") == 4
    assert D.training_default("finetune", "fuse") == "forest"
    assert D.training_default("finetune", "val_fraction") == 0.2
    assert D.training_default("finetune", "seed") == 0
    assert D.training_default("finetune", "lr") is None  # the method's own
    assert D.training_default("finetune", "no_such_option") is None
    assert D.training_default("pretrain", "steps") == PretrainOptions().steps == 500
    assert D.training_default("pretrain", "batch_size") == 4
    assert D.training_default("pretrain", "mask_ratio") == 0.75
    assert D.training_default("pretrain", "lr") == 1e-3
    assert FinetuneOptions().learning_rate == 1e-3
    assert FinetuneOptions(variant="paper").learning_rate == 1e-4


def test_option_dataclasses_check_their_values():
    from spectralx.contract import FinetuneOptions, PretrainOptions, SegmentOptions, SpectralXError

    with pytest.raises(SpectralXError, match="mask ratio"):
        PretrainOptions.build(mask_ratio=1.0)
    with pytest.raises(SpectralXError, match="at least 1"):
        PretrainOptions.build(steps=0)
    with pytest.raises(TypeError, match="unknown pretraining option"):
        PretrainOptions.build(stepz=3)
    with pytest.raises(SpectralXError, match="precision"):
        SegmentOptions.build(precision="fp8")
    from spectralx.contract import defaults

    assert SegmentOptions().to_kwargs()["overlap"] == defaults.OVERLAP == 0.5
    assert FinetuneOptions.build(FinetuneOptions(steps=7), lr=None).steps == 7


def test_error_wording_per_audience():
    from spectralx.contract import errors as E

    exc = E.BandMappingError("no band matches; name the sensor (--sensor) or give --band-map")
    assert E.for_cli(exc) == "spectralx: error: no band matches; name the sensor (--sensor) or give --band-map"
    qgis = E.for_qgis(exc)
    assert "--" not in qgis and "Sensor picker" in qgis
    assert "SENSOR" in E.for_qgis(exc, "processing")
    assert E.for_cli(E.Cancelled("cancelled")) == "spectralx: cancelled"
    assert E.for_cli(E.Terminated(15, "SIGTERM")).startswith("spectralx: stopped by SIGTERM")
    assert E.for_cli(KeyboardInterrupt()) == "spectralx: interrupted; unfinished outputs were removed"
    assert "out of memory" in E.for_cli(MemoryError())
    assert E.for_cli(E.SpectralXError("a\n b\x1b")) == "spectralx: error: a b\\x1b"


def _write_safetensors(path, header):
    raw = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(len(raw).to_bytes(8, "little") + raw)


def test_header_reader_and_card(tmp_path):
    from spectralx.contract import CheckpointError, ModelCard, read_card, read_header
    from spectralx.contract.card import CARD_KEY, BackboneRef, Band, ClassInfo

    card = ModelCard(
        architecture={"img_size": 32, "method": "spectralx"},
        bands=[Band("b1", 500.0)],
        classes=[ClassInfo(1, "water", "#0000ff")],
        backbone=BackboneRef(file="bb.safetensors", sha256="0" * 64, preset="vit_tiny_patch16"),
    )
    p = tmp_path / "m.safetensors"
    _write_safetensors(p, {"__metadata__": {CARD_KEY: card.to_json()}})
    assert read_header(str(p))["__metadata__"][CARD_KEY]
    assert read_card(str(p)).bands[0].wavelength_nm == 500.0
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 4)
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        read_header(str(bad))
    truncated = tmp_path / "cut.safetensors"
    _write_safetensors(truncated, {"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}})
    with pytest.raises(CheckpointError, match="truncated"):
        read_header(str(truncated))


def test_backbone_search_order_for_cards_and_card_dicts(tmp_path, monkeypatch):
    from spectralx.contract import ModelCard, backbone_candidates, user_model_dir
    from spectralx.contract.card import BackboneRef, Band, ClassInfo

    monkeypatch.setenv("SPECTRALX_MODELS", str(tmp_path / "models"))
    assert user_model_dir() == str(tmp_path / "models")
    card = ModelCard(
        architecture={"img_size": 32},
        bands=[Band("b1", 500.0)],
        classes=[ClassInfo(1, "a", "#000000")],
        backbone=BackboneRef(file="bb.safetensors", sha256="0" * 64, preset="p", path="/elsewhere/bb.safetensors"),
    )
    ckpt = str(tmp_path / "run" / "m.safetensors")
    want = [
        str(tmp_path / "run" / "bb.safetensors"),
        "/elsewhere/bb.safetensors",
        str(tmp_path / "models" / "bb.safetensors"),
    ]
    assert backbone_candidates(card, ckpt) == want
    assert backbone_candidates(json.loads(card.to_json()), ckpt) == want
    assert backbone_candidates(card, ckpt, backbone="/given.safetensors") == ["/given.safetensors"]
    assert backbone_candidates({"architecture": {"method": "forest"}, "backbone": {"file": ""}}, ckpt) == []


def test_release_registry_names_known_families():
    from spectralx.contract import FAMILIES, load_releases
    from spectralx.contract.registry import CATALOG_FILE

    releases = load_releases()
    assert CATALOG_FILE.endswith(os.path.join("contract", "releases.json"))
    assert releases and all(r.family in FAMILIES for r in releases)
    assert all(r.source_page.startswith("https://") and r.license and r.file for r in releases)


def test_identity_band_mapping_is_the_one_type():
    from spectralx.contract import BandMapping

    m = BandMapping.identity([2, 5], ["red", "nir"], raster_band_count=6)
    assert m.source_indexes == [2, 5] and m.weights.shape == (2, 2) and m.fill == [False, False]
    np.testing.assert_array_equal(m.apply(np.array([[1.0], [3.0]])), [[1.0], [3.0]])
    again = BandMapping.from_json(m.to_json())
    assert again.source_indexes == [2, 5] and again.strategy == "identity"


def test_release_json_is_package_data():
    text = open(os.path.join(ROOT, "pyproject.toml"), encoding="utf-8").read()
    assert '"spectralx.contract" = ["*.json"]' in text


def test_header_reader_names_damaged_offsets(tmp_path):
    from spectralx.contract import CheckpointError, read_header

    p = tmp_path / "odd.safetensors"
    _write_safetensors(p, {"w": {"dtype": "F32", "shape": [1], "data_offsets": "0-4"}})
    with pytest.raises(CheckpointError, match="damaged data offsets"):
        read_header(str(p))
