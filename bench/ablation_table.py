"""Summarize accuracy-bench ablation logs (`accuracy_bench.py --set … --log FILE`) as a markdown table.

One row per (case, method, option overrides): test mIoU mean ± sd over seeds (folds averaged within a
seed first), the same for the paired flip-averaging score, and the mean training time. Used to write
docs/deviations.md; it reads only the log, so the table can be rebuilt without rerunning anything.

    python bench/ablation_table.py bench/ablations.jsonl
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict

import numpy as np


def _mean_sd(values):
    v = np.asarray(values, np.float64)
    return float(v.mean()), (float(v.std(ddof=1)) if len(v) > 1 else 0.0)


def summarize(lines):
    groups = defaultdict(lambda: defaultdict(list))
    for rec in lines:
        key = (rec["case"], rec["method"], json.dumps(rec.get("set") or {}, sort_keys=True))
        groups[key][rec["seed"]].append(rec)
    rows = []
    for (case, method, setting), by_seed in sorted(groups.items()):
        miou = [np.mean([r["miou"] for r in rs]) for rs in by_seed.values()]
        tta = [
            np.mean([r["miou_tta_toggled"] for r in rs])
            for rs in by_seed.values()
            if all("miou_tta_toggled" in r for r in rs)
        ]
        secs = [np.mean([r["train_seconds"] for r in rs]) for rs in by_seed.values()]
        rows.append(
            {
                "case": case,
                "method": method,
                "set": json.loads(setting),
                "seeds": len(by_seed),
                "miou": _mean_sd(miou),
                "tta": _mean_sd(tta) if tta else None,
                "seconds": float(np.mean(secs)),
            }
        )
    return rows


def markdown(rows) -> str:
    out = [
        "| case | method | options | seeds | test mIoU | with flips toggled | train s |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        opts = ", ".join(f"{k}={v}" for k, v in r["set"].items()) or "(defaults)"
        tta = f"{r['tta'][0]:.3f} ± {r['tta'][1]:.3f}" if r["tta"] else "–"
        out.append(
            f"| {r['case']} | {r['method']} | {opts} | {r['seeds']} | {r['miou'][0]:.3f} ± {r['miou'][1]:.3f} "
            f"| {tta} | {r['seconds']:.0f} |"
        )
    return "\n".join(out)


def main(argv) -> int:
    lines = []
    for path in argv[1:]:
        with open(path) as f:
            lines += [json.loads(x) for x in f if x.strip()]
    print(markdown(summarize(lines)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
