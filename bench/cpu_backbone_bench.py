"""Real backbones on the CPU (issue 22): fp32 vs bf16 vs int8 side by side, and fine-tuning steps/s.

SpectralX with ViT-B/16 and ViT-L/16 (random weights, the real shapes: 32 bands, 224 px tiles,
8 classes), on a real raster: the EnMAP sample upsampled 2x (32 of its 224 bands, z-scored with the
sample's own statistics). For each path, in one run:

  segment  tiles/s of `segment()` over the raster (reads, blending, writes included)
  bare     tiles/s of the batched forward over the same tiles already in memory
  paths    fp32 (torch eager, NCHW: the reference), fp32_cl (the same, channels-last convolutions:
           segment()'s CPU default for tiles >= 128 px), int8 (torch: backbone linears dynamic int8), and with
           onnxruntime installed onnx_fp32 / onnx_int8 (the network exported to ONNX Runtime, float32 /
           backbone linears int8; export and quantization timed apart as onnx_build_seconds)
  agree    arg-max agreement with fp32 on the bare tiles, over the pixels fp32 decides (top two
           probabilities >= 0.01 apart) and over all pixels, and the mean |dp|; plus the share of
           segment()'s class raster equal to fp32's

Ratios to fp32 are the figures to read: the dev machine is shared, so absolute times move with the
load, but the paths run interleaved and suffer it alike. bf16 (CPU autocast) runs one tile of ViT-B
only by default: without native bf16 (AVX512-BF16/AMX) it is emulated and tens of times slower
(`--bf16-large` adds ViT-L). `auto` is what `--precision auto` chose on this machine (its own check).

finetune: seconds per stage-2 step (batch 4, 224 px: forward, cross-entropy, backward through the
frozen backbone to the adapters, gradient clip, AdamW), a few steps timed after one warm-up, and the
time for the default 300 steps EXTRAPOLATED from them (no validation passes counted).

    python bench/cpu_backbone_bench.py [--presets vit_base_patch16,vit_large_patch16] [--steps 2]

Updates the "cpu_backbone" section of bench/results.json.
"""

from __future__ import annotations

import argparse
import copy
import datetime as _dt
import os
import platform
import sys
import tempfile
import time
import warnings

import numpy as np
import rasterio
import results_file  # bench/ is the script's folder, first on sys.path
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ENMAP = os.path.join(os.path.dirname(HERE), "resources", "sample", "enmap_potsdam.tif")
BANDS = 32
CLASSES = 8
TILE = 224
OVERLAP = 0.25
BATCH = 4
# the raster window per preset: ViT-B 4 tiles, ViT-L 2 (width, height of the 2x EnMAP sample: 320 x 384)
# at least BATCH tiles per preset: the ONNX Runtime session has a fixed batch and pads a short one,
# so 2 tiles in a batch-4 session would time twice the work of the torch paths
WINDOWS = {"vit_base_patch16": (0, 0, 320, 384), "vit_large_patch16": (0, 0, 320, 384)}
FINETUNE_STEPS = 300  # the default recipe's step count (training_default("finetune", "steps"))

warnings.filterwarnings("ignore", message=".*(deprecated|quantiz).*")


def machine() -> str:
    cpu = platform.processor() or "cpu"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads"


# -- fixtures -------------------------------------------------------------------------------------


def band_indexes() -> list:
    """32 of the sample's bands with data (absorption bands are empty), evenly spread (1-based)."""
    with rasterio.open(ENMAP) as ds:
        data = ds.read()
        good = [i + 1 for i in range(ds.count) if ((data[i] != ds.nodata) & (data[i] != 0)).any()]
    return [good[int(i)] for i in np.linspace(0, len(good) - 1, BANDS).round()]


def write_upsampled(path: str) -> tuple:
    """The EnMAP sample, 2x nearest-neighbour, as a GeoTIFF; returns (path, wavelengths, mean, std)."""
    idx = band_indexes()
    with rasterio.open(ENMAP) as src:
        data = src.read(idx)
        profile = src.profile
        waves = [float(src.tags(i).get("wavelength", 400 + 8 * i)) for i in idx]
        nodata = src.nodata
    up = data.repeat(2, axis=1).repeat(2, axis=2)
    profile.update(
        count=BANDS,
        width=up.shape[2],
        height=up.shape[1],
        transform=profile["transform"] * profile["transform"].scale(0.5, 0.5),
        tiled=True,
        blockxsize=256,
        blockysize=256,
        compress=None,
    )
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(up)
    valid = (up != nodata) & (up != 0) if nodata is not None else up != 0
    mean = [float(up[b][valid[b]].mean()) for b in range(BANDS)]
    std = [float(up[b][valid[b]].std() + 1.0) for b in range(BANDS)]
    return path, waves, mean, std


