"""Fuzzing the checkpoint reader (issue 13): header lengths, truncations, corrupted headers, random
bytes and pickle payloads. Whatever the bytes, the public reader (`spectralx.checkpoint.read_card`,
the tensor reader behind `load_checkpoint`, and `spectralx info`) either reads a valid file or raises
one of the project's one-line errors, and never executes anything.

Bounded and deterministic (derandomized, a fixed number of examples) so it runs in seconds in
`make test`.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
import tempfile

import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from spectralx.checkpoint import CARD_KEY, BackboneRef, Band, ClassInfo, ModelCard, read_card  # noqa: E402
from spectralx.config import ModelConfig  # noqa: E402
from spectralx.errors import SpectralXError  # noqa: E402
from spectralx.safefile import read_safetensors  # noqa: E402

FUZZ = settings(
    max_examples=60, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow]
)
MARKER = os.path.join(tempfile.gettempdir(), f"spectralx-fuzz-pwned-{os.getpid()}")


def _card() -> ModelCard:
    cfg = ModelConfig.from_preset("vit_tiny_patch16", in_bands=3, num_classes=2, img_size=64)
    return ModelCard(
        architecture=cfg.to_dict(),
        bands=[Band(f"B{i}", w, 20.0) for i, w in enumerate((480.0, 560.0, 660.0), 1)],
        classes=[ClassInfo(1, "water", "#1f78b4"), ClassInfo(2, "crop", "#33a02c")],
        backbone=BackboneRef("bb.safetensors", "0" * 64, "vit_tiny_patch16"),
    )


CARD_JSON = _card().to_json()
TENSORS = {"head.w": torch.arange(12, dtype=torch.float32).reshape(3, 4), "head.b": torch.ones(3)}


def _header_json() -> bytes:
    header, offset = {}, 0
    for name, t in TENSORS.items():
        size = t.numel() * 4
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + size]}
        offset += size
    header["__metadata__"] = {CARD_KEY: CARD_JSON}
    return json.dumps(header, separators=(",", ":")).encode()


HEADER = _header_json()
DATA = b"".join(t.numpy().tobytes() for t in TENSORS.values())


def safetensors_bytes(header: bytes, header_len: int = None, data: bytes = DATA) -> bytes:
    """A safetensors file: little-endian u64 header length, JSON header (space-padded), data."""
    n = len(header) if header_len is None else header_len
    return struct.pack("<Q", n) + header.ljust(n, b" ") + data


def _file(tmp, data: bytes, name="fuzz.safetensors") -> str:
    path = os.path.join(tmp, name)
    with open(path, "wb") as f:
        f.write(data)
    return path


def _read_only_one_line_errors(path: str):
    """read_card and the tensor reader: a result, or a one-line SpectralXError; nothing else."""
    results = []
    for reader in (read_card, read_safetensors):
        try:
            results.append(reader(path))
        except SpectralXError as exc:
            text = str(exc)
            assert text and "\n" not in text.strip(), text
            results.append(exc)
    assert not os.path.exists(MARKER), "a payload was executed"
    return results


@pytest.fixture(scope="module")
def tmp(tmp_path_factory):
    return str(tmp_path_factory.mktemp("fuzz"))


@FUZZ
@given(pad=st.integers(0, 4096))
@example(pad=0x80 - len(HEADER) % 256 + 256)  # header lengths whose low byte is 0x80 …
@example(pad=(0x80 - len(HEADER) % 256) % 256)
@example(pad=(0x80 - len(HEADER) % 256) % 256 + 0x100 * 0x0B)  # … e.g. 0x..80 like the 0xBD80 of issue 13
def test_fuzz_every_header_length_reads(tmp, pad):
    """A valid file reads whatever its header length (padding is legal safetensors)."""
    n = len(HEADER) + pad
    path = _file(tmp, safetensors_bytes(HEADER, n))
    card, (tensors, meta) = _read_only_one_line_errors(path)
    assert isinstance(card, ModelCard) and [b.wavelength_nm for b in card.bands] == [480.0, 560.0, 660.0]
    assert torch.equal(tensors["head.w"], TENSORS["head.w"]) and CARD_KEY in meta


@FUZZ
@given(cut=st.integers(0, len(HEADER) + len(DATA) + 7))
def test_fuzz_truncated_files_are_one_line_errors(tmp, cut):
    path = _file(tmp, safetensors_bytes(HEADER)[:cut])
    card, tensors = _read_only_one_line_errors(path)
    assert isinstance(card, SpectralXError) and isinstance(tensors, SpectralXError)


@FUZZ
@given(length=st.integers(0, 2**64 - 1))
def test_fuzz_header_length_field(tmp, length):
    path = _file(tmp, struct.pack("<Q", length) + safetensors_bytes(HEADER)[8:])
    card, _ = _read_only_one_line_errors(path)
    if length != len(HEADER):
        assert isinstance(card, SpectralXError)


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@pytest.mark.slow
@FUZZ
@given(header=st.dictionaries(st.text(max_size=10), _json, max_size=4), tensor_meta=_json)
def test_fuzz_corrupted_headers(tmp, header, tensor_meta):
    """Arbitrary JSON headers, with or without a tensor entry of arbitrary shape."""
    header = dict(header)
    header["head.w"] = tensor_meta
    try:
        text = json.dumps(header).encode()
    except (ValueError, TypeError):
        return
    _read_only_one_line_errors(_file(tmp, safetensors_bytes(text)))


@FUZZ
@given(card=_json)
def test_fuzz_model_cards(tmp, card):
    """A well-formed file whose model card is arbitrary JSON (or a damaged copy of a real card)."""
    base = json.loads(CARD_JSON)
    if isinstance(card, dict):
        base.update(card)
    elif card is not None:
        base["bands"] = [{"name": "B1", "wavelength_nm": card}]
    header = json.loads(HEADER)
    header["__metadata__"] = {CARD_KEY: json.dumps(base)}
    _read_only_one_line_errors(_file(tmp, safetensors_bytes(json.dumps(header).encode())))


class _Payload:
    def __reduce__(self):
        return (open, (MARKER, "w"))


@FUZZ
@given(
    prefix=st.sampled_from([b"", b"\x80\x02", b"\x80\x04", b"PK\x03\x04", b"\x80"]),
    body=st.binary(max_size=300),
    payload=st.booleans(),
)
def test_fuzz_random_bytes_and_pickles(tmp, prefix, body, payload):
    """Random bytes, pickle/zip signatures and a real code-running pickle: errors only, nothing runs."""
    data = prefix + body
    if payload:
        data = pickle.dumps({"model": _Payload()}, protocol=2) + body
    for name in ("fuzz.safetensors", "fuzz.pth"):
        card, _ = _read_only_one_line_errors(_file(tmp, data, name))
        assert isinstance(card, SpectralXError)


@settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)  # capsys is read out per example
@given(data=st.binary(max_size=200) | st.builds(lambda n: safetensors_bytes(HEADER)[:n], st.integers(0, 600)))
def test_fuzz_info_command_is_one_line(tmp, data, capsys):
    """The same bytes through `spectralx info --check`: exit 2 and one `spectralx: error:` line."""
    from spectralx.cli import main

    path = _file(tmp, data, "cli.safetensors")
    capsys.readouterr()
    rc = main(["info", path, "--check"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and err.startswith("spectralx: error: "), err
    assert not os.path.exists(MARKER)
