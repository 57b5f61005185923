"""The analyst's loop, simulated on the EnMAP sample (issue 20): do the places `suggest` picks help
round 2 more than as many random places?

Per seed:
1. Round 1: a few small "polygons" per class (square windows of the training tiles' labels around a
   random labelled pixel, same class only) -> fine-tune from the demo backbone (forest pooled, the
   default), validated on the validation tiles.
2. `suggest`'s scoring (engine.suggest.place_scores: 1 - confidence + network/forest disagreement, 3x3
   mean, times the 5x5 uniformity of the predicted class; picks
   over the classes in turn at the default minimum distance) over the whole image, with the picks
   restricted to the pool: training-tile pixels that have a reference label (elsewhere the sample has
   no reference to "ask the analyst" for) and were not labelled in round 1.
3. The picked places get their reference class from the full label raster (a 3 x 3 "polygon": the
   place and its neighbours of the same reference class, inside the pool) -> round 2 continues from
   round 1 (`finetune -c ROUND1`) with the round-1 labels plus these.
4. The same with N random places of the pool.
Both round-2 models are scored on the validation tiles (the card's map validation mIoU, which also
chose the best step and the forest weight) and on the test tiles (the bench's own map of the test
pixels, never used for any choice). A bench, not a test: minutes, not part of `make test`.

    python bench/loop_bench.py [--seeds 0,1,2] [--steps 40] [--n 20] [--out bench/work/loop]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(REPO, "engine", ".."))

SAMPLE = os.path.join(REPO, "resources", "sample")
IMAGE = os.path.join(SAMPLE, "enmap_potsdam.tif")
LABELS = {s: os.path.join(SAMPLE, f"enmap_potsdam_labels{s}.tif") for s in ("", "_train", "_validation", "_test")}
CLASSES = os.path.join(SAMPLE, "enmap_potsdam_classes.json")
BACKBONE = os.path.join(REPO, "resources", "models", "demo-backbone.safetensors")


def read(path):
    import rasterio

    with rasterio.open(path) as ds:
        return ds.read(1), ds.profile


def write_labels(path, labels, profile):
    import rasterio

    p = dict(profile, count=1, dtype="uint8", nodata=None)
    for k in ("blockxsize", "blockysize", "tiled", "compress", "predictor", "interleave"):
        p.pop(k, None)
    with rasterio.open(path, "w", **p) as ds:
        ds.write(labels.astype(np.uint8), 1)
    return path


def window_labels(reference, pool, r, c, half):
    """The pool pixels of the same reference class as (r, c) within `half` px: a small polygon."""
    h, w = reference.shape
    out = np.zeros_like(reference)
    r0, r1, c0, c1 = max(0, r - half), min(h, r + half + 1), max(0, c - half), min(w, c + half + 1)
    k = reference[r, c]
    block = (reference[r0:r1, c0:c1] == k) & pool[r0:r1, c0:c1]
    out[r0:r1, c0:c1][block] = k
    return out


def round1_labels(train, rng, regions, half):
    labels = np.zeros_like(train)
    for k in np.unique(train[train > 0]):
        rows, cols = np.nonzero(train == k)
        for i in rng.choice(len(rows), size=min(regions, len(rows)), replace=False):
            lab = window_labels(train, train > 0, rows[i], cols[i], half)
            labels = np.where(labels > 0, labels, lab)
    return labels


@functools.lru_cache(maxsize=2)  # round 1's model is scored on test and then asked for places: predict once
def map_probabilities(ckpt):
    """The map's class probabilities of every valid pixel, as `suggest` computes them (read-only)."""
    import torch

    from spectralx.checkpoint import load_checkpoint, read_card
    from spectralx.suggest import class_probabilities, read_area

    card = read_card(ckpt)
    x, valid, *_ = read_area(IMAGE, card)
    model = load_checkpoint(ckpt, device="cpu")[0].eval()
    with torch.no_grad():
        p_map, p_net, p_forest = class_probabilities(model, card, x, valid, "cpu", batch_size=8)
    return card, valid, p_map, p_net, p_forest


def suggested_places(ckpt, pool, n):
    from spectralx.suggest import default_min_distance, place_scores, spread

    card, valid, p_map, p_net, p_forest = map_probabilities(ckpt)
    w = valid.shape[1]
    score, pred, _conf, _dis = place_scores(p_map, p_net, p_forest, valid)  # suggest()'s own scoring
    score[~pool] = -np.inf  # only where the sample has a reference to ask for
    picked = spread(score, pred, n, default_min_distance(int(pool.sum()), n))
    return [divmod(int(i), w) for i in picked]


def random_places(pool, n, rng):
    rows, cols = np.nonzero(pool)
    idx = rng.choice(len(rows), size=min(n, len(rows)), replace=False)
    return [(int(rows[i]), int(cols[i])) for i in idx]