def build(preset: str, waves, mean, std):
    from spectralx.checkpoint import BackboneRef, Band, ClassInfo, ModelCard, Normalization
    from spectralx.config import ModelConfig
    from spectralx.model import SpectralX

    torch.manual_seed(0)
    cfg = ModelConfig.from_preset(preset, in_bands=BANDS, num_classes=CLASSES, img_size=TILE)
    net = SpectralX(cfg, torch.tensor(waves))
    net.set_stage("frozen")
    card = ModelCard(
        architecture=cfg.to_dict(),
        bands=[Band(f"B{i + 1}", w, 10.0) for i, w in enumerate(waves)],
        classes=[
            ClassInfo(i + 1, f"class {i + 1}", "#%02x%02x%02x" % (30 * i, 200 - 20 * i, 90)) for i in range(CLASSES)
        ],
        backbone=BackboneRef("bench", "0" * 64, preset),
        normalization=Normalization("zscore", mean, std, 6.0),
    )
    return net.eval(), card


def identity_mapping():
    from spectralx.bands import BandMapping

    return BandMapping(
        source_indexes=list(range(1, BANDS + 1)),
        weights=np.eye(BANDS, dtype=np.float32),
        fill=[False] * BANDS,
        rows=[{} for _ in range(BANDS)],
    )


def tiles_of(raster: str, card, window) -> torch.Tensor:
    """The tiles segment() runs over the window (same plan), normalized, stacked in memory."""
    from rasterio.windows import Window

    from spectralx.inference import plan_tiles
    from spectralx.inference.prepare import Preparer

    c0, r0, w, h = window
    with rasterio.open(raster) as ds:
        raw = ds.read(window=Window(c0, r0, w, h), out_dtype=np.float32)
    x, _ = Preparer(np.eye(BANDS, dtype=np.float32), None, card.normalization)(raw, None)
    plan = plan_tiles(h, w, TILE, OVERLAP)
    return torch.stack(
        [torch.from_numpy(np.ascontiguousarray(x[:, y : y + TILE, c : c + TILE])) for y in plan.ys for c in plan.xs]
    )


# -- measurements ---------------------------------------------------------------------------------


def bare(net, tiles: torch.Tensor, autocast: bool = False):
    """(seconds, logits) of the batched forward over `tiles`."""
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else torch.autocast("cpu", enabled=False)
    out = []
    t0 = time.perf_counter()
    with torch.inference_mode(), ctx:
        for i in range(0, len(tiles), BATCH):
            out.append(net(tiles[i : i + BATCH]).float())
    return time.perf_counter() - t0, torch.cat(out)


def run_segment(net, card, raster, window, out_dir, name):
    """segment() with `net` as it is (the path's module, built beforehand: precision "fp32" keeps it)."""
    from spectralx.inference import job, segment

    out = os.path.join(out_dir, f"{name}.tif")
    # the reference stays NCHW: segment() would otherwise turn it channels-last in place
    keep = job.CPU_CHANNELS_LAST_MIN_TILE
    job.CPU_CHANNELS_LAST_MIN_TILE = 10**9 if name == "fp32" else keep
    t0 = time.perf_counter()
    res = segment(
        raster,
        None,
        out,
        band_map=identity_mapping(),
        model=(net, card),
        window=window,
        overlap=OVERLAP,
        batch_size=BATCH,
        device="cpu",
        precision="fp32",
        overwrite=True,
    )
    seconds = time.perf_counter() - t0
    job.CPU_CHANNELS_LAST_MIN_TILE = keep
    with rasterio.open(out) as ds:
        return seconds, res.tiles - res.skipped_tiles, ds.read(1), res.precision


def finetune_steps(preset, waves, steps: int) -> float:
    """Seconds per stage-2 training step (best of `steps` after one warm-up)."""
    from spectralx.config import ModelConfig
    from spectralx.model import SpectralX

    torch.manual_seed(0)
    cfg = ModelConfig.from_preset(preset, in_bands=BANDS, num_classes=CLASSES, img_size=TILE)
    net = SpectralX(cfg, torch.tensor(waves))
    net.set_stage("finetune")
    net.train()
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    x = torch.randn(BATCH, BANDS, TILE, TILE)
    y = torch.randint(0, CLASSES, (BATCH, TILE, TILE))
    best = float("inf")
    for i in range(steps + 1):
        t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(net(x), y) + 0.01 * net.balance_loss()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if i:  # the first step allocates the optimizer state and oneDNN primitives
            best = min(best, time.perf_counter() - t0)
    del net, opt
    return best


