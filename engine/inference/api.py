"""`segment()`: classify a raster (or a window/bbox of it) with a checkpoint, streaming, to GeoTIFF.

Checks first (input readable, outputs new or overwrite allowed, folder writable, device present),
then loads the model, maps bands, and streams tile rows through `run_pipeline`. Outputs are created
under temporary names and renamed together only when everything succeeded.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence, Tuple

import numpy as np
import rasterio
import torch
from rasterio.windows import transform as window_transform

from .. import __version__
from ..checkpoint import ClassInfo, ModelCard, load_checkpoint
from ..devices import autocast_dtype, pick_device
from ..errors import RasterError, SpectralXError
from ..outputs import (CONFIDENCE_FORMATS, BlockRowWriter, open_class_raster, open_confidence_raster,
                       style_path, write_qml)
from ..progress import Progress, ensure
from .files import OutputSet, check_output
from .pipeline import run_pipeline
from .prepare import Preparer
from .source import RasterStrips
from .subset import resolve_window
from .tiling import plan_tiles


@dataclass
class SegmentResult:
    output: str
    confidence: Optional[str]
    style: Optional[str]
    classes: List[ClassInfo]
    seconds: float
    tiles: int                                          # tiles in the plan
    window: Tuple[int, int, int, int] = (0, 0, 0, 0)   # col_off, row_off, width, height processed
    device: str = "cpu"
    band_map: Any = field(default=None, repr=False)     # the BandMapping used
    skipped_tiles: int = 0                              # all-nodata tiles that needed no forward pass


def resolve_mapping(raster: str, card: ModelCard, band_map: Any = "auto", sensor: Optional[str] = None):
    """The band mapping for this raster (spectralx.bands); a duck-typed mapping object (anything
    with source_indexes/weights that is not a BandMapping, e.g. in tests) is used as is."""
    from ..bands import BandMapping, resolve_band_map
    if hasattr(band_map, "source_indexes") and not isinstance(band_map, BandMapping):
        return band_map
    return resolve_band_map(raster, card, band_map if band_map is not None else "auto", sensor)


def segment(raster: str, checkpoint: Optional[str], output: str, *, backbone: Optional[str] = None,
            band_map: Any = "auto", sensor: Optional[str] = None,
            window: Optional[Sequence[int]] = None, bbox: Optional[Sequence[float]] = None,
            overlap: float = 0.25, batch_size: int = 4, device: str = "auto",
            confidence: Optional[str] = None, overwrite: bool = False,
            progress: Optional[Progress] = None, confidence_format: str = "float32",
            precision: str = "auto", style: bool = True,
            model: Optional[Tuple[torch.nn.Module, ModelCard]] = None) -> SegmentResult:
    """Classify `raster` into `output` (uint8 class GeoTIFF + `.qml` style; optional confidence).

    `model=(module, card)` runs an already loaded network instead of `checkpoint` (plugin cache, tests).
    """
    t0 = time.perf_counter()
    progress = ensure(progress)
    if not os.path.isfile(raster):
        raise RasterError(f"input raster {raster} does not exist")
    if batch_size < 1:
        raise SpectralXError(f"batch size must be at least 1, got {batch_size}")
    output = check_output(output, overwrite, (raster,))
    targets = [output]
    conf_path = None
    if confidence:
        conf_path = check_output(confidence, overwrite, (raster,))
        if conf_path == output:
            raise RasterError("the confidence raster needs its own file name, not the class raster's")
        targets.append(conf_path)
    qml_path = style_path(output) if style else None
    if qml_path:
        targets.append(qml_path)
    if confidence_format not in CONFIDENCE_FORMATS:
        raise SpectralXError(f"confidence format must be one of {', '.join(CONFIDENCE_FORMATS)}")
    dev = pick_device(device)
    autocast_dtype(dev, precision)  # validates the precision name
    if model is None and checkpoint is None:
        raise SpectralXError("no checkpoint given")

    files = OutputSet(targets)   # proves the folders are writable, before any compute
    datasets = []
    try:
        net, card = model if model is not None else load_checkpoint(checkpoint, backbone=backbone, device="cpu")
        net = net.to(dev).eval()
        mapping = resolve_mapping(raster, card, band_map, sensor)
        for warning in getattr(mapping, "warnings", None) or []:
            progress.log(f"band mapping: {warning}")
        try:
            with rasterio.open(raster) as src:
                win = resolve_window(src, window, bbox)
                crs, transform = src.crs, window_transform(win, src.transform)
        except rasterio.errors.RasterioIOError as exc:
            raise RasterError(f"cannot read {raster}: {exc}") from None
        plan = plan_tiles(int(win.height), int(win.width), card.tile_size, overlap)
        prep = Preparer(mapping.weights, getattr(mapping, "fill", None), card.normalization)
        if prep.bands != len(card.bands):
            raise SpectralXError(f"band mapping gives {prep.bands} bands but the checkpoint expects {len(card.bands)}")
        source = RasterStrips(raster, win, plan, mapping.source_indexes, prep)

        tags = {"SPECTRALX_VERSION": __version__, "SPECTRALX_SOURCE": os.path.basename(raster),
                "SPECTRALX_CHECKPOINT": os.path.basename(checkpoint) if checkpoint else "(in memory)",
                "SPECTRALX_WINDOW": f"{int(win.col_off)} {int(win.row_off)} {int(win.width)} {int(win.height)}"}
        cls_ds = open_class_raster(files.temp(output), plan.width, plan.height, crs, transform, card.classes, tags)
        datasets.append(cls_ds)
        writers = [BlockRowWriter(cls_ds)]
        if conf_path:
            conf_ds = open_confidence_raster(files.temp(conf_path), plan.width, plan.height, crs, transform,
                                             confidence_format, tags)
            datasets.append(conf_ds)
            writers.append(BlockRowWriter(conf_ds))

        lut = torch.tensor([int(c.value) for c in card.classes], dtype=torch.uint8, device=dev)
        percent = confidence_format == "percent"

        def encode(row: int, probs: torch.Tensor, valid: np.ndarray):
            conf, idx = probs.max(dim=0)
            ok = torch.from_numpy(valid).to(dev)
            classes = torch.where(ok, lut[idx], torch.zeros_like(idx, dtype=torch.uint8))
            out = [classes.cpu().numpy()]
            if conf_path:
                if percent:  # 1..100 so that 0 stays nodata
                    conf = (conf * 100).round().clamp_(1, 100).to(torch.uint8)
                out.append(torch.where(ok, conf, torch.zeros_like(conf)).cpu().numpy())
            return row, out

        def write(payload) -> None:
            row, arrays = payload
            for w, a in zip(writers, arrays):
                w.write(row, a)

        progress.log(f"segmenting {int(win.width)} x {int(win.height)} px in {plan.n_tiles} tiles "
                     f"of {plan.tile} px on {dev}")
        computed = run_pipeline(plan, source, net, len(card.classes), encode, write, batch_size=batch_size,
                             device=dev, precision=precision, progress=progress)
        for w in writers:
            w.flush()
        while datasets:
            datasets.pop().close()
        if qml_path:
            write_qml(files.temp(qml_path), card.classes)
        files.commit()
    except BaseException:
        for ds in datasets:
            try:
                ds.close()
            except Exception:
                pass
        files.discard()
        raise
    return SegmentResult(output=output, confidence=conf_path, style=qml_path, classes=list(card.classes),
                         seconds=time.perf_counter() - t0, tiles=plan.n_tiles,
                         window=(int(win.col_off), int(win.row_off), int(win.width), int(win.height)),
                         device=dev, band_map=mapping, skipped_tiles=plan.n_tiles - computed)
