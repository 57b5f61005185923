"""Accuracy bench (issue 9): SpectralX against a random forest on two real dev cases, over seeds.

Every method trains on the same labelled pixels and is scored on the same held-out pixels (SPEC §7),
mean ± sd over seeds, with times:

  enmap    EnMAP L2A over Potsdam (bench/fixtures/enmap_potsdam: 224 bands, 30 m, 18 tiles of 32x32 px
           with level-3 land-cover labels). The published 14/2/2 tile split: train tiles -> test tiles,
           validation tiles for early stopping. Tiles go back on their scene grid, one partial scene
           per split (nodata elsewhere), so no pixel of one split is visible in another.
  landsat  Landsat 8 OLI (bench/fixtures/landsat8_224078: a crop of the scene, 3 bands B2/B3/B4, no
           wavelength metadata, so the sensor preset `landsat8:B2,B3,B4` supplies it) with its four
           hand-drawn polygons, one per class. Each polygon is cut in two halves along its longer axis;
           fold 1 trains on the first half of every polygon and tests on the second halves, fold 2
           the other way round. No validation is possible (one polygon per class), so the default
           recipe must work without early stopping. The 6 labelled points are a sanity check.

Methods (rows): the random forest; `spectralx finetune` with no tuning flags (what a user gets);
the paper-faithful variant; stage 1 (`pretrain` on the training image) + stage 2; LoRA; full
fine-tuning. `--quick` is a smoke run for `make test` (one seed, a few steps, forest + default).
"""

from __future__ import annotations

import argparse
import csv
import datetime as _dt
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
REPO = os.path.dirname(HERE)
ENMAP = os.path.join(HERE, "fixtures", "enmap_potsdam")
LANDSAT = os.path.join(HERE, "fixtures", "landsat8_224078")
DEMO_BACKBONE = os.path.join(REPO, "resources", "models", "demo-backbone.safetensors")
NODATA = -32768.0
ENMAP_CLASSES = [  # EnMAP-Box level-3 legend (checked against landcover_potsdam_polygon.level_3.qml)
    {"value": 1, "name": "roof", "color": "#e31a1c"},
    {"value": 2, "name": "pavement", "color": "#969696"},
    {"value": 3, "name": "low vegetation", "color": "#a6d96a"},
    {"value": 4, "name": "tree", "color": "#1b7837"},
    {"value": 5, "name": "soil", "color": "#a6611a"},
    {"value": 6, "name": "water", "color": "#1f78b4"},
]
LANDSAT_CLASSES = [
    {"value": 1, "name": "crop", "color": "#ffd92f"},
    {"value": 2, "name": "developed", "color": "#e31a1c"},
    {"value": 3, "name": "tree", "color": "#1b7837"},
    {"value": 4, "name": "water", "color": "#1f78b4"},
]
LANDSAT_SENSOR = "landsat8:B2,B3,B4"

# what each SpectralX row passes to finetune() on top of the data: only method-defining options, never
# tuning flags (the default recipe is what is measured)
METHODS = {
    "spectralx": {"label": "SpectralX default (no tuning flags)", "kwargs": {}},
    "paper": {"label": "SpectralX paper-faithful variant", "kwargs": {"variant": "paper"}},
    "stage1": {"label": "stage 1 (pretrain) + stage 2, default", "kwargs": {}, "stage1": True},
    "lora": {"label": "LoRA r16 (adapter blocks) + LayerNorms + head", "kwargs": {"method": "lora"}},
    "full": {"label": "full fine-tune (backbone unfrozen)", "kwargs": {"method": "full"}},
}


# --------------------------------------------------------------------------------------------------
# cases


