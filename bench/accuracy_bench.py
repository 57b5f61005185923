"""Accuracy bench (issue 4): EnMAP Potsdam split, SpectralX vs a random forest vs full fine-tuning.

Data: bench/fixtures/enmap_potsdam (18 EnMAP L2A tiles of 32x32 px, 224 bands, 30 m, with level-3
land-cover labels; the published 14/2/2 train/validation/test split). The tiles are put back on
their scene grid (file names give their pixel offsets) as three partial scenes, one per split, with
nodata elsewhere: what an analyst would open, and no pixel of one split is visible in another.

Compared, side by side in one run, on the same training pixels (all labelled pixels of the train
tiles), evaluated by `spectralx.evaluate` on the test tiles:

  * SpectralX, tiny preset (ViT-Tiny backbone, frozen), fine-tuned with `spectralx.training.finetune`
    (validation tiles for early stopping), test scene segmented with `spectralx.inference.segment`;
  * optionally SpectralX with stage 1 first (`pretrain` on the unlabelled train + validation scenes);
  * a random forest on per-pixel spectra (scikit-learn, 300 trees);
  * the same network with the backbone unfrozen (full fine-tuning; same steps, data and schedule).

Reports mIoU (over the classes present in the test labels), OA, kappa, trainable parameters and
training time, as a table and as the "accuracy" section of bench/results.json.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import glob
import json
import os
import platform
import re
import sys
import tempfile
import time

import numpy as np

import results_file  # bench/ is the script's folder, first on sys.path

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "fixtures", "enmap_potsdam")
RESULTS = results_file.RESULTS
REPO = os.path.dirname(HERE)
DEMO_BACKBONE = os.path.join(REPO, "resources", "models", "demo-backbone.safetensors")
TILE = 64
NODATA = -32768.0
CLASSES = [  # EnMAP-Box level-3 legend (checked against landcover_potsdam_polygon.level_3.qml)
    {"value": 1, "name": "roof", "color": "#e31a1c"},
    {"value": 2, "name": "pavement", "color": "#969696"},
    {"value": 3, "name": "low vegetation", "color": "#a6d96a"},
    {"value": 4, "name": "tree", "color": "#1b7837"},
    {"value": 5, "name": "soil", "color": "#a6611a"},
    {"value": 6, "name": "water", "color": "#1f78b4"},
]


def _split(name):
    import csv
    with open(os.path.join(DATA, f"{name}_files.csv")) as f:
        return [(os.path.join(DATA, r["image"]), os.path.join(DATA, r["mask"])) for r in csv.DictReader(f)]


def build_scenes(folder: str, scale: int = 1) -> dict:
    """One partial scene per split (train/validation/test) on the common scene grid.

    scale > 1 resamples the scenes (nearest neighbour) onto a grid `scale` times finer: a 16x16 px
    token then spans (16/scale)^2 EnMAP pixels. Labels are resampled the same way, so every original
    pixel counts scale^2 times and the accuracy ratios (OA, IoU, F1) are those of the original grid."""
    import rasterio
    from rasterio.transform import Affine
    splits = {k: _split(k) for k in ("train", "validation", "test")}
    tiles = [t for v in splits.values() for t in v]
    offsets = {}
    for img, _ in tiles:
        x, y = map(int, re.search(r"_(\d+)_(\d+)\.tif$", img).groups())
        offsets[img] = (x, y)
    with rasterio.open(tiles[0][0]) as ds:
        x0, y0 = offsets[tiles[0][0]]
        t = ds.transform
        scene_tr = Affine(t.a, 0, t.c - x0 * t.a, 0, t.e, t.f - y0 * t.e)
        band_tags = [ds.tags(i) for i in range(1, ds.count + 1)]
        descriptions = ds.descriptions
        crs, count, ts = ds.crs, ds.count, ds.width
    cols = [o[0] for o in offsets.values()]
    rows = [o[1] for o in offsets.values()]
    c0, r0 = min(cols), min(rows)
    width, height = max(cols) + ts - c0, max(rows) + ts - r0
    tr = scene_tr * Affine.translation(c0, r0) * Affine.scale(1.0 / scale)
    out = {}
    for split, items in splits.items():
        img = np.full((count, height, width), NODATA, np.float32)
        lab = np.zeros((height, width), np.uint8)
        for ip, lp in items:
            x, y = offsets[ip]
            with rasterio.open(ip) as ds:
                img[:, y - r0:y - r0 + ts, x - c0:x - c0 + ts] = ds.read()
            with rasterio.open(lp) as ds:
                lab[y - r0:y - r0 + ts, x - c0:x - c0 + ts] = ds.read(1).astype(np.uint8)
        if scale > 1:
            img = img.repeat(scale, 1).repeat(scale, 2)
            lab = lab.repeat(scale, 0).repeat(scale, 1)
        ipath = os.path.join(folder, f"{split}_scene_x{scale}.tif")
        lpath = os.path.join(folder, f"{split}_labels_x{scale}.tif")
        with rasterio.open(ipath, "w", driver="GTiff", width=width * scale, height=height * scale, count=count,
                           dtype="float32",
                           crs=crs, transform=tr, nodata=NODATA, tiled=True, blockxsize=64, blockysize=64,
                           interleave="pixel") as ds:
            ds.write(img)
            for i, tags in enumerate(band_tags, 1):
                ds.update_tags(i, **tags)
                ds.set_band_description(i, descriptions[i - 1] or f"band {i}")
        with rasterio.open(lpath, "w", driver="GTiff", width=width * scale, height=height * scale, count=1,
                           dtype="uint8",
                           crs=crs, transform=tr, nodata=0) as ds:
            ds.write(lab, 1)
        out[split] = (ipath, lpath, len(items), int((lab > 0).sum()) // (scale * scale))
    out["grid"] = (width, height)
    out["scale"] = scale
    return out


def random_backbone(folder: str) -> str:
    import torch
    from spectralx.backbone_io import save_backbone
    from spectralx.config import ModelConfig
    from spectralx.model.backbone import VisionTransformer
    torch.manual_seed(0)
    cfg = ModelConfig.from_preset("vit_tiny_patch16", img_size=TILE)
    path = os.path.join(folder, "random-vit-tiny.safetensors")
    save_backbone(VisionTransformer(cfg).state_dict(), cfg, path,
                  "RANDOM-INIT ViT-Tiny (no pretraining): bench fallback, not an optical foundation model")
    return path


def evaluate_raster(pred: str, labels: str) -> dict:
    from spectralx.evaluate import evaluate
    r = evaluate(pred, labels)
    return {"miou": r["miou"], "overall_accuracy": r["overall_accuracy"], "kappa": r["kappa"],
            "mean_f1": r["mean_f1"], "test_pixels": r["pixels"],
            "per_class_iou": {c["name"]: round(c["iou"], 4) for c in r["per_class"] if c["in_reference"]}}


def run_spectralx(scenes, backbone, folder, args, *, unfreeze=False, checkpoint=None, name="spectralx"):
    from spectralx.inference import segment
    from spectralx.training import finetune
    train_img, train_lab = scenes["train"][:2]
    val_img, val_lab = scenes["validation"][:2]
    test_img, test_lab = scenes["test"][:2]
    out = None if unfreeze else os.path.join(folder, f"{name}.safetensors")
    t0 = time.perf_counter()
    res = finetune(train_img, train_lab, out, classes=CLASSES, checkpoint=checkpoint,
                   backbone=backbone, tile_size=None if checkpoint else TILE, steps=args.steps,
                   batch_size=args.batch_size, lr=args.lr, val_images=[val_img], val_labels=[val_lab],
                   eval_every=args.eval_every, patience=args.patience, device="cpu", seed=args.seed,
                   unfreeze_backbone=unfreeze, command=f"bench/accuracy_bench.py ({name})")
    train_s = time.perf_counter() - t0
    pred = os.path.join(folder, f"{name}_test.tif")
    t1 = time.perf_counter()
    segment(test_img, None, pred, model=(res.model, res.card), device="cpu", overwrite=True, style=False)
    predict_s = time.perf_counter() - t1
    if scenes.get("scale", 1) > 1:     # back to the 30 m grid: majority of each scale x scale block
        pred = to_native(pred, scenes["scale"], scenes["native_test_labels"])
        test_lab = scenes["native_test_labels"]
    row = evaluate_raster(pred, test_lab)
    tr = res.card.training
    row.update({"trainable_parameters": tr["trainable_parameters"], "total_parameters": tr["total_parameters"],
                "train_seconds": round(train_s, 1), "predict_seconds": round(predict_s, 1),
                "steps_run": tr["steps_run"], "best_step": res.metrics.get("best_step"),
                "val_miou": res.metrics.get("val_miou")})
    return row, res


def to_native(pred_path: str, scale: int, native_like: str) -> str:
    """Majority vote of each scale x scale block of a class raster, on the native grid of `native_like`."""
    import rasterio
    from spectralx.outputs import class_raster_profile
    with rasterio.open(pred_path) as ds:
        p = ds.read(1)
        tags = ds.tags(1)
    with rasterio.open(native_like) as ds:
        w, h, crs, tr = ds.width, ds.height, ds.crs, ds.transform
    blocks = p.reshape(h, scale, w, scale).transpose(0, 2, 1, 3).reshape(h, w, scale * scale)
    counts = np.stack([(blocks == v).sum(-1) for v in range(1, 256) if (p == v).any()], -1) if p.any() else None
    values = [v for v in range(1, 256) if (p == v).any()]
    out = np.zeros((h, w), np.uint8)
    if counts is not None:
        out = np.asarray(values, np.uint8)[counts.argmax(-1)]
        out[counts.max(-1) == 0] = 0
    path = pred_path.replace(".tif", "_native.tif")
    with rasterio.open(path, "w", **class_raster_profile(w, h, crs, tr)) as ds:
        ds.write(out, 1)
        ds.update_tags(1, **tags)
    return path


def run_random_forest(scenes, folder, args):
    import rasterio
    from sklearn.ensemble import RandomForestClassifier
    from spectralx.outputs import class_raster_profile
    from spectralx.training.rasters import scene_statistics, SimpleMapping, normalize, read_mapped

    def pixels(img, lab):
        with rasterio.open(img) as ds:
            mapping = SimpleMapping.identity(ds.count)
            x = read_mapped(ds, mapping)
            prof = (ds.width, ds.height, ds.crs, ds.transform)
        with rasterio.open(lab) as ds:
            y = ds.read(1)
        return x, y, mapping, prof

    train_img, train_lab = scenes["train"][:2]
    test_img, test_lab = scenes["test"][:2]
    xtr, ytr, mapping, _ = pixels(train_img, train_lab)
    norm, _ = scene_statistics([train_img], [mapping])
    valid_tr = np.isfinite(xtr).any(0) & (ytr > 0)
    ftr = normalize(xtr, norm)[:, valid_tr].T           # same spectra the network sees (nodata -> 0)
    t0 = time.perf_counter()
    rf = RandomForestClassifier(n_estimators=300, n_jobs=args.jobs, random_state=args.seed)
    rf.fit(ftr, ytr[valid_tr])
    train_s = time.perf_counter() - t0
    xte, _, _, (w, h, crs, tr) = pixels(test_img, test_lab)
    valid_te = np.isfinite(xte).any(0)
    t1 = time.perf_counter()
    pred = np.zeros((h, w), np.uint8)
    pred[valid_te] = rf.predict(normalize(xte, norm)[:, valid_te].T)
    predict_s = time.perf_counter() - t1
    path = os.path.join(folder, "rf_test.tif")
    from spectralx.outputs import class_tags
    from spectralx.training.classes import parse_classes
    with rasterio.open(path, "w", **class_raster_profile(w, h, crs, tr)) as ds:
        ds.write(pred, 1)
        ds.update_tags(1, **class_tags(parse_classes(CLASSES)))
    row = evaluate_raster(path, test_lab)
    n_nodes = sum(est.tree_.node_count for est in rf.estimators_)
    row.update({"trainable_parameters": None, "tree_nodes": int(n_nodes), "train_seconds": round(train_s, 1),
                "predict_seconds": round(predict_s, 1), "training_pixels": int(valid_tr.sum())})
    return row


def run_pretrain(scenes, backbone, folder, args):
    from spectralx.training import pretrain
    t0 = time.perf_counter()
    res = pretrain([scenes["train"][0], scenes["validation"][0]], os.path.join(folder, "stage1.safetensors"),
                   backbone=backbone, tile_size=TILE, steps=args.pretrain_steps, batch_size=args.batch_size,
                   device="cpu", seed=args.seed, command="bench/accuracy_bench.py (stage 1)")
    return res.checkpoint, round(time.perf_counter() - t0, 1), res.metrics


def update_results(section: dict) -> None:
    results_file.update_results("accuracy", section)


def fmt_params(n):
    return "-" if n is None else (f"{n / 1e6:.2f} M" if n >= 1e5 else f"{n / 1e3:.1f} k")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--eval-every", type=int, default=25)
    ap.add_argument("--patience", type=int, default=6)
    ap.add_argument("--scale", type=int, default=4,
                    help="grid refinement for the main SpectralX rows (nearest resampling; 1 = native 30 m)")
    ap.add_argument("--no-native", action="store_true", help="skip the SpectralX row on the native 30 m grid")
    ap.add_argument("--pretrain-steps", type=int, default=200,
                    help="also run stage 1 (masked reconstruction) for N steps before fine-tuning (0: skip)")
    ap.add_argument("--skip-full", action="store_true", help="skip the full fine-tuning row")
    ap.add_argument("--backbone", help="backbone file (default: resources/models/demo-backbone.safetensors, "
                    "else a random-init ViT-Tiny, labelled as such)")
    ap.add_argument("--jobs", type=int, default=2, help="random forest worker processes")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, help="torch threads (default: all cores, or 1 when the machine "
                    "is already busy: spinning OpenMP threads on a shared CPU are many times slower)")
    args = ap.parse_args()
    import torch
    load_start = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    busy = bool(load_start) and load_start[0] > (os.cpu_count() or 1)
    torch.set_num_threads(args.threads or (1 if busy else (os.cpu_count() or 1)))
    t_start = time.perf_counter()
    rows, labels, grids = {}, {}, {}
    with tempfile.TemporaryDirectory(prefix="spectralx-accuracy-") as folder:
        os.makedirs(os.path.join(folder, "x1"))
        native = build_scenes(os.path.join(folder, "x1"), 1)
        fine = native
        if args.scale > 1:
            os.makedirs(os.path.join(folder, f"x{args.scale}"))
            fine = build_scenes(os.path.join(folder, f"x{args.scale}"), args.scale)
            fine["native_test_labels"] = native["test"][1]
        backbone = args.backbone or (DEMO_BACKBONE if os.path.isfile(DEMO_BACKBONE) else None)
        if backbone:
            from spectralx.backbone_io import backbone_description
            from spectralx.safefile import sha256_file
            desc = (backbone_description(backbone) or {}).get("description", "") or os.path.basename(backbone)
            where = os.path.relpath(backbone, REPO) if os.path.abspath(backbone).startswith(REPO) else backbone
            backbone_note = f"{where} (sha256 {sha256_file(backbone)[:12]}): {desc}"
        else:
            backbone = random_backbone(folder)
            backbone_note = ("RANDOM-INIT ViT-Tiny (resources/models/demo-backbone.safetensors was not "
                             "available): the frozen backbone carries no pretrained knowledge")
        print(f"backbone: {backbone_note[:160]}", flush=True)
        sx = f"x{args.scale}"
        res_m = 30.0 / args.scale
        print("random forest (300 trees, per-pixel spectra) ...", flush=True)
        rows["random_forest"] = run_random_forest(native, folder, args)
        labels["random_forest"] = "Random forest, 300 trees, per-pixel spectra"
        grids["random_forest"] = "30 m (per pixel)"
        if not args.no_native and args.scale > 1:
            print("SpectralX tiny, backbone frozen, native 30 m grid ...", flush=True)
            rows["spectralx_frozen_x1"], _ = run_spectralx(native, backbone, folder, args, name="spectralx_x1")
            labels["spectralx_frozen_x1"] = "SpectralX tiny, backbone frozen"
            grids["spectralx_frozen_x1"] = "30 m (native)"
        print(f"SpectralX tiny, backbone frozen, {sx} grid ...", flush=True)
        key = f"spectralx_frozen_{sx}"
        rows[key], _ = run_spectralx(fine, backbone, folder, args, name=f"spectralx_{sx}")
        labels[key] = "SpectralX tiny, backbone frozen"
        grids[key] = f"{res_m:g} m ({sx} nearest)"
        main_key = key
        stage1 = None
        if args.pretrain_steps:
            print(f"SpectralX stage 1 ({args.pretrain_steps} steps) + stage 2, {sx} grid ...", flush=True)
            ck, pre_s, pre_m = run_pretrain(fine, backbone, folder, args)
            key = f"spectralx_stage1_frozen_{sx}"
            rows[key], _ = run_spectralx(fine, backbone, folder, args, checkpoint=ck,
                                         name=f"spectralx_stage1_{sx}")
            rows[key]["pretrain_seconds"] = pre_s
            rows[key]["pretrain_masked_mse"] = [round(pre_m["masked_mse_first"], 4),
                                                round(pre_m["masked_mse_final"], 4)]
            labels[key] = "SpectralX tiny, stage 1 + stage 2, frozen"
            grids[key] = grids[main_key]
            stage1 = {"steps": args.pretrain_steps, "seconds": pre_s, "images": "train + validation scenes (unlabelled)"}
        if not args.skip_full:
            print(f"same network, backbone unfrozen (full fine-tune), {sx} grid ...", flush=True)
            key = f"full_finetune_{sx}"
            rows[key], _ = run_spectralx(fine, backbone, folder, args, unfreeze=True, name=f"full_{sx}")
            labels[key] = "Same network, backbone unfrozen (full FT)"
            grids[key] = grids[main_key]
    best_sx = max((k for k in rows if k.startswith("spectralx")), key=lambda k: rows[k]["miou"])
    rf = rows["random_forest"]
    section = {
        "what": "EnMAP Potsdam 14/2/2 tile split (bench/fixtures/enmap_potsdam): train tiles -> test tiles; "
                "validation tiles for early stopping; mIoU over the classes present in the test labels "
                "(5: the test tiles hold no water); every method trains on the same labelled pixels",
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
                    "platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "load_average_at_start": [round(v, 2) for v in load_start] if load_start else None,
                    "shared": "the 2 cores were shared with other jobs; times are wall-clock",
                    "torch": torch.__version__},
        "backbone": backbone_note,
        "settings": {"tile_size": TILE, "steps": args.steps, "batch_size": args.batch_size, "lr": args.lr,
                     "eval_every": args.eval_every, "patience": args.patience, "seed": args.seed,
                     "scale": args.scale, "stage1": stage1},
        "data": {k: {"tiles": native[k][2], "labelled_pixels": native[k][3]} for k in ("train", "validation", "test")},
        "evaluation": "spectralx.evaluate on the native 30 m test grid; predictions made on a finer grid are "
                      "first reduced to 30 m by a majority vote over each block",
        "rows": {k: {"method": labels[k], "grid": grids[k], **v} for k, v in rows.items()},
        "targets": {
            "spectralx_beats_random_forest_miou": rows[best_sx]["miou"] > rf["miou"],
            "best_spectralx_row": best_sx,
            "spectralx_finetune_seconds_max": max(r["train_seconds"] for k, r in rows.items() if k.startswith("spectralx")),
            "spectralx_finetune_under_600_s": all(r["train_seconds"] < 600 for k, r in rows.items()
                                                  if k.startswith("spectralx")),
        },
        "bench_seconds": round(time.perf_counter() - t_start, 1),
    }
    update_results(section)
    print()
    print(f"Accuracy on the EnMAP Potsdam test tiles ({native['test'][3]} labelled px), {os.cpu_count()} CPU "
          f"cores, {torch.get_num_threads()} torch thread(s), load {section['machine']['load_average_at_start']}")
    print(f"backbone: {backbone_note[:200]}")
    head = (f"{'method':<44} {'grid':<18} {'mIoU':>6} {'OA':>6} {'kappa':>6} {'trainable':>10} "
            f"{'train s':>8}")
    print(head)
    print("-" * len(head))
    for k, r in rows.items():
        print(f"{labels[k]:<44} {grids[k]:<18} {r['miou']:6.3f} {r['overall_accuracy']:6.3f} {r['kappa']:6.3f} "
              f"{fmt_params(r.get('trainable_parameters')):>10} {r['train_seconds']:8.1f}")
    print(f"results: {os.path.relpath(RESULTS)} [accuracy] ({section['bench_seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
