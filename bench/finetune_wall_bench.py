"""A whole default fine-tune with a real-size backbone on this CPU, timed end to end (issue 22 item 2).

`bench/cpu_backbone_bench.py` times a few bare training steps and extrapolates; an analyst waits for
the whole command: chip sampling, 300 steps, the validation passes, the logit adjustment, the random
forest, the fusion weight and the checkpoint. This runs `spectralx finetune` with the default recipe on
the Landsat 8 crop and its hand-drawn polygons (tests/fixtures: 224 x 256 px, 3 bands, 3 classes) with
a random-weight backbone of the real shape (ViT-B/16 by default; real weights cannot be had here, and
the time does not depend on them), 224-px tiles, and reports:

  wall_s            the command's wall time
  estimate          the loop's own "about X s per step ... N steps take about M" line (after step 3)
  log               the run's timestamps of its main phases, from its log lines

    python bench/finetune_wall_bench.py [--preset vit_base_patch16] [--steps 300]

Updates the "finetune_wall" section of bench/results.json. Run it alone: it takes the machine.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import sys
import tempfile
import time

import results_file  # bench/ is the script's folder, first on sys.path
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(os.path.dirname(HERE), "tests", "fixtures")
IMAGE = os.path.join(FIXTURES, "training_landsat8_224078.tif")
POLYGONS = os.path.join(FIXTURES, "training_landsat8_224078_polygons.gpkg")


def random_backbone(preset: str, path: str) -> str:
    from spectralx.backbone_io import save_backbone
    from spectralx.config import ModelConfig
    from spectralx.model.backbone import VisionTransformer

    torch.manual_seed(0)
    cfg = ModelConfig.from_preset(preset, img_size=224)
    save_backbone(VisionTransformer(cfg).state_dict(), cfg, path, f"random {preset} (timing only)")
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", default="vit_base_patch16")
    ap.add_argument("--steps", type=int, default=300)
    args = ap.parse_args()
    from spectralx.cli import main as cli

    lines = []
    with tempfile.TemporaryDirectory(prefix="spectralx-ft-wall-") as tmp:
        backbone = random_backbone(args.preset, os.path.join(tmp, f"{args.preset}.safetensors"))
        out = os.path.join(tmp, "model.safetensors")
        argv = [
            "finetune",
            "--image",
            IMAGE,
            "--labels",
            POLYGONS,
            "--class-field",
            "name",
            "--sensor",
            "landsat8",
            "--backbone",
            backbone,
            "--tile-size",
            "224",
            "--steps",
            str(args.steps),
            "-o",
            out,
        ]
        load_before = [round(v, 2) for v in os.getloadavg()]
        t0 = time.perf_counter()
        _capture(lines, t0)
        rc = cli(argv)
        wall = time.perf_counter() - t0
    estimate = next((line for _, line in lines if "s per step on" in line), None)
    section = {
        "when": _dt.datetime.now().isoformat(timespec="seconds"),
        "command": "python bench/finetune_wall_bench.py " + " ".join(sys.argv[1:]),
        "machine": f"{os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads",
        "setup": f"spectralx finetune, default recipe, {args.preset} random weights, 224 px tiles, Landsat 8 crop "
        "(224 x 256 px, 3 bands, 3 classes, hand-drawn polygons)",
        "rc": rc,
        "steps": args.steps,
        "wall_s": round(wall, 1),
        "wall_min": round(wall / 60, 1),
        "estimate": estimate,
        "load_before": load_before,
        "load_after": [round(v, 2) for v in os.getloadavg()],
        "log": [f"{t:7.1f} s  {line}" for t, line in lines if not line.startswith("step ") or "val mIoU" in line][:60],
    }
    results_file.update_results("finetune_wall", section)
    print({k: v for k, v in section.items() if k != "log"})
    return 0 if rc == 0 else 1


def _capture(lines: list, t0: float) -> None:
    """Keep the CLI's log lines (its progress bar's `log`, and its closing prints) with their time
    since the start."""
    import builtins

    from spectralx.progress import TqdmProgress

    real_log, real_print = TqdmProgress.log, builtins.print

    def log(self, message: str) -> None:
        lines.append((time.perf_counter() - t0, message))
        real_log(self, message)

    def printing(*a, **k):
        lines.append((time.perf_counter() - t0, " ".join(str(x) for x in a)))
        real_print(*a, **k)

    TqdmProgress.log = log
    builtins.print = printing


if __name__ == "__main__":
    sys.exit(main())