def _write(path, arr, crs, transform, nodata, tags=None, descriptions=None):
    import rasterio

    count = 1 if arr.ndim == 2 else arr.shape[0]
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=arr.shape[-1],
        height=arr.shape[-2],
        count=count,
        dtype=arr.dtype.name,
        crs=crs,
        transform=transform,
        nodata=nodata,
        tiled=True,
        blockxsize=64,
        blockysize=64,
    ) as ds:
        ds.write(arr if arr.ndim == 3 else arr[None])
        for i, t in enumerate(tags or [], 1):
            ds.update_tags(i, **t)
        for i, d in enumerate(descriptions or [], 1):
            if d:
                ds.set_band_description(i, d)


def enmap_case(folder: str) -> dict:
    """One partial scene per split (train/validation/test) on the common scene grid."""
    import rasterio
    from rasterio.transform import Affine

    def split(name):
        with open(os.path.join(ENMAP, f"{name}_files.csv")) as f:
            return [(os.path.join(ENMAP, r["image"]), os.path.join(ENMAP, r["mask"])) for r in csv.DictReader(f)]

    splits = {k: split(k) for k in ("train", "validation", "test")}
    tiles = [t for v in splits.values() for t in v]
    offsets = {img: tuple(map(int, re.search(r"_(\d+)_(\d+)\.tif$", img).groups())) for img, _ in tiles}
    with rasterio.open(tiles[0][0]) as ds:
        x0, y0 = offsets[tiles[0][0]]
        t = ds.transform
        scene_tr = Affine(t.a, 0, t.c - x0 * t.a, 0, t.e, t.f - y0 * t.e)
        tags = [ds.tags(i) for i in range(1, ds.count + 1)]
        desc, crs, count, ts = ds.descriptions, ds.crs, ds.count, ds.width
    c0 = min(o[0] for o in offsets.values())
    r0 = min(o[1] for o in offsets.values())
    width = max(o[0] for o in offsets.values()) + ts - c0
    height = max(o[1] for o in offsets.values()) + ts - r0
    tr = scene_tr * Affine.translation(c0, r0)
    out = {"name": "enmap", "classes": ENMAP_CLASSES, "sensor": None, "folds": []}
    paths = {}
    for name, items in splits.items():
        img = np.full((count, height, width), NODATA, np.float32)
        lab = np.zeros((height, width), np.uint8)
        for ip, lp in items:
            x, y = offsets[ip]
            with rasterio.open(ip) as ds:
                img[:, y - r0 : y - r0 + ts, x - c0 : x - c0 + ts] = ds.read()
            with rasterio.open(lp) as ds:
                lab[y - r0 : y - r0 + ts, x - c0 : x - c0 + ts] = ds.read(1).astype(np.uint8)
        ipath, lpath = os.path.join(folder, f"enmap_{name}.tif"), os.path.join(folder, f"enmap_{name}_labels.tif")
        _write(ipath, img, crs, tr, NODATA, tags, desc)
        _write(lpath, lab, crs, tr, 0)
        paths[name] = (ipath, lpath, int((lab > 0).sum()))
    out["folds"].append(
        {
            "name": "14/2/2 tiles",
            "train": paths["train"][:2],
            "val": paths["validation"][:2],
            "test": paths["test"][:2],
            "train_pixels": paths["train"][2],
            "test_pixels": paths["test"][2],
        }
    )
    return out


def polygon_halves(image: str, polygons: str, classes) -> tuple:
    """Two label rasters on the image grid: the first and the second half of every polygon."""
    import fiona
    import rasterio
    from rasterio.features import rasterize

    value_of = {c["name"]: c["value"] for c in classes}
    with rasterio.open(image) as ds:
        shape, tr = (ds.height, ds.width), ds.transform
    a = np.zeros(shape, np.uint8)
    b = np.zeros(shape, np.uint8)
    with fiona.open(polygons) as src:
        for feat in src:
            v = value_of[feat["properties"]["name"]]
            mask = rasterize([(feat["geometry"], 1)], out_shape=shape, transform=tr, fill=0, dtype="uint8") > 0
            rr, cc = np.nonzero(mask)
            # cut across the longer axis at the median: two halves of (nearly) equal pixel count
            axis = rr if (rr.max() - rr.min()) >= (cc.max() - cc.min()) else cc
            first = axis < np.median(axis)
            a[rr[first], cc[first]] = v
            b[rr[~first], cc[~first]] = v
    return a, b


