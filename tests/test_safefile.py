"""Format sniffing and the restricted unpickler (issue 8 item 1 and 4, issue 13 item 1).

Real rules: safetensors = 8-byte little-endian length + JSON object (any first byte, 0x80 included);
torch zip = `PK\\x03\\x04`; legacy pickle = 0x80 + protocol. Pickles are read by a restricted
unpickler that admits argparse.Namespace (turned into a dict) and refuses any other global by name,
and the payload of a malicious file never runs.
"""

from __future__ import annotations

import argparse
import json
import os
import struct

import pytest
import torch
from safetensors.torch import load_file, save_file

from spectralx.errors import CheckpointError
from spectralx.safefile import read_safetensors, read_safetensors_header, read_torch_pickle, sniff_format


def _safetensors_with_header_length(path, length: int, tensor: torch.Tensor) -> None:
    """A valid safetensors file whose JSON header (space-padded, as the format allows) is `length` bytes."""
    data = tensor.numpy().tobytes()
    header = {
        "w": {"dtype": "F32", "shape": list(tensor.shape), "data_offsets": [0, len(data)]},
        "__metadata__": {"note": "padded header"},
    }
    raw = json.dumps(header).encode()
    assert len(raw) <= length
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", length) + raw + b" " * (length - len(raw)) + data)


def test_regression_safetensors_header_0x80(tmp_path):
    """Issue 13 #1: header length 0xBD80 starts the file with byte 0x80; it was refused as a pickle."""
    t = torch.linspace(-1, 1, 12).reshape(3, 4)
    path = tmp_path / "bd80.safetensors"
    _safetensors_with_header_length(path, 0xBD80, t)
    assert path.read_bytes()[:1] == b"\x80"
    assert sniff_format(str(path)) == "safetensors"
    tensors, meta = read_safetensors(str(path))
    assert torch.equal(tensors["w"], t) and meta == {"note": "padded header"}


def test_safetensors_header_lengths_ending_in_every_byte_value_load(tmp_path):
    t = torch.arange(6, dtype=torch.float32)
    path = tmp_path / "h.safetensors"
    for low in range(256):
        length = 0x300 + low  # 0x300..0x3FF: every low byte, long enough for the JSON
        _safetensors_with_header_length(path, length, t)
        assert path.read_bytes()[0] == low
        assert sniff_format(str(path)) == "safetensors", hex(length)
        tensors, _ = read_safetensors(str(path))
        assert torch.equal(tensors["w"], t), hex(length)
        assert torch.equal(load_file(str(path))["w"], t)  # and the reference library agrees


def test_files_written_by_save_file_with_many_header_lengths_load(tmp_path):
    """The real writer pads headers to 8 bytes; vary the metadata so lengths sweep 0x00..0xF8 low bytes."""
    t = torch.ones(2, 2)
    path = tmp_path / "w.safetensors"
    seen = set()
    for n in range(260):
        save_file({"w": t}, str(path), metadata={"pad": "x" * n})
        seen.add(path.read_bytes()[0])
        assert torch.equal(read_safetensors(str(path))[0]["w"], t)
    assert 0x80 in seen and len(seen) == 32


def test_sniff_tells_torch_zip_and_legacy_pickle_apart(tmp_path):
    zipped, legacy = tmp_path / "z.pth", tmp_path / "l.pth"
    torch.save({"w": torch.ones(2)}, zipped)
    torch.save({"w": torch.ones(2)}, legacy, _use_new_zipfile_serialization=False)
    assert sniff_format(str(zipped)) == "torch-zip"
    assert sniff_format(str(legacy)) == "pickle"
    for p in (zipped, legacy):
        with pytest.raises(CheckpointError, match="pickle/zip file, not safetensors"):
            read_safetensors_header(str(p))
        assert torch.equal(read_torch_pickle(str(p))["w"], torch.ones(2))
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x80\x01" + bytes(range(64)))  # 0x80 but neither a header nor a pickle protocol
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        read_safetensors_header(str(junk))


@pytest.mark.parametrize("legacy", [False, True])
def test_release_pickle_with_namespace_args_loads_as_plain_dict(tmp_path, legacy):
    import pathlib

    import numpy as np

    args = argparse.Namespace(
        model="mae_vit_large_patch16",
        input_size=224,
        lr=None,
        blr=np.float64(1.5e-4),
        target_size=[224],
        output_dir=pathlib.Path("./output_dir"),
        norm_pix_loss=True,
        mean=np.array([0.43, 0.41, 0.30]),
        nested=argparse.Namespace(depth=np.int64(8)),
    )
    path = tmp_path / "release.pth"
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.ones(3))])
    torch.save(
        {"model": {"w": torch.full((2,), 3.0)}, "optimizer": opt.state_dict(), "epoch": 799, "args": args},
        path,
        _use_new_zipfile_serialization=not legacy,
    )
    obj = read_torch_pickle(str(path))
    assert type(obj["args"]) is dict
    assert obj["args"]["model"] == "mae_vit_large_patch16" and obj["args"]["target_size"] == [224]
    assert obj["epoch"] == 799 and torch.equal(obj["model"]["w"], torch.full((2,), 3.0))
    assert obj["args"]["output_dir"] == "output_dir" and obj["args"]["nested"] == {"depth": 8}
    assert obj["args"]["blr"] == 1.5e-4 and list(obj["args"]["mean"]) == [0.43, 0.41, 0.30]


