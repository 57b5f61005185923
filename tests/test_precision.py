"""--precision: the int8 backbone path (agreement, float original untouched, never saved as a model),
the option's validation, and auto choosing only a path that passed its check. No speed targets here:
those are in bench/cpu_backbone_bench.py."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin
from test_plugin_common import enmap_checkpoint, enmap_tile, plugin  # noqa: F401

from spectralx.config import ModelConfig
from spectralx.errors import CheckpointError, SpectralXError
from spectralx.inference import precision as P
from spectralx.inference.quantize import is_quantized, quantize_backbone
from spectralx.model import SpectralX

pytestmark = pytest.mark.usefixtures("one_thread")
WAVELENGTHS = (490.0, 560.0, 665.0, 842.0)


def tagged_raster(tmp_path) -> str:
    """A 4-band 96 x 80 int16 GeoTIFF whose bands carry WAVELENGTHS (noise around 1000)."""
    rng = np.random.default_rng(0)
    data = (1000 + 300 * rng.standard_normal((4, 80, 96))).astype(np.int16)
    src = str(tmp_path / "in.tif")
    with rasterio.open(
        src,
        "w",
        driver="GTiff",
        width=96,
        height=80,
        count=4,
        dtype="int16",
        crs="EPSG:32633",
        transform=from_origin(500000, 5800000, 30, 30),
    ) as ds:
        ds.write(data)
        for i, w in enumerate(WAVELENGTHS, 1):
            ds.update_tags(i, wavelength=str(w), wavelength_units="Nanometers")
    return src


def tiny(method="spectralx", seed=0):
    """ViT-Tiny preset, random weights, 64 px tiles (LoRA branches made non-zero so they count)."""
    torch.manual_seed(seed)
    cfg = ModelConfig.from_preset("vit_tiny_patch16", in_bands=4, num_classes=3, img_size=64, method=method)
    net = SpectralX(cfg, torch.tensor(WAVELENGTHS)).eval()
    for name, p in net.lora.named_parameters():
        if name.endswith("up.weight"):
            torch.nn.init.normal_(p, std=0.05)
    return net


@pytest.mark.parametrize("method", ["spectralx", "lora"])
def test_int8_agrees_with_fp32_on_a_tiny_model(method):
    net = tiny(method)
    q = quantize_backbone(net)
    x = torch.randn(4, 4, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        agree, agree_all, dp = P.compare(net(x), q(x))
    assert agree >= 0.99 and agree_all >= 0.97 and dp <= 0.01
    # only the backbone's linears are int8; adapters, HyperT, AoMoA, LoRA and the head stay float
    kinds = {type(m).__name__ for m in q.backbone.modules()}
    assert "Linear" in kinds and all(
        not isinstance(m, torch.nn.Linear) or type(m).__module__.startswith("torch.ao") for m in q.backbone.modules()
    )
    for part in (q.hypert, q.aomoa, q.head, q.lora):
        assert not is_quantized(part)
    if method == "lora":  # the LoRA hooks moved to the int8 linears with them
        assert sum(len(m._forward_hooks) for m in q.backbone.modules()) == 16


def test_quantized_copy_leaves_the_float_model_untouched():
    net = tiny()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    q = quantize_backbone(net)
    assert is_quantized(q) and not is_quantized(net)
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert net.hypert.stem.inp[0].weight.is_contiguous()  # the copy's channels-last stays there
    assert q.hypert.scale is net.hypert.scale  # float tensors are shared, not copied


def test_a_quantized_network_is_never_saved_as_a_model(tmp_path):
    from spectralx.checkpoint import BackboneRef, Band, ClassInfo, ModelCard, save_checkpoint

    net = tiny()
    card = ModelCard(
        architecture=net.cfg.to_dict(),
        bands=[Band(f"B{i}", w, 20.0) for i, w in enumerate(WAVELENGTHS)],
        classes=[ClassInfo(i + 1, f"c{i}", "#000000") for i in range(3)],
        backbone=BackboneRef("b", "0" * 64, "vit_tiny_patch16"),
    )
    with pytest.raises(CheckpointError, match="int8"):
        save_checkpoint(quantize_backbone(net), card, str(tmp_path / "q.safetensors"))
    save_checkpoint(net, card, str(tmp_path / "float.safetensors"))  # the float model saves as before


def test_training_and_validation_stay_float():
    """Fine-tuning and its validation use devices.autocast(device) with the default precision: on the
    CPU that is plain fp32 (the card's numbers), never the int8 path, which only segment() takes."""
    from spectralx import devices

    assert devices.autocast_dtype("cpu") is None and devices.autocast_dtype("cpu", "int8") is None
    import inspect

    from spectralx.training import loop

    assert "int8" not in inspect.getsource(loop)


@pytest.mark.parametrize("bad", ["int4", "FP32", "", "q8"])
def test_unknown_precision_is_one_line(bad):
    from spectralx.devices import autocast_dtype

    with pytest.raises(SpectralXError) as err:
        autocast_dtype("cpu", bad)
    assert "\n" not in str(err.value) and "int8" in str(err.value)


def test_int8_off_the_cpu_is_refused_in_one_line():
    from spectralx.devices import autocast_dtype

    with pytest.raises(SpectralXError) as err:
        autocast_dtype("cuda", "int8")
    assert "\n" not in str(err.value) and "CPU only" in str(err.value)


def test_cli_refuses_an_unknown_precision(capsys):
    from spectralx.cli import main

    with pytest.raises(SystemExit) as err:
        main(["segment", "in.tif", "-c", "m.safetensors", "-o", "out.tif", "--precision", "int4"])
    assert err.value.code == 2 and "int8" in capsys.readouterr().err


def fresh_check(monkeypatch, **constants):
    for k, v in constants.items():
        monkeypatch.setattr(P, k, v)
    monkeypatch.setattr(P, "MIN_EMBED_DIM", 0)  # the tiny preset takes part in auto here
    monkeypatch.setattr(P, "_onnx_available", lambda: False)  # torch's int8 alone (ONNX: test_onnx_path.py)


@pytest.mark.slow
def test_auto_takes_int8_only_when_its_check_passed(monkeypatch):
    fresh_check(monkeypatch, MIN_SPEEDUP=0.0)  # any speed: the agreement decides
    net = tiny()
    run, path = P.select(net, "cpu", "auto")
    check = P.check_int8(net)  # cached: the check select() ran
    assert check.passed and path.name == "int8" and is_quantized(run) and path.autocast == "fp32"
    assert "measured in float" in path.note
    assert P.select(net, "cpu", "auto")[0] is run  # once per network per process

    fresh_check(monkeypatch, MIN_SPEEDUP=0.0, AGREEMENT=1.01)  # a check that cannot pass
    net = tiny(seed=1)
    run, path = P.select(net, "cpu", "auto")
    assert not P.check_int8(net).passed and path.name == "fp32" and run is net and not is_quantized(run)

    fresh_check(monkeypatch, MIN_SPEEDUP=1e9, AGREEMENT=0.99)  # agreement fine, never fast enough
    net = tiny(seed=2)
    run, path = P.select(net, "cpu", "auto")
    assert P.check_int8(net).passed and path.name == "fp32" and run is net


def test_auto_skips_the_check_for_small_backbones(monkeypatch):
    monkeypatch.setattr(P, "check_int8", lambda net: pytest.fail("ViT-Tiny must not be checked"))
    net = tiny()
    run, path = P.select(net, "cpu", "auto")
    assert run is net and path.name == "fp32" and path.note == ""
    assert P.select(net, "cpu", "fp32")[1].name == "fp32"
    assert P.select(net, "cpu", "bf16")[1] == P.RunPath("bf16", "bf16")


@pytest.mark.slow
def test_segment_int8_says_so_in_its_outputs(make_checkpoint, tmp_path):
    from spectralx.inference import segment

    ckpt = make_checkpoint(wavelengths=WAVELENGTHS)
    src = tagged_raster(tmp_path)
    from spectralx.progress import Progress

    logs = []
    runs = {}
    for name in ("fp32", "int8"):
        runs[name] = segment(
            src,
            ckpt,
            str(tmp_path / f"{name}.tif"),
            device="cpu",
            precision=name,
            progress=Progress(on_log=logs.append),
        )
        with rasterio.open(runs[name].output) as ds:
            runs[name] = (runs[name], ds.read(1), ds.tags())
    assert runs["int8"][0].precision == "int8" and runs["int8"][2]["SPECTRALX_PRECISION"] == "int8"
    assert runs["fp32"][0].precision == "fp32"
    assert any("int8" in t and "measured in float" in t for t in logs)
    assert (runs["int8"][1] == runs["fp32"][1]).mean() >= 0.95


@pytest.mark.slow
def test_processing_segment_takes_a_precision(plugin, enmap_tile, enmap_checkpoint, tmp_path):
    import processing
    from qgis.core import QgsApplication

    from spectralx.devices import PRECISIONS
    from spectralx_qgis.processing.segment import PRECISIONS as OFFERED

    assert sorted(p for p, _ in OFFERED) == sorted(PRECISIONS)
    seg = QgsApplication.processingRegistry().algorithmById("spectralx:segment")
    assert seg.parameterDefinition("PRECISION").type() == "enum"
    out = str(tmp_path / "classes.tif")
    processing.run(
        "spectralx:segment",
        {
            "INPUT": enmap_tile,
            "CHECKPOINT": enmap_checkpoint,
            "DEVICE": 1,
            "PRECISION": [p for p, _ in OFFERED].index("int8"),
            "OUTPUT": out,
        },
    )
    with rasterio.open(out) as ds:
        assert ds.tags()["SPECTRALX_PRECISION"] == "int8"


def test_cpu_fp32_runs_channels_last_from_128_px_tiles_with_the_same_values():
    """Issue 22: on the CPU, prepare_model gives 224-px networks channels-last convolutions (oneDNN's
    layout, 1.2x on ViT-B/16) and leaves the demo's 64-px ones NCHW (channels-last was slower there)."""
    from spectralx.inference.job import CPU_CHANNELS_LAST_MIN_TILE, prepare_model

    def conv_layout(net):
        w = next(m.weight for m in net.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3))
        return "cl" if w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous() else "nchw"

    small = tiny()
    assert small.cfg.img_size < CPU_CHANNELS_LAST_MIN_TILE
    assert conv_layout(prepare_model(small, "cpu")) == "nchw"
    torch.manual_seed(0)
    cfg = ModelConfig.from_preset("vit_tiny_patch16", in_bands=4, num_classes=3, img_size=128)
    net = SpectralX(cfg, torch.tensor(WAVELENGTHS)).eval()
    x = torch.randn(2, 4, 128, 128)
    with torch.inference_mode():
        want = net(x)
        fast = prepare_model(net, "cpu")
        assert conv_layout(fast) == "cl"
        torch.testing.assert_close(fast(x), want, rtol=0, atol=1e-4)