def landsat_case(folder: str) -> dict:
    import rasterio

    image = os.path.join(LANDSAT, "landsat8_224078_crop.tif")
    a, b = polygon_halves(image, os.path.join(LANDSAT, "landsat8_224078_polygons.gpkg"), LANDSAT_CLASSES)
    with rasterio.open(image) as ds:
        crs, tr = ds.crs, ds.transform
    pa, pb = os.path.join(folder, "landsat_half_a.tif"), os.path.join(folder, "landsat_half_b.tif")
    _write(pa, a, crs, tr, 0)
    _write(pb, b, crs, tr, 0)
    folds = [
        {
            "name": "train halves A, test halves B",
            "train": (image, pa),
            "val": None,
            "test": (image, pb),
            "train_pixels": int((a > 0).sum()),
            "test_pixels": int((b > 0).sum()),
        },
        {
            "name": "train halves B, test halves A",
            "train": (image, pb),
            "val": None,
            "test": (image, pa),
            "train_pixels": int((b > 0).sum()),
            "test_pixels": int((a > 0).sum()),
        },
    ]
    return {
        "name": "landsat",
        "classes": LANDSAT_CLASSES,
        "sensor": LANDSAT_SENSOR,
        "folds": folds,
        "points": os.path.join(LANDSAT, "landsat8_224078_points.gpkg"),
    }


# --------------------------------------------------------------------------------------------------
# methods


def evaluate_on(pred: str, labels: str) -> dict:
    from spectralx.evaluate import evaluate

    r = evaluate(pred, labels)
    return {
        "miou": r["miou"],
        "oa": r["overall_accuracy"],
        "kappa": r["kappa"],
        "per_class_iou": {c["name"]: round(c["iou"], 4) for c in r["per_class"] if c["in_reference"]},
    }


def with_label_budget(fold: dict, per_class: int, seed: int, folder: str) -> dict:
    """The fold with its training labels cut to at most `per_class` random pixels of each class
    (drawn with the run's seed, so each seed sees another subset); validation and test unchanged."""
    import rasterio

    img, lab = fold["train"]
    with rasterio.open(lab) as ds:
        y = ds.read(1)
        profile = ds.profile
    rng = np.random.default_rng(1000 + seed)
    keep = np.zeros_like(y)
    for v in np.unique(y[y > 0]):
        idx = np.flatnonzero(y == v)
        pick = idx if len(idx) <= per_class else rng.choice(idx, per_class, replace=False)
        keep.flat[pick] = v
    path = os.path.join(folder, f"budget_{per_class}_{seed}_{os.path.basename(lab)}")
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(keep, 1)
    return {**fold, "train": (img, path), "train_pixels": int((keep > 0).sum())}


def points_correct(pred: str, points: str) -> str:
    from spectralx.evaluate import evaluate

    r = evaluate(pred, points, class_field="name")
    return f"{int(round(r['overall_accuracy'] * r['pixels']))}/{r['pixels']}"


