"""Dask per-core efficiency on a long job (issue 22, item 4): `--dask local:N` vs in-process, one run.

The demo checkpoint (218 bands, ViT-Tiny, 64 px tiles) on a 224-band EnMAP-like raster of SIZE^2 px
(the EnMAP sample mirror-tiled into a GeoTIFF, 2 bytes x 224 bands per pixel: 4.2 GB for 3072^2,
made once under bench/work/, which git ignores), so
that the in-process run takes a minute or more on a 2-core machine and the cluster's start is paid
back. In one run:

  in_process     segment() in this process, model already loaded, torch on all cores
  dask           segment(dask="local:N") end to end as the CLI runs it: cluster start, each worker
                 loading the checkpoint, blocks, writes on the client (the breakdown is the engine's
                 own closing log line: workers' block time, model loads, client waits and writes)
  one_thread     (--one-thread) segment() in this process with torch on ONE thread over 1/N of the
                 raster's rows: what one worker could do with one core, the per-core reference

ratio = in-process seconds / dask seconds (>= 0.9 is the issue's target on 2 cores). Load averages
(1, 5, 15 min) are recorded before and after every measurement: the dev machine is shared, re-run
on a quiet one for figures to quote:

    python bench/dask_long_bench.py [--size 3072] [--workers 2] [--one-thread]

Updates the "dask_long" section of bench/results.json.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import sys
import time

import results_file  # bench/ is the script's folder, first on sys.path
import torch
from inference_bench import DEMO, HYPER_BATCH, write_hyper_tile

HERE = os.path.dirname(os.path.abspath(__file__))
WORK = os.path.join(HERE, "work")


class Log:
    def __init__(self):
        self.lines = []

    def __call__(self, message: str) -> None:
        self.lines.append(message)


def raster(size: int) -> str:
    """The mirror-tiled EnMAP sample as a GeoTIFF (not a VRT mosaic: with 224 pixel-interleaved bands
    a VRT re-reads source blocks once per band when GDAL's cache is short, which measures GDAL)."""
    os.makedirs(WORK, exist_ok=True)
    path = os.path.join(WORK, f"hyper_{size}.tif")
    if not os.path.exists(path):
        write_hyper_tile(path + ".partial", size)
        os.replace(path + ".partial", path)
    return path


def load() -> list:
    return [round(v, 2) for v in os.getloadavg()]


def timed(fn) -> dict:
    before = load()
    t0 = time.perf_counter()
    extra = fn() or {}
    return {"seconds": round(time.perf_counter() - t0, 2), "load_before": before, "load_after": load(), **extra}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=3072, help="raster side in px (a multiple of 1024)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--one-thread", action="store_true", help="add the one-thread per-core reference")
    ap.add_argument("--order", default="in_process,dask", help="which runs, in this order")
    args = ap.parse_args()
    from spectralx.checkpoint import load_checkpoint
    from spectralx.inference import distributed, segment
    from spectralx.progress import Progress

    path = raster(args.size)
    out = os.path.join(WORK, "dask_long_classes.tif")
    net, card = load_checkpoint(DEMO)
    rows = {
        "raster": f"{args.size}^2 px, 224 bands int16 GeoTIFF (the EnMAP sample mirror-tiled)",
        "checkpoint": "resources/models/demo.safetensors (ViT-Tiny, 64 px tiles)",
        "batch_size": HYPER_BATCH,
        "workers": args.workers,
        "torch_threads_in_process": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
    }

    def in_process():
        res = segment(
            path,
            DEMO,
            out,
            model=(net, card),
            batch_size=HYPER_BATCH,
            device="cpu",
            overwrite=True,
            window=(0, 0, args.size, args.size),
        )
        return {"tiles": res.tiles, "blocks": res.blocks}

    def dask():
        log = Log()
        res = segment(
            path,
            DEMO,
            out,
            batch_size=HYPER_BATCH,
            device="cpu",
            overwrite=True,
            window=(0, 0, args.size, args.size),
            dask=f"local:{args.workers}",
            progress=Progress(on_log=log),
        )
        s = distributed.LAST_STATS
        return {
            "tiles": res.tiles,
            "blocks": res.blocks,
            "log": [line for line in log.lines if line.startswith("Dask")],
            "breakdown": {
                k: round(v, 2) if isinstance(v, float) else v for k, v in vars(s).items() if k not in ("t0", "threads")
            },
            "worker_torch_threads": sorted(s.threads.values()),
        }

    def one_thread():
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            h = args.size // args.workers
            res = segment(
                path,
                DEMO,
                out,
                model=(net, card),
                batch_size=HYPER_BATCH,
                device="cpu",
                overwrite=True,
                window=(0, 0, args.size, h),
            )
        finally:
            torch.set_num_threads(threads)
        return {"tiles": res.tiles, "rows_px": h}

    runs = {"in_process": in_process, "dask": dask, "one_thread": one_thread}
    order = args.order.split(",") + (["one_thread"] if args.one_thread and "one_thread" not in args.order else [])
    t_start = time.perf_counter()
    for name in order:
        print(f"== {name}", flush=True)
        rows[name] = timed(runs[name])
        print(rows[name], flush=True)
    if "in_process" in rows and "dask" in rows:
        rows["ratio_in_process_over_dask"] = round(rows["in_process"]["seconds"] / rows["dask"]["seconds"], 3)
    if "one_thread" in rows and "in_process" in rows:
        # what N single-thread workers would take with perfect scaling, over the in-process time
        rows["ideal_workers_over_in_process"] = round(rows["in_process"]["seconds"] / rows["one_thread"]["seconds"], 3)
    section = {
        "when": _dt.datetime.now().isoformat(timespec="seconds"),
        "command": "python bench/dask_long_bench.py " + " ".join(sys.argv[1:]),
        "machine": _machine(),
        "seconds": round(time.perf_counter() - t_start, 1),
        "rows": rows,
        "note": "ratio = in-process s / dask s (target >= 0.9); dask includes the cluster's start and "
        "the workers' checkpoint loads; load averages (1/5/15 min) before and after each run",
    }
    results_file.update_results("dask_long", section)
    print({k: v for k, v in rows.items() if k.startswith(("ratio", "ideal"))})
    return 0


def _machine() -> str:
    cpu = "cpu"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}"


if __name__ == "__main__":
    sys.exit(main())
