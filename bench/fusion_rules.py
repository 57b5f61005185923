"""Fusion rules compared offline on the scores `accuracy_bench.py --dump FOLDER` saved.

Each dump holds one trained model's network logits (class bias included) and its forest's
probabilities on the validation and the test pixels of the EnMAP dev case. A rule picks its
parameters on the validation pixels only and is scored on the test pixels; mean ± sd, minimum over
seeds. Non-overlapping tiles here (the bench's segment() blends overlapping ones), so absolute test
figures differ slightly from the bench's; the rules are compared on the same scores.

    python bench/accuracy_bench.py --cases enmap --methods spectralx --no-save --dump DUMP_FOLDER
    python bench/fusion_rules.py DUMP_FOLDER [--context 3]
"""

from __future__ import annotations

import glob
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "engine", ".."))

from spectralx.model.forest import PROBA_FLOOR  # noqa: E402
from spectralx.model.fusion import WEIGHT_GRID, pool_numpy  # noqa: E402
from spectralx.training.metrics import confusion, scores  # noqa: E402


def miou(y, pred, k):
    return scores(confusion(y, pred, k), list(range(1, k + 1)))["miou"]


def log_softmax(z):
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


def forest_log(p):
    return np.log((p + PROBA_FLOOR) / (1 + PROBA_FLOOR * p.shape[1]))


def nll(logp, y):
    lp = log_softmax(logp)
    return float(-lp[np.arange(len(y)), y].mean())


def pick(d, score, grid=WEIGHT_GRID, pool=pool_numpy, tie=lambda w: -abs(w - 0.5)):
    """The weight that maximizes score(validation log-scores, labels)."""
    k = d["val_logits"].shape[1]
    fl = forest_log(d["val_forest"])
    tried = [(w, score(pool(d["val_logits"], fl, w), d["val_y"], k)) for w in grid]
    return max(tried, key=lambda t: (round(t[1], 6), tie(t[0])))[0]


def linear_pool(net_logits, flog, w):
    p = (1 - w) * np.exp(log_softmax(net_logits)) + w * np.exp(flog)
    return np.log(p + 1e-12)


def smoothed(score):
    """Validation score averaged over the neighbouring weights too (less noise from 1 206 pixels)."""

    def inner(d):
        k = d["val_logits"].shape[1]
        fl = forest_log(d["val_forest"])
        raw = {w: score(pool_numpy(d["val_logits"], fl, w), d["val_y"], k) for w in WEIGHT_GRID}
        ws = list(WEIGHT_GRID)
        avg = {w: np.mean([raw[v] for v in ws[max(0, i - 1) : i + 2]]) for i, w in enumerate(ws)}
        return max(ws, key=lambda w: (round(avg[w], 6), -abs(w - 0.5)))

    return inner


def veto(weight, margin=0.02):
    """A fixed weight, unless on validation the pool scores below the forest alone by more than
    `margin`: then the forest alone (the network's validation score is optimistic, having chosen
    its early stop and logit bias on these pixels, so a pool that loses there is not trusted)."""

    def inner(d):
        k = d["val_logits"].shape[1]
        fl = forest_log(d["val_forest"])
        pooled = miou(d["val_y"], pool_numpy(d["val_logits"], fl, weight).argmax(1), k)
        alone = miou(d["val_y"], fl.argmax(1), k)
        return ("log", weight if pooled >= alone - margin else 1.0)

    return inner


