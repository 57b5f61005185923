"""GPU bench (issue 10 §3): `segment()` tiles/s vs the bare batched forward pass on a CUDA GPU.

One command, a few minutes on an H100/H200-class GPU:

    .venv/bin/python bench/gpu_bench.py            # or --quick: small raster, tiny preset, any GPU

SpectralX with the ViT-L/16 preset (random weights: speed does not depend on them), 224 px tiles,
overlap 0.25, batch 32, bf16 autocast, on a synthetic 4096 x 4096 px 32-band int16 GeoTIFF (written
once to a temporary folder; not timed). It measures, on the same tiles:

  bare      the batched forward pass (softmax included) over every tile of segment()'s plan, the tiles
            already normalized in GPU memory: the ceiling;
  segment   `segment()` end to end: windowed reads, band mapping and normalization on the CPU, pinned
            host buffers and non-blocking copies, forward, blending, class/confidence, GeoTIFF writes.

and reports tiles/s for both, segment/bare (target >= 0.85), and peak GPU memory of each (weights and
activations; the bare run's resident input tiles are not counted). Each figure is the best of
--repeats runs after a warm-up. Writes the "gpu" section of bench/results.json
(not with --quick). Exits with a one-line message when no CUDA device is present: CI never has one,
and nothing in `make test` needs it.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import sys
import tempfile
import time

import numpy as np
import rasterio
import results_file  # bench/ is the script's folder, first on sys.path
import torch
from rasterio.transform import from_origin

PRESET, TILE, BANDS, CLASSES, OVERLAP, BATCH, SIZE = "vit_large_patch16", 224, 32, 8, 0.25, 32, 4096
WAVELENGTHS = tuple(float(w) for w in np.linspace(420.0, 2400.0, BANDS))


def build_model(preset: str, tile: int):
    from spectralx.checkpoint import BackboneRef, Band, ClassInfo, ModelCard, Normalization
    from spectralx.config import ModelConfig
    from spectralx.model import SpectralX

    torch.manual_seed(0)
    cfg = ModelConfig.from_preset(preset, in_bands=BANDS, num_classes=CLASSES, img_size=tile)
    model = SpectralX(cfg, torch.tensor(WAVELENGTHS)).eval()
    card = ModelCard(
        architecture=cfg.to_dict(),
        bands=[Band(f"B{i + 1}", w, 10.0) for i, w in enumerate(WAVELENGTHS)],
        classes=[
            ClassInfo(i + 1, f"class {i + 1}", "#%02x%02x%02x" % (30 * i, 200 - 20 * i, 90)) for i in range(CLASSES)
        ],
        backbone=BackboneRef("bench", "0" * 64, preset),
        normalization=Normalization("zscore", [1200.0] * BANDS, [600.0] * BANDS, 6.0),
    )
    return model, card


def identity_mapping():
    from spectralx.bands import BandMapping

    return BandMapping(
        source_indexes=list(range(1, BANDS + 1)),
        weights=np.eye(BANDS, dtype=np.float32),
        fill=[False] * BANDS,
        rows=[{} for _ in range(BANDS)],
    )


def write_raster(path: str, size: int) -> str:
    """Synthetic int16 reflectance-like raster, tiled 256 px, uncompressed (so reading is not the test)."""
    rng = np.random.default_rng(0)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=size,
        height=size,
        count=BANDS,
        dtype="int16",
        crs="EPSG:32633",
        transform=from_origin(500000, 5800000, 10, 10),
        tiled=True,
        blockxsize=256,
        blockysize=256,
        interleave="pixel",
    ) as ds:
        for r0 in range(0, size, 256):
            h = min(256, size - r0)
            yy, xx = np.mgrid[r0 : r0 + h, 0:size].astype(np.float32)
            base = np.sin(xx / 37.0)[None] * np.cos(yy / 53.0)[None] * np.linspace(0.5, 1.5, BANDS)[:, None, None]
            block = 1200 + 500 * base + 60 * rng.standard_normal((BANDS, h, size), dtype=np.float32)
            ds.write(block.astype(np.int16), window=rasterio.windows.Window(0, r0, size, h))
    return path


def plan_tiles_of(path: str, card, tile: int) -> torch.Tensor:
    """Every tile of segment()'s plan, normalized (host memory, float32)."""
    from spectralx.inference import plan_tiles
    from spectralx.inference.prepare import Preparer

    prep = Preparer(np.eye(BANDS, dtype=np.float32), None, card.normalization)
    with rasterio.open(path) as ds:
        plan = plan_tiles(ds.height, ds.width, tile, OVERLAP)
        out = torch.empty((plan.n_tiles, BANDS, tile, tile), dtype=torch.float32)
        i = 0
        for y in plan.ys:
            strip, _ = prep(ds.read(window=rasterio.windows.Window(0, y, ds.width, tile), out_dtype=np.float32), None)
            for x in plan.xs:
                out[i] = torch.from_numpy(strip[:, :, x : x + tile])
                i += 1
    return out