def run_forest(case, fold, seed, folder):
    """Random forest on the normalized per-pixel spectra of the same training pixels."""
    import rasterio

    from spectralx.outputs import class_raster_profile, class_tags
    from spectralx.training.baseline import fit_forest, predict_forest
    from spectralx.training.classes import parse_classes
    from spectralx.training.rasters import normalize, read_mapped, same_sensor_mappings, scene_statistics

    train_img, train_lab = fold["train"]
    test_img, test_lab = fold["test"]
    _, (mapping,) = same_sensor_mappings([train_img], case["sensor"])
    norm, _ = scene_statistics([train_img], [mapping])
    with rasterio.open(train_img) as ds:
        xtr = read_mapped(ds, mapping)
    with rasterio.open(train_lab) as ds:
        ytr = ds.read(1)
    ok = np.isfinite(xtr).any(0) & (ytr > 0)
    t0 = time.perf_counter()
    fit = fit_forest(normalize(xtr, norm)[:, ok].T, ytr[ok].astype(np.int64), seed=seed)
    train_s = time.perf_counter() - t0
    with rasterio.open(test_img) as ds:
        xte = read_mapped(ds, mapping)
        w, h, crs, tr = ds.width, ds.height, ds.crs, ds.transform
    valid = np.isfinite(xte).any(0)
    pred = np.zeros((h, w), np.uint8)
    pred[valid] = predict_forest(fit, normalize(xte, norm)[:, valid].T)
    path = os.path.join(folder, f"rf_{case['name']}_{seed}.tif")
    with rasterio.open(path, "w", **class_raster_profile(w, h, crs, tr)) as ds:
        ds.write(pred, 1)
        ds.update_tags(1, **class_tags(parse_classes(case["classes"])))
    row = evaluate_on(path, test_lab)
    row.update({"train_seconds": train_s, "trainable_parameters": None})
    if case.get("points"):
        row["points"] = points_correct(path, case["points"])
    return row


def run_spectralx(case, fold, seed, folder, method, backbone, steps=None):
    from spectralx.inference import segment
    from spectralx.training import finetune, pretrain

    spec = METHODS[method]
    train_img, train_lab = fold["train"]
    test_img, test_lab = fold["test"]
    from spectralx.config import ModelConfig

    arch_keys = set(ModelConfig.__dataclass_fields__)  # network switches go to `architecture`
    kwargs = {**{k: v for k, v in OVERRIDES.items() if k not in arch_keys}, **spec["kwargs"]}
    arch = {k: v for k, v in OVERRIDES.items() if k in arch_keys}
    if arch:
        kwargs["architecture"] = arch
    if steps:
        kwargs["steps"] = steps
    if fold["val"]:
        kwargs.update(val_images=[fold["val"][0]], val_labels=[fold["val"][1]])
    t0 = time.perf_counter()
    start = {"backbone": backbone}
    if spec.get("stage1"):
        ck = os.path.join(folder, f"stage1_{case['name']}_{seed}.safetensors")
        pretrain(
            [train_img],
            ck,
            backbone=backbone,
            sensor=case["sensor"],
            seed=seed,
            device="cpu",
            command="bench/accuracy_bench.py (stage 1)",
            **({"steps": steps} if steps else {}),
        )
        start = {"checkpoint": ck, "backbone": backbone}
    res = finetune(
        [train_img],
        [train_lab],
        None,
        classes=case["classes"],
        sensor=case["sensor"],
        device="cpu",
        seed=seed,
        command=f"bench/accuracy_bench.py ({method})",
        **start,
        **kwargs,
    )
    train_s = time.perf_counter() - t0
    pred = os.path.join(folder, f"{method}_{case['name']}_{seed}.tif")
    segment(
        test_img,
        None,
        pred,
        model=(res.model, res.card),
        device="cpu",
        overwrite=True,
        style=False,
        sensor=case["sensor"],
    )
    row = evaluate_on(pred, test_lab)
    row["fusion_weight"] = float(getattr(res.model, "fusion_weight", 0.0))
    if getattr(res.model, "forest", None) is not None:
        # the same trained model as the network alone and as its forest alone: paired, on the same
        # test pixels (the map the checkpoint deploys is `miou`)
        for key, weight in (("miou_network", 0.0), ("miou_forest", 1.0)):
            res.model.fusion_weight = weight
            other = pred.replace(".tif", f"_{key}.tif")
            segment(
                test_img,
                None,
                other,
                model=(res.model, res.card),
                device="cpu",
                overwrite=True,
                style=False,
                sensor=case["sensor"],
            )
            row[key] = evaluate_on(other, test_lab)["miou"]
        res.model.fusion_weight = row["fusion_weight"]
        fusion = res.metrics.get("fusion") or {}
        row["val_miou_three"] = fusion.get("val_miou")
        if DUMP:
            dump_scores(res, case, fold, seed, method, DUMP)
    if not PAIRED_TTA:
        return _finish(row, res, train_s, case, pred)
    # the same trained model with test-time flip averaging toggled: a paired comparison for free
    res.model.tta_flips = not res.model.tta_flips
    other = pred.replace(".tif", "_tta_toggled.tif")
    segment(
        test_img,
        None,
        other,
        model=(res.model, res.card),
        device="cpu",
        overwrite=True,
        style=False,
        sensor=case["sensor"],
    )
    res.model.tta_flips = not res.model.tta_flips
    row["miou_tta_toggled"] = evaluate_on(other, test_lab)["miou"]
    # ... and with the rare-class logit adjustment removed (when one was chosen)
    adj = res.card.training.get("logit_adjustment")
    if adj and adj["tau"]:
        bias = res.model.class_bias.clone()
        res.model.class_bias.zero_()
        plain = pred.replace(".tif", "_plain.tif")
        segment(
            test_img,
            None,
            plain,
            model=(res.model, res.card),
            device="cpu",
            overwrite=True,
            style=False,
            sensor=case["sensor"],
        )
        res.model.class_bias.copy_(bias)
        row["miou_without_adjustment"] = evaluate_on(plain, test_lab)["miou"]
    else:
        row["miou_without_adjustment"] = row["miou"]
    row["tau"] = adj["tau"] if adj else None
    return _finish(row, res, train_s, case, pred)


