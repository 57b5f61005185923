"""--precision on ONNX Runtime (optional extra): the exported network agrees with torch fp32, its int8
backbone agrees within the check's bounds, the choice among paths follows the check, a forest is
pooled as in torch, and the runtime is named in the outputs. Skipped when onnxruntime is absent.
No speed targets here: bench/cpu_backbone_bench.py measures them."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from test_precision import WAVELENGTHS, tagged_raster, tiny  # noqa: E402

from spectralx.inference import onnx_runtime as O  # noqa: E402
from spectralx.inference import precision as P  # noqa: E402
from spectralx.inference.quantize import is_quantized  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def built():
    """A tiny network and its two ONNX Runtime copies for batches of 2 (one export per module)."""
    net = tiny()
    return net, O.build(net, 2)


@pytest.mark.slow
def test_onnx_paths_agree_with_torch_fp32(built):
    net, ort = built
    x = torch.randn(2, 4, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = net(x)
        fp32, int8 = ort["fp32"](x), ort["int8"](x)
        short = ort["fp32"](x[:1])  # a short last batch is padded, not refused
    assert fp32.shape == ref.shape and (fp32 - ref).abs().max().item() < 1e-4  # the same float network
    agree, agree_all, dp = P.compare(ref, int8)
    assert agree >= P.AGREEMENT and agree_all >= 0.97 and dp <= P.MAX_DELTA_P
    assert short.shape == ref[:1].shape and torch.allclose(short, fp32[:1], atol=1e-5)
    assert is_quantized(ort["int8"]) and not is_quantized(ort["fp32"]) and not is_quantized(net)


@pytest.mark.slow
def test_only_the_backbone_linears_are_int8(built):
    import onnx

    net, _ = built
    nodes = O.backbone_matmuls(onnx.load_model_from_string(_export(net)), net)
    linears = sum(isinstance(m, torch.nn.Linear) for m in net.backbone.modules())
    assert len(nodes) == linears == 4 * len(net.backbone.blocks)


def _export(net) -> bytes:
    import os
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        O.export(net, os.path.join(d, "n.onnx"), 1)
        with open(os.path.join(d, "n.onnx"), "rb") as f:
            return f.read()


def test_adaptive_pooling_shim_is_exact():
    x = torch.randn(2, 3, 14, 14)
    for size in (1, 2, 3, 6, (4, 7)):
        assert torch.allclose(
            O._adaptive_avg_pool2d(x, size), torch.nn.functional.adaptive_avg_pool2d(x, size), atol=1e-6
        )
    x = torch.randn(1, 2, 4, 4)  # the tiny preset's grid: pooled to more cells than it has
    assert torch.allclose(O._adaptive_avg_pool2d(x, 6), torch.nn.functional.adaptive_avg_pool2d(x, 6), atol=1e-6)


def test_a_forest_is_pooled_with_the_onnx_logits(built):
    from spectralx.model.fusion import pool

    net, ort = built
    x = torch.randn(2, 4, 64, 64, generator=torch.Generator().manual_seed(2))
    fake = object()
    calls = []

    def fake_forest(forest, t):
        calls.append(forest)
        return torch.log_softmax(t[:, :3], 1)

    import spectralx.model.forest as forest_mod

    m = ort["fp32"]
    m.forest, m.fusion_weight = fake, 0.5
    try:
        original = forest_mod.forest_log_proba
        forest_mod.forest_log_proba = fake_forest
        with torch.inference_mode():
            got = m(x)
            want = pool(net(x), fake_forest(fake, x), 0.5)
    finally:
        forest_mod.forest_log_proba = original
        m.forest, m.fusion_weight = None, 0.0
    assert calls and torch.allclose(got, want, atol=1e-4)


@pytest.mark.slow
def test_auto_and_int8_choose_among_the_paths(monkeypatch):
    monkeypatch.setattr(P, "MIN_EMBED_DIM", 0)
    monkeypatch.setattr(P, "MIN_SPEEDUP", 0.0)  # any speed: the fastest that agreed runs
    net = tiny(seed=3)
    run, path = P.select(net, "cpu", "auto", batch=2, tiles=P.ORT_MIN_TILES)
    assert path.name in ("fp32", "int8") and path.runtime in ("torch", "onnxruntime")
    assert "torch int8" in path.note and "ONNX Runtime fp32" in path.note and "ONNX Runtime int8" in path.note
    if path.name == "int8":
        assert "measured in float" in path.note and is_quantized(run)
    assert P.select(net, "cpu", "auto", batch=2, tiles=P.ORT_MIN_TILES)[0] is run  # once per network
    # int8 on request: an int8 implementation, whichever agreed and was faster
    run8, path8 = P.select(net, "cpu", "int8", batch=2, tiles=P.ORT_MIN_TILES)
    assert path8.name == "int8" and is_quantized(run8)

    # a small job never pays for an export: torch's int8, as without onnxruntime
    monkeypatch.setattr(O, "build", lambda *a, **k: pytest.fail("no export for a small job"))
    small = tiny(seed=4)
    run, path = P.select(small, "cpu", "int8", batch=2, tiles=P.ORT_MIN_TILES - 1)
    assert path.runtime == "torch" and path.name == "int8"

    # nothing agrees: auto stays torch fp32, int8 on request falls back to torch's int8
    monkeypatch.setattr(P, "AGREEMENT", 1.01)
    monkeypatch.setattr(
        O, "build", lambda net, batch, kinds=("fp32", "int8"), threads=None: {k: net for k in kinds}
    )  # stand-ins: the check itself is what is tested
    other = tiny(seed=5)
    run, path = P.select(other, "cpu", "auto", batch=2, tiles=None)
    assert run is other and path == P.RunPath("fp32", "fp32", path.note) and path.runtime == "torch"
    run, path = P.select(other, "cpu", "int8", batch=2, tiles=None)
    assert path.runtime == "torch" and path.name == "int8" and is_quantized(run)


def test_an_export_failure_falls_back_to_torch(monkeypatch):
    def broken(*a, **k):
        raise RuntimeError("exporter says no")

    monkeypatch.setattr(O, "build", broken)
    net = tiny(seed=6)
    run, path = P.select(net, "cpu", "int8", batch=2, tiles=None)
    assert path.runtime == "torch" and path.name == "int8" and is_quantized(run)
    assert "exporter says no" in P._CACHE[net]["onnx_error"]


@pytest.mark.slow
def test_segment_names_the_runtime_in_its_outputs(make_checkpoint, tmp_path, monkeypatch):
    import rasterio

    from spectralx.inference import segment
    from spectralx.progress import Progress

    monkeypatch.setattr(P, "ORT_MIN_TILES", 1)
    ckpt = make_checkpoint(wavelengths=WAVELENGTHS)
    src = tagged_raster(tmp_path)
    logs = []
    res = segment(
        src,
        ckpt,
        str(tmp_path / "int8.tif"),
        device="cpu",
        precision="int8",
        batch_size=2,
        progress=Progress(on_log=logs.append),
    )
    with rasterio.open(res.output) as ds:
        tags = ds.tags()
    assert res.precision == tags["SPECTRALX_PRECISION"] == "int8"
    assert res.runtime == tags.get("SPECTRALX_RUNTIME", "torch")
    assert any("measured in float" in t for t in logs)
