"""`segment()`: classify a raster (or a window/bbox of it) with a checkpoint, streaming, to GeoTIFF.

Checks first (input readable, outputs new or overwrite allowed, folder writable, device present,
subset inside the raster, bands mappable), then plans the work within a memory budget (`memory.py`:
blocks and read chunks), then loads the weights and streams each block through `run_pipeline`, in
this process or on a Dask cluster (`distributed.py`). Outputs are created under temporary names and
renamed together only on success.
"""

from __future__ import annotations

import os
import time
from typing import Any, Optional, Sequence, Tuple, Union

import torch
from rasterio.windows import transform as window_transform

from .. import defaults
from ..bands.sensors import fill_value
from ..checkpoint import ModelCard, load_checkpoint, read_card
from ..devices import autocast_dtype, pick_device
from ..errors import RasterError, SpectralXError
from ..outputs import CONFIDENCE_FORMATS, style_path
from ..progress import Progress, ensure
from ..raster_io import is_local, open_raster
from .files import check_output
from .job import (  # noqa: F401 (re-exported)
    OpenOutputs,
    SegmentJob,
    SegmentResult,
    encoder,
    plan_for_workers,
    prepare_model,
    read_ahead,
    result_of,
)
from .memory import WorkPlan, parse_memory, plan_work
from .pipeline import run_pipeline
from .precision import select
from .prepare import Preparer
from .source import RasterStrips, declares_nodata
from .subset import resolve_window
from .tiling import plan_tiles
from .writer import BlockWindowWriter


def resolve_mapping(raster: str, card: ModelCard, band_map: Any = "auto", sensor: Optional[str] = None):
    """The band mapping for this raster (spectralx.bands); a duck-typed mapping object (anything
    with source_indexes/weights that is not a BandMapping, e.g. in tests) is used as is."""
    from ..bands import BandMapping, resolve_band_map

    if hasattr(band_map, "source_indexes") and not isinstance(band_map, BandMapping):
        return band_map
    return resolve_band_map(raster, card, band_map if band_map is not None else "auto", sensor)


def _output_paths(raster: str, output: str, confidence: Optional[str], style: bool, overwrite: bool):
    """(class raster, confidence raster or None, style or None), each checked (see files.check_output).
    An existing style beside the class raster is replaced only with overwrite, like the raster: it
    may be the user's own (spectralx.fileio.check_outputs, the rule every output follows)."""
    output = check_output(output, overwrite, (raster,))
    conf_path = check_output(confidence, overwrite, (raster,)) if confidence else None
    if conf_path == output:
        raise RasterError("the confidence raster needs its own file name, not the class raster's")
    qml = style_path(output) if style else None
    if qml:
        from ..fileio import check_outputs

        check_outputs([(qml, "style")], (raster,), overwrite)
    return output, conf_path, qml