def dump_scores(res, case, fold, seed, method, folder):
    """Network logits and forest probabilities of one trained model on the validation and test pixels
    (non-overlapping tiles), saved for offline comparison of fusion rules (--dump)."""
    import rasterio

    from spectralx.training.dataset import pad_scene, predict_logits
    from spectralx.training.rasters import mapping_for, normalize, read_mapped

    model, card = res.model, res.card
    keep_w = model.fusion_weight
    model.fusion_weight = 0.0
    out = {}
    for split in ("val", "test"):
        if not fold.get(split):
            continue
        img, lab = fold[split]
        mapping = mapping_for(img, card, sensor=case["sensor"])
        with rasterio.open(img) as ds:
            x = read_mapped(ds, mapping)
        with rasterio.open(lab) as ds:
            y = ds.read(1).astype(np.int16)
        valid = np.isfinite(x).any(0)
        x = normalize(x, card.normalization)
        mask = valid & (y > 0)
        xp, yp, _, pad = pad_scene(x, np.where(mask, y, -1).astype(np.int16), np.zeros_like(y), card.tile_size)
        logits = predict_logits(model, xp.astype(np.float32), yp > 0, card.tile_size, "cpu")
        out[f"{split}_logits"] = logits
        out[f"{split}_forest"] = model.forest.predict_proba(xp[:, yp > 0].T.astype(np.float32))
        out[f"{split}_y"] = yp[yp > 0] - 1
    model.fusion_weight = keep_w
    path = os.path.join(
        folder, f"{case['name']}_{method}_{seed}_{fold['name'].replace('/', '-').replace(' ', '_')}.npz"
    )
    np.savez_compressed(path, **out, weight=keep_w, class_bias=model.class_bias.numpy())


def _finish(row, res, train_s, case, pred):
    tr = res.card.training
    row.update(
        {
            "train_seconds": train_s,
            "trainable_parameters": tr["trainable_parameters"],
            "steps_run": tr["steps_run"],
            "val_miou": res.metrics.get("val_miou"),
            "card_rf_val_miou": (res.metrics.get("baselines", {}).get("random_forest", {}) or {}).get("val_miou"),
        }
    )
    if case.get("points"):
        row["points"] = points_correct(pred, case["points"])
    return row


# --------------------------------------------------------------------------------------------------

