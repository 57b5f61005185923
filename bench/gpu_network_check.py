"""GPU check of the SpectralX network itself (no raster I/O, so it runs where rasterio is absent):

1. parity: the same weights and tiles on the CPU and the GPU, fp32 (TF32 off): max |Δ| of the class
   probabilities, and the arg-max agreement under bf16 autocast (the engine's default on CUDA);
2. inference: tiles/s of the batched forward pass (softmax included) under bf16 autocast, and peak
   GPU memory;
3. fine-tuning: stage-2 steps/s (forward, backward, AdamW on the trainable adapters and LayerNorms)
   and peak memory, and one step's loss on the CPU and the GPU from the same start.

    python bench/gpu_network_check.py              # ViT-L/16, 224 px tiles, 32 bands (a few minutes)
    python bench/gpu_network_check.py --quick      # ViT-Tiny, 64 px: checks the script (any device)

Random weights (speed and parity do not depend on them). Prints a table and one JSON line; writes
the JSON to $OUT/gpu_network_check.json when OUT is set. Exits with a message where no CUDA device
is present, unless --device cpu (the quick self-check).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


def engine():
    """`spectralx` from an install, else the checkout's engine/ folder under that name."""
    try:
        import spectralx  # noqa: F401
    except ImportError:
        import importlib.util

        spec = importlib.util.spec_from_file_location(
            "spectralx",
            os.path.join(os.path.dirname(HERE), "engine", "__init__.py"),
            submodule_search_locations=[os.path.join(os.path.dirname(HERE), "engine")],
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules["spectralx"] = module
        spec.loader.exec_module(module)
    import spectralx.config
    import spectralx.devices
    import spectralx.model

    return spectralx


def build(sx, preset, bands, classes, tile, seed=0):
    torch.manual_seed(seed)
    cfg = sx.config.ModelConfig.from_preset(preset, in_bands=bands, num_classes=classes, img_size=tile)
    wl = torch.linspace(420.0, 2400.0, bands)
    return sx.model.SpectralX(cfg, wl)


def tiles(n, bands, tile, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, bands, tile, tile, generator=g)


def timed(fn, device, repeats):
    fn()  # warm-up (kernels, allocator)
    if device == "cuda":
        torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: this check needs a GPU (use --quick --device cpu to test the script)")
        return 0
    sx = engine()
    preset, tile, bands, classes, batch, train_batch = (
        ("vit_tiny_patch16", 64, 8, 4, 8, 4) if args.quick else ("vit_large_patch16", 224, 32, 8, 32, 8)
    )
    dev = args.device
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    result = {
        "preset": preset,
        "tile": tile,
        "bands": bands,
        "classes": classes,
        "device": dev,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if dev == "cuda":
        result["gpu"] = torch.cuda.get_device_name(0)

    # 1. parity, fp32 and bf16
    cpu_model = build(sx, preset, bands, classes, tile).eval()
    gpu_model = build(sx, preset, bands, classes, tile).to(dev).eval()
    x = tiles(2, bands, tile)
    with torch.inference_mode():
        p_cpu = torch.softmax(cpu_model(x), 1)
        p_gpu = torch.softmax(gpu_model(x.to(dev)).float(), 1).cpu()
        with sx.devices.autocast(dev, "bf16"):
            p_bf16 = torch.softmax(gpu_model(x.to(dev)).float(), 1).cpu()
    result["parity_fp32_max_abs_prob_diff"] = float((p_cpu - p_gpu).abs().max())
    result["parity_bf16_argmax_agreement"] = float((p_cpu.argmax(1) == p_bf16.argmax(1)).float().mean())
    result["parity_bf16_max_abs_prob_diff"] = float((p_cpu - p_bf16).abs().max())
    del cpu_model

    # 2. inference throughput (bf16 autocast, softmax included), peak memory
    torch.backends.cuda.matmul.allow_tf32 = True
    xb = tiles(batch, bands, tile).to(dev)

    def infer():
        with torch.inference_mode(), sx.devices.autocast(dev, "bf16"):
            torch.softmax(gpu_model(xb).float(), 1)

    if dev == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t = timed(infer, dev, args.repeats)
    result["infer_batch"] = batch
    result["infer_tiles_per_s"] = batch / t
    if dev == "cuda":
        result["infer_peak_gib"] = torch.cuda.max_memory_allocated() / 2**30

    # 3. stage-2 fine-tuning steps
    def train_setup(device):
        model = build(sx, preset, bands, classes, tile, seed=0).to(device)
        model.set_stage("finetune", backbone_norms=True)
        model.train()
        params = [p for p in model.parameters() if p.requires_grad]
        return model, torch.optim.AdamW(params, lr=1e-3), sum(p.numel() for p in params)

    xt = tiles(train_batch, bands, tile, seed=2)
    yt = torch.randint(0, classes, (train_batch, tile, tile), generator=torch.Generator().manual_seed(3))
    losses = {}
    for device in ("cpu", dev) if dev != "cpu" else ("cpu",):
        torch.manual_seed(7)  # the same noisy-gating draws on both devices
        model, opt, n_train = train_setup(device)
        with sx.devices.autocast(device, "fp32"):
            loss = torch.nn.functional.cross_entropy(model(xt.to(device)).float(), yt.to(device))
        losses[device] = float(loss.detach())
        del model, opt
    result["trainable_parameters"] = n_train
    result["first_step_loss"] = losses

    model, opt, _ = train_setup(dev)
    xg, yg = xt.to(dev), yt.to(dev)

    def step():
        opt.zero_grad(set_to_none=True)
        with sx.devices.autocast(dev, "bf16"):
            out = model(xg)
        torch.nn.functional.cross_entropy(out.float(), yg).backward()
        opt.step()

    if dev == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t = timed(step, dev, args.repeats)
    result["train_batch"] = train_batch
    result["train_steps_per_s"] = 1.0 / t
    if dev == "cuda":
        result["train_peak_gib"] = torch.cuda.max_memory_allocated() / 2**30

    for k, v in result.items():
        print(f"{k:34s} {v:.4g}" if isinstance(v, float) else f"{k:34s} {v}")
    line = json.dumps(result)
    print(line)
    if os.environ.get("OUT"):
        with open(os.path.join(os.environ["OUT"], "gpu_network_check.json"), "w") as f:
            f.write(line + "\n")
    ok = result["parity_fp32_max_abs_prob_diff"] < 1e-3 and result["parity_bf16_argmax_agreement"] > 0.9
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
