"""GPU end to end (issue 22 item 3), prepared for ONE short call on a lent GPU; not yet run.

What bounds `segment()` at 0.53 of the bare forward on the GPU (ViT-L/16, H200)? The same raster,
model and batch as bench/gpu_bench.py (4096^2 px x 32 bands, 224 px tiles, bf16), each variant the
best of --repeats runs after one warm-up:

  bare              the batched forward over every tile already on the GPU: the ceiling
  segment r=N       segment() with N reader threads (N = 1, 2, 4), normalization on the CPU as now
  segment r=N, raw  the same with the card's normalization set to "none": the reader threads only
                    read and cast. This bounds what moving normalization onto the GPU can gain (the
                    subtract/divide would cost the GPU microseconds); the classes differ, the speed is
                    what is measured

and prints segment/bare for each (target >= 0.85). It changes nothing in the engine: if "raw"
closes the gap, normalization on the GPU is the fix; if more readers do, the default reader count
on CUDA is. Writes nothing to bench/results.json (the numbers go into the issue by hand).

    .venv/bin/python bench/gpu_end_to_end_check.py            # about 2-3 minutes on an H100/H200
    .venv/bin/python bench/gpu_end_to_end_check.py --quick    # ViT-Tiny, 1024 px: that it runs
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time

import gpu_bench as gb  # bench/ is the script's folder
import torch


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--readers", default="1,2,4")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("gpu_end_to_end_check: no CUDA device here; nothing was measured")
        return 0
    from spectralx.checkpoint import Normalization
    from spectralx.inference import segment
    from spectralx.inference.api import prepare_model

    preset, size = ("vit_tiny_patch16", 1024) if args.quick else (gb.PRESET, gb.SIZE)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True
    readers = [int(r) for r in args.readers.split(",")]
    with tempfile.TemporaryDirectory(prefix="spectralx-gpu-e2e-") as tmp:
        raster = gb.write_raster(os.path.join(tmp, "in.tif"), size)
        model, card = gb.build_model(preset, gb.TILE)
        model = prepare_model(model, "cuda")
        raw_card = dataclasses.replace(card, normalization=Normalization("none", [], [], 0.0))
        tiles = gb.plan_tiles_of(raster, card, gb.TILE).to("cuda").contiguous(memory_format=torch.channels_last)
        n = len(tiles)
        gb.time_bare(model, tiles[: 2 * gb.BATCH], gb.BATCH, "bf16")
        bare = min(gb.time_bare(model, tiles, gb.BATCH, "bf16") for _ in range(args.repeats))
        del tiles
        torch.cuda.empty_cache()

        def run(c, r) -> float:
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            segment(
                raster,
                None,
                os.path.join(tmp, "classes.tif"),
                band_map=gb.identity_mapping(),
                model=(model, c),
                overlap=gb.OVERLAP,
                batch_size=gb.BATCH,
                device="cuda",
                precision="bf16",
                overwrite=True,
                confidence=os.path.join(tmp, "confidence.tif"),
                readers=r,
            )
            torch.cuda.synchronize()
            return time.perf_counter() - t0

        run(card, 1)  # warm-up (cuDNN autotune, page cache)
        rows = [("bare", bare)]
        for r in readers:
            for label, c in ((f"segment r={r}", card), (f"segment r={r}, raw", raw_card)):
                rows.append((label, min(run(c, r) for _ in range(args.repeats))))
    print(
        f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}: {preset}, {size}^2 px x {gb.BANDS} bands, "
        f"{n} tiles, batch {gb.BATCH}, bf16, best of {args.repeats}"
    )
    for label, s in rows:
        print(f"  {label:22} {n / s:8.1f} tiles/s   {bare / s:5.2f} of bare")
    return 0


if __name__ == "__main__":
    sys.exit(main())
