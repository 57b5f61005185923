"""The same engine on a Dask cluster: blocks of big rasters, or many scenes, over workers.

The client checks and plans every scene (`prepare_segment`; blocks with halos, about one band of rows
per worker for a single scene, whole scenes up to a size cap for many: `memory.plan_work`), then submits
one task per block: the worker loads the checkpoint once per process (cached), opens the raster
itself from its path or URL (GDAL /vsi paths work), runs the block through the same `run_pipeline`
as in-process, and returns the block's class values and confidence. The client writes the blocks in
order into the temporary outputs and renames them on success, as in-process; halo tiles make every
block exact, so the class raster is the one an in-process run writes.

A bounded number of blocks is in flight (two per worker thread), so neither the client nor the
scheduler holds more than a few blocks whatever the raster's size. A block whose task fails (a
worker died, a network error) is submitted once more; a second failure, or a SpectralXError (bad
input: the same again), ends that scene with the block named. Cancel/Ctrl-C cancels the futures and
removes every temporary file. Dask is optional: nothing here is imported unless `dask=` is given.
"""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Deque, Dict, List, Optional, Tuple

import numpy as np

from ..errors import Cancelled, SpectralXError
from ..progress import Progress, ensure
from .job import OpenOutputs, SegmentJob, SegmentResult, plan_for_workers, result_of
from .tiling import Block

INSTALL_HINT = "pip install 'spectralx-qgis[dask]' (or: pip install 'dask[distributed]')"


@dataclass
class BlockTask:
    """What a worker needs for one block (small: no pixels, no weights)."""

    raster: str
    window: Tuple[int, int, int, int]
    tiles: Any  # TilePlan
    block: Block
    indexes: List[int]
    prep: Any  # Preparer
    checkpoint: str
    backbone: Optional[str]
    device: str
    precision: str
    batch_size: int
    group: int
    queue: int
    gdal_cache: int
    confidence: bool
    percent: bool
    torch_threads: int = 0  # set on the worker (a local cluster: the cores / workers); 0: leave


@dataclass
class SceneOutcome:
    raster: str
    result: Optional[SegmentResult] = None
    error: Optional[BaseException] = None


# -- worker side ------------------------------------------------------------------------------------

_MODELS: Dict[tuple, Any] = {}


def _model_for(task: BlockTask):
    """The checkpoint's network, loaded once per worker process (the cache keys on the file's size and
    time so a rewritten checkpoint is reloaded). Returns (net, card, device, autocast, seconds spent
    loading here: 0 when cached)."""
    from ..checkpoint import load_checkpoint
    from ..devices import pick_device
    from .job import prepare_model
    from .precision import select

    st = os.stat(task.checkpoint)
    dev = pick_device(task.device)
    key = (os.path.abspath(task.checkpoint), task.backbone, dev, task.precision, st.st_size, st.st_mtime_ns)
    if key in _MODELS:
        return _MODELS[key] + (0.0,)
    t0 = time.perf_counter()
    _MODELS.clear()  # one model per worker process
    net, card = load_checkpoint(task.checkpoint, backbone=task.backbone)
    # measure=False: auto never times here, so every worker (and block) takes the same path
    net, path = select(prepare_model(net, dev), dev, task.precision, measure=False)
    _MODELS[key] = (net, card, dev, path.autocast)
    return _MODELS[key] + (time.perf_counter() - t0,)


def compute_block(task: BlockTask):
    """Worker: (class values (h, w) uint8, confidence (h, w) or None, tiles run, timings) for one
    block; timings: seconds loading the model (0 when cached), running the block, torch threads."""
    import torch
    from rasterio.windows import Window

    from .job import encoder
    from .pipeline import run_pipeline
    from .source import RasterStrips
    from .writer import BlockArrays

    if task.torch_threads and torch.get_num_threads() != task.torch_threads:
        torch.set_num_threads(task.torch_threads)  # Dask's nanny starts workers with OMP_NUM_THREADS=1
    t0 = time.perf_counter()
    net, card, dev, precision, load_s = _model_for(task)
    t1 = time.perf_counter()
    b = task.block
    dtypes = [np.uint8] + ([np.uint8 if task.percent else np.float32] if task.confidence else [])
    out = BlockArrays(b.y0, b.shape, dtypes)
    source = RasterStrips(
        task.raster, Window(*task.window), task.tiles, task.indexes, task.prep, gdal_cache=task.gdal_cache
    )
    computed = run_pipeline(
        task.tiles,
        source,
        net,
        len(card.classes),
        encoder(card.classes, dev, task.confidence, task.percent),
        out.write,
        batch_size=task.batch_size,
        device=dev,
        precision=precision,
        queue_size=task.queue,
        block=b,
        group=task.group,
    )
    arrays = out.arrays
    timings = {
        "load_s": load_s,
        "setup_s": t1 - t0 - load_s,
        "run_s": time.perf_counter() - t1,
        "threads": torch.get_num_threads(),
        "pid": os.getpid(),
    }
    return arrays[0], (arrays[1] if task.confidence else None), computed, timings