def test_numpy_object_array_is_refused_by_name(tmp_path):
    import numpy as np

    path = tmp_path / "obj.pth"
    torch.save({"model": {"w": torch.ones(1)}, "args": {"x": np.array([1, "a"], dtype=object)}}, path)
    with pytest.raises(CheckpointError, match=r"would build numpy\.dtype\[object_\]"):
        read_torch_pickle(str(path))


class _Payload:
    """Pickles as a call to os.system creating a marker file (what a hostile checkpoint does)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Holder:
    """An ordinary user class: its GLOBAL alone must be refused (a __reduce__-free object)."""

    def __init__(self):
        self.value = 1


def _hostile_files(tmp_path):
    marker = tmp_path / "PWNED"
    p = _Payload(marker)
    cases = {
        "in_args": {"model": {"w": torch.ones(2)}, "args": argparse.Namespace(output_dir=p)},
        "in_model": {"model": {"w": torch.ones(2), "evil": p}},
        "in_optimizer": {"model": {"w": torch.ones(2)}, "optimizer": {"state": {0: {"step": p}}}},
        "nested_list": [{"deep": ({"x": [p]},)}],
    }
    return marker, cases


@pytest.mark.parametrize("legacy", [False, True])
def test_malicious_pickles_are_refused_by_name_and_never_run(tmp_path, legacy):
    marker, cases = _hostile_files(tmp_path)
    for name, obj in cases.items():
        path = tmp_path / f"{name}.pth"
        torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
        with pytest.raises(CheckpointError) as err:
            read_torch_pickle(str(path))
        msg = str(err.value)
        assert "\n" not in msg
        assert "refusing to load" in msg and "posix.system" in msg, msg
        assert not marker.exists(), f"payload ran ({name})"


def test_unlisted_class_is_refused_by_name(tmp_path):
    path = tmp_path / "holder.pth"
    torch.save({"model": {"w": torch.ones(1)}, "args": _Holder()}, path)
    with pytest.raises(CheckpointError, match=r"would call .*_Holder"):
        read_torch_pickle(str(path))


@pytest.mark.slow
def test_cli_refuses_malicious_backbone_in_one_line(tmp_path):
    from conftest import run_cli

    marker, cases = _hostile_files(tmp_path)
    path = tmp_path / "scalemae-vitlarge-800.pth"
    torch.save(cases["in_args"], path)
    proc = run_cli("backbone", "import", path, "-o", tmp_path / "out.safetensors")
    assert proc.returncode == 2
    assert proc.stderr.startswith("spectralx: error: refusing to load") and "posix.system" in proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert not marker.exists() and not (tmp_path / "out.safetensors").exists()


def test_reader_fuzz_bounded_only_one_line_errors(tmp_path):
    """Random header lengths, truncations and random bytes (seeded, 300 cases): every outcome is a
    successful read or a CheckpointError, never another exception, and nothing is executed."""
    import random

    rng = random.Random(8)
    good = tmp_path / "good.safetensors"
    save_file({"a": torch.arange(12, dtype=torch.float32), "b": torch.ones(3, 3)}, str(good), metadata={"k": "v"})
    data = good.read_bytes()
    pick = tmp_path / "p.pth"
    torch.save({"model": {"w": torch.ones(4)}, "args": argparse.Namespace(lr=0.1)}, pick)
    pdata = pick.read_bytes()
    path = tmp_path / "f.safetensors"
    outcomes = {"ok": 0, "refused": 0}
    for i in range(300):
        kind = i % 4
        if kind == 0:  # truncated valid file
            blob = data[: rng.randrange(0, len(data))]
        elif kind == 1:  # a random header length in front of the real header and data
            blob = struct.pack("<Q", rng.randrange(0, 1 << 20)) + data[8:]
        elif kind == 2:  # random bytes, often starting like a pickle
            blob = bytes([0x80, rng.randrange(0, 6)]) + rng.randbytes(rng.randrange(0, 200))
        else:  # a damaged torch zip
            cut = rng.randrange(0, len(pdata))
            blob = pdata[:cut] + rng.randbytes(8) + pdata[cut + 8 :]
        path.write_bytes(blob)
        for reader in (read_safetensors, read_torch_pickle):
            try:
                reader(str(path))
                outcomes["ok"] += 1
            except CheckpointError as exc:
                assert "\n" not in str(exc)
                outcomes["refused"] += 1
    assert outcomes["refused"] > 250
    assert read_safetensors(str(good))[1] == {"k": "v"} and torch.equal(
        read_torch_pickle(str(pick))["model"]["w"], torch.ones(4)
    )