OVERRIDES: dict = {}
BUDGET = None  # labelled training pixels per class (--labels-per-class), for the label-scarcity curve
DUMP = None  # folder for per-run validation/test scores (--dump)
PAIRED_TTA = True  # also score each trained model with flip averaging toggled (off in --quick)


def parse_set(text: str):
    key, _, value = text.partition("=")
    for cast in (int, float):
        try:
            return key, cast(value)
        except ValueError:
            pass
    return key, {"true": True, "false": False, "none": None}.get(value.lower(), value)


def mean_sd(values):
    v = np.asarray([x for x in values if x is not None], np.float64)
    if not len(v):
        return None, None
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def summarize(runs):
    """runs: list of per-(seed, fold) rows -> mean ± sd over seeds of the fold-averaged scores."""
    by_seed = {}
    for r in runs:
        by_seed.setdefault(r["seed"], []).append(r)
    per_seed = {
        s: {k: float(np.mean([r[k] for r in rs])) for k in ("miou", "oa", "kappa", "train_seconds")}
        for s, rs in by_seed.items()
    }
    out = {}
    for k in ("miou", "oa", "kappa", "train_seconds"):
        m, sd = mean_sd([v[k] for v in per_seed.values()])
        out[k] = {"mean": round(m, 4), "sd": round(sd, 4)}
    out["seeds"] = sorted(by_seed)
    out["per_seed_miou"] = {str(s): round(v["miou"], 4) for s, v in per_seed.items()}
    for key in ("miou_network", "miou_forest", "fusion_weight"):  # paired scores of the same models
        if all(r.get(key) is not None for r in runs):
            seed_means = {s: float(np.mean([r[key] for r in rs])) for s, rs in by_seed.items()}
            m, sd = mean_sd(list(seed_means.values()))
            out[key] = {
                "mean": round(m, 4),
                "sd": round(sd, 4),
                "per_seed": {str(s): round(v, 4) for s, v in seed_means.items()},
            }
    classes = {}
    for r in runs:
        for name, iou in r["per_class_iou"].items():
            classes.setdefault(name, []).append(iou)
    out["per_class_iou_mean"] = {k: round(float(np.mean(v)), 3) for k, v in classes.items()}
    tp = [r.get("trainable_parameters") for r in runs if r.get("trainable_parameters")]
    out["trainable_parameters"] = tp[0] if tp else None
    if any("points" in r for r in runs):
        out["points"] = [r["points"] for r in runs if "points" in r]
    return out


def table(results, seeds, torch_threads, load_start) -> None:
    print()
    print(
        f"mean ± sd over seeds {seeds}; {os.cpu_count()} CPU cores, {torch_threads} torch thread(s) per run, "
        f"load at start {load_start}"
    )
    print(f"{'case':<8} {'method':<48} {'mIoU':>15} {'OA':>15} {'train s':>8}")
    for case_name, res in results.items():
        rf = res["rows"].get("rf")
        for method, s in res["rows"].items():
            gap = ""
            if rf and method != "rf":
                gap = f"  {s['miou']['mean'] - rf['miou']['mean']:+.3f} vs forest"
            print(
                f"{case_name:<8} {s['label']:<48} {s['miou']['mean']:.3f} ± {s['miou']['sd']:.3f}   "
                f"{s['oa']['mean']:.3f} ± {s['oa']['sd']:.3f} {s['train_seconds']['mean']:8.1f}{gap}"
            )
            for key, what in (
                ("miou_network", "  the same models, network alone"),
                ("miou_forest", "  the same models, their forest alone"),
            ):
                if key in s:
                    gap = f"  {s[key]['mean'] - rf['miou']['mean']:+.3f} vs forest" if rf else ""
                    print(
                        f"{case_name:<8} {what:<48} {s[key]['mean']:.3f} ± {s[key]['sd']:.3f}   "
                        f"{'':>15} {'':>8}{gap}"
                    )
            if rf and method != "rf":
                low = min(s["per_seed_miou"].values())
                print(f"{case_name:<8} {'  worst seed':<48} {low:.3f} ({low - rf['miou']['mean']:+.3f} vs forest)")