def bench_preset(preset, raster, waves, mean, std, bf16: bool, out_dir, onnx: bool = True) -> dict:
    from spectralx.inference import onnx_runtime as O
    from spectralx.inference import precision as P

    net, card = build(preset, waves, mean, std)
    window = WINDOWS.get(preset, (0, 0, 320, 224))
    tiles = tiles_of(raster, card, window)
    # fp32: torch eager in NCHW, the reference; fp32_cl: the same weights with channels-last
    # convolutions, which segment() now uses on the CPU for tiles of >= 128 px (inference/job.py)
    paths = {"fp32": net, "fp32_cl": copy.deepcopy(net).to(memory_format=torch.channels_last), "int8": P.int8_copy(net)}
    row = {"tiles": len(tiles), "window": list(window), "torch_threads": torch.get_num_threads()}
    if onnx and O.available():
        t0 = time.perf_counter()
        ort = O.build(net, BATCH)
        row["onnx_build_seconds"] = round(time.perf_counter() - t0, 1)  # export + quantize + sessions
        paths.update({"onnx_fp32": ort["fp32"], "onnx_int8": ort["int8"]})
        # the same net's check with the ONNX candidates must reuse these sessions, not export again
        P._CACHE.setdefault(net, {})[f"onnx:{BATCH}"] = dict(ort)
    elif onnx:
        row["onnx"] = "onnxruntime not installed (pip install 'spectralx-qgis[onnx]')"
    # bare forward: every path interleaved, best of two rounds
    best = {name: float("inf") for name in paths}
    logits = {}
    for _ in range(2):
        for name, m in paths.items():
            s, logits[name] = bare(m, tiles)
            best[name] = min(best[name], s)
    for name in best:
        row[f"bare_{name}_tiles_per_s"] = round(len(tiles) / best[name], 4)
        if name != "fp32":
            row[f"bare_{name}_ratio"] = round(best["fp32"] / best[name], 3)
            agree, agree_all, dp = P.compare(logits["fp32"], logits[name])
            row.update(
                {
                    f"{name}_agreement": round(agree, 4),
                    f"{name}_agreement_all_pixels": round(agree_all, 4),
                    f"{name}_mean_abs_dp": round(dp, 5),
                }
            )
    if bf16:
        s, lb = bare(net, tiles[:1], autocast=True)
        s32, _ = bare(net, tiles[:1])
        a, a_all, d = P.compare(logits["fp32"][:1], lb)
        row.update(
            bare_bf16_ratio_1tile=round(s32 / s, 3),
            bf16_agreement=round(a, 4),
            bf16_agreement_all_pixels=round(a_all, 4),
            bf16_mean_abs_dp=round(d, 5),
        )
    # segment(): each path over the raster (models built above: no export or quantization timed)
    seg = {}
    for name, m in paths.items():
        seg[name] = run_segment(m, card, raster, window, out_dir, name)
    computed = seg["fp32"][1]
    for name, (s, n, _, _ran) in seg.items():
        row[f"segment_{name}_tiles_per_s"] = round(n / s, 4)
        if name != "fp32":
            row[f"segment_{name}_ratio"] = round(seg["fp32"][0] / s, 3)
            row[f"segment_{name}_class_agreement"] = round(float((seg[name][2] == seg["fp32"][2]).mean()), 4)
    row["segment_over_bare_fp32"] = round(row["segment_fp32_tiles_per_s"] / row["bare_fp32_tiles_per_s"], 3)
    megapixels = window[2] * window[3] / 1e6
    row["segment_s_per_megapixel"] = {n: round(seg[n][0] / megapixels, 1) for n in seg}
    row["computed_tiles"] = computed
    # what auto chooses here (its own check: random tiles, two interleaved rounds; ONNX Runtime is a
    # candidate as for a job of >= ORT_MIN_TILES tiles)
    t0 = time.perf_counter()
    _, path = P.select(net, "cpu", "auto", batch=BATCH, tiles=None)
    row["auto"] = {
        "chose": path.name,
        "runtime": path.runtime,
        "check_seconds": round(time.perf_counter() - t0, 1),
        "note": path.note,
    }
    row["loadavg_after"] = [round(v, 2) for v in os.getloadavg()]
    del net, paths, tiles, logits
    return row