def prepare_segment(
    raster: str,
    checkpoint: Optional[str],
    output: Optional[str],
    *,
    backbone: Optional[str] = None,
    band_map: Any = "auto",
    sensor: Optional[str] = None,
    window: Optional[Sequence[int]] = None,
    bbox: Optional[Sequence[float]] = None,
    overlap: float = defaults.OVERLAP,
    batch_size: int = defaults.BATCH_SIZE,
    device: str = "auto",
    confidence: Optional[str] = None,
    overwrite: bool = False,
    confidence_format: str = "float32",
    precision: str = "auto",
    style: bool = True,
    card: Optional[ModelCard] = None,
    max_memory: Union[None, int, str] = None,
    block_size: Optional[int] = None,
    workers: int = 0,
    readers: Optional[int] = None,
) -> SegmentJob:
    """Every check that can fail (paths, device, subset, band mapping, budget), and the work plan;
    no weights are loaded and nothing is written. `output=None` plans without checking outputs."""
    # Long (86 lines) on purpose: the checks of a run in the order a user meets them, each one line, before any
    # work.
    t0 = time.perf_counter()
    if is_local(raster) and not os.path.isfile(raster):
        raise RasterError(f"input raster {raster} does not exist")
    if batch_size < 1:
        raise SpectralXError(f"batch size must be at least 1, got {batch_size}")
    if confidence_format not in CONFIDENCE_FORMATS:
        raise SpectralXError(f"confidence format must be one of {', '.join(CONFIDENCE_FORMATS)}")
    if card is None and checkpoint is None:
        raise SpectralXError("no checkpoint given")
    budget = parse_memory(max_memory)
    if output is not None:
        output, conf_path, qml_path = _output_paths(raster, output, confidence, style, overwrite)
    else:
        conf_path = qml_path = None
    dev = pick_device(device)
    autocast_dtype(dev, precision)  # validates the precision name
    card = card if card is not None else read_card(checkpoint)  # header only: cheap
    with open_raster(raster, "input raster") as src:
        win = resolve_window(src, window, bbox)
        crs, transform = src.crs, window_transform(win, src.transform)
    tiles = plan_tiles(int(win.height), int(win.width), card.tile_size, overlap)
    mapping = resolve_mapping(raster, card, band_map, sensor)
    prep = Preparer(mapping.weights, getattr(mapping, "fill", None), card.normalization)
    if prep.bands != len(card.bands):
        raise SpectralXError(f"band mapping gives {prep.bands} bands but the checkpoint expects {len(card.bands)}")
    work = plan_work(
        tiles,
        len(mapping.source_indexes),
        prep.bands,
        len(card.classes),
        budget,
        block_size=block_size,
        workers=workers,
        read_ahead=read_ahead(dev),
        readers=1 if workers else _readers(readers),
    )
    return SegmentJob(
        raster,
        checkpoint,
        backbone,
        output,
        conf_path,
        qml_path,
        card,
        mapping,
        prep,
        win,
        crs,
        transform,
        tiles,
        work,
        batch_size,
        dev,
        device,
        precision,
        confidence_format,
        t0,
        budget,
        block_size,
    )


# Reader threads when none are asked for: one. On a GPU one reader bounds segment() (an H200 ran at
# 0.53 of the bare forward, 0.69 with reads cached: bench/gpu_segment_breakdown.py) and reading alone
# is 1.4-1.7x faster with two threads (bench/reader_bench.py), but more readers were not yet measured
# on a GPU, so they are an option (`readers=`, `--reader-threads`), not the default.
DEFAULT_READERS = 1


def _readers(readers: Optional[int]) -> int:
    if readers is None:
        return DEFAULT_READERS
    if isinstance(readers, bool) or not isinstance(readers, int) or readers < 1:
        raise SpectralXError(f"reader threads must be a whole number of at least 1, not {readers!r}")
    return readers


def plan_segment(raster: str, checkpoint: Optional[str], **kwargs) -> WorkPlan:
    """The work plan `segment()` would follow (blocks, chunks, budget), without running anything."""
    return prepare_segment(raster, checkpoint, None, **kwargs).work


def log_fill_rule(job: SegmentJob, progress: Progress) -> None:
    """Say when a raster declares no nodata, so the fill rule applies (see source.RasterStrips)."""
    ds = open_raster(job.raster, "input raster")
    try:
        if declares_nodata(ds, job.mapping.source_indexes):
            return
    finally:
        ds.close()
    value = fill_value(getattr(job.mapping, "sensor", None))
    progress.log(
        f"no nodata value declared: pixels equal to {value:g} in every band are treated as nodata "
        "(the sensor's fill value, e.g. a Level-1 collar)"
    )


def run_local(job: SegmentJob, net: torch.nn.Module, progress: Progress) -> int:
    """All blocks in this process, one after another; returns the tiles run through the model."""
    outputs = OpenOutputs(job)
    try:
        encode = encoder(job.card.classes, job.device, job.confidence is not None, job.confidence_format == "percent")
        total = sum(b.n_tiles for b in job.work.blocks)
        computed = 0
        for block in job.work.blocks:
            writers = [BlockWindowWriter(ds, block.y0, block.x0, block.x1) for ds in outputs.datasets]

            def write(payload, writers=writers) -> None:  # writer thread
                row, arrays = payload
                for w, a in zip(writers, arrays):
                    w.write(row, a)

            source = RasterStrips(
                job.raster,
                job.window,
                job.tiles,
                job.mapping.source_indexes,
                job.prep,
                gdal_cache=job.work.gdal_cache,
                fill=fill_value(getattr(job.mapping, "sensor", None)),
            )
            done = sum(b.n_tiles for b in job.work.blocks[: block.index])
            computed += run_pipeline(
                job.tiles,
                source,
                net,
                len(job.card.classes),
                encode,
                write,
                batch_size=job.batch_size,
                device=job.device,
                precision=job.precision,
                progress=progress,
                queue_size=job.work.queue,
                block=block,
                group=job.work.group,
                tiles_done=done,
                tiles_total=total,
                readers=job.work.readers,
            )
            for w in writers:
                w.flush()
        outputs.commit()
    except BaseException:
        outputs.discard()
        raise
    return computed


