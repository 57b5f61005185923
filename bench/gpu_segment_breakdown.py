"""Where `segment()` spends its time on a GPU (a diagnostic beside bench/gpu_bench.py).

The same raster, model and settings as gpu_bench, and segment() timed in variants that each remove
one stage, so the stage that bounds the pipeline shows as the one whose removal helps:

  full          classes + confidence, as gpu_bench times it
  no-confidence the class raster only (one DEFLATE writer instead of two)
  cached-reads  strips served from memory (filled by a warm-up run): no GDAL reads, no normalization
  no-writes     the GeoTIFF blocks are not written (outputs discarded afterwards)
  bare          the batched forward pass over the same tiles (the ceiling)

    python bench/gpu_segment_breakdown.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile

import gpu_bench as gb  # bench/ is the script's folder
import torch


def segment_parity():
    """segment() end to end on the GPU against the CPU, full precision: same classes, same confidence."""
    import numpy as np
    import rasterio

    from spectralx.inference import segment

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    with tempfile.TemporaryDirectory(prefix="spectralx-gpu-parity-") as tmp:
        raster = gb.write_raster(os.path.join(tmp, "in.tif"), 512)
        model, card = gb.build_model("vit_tiny_patch16", gb.TILE)
        out = {}
        for dev in ("cpu", "cuda"):
            segment(
                raster,
                None,
                os.path.join(tmp, f"{dev}.tif"),
                band_map=gb.identity_mapping(),
                model=(model.to(dev), card),
                overlap=gb.OVERLAP,
                batch_size=8,
                device=dev,
                precision="fp32",
                overwrite=True,
                confidence=os.path.join(tmp, f"{dev}_conf.tif"),
            )
            with (
                rasterio.open(os.path.join(tmp, f"{dev}.tif")) as a,
                rasterio.open(os.path.join(tmp, f"{dev}_conf.tif")) as b,
            ):
                out[dev] = (a.read(1), b.read(1))
    same = float(np.mean(out["cpu"][0] == out["cuda"][0]))
    return same, float(np.abs(out["cpu"][1] - out["cuda"][1]).max())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("gpu_segment_breakdown: no CUDA device here (nothing was measured)")
        return 0
    import spectralx.inference.api as api
    from spectralx.inference.api import prepare_model
    from spectralx.inference.source import RasterStrips
    from spectralx.inference.writer import BlockWindowWriter

    try:
        parity = segment_parity()
        print(
            f"segment() CUDA vs CPU, fp32, ViT-Tiny, 512^2 px: {parity[0]:.4%} of class pixels equal, "
            f"max |confidence diff| {parity[1]:.2e}"
        )
    except Exception as exc:  # noqa: BLE001  report and go on to the timings
        print(f"segment() CUDA vs CPU parity FAILED: {type(exc).__name__}: {exc}")
    preset, size = ("vit_tiny_patch16", 1024) if args.quick else (gb.PRESET, gb.SIZE)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    results = {}
    with tempfile.TemporaryDirectory(prefix="spectralx-gpu-breakdown-") as tmp:
        raster = gb.write_raster(os.path.join(tmp, "in.tif"), size)
        model, card = gb.build_model(preset, gb.TILE)
        model = prepare_model(model, "cuda")

        def best(fn):
            fn()
            return min(fn() for _ in range(args.repeats))

        def bare():
            tiles = gb.plan_tiles_of(raster, card, gb.TILE)
            on_gpu = tiles.to("cuda").contiguous(memory_format=torch.channels_last)
            return len(tiles), best(lambda: gb.time_bare(model, on_gpu, gb.BATCH, "bf16"))

        n, results["bare"] = bare()
        torch.cuda.empty_cache()
        results["full"] = best(lambda: gb.time_segment(model, card, raster, tmp, gb.BATCH, "bf16"))

        results["no-confidence"] = best(
            lambda: gb.time_segment(model, card, raster, tmp, gb.BATCH, "bf16", confidence=False)
        )

        cache = {}

        class CachedStrips(RasterStrips):
            def read(self, r, c0=0, c1=None):
                key = (r, c0, c1)
                if key not in cache:
                    cache[key] = super().read(r, c0, c1)
                return cache[key]

        api.RasterStrips = CachedStrips
        try:
            results["cached-reads"] = best(lambda: gb.time_segment(model, card, raster, tmp, gb.BATCH, "bf16"))
        finally:
            api.RasterStrips = RasterStrips
        cache.clear()

        real_flush = BlockWindowWriter.flush
        BlockWindowWriter.flush = lambda self: setattr(self, "filled", 0) or setattr(
            self, "top", self.top + len(self.buf)
        )
        try:
            results["no-writes"] = best(lambda: gb.time_segment(model, card, raster, tmp, gb.BATCH, "bf16"))
        finally:
            BlockWindowWriter.flush = real_flush
    print(
        f"segment() breakdown on {torch.cuda.get_device_name(0)}: {preset}, {size}^2 px x {gb.BANDS} bands, "
        f"{n} tiles, batch {gb.BATCH}, bf16, {os.cpu_count()} CPU cores (best of {args.repeats})"
    )
    for k, v in results.items():
        print(f"  {k:14s} {v:6.2f} s  {n / v:7.1f} tiles/s  {results['bare'] / v:5.2f} x bare speed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
