"""Label-scarcity curve: test mIoU against labelled training pixels per class, from accuracy-bench logs.

Runs: `python bench/accuracy_bench.py --cases enmap --methods rf,spectralx,lora --seeds 0,1,2
--labels-per-class N --no-save --log LOG` for each N, plus one log with all labels. Each SpectralX
run scores its default map (network pooled with its forest), the network alone and its forest alone
(paired: the same trained model). Lines: mean over seeds, bars ± sd.

    python bench/scarcity_plot.py LOG [LOG ...] -o docs/label_scarcity.png
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict

import numpy as np

SERIES = [  # (label, method in the log, key of the row)
    ("random forest, per-pixel spectra (the bar)", "rf", "miou"),
    ("SpectralX network alone", "spectralx", "miou_network"),
    ("LoRA r16 network alone (PEFT baseline)", "lora", "miou_network"),
    ("forest, spectra + 3x3 mean (in the checkpoint)", "spectralx", "miou_forest"),
    ("SpectralX default: network + forest pooled", "spectralx", "miou"),
]


def collect(paths):
    rows = []
    for p in paths:
        with open(p) as f:
            rows += [json.loads(x) for x in f if x.strip()]
    out = defaultdict(lambda: defaultdict(list))  # series -> x -> values
    for r in rows:
        if r.get("set"):
            continue
        x = r.get("labels_per_class") or "all"
        for label, method, key in SERIES:
            if r["method"] == method and r.get(key) is not None:
                out[label][x].append(float(r[key]))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("logs", nargs="+")
    ap.add_argument("-o", "--output", default="docs/label_scarcity.png")
    ap.add_argument(
        "--all-pixels",
        type=int,
        default=None,
        help="x position of the 'all labels' runs (default: 2x the largest budget)",
    )
    args = ap.parse_args()
    data = collect(args.logs)
    budgets = sorted({x for s in data.values() for x in s if x != "all"})
    x_all = args.all_pixels or (2 * max(budgets) if budgets else 1)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    print(f"{'series':<50} " + " ".join(f"{str(b):>13}" for b in budgets + ["all"]))
    for label, _, _ in SERIES:
        pts = data.get(label, {})
        xs, ms, sds, cells = [], [], [], []
        for b in budgets + ["all"]:
            v = pts.get(b)
            if not v:
                cells.append(f"{'–':>13}")
                continue
            xs.append(x_all if b == "all" else b)
            ms.append(np.mean(v))
            sds.append(np.std(v, ddof=1) if len(v) > 1 else 0.0)
            cells.append(f"{np.mean(v):.3f}±{sds[-1]:.3f}".rjust(13))
        print(f"{label:<50} " + " ".join(cells))
        if xs:
            ax.errorbar(xs, ms, yerr=sds, marker="o", capsize=3, label=label)
    ax.set_xscale("log")
    ticks = budgets + [x_all]
    ax.set_xticks(ticks)
    ax.set_xticklabels([str(b) for b in budgets] + ["all"])
    ax.set_xlabel("labelled training pixels per class (EnMAP dev case, 14 training tiles)")
    ax.set_ylabel("test mIoU (2 held-out tiles)")
    ax.set_title("Label scarcity: mean ± sd over seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(args.output)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
