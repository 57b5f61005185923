"""A checked, planned `segment()` run and what both runners share (in this process: api.run_local;
on a Dask cluster: distributed.py): the job, its result, the open outputs, the row encoder, the model
on its device. Kept apart from api.py so that distributed.py never imports api.py (no import cycle).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np
import torch
from rasterio.windows import Window

from .. import __version__
from ..checkpoint import ClassInfo, ModelCard
from ..outputs import open_class_raster, open_confidence_raster, write_qml
from .files import OutputSet
from .memory import WorkPlan, plan_work
from .prepare import Preparer
from .tiling import TilePlan


@dataclass
class SegmentResult:
    output: str
    confidence: Optional[str]
    style: Optional[str]
    classes: List[ClassInfo]
    seconds: float
    tiles: int  # tiles in the plan
    window: Tuple[int, int, int, int] = (0, 0, 0, 0)  # col_off, row_off, width, height processed
    device: str = "cpu"
    band_map: Any = field(default=None, repr=False)  # the BandMapping used
    skipped_tiles: int = 0  # all-nodata tiles that needed no forward pass
    blocks: int = 1  # blocks the window was processed in
    workers: int = 0  # Dask workers (0: in this process)
    precision: str = ""  # the path that ran: fp32, bf16, fp16, int8
    runtime: str = "torch"  # what ran it: torch or onnxruntime


@dataclass
class SegmentJob:
    """One checked, planned run: everything but the weights."""

    raster: str
    checkpoint: Optional[str]
    backbone: Optional[str]
    output: str
    confidence: Optional[str]
    style: Optional[str]
    card: ModelCard
    mapping: Any
    prep: Preparer
    window: Window
    crs: Any
    transform: Any
    tiles: TilePlan
    work: WorkPlan
    batch_size: int
    device: str  # resolved here
    device_request: str  # as asked (workers resolve "auto" themselves)
    precision: str
    confidence_format: str
    seconds_start: float = 0.0
    budget: int = 0
    block_size: Optional[int] = None
    path: str = ""  # the numeric path chosen when the weights loaded (precision.select)
    runtime: str = "torch"  # what ran it: torch or onnxruntime (precision.select)

    def tags(self) -> dict:
        w = self.window
        # a quantized map says so in its own file (the model card's accuracy was measured in float)
        extra = {"SPECTRALX_PRECISION": self.path} if self.path else {}
        if self.runtime != "torch":
            extra["SPECTRALX_RUNTIME"] = self.runtime
        return {
            **extra,
            "SPECTRALX_VERSION": __version__,
            "SPECTRALX_SOURCE": os.path.basename(self.raster),
            "SPECTRALX_CHECKPOINT": os.path.basename(self.checkpoint) if self.checkpoint else "(in memory)",
            "SPECTRALX_WINDOW": " ".join(str(int(v)) for v in (w.col_off, w.row_off, w.width, w.height)),
        }


def encoder(classes: Sequence[ClassInfo], dev: str, with_confidence: bool, percent: bool):
    """Blended probabilities of finished rows -> uint8 class values (0 = nodata) [+ confidence],
    reduced on the compute device so only the small results travel to the writer."""
    lut = torch.tensor([int(c.value) for c in classes], dtype=torch.uint8, device=dev)

    def encode(row: int, probs: torch.Tensor, valid: np.ndarray):
        conf, idx = probs.max(dim=0)
        ok = torch.from_numpy(np.ascontiguousarray(valid)).to(dev)
        out = [torch.where(ok, lut[idx], torch.zeros_like(idx, dtype=torch.uint8)).cpu().numpy()]
        if with_confidence:
            if percent:  # 1..100 so that 0 stays nodata
                conf = (conf * 100).round().clamp_(1, 100).to(torch.uint8)
            out.append(torch.where(ok, conf, torch.zeros_like(conf)).cpu().numpy())
        return row, out

    return encode


def read_ahead(dev: str) -> int:
    return 2 if torch.device(dev).type == "cpu" else 8  # a GPU must never wait for the reader


def plan_for_workers(job: SegmentJob, workers: int) -> None:
    """Re-plan a checked job's blocks for a cluster of `workers` worker threads."""
    job.work = plan_work(
        job.tiles,
        len(job.mapping.source_indexes),
        job.prep.bands,
        len(job.card.classes),
        job.budget,
        block_size=job.block_size,
        workers=workers,
        read_ahead=read_ahead(job.device),
    )


class OpenOutputs:
    """The run's output files under temporary names, open for writing; `commit` or `discard`."""

    def __init__(self, job: SegmentJob):
        self.job = job
        self.files = OutputSet([p for p in (job.output, job.confidence, job.style) if p])  # proves folders writable
        self.datasets = []
        try:
            t = job.tiles
            self.datasets.append(
                open_class_raster(
                    self.files.temp(job.output), t.width, t.height, job.crs, job.transform, job.card.classes, job.tags()
                )
            )
            if job.confidence:
                self.datasets.append(
                    open_confidence_raster(
                        self.files.temp(job.confidence),
                        t.width,
                        t.height,
                        job.crs,
                        job.transform,
                        job.confidence_format,
                        job.tags(),
                    )
                )
        except BaseException:
            self.discard()
            raise

    def commit(self) -> None:
        while self.datasets:
            self.datasets.pop().close()
        if self.job.style:
            write_qml(self.files.temp(self.job.style), self.job.card.classes)
        self.files.commit()

    def discard(self) -> None:  # cancel, error, Ctrl-C: no output under the requested names
        for ds in self.datasets:
            try:
                ds.close()
            except Exception:
                pass
        self.datasets = []
        self.files.discard()


def result_of(job: SegmentJob, computed: int, workers: int = 0) -> SegmentResult:
    w = job.window
    planned = sum(b.n_tiles for b in job.work.blocks)
    return SegmentResult(
        output=job.output,
        confidence=job.confidence,
        style=job.style,
        classes=list(job.card.classes),
        seconds=time.perf_counter() - job.seconds_start,
        tiles=job.tiles.n_tiles,
        window=(int(w.col_off), int(w.row_off), int(w.width), int(w.height)),
        device=job.device,
        band_map=job.mapping,
        skipped_tiles=planned - computed,
        blocks=len(job.work.blocks),
        workers=workers,
        precision=job.path,
        runtime=job.runtime,
    )


# On the CPU, channels-last convolutions (oneDNN's preferred layout) pay from this tile size up: a
# batch of 224-px tiles ran 1.17x (ViT-Tiny, 32 bands) and 1.24x (ViT-B/16) faster, but the demo's
# 64-px tiles of 218 bands 0.88x (the same process, interleaved; values equal to 5e-6)
CPU_CHANNELS_LAST_MIN_TILE = 128


def prepare_model(net: torch.nn.Module, dev: str) -> torch.nn.Module:
    """The network on its device for inference; in channels-last layout on CUDA (the convolutions of
    the stem and decoder run faster on tensor cores that way) and on the CPU for tiles of 128 px and
    more. The values do not change beyond float rounding."""
    net = net.to(dev).eval()
    kind = torch.device(dev).type
    tile = getattr(getattr(net, "cfg", None), "img_size", 0)
    if kind == "cuda" or (kind == "cpu" and tile >= CPU_CHANNELS_LAST_MIN_TILE):
        net = net.to(memory_format=torch.channels_last)
    return net