def test_miou(ckpt, test):
    from spectralx.training.metrics import confusion, scores

    card, valid, p_map, _n, _f = map_probabilities(ckpt)
    values = np.array([c.value for c in card.classes])
    pred = np.zeros(valid.shape, np.int64)
    pred[valid] = values[p_map.argmax(1)]
    m = (test > 0) & valid
    k = int(values.max())
    return scores(confusion(test[m].astype(np.int64), pred[m], k), sorted(set(test[m].tolist())))["miou"]


def finetune(labels_path, out, seed, steps, checkpoint=None):
    from spectralx.training import finetune as run

    kw = dict(checkpoint=checkpoint) if checkpoint else dict(backbone=BACKBONE)
    res = run(
        IMAGE,
        labels_path,
        out,
        classes=CLASSES,
        val_images=[IMAGE],
        val_labels=[LABELS["_validation"]],
        steps=steps,
        seed=seed,
        device="cpu",
        **kw,
    )
    from spectralx.checkpoint import read_card

    card = read_card(getattr(res, "checkpoint", None) or out)
    fusion = card.metrics.get("fusion")
    # the map's score (network pooled with the forest); metrics.val_miou is the network loop's best step
    return fusion["val_miou"][fusion["map"]] if fusion else card.metrics["val_miou"]


def one_seed(seed, args, folder):
    reference, profile = read(LABELS[""])
    train, _ = read(LABELS["_train"])
    test, _ = read(LABELS["_test"])
    rng = np.random.default_rng(seed)
    lab1 = round1_labels(train, rng, args.regions, args.half)
    pool = (train > 0) & (lab1 == 0)
    p1 = write_labels(os.path.join(folder, f"s{seed}_r1_labels.tif"), lab1, profile)
    r1 = os.path.join(folder, f"s{seed}_r1.safetensors")
    t0 = time.time()
    row = {
        "seed": seed,
        "round1_labelled": int((lab1 > 0).sum()),
        "round1_val_miou": finetune(p1, r1, seed, args.steps),
    }
    row["round1_test_miou"] = test_miou(r1, test)
    arms = {"suggest": suggested_places(r1, pool, args.n), "random": random_places(pool, args.n, rng)}
    for arm, places in arms.items():
        lab2 = lab1.copy()
        for r, c in places:
            lab2 = np.where(lab2 > 0, lab2, window_labels(reference, pool, r, c, 1))
        p2 = write_labels(os.path.join(folder, f"s{seed}_r2_{arm}_labels.tif"), lab2, profile)
        r2 = os.path.join(folder, f"s{seed}_r2_{arm}.safetensors")
        row[f"{arm}_places"] = len(places)
        row[f"{arm}_classes"] = sorted(int(reference[r, c]) for r, c in places)
        row[f"{arm}_added"] = int((lab2 > 0).sum() - (lab1 > 0).sum())
        row[f"{arm}_val_miou"] = finetune(p2, r2, seed, args.steps, checkpoint=r1)
        row[f"{arm}_test_miou"] = test_miou(r2, test)
    row["seconds"] = round(time.time() - t0, 1)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--steps", type=int, default=40, help="training steps per round (short: a bench)")
    ap.add_argument("--n", type=int, default=20, help="places added in round 2")
    ap.add_argument("--regions", type=int, default=2, help="round-1 polygons per class")
    ap.add_argument("--half", type=int, default=2, help="round-1 polygon half-size in px (2: 5 x 5)")
    ap.add_argument("--threads", type=int, help="torch threads")
    ap.add_argument("--out", default=os.path.join(HERE, "work", "loop"))
    args = ap.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        rows.append(one_seed(seed, args, args.out))
        print(json.dumps(rows[-1]), flush=True)
    print(
        f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads; steps {args.steps}, n {args.n}"
    )
    print("| seed | round 1 px | round 1 val / test | suggest: px added, val / test | random: px added, val / test |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['seed']} | {r['round1_labelled']} | {r['round1_val_miou']:.3f} / {r['round1_test_miou']:.3f} | "
            f"{r['suggest_added']}, {r['suggest_val_miou']:.3f} / {r['suggest_test_miou']:.3f} | "
            f"{r['random_added']}, {r['random_val_miou']:.3f} / {r['random_test_miou']:.3f} |"
        )
    for key in ("round1", "suggest", "random"):
        v = np.array([r[f"{key}_val_miou"] for r in rows])
        t = np.array([r[f"{key}_test_miou"] for r in rows])
        print(
            f"{key}: validation mIoU {v.mean():.3f} ± {v.std(ddof=1) if len(v) > 1 else 0:.3f}, "
            f"test mIoU {t.mean():.3f} ± {t.std(ddof=1) if len(t) > 1 else 0:.3f}"
        )
    with open(os.path.join(args.out, "loop_bench.jsonl"), "a") as f:
        for r in rows:
            f.write(json.dumps(dict(r, steps=args.steps, n=args.n)) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