def time_bare(model, tiles_gpu: torch.Tensor, batch: int, precision: str) -> float:
    from spectralx.devices import autocast

    torch.cuda.synchronize()
    t0 = time.perf_counter()
    with torch.inference_mode(), autocast("cuda", precision):
        for i in range(0, len(tiles_gpu), batch):
            torch.softmax(model(tiles_gpu[i : i + batch]).float(), dim=1)
    torch.cuda.synchronize()
    return time.perf_counter() - t0


def time_segment(model, card, raster: str, out_dir: str, batch: int, precision: str, confidence: bool = True) -> float:
    from spectralx.inference import segment

    torch.cuda.synchronize()
    t0 = time.perf_counter()
    segment(
        raster,
        None,
        os.path.join(out_dir, "classes.tif"),
        band_map=identity_mapping(),
        model=(model, card),
        overlap=OVERLAP,
        batch_size=batch,
        device="cuda",
        precision=precision,
        overwrite=True,
        confidence=os.path.join(out_dir, "confidence.tif") if confidence else None,
    )
    torch.cuda.synchronize()
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="1024 px raster, ViT-Tiny: checks the script runs")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--precision", default="bf16", choices=("bf16", "fp16", "fp32"))
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("gpu_bench: no CUDA device here; run it on a machine with an NVIDIA GPU (nothing was measured)")
        return 0
    preset, size = ("vit_tiny_patch16", 1024) if args.quick else (PRESET, SIZE)
    from spectralx.inference.api import prepare_model

    t_start = time.perf_counter()
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    with tempfile.TemporaryDirectory(prefix="spectralx-gpu-bench-") as tmp:
        raster = write_raster(os.path.join(tmp, "in.tif"), size)
        model, card = build_model(preset, TILE)
        model = prepare_model(model, "cuda")  # as segment() runs it: channels-last on CUDA
        tiles = plan_tiles_of(raster, card, TILE)
        tiles_gpu = tiles.to("cuda").contiguous(memory_format=torch.channels_last)
        n = len(tiles)
        time_bare(model, tiles_gpu[: 2 * BATCH], BATCH, args.precision)  # warm-up
        time_segment(model, card, raster, tmp, BATCH, args.precision)
        torch.cuda.reset_peak_memory_stats()
        bare = [time_bare(model, tiles_gpu, BATCH, args.precision) for _ in range(args.repeats)]
        mem_bare = torch.cuda.max_memory_allocated() - tiles_gpu.numel() * tiles_gpu.element_size()
        del tiles_gpu  # segment() reads the raster itself
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        seg = [time_segment(model, card, raster, tmp, BATCH, args.precision) for _ in range(args.repeats)]
        mem_seg = torch.cuda.max_memory_allocated()
    gib = 2**30
    section = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": platform.python_version(),
        "cpu_cores": os.cpu_count(),
        "setup": {
            "preset": preset,
            "tile": TILE,
            "bands": BANDS,
            "classes": CLASSES,
            "overlap": OVERLAP,
            "batch": BATCH,
            "precision": args.precision,
            "raster_px": [size, size],
            "tiles": n,
            "repeats": args.repeats,
            "model": "random weights (speed does not depend on them)",
        },
        "bare_tiles_per_s": round(n / min(bare), 1),
        "segment_tiles_per_s": round(n / min(seg), 1),
        "segment_to_bare": round(min(bare) / min(seg), 3),
        "target": "segment >= 0.85 x bare",
        "peak_gpu_memory_gib": {"bare": round(mem_bare / gib, 2), "segment": round(mem_seg / gib, 2)},
        "all_runs_s": {"bare": [round(t, 3) for t in bare], "segment": [round(t, 3) for t in seg]},
        "bench_seconds": round(time.perf_counter() - t_start, 1),
    }
    if not args.quick:
        results_file.update_results("gpu", section)
    print(
        f"SpectralX GPU bench on {section['gpu']} ({preset}, {TILE} px tiles, batch {BATCH}, {args.precision}, "
        f"{size}^2 px x {BANDS} bands, {n} tiles)"
    )
    print(
        f"  bare batched forward   {section['bare_tiles_per_s']:>8} tiles/s   peak {section['peak_gpu_memory_gib']['bare']} GiB"
    )
    print(
        f"  segment()              {section['segment_tiles_per_s']:>8} tiles/s   peak {section['peak_gpu_memory_gib']['segment']} GiB"
    )
    print(f"  segment / bare         {section['segment_to_bare']:>8}   target >= 0.85   ({section['bench_seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
