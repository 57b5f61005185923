"""The streaming loop: a reader thread, compute on the calling thread, a writer thread.

reader: windowed read + band mapping + normalization of tile row r+1 (bounded queue)
compute: batches of tiles through the model, softmax, blending into the strip accumulator; finished
         rows are reduced to class/confidence on the device and handed to the writer
writer:  encodes finished rows into the output files (bounded queue)

So disk I/O and preprocessing overlap the forward passes, and at most a few strips are in flight,
whatever the raster's height. Cancellation is checked before every batch; errors in either thread
surface on the calling thread. Tiles whose pixels are all nodata are skipped (no forward pass).
Returns the number of tiles run through the model.
"""
from __future__ import annotations

import queue
import threading
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from ..devices import autocast
from ..progress import Progress, ensure
from .accumulate import StripAccumulator
from .tiling import TilePlan

_DONE = object()


class _Thread(threading.Thread):
    """A daemon worker whose exception is kept for the main thread to re-raise."""

    def __init__(self, target: Callable[[], None], name: str):
        super().__init__(name=name, daemon=True)
        self._target_fn = target
        self.error: Optional[BaseException] = None

    def run(self) -> None:
        try:
            self._target_fn()
        except BaseException as exc:  # handed to the main thread
            self.error = exc


def _put(q: "queue.Queue", item, stop: threading.Event, consumer: Optional[threading.Thread] = None) -> bool:
    """Blocking put that gives up when the run is stopped or the consumer died (no thread hangs)."""
    while not stop.is_set() and (consumer is None or consumer.is_alive()):
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def run_pipeline(plan: TilePlan, source, model: Callable[[torch.Tensor], torch.Tensor], num_classes: int,
                 encode: Callable[[int, torch.Tensor, np.ndarray], object], write: Callable[[object], None],
                 *, batch_size: int = 4, device: str = "cpu", precision: str = "auto",
                 progress: Optional[Progress] = None, queue_size: int = 2,
                 on_accumulator: Optional[Callable[[StripAccumulator], None]] = None) -> int:
    """Run every tile of `plan` through `model`.

    source: object with open(), read(r) -> (x (C, >=T, >=T) float32, valid (strip_h, W) bool), close()
    encode(row, probs (K, n, W) on device, valid (n, W)) -> payload, on the compute thread
    write(payload), on the writer thread, rows in order
    """
    progress = ensure(progress)
    dev = torch.device(device)
    T = plan.tile
    stop = threading.Event()
    strips: "queue.Queue" = queue.Queue(maxsize=queue_size)
    outgoing: "queue.Queue" = queue.Queue(maxsize=queue_size * 2)

    def read_all() -> None:
        source.open()
        try:
            for r in range(len(plan.ys)):
                if not _put(strips, source.read(r), stop):
                    return
        finally:
            source.close()
        _put(strips, _DONE, stop)

    def write_all() -> None:
        while not stop.is_set():   # stopped (cancel/error): drop what is queued, the files are discarded
            try:
                item = outgoing.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is _DONE:
                return
            write(item)

    reader, writer = _Thread(read_all, "spectralx-reader"), _Thread(write_all, "spectralx-writer")

    def next_strip() -> Tuple[np.ndarray, np.ndarray]:
        while True:
            try:
                item = strips.get(timeout=0.1)
                break
            except queue.Empty:
                if reader.error is not None:
                    raise reader.error
                if not reader.is_alive():
                    raise RuntimeError("reader thread ended early")
        if item is _DONE:
            raise RuntimeError("reader thread ended early")
        return item

    acc = StripAccumulator(plan, num_classes, dev)
    if on_accumulator is not None:
        on_accumulator(acc)
    valid_rows: Dict[int, np.ndarray] = {}
    total = plan.n_tiles
    done = 0
    skipped = 0

    def emit_row() -> None:
        r = acc.row
        top, probs = acc.finish()
        valid = valid_rows.pop(r)[:probs.shape[1]]
        if not _put(outgoing, encode(top, probs, valid), stop, writer):
            raise writer.error or RuntimeError("writer thread ended early")

    def run_batch(batch: List[Tuple[int, int, torch.Tensor]]) -> None:
        nonlocal done
        progress.check()
        x = torch.stack([t for _, _, t in batch]).to(dev, non_blocking=True)
        with torch.inference_mode(), autocast(str(dev), precision):
            logits = model(x)
        probs = torch.softmax(logits.float(), dim=1)
        th, tw = plan.strip_height, plan.tile_width
        for i, (r, c, _) in enumerate(batch):
            while acc.row < r:
                emit_row()
            acc.add(r, c, probs[i, :, :th, :tw])
        done += len(batch)
        progress.update(done + skipped, total, f"{done + skipped}/{total} tiles")

    reader.start()
    writer.start()
    try:
        batch: List[Tuple[int, int, torch.Tensor]] = []
        tw = plan.tile_width
        for r in range(len(plan.ys)):
            x, valid = next_strip()
            valid_rows[r] = valid
            # rows above the oldest pending tile are complete: emit them now, so that skipped
            # (all-nodata) stretches never pile up
            while acc.row < (batch[0][0] if batch else r):
                emit_row()
            xt = torch.from_numpy(x)
            for c, x0 in enumerate(plan.xs):
                if not valid[:, x0:x0 + tw].any():   # all nodata: nothing to predict, skip the forward pass
                    skipped += 1
                    continue
                batch.append((r, c, xt[:, :T, x0:x0 + T]))
                if len(batch) == batch_size:
                    run_batch(batch)
                    batch = []
        if batch:
            run_batch(batch)
        while acc.row < len(plan.ys):
            emit_row()
        progress.update(total, total, f"{total}/{total} tiles")
        if not _put(outgoing, _DONE, stop, writer):
            raise writer.error or RuntimeError("writer thread ended early")
        writer.join()
        if writer.error is not None:
            raise writer.error
        reader.join()
        if reader.error is not None:
            raise reader.error
    finally:
        stop.set()
        reader.join()
        writer.join()
    return done
