"""Issue 18: a bounded, seeded fuzz of the release reader over mutated zip and pickle structures.

Every outcome is a load or a one-line refusal (a SpectralXError), no case takes more than a few
seconds, and the peak memory of the whole run stays under a fixed bound. The cases run in a child
process so that its peak resident memory (ru_maxrss) is the fuzz's own, not the test session's.
Deterministic: random.Random(SEED), a fixed number of cases per kind.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import random
import struct
import subprocess
import sys
import time
import zipfile

import pytest

SEED = 18
CASES_PER_KIND = 24
CASE_SECONDS = 5.0  # no case may take longer (a 2-core shared machine)
PEAK_GROWTH_MIB = 512  # over the child's memory after importing torch and writing the bases
HERE = os.path.dirname(os.path.abspath(__file__))


# -- the child's side ---------------------------------------------------------------------------------------


def _bases(folder: str) -> dict:
    """Small real-format release files the mutations start from."""
    import torch
    from backbone_releases import dinov3_state
    from hostile_files import tiny_vit

    out = {}
    state = tiny_vit(width=64, depth=2, grid=4)
    out["zip"] = os.path.join(folder, "timm.pth")
    torch.save({"model": state, "epoch": 3, "args": argparse.Namespace(model="vit", lr=1e-4, sizes=[224])}, out["zip"])
    out["legacy"] = os.path.join(folder, "legacy.pth")
    torch.save(state, out["legacy"], _use_new_zipfile_serialization=False)
    out["dinov3"] = os.path.join(folder, "dinov3.pth")
    torch.save(dinov3_state(), out["dinov3"])
    return out


def _flip(data: bytes, rng: random.Random, n: int, lo: int = 0, hi: int = None) -> bytes:
    b = bytearray(data)
    hi = len(b) if hi is None else hi
    for _ in range(n):
        b[rng.randrange(lo, max(lo + 1, hi))] = rng.randrange(256)
    return bytes(b)


def _records(path: str):
    with zipfile.ZipFile(path) as z:
        return [(i.filename, z.read(i.filename)) for i in z.infolist()]


def _rezip(records, dst: str) -> None:
    with zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as z:
        for name, data in records:
            z.writestr(name, data)


_OPS = [
    b"(",
    b"]",
    b"}",
    b")",
    b"a",
    b"e",
    b"s",
    b"u",
    b"t",
    b"\x85",
    b"\x86",
    b"\x87",
    b"N",
    b"0",
    b"1",
    b"h\x00",
    b"h\x01",
    b"q\x00",
    b"q\x7f",
    b"K\x07",
    b"J\xff\xff\xff\x7f",
    b"X\x01\x00\x00\x00k",
    b"b",
    b"R",
    b"\x81",
    b"\x94",
    b"\x93",
    b"\x8c\x01m",
]


def _mutate_pickle(pkl: bytes, rng: random.Random) -> bytes:
    kind = rng.randrange(4)
    body = bytearray(pkl)
    if kind == 0:
        return _flip(pkl, rng, rng.randint(1, 6), 2)
    pos = rng.randrange(2, max(3, len(body) - 1))
    if kind == 1:  # insert opcodes
        body[pos:pos] = b"".join(rng.choice(_OPS) for _ in range(rng.randint(1, 12)))
    elif kind == 2:  # duplicate a slice (shared structures, repeated SETITEMS)
        end = min(len(body), pos + rng.randint(1, 200))
        body[pos:pos] = body[pos:end] * rng.randint(1, 50)
    else:  # delete a slice
        del body[pos : pos + rng.randint(1, 60)]
    return bytes(body)


def _random_structure(rng: random.Random, depth: int, pool: list, budget: list):
    """Nested containers (at most budget[0] of them, up to `depth` deep) with sharing, and sometimes
    a cycle, around a few real tensors."""
    import torch

    if depth <= 0 or budget[0] <= 0 or rng.random() < 0.1:
        return (
            rng.choice(pool)
            if pool and rng.random() < 0.4
            else rng.choice([1, 2.5, "x", None, True, torch.ones(rng.randint(0, 4))])
        )
    budget[0] -= 1
    kind = rng.randrange(4)
    n = rng.randint(1, 3)
    children = [_random_structure(rng, depth - 1, pool, budget) for _ in range(n)]
    if kind == 0:
        obj = children
        if rng.random() < 0.05:
            obj.append(obj)  # a list that contains itself
    elif kind == 1:
        obj = tuple(children)
    elif kind == 2:
        obj = {f"k{i}": c for i, c in enumerate(children)}
    else:
        obj = argparse.Namespace(**{f"a{i}": c for i, c in enumerate(children)})
    pool.append(obj)
    return obj


def _case(kind: str, i: int, bases: dict, folder: str) -> str:
    """Write case i of `kind`; returns its path."""
    import torch

    rng = random.Random(f"{SEED}-{kind}-{i}")
    path = os.path.join(folder, f"{kind}-{i}.pth")
    if kind == "zip-bytes":  # mostly the first record (data.pkl), sometimes anywhere
        data = open(bases["zip"], "rb").read()
        open(path, "wb").write(_flip(data, rng, rng.randint(1, 8), 0, 2048 if i % 3 else None))
    elif kind == "zip-directory":  # the central directory and end record: sizes, offsets, counts
        data = open(bases[rng.choice(["zip", "dinov3"])], "rb").read()
        cd = data.rfind(b"PK\x01\x02", 0, len(data) - 22)
        start = data.find(b"PK\x01\x02") if rng.random() < 0.5 else cd
        open(path, "wb").write(_flip(data, rng, rng.randint(1, 4), start, len(data)))
    elif kind == "truncated":
        data = open(bases[rng.choice(["zip", "legacy", "dinov3"])], "rb").read()
        open(path, "wb").write(data[: rng.randrange(len(data))])
    elif kind == "declared-size":  # the pickle's declared size rewritten, data unchanged
        data = bytearray(open(bases["zip"], "rb").read())
        cd = data.find(b"PK\x01\x02")
        size = rng.choice([0, 1, 100, 1 << 31, (1 << 32) - 1, rng.randrange(1 << 32)])
        struct.pack_into("<I", data, cd + 24, size)
        if rng.random() < 0.5:
            struct.pack_into("<H", data, cd + 10, 8)  # and claimed deflated
        open(path, "wb").write(bytes(data))
    elif kind == "pickle-bytes":
        records = _records(bases[rng.choice(["zip", "dinov3"])])
        records = [(n, _mutate_pickle(d, rng) if n.endswith("data.pkl") else d) for n, d in records]
        _rezip(records, path)
    elif kind == "pickle-structure":
        pool: list = []
        obj = {"model": _random_structure(rng, rng.randint(1, 45), pool, [rng.randint(1, 80)])}
        if rng.random() < 0.5:
            from hostile_files import tiny_vit

            obj["model"] = {**tiny_vit(width=64, depth=2, grid=4), "extra": obj["model"]}
        buf = io.BytesIO()
        try:
            torch.save(obj, buf)
        except (RecursionError, ValueError):
            buf = io.BytesIO()
            torch.save({"model": {}}, buf)
        open(path, "wb").write(buf.getvalue())
    elif kind == "legacy-bytes":  # mostly its pickles (the first KiB), sometimes anywhere
        data = open(bases["legacy"], "rb").read()
        open(path, "wb").write(_flip(data, rng, rng.randint(1, 8), 0, 1500 if i % 3 else None))
    elif kind == "raw-pickle":  # a bare pickle stream (no torch framing)
        pkl = pickle.dumps({"model": {"w": list(range(rng.randint(0, 50)))}}, protocol=rng.randint(2, 5))
        open(path, "wb").write(_mutate_pickle(pkl, rng))
    return path


KINDS = [
    "zip-bytes",
    "zip-directory",
    "truncated",
    "declared-size",
    "pickle-bytes",
    "pickle-structure",
    "legacy-bytes",
    "raw-pickle",
]


def run_cases(folder: str) -> dict:
    """Every case through `backbone info` (read, recognise, map) and every fourth through `import`."""
    import resource

    import torch  # noqa: F401

    from spectralx.backbone_io import backbone_info, import_backbone
    from spectralx.errors import SpectralXError

    bases = _bases(folder)
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    results = []
    for kind in KINDS:
        for i in range(CASES_PER_KIND):
            path = _case(kind, i, bases, folder)
            dst = os.path.join(folder, "out.safetensors")
            start = time.monotonic()
            outcome, message = "loaded", ""
            try:
                backbone_info(path)
                if i % 4 == 0:
                    import_backbone(path, dst)
            except SpectralXError as exc:
                outcome, message = "refused", str(exc)
            except BaseException as exc:  # noqa: BLE001  anything else is a finding
                outcome, message = "crash", f"{type(exc).__name__}: {exc}"[:500]
            results.append(
                {
                    "case": f"{kind}-{i}",
                    "outcome": outcome,
                    "message": message,
                    "seconds": round(time.monotonic() - start, 3),
                }
            )
            for p in (path, dst):
                if os.path.exists(p):
                    os.remove(p)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"results": results, "baseline_kib": baseline, "peak_kib": peak}


# -- the test ------------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_release_reader_fuzz_is_bounded_and_one_line(tmp_path):
    code = (
        f"import sys, json; sys.path.insert(0, {HERE!r}); import torch; torch.set_num_threads(1); "
        f"import test_release_fuzz as t; print(json.dumps(t.run_cases({str(tmp_path)!r})))"
    )
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    results = report["results"]
    assert len(results) == len(KINDS) * CASES_PER_KIND
    crashes = [r for r in results if r["outcome"] == "crash"]
    assert crashes == [], crashes[:5]
    for r in results:
        if r["outcome"] == "refused":
            assert "\n" not in r["message"] and "Traceback" not in r["message"], r
        assert r["seconds"] < CASE_SECONDS, r
    growth_mib = (report["peak_kib"] - report["baseline_kib"]) / 1024
    assert growth_mib < PEAK_GROWTH_MIB, growth_mib
    # the mutations reach past the zip layer: most cases are refused, some still load
    outcomes = {r["outcome"] for r in results}
    assert {"refused", "loaded"} <= outcomes
    print(f"{len(results)} cases in {time.monotonic() - start:.1f} s, peak growth {growth_mib:.0f} MiB")
