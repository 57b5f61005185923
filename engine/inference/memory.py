"""The memory plan: how big the blocks and reads of a run may be, from a memory budget.

Memory in `segment()` goes to (besides the model and one batch of activations, which do not depend
on the raster):
  reads    one chunk of a tile row per read: raw float32 values, nodata masks and the band mixing of
           every read band (S), then the normalized checkpoint bands (C) while the chunk waits in the
           queue and is cut into tiles;
  blending the block's probability and weight sums (K + 1 classes x tile height x block width) and
           the class/confidence rows waiting to be written (256 rows x block width).
So the chunk width follows the band counts and the block width follows the class count; nothing
follows the raster's height, and the width only up to one block. The budget (`--max-memory`) defaults
to half the free RAM, capped at 2 GiB. GDAL's block cache gets an eighth of it (at most 256 MiB);
one read a sixteenth, at most 64 MiB (so rasters of any size use the same chunk and peak memory does
not grow with the raster); read-ahead (2 chunks, more on a GPU, which must never wait for the
reader) and blending share the rest.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from typing import List, Optional, Union

from ..errors import SpectralXError
from ..outputs import BLOCK
from .tiling import Block, TilePlan, plan_blocks

GiB, MiB = 2**30, 2**20
DEFAULT_CAP = 2 * GiB
MIN_BUDGET = 64 * MiB
READ_CAP = 64 * MiB
GDAL_CACHE_CAP = 256 * MiB
QUEUE = 2
_UNITS = {
    "": 1,
    "b": 1,
    "k": 2**10,
    "kb": 2**10,
    "m": MiB,
    "mb": MiB,
    "g": GiB,
    "gb": GiB,
    "t": 2**40,
    "tb": 2**40,
    "kib": 2**10,
    "mib": MiB,
    "gib": GiB,
    "tib": 2**40,
}


def available_ram() -> Optional[int]:
    """Free memory in bytes (Linux MemAvailable, else free pages), None when the system cannot say."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def total_ram() -> Optional[int]:
    """This machine's physical memory in bytes, None when the system cannot say."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def default_budget() -> int:
    free = available_ram()
    return DEFAULT_CAP if free is None else max(MIN_BUDGET, min(DEFAULT_CAP, free // 2))


def parse_memory(value: Union[None, int, float, str]) -> int:
    """Bytes from 2G, 1.5GB, 512M, 800MiB or a plain number of bytes; None -> the default budget.
    A budget larger than this machine's memory is refused: the plan would assume memory that is not
    there (and a 400-digit number is not a size)."""
    if value is None or value == "" or value == "auto":
        return default_budget()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        size = float(value)
    else:
        m = re.fullmatch(r"\s*([0-9]{1,30}(?:\.[0-9]{0,30})?|\.[0-9]{1,30})\s*([a-zA-Z]{0,3})\s*", str(value)[:100])
        if not m or m.group(2).lower() not in _UNITS:
            raise SpectralXError(f"memory budget '{_shown(value)}' is not a size; write e.g. 2G, 1.5GB or 800M")
        size = float(m.group(1)) * _UNITS[m.group(2).lower()]
    if not math.isfinite(size) or size < MIN_BUDGET:
        raise SpectralXError(f"memory budget {_shown(value)} is too small; give at least 64M")
    ram = total_ram()
    if ram is not None and size > ram:
        raise SpectralXError(
            f"memory budget {format_bytes(size)} is more than this machine's {format_bytes(ram)} "
            f"of memory; give at most {ram // GiB}G (or leave --max-memory out)"
        )
    return int(size)


def _shown(value) -> str:
    text = "".join(c if c.isprintable() else "?" for c in str(value))
    return text if len(text) <= 40 else text[:39] + "…"


def format_bytes(n: float) -> str:
    return f"{n / GiB:.2f} GiB" if n >= GiB else f"{n / MiB:.0f} MiB"


@dataclass
class WorkPlan:
    """Blocks, chunk size and queue depth of one run, and what they are expected to cost."""

    tiles: TilePlan
    read_bands: int
    budget: int
    blocks: List[Block]
    group: int  # tile columns per read
    queue: int  # chunks read ahead
    read_bytes: int  # one chunk being read (raw + masks + normalized)
    queued_bytes: int  # one normalized chunk waiting for the model
    gdal_cache: int  # GDAL block cache while reading
    blend_bytes: int  # one block's blending buffers and output rows
    block_width: int
    block_height: int
    notes: List[str] = field(default_factory=list)
    readers: int = 1  # reader threads (each with its chunk being read and one queued)

    @property
    def halo_tiles(self) -> int:
        """Forward passes spent twice because a tile straddles a block seam."""
        return sum(b.n_tiles for b in self.blocks) - self.tiles.n_tiles

    def describe(self) -> str:
        p = self.tiles
        lines = [
            f"window   {p.width} x {p.height} px, {p.n_tiles} tiles of {p.tile} px " f"({len(p.xs)} x {len(p.ys)})",
            f"budget   {format_bytes(self.budget)}: reads {format_bytes(self.read_bytes)}"
            + (f" x {self.readers} reader threads" if self.readers > 1 else "")
            + " + "
            f"{format_bytes(self.queued_bytes * self.queue)} read ahead ({self.queue} chunks of "
            f"{self.group} tile columns), GDAL cache {format_bytes(self.gdal_cache)}, blending "
            f"{format_bytes(self.blend_bytes)} per block",
            f"blocks   {len(self.blocks)} of up to {self.block_width} x {self.block_height} px"
            + (f"; {self.halo_tiles} tiles straddle block seams and run twice" if self.halo_tiles else ""),
        ]
        return "\n".join(lines + self.notes)


def read_cost_per_column(strip_height: int, read_bands: int, model_bands: int) -> int:
    """Bytes per chunk column while it is read: raw float32 + masks + float mask sums of the read
    bands, and the normalized bands."""
    return strip_height * (read_bands * 9 + model_bands * 4)


def blend_cost_per_column(strip_height: int, classes: int) -> int:
    """Bytes per block column: probability + weight sums, the division, valid masks, output rows."""
    return strip_height * ((classes + 1) * 4 + classes * 4 + 1) + BLOCK * 5


def _round_block(px: int) -> int:
    return max(BLOCK, px // BLOCK * BLOCK)


def plan_work(
    tiles: TilePlan,
    read_bands: int,
    model_bands: int,
    classes: int,
    budget: Optional[int] = None,
    block_size: Optional[int] = None,
    workers: int = 0,
    read_ahead: int = QUEUE,
    readers: int = 1,
) -> WorkPlan:
    """Blocks and reads for a run within `budget` bytes.

    block_size forces square blocks of that many pixels (a multiple of 256). Otherwise blocks are
    full-height column panels as wide as the blending share of the budget allows (one block for
    most rasters), so there are no seams to recompute; for `workers` > 0 (a cluster) the height is
    cut into bands too, about one per worker (at least 256 px, at most max(2048, 16 tiles)), so every
    worker gets work while the tiles run twice at band seams stay few. `read_ahead`: chunks to queue
    if they fit.
    """
    budget = budget or default_budget()
    notes = []
    sh = tiles.strip_height
    stride = tiles.xs[1] - tiles.xs[0] if len(tiles.xs) > 1 else tiles.tile
    if block_size is not None:
        if block_size < BLOCK or block_size % BLOCK:
            raise SpectralXError(f"block size must be a multiple of {BLOCK} px, got {block_size}")
        bw = bh = block_size
    else:
        fit = int(budget // 2 // blend_cost_per_column(sh, classes))
        bw = tiles.width if fit >= tiles.width else _round_block(fit)
        bh = tiles.height
        if workers:
            per_worker = -(-tiles.height // workers)
            bh = min(-(-per_worker // BLOCK) * BLOCK, _round_block(max(2048, 16 * tiles.tile)))
    bw, bh = min(bw, tiles.width), min(bh, tiles.height)
    blocks = plan_blocks(tiles, bw if bw < tiles.width else None, bh if bh < tiles.height else None)

    per_col = read_cost_per_column(sh, read_bands, model_bands)
    read_share = min(READ_CAP, budget // 16)
    span = max(tiles.tile_width, read_share // per_col)
    group = max(1, 1 + (span - tiles.tile_width) // stride)
    widest = max(b.c1 - b.c0 for b in blocks)
    group = min(group, widest)
    span = min((group - 1) * stride, tiles.width) + tiles.tile_width
    read_bytes = per_col * span
    queued_bytes = sh * span * model_bands * 4
    queue = max(QUEUE, min(read_ahead, int(budget // 4 // max(1, queued_bytes))))
    blend_bytes = blend_cost_per_column(sh, classes) * (
        max(tiles.xs[b.c1 - 1] - tiles.xs[b.c0] for b in blocks) + tiles.tile_width
    )
    gdal_cache = min(GDAL_CACHE_CAP, budget // 8)
    used = read_bytes + queued_bytes * queue + blend_bytes + gdal_cache
    if used > budget:
        notes.append(
            f"note     one tile column of {read_bands} bands already needs "
            f"{format_bytes(read_bytes)}; the budget of {format_bytes(budget)} is exceeded"
        )
    # each further reader holds a chunk being read and one waiting: only as many as the budget leaves room for
    readers = max(1, min(readers, 1 + max(0, budget - used) // (read_bytes + queued_bytes)))
    return WorkPlan(
        tiles,
        read_bands,
        budget,
        blocks,
        group,
        queue,
        read_bytes,
        queued_bytes,
        gdal_cache,
        blend_bytes,
        bw,
        bh,
        notes,
        readers,
    )
