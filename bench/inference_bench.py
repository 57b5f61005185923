"""Inference bench (issue 3 §5): pipeline overhead, memory vs raster size, MONAI as the peer reference.

Measured side by side in one run, on a synthetic multiband GeoTIFF, with a SpectralX network of the
tiny preset (random weights: speed and memory do not depend on the weights):

  (a) overhead = wall time of `segment()` over the raster (read, map, normalize, tile, batch, forward,
      blend, write the class raster + style) / time of the bare batched forward pass over the same
      tiles, already in memory. Target <= 1.15 on CPU.
  (b) peak resident memory of `segment()` for a raster and for one 16x larger (each in a fresh
      subprocess, so one run's memory never counts for the other). Target: large <= 1.25 x small.
  (c) MONAI `sliding_window_inference` (mode="gaussian", same overlap, batch and model, softmax
      probabilities blended, then argmax) on the same raster already normalized in memory. Target:
      `segment()` at least as fast, although it also reads and writes files.

Timings are the best of several interleaved repeats (the machine may be shared). Updates the
"inference" section of bench/results.json and prints a table.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import psutil
import rasterio
import torch
from rasterio.transform import from_origin

import results_file  # bench/ is the script's folder, first on sys.path

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = results_file.RESULTS

PRESET = "vit_tiny_patch16"
TILE = 64                 # the tiny CPU preset's tile (as in the tests); ViT-Tiny width/depth
BANDS = (490.0, 560.0, 665.0, 842.0)   # a Sentinel-2-like 4-band raster
CLASSES = 4
OVERLAP = 0.25
BATCH = 8
SPEED_SIZE = 512          # (a), (c): 512 x 512 px -> 121 tiles
MEM_SIZES = (512, 2048)   # (b): 512^2 and 16x the pixels (2048^2 -> 1764 tiles)
REPEATS = 7               # short runs, many interleaved repeats: robust to a busy machine


# -- fixtures -------------------------------------------------------------------------------------

def build_model():
    from spectralx.checkpoint import BackboneRef, Band, ClassInfo, ModelCard, Normalization
    from spectralx.config import ModelConfig
    from spectralx.model import SpectralX
    torch.manual_seed(0)
    cfg = ModelConfig.from_preset(PRESET, in_bands=len(BANDS), num_classes=CLASSES, img_size=TILE)
    model = SpectralX(cfg, torch.tensor(BANDS))
    model.set_stage("frozen")
    card = ModelCard(architecture=cfg.to_dict(),
                     bands=[Band(f"B{i + 1}", w, 20.0) for i, w in enumerate(BANDS)],
                     classes=[ClassInfo(i + 1, f"class {i + 1}", "#%02x%02x%02x" % (40 * i, 200 - 40 * i, 90))
                              for i in range(CLASSES)],
                     backbone=BackboneRef("bench", "0" * 64, PRESET),
                     normalization=Normalization("zscore", [1200.0] * len(BANDS), [600.0] * len(BANDS), 6.0))
    return model.eval(), card


def identity_mapping():
    from spectralx.bands import BandMapping
    n = len(BANDS)
    return BandMapping(source_indexes=list(range(1, n + 1)), weights=np.eye(n, dtype=np.float32),
                       fill=[False] * n, rows=[{} for _ in range(n)])


def write_raster(path: str, size: int, seed: int = 0) -> str:
    """Synthetic int16 reflectance-like raster, tiled + deflate like real products, written in strips."""
    rng = np.random.default_rng(seed)
    with rasterio.open(path, "w", driver="GTiff", width=size, height=size, count=len(BANDS), dtype="int16",
                       crs="EPSG:32633", transform=from_origin(500000, 5800000, 10, 10), nodata=-9999,
                       tiled=True, blockxsize=256, blockysize=256, compress="deflate") as ds:
        for r0 in range(0, size, 256):
            h = min(256, size - r0)
            yy, xx = np.mgrid[r0:r0 + h, 0:size]
            base = np.stack([np.sin(xx / (9 + 4 * i)) * np.cos(yy / (13 + 3 * i)) for i in range(len(BANDS))])
            block = (1200 + 500 * base + 100 * rng.standard_normal(base.shape)).astype(np.int16)
            ds.write(block, window=rasterio.windows.Window(0, r0, size, h))
    return path


def normalized_array(path: str, card) -> np.ndarray:
    from spectralx.inference.prepare import Preparer
    with rasterio.open(path) as ds:
        raw = ds.read(out_dtype=np.float32)
    x, _ = Preparer(np.eye(raw.shape[0], dtype=np.float32), None, card.normalization)(raw, None)
    return x


def tiles_of(x: np.ndarray) -> torch.Tensor:
    """The exact tiles segment() runs (same plan), stacked in memory for the bare forward pass."""
    from spectralx.inference import plan_tiles
    plan = plan_tiles(x.shape[1], x.shape[2], TILE, OVERLAP)
    return torch.stack([torch.from_numpy(x[:, y:y + TILE, c:c + TILE]) for y in plan.ys for c in plan.xs])


# -- measurements ---------------------------------------------------------------------------------

def time_bare(model, tiles: torch.Tensor) -> float:
    t0 = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(tiles), BATCH):
            model(tiles[i:i + BATCH])
    return time.perf_counter() - t0


class TimedModel(torch.nn.Module):
    """Counts the forward time inside segment(): the rest is the pipeline's own cost."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.seconds = 0.0

    def forward(self, x):
        t0 = time.perf_counter()
        y = self.model(x)
        self.seconds += time.perf_counter() - t0
        return y