def label_of(method: str) -> str:
    return "random forest, per-pixel spectra" if method == "rf" else METHODS[method]["label"]


def results_from_log(paths, cases, methods) -> dict:
    """Rows rebuilt from --log files (runs of several processes, e.g. one per method in parallel)."""
    runs = []
    for path in paths:
        with open(path) as f:
            runs += [json.loads(x) for x in f if x.strip()]
    latest = {}
    for r in runs:  # a run repeated (a process restarted) counts once: the last one
        latest[
            (
                r["case"],
                r["method"],
                r["seed"],
                r["fold"],
                json.dumps(r.get("set") or {}, sort_keys=True),
                r.get("labels_per_class"),
            )
        ] = r
    runs = list(latest.values())
    results = {}
    for case_name in cases:
        rows = {}
        for method in methods:
            mine = [
                r
                for r in runs
                if r["case"] == case_name
                and r["method"] == method
                and not r.get("set")
                and not r.get("labels_per_class")
            ]
            if mine:
                rows[method] = {**summarize(mine), "label": label_of(method), "runs": mine}
        folds = sorted(
            {(r["fold"], r.get("train_pixels"), r.get("test_pixels")) for r in runs if r["case"] == case_name}, key=str
        )
        results[case_name] = {"folds": [{"name": f[0]} for f in folds], "rows": rows}
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="enmap,landsat")
    ap.add_argument(
        "--methods", default="rf,spectralx,paper,stage1,lora,full", help="comma list of: rf, " + ", ".join(METHODS)
    )
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--steps", type=int, help="override the default number of steps (smoke runs only)")
    ap.add_argument(
        "--quick", action="store_true", help="smoke run: seed 0, 4 steps, forest + default SpectralX; results not saved"
    )
    ap.add_argument("--backbone", default=DEMO_BACKBONE)
    ap.add_argument("--no-save", action="store_true", help="do not write bench/results.json")
    ap.add_argument("--threads", type=int, help="torch threads (default: all cores)")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="OPTION=VALUE",
        help="ablation: override a FinetuneOptions field or a network switch (ModelConfig) for "
        "every SpectralX row (e.g. --set lr=3e-4 --set are_match=hard); not saved to results.json",
    )
    ap.add_argument("--log", help="append one JSON line per run to this file (ablation logs)")
    ap.add_argument(
        "--labels-per-class",
        type=int,
        metavar="N",
        help="label-scarcity curve: train every method on at most N random training pixels per class "
        "(seeded per run); validation and test pixels unchanged; not saved to results.json",
    )
    ap.add_argument(
        "--dump",
        metavar="FOLDER",
        help="save each SpectralX run's network logits and forest probabilities on the validation "
        "and test pixels (npz) for offline comparison of fusion rules",
    )
    ap.add_argument(
        "--no-paired",
        action="store_true",
        help="skip the paired re-scoring of each model (flip averaging / logit adjustment toggled)",
    )
    ap.add_argument(
        "--from-log",
        nargs="+",
        metavar="LOG",
        help="train nothing: build the table and bench/results.json from --log files of earlier "
        "runs without --set (e.g. one process per method run side by side)",
    )
    args = ap.parse_args()
    global OVERRIDES, PAIRED_TTA, DUMP, BUDGET
    DUMP = args.dump
    BUDGET = args.labels_per_class
    if DUMP:
        os.makedirs(DUMP, exist_ok=True)
    OVERRIDES = dict(parse_set(x) for x in args.set)
    PAIRED_TTA = not (args.quick or args.no_paired)
    if args.quick:
        args.methods, args.seeds, args.steps, args.no_save = "rf,spectralx", "0", args.steps or 4, True
    import torch

    torch.set_num_threads(args.threads or (os.cpu_count() or 1))
    seeds = [int(s) for s in args.seeds.split(",")]
    methods = [m for m in args.methods.split(",") if m]
    load_start = [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None
    t_start = time.perf_counter()
    if args.from_log:
        results = results_from_log(args.from_log, args.cases.split(","), methods)
        seeds = sorted({s for r in results.values() for row in r["rows"].values() for s in row["seeds"]})
    else:
        results = {}
        with tempfile.TemporaryDirectory(prefix="spectralx-accuracy-") as folder:
            for case_name in args.cases.split(","):
                case = enmap_case(folder) if case_name == "enmap" else landsat_case(folder)
                results[case_name] = {
                    "folds": [{k: f[k] for k in ("name", "train_pixels", "test_pixels")} for f in case["folds"]],
                    "rows": {},
                }
                for method in methods:
                    runs = []
                    for seed in seeds:
                        for fold in case["folds"]:
                            if BUDGET:
                                fold = with_label_budget(fold, BUDGET, seed, folder)
                            t0 = time.perf_counter()
                            row = (
                                run_forest(case, fold, seed, folder)
                                if method == "rf"
                                else run_spectralx(case, fold, seed, folder, method, args.backbone, args.steps)
                            )
                            row.update(
                                {
                                    "seed": seed,
                                    "fold": fold["name"],
                                    "train_pixels": fold["train_pixels"],
                                    "test_pixels": fold["test_pixels"],
                                }
                            )
                            runs.append(row)
                            if args.log:
                                with open(args.log, "a") as f:
                                    f.write(
                                        json.dumps(
                                            {
                                                "case": case_name,
                                                "method": method,
                                                "set": OVERRIDES,
                                                "labels_per_class": BUDGET,
                                                **row,
                                            },
                                            default=str,
                                        )
                                        + "\n"
                                    )
                            print(
                                f"{case_name:<8} {method:<10} seed {seed} {fold['name']:<32} mIoU {row['miou']:.3f} "
                                f"OA {row['oa']:.3f}  ({time.perf_counter() - t0:.0f} s)"
                                + (
                                    f" network {row['miou_network']:.3f} forest {row['miou_forest']:.3f} "
                                    f"w {row['fusion_weight']:g}"
                                    if "miou_network" in row
                                    else ""
                                )
                                + (f" points {row['points']}" if "points" in row else ""),
                                flush=True,
                            )
                    summary = summarize(runs)
                    summary["label"] = label_of(method)
                    summary["runs"] = runs
                    results[case_name]["rows"][method] = summary
    table(results, seeds, torch.get_num_threads(), load_start)
    section = {
        "what": __doc__.split("\n\n")[1].strip(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": "python bench/accuracy_bench.py " + " ".join(sys.argv[1:]),
        "machine": {
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "load_average_at_start": load_start,
            "torch": torch.__version__,
        },
        "backbone": os.path.relpath(args.backbone, REPO) if args.backbone.startswith(REPO) else args.backbone,
        "seeds": seeds,
        "steps_override": args.steps,
        "option_overrides": OVERRIDES,
        "cases": {
            c: {
                "folds": r["folds"],
                "rows": {m: {k: v for k, v in s.items() if k != "runs"} for m, s in r["rows"].items()},
                "runs": {m: s["runs"] for m, s in r["rows"].items()},
            }
            for c, r in results.items()
        },
        "bench_seconds": round(time.perf_counter() - t_start, 1),
    }
    if args.from_log:
        section["machine"]["load_average_at_start"] = None
        section["machine"]["runs"] = (
            "built from --log files of runs made earlier, one process per method/seed side "
            "by side (one torch thread each), on this machine under load from other jobs; "
            "times are wall-clock under that load"
        )
    if not args.no_save and not OVERRIDES and not args.steps and not BUDGET:
        results_file.update_results("accuracy", json.loads(json.dumps(section, default=str)))
        print(f"results: {os.path.relpath(results_file.RESULTS)} [accuracy]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