RULES = {
    "network alone": lambda d: ("log", 0.0),
    "forest alone": lambda d: ("log", 1.0),
    "log pool, w by val mIoU (shipped)": lambda d: ("log", pick(d, lambda s, y, k: miou(y, s.argmax(1), k))),
    "log pool, w by val NLL": lambda d: ("log", pick(d, lambda s, y, k: -nll(s, y))),
    "log pool, w by smoothed val mIoU": lambda d: ("log", smoothed(lambda s, y, k: miou(y, s.argmax(1), k))(d)),
    "linear pool, w by val mIoU": lambda d: ("lin", pick(d, lambda s, y, k: miou(y, s.argmax(1), k), pool=linear_pool)),
    **{f"log pool, fixed w {w:g}": (lambda d, w=w: ("log", w)) for w in (0.5, 0.6, 0.7, 0.8, 0.9)},
    "log pool, w in {0.8, 0.9, 1} by val mIoU": lambda d: (
        "log",
        pick(d, lambda s, y, k: miou(y, s.argmax(1), k), grid=(0.8, 0.9, 1.0)),
    ),
    "log pool, w 0.8, forest if val loses 0.02": veto(0.8),
    "log pool, w 0.9, forest if val loses 0.02": veto(0.9),
}


def context_forests(runs, files, size: int) -> None:
    """Replace each run's forest probabilities by those of a forest on spectra + the mean spectrum of
    the size x size neighbourhood (spectralx.model.forest.with_context), same seed, same pixels."""
    import re
    import tempfile

    import rasterio

    sys.path.insert(0, HERE)
    import accuracy_bench as ab

    from spectralx.model.forest import ForestArrays, with_context
    from spectralx.training.baseline import fit_forest
    from spectralx.training.rasters import normalize, read_mapped, same_sensor_mappings, scene_statistics

    with tempfile.TemporaryDirectory() as tmp:
        fold = ab.enmap_case(tmp)["folds"][0]
        _, (mapping,) = same_sensor_mappings([fold["train"][0]], None)
        norm, _ = scene_statistics([fold["train"][0]], [mapping])
        feats = {}
        for split in ("train", "val", "test"):
            img, lab = fold[split]
            with rasterio.open(img) as ds:
                x = normalize(read_mapped(ds, mapping), norm)
            with rasterio.open(lab) as ds:
                y = ds.read(1).astype(np.int64)
            m = (y > 0) & (x != 0).any(0)
            feats[split] = (with_context(x, size)[:, m].T, y[m] - 1)
    for d, f in zip(runs, files):
        seed = int(re.search(r"_(\d+)_", os.path.basename(f)).group(1))
        fit = fit_forest(*feats["train"], seed=seed)
        arrays = ForestArrays.from_sklearn(fit.forest, d["val_logits"].shape[1])
        for split in ("val", "test"):
            assert len(feats[split][1]) == len(d[f"{split}_y"]) and (feats[split][1] == d[f"{split}_y"]).all()
            d[f"{split}_forest"] = arrays.predict_proba(feats[split][0])


def main(folder: str, context: int = 0) -> int:
    files = sorted(glob.glob(os.path.join(folder, "*.npz")))
    if not files:
        print(f"no dumps in {folder}: run accuracy_bench.py --dump {folder} first")
        return 1
    runs = [dict(np.load(f)) for f in files]
    if context:
        context_forests(runs, files, context)
        print(f"forest: spectra + mean spectrum of the {context}x{context} neighbourhood")
    print(f"{len(runs)} runs from {folder}: {', '.join(os.path.basename(f) for f in files)}")
    print(f"{'rule':<38} {'test mIoU':>15} {'min':>6}  weights")
    for name, rule in RULES.items():
        vals, ws = [], []
        for d in runs:
            kind, w = rule(d)
            k = d["test_logits"].shape[1]
            pool = pool_numpy if kind == "log" else linear_pool
            pred = pool(d["test_logits"], forest_log(d["test_forest"]), w).argmax(1)
            vals.append(miou(d["test_y"], pred, k))
            ws.append(w)
        v = np.array(vals)
        print(
            f"{name:<38} {v.mean():.3f} ± {v.std(ddof=1) if len(v) > 1 else 0:.3f} {v.min():6.3f}  "
            + " ".join(f"{w:g}" for w in ws)
        )
    return 0


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", help="the --dump folder of an accuracy_bench.py run")
    ap.add_argument("--context", type=int, default=0, help="refit the forest with this neighbourhood (0: as dumped)")
    a = ap.parse_args()
    sys.exit(main(a.folder, a.context))