def time_segment(model, card, raster: str, out_dir: str) -> float:
    from spectralx.inference import segment
    out = os.path.join(out_dir, "classes.tif")
    t0 = time.perf_counter()
    segment(raster, None, out, band_map=identity_mapping(), model=(model, card), overlap=OVERLAP,
            batch_size=BATCH, device="cpu", overwrite=True)
    return time.perf_counter() - t0


def time_monai(model, x: np.ndarray) -> float:
    import warnings
    from monai.inferers import sliding_window_inference
    warnings.filterwarnings("ignore", category=UserWarning, module="monai")
    inputs = torch.from_numpy(x)[None]
    t0 = time.perf_counter()
    with torch.inference_mode():
        probs = sliding_window_inference(inputs, roi_size=(TILE, TILE), sw_batch_size=BATCH,
                                         predictor=lambda t: torch.softmax(model(t), 1), overlap=OVERLAP,
                                         mode="gaussian", progress=False)
        probs.argmax(1).to(torch.uint8)
    return time.perf_counter() - t0


def _ru_maxrss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def memory_child(runner: str, raster: str, out_dir: str) -> None:
    """Fresh process: model + one warm-up batch, then `segment()` (streaming) or MONAI (whole array in
    memory) over `raster`; prints peak resident memory as JSON."""
    proc = psutil.Process()
    model, card = build_model()
    time_bare(model, torch.zeros(2 * BATCH, len(BANDS), TILE, TILE))   # warm-up: allocator, kernels
    before = proc.memory_info().rss
    t0 = time.perf_counter()
    if runner == "segment":
        time_segment(model, card, raster, out_dir)
    else:
        time_monai(model, normalized_array(raster, card))
    print(json.dumps({"rss_before_run": before, "peak_rss": _ru_maxrss(), "seconds": time.perf_counter() - t0}))