def table(rows: dict) -> str:
    names = ("fp32_cl", "int8", "onnx_fp32", "onnx_int8")
    lines = [
        f"{'':18} {'path':>10} {'bare x fp32':>11} {'segment x fp32':>14} {'agree':>7} {'all px':>7} "
        f"{'|dp|':>7} {'seg=':>6}"
    ]
    for preset, r in rows.items():
        for name in names:
            if f"bare_{name}_ratio" not in r:
                continue
            lines.append(
                f"{preset:18} {name:>10} {r[f'bare_{name}_ratio']:>10.2f}x {r[f'segment_{name}_ratio']:>13.2f}x "
                f"{r[f'{name}_agreement']:>7.2%} {r[f'{name}_agreement_all_pixels']:>7.2%} "
                f"{r[f'{name}_mean_abs_dp']:>7.4f} {r[f'segment_{name}_class_agreement']:>6.1%}"
            )
        bf = r.get("bare_bf16_ratio_1tile")
        ft = r.get("finetune_s_per_step")
        lines.append(
            f"{preset:18} auto chose {r['auto']['chose']} on {r['auto']['runtime']}; bf16/fp32 "
            f"{(f'{bf:.3f}x' if bf else '-')}; fine-tune {(f'{ft:.1f} s/step' if ft else '-')}"
            f"{(f', 300 steps {ft * FINETUNE_STEPS / 60:.0f} min*' if ft else '')}"
        )
    lines.append("* extrapolated from the timed steps")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", default="vit_base_patch16,vit_large_patch16")
    ap.add_argument(
        "--steps",
        type=int,
        default=2,
        help="fine-tuning steps timed after one warm-up " "(ViT-L: one fewer, at least 1)",
    )
    ap.add_argument("--no-finetune", action="store_true")
    ap.add_argument("--bf16-large", action="store_true", help="bf16 for ViT-L too (minutes)")
    ap.add_argument("--no-bf16", action="store_true", help="skip bf16 (it is emulated without AVX512-BF16)")
    ap.add_argument("--no-onnx", action="store_true", help="skip the ONNX Runtime rows")
    args = ap.parse_args()
    t_start = time.perf_counter()
    rows = {}
    with tempfile.TemporaryDirectory(prefix="spectralx-cpu-bench-") as tmp:
        raster, waves, mean, std = write_upsampled(os.path.join(tmp, "enmap_2x.tif"))
        for preset in args.presets.split(","):
            large = "large" in preset
            print(f"== {preset}", flush=True)
            rows[preset] = bench_preset(
                preset,
                raster,
                waves,
                mean,
                std,
                bf16=not args.no_bf16 and (not large or args.bf16_large),
                out_dir=tmp,
                onnx=not args.no_onnx,
            )
            if not args.no_finetune:
                s = finetune_steps(preset, waves, max(1, args.steps - (1 if large else 0)))
                rows[preset]["finetune_s_per_step"] = round(s, 2)
                rows[preset]["finetune_300_steps_min_extrapolated"] = round(s * FINETUNE_STEPS / 60, 1)
            print(rows[preset], flush=True)
            write(rows, t_start)  # after each preset: a cut-off run keeps what it measured
    print(table(rows))
    return 0


def write(rows: dict, t_start: float) -> None:
    section = {
        "when": _dt.datetime.now().isoformat(timespec="seconds"),
        "machine": machine(),
        "command": "python bench/cpu_backbone_bench.py " + " ".join(sys.argv[1:]),
        "setup": f"SpectralX random weights, {BANDS} bands, {TILE} px tiles, batch {BATCH}, overlap {OVERLAP}; "
        "raster: EnMAP sample upsampled 2x; fp32_cl = torch fp32 with channels-last convs (segment()'s CPU "
        "default for tiles >= 128 px); int8 = torch, backbone linears per-channel dynamic int8 + "
        "channels-last convs; onnx_fp32 = the whole network on ONNX Runtime in float32; onnx_int8 = "
        "the same with the backbone linears in dynamic int8 (per channel, reduced range); ratios are "
        "fp32 (torch eager, NCHW) time / path time in the same run",
        "seconds": round(time.perf_counter() - t_start, 1),
        "load_average_1_5_15_min": [round(v, 1) for v in os.getloadavg()],  # how shared the machine was
        "rows": _merged(rows),
    }
    results_file.update_results("cpu_backbone", section)


def _merged(rows: dict) -> dict:
    """This run's rows over the section's earlier ones: a preset not run now, or its fine-tuning
    figures with --no-finetune, stay as they were (each row says when it was measured)."""
    import json

    try:
        with open(results_file.RESULTS) as f:
            old = json.load(f).get("cpu_backbone", {})
    except (OSError, ValueError):
        old = {}
    when = old.get("when", "")
    out = {}
    for preset, row in old.get("rows", {}).items():
        out[preset] = {**row, "measured": row.get("measured", when)}
    now = _dt.datetime.now().isoformat(timespec="seconds")
    for preset, row in rows.items():
        kept = {
            k: v
            for k, v in out.get(preset, {}).items()
            if k.startswith("finetune") and "finetune_s_per_step" not in row
        }
        if kept:
            kept["finetune_measured"] = out[preset].get("finetune_measured", out[preset].get("measured", when))
        out[preset] = {**kept, **row, "measured": now}
    return out


if __name__ == "__main__":
    sys.exit(main())
