"""The streaming loop: a reader thread, compute on the calling thread, a writer thread.

reader: windowed read + band mapping + normalization of the next chunk of a tile row (bounded queue)
compute: batches of tiles through the model, softmax, blending into the strip accumulator; finished
         rows are reduced to class/confidence on the device and handed to the writer
writer:  encodes finished rows into the output files (bounded queue)

So disk I/O and preprocessing overlap the forward passes, and at most a few strips are in flight,
whatever the raster's size: a run covers one block (`tiling.Block`, the whole window by default)
and reads it in chunks of a few tiles (`group`), both sized by the memory plan (`memory.py`).
Cancellation is checked before every batch; errors in either thread surface on the calling thread.
On CUDA, batches are staged in page-locked host buffers and copied without blocking, so the copy of
one batch overlaps the forward pass of the previous one. Tiles whose pixels are all nodata are skipped (no forward pass).
Returns the number of tiles run through the model.
"""

from __future__ import annotations

import queue
import threading
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from ..devices import autocast
from ..model.forest_tiles import StripCache
from ..progress import Progress, ensure
from .accumulate import StripAccumulator
from .tiling import Block, TilePlan, whole_window

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


def run_pipeline(
    plan: TilePlan,
    source,
    model: Callable[[torch.Tensor], torch.Tensor],
    num_classes: int,
    encode: Callable[[int, torch.Tensor, np.ndarray], object],
    write: Callable[[object], None],
    *,
    batch_size: int = 4,
    device: str = "cpu",
    precision: str = "auto",
    progress: Optional[Progress] = None,
    queue_size: int = 2,
    on_accumulator: Optional[Callable[[StripAccumulator], None]] = None,
    block: Optional[Block] = None,
    group: Optional[int] = None,
    tiles_done: int = 0,
    tiles_total: Optional[int] = None,
    readers: int = 1,
) -> int:
    """Run every tile of `block` (default: the whole plan) through `model`.

    source: object with open(), read(r, c0, c1) -> (x (C, >=T, >=T) float32, valid (strip_h, span)
            bool) for tile row r, tile columns [c0, c1), close()
    group:  tile columns per read (default: the block's width in one read)
    encode(row, probs (K, n, w) on device, valid (n, w)) -> payload, on the compute thread, for the
           block's output rows [y0, y1) and columns [x0, x1) only (halo rows/columns are cut off)
    write(payload), on the writer thread, rows in order
    tiles_done/tiles_total: progress offset and total when the run is one block of several
    readers: reader threads (needs source.clone()); chunk j is read by thread j % readers, each into
             its own queue, so the chunks still reach the model in order and memory stays bounded
    """
    # Long (176 lines) on purpose: the hot loop with its reader threads, batching, device copies and blending;
    # split, the thread and queue handshakes would no longer read top to bottom.
    progress = ensure(progress)
    block = block or whole_window(plan)
    dev = torch.device(device)
    T = plan.tile
    stop = threading.Event()
    outgoing: "queue.Queue" = queue.Queue(maxsize=queue_size * 2)
    group = max(1, min(group or block.c1 - block.c0, block.c1 - block.c0))
    groups = [(c, min(c + group, block.c1)) for c in range(block.c0, block.c1, group)]
    jobs = [(r, c0, c1) for r in range(block.r0, block.r1) for c0, c1 in groups]
    cuda = dev.type == "cuda"
    n_readers = max(1, min(readers, len(jobs))) if hasattr(source, "clone") else 1
    sources = [source] + [source.clone() for _ in range(n_readers - 1)]
    strips: List["queue.Queue"] = [queue.Queue(maxsize=max(1, -(-queue_size // n_readers))) for _ in range(n_readers)]

    def read_all(k: int) -> None:
        src, out = sources[k], strips[k]
        src.open()  # in this thread: GDAL handles are not shared between threads
        try:
            for r, c0, c1 in jobs[k::n_readers]:
                x, valid = src.read(r, c0, c1)
                xt = torch.from_numpy(x)
                if cuda:
                    # page-locked here, in the reader thread: the compute thread then copies each
                    # chunk to the GPU once, asynchronously, and cuts its tiles there (stacking
                    # strided tile views on the host was most of segment()'s time over the model's)
                    xt = xt.pin_memory()
                if not _put(out, (r, c0, c1, xt, valid), stop):
                    return
        finally:
            src.close()
        _put(out, _DONE, stop)

    def write_all() -> None:
        while not stop.is_set():  # stopped (cancel/error): drop what is queued, the files are discarded
            try:
                item = outgoing.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is _DONE:
                return
            write(item)

    read_threads = [_Thread(lambda k=k: read_all(k), f"spectralx-reader-{k}") for k in range(n_readers)]
    writer = _Thread(write_all, "spectralx-writer")

    def next_chunk(j: int):
        reader, source_queue = read_threads[j % n_readers], strips[j % n_readers]
        while True:
            try:
                item = source_queue.get(timeout=0.1)
                break
            except queue.Empty:
                if reader.error is not None:
                    raise reader.error from None
                if not reader.is_alive():
                    raise RuntimeError("reader thread ended early") from None
        if item is _DONE:
            raise RuntimeError("reader thread ended early")
        return item

    acc = StripAccumulator(plan, num_classes, dev, block)
    if on_accumulator is not None:
        on_accumulator(acc)
    valid_rows: Dict[int, np.ndarray] = {}
    total = tiles_total if tiles_total is not None else block.n_tiles
    done = 0
    skipped = 0
    tw = plan.tile_width
    cols = slice(block.x0 - acc.x_off, block.x1 - acc.x_off)  # the block's own columns in the span

    def emit_row() -> None:
        r = acc.row
        top, probs = acc.finish()
        valid = valid_rows.pop(r)[: probs.shape[1]]
        a, b = max(top, block.y0), min(top + probs.shape[1], block.y1)  # halo rows are cut off
        if a >= b:
            return
        payload = encode(a, probs[:, a - top : b - top, cols], valid[a - top : b - top, cols])
        if not _put(outgoing, payload, stop, writer):
            raise writer.error or RuntimeError("writer thread ended early")

    forest_for_tiles = getattr(model, "forest_for_tiles", None)
    strip_cache = StripCache()

    def run_batch(batch: List[Tuple[int, int, torch.Tensor, Optional[torch.Tensor]]]) -> None:
        nonlocal done
        progress.check()
        tiles = [t for _, _, t, _ in batch]
        x = torch.stack(tiles)  # on the GPU when the chunks are there already
        x = x.contiguous(memory_format=torch.channels_last) if cuda else x.to(dev)
        with torch.inference_mode(), autocast(str(dev), precision):
            if batch[0][3] is None:
                logits = model(x)
            else:
                logits = model(x, torch.stack([f for _, _, _, f in batch]).to(x.device))
        probs = torch.softmax(logits.float(), dim=1)
        th = plan.strip_height
        for i, (r, c, _, _) in enumerate(batch):
            while acc.row < r:
                emit_row()
            acc.add(r, c, probs[i, :, :th, :tw])
        done += len(batch)
        progress.update(tiles_done + done + skipped, total, f"{tiles_done + done + skipped}/{total} tiles")

    for reader in read_threads:
        reader.start()
    writer.start()
    try:
        batch: List[Tuple[int, int, torch.Tensor, Optional[torch.Tensor]]] = []
        for j in range(len(jobs)):
            r, c0, c1, xt, valid = next_chunk(j)
            if cuda:
                xt = xt.to(dev, non_blocking=True)  # the pinned block stays alive until the copy ends
            left = plan.xs[c0] - acc.x_off
            if r not in valid_rows:
                valid_rows[r] = np.zeros((plan.strip_height, acc.span), dtype=bool)
            valid_rows[r][:, left : left + valid.shape[1]] = valid
            # rows above the oldest pending tile are complete: emit them now, so that skipped
            # (all-nodata) stretches never pile up
            while acc.row < (batch[0][0] if batch else r):
                emit_row()
            run = []
            for c in range(c0, c1):
                x0 = plan.xs[c] - plan.xs[c0]
                if not valid[:, x0 : x0 + tw].any():  # all nodata: nothing to predict, skip the forward pass
                    skipped += 1
                    continue
                run.append((c, x0))
            # a pooled forest's part for the chunk's tiles at once: each pixel's trees walked once
            # where the tiles overlap, instead of once per tile (spectralx.model.forest_tiles)
            forest = None
            if forest_for_tiles and run:  # rows the chunk above walked are taken from it (strip_cache)
                forest = forest_for_tiles(xt, [x0 for _, x0 in run], T, strip_cache, (plan.ys[r], c0))
            for i, (c, x0) in enumerate(run):
                batch.append((r, c, xt[:, :T, x0 : x0 + T], None if forest is None else forest[i]))
                if len(batch) == batch_size:
                    run_batch(batch)
                    batch = []
        if batch:
            run_batch(batch)
        while acc.row < block.r1:
            emit_row()
        progress.update(tiles_done + block.n_tiles, total, f"{tiles_done + block.n_tiles}/{total} tiles")
        if not _put(outgoing, _DONE, stop, writer):
            raise writer.error or RuntimeError("writer thread ended early")
        writer.join()
        if writer.error is not None:
            raise writer.error
        for reader in read_threads:
            reader.join()
            if reader.error is not None:
                raise reader.error
    finally:
        stop.set()
        for reader in read_threads:
            reader.join()
        writer.join()
    return done