# -- client side ------------------------------------------------------------------------------------


@dataclass
class RunStats:
    """Where a cluster run's time went (logged at the end; the last run's stays in LAST_STATS)."""

    t0: float = field(default_factory=time.perf_counter)
    wall_s: float = 0.0
    blocks: int = 0
    load_s: float = 0.0  # workers loading the checkpoint (once per worker process)
    run_s: float = 0.0  # workers running blocks (read, normalize, forward, blend, encode)
    setup_s: float = 0.0  # workers between task start and the block's run, beyond the load
    wait_s: float = 0.0  # the client waiting for the next block in order
    fetch_s: float = 0.0  # the client receiving a block's arrays
    write_s: float = 0.0  # the client writing a block into the outputs
    threads: Dict[int, int] = field(default_factory=dict)  # worker pid -> torch threads

    def add(self, timings: dict, wait: float, fetch: float, write: float) -> None:
        self.blocks += 1
        self.load_s += timings.get("load_s", 0.0)
        self.run_s += timings.get("run_s", 0.0)
        self.setup_s += timings.get("setup_s", 0.0)
        self.threads[timings.get("pid", 0)] = timings.get("threads", 0)
        self.wait_s += wait
        self.fetch_s += fetch
        self.write_s += write

    def describe(self, workers: int) -> str:
        busy = self.run_s / (workers * self.wall_s) if self.wall_s else 0.0
        return (
            f"Dask: {self.blocks} blocks in {self.wall_s:.1f} s; workers ran blocks {self.run_s:.1f} s "
            f"({busy:.0%} of {workers} worker threads' time), loaded the model {self.load_s:.1f} s; "
            f"the client waited {self.wait_s:.1f} s, fetched {self.fetch_s:.1f} s, wrote {self.write_s:.1f} s; "
            f"torch threads per worker {sorted(self.threads.values())}"
        )


LAST_STATS: Optional[RunStats] = None


