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

  (d) memory bounded in width and band count (issue 10): peak resident memory of `segment()` with the
      demo checkpoint (218 model bands) on 224-band EnMAP-like rasters: 1024^2 vs 4096^2 (target ratio
      <= 1.10) and a flight line 16384 px wide (target < 1.5 GB). The 1024^2 GeoTIFF is the EnMAP
      sample mirror-tiled with its band metadata; the larger ones are VRT mosaics of it.
  (e) Dask distributed: the same 224-band 1024^2 raster, `segment(dask="local:2")` (2 worker
      processes, 1 thread each, started and warmed before timing) vs in-process `segment()` (model
      loaded, all cores); on a 2-core machine parity is the aim.

Timings are the best of several interleaved repeats (the machine may be shared). Updates the
"inference" section of bench/results.json and prints a table. `--rows hyper,dask` runs only (d)/(e)
and keeps the other rows already in the file.
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
import time

import numpy as np
import psutil
import rasterio
import results_file  # bench/ is the script's folder, first on sys.path
import torch
from rasterio.transform import from_origin

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = results_file.RESULTS

PRESET = "vit_tiny_patch16"
TILE = 64  # the tiny CPU preset's tile (as in the tests); ViT-Tiny width/depth
BANDS = (490.0, 560.0, 665.0, 842.0)  # a Sentinel-2-like 4-band raster
CLASSES = 4
OVERLAP = 0.25
BATCH = 8
SPEED_SIZE = 512  # (a), (c): 512 x 512 px -> 121 tiles
MEM_SIZES = (512, 2048)  # (b): 512^2 and 16x the pixels (2048^2 -> 1764 tiles)
REPEATS = 7  # short runs, many interleaved repeats: robust to a busy machine


# -- fixtures -------------------------------------------------------------------------------------


def build_model():
    from spectralx.checkpoint import BackboneRef, Band, ClassInfo, ModelCard, Normalization
    from spectralx.config import ModelConfig
    from spectralx.model import SpectralX

    torch.manual_seed(0)
    cfg = ModelConfig.from_preset(PRESET, in_bands=len(BANDS), num_classes=CLASSES, img_size=TILE)
    model = SpectralX(cfg, torch.tensor(BANDS))
    model.set_stage("frozen")
    card = ModelCard(
        architecture=cfg.to_dict(),
        bands=[Band(f"B{i + 1}", w, 20.0) for i, w in enumerate(BANDS)],
        classes=[
            ClassInfo(i + 1, f"class {i + 1}", "#%02x%02x%02x" % (40 * i, 200 - 40 * i, 90)) for i in range(CLASSES)
        ],
        backbone=BackboneRef("bench", "0" * 64, PRESET),
        normalization=Normalization("zscore", [1200.0] * len(BANDS), [600.0] * len(BANDS), 6.0),
    )
    return model.eval(), card


def identity_mapping():
    from spectralx.bands import BandMapping

    n = len(BANDS)
    return BandMapping(
        source_indexes=list(range(1, n + 1)),
        weights=np.eye(n, dtype=np.float32),
        fill=[False] * n,
        rows=[{} for _ in range(n)],
    )


def write_raster(path: str, size: int, seed: int = 0) -> str:
    """Synthetic int16 reflectance-like raster, tiled + deflate like real products, written in strips."""
    rng = np.random.default_rng(seed)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=size,
        height=size,
        count=len(BANDS),
        dtype="int16",
        crs="EPSG:32633",
        transform=from_origin(500000, 5800000, 10, 10),
        nodata=-9999,
        tiled=True,
        blockxsize=256,
        blockysize=256,
        compress="deflate",
    ) as ds:
        for r0 in range(0, size, 256):
            h = min(256, size - r0)
            yy, xx = np.mgrid[r0 : r0 + h, 0:size]
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
    return torch.stack([torch.from_numpy(x[:, y : y + TILE, c : c + TILE]) for y in plan.ys for c in plan.xs])


# -- measurements ---------------------------------------------------------------------------------


def time_bare(model, tiles: torch.Tensor) -> float:
    t0 = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(tiles), BATCH):
            model(tiles[i : i + BATCH])
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
    segment(
        raster,
        None,
        out,
        band_map=identity_mapping(),
        model=(model, card),
        overlap=OVERLAP,
        batch_size=BATCH,
        device="cpu",
        overwrite=True,
    )
    return time.perf_counter() - t0


