"""Hostile weights files for the issue-18 tests: zip archives written byte by byte (so declared sizes
can lie and a deflate stream can be a bomb), torch zips around a hand-written pickle, and small
encoders to break in one place. Everything is small on disk; what it would expand to is not."""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
import zlib
from typing import Dict, List, Tuple

import torch

MiB = 1 << 20


def raw_zip(path, entries: List[Tuple[str, bytes, int, int, int]]) -> None:
    """A zip archive from (name, stored bytes, method, crc32, declared uncompressed size) records."""
    out, central = io.BytesIO(), io.BytesIO()
    for name, data, method, crc, size in entries:
        offset = out.tell()
        n = name.encode()
        out.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0x21, crc, len(data), size, len(n), 0))
        out.write(n + data)
        central.write(
            struct.pack(
                "<IHHHHHHIIIHHHHHII",
                0x02014B50,
                20,
                20,
                0,
                method,
                0,
                0x21,
                crc,
                len(data),
                size,
                len(n),
                0,
                0,
                0,
                0,
                0,
                offset,
            )
            + n
        )
    cd = central.getvalue()
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(cd), out.tell(), 0)
    with open(path, "wb") as f:
        f.write(out.getvalue() + cd + end)


def deflate_bomb(inflated: int) -> bytes:
    """A raw deflate stream of `inflated` zero bytes, about inflated/1000 long: one fully flushed
    1 MiB block (identical each time, since a full flush resets the compressor) repeated."""
    co = zlib.compressobj(9, zlib.DEFLATED, -15)
    co.compress(b"\0" * MiB)
    block = co.flush(zlib.Z_FULL_FLUSH)
    again = co.compress(b"\0" * MiB) + co.flush(zlib.Z_FULL_FLUSH)
    assert again == block
    return block * (inflated // MiB) + co.flush(zlib.Z_FINISH)


def zip_bomb_checkpoint(path, inflated: int = 3 << 30) -> None:
    """A 'torch checkpoint' whose compressed data.pkl inflates to `inflated` bytes (3 GiB in ~3 MB)."""
    raw_zip(
        path,
        [
            ("archive/data.pkl", deflate_bomb(inflated), zipfile.ZIP_DEFLATED, 0, inflated),
            ("archive/version", b"3\n", 0, zlib.crc32(b"3\n"), 2),
        ],
    )


def torch_zip(path, pkl: bytes, storages: Dict[str, bytes] = None) -> None:
    """A torch zip checkpoint around a hand-written pickle (torch.load reads it like torch.save's)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/byteorder", "little")
        z.writestr("archive/version", "3\n")
        for key, data in (storages or {}).items():
            z.writestr(f"archive/data/{key}", data)


def deep_list_pickle(depth: int) -> bytes:
    """[[[…]]] `depth` deep, written as opcodes (pickling it would overflow the pickler itself)."""
    return b"\x80\x02}X\x05\x00\x00\x00model" + b"]" * depth + b"a" * (depth - 1) + b"s."


def shared_tuples_pickle(levels: int) -> bytes:
    """t_k = (t_{k-1}, t_{k-1}): a few hundred bytes, 2**levels paths from the top."""
    t: tuple = ()
    for _ in range(levels):
        t = (t, t)
    return pickle.dumps({"model": {"w": 1}, "args": t}, protocol=2)


def self_list_pickle() -> bytes:
    a: list = []
    a.append(a)
    return pickle.dumps({"model": {"w": 1}, "args": {"lst": a}}, protocol=2)


def tiny_vit(width: int = 64, depth: int = 2, grid: int = 4, seed: int = 0, **kw) -> Dict[str, torch.Tensor]:
    from backbone_releases import vit_encoder

    return vit_encoder(seed, grid=grid, dim=width, depth=depth, **kw)