def segment(
    raster: str,
    checkpoint: Optional[str],
    output: str,
    *,
    backbone: Optional[str] = None,
    band_map: Any = "auto",
    sensor: Optional[str] = None,
    window: Optional[Sequence[int]] = None,
    bbox: Optional[Sequence[float]] = None,
    overlap: float = defaults.OVERLAP,
    batch_size: int = defaults.BATCH_SIZE,
    device: str = "auto",
    confidence: Optional[str] = None,
    overwrite: bool = False,
    progress: Optional[Progress] = None,
    confidence_format: str = "float32",
    precision: str = "auto",
    style: bool = True,
    model: Optional[Tuple[torch.nn.Module, ModelCard]] = None,
    max_memory: Union[None, int, str] = None,
    block_size: Optional[int] = None,
    dask: Optional[str] = None,
    readers: Optional[int] = None,
) -> SegmentResult:
    """Classify `raster` into `output` (uint8 class GeoTIFF + `.qml` style; optional confidence).

    `model=(module, card)` runs an already loaded network instead of `checkpoint` (plugin cache, tests).
    `max_memory` (bytes or "2G") bounds the working memory (default: half the free RAM, at most
    2 GiB); `block_size` forces square blocks of that many pixels (a multiple of 256).
    `dask` runs the blocks on a Dask cluster: "local", "local:N" or a scheduler address
    ("tcp://host:8786"); the class raster is the same as in-process.
    `readers` reader threads (default 1; at most as many as `max_memory` leaves room for) read and
    normalize chunks in turn: more can keep a GPU busy.
    Every check that can fail (paths, device, subset, band mapping) runs before the weights load.
    """
    # Long (88 lines) on purpose: keyword arguments mirrored from SegmentOptions plus the job's prepare -> run
    # handoff.
    progress = ensure(progress)
    job = prepare_segment(
        raster,
        checkpoint,
        output,
        backbone=backbone,
        band_map=band_map,
        sensor=sensor,
        window=window,
        bbox=bbox,
        overlap=overlap,
        batch_size=batch_size,
        device=device,
        confidence=confidence,
        overwrite=overwrite,
        confidence_format=confidence_format,
        precision=precision,
        style=style,
        card=model[1] if model is not None else None,
        max_memory=max_memory,
        block_size=block_size,
        readers=readers,
    )
    for warning in getattr(job.mapping, "warnings", None) or []:
        progress.log(f"band mapping: {warning}")
    log_fill_rule(job, progress)
    if dask:
        from .distributed import run_on_cluster

        if checkpoint is None:
            raise SpectralXError("a Dask run needs the checkpoint file (workers load it themselves)")
        if job.precision == "int8":  # workers never measure: auto stays float there (distributed.py)
            job.path = "int8"
        outcome = run_on_cluster([job], dask, progress)[0]
        if outcome.error is not None:
            raise outcome.error
        return outcome.result
    net = model[0] if model is not None else load_checkpoint(checkpoint, backbone=backbone)[0]
    net = prepare_model(net, job.device)
    net, path = select(
        net, job.device, job.precision, batch=job.batch_size, tiles=sum(b.n_tiles for b in job.work.blocks)
    )
    if path.note:
        progress.log(path.note)
    job.precision, job.path, job.runtime = path.autocast, path.name, path.runtime
    p = job.tiles
    progress.log(
        f"segmenting {p.width} x {p.height} px in {p.n_tiles} tiles of {p.tile} px on {job.device}"
        + (f", {len(job.work.blocks)} blocks" if len(job.work.blocks) > 1 else "")
    )
    computed = run_local(job, net, progress)
    return result_of(job, computed)
