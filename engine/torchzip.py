"""Limits checked on a torch checkpoint *before* torch reads it, so that a small hostile file cannot
make the reader inflate gigabytes or spend minutes before it is refused.

A zip checkpoint (`torch.save`) is a zip archive: one pickle (`<archive>/data.pkl`) describing the
objects, and one record per tensor storage, stored uncompressed (torch never compresses them, and its
memory-mapped loader reads them in place). Before anything is expanded:

* the archive's declared sizes: at most MAX_RECORDS records; the pickle at most MAX_PICKLE_BYTES;
  compressed records (torch writes none) at most MAX_INFLATED_BYTES inflated in all; a stored record
  must lie inside the file;
* the pickle is then streamed (never inflated whole) through `pickletools.genops`, which runs
  nothing: it lists the globals the file would call and stops after MAX_PICKLE_OPS opcodes. zipfile
  stops at the declared size and checks the CRC, so the actual size cannot exceed the declared one.

A legacy (pre-zip) torch file is a few pickles in a row followed by raw storages; the pickles are
scanned the same way. Real releases are far inside these limits (docs/reliability.md gives the numbers).
"""

from __future__ import annotations

import os
import pickletools
import zipfile
from typing import IO, List

from .errors import CheckpointError

MiB = 1 << 20
MAX_RECORDS = 200_000  # a ViT-L release with optimizer state has about 2 000
MAX_PICKLE_BYTES = 64 * MiB  # a ViT-L release's data.pkl is a few hundred KiB
MAX_INFLATED_BYTES = 64 * MiB  # all compressed records together, once inflated
MAX_PICKLE_OPS = 1_000_000  # a ViT-L release's pickle has about 60 000 opcodes
_LEGACY_PICKLES = 5  # magic number, protocol, system info, the objects, storage keys


def _name(path: str) -> str:
    return os.path.basename(path)


def check_zip(path: str) -> str:
    """Declared sizes of a torch zip checkpoint against the limits; returns the pickle's record name."""
    size = os.path.getsize(path)
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
    except Exception as exc:  # zipfile's errors for damaged archives are of many types
        raise CheckpointError(
            f"{_name(path)} is not a readable torch checkpoint (damaged zip archive: "
            f"{' '.join(str(exc).split())[:120]}); download or copy it again"
        ) from None
    if len(infos) > MAX_RECORDS:
        raise CheckpointError(
            f"{_name(path)} holds {len(infos)} zip records (at most {MAX_RECORDS} are read); "
            "it is not a weights file"
        )
    pickles = [i for i in infos if i.filename.count("/") == 1 and i.filename.endswith("/data.pkl")]
    if len(pickles) != 1:
        raise CheckpointError(
            f"{_name(path)} is a zip archive but not a torch checkpoint (no single " "<archive>/data.pkl record)"
        )
    inflated = 0
    for info in infos:
        if info.compress_type == zipfile.ZIP_STORED:
            if info.file_size != info.compress_size or info.header_offset + info.compress_size > size:
                raise CheckpointError(
                    f"{_name(path)}: zip record {info.filename[:80]} claims more bytes than the "
                    "file holds (damaged or crafted); download or copy it again"
                )
        else:
            inflated += info.file_size
    if pickles[0].file_size > MAX_PICKLE_BYTES:
        raise CheckpointError(
            f"{_name(path)}: its object description (data.pkl) inflates to "
            f"{pickles[0].file_size / MiB:.0f} MiB; real checkpoints need well under "
            f"{MAX_PICKLE_BYTES // MiB} MiB, so it is refused unread"
        )
    if inflated > MAX_INFLATED_BYTES:
        raise CheckpointError(
            f"{_name(path)}: its compressed records inflate to {inflated / MiB:.0f} MiB "
            f"(torch stores tensors uncompressed; at most {MAX_INFLATED_BYTES // MiB} MiB "
            "is inflated), so it is refused unread"
        )
    return pickles[0].filename


def _scan(stream: IO[bytes], path: str, budget: List[int]) -> List[str]:
    """Globals one pickle names (GLOBAL, and STACK_GLOBAL after two strings), within the op budget."""
    names: List[str] = []
    strings: List[str] = []
    try:
        for op, arg, _pos in pickletools.genops(stream):
            budget[0] -= 1
            if budget[0] < 0:
                raise CheckpointError(
                    f"{_name(path)}: its pickle has more than {MAX_PICKLE_OPS:,} instructions "
                    "(real checkpoints have far fewer), so it is refused unread"
                )
            if op.name == "GLOBAL":
                names.append(str(arg).replace(" ", "."))
            elif op.name == "STACK_GLOBAL" and len(strings) >= 2:
                names.append(f"{strings[-2]}.{strings[-1]}")
            if isinstance(arg, str) and "UNICODE" in op.name:
                strings = (strings + [arg])[-2:]
    except CheckpointError:
        raise
    except Exception as exc:  # genops: unknown opcode, truncated argument, bad CRC at the end
        raise CheckpointError(
            f"{_name(path)} is damaged: its pickle cannot be read "
            f"({' '.join(str(exc).split())[:120]}); download or copy it again"
        ) from None
    return names


def pickle_globals(path: str, kind: str) -> List[str]:
    """Every global a torch checkpoint's pickle(s) would call, found without running anything and
    within the size and instruction limits (CheckpointError beyond them)."""
    budget = [MAX_PICKLE_OPS]
    if kind == "torch-zip":
        record = check_zip(path)
        try:
            with zipfile.ZipFile(path) as zf, zf.open(record) as stream:
                names = _scan(stream, path, budget)
                # the rest must still match the declared size and CRC (zipfile checks at the end)
                while stream.read(1 << 20):
                    pass
        except CheckpointError:
            raise
        except Exception as exc:  # bad CRC, unsupported compression, truncated data
            raise CheckpointError(
                f"{_name(path)} is damaged ({' '.join(str(exc).split())[:120]}); download " "or copy it again"
            ) from None
        return names
    names = []
    with open(path, "rb") as f:
        for _ in range(_LEGACY_PICKLES):
            head = f.read(2)
            if len(head) < 2 or head[0] != 0x80:
                break
            f.seek(-2, os.SEEK_CUR)
            names += _scan(f, path, budget)
    return names