def connect(address: str):
    """(client, cluster or None) for "local", "local:N" (N worker processes on 127.0.0.1) or a
    scheduler address such as tcp://host:8786."""
    try:
        import dask
        from distributed import Client, LocalCluster
    except ImportError:
        raise SpectralXError(f"--dask needs Dask distributed, which is not installed: {INSTALL_HINT}") from None
    address = address.strip()
    if address == "local" or address.startswith("local:"):
        n = address.partition(":")[2] or str(max(1, (os.cpu_count() or 2) // 2))
        if not n.isdigit() or int(n) < 1:
            raise SpectralXError(f"--dask {address}: give local or local:N with N worker processes, e.g. local:4")
        settings = {
            # a worker that dies fails its task at once; the runner retries the block once itself
            "distributed.scheduler.allowed-failures": 0,
            # Dask's nanny starts workers with MALLOC_TRIM_THRESHOLD_=65536, which also fixes glibc's
            # mmap threshold: every large NumPy temporary of the forest and the blending was then
            # mapped and zero-filled afresh, and a block ran 1.44x slower than in this process
            # (bench/dask_long_bench.py); without it glibc keeps its adaptive thresholds
            "distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
        }
        saved = dict(os.environ)
        try:
            with dask.config.set(settings):
                cluster = LocalCluster(
                    n_workers=int(n),
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address=None,
                    env=_worker_environment(),
                )
        finally:
            # the nanny writes its worker variables (OMP_NUM_THREADS=1, ...) into this process's
            # environment before it spawns: inside QGIS every later subprocess would inherit them
            for key in set(os.environ) - set(saved):
                del os.environ[key]
            os.environ.update({k: v for k, v in saved.items() if os.environ.get(k) != v})
        return Client(cluster), cluster
    check_scheduler_address(address)
    try:
        return Client(address, timeout="20s"), None
    except (OSError, TimeoutError, ValueError, TypeError) as exc:
        raise SpectralXError(
            f"cannot reach the Dask scheduler at {address}: {' '.join(str(exc).split())[:200]}; "
            "start it (dask scheduler) or check the address"
        ) from None


_SCHEMES = ("tcp", "tls", "ws", "wss", "ucx", "inproc")  # inproc: a cluster in this process


def check_scheduler_address(address: str) -> None:
    """scheme://host[:port] with a known scheme, a host and a valid port (an empty host made Dask raise
    a traceback)."""
    from urllib.parse import urlsplit

    shown = "".join(c if c.isprintable() else "?" for c in address)[:80]
    usage = f"--dask {shown}: give local, local:N or a scheduler address like tcp://host:8786"
    if "://" not in address:
        raise SpectralXError(usage)
    try:
        parts = urlsplit(address)
        port = parts.port
    except ValueError:
        raise SpectralXError(f"{usage} (the port is not a number from 1 to 65535)") from None
    if parts.scheme not in _SCHEMES:
        raise SpectralXError(f"{usage} (unknown protocol '{parts.scheme[:20]}'; {', '.join(_SCHEMES[:4])} are)")
    if not parts.hostname or port == 0 or (parts.path not in ("", "/") and parts.scheme != "inproc"):
        raise SpectralXError(f"{usage} (no host name)" if not parts.hostname else usage)


def planned_workers(address: str) -> int:
    """Worker threads `address` offers, for --plan: local:N without starting anything."""
    address = address.strip()
    if address == "local" or address.startswith("local:"):
        n = address.partition(":")[2]
        return int(n) if n.isdigit() and int(n) > 0 else max(1, (os.cpu_count() or 2) // 2)
    check_scheduler_address(address)
    client, _ = connect(address)
    try:
        return max(1, sum(client.nthreads().values()))
    finally:
        client.close()


def _worker_environment() -> Dict[str, str]:
    """Local workers are new Python processes: inside QGIS (whose executable is not Python) they are
    started with the Python beside it, and they find the engine where this process found it (the
    plugin's bundled copy)."""
    import multiprocessing
    import shutil
    import sys

    if not os.path.basename(sys.executable or "").lower().startswith("python"):
        python = next(
            (
                p
                for p in (os.path.join(sys.exec_prefix, "bin", "python3"), shutil.which("python3"))
                if p and os.path.exists(p)
            ),
            None,
        )
        if python:
            multiprocessing.set_executable(python)
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    if os.path.basename(package) != "spectralx":  # an editable install maps engine/ -> spectralx
        return {}
    paths = [os.path.dirname(package)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {"PYTHONPATH": os.pathsep.join(paths)}


def local_threads(address: str, workers: int) -> int:
    """torch threads per worker of a local cluster: this machine's cores shared among its worker
    processes (Dask's nanny starts each with one thread, so `local` on 4 cores, 2 workers, used 2 of
    them); 0 for a remote scheduler, whose workers keep their own settings."""
    address = address.strip()
    if not (address == "local" or address.startswith("local:")):
        return 0
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def _task(job: SegmentJob, block: Block, torch_threads: int = 0) -> BlockTask:
    w = job.window
    return BlockTask(
        job.raster,
        (int(w.col_off), int(w.row_off), int(w.width), int(w.height)),
        job.tiles,
        block,
        list(job.mapping.source_indexes),
        job.prep,
        os.path.abspath(job.checkpoint),
        os.path.abspath(job.backbone) if job.backbone else None,
        job.device_request,
        job.precision,
        job.batch_size,
        job.work.group,
        job.work.queue,
        job.work.gdal_cache,
        job.confidence is not None,
        job.confidence_format == "percent",
        torch_threads,
    )


class _Scene:
    def __init__(self, job: SegmentJob):
        self.job = job
        self.outputs: Optional[OpenOutputs] = None
        self.written = 0
        self.computed = 0
        self.failed: Optional[BaseException] = None

    def write(self, block: Block, cls: np.ndarray, conf: Optional[np.ndarray]) -> None:
        from rasterio.windows import Window

        if self.outputs is None:
            self.outputs = OpenOutputs(self.job)
        win = Window(block.x0, block.y0, block.x1 - block.x0, block.y1 - block.y0)
        for ds, a in zip(self.outputs.datasets, (cls, conf)):
            ds.write(a, 1, window=win)
        self.written += 1


def run_on_cluster(
    jobs: List[SegmentJob], address: str, progress: Optional[Progress] = None, stop_on_error: bool = True
) -> List[SceneOutcome]:
    """Every block of every job over the cluster at `address`; one outcome per job, in order.
    `stop_on_error`: the first failed scene ends the run (single scene); otherwise the others go on."""
    progress = ensure(progress)
    client, cluster = connect(address)
    try:
        workers = max(1, sum(client.nthreads().values()))
        progress.log(f"Dask: {len(client.nthreads())} workers, {workers} threads")
        for job in jobs:  # one scene: spread its rows over the workers; many: each scene its own task
            plan_for_workers(job, workers if len(jobs) == 1 else 1)
        return _run(client, workers, jobs, progress, stop_on_error, local_threads(address, workers))
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def _run(
    client, workers: int, jobs: List[SegmentJob], progress: Progress, stop_on_error: bool, torch_threads: int = 0
) -> List[SceneOutcome]:
    # Long (88 lines) on purpose: the cluster's lifetime (start, submit, gather in order, write, close) must be
    # in one try block.
    scenes = [_Scene(j) for j in jobs]
    todo: Deque[Tuple[_Scene, Block]] = deque((s, b) for s in scenes for b in s.job.work.blocks)
    total = sum(b.n_tiles for s in scenes for b in s.job.work.blocks)
    limit = 2 * workers
    inflight: Deque[list] = deque()  # [scene, block, future, attempt], in submission order
    done_tiles = 0
    stats = RunStats()

    def submit(scene: _Scene, block: Block, attempt: int):
        fut = client.submit(
            compute_block,
            _task(scene.job, block, torch_threads),
            pure=False,
            retries=0,
            key=f"spectralx-{os.path.basename(scene.job.raster)}-{block.index}-{attempt}-" f"{time.monotonic_ns()}",
        )
        return [scene, block, fut, attempt]

    def fail(scene: _Scene, exc: BaseException) -> None:
        scene.failed = exc
        for item in list(inflight):
            if item[0] is scene:
                item[2].cancel()
                inflight.remove(item)
        for item in [t for t in todo if t[0] is scene]:
            todo.remove(item)
        if scene.outputs is not None:
            scene.outputs.discard()
        if stop_on_error:
            raise exc

    try:
        while todo or inflight:
            while todo and len(inflight) < limit:
                inflight.append(submit(*todo.popleft(), 0))
            scene, block, fut, attempt = inflight[0]
            t_wait = time.perf_counter()
            while not fut.done():  # the head block: results are written in order
                progress.check()
                time.sleep(0.01)
            progress.check()
            inflight.popleft()
            if fut.status == "finished":
                t_got = time.perf_counter()
                cls, conf, computed, timings = fut.result()
                t_write = time.perf_counter()
                scene.write(block, cls, conf)
                stats.add(timings, t_got - t_wait, t_write - t_got, time.perf_counter() - t_write)
                scene.computed += computed
                done_tiles += block.n_tiles
                progress.update(done_tiles, total, f"{done_tiles}/{total} tiles")
                if scene.written == len(scene.job.work.blocks):
                    scene.outputs.commit()
                continue
            exc = fut.exception() if fut.status == "error" else RuntimeError("the task was cancelled")
            if isinstance(exc, SpectralXError) or attempt >= 1:
                err = (
                    exc
                    if isinstance(exc, SpectralXError)
                    else SpectralXError(
                        f"{block.describe()} of {scene.job.raster} failed twice on the cluster: "
                        f"{type(exc).__name__}: {' '.join(str(exc).split())[:200]}"
                    )
                )
                fail(scene, err)
            else:
                progress.log(
                    f"{block.describe()} of {os.path.basename(scene.job.raster)} failed "
                    f"({type(exc).__name__}); retrying it once"
                )
                inflight.appendleft(submit(scene, block, attempt + 1))
    except BaseException:  # Cancelled, Ctrl-C, a failed scene: nothing stays behind
        client.cancel([item[2] for item in inflight])
        for s in scenes:
            if s.outputs is not None and s.failed is None and s.written < len(s.job.work.blocks):
                s.outputs.discard()
        raise
    stats.wall_s = time.perf_counter() - stats.t0
    progress.log(stats.describe(workers))
    global LAST_STATS
    LAST_STATS = stats
    return [
        SceneOutcome(s.job.raster, None if s.failed else result_of(s.job, s.computed, workers), s.failed)
        for s in scenes
    ]


__all__ = ["connect", "run_on_cluster", "compute_block", "BlockTask", "SceneOutcome", "Cancelled"]
