"""`segment()`: classify a raster (or a window/bbox of it) with a checkpoint, streaming, to GeoTIFF.

Checks first (input readable, outputs new or overwrite allowed, folder writable, device present,
subset inside the raster, bands mappable), then loads the weights and streams tile rows through
`run_pipeline`. Outputs are created under temporary names and renamed together only on success.
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
from ..checkpoint import ClassInfo, ModelCard, load_checkpoint, read_card
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


def _output_paths(raster: str, output: str, confidence: Optional[str], style: bool, overwrite: bool):
    """(class raster, confidence raster or None, style or None), each checked (see files.check_output).
    The style beside the class raster is replaced silently: it belongs to the class raster."""
    output = check_output(output, overwrite, (raster,))
    conf_path = check_output(confidence, overwrite, (raster,)) if confidence else None
    if conf_path == output:
        raise RasterError("the confidence raster needs its own file name, not the class raster's")
    return output, conf_path, style_path(output) if style else None


def _encoder(card: ModelCard, dev: str, with_confidence: bool, percent: bool):
    """Blended probabilities of finished rows -> uint8 class values (0 = nodata) [+ confidence],
    reduced on the compute device so only the small results travel to the writer."""
    lut = torch.tensor([int(c.value) for c in card.classes], dtype=torch.uint8, device=dev)

    def encode(row: int, probs: torch.Tensor, valid: np.ndarray):
        conf, idx = probs.max(dim=0)
        ok = torch.from_numpy(valid).to(dev)
        out = [torch.where(ok, lut[idx], torch.zeros_like(idx, dtype=torch.uint8)).cpu().numpy()]
        if with_confidence:
            if percent:  # 1..100 so that 0 stays nodata
                conf = (conf * 100).round().clamp_(1, 100).to(torch.uint8)
            out.append(torch.where(ok, conf, torch.zeros_like(conf)).cpu().numpy())
        return row, out
    return encode


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
    Every check that can fail (paths, device, subset, band mapping) runs before the weights load.
    """
    t0 = time.perf_counter()
    progress = ensure(progress)
    if not os.path.isfile(raster):
        raise RasterError(f"input raster {raster} does not exist")
    if batch_size < 1:
        raise SpectralXError(f"batch size must be at least 1, got {batch_size}")
    if confidence_format not in CONFIDENCE_FORMATS:
        raise SpectralXError(f"confidence format must be one of {', '.join(CONFIDENCE_FORMATS)}")
    if model is None and checkpoint is None:
        raise SpectralXError("no checkpoint given")
    output, conf_path, qml_path = _output_paths(raster, output, confidence, style, overwrite)
    dev = pick_device(device)
    autocast_dtype(dev, precision)  # validates the precision name
    card = model[1] if model is not None else read_card(checkpoint)   # header only: cheap
    try:
        with rasterio.open(raster) as src:
            win = resolve_window(src, window, bbox)
            crs, transform = src.crs, window_transform(win, src.transform)
    except rasterio.errors.RasterioIOError as exc:
        raise RasterError(f"cannot read {raster}: {exc}") from None
    plan = plan_tiles(int(win.height), int(win.width), card.tile_size, overlap)
    mapping = resolve_mapping(raster, card, band_map, sensor)
    prep = Preparer(mapping.weights, getattr(mapping, "fill", None), card.normalization)
    if prep.bands != len(card.bands):
        raise SpectralXError(f"band mapping gives {prep.bands} bands but the checkpoint expects {len(card.bands)}")
    for warning in getattr(mapping, "warnings", None) or []:
        progress.log(f"band mapping: {warning}")

    files = OutputSet([p for p in (output, conf_path, qml_path) if p])   # proves the folders are writable
    datasets = []
    try:
        net = model[0] if model is not None else load_checkpoint(checkpoint, backbone=backbone)[0]
        net = net.to(dev).eval()
        tags = {"SPECTRALX_VERSION": __version__, "SPECTRALX_SOURCE": os.path.basename(raster),
                "SPECTRALX_CHECKPOINT": os.path.basename(checkpoint) if checkpoint else "(in memory)",
                "SPECTRALX_WINDOW": " ".join(str(int(v)) for v in (win.col_off, win.row_off, win.width, win.height))}
        datasets.append(open_class_raster(files.temp(output), plan.width, plan.height, crs, transform,
                                          card.classes, tags))
        if conf_path:
            datasets.append(open_confidence_raster(files.temp(conf_path), plan.width, plan.height, crs,
                                                   transform, confidence_format, tags))
        writers = [BlockRowWriter(ds) for ds in datasets]

        def write(payload) -> None:   # writer thread
            row, arrays = payload
            for w, a in zip(writers, arrays):
                w.write(row, a)

        progress.log(f"segmenting {plan.width} x {plan.height} px in {plan.n_tiles} tiles of {plan.tile} px on {dev}")
        source = RasterStrips(raster, win, plan, mapping.source_indexes, prep)
        encode = _encoder(card, dev, conf_path is not None, confidence_format == "percent")
        computed = run_pipeline(plan, source, net, len(card.classes), encode, write, batch_size=batch_size,
                                device=dev, precision=precision, progress=progress)
        for w in writers:
            w.flush()
        while datasets:
            datasets.pop().close()
        if qml_path:
            write_qml(files.temp(qml_path), card.classes)
        files.commit()
    except BaseException:   # cancel, error, Ctrl-C: no output under the requested names
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