def time_monai(model, x: np.ndarray) -> float:
    import warnings

    from monai.inferers import sliding_window_inference

    warnings.filterwarnings("ignore", category=UserWarning, module="monai")
    inputs = torch.from_numpy(x)[None]
    t0 = time.perf_counter()
    with torch.inference_mode():
        probs = sliding_window_inference(
            inputs,
            roi_size=(TILE, TILE),
            sw_batch_size=BATCH,
            predictor=lambda t: torch.softmax(model(t), 1),
            overlap=OVERLAP,
            mode="gaussian",
            progress=False,
        )
        probs.argmax(1).to(torch.uint8)
    return time.perf_counter() - t0


DEMO = os.path.join(os.path.dirname(HERE), "resources", "models", "demo.safetensors")
ENMAP = os.path.join(os.path.dirname(HERE), "resources", "sample", "enmap_potsdam.tif")
HYPER_TILE = 1024
HYPER_MOSAICS = ((1, 1), (4, 4), (16, 0.5))  # copies of the tile across, down: 1024^2, 4096^2, 16384 x 512
HYPER_BATCH = 8


def write_hyper_tile(path: str, size: int = HYPER_TILE) -> str:
    """The EnMAP sample (224 bands, int16, wavelengths, nodata) mirror-tiled to size x size px."""
    with rasterio.open(ENMAP) as src:
        data, profile = src.read(), src.profile
        tags = [src.tags(i) for i in range(1, src.count + 1)]
    h, w = data.shape[1:]
    profile.update(
        width=size, height=size, tiled=True, blockxsize=256, blockysize=256, compress=None, interleave="pixel"
    )

    def mirror(idx, n):
        return np.where((idx // n) % 2 == 0, idx % n, n - 1 - idx % n)

    cols = mirror(np.arange(size), w)
    with rasterio.open(path, "w", **profile) as dst:
        for i, t in enumerate(tags, 1):
            dst.update_tags(i, **t)
        for r0 in range(0, size, 256):
            rows = mirror(np.arange(r0, min(size, r0 + 256)), h)
            dst.write(data[:, rows][:, :, cols], window=rasterio.windows.Window(0, r0, size, len(rows)))
    return path


def write_mosaic_vrt(path: str, tile: str, across: int, down: float) -> str:
    """A VRT mosaic: `across` x `down` copies of `tile` side by side, band metadata kept."""
    from xml.sax.saxutils import escape

    with rasterio.open(tile) as src:
        n, dtype, nodata, tags = src.count, src.dtypes[0], src.nodata, [src.tags(i) for i in range(1, src.count + 1)]
        size, t = src.width, src.transform
        crs = src.crs.to_wkt()
    width, height = int(across * size), int(down * size)
    gdal_type = {"int16": "Int16", "uint16": "UInt16", "float32": "Float32"}[dtype]
    cells = [(c, r) for r in range(int(np.ceil(down))) for c in range(across)]
    out = [
        f'<VRTDataset rasterXSize="{width}" rasterYSize="{height}">',
        f"  <SRS>{escape(crs)}</SRS>",
        f"  <GeoTransform>{t.c}, {t.a}, {t.b}, {t.f}, {t.d}, {t.e}</GeoTransform>",
    ]
    for b in range(1, n + 1):
        out.append(f'  <VRTRasterBand dataType="{gdal_type}" band="{b}">')
        if nodata is not None:
            out.append(f"    <NoDataValue>{nodata}</NoDataValue>")
        out.append(
            "    <Metadata>"
            + "".join(f'<MDI key="{escape(k)}">{escape(v)}</MDI>' for k, v in tags[b - 1].items())
            + "</Metadata>"
        )
        for c, r in cells:
            h = min(size, height - r * size)
            out.append(
                f'    <SimpleSource><SourceFilename relativeToVRT="0">{escape(tile)}</SourceFilename>'
                f'<SourceBand>{b}</SourceBand><SrcRect xOff="0" yOff="0" xSize="{size}" ySize="{h}"/>'
                f'<DstRect xOff="{c * size}" yOff="{r * size}" xSize="{size}" ySize="{h}"/></SimpleSource>'
            )
        out.append("  </VRTRasterBand>")
    out.append("</VRTDataset>")
    with open(path, "w") as f:
        f.write("\n".join(out))
    return path


def hyper_memory_child(raster: str, out_dir: str, max_tiles: str = "0") -> None:
    """Fresh process: the demo checkpoint + one warm-up batch, then `segment()` (default memory
    budget) over `raster`; prints peak resident memory as JSON. `max_tiles` > 0 stops the run there
    (cancel: no output is kept); every buffer and GDAL's block cache reach their size within the first
    256 rows, so a run stopped after that has the full run's peak."""
    from spectralx.checkpoint import load_checkpoint
    from spectralx.errors import Cancelled
    from spectralx.inference import segment
    from spectralx.inference.api import plan_segment
    from spectralx.progress import Progress

    proc = psutil.Process()
    net, card = load_checkpoint(DEMO)
    with torch.inference_mode():
        net(torch.zeros(HYPER_BATCH, len(card.bands), card.tile_size, card.tile_size))
    before = proc.memory_info().rss
    plan = plan_segment(raster, DEMO, card=card, batch_size=HYPER_BATCH, device="cpu")
    limit, done = int(max_tiles), [0]
    progress = Progress(on_update=lambda d, t, m: done.__setitem__(0, d), is_cancelled=lambda: 0 < limit <= done[0])
    t0 = time.perf_counter()
    try:
        segment(
            raster,
            DEMO,
            os.path.join(out_dir, "hyper_classes.tif"),
            model=(net, card),
            batch_size=HYPER_BATCH,
            device="cpu",
            overwrite=True,
            progress=progress,
        )
    except Cancelled:
        pass
    print(
        json.dumps(
            {
                "rss_before_run": before,
                "peak_rss": _ru_maxrss(),
                "seconds": time.perf_counter() - t0,
                "tiles": plan.tiles.n_tiles,
                "tiles_run": done[0],
                "blocks": len(plan.blocks),
                "read_bands": plan.read_bands,
                "budget": plan.budget,
                "group": plan.group,
            }
        )
    )


def measure_hyper(raster: str, out_dir: str, max_tiles: int = 0) -> dict:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--hyper-child", raster, out_dir, str(max_tiles)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode:
        raise RuntimeError(f"memory child failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def hyper_rows(tmp: str, max_tiles: int = 0) -> dict:
    tile = write_hyper_tile(os.path.join(tmp, "hyper.tif"), HYPER_TILE)
    runs = {}
    for across, down in HYPER_MOSAICS:
        name = f"{across * HYPER_TILE}x{int(down * HYPER_TILE)}"
        raster = (
            tile if (across, down) == (1, 1) else write_mosaic_vrt(os.path.join(tmp, f"{name}.vrt"), tile, across, down)
        )
        runs[name] = measure_hyper(raster, tmp, max_tiles)
    mb = 2**20
    rows = {
        k: {
            "peak_rss_mb": round(v["peak_rss"] / mb, 1),
            "rss_before_run_mb": round(v["rss_before_run"] / mb, 1),
            "seconds": round(v["seconds"], 1),
            "tiles": v["tiles"],
            "tiles_run": v["tiles_run"],
            "blocks": v["blocks"],
        }
        for k, v in runs.items()
    }
    names = list(runs)
    first = runs[names[0]]
    rows["ratio_large_to_small"] = round(runs[names[1]]["peak_rss"] / first["peak_rss"], 3)
    rows["wide"] = names[2]
    rows.update(
        {
            "target_ratio": "<= 1.10",
            "target_wide": "< 1.5 GB (1536 MB)",
            "read_bands": first["read_bands"],
            "budget_mb": round(first["budget"] / mb),
            "tile_columns_per_read": first["group"],
            "max_tiles_per_run": max_tiles or None,
            "checkpoint": "resources/models/demo.safetensors " "(218 bands, 6 classes, ViT-Tiny, 64 px tiles)",
            "batch_size": HYPER_BATCH,
            "note": "peak RSS of the whole process (torch, model, warm-up batch included), default "
            "memory budget; each run in a fresh subprocess",
        }
    )
    return rows


def dask_rows(tmp: str, repeats: int) -> dict:
    """(e): in-process vs local:2 on the 224-band 1024^2 raster, best of `repeats`, cluster warmed."""
    import distributed

    from spectralx.checkpoint import load_checkpoint
    from spectralx.inference import segment

    tile = os.path.join(tmp, "hyper.tif")
    if not os.path.exists(tile):
        write_hyper_tile(tile, HYPER_TILE)
    net, card = load_checkpoint(DEMO)
    out = os.path.join(tmp, "dask_classes.tif")

    def local():
        t0 = time.perf_counter()
        segment(tile, DEMO, out, model=(net, card), batch_size=HYPER_BATCH, device="cpu", overwrite=True)
        return time.perf_counter() - t0

    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    )
    try:

        def remote():
            t0 = time.perf_counter()
            res = segment(
                tile, DEMO, out, batch_size=HYPER_BATCH, device="cpu", overwrite=True, dask=cluster.scheduler_address
            )
            remote.blocks = res.blocks
            return time.perf_counter() - t0

        remote()  # warm-up: workers load the checkpoint once
        local()
        times = {"in_process": [], "dask_local_2": []}
        for i in range(repeats):
            for k, fn in (
                (("in_process", local), ("dask_local_2", remote))
                if i % 2 == 0
                else (("dask_local_2", remote), ("in_process", local))
            ):
                times[k].append(fn())
    finally:
        cluster.close()
    best = {k: min(v) for k, v in times.items()}
    return {
        "in_process_s": round(best["in_process"], 2),
        "dask_local_2_s": round(best["dask_local_2"], 2),
        "ratio_dask_to_in_process": round(best["dask_local_2"] / best["in_process"], 3),
        "blocks": remote.blocks,
        "repeats": repeats,
        "target": "parity on a 2-core machine",
        "all_runs_s": {k: [round(t, 2) for t in v] for k, v in times.items()},
        "note": "224-band 1024^2 raster, demo checkpoint; 2 worker processes x 1 thread vs 1 process x all "
        "cores; cluster start-up and the workers' first checkpoint load not timed",
    }


def print_extra(extra: dict) -> None:
    d, e = extra.get("d_hyperspectral_memory"), extra.get("e_dask")
    if d:
        sizes = [k for k in d if isinstance(d[k], dict)]
        for k in sizes:
            print(
                f"  {'(d) peak RSS 224 bands ' + k:<34} {d[k]['peak_rss_mb']:>7.0f} MB   {d[k]['tiles_run']} of "
                f"{d[k]['tiles']} tiles, "
                f"{d[k]['blocks']} block(s), {d[k]['seconds']} s"
            )
        print(f"  {'(d) ratio ' + sizes[1] + '/' + sizes[0]:<34} {d['ratio_large_to_small']:>10.3f}   target <= 1.10")
        print(f"  {'(d) ' + d['wide'] + ' px':<34} {d[d['wide']]['peak_rss_mb']:>7.0f} MB   target < 1536 MB")
    if e:
        print(f"  {'(e) in-process':<34} {e['in_process_s']:>8.2f} s")
        print(f"  {'(e) Dask local:2':<34} {e['dask_local_2_s']:>8.2f} s   {e['blocks']} blocks")
        print(f"  {'(e) Dask / in-process':<34} {e['ratio_dask_to_in_process']:>10.3f}   parity is the aim")


def _ru_maxrss() -> int:
    """Peak resident memory of this process image. On Linux VmHWM from /proc: getrusage's ru_maxrss
    survives execve (getrusage(2)), so a child started from a bench process that had already grown
    reported the parent's peak (every (b) run read 1515 MB on 2026-11-30)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def memory_child(runner: str, raster: str, out_dir: str) -> None:
    """Fresh process: model + one warm-up batch, then `segment()` (streaming) or MONAI (whole array in
    memory) over `raster`; prints peak resident memory as JSON."""
    proc = psutil.Process()
    model, card = build_model()
    time_bare(model, torch.zeros(2 * BATCH, len(BANDS), TILE, TILE))  # warm-up: allocator, kernels
    before = proc.memory_info().rss
    t0 = time.perf_counter()
    if runner == "segment":
        time_segment(model, card, raster, out_dir)
    else:
        time_monai(model, normalized_array(raster, card))
    print(json.dumps({"rss_before_run": before, "peak_rss": _ru_maxrss(), "seconds": time.perf_counter() - t0}))


def measure_memory(runner: str, raster: str, out_dir: str) -> dict:
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--memory-child", runner, raster, out_dir],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
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

    return {
        "cpu": cpu,
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "numpy": np.__version__,
        "rasterio": rasterio.__version__,
        "gdal": rasterio.__gdal_version__,
        "monai": monai.__version__,
        "python": platform.python_version(),
        "os": platform.platform(),
        "load_average_at_start": [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "gpu": (
            torch.cuda.get_device_name(0) if torch.cuda.is_available() else "GPU not measured " "(no GPU in this run)"
        ),
    }


def update_results(section: dict) -> None:
    results_file.update_results("inference", section)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--memory-child", nargs=3, metavar=("RUNNER", "RASTER", "OUT_DIR"), help=argparse.SUPPRESS)
    ap.add_argument("--repeats", type=int, default=REPEATS)
    ap.add_argument("--hyper-child", nargs=3, metavar=("RASTER", "OUT_DIR", "MAX_TILES"), help=argparse.SUPPRESS)
    ap.add_argument(
        "--hyper-max-tiles",
        type=int,
        default=0,
        help="(d): stop each run after this many tiles "
        "(0 = whole rasters); the peak is reached within the first 256 rows",
    )
    ap.add_argument("--quick", action="store_true", help="tiny sizes, one repeat: checks the bench runs")
    ap.add_argument(
        "--rows",
        default="core,hyper,dask",
        help="which rows: core = (a)-(c), hyper = (d), dask = (e); default all. Without core the "
        "other rows already in bench/results.json are kept",
    )
    args = ap.parse_args()
    global SPEED_SIZE, MEM_SIZES, HYPER_TILE
    if args.quick:
        SPEED_SIZE, MEM_SIZES, args.repeats, HYPER_TILE = 128, (128, 512), 1, 256
    if args.memory_child:
        memory_child(*args.memory_child)
        return 0
    if args.hyper_child:
        hyper_memory_child(*args.hyper_child)
        return 0
    rows = {r.strip() for r in args.rows.split(",") if r.strip()}
    if not rows <= {"core", "hyper", "dask"}:
        ap.error(f"--rows: unknown {sorted(rows - {'core', 'hyper', 'dask'})}")
    extra = {}
    if rows & {"hyper", "dask"}:
        with tempfile.TemporaryDirectory(prefix="spectralx-bench-") as tmp:
            for key, make in (
                ("hyper", lambda: hyper_rows(tmp, args.hyper_max_tiles)),
                ("dask", lambda: dask_rows(tmp, max(1, min(args.repeats, 3)))),
            ):
                if key in rows:
                    load, t0 = [round(v, 2) for v in os.getloadavg()], time.perf_counter()
                    section = make()
                    section.update(
                        date=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                        load_average_at_start=load,
                        seconds=round(time.perf_counter() - t0, 1),
                    )
                    extra["d_hyperspectral_memory" if key == "hyper" else "e_dask"] = section
    if "core" not in rows:
        if not args.quick:
            import json as _json

            try:
                with open(RESULTS) as f:
                    section = _json.load(f).get("inference", {})
            except (OSError, ValueError):
                section = {}
            section.update(extra)
            update_results(section)
        print_extra(extra)
        return 0

    info = machine()
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="spectralx-bench-") as tmp:
        model, card = build_model()
        speed_raster = write_raster(os.path.join(tmp, "speed.tif"), SPEED_SIZE)
        x = normalized_array(speed_raster, card)
        tiles = tiles_of(x)
        timed = TimedModel(model)
        runs = {
            "bare_forward": lambda: time_bare(model, tiles),
            "segment": lambda: time_segment(timed, card, speed_raster, tmp),
            "monai": lambda: time_monai(model, x),
        }
        for fn in runs.values():  # warm-up (allocator, kernels, imports)
            fn()
        times = {k: [] for k in runs}
        inside = []  # forward time inside each segment() run
        order = list(runs)
        for i in range(args.repeats):  # interleaved, rotating order: same conditions
            for k in order[i % 3 :] + order[: i % 3]:
                timed.seconds = 0.0
                times[k].append(runs[k]())
                if k == "segment":
                    inside.append(timed.seconds)
        best = {k: min(v) for k, v in times.items()}
        median = {k: float(np.median(v)) for k, v in times.items()}
        own = [s - m for s, m in zip(times["segment"], inside)]  # pipeline's own time per run
        n_tiles = len(tiles)

        mem = {"segment": {}, "monai": {}}
        for size in MEM_SIZES:
            raster = write_raster(os.path.join(tmp, f"mem{size}.tif"), size, seed=1)
            for runner in mem:
                mem[runner][size] = measure_memory(runner, raster, tmp)
            os.remove(raster)

    mb = 2**20

    def memory_rows(runs: dict) -> dict:
        rows = {
            f"{s}x{s}": {
                "peak_rss_mb": round(runs[s]["peak_rss"] / mb, 1),
                "rss_before_run_mb": round(runs[s]["rss_before_run"] / mb, 1),
                "seconds": round(runs[s]["seconds"], 2),
            }
            for s in MEM_SIZES
        }
        rows["ratio_large_to_small"] = round(runs[MEM_SIZES[1]]["peak_rss"] / runs[MEM_SIZES[0]]["peak_rss"], 3)
        return rows

    section = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": info,
        "setup": {
            "preset": PRESET,
            "tile": TILE,
            "bands": len(BANDS),
            "classes": CLASSES,
            "overlap": OVERLAP,
            "batch_size": BATCH,
            "repeats": args.repeats,
            "speed_raster_px": [SPEED_SIZE, SPEED_SIZE],
            "tiles": n_tiles,
            "memory_rasters_px": [[s, s] for s in MEM_SIZES],
            "model": "random weights (timing and memory do not depend on them); segment() gets the "
            "loaded model, so checkpoint loading is not timed",
        },
        "a_overhead": {
            "bare_forward_s": round(best["bare_forward"], 3),
            "segment_s": round(best["segment"], 3),
            "ratio": round(best["segment"] / best["bare_forward"], 3),
            "target": "<= 1.15 on CPU",
            "segment_tiles_per_s": round(n_tiles / best["segment"], 1),
            "median_ratio": round(median["segment"] / median["bare_forward"], 3),
            "pipeline_own_s_median": round(float(np.median(own)), 3),
            "same_run_ratio_median": round(float(np.median([s / m for s, m in zip(times["segment"], inside)])), 4),
            "pipeline_own_fraction_median": round(float(np.median([o / s for o, s in zip(own, times["segment"])])), 4),
            "all_runs_s": {k: [round(t, 3) for t in v] for k, v in times.items()},
        },
        "b_memory": {
            **memory_rows(mem["segment"]),
            "target": "<= 1.25",
            "monai_reference": memory_rows(mem["monai"]),
            "note": "peak RSS of the whole process (torch, model, one warm-up batch included); each "
            "run in a fresh subprocess; MONAI holds the normalized raster and its "
            "probabilities in memory",
        },
        "c_monai": {
            "monai_s": round(best["monai"], 3),
            "segment_s": round(best["segment"], 3),
            "speedup": round(best["monai"] / best["segment"], 3),
            "median_speedup": round(median["monai"] / median["segment"], 3),
            "target": "segment at least as fast (speedup >= 1)",
            "note": "MONAI gets the normalized array in memory and writes nothing; segment reads "
            "the GeoTIFF and writes class raster + style",
        },
        "gpu": info["gpu"] if torch.cuda.is_available() else "GPU not measured",
        "bench_seconds": None,
    }
    section.update(extra)
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
        (
            "(a) pipeline's own time",
            f"{100 * a['pipeline_own_fraction_median']:.1f} %",
            f"of segment() outside its forward passes (same-run ratio {a['same_run_ratio_median']:.3f})",
        ),
        (f"(b) peak RSS {s0}", f"{b[s0]['peak_rss_mb']:.0f} MB", f"MONAI {bm[s0]['peak_rss_mb']:.0f} MB"),
        (f"(b) peak RSS {s1} (16x)", f"{b[s1]['peak_rss_mb']:.0f} MB", f"MONAI {bm[s1]['peak_rss_mb']:.0f} MB"),
        (
            "(b) ratio large/small",
            f"{b['ratio_large_to_small']:.3f}",
            f"target <= 1.25 (MONAI {bm['ratio_large_to_small']:.3f})",
        ),
        ("(c) MONAI sliding_window", f"{c['monai_s']:.2f} s", "gaussian, in memory"),
        ("(c) MONAI / segment", f"{c['speedup']:.3f}", f"target >= 1 (median {c['median_speedup']:.3f})"),
    ]
    print(
        f"\nSpectralX inference bench ({PRESET}, tile {TILE}, overlap {OVERLAP}, batch {BATCH}, "
        f"best of {args.repeats})"
    )
    print(
        f"machine: {info['cpu']}, {info['logical_cores']} cores, {info['ram_gb']} GB RAM, torch {info['torch']}; "
        f"{section['gpu']}; load average {info['load_average_at_start']} -> {section['load_average_at_end']}"
    )
    for name, value, note in rows:
        print(f"  {name:<28} {value:>10}   {note}")
    print_extra(extra)
    print(f"results: {os.path.relpath(RESULTS)} [inference] ({section['bench_seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
