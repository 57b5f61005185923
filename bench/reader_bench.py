"""Reader threads (`run_pipeline(readers=N)`): the pipeline's own throughput when the model is fast.

On a GPU the model takes a few milliseconds a batch and one reader thread (GDAL read, band mapping,
normalization) bounds `segment()` (bench/gpu_segment_breakdown.py). This bench reproduces that on the
CPU: a 1x1-convolution "model" (nearly free), the real reader, blending and encoder, over a
4096 x 4096 px 32-band int16 GeoTIFF with 224 px tiles, side by side with 1 and 2 reader threads,
alternating, best of --repeats each; and the reading alone (every chunk read and normalized, no
model). It reports the ratios (not absolute times: the machine is shared). On a 2-core machine the
pipeline row gains little, since the compute thread's CPU work (softmax, blending) competes for the
same two cores; the reads-only row is what a GPU host with cores to spare would see. segment() itself uses one reader on the CPU (the model needs the cores) and
more for a GPU (`spectralx.inference.api.reader_threads`).

    python bench/reader_bench.py [--repeats 3] [--size 4096]
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
import results_file  # bench/ is the script's folder, first on sys.path
import torch
from gpu_bench import BANDS, build_model, write_raster
from rasterio.windows import Window


class OneByOne(torch.nn.Module):
    def __init__(self, bands: int, classes: int):
        super().__init__()
        self.conv = torch.nn.Conv2d(bands, classes, 1)

    def forward(self, x):
        return self.conv(x)


def run(path, size, card, readers: int) -> float:
    from spectralx.inference.api import encoder
    from spectralx.inference.pipeline import run_pipeline
    from spectralx.inference.prepare import Preparer
    from spectralx.inference.source import RasterStrips
    from spectralx.inference.tiling import plan_tiles

    plan = plan_tiles(size, size, 224, 0.25)
    prep = Preparer(np.eye(BANDS, dtype=np.float32), None, card.normalization)
    model = OneByOne(BANDS, len(card.classes)).eval()
    encode = encoder(card.classes, "cpu", True, False)
    src = RasterStrips(path, Window(0, 0, size, size), plan, list(range(1, BANDS + 1)), prep)
    t0 = time.perf_counter()
    with torch.inference_mode():
        run_pipeline(plan, src, model, len(card.classes), encode, lambda payload: None, batch_size=32, readers=readers)
    return time.perf_counter() - t0


def read_only(path, size, card, readers: int) -> float:
    """Every chunk read and normalized by `readers` threads taking them in turn, as the pipeline does."""
    import threading

    from spectralx.inference.prepare import Preparer
    from spectralx.inference.source import RasterStrips
    from spectralx.inference.tiling import plan_tiles

    plan = plan_tiles(size, size, 224, 0.25)
    prep = Preparer(np.eye(BANDS, dtype=np.float32), None, card.normalization)

    def read_rows(rows):
        src = RasterStrips(path, Window(0, 0, size, size), plan, list(range(1, BANDS + 1)), prep)
        src.open()
        for r in rows:
            src.read(r)
        src.close()

    rows = list(range(len(plan.ys)))
    t0 = time.perf_counter()
    threads = [threading.Thread(target=read_rows, args=(rows[k::readers],)) for k in range(readers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--size", type=int, default=4096)
    args = ap.parse_args()
    from spectralx.inference.tiling import plan_tiles

    _, card = build_model("vit_tiny_patch16", 224)
    n = plan_tiles(args.size, args.size, 224, 0.25).n_tiles
    load0 = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="spectralx-reader-bench-") as tmp:
        path = write_raster(os.path.join(tmp, "in.tif"), args.size)
        run(path, args.size, card, 1)  # warm-up (page cache, allocator)
        times = {1: [], 2: []}
        reads = {1: [], 2: []}
        for _ in range(args.repeats):
            for k in (1, 2):
                reads[k].append(read_only(path, args.size, card, k))
                times[k].append(run(path, args.size, card, k))
    best = {k: min(v) for k, v in times.items()}
    best_reads = {k: min(v) for k, v in reads.items()}
    ratio = best[1] / best[2]
    read_ratio = best_reads[1] / best_reads[2]
    print(
        f"reader threads, {args.size}^2 px x {BANDS} bands int16, {n} tiles of 224 px, 1x1-conv model, "
        f"{os.cpu_count()} cores (best of {args.repeats}; load {load0[0]:.2f} -> {os.getloadavg()[0]:.2f})"
    )
    for k in (1, 2):
        print(f"  reads only, {k} thread{'s' if k > 1 else ' '}       {best_reads[k]:6.2f} s")
    print(f"  reads only: {read_ratio:.2f}x with 2 threads")
    for k in (1, 2):
        print(f"  pipeline, {k} reader{'s' if k > 1 else ' '}         {best[k]:6.2f} s   {n / best[k]:7.1f} tiles/s")
    print(f"  pipeline: {ratio:.2f}x with 2 readers (the compute thread's CPU work shares the same cores here)")
    results_file.update_results(
        "readers",
        {
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
            "raster_px": [args.size, args.size],
            "bands": BANDS,
            "tiles": n,
            "model": "1x1 convolution",
            "seconds": {str(k): [round(t, 3) for t in v] for k, v in times.items()},
            "tiles_per_s": {str(k): round(n / best[k], 1) for k in best},
            "speedup_2_readers": round(ratio, 3),
            "reads_only_seconds": {str(k): [round(t, 3) for t in v] for k, v in reads.items()},
            "reads_only_speedup_2_threads": round(read_ratio, 3),
            "load_average": [round(load0[0], 2), round(os.getloadavg()[0], 2)],
        },
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
