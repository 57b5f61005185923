"""Issue 2: the SpectralX network's shapes, frozen backbone and parameter budget."""

import pytest
import torch

from spectralx.config import ModelConfig
from spectralx.model import SpectralX
from spectralx.summary import format_summary, parameter_summary


@pytest.mark.parametrize("bands", [3, 13, 224])
def test_tiny_forward_shape(bands):
    torch.manual_seed(0)
    cfg = ModelConfig.from_preset("vit_tiny_patch16", in_bands=bands, num_classes=5)
    model = SpectralX(cfg).eval()
    with torch.no_grad():
        out = model(torch.randn(2, bands, 224, 224))
    assert out.shape == (2, 5, 224, 224)
    assert torch.isfinite(out).all()


def test_backward_keeps_backbone_and_changes_adapters():
    torch.manual_seed(0)
    cfg = ModelConfig.from_preset("vit_tiny_patch16", in_bands=13, num_classes=4, img_size=64)
    model = SpectralX(cfg)
    model.set_stage("finetune")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.AdamW(model.trainable_parameters(), lr=1e-2, betas=(0.9, 0.95), weight_decay=1e-4)
    x = torch.randn(2, 13, 64, 64)
    y = torch.randint(0, 4, (2, 64, 64))
    for _ in range(2):  # two steps: zero-initialised up-projections move first, then the rest
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    after = model.state_dict()
    backbone_keys = [k for k in after if k.startswith("backbone.")]
    assert backbone_keys
    for k in backbone_keys:
        assert torch.equal(before[k], after[k]), f"backbone tensor {k} changed"
    assert not any(p.requires_grad for p in model.backbone.parameters())
    for part in ("aomoa.", "are_adapter.", "head.", "hypert.lowrank."):
        changed = [k for k in after if k.startswith(part) and not torch.equal(before[k], after[k])]
        assert changed, f"no {part} tensor was updated"
    # HyperT's stem and attention are stage-1 weights: frozen in stage 2
    assert torch.equal(before["hypert.stem.inp.0.weight"], after["hypert.stem.inp.0.weight"])


def test_backbone_frozen_in_every_stage():
    cfg = ModelConfig.from_preset("vit_tiny_patch16", in_bands=4, num_classes=2, img_size=64)
    model = SpectralX(cfg)
    for stage in ("pretrain", "finetune", "frozen"):
        model.set_stage(stage)
        assert not any(p.requires_grad for p in model.backbone.parameters()), stage
    model.set_stage("pretrain")
    assert all(p.requires_grad for p in model.hypert.parameters())
    assert not any(p.requires_grad for p in model.head.parameters())


@pytest.mark.slow
def test_vit_large_parameter_budget_matches_paper():
    """Paper (Scale-MAE ViT-L): HyperT + AoMoA + Are-adapter = 11.8 M trainable, 3.9 % of 303 M."""
    cfg = ModelConfig.from_preset("vit_large_patch16", in_bands=32, num_classes=6)
    s = parameter_summary(cfg)
    print("\n" + format_summary(s))
    assert 303e6 <= s["backbone_params"] <= 304.5e6
    assert abs(s["adapter_trainable"] - 11.8e6) <= 0.15 * 11.8e6
    assert s["adapter_share_of_backbone"] <= 0.045
    assert s["parts"]["aomoa"]["trainable"] > 0 and s["parts"]["are_adapter"]["trainable"] > 0


def test_adapter_blocks_are_last_of_each_quarter():
    assert ModelConfig.from_preset("vit_large_patch16").adapter_blocks == [5, 11, 17, 23]
    assert ModelConfig.from_preset("vit_tiny_patch16").adapter_blocks == [2, 5, 8, 11]


def test_wavelengths_change_the_output():
    """Wavelengths enter through the spectral position embedding: other bands, other logits."""
    torch.manual_seed(0)
    cfg = ModelConfig.from_preset("vit_tiny_patch16", in_bands=4, num_classes=3, img_size=64)
    a = SpectralX(cfg, torch.tensor([490.0, 560.0, 665.0, 842.0])).eval()
    b = SpectralX(cfg, torch.tensor([1600.0, 1700.0, 2100.0, 2200.0])).eval()
    b.load_state_dict({k: v for k, v in a.state_dict().items() if k != "hypert.wavelengths_nm"}, strict=False)
    x = torch.randn(1, 4, 64, 64)
    with torch.no_grad():
        assert not torch.allclose(a(x), b(x))


def test_spectral_skip_starts_as_plain_head_and_trains():
    """The full-resolution skip is zero-initialised (a fresh head equals the paper's) and trainable."""
    torch.manual_seed(0)
    plain_cfg = ModelConfig.from_preset("vit_tiny_patch16", in_bands=6, num_classes=3, img_size=64)
    skip_cfg = ModelConfig.from_preset("vit_tiny_patch16", in_bands=6, num_classes=3, img_size=64, spectral_skip=8)
    plain, skip = SpectralX(plain_cfg).eval(), SpectralX(skip_cfg).eval()
    skip.load_state_dict(plain.state_dict(), strict=False)
    x = torch.randn(2, 6, 64, 64)
    with torch.no_grad():
        assert torch.equal(plain(x), skip(x))
    skip.set_stage("finetune")
    assert all(p.requires_grad for p in skip.head.skip.parameters())
    # per-pixel path: a change in one pixel's spectrum changes that pixel's correction and no other
    with torch.no_grad():
        skip.head.skip.mix[-1].weight.normal_()
        logits = torch.randn(2, 3, 64, 64)
        y0 = skip.head.skip(logits, x)
        x2 = x.clone()
        x2[0, :, 10, 10] += 5.0
        diff = (skip.head.skip(logits, x2) - y0).abs()[0].sum(0)
    assert diff[10, 10] > 0
    diff[10, 10] = 0
    assert torch.count_nonzero(diff) == 0


def test_regression_aomoa_gate_under_cuda_autocast(monkeypatch):
    """On CUDA, autocast runs softmax in float32 while the gate's logits are bf16; the gate scattered one
    into the other and every GPU forward failed ('scatter(): Expected self.dtype to be equal to
    src.dtype'), found on an H200 (bench/gpu_network_check.py). CPU autocast keeps softmax in bf16, so
    CUDA's rule is imposed here: softmax answers in float32."""
    import torch

    from spectralx.model.aomoa import NoisyTopKGate

    gate = NoisyTopKGate(16, 4, 2).eval()
    torch.nn.init.normal_(gate.w_gate.weight)
    real_softmax = torch.Tensor.softmax
    monkeypatch.setattr(torch.Tensor, "softmax", lambda self, *a, **k: real_softmax(self.float(), *a, **k))
    z = torch.randn(3, 5, 16).to(torch.bfloat16)
    gate = gate.to(torch.bfloat16)
    w = gate(z)
    assert w.dtype == torch.bfloat16 and w.shape == (3, 5, 4)
    assert torch.allclose(w.float().sum(-1), torch.ones(3, 5), atol=1e-2) and ((w > 0).sum(-1) == 2).all()
