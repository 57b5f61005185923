"""Many scenes with one checkpoint: `spectralx segment A.tif B.tif … --output-dir DIR`.

Each scene gets `<name>_classes.tif` (+ `.qml`) and `<name>_confidence.tif` in the folder. In-process
the scenes run one after another with the weights loaded once; with `dask=` every block of every
scene goes through one bounded queue over the cluster. A scene that fails (unreadable, bands that do
not map, a block that fails twice) is reported and leaves no file; the others are written.
"""

from __future__ import annotations

import os
from typing import Any, Callable, List, Optional, Tuple

from ..checkpoint import load_checkpoint
from ..errors import Cancelled, SpectralXError
from ..progress import Progress, ensure
from .api import prepare_segment, segment
from .distributed import SceneOutcome


def scene_outputs(rasters: List[str], output_dir: str, checkpoint: Optional[str] = None) -> List[Tuple[str, str, str]]:
    """(raster, class raster, confidence raster) per scene, named after the scene. An output that
    would be any of the inputs (another scene, the checkpoint), not only its own scene, is refused
    before anything runs: with --overwrite, scene A's output could otherwise replace scene B."""
    from ..fileio import same_file

    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise SpectralXError(f"--output-dir {output_dir} is a file, not a folder; give a folder for the outputs")
    if not os.path.isdir(output_dir):
        raise SpectralXError(f"output folder {output_dir} does not exist; create it first")
    seen = {}
    out = []
    for raster in rasters:
        stem = os.path.splitext(os.path.basename(raster.rstrip("/")))[0] or "scene"
        if stem in seen:
            raise SpectralXError(
                f"two scenes have the same name '{stem}' ({seen[stem]} and {raster}); "
                "their outputs would collide: rename one or run them into separate folders"
            )
        seen[stem] = raster
        out.append(
            (
                raster,
                os.path.join(output_dir, f"{stem}_classes.tif"),
                os.path.join(output_dir, f"{stem}_confidence.tif"),
            )
        )
    inputs = list(rasters) + ([checkpoint] if checkpoint else [])
    for raster, *outputs in out:
        for output in outputs:
            clash = next((i for i in inputs if same_file(output, i)), None)
            if clash is not None:
                raise SpectralXError(
                    f"the output {output} of scene {raster} is one of the inputs ({clash}); "
                    "nothing was written: run the scenes into another --output-dir"
                )
    return out


def _one_line(exc: BaseException) -> SpectralXError:
    if isinstance(exc, SpectralXError):
        return exc
    return SpectralXError(f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}")


def segment_scenes(
    rasters: List[str],
    checkpoint: str,
    output_dir: str,
    *,
    dask: Optional[str] = None,
    progress: Optional[Progress] = None,
    progress_for: Optional[Callable[[str], Progress]] = None,
    **options: Any,
) -> List[SceneOutcome]:
    """Segment every raster into `output_dir`; one outcome per raster (result or error), in order.
    `options` are segment()'s (band_map, overlap, batch_size, device, overwrite, max_memory, …)."""
    progress = ensure(progress)
    plan = scene_outputs(rasters, output_dir, checkpoint)
    if dask:
        from .distributed import run_on_cluster

        outcomes: List[SceneOutcome] = []
        jobs = []
        for raster, cls, conf in plan:
            try:
                jobs.append(prepare_segment(raster, checkpoint, cls, confidence=conf, **options))
                outcomes.append(None)
            except SpectralXError as exc:
                outcomes.append(SceneOutcome(raster, error=exc))
        done = iter(run_on_cluster(jobs, dask, progress, stop_on_error=False) if jobs else [])
        return [o if o is not None else next(done) for o in outcomes]

    model = None
    outcomes = []
    for raster, cls, conf in plan:
        try:
            if model is None:
                prepare_segment(raster, checkpoint, None, **options)  # a bad first scene fails before loading
                net, card = load_checkpoint(checkpoint, backbone=options.get("backbone"))
                model = (net, card)
            result = segment(
                raster,
                checkpoint,
                cls,
                confidence=conf,
                model=model,
                progress=progress_for(raster) if progress_for else progress,
                **options,
            )
            outcomes.append(SceneOutcome(raster, result=result))
        except (Cancelled, KeyboardInterrupt):
            raise
        except Exception as exc:  # this scene failed: report it, go on with the others
            outcomes.append(SceneOutcome(raster, error=_one_line(exc)))
    return outcomes


def summary_table(outcomes: List[SceneOutcome]) -> str:
    rows = [("scene", "result", "size (px)", "tiles", "seconds", "output / error")]
    for o in outcomes:
        name = os.path.basename(o.raster)
        if o.error is None:
            r = o.result
            rows.append((name, "ok", f"{r.window[2]} x {r.window[3]}", str(r.tiles), f"{r.seconds:.1f}", r.output))
        else:
            rows.append((name, "failed", "", "", "", str(o.error)))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:5], widths)) + "  " + r[5] for r in rows]
    ok = sum(o.error is None for o in outcomes)
    return "\n".join(lines + [f"{ok} of {len(outcomes)} scenes written"])