def measure_memory(runner: str, raster: str, out_dir: str) -> dict:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--memory-child", runner, raster, out_dir],
                          capture_output=True, text=True, env=env, check=False)
    if proc.returncode:
        raise RuntimeError(f"memory child failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import monai
    return {"cpu": cpu, "logical_cores": os.cpu_count(), "physical_cores": psutil.cpu_count(logical=False),
            "ram_gb": round(psutil.virtual_memory().total / 2 ** 30, 1), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "numpy": np.__version__, "rasterio": rasterio.__version__,
            "gdal": rasterio.__gdal_version__, "monai": monai.__version__, "python": platform.python_version(),
            "os": platform.platform(),
            "load_average_at_start": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
            "gpu": (torch.cuda.get_device_name(0) if torch.cuda.is_available() else "GPU not measured "
                    "(no GPU in this run)")}


def update_results(section: dict) -> None:
    results_file.update_results("inference", section)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--memory-child", nargs=3, metavar=("RUNNER", "RASTER", "OUT_DIR"), help=argparse.SUPPRESS)
    ap.add_argument("--repeats", type=int, default=REPEATS)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, one repeat: checks the bench runs")
    args = ap.parse_args()
    global SPEED_SIZE, MEM_SIZES
    if args.quick:
        SPEED_SIZE, MEM_SIZES, args.repeats = 128, (128, 512), 1
    if args.memory_child:
        memory_child(*args.memory_child)
        return 0

    info = machine()
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="spectralx-bench-") as tmp:
        model, card = build_model()
        speed_raster = write_raster(os.path.join(tmp, "speed.tif"), SPEED_SIZE)
        x = normalized_array(speed_raster, card)
        tiles = tiles_of(x)
        timed = TimedModel(model)
        runs = {"bare_forward": lambda: time_bare(model, tiles),
                "segment": lambda: time_segment(timed, card, speed_raster, tmp),
                "monai": lambda: time_monai(model, x)}
        for fn in runs.values():                             # warm-up (allocator, kernels, imports)
            fn()
        times = {k: [] for k in runs}
        inside = []                                          # forward time inside each segment() run
        order = list(runs)
        for i in range(args.repeats):                        # interleaved, rotating order: same conditions
            for k in order[i % 3:] + order[:i % 3]:
                timed.seconds = 0.0
                times[k].append(runs[k]())
                if k == "segment":
                    inside.append(timed.seconds)
        best = {k: min(v) for k, v in times.items()}
        median = {k: float(np.median(v)) for k, v in times.items()}
        own = [s - m for s, m in zip(times["segment"], inside)]   # pipeline's own time per run
        n_tiles = len(tiles)

        mem = {"segment": {}, "monai": {}}
        for size in MEM_SIZES:
            raster = write_raster(os.path.join(tmp, f"mem{size}.tif"), size, seed=1)
            for runner in mem:
                mem[runner][size] = measure_memory(runner, raster, tmp)
            os.remove(raster)

    mb = 2 ** 20

    def memory_rows(runs: dict) -> dict:
        rows = {f"{s}x{s}": {"peak_rss_mb": round(runs[s]["peak_rss"] / mb, 1),
                             "rss_before_run_mb": round(runs[s]["rss_before_run"] / mb, 1),
                             "seconds": round(runs[s]["seconds"], 2)} for s in MEM_SIZES}
        rows["ratio_large_to_small"] = round(runs[MEM_SIZES[1]]["peak_rss"] / runs[MEM_SIZES[0]]["peak_rss"], 3)
        return rows
    section = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": info,
        "setup": {"preset": PRESET, "tile": TILE, "bands": len(BANDS), "classes": CLASSES, "overlap": OVERLAP,
                  "batch_size": BATCH, "repeats": args.repeats, "speed_raster_px": [SPEED_SIZE, SPEED_SIZE],
                  "tiles": n_tiles, "memory_rasters_px": [[s, s] for s in MEM_SIZES],
                  "model": "random weights (timing and memory do not depend on them); segment() gets the "
                           "loaded model, so checkpoint loading is not timed"},
        "a_overhead": {"bare_forward_s": round(best["bare_forward"], 3), "segment_s": round(best["segment"], 3),
                       "ratio": round(best["segment"] / best["bare_forward"], 3), "target": "<= 1.15 on CPU",
                       "segment_tiles_per_s": round(n_tiles / best["segment"], 1),
                       "median_ratio": round(median["segment"] / median["bare_forward"], 3),
                       "pipeline_own_s_median": round(float(np.median(own)), 3),
                       "same_run_ratio_median": round(float(np.median([s / m for s, m in zip(
                           times["segment"], inside)])), 4),
                       "pipeline_own_fraction_median": round(float(np.median([o / s for o, s in zip(
                           own, times["segment"])])), 4),
                       "all_runs_s": {k: [round(t, 3) for t in v] for k, v in times.items()}},
        "b_memory": {**memory_rows(mem["segment"]), "target": "<= 1.25",
                     "monai_reference": memory_rows(mem["monai"]),
                     "note": "peak RSS of the whole process (torch, model, one warm-up batch included); each "
                             "run in a fresh subprocess; MONAI holds the normalized raster and its "
                             "probabilities in memory"},
        "c_monai": {"monai_s": round(best["monai"], 3), "segment_s": round(best["segment"], 3),
                    "speedup": round(best["monai"] / best["segment"], 3),
                    "median_speedup": round(median["monai"] / median["segment"], 3),
                    "target": "segment at least as fast (speedup >= 1)",
                    "note": "MONAI gets the normalized array in memory and writes nothing; segment reads "
                            "the GeoTIFF and writes class raster + style"},
        "gpu": info["gpu"] if torch.cuda.is_available() else "GPU not measured",
        "bench_seconds": None,
    }
    section["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None
    section["bench_seconds"] = round(time.perf_counter() - t_start, 1)
    if not args.quick:
        update_results(section)

    a, b, c = section["a_overhead"], section["b_memory"], section["c_monai"]
    bm = b["monai_reference"]
    s0, s1 = (f"{s}x{s}" for s in MEM_SIZES)
    rows = [
        ("(a) bare batched forward", f"{a['bare_forward_s']:.2f} s", f"{n_tiles} tiles {SPEED_SIZE}^2 px"),
        ("(a) segment()", f"{a['segment_s']:.2f} s", f"{a['segment_tiles_per_s']} tiles/s"),
        ("(a) overhead ratio", f"{a['ratio']:.3f}", f"target <= 1.15 (median {a['median_ratio']:.3f})"),
        ("(a) pipeline's own time", f"{100 * a['pipeline_own_fraction_median']:.1f} %",
         f"of segment() outside its forward passes (same-run ratio {a['same_run_ratio_median']:.3f})"),
        (f"(b) peak RSS {s0}", f"{b[s0]['peak_rss_mb']:.0f} MB", f"MONAI {bm[s0]['peak_rss_mb']:.0f} MB"),
        (f"(b) peak RSS {s1} (16x)", f"{b[s1]['peak_rss_mb']:.0f} MB", f"MONAI {bm[s1]['peak_rss_mb']:.0f} MB"),
        ("(b) ratio large/small", f"{b['ratio_large_to_small']:.3f}",
         f"target <= 1.25 (MONAI {bm['ratio_large_to_small']:.3f})"),
        ("(c) MONAI sliding_window", f"{c['monai_s']:.2f} s", "gaussian, in memory"),
        ("(c) MONAI / segment", f"{c['speedup']:.3f}", f"target >= 1 (median {c['median_speedup']:.3f})"),
    ]
    print(f"\nSpectralX inference bench ({PRESET}, tile {TILE}, overlap {OVERLAP}, batch {BATCH}, "
          f"best of {args.repeats})")
    print(f"machine: {info['cpu']}, {info['logical_cores']} cores, {info['ram_gb']} GB RAM, torch {info['torch']}; "
          f"{section['gpu']}; load average {info['load_average_at_start']} -> {section['load_average_at_end']}")
    for name, value, note in rows:
        print(f"  {name:<28} {value:>10}   {note}")
    print(f"results: {os.path.relpath(RESULTS)} [inference] ({section['bench_seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
