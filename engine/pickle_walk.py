"""What a restricted unpickler built, made plain and checked: Namespaces become dicts, paths strings,
and every tensor is one that holds its own data.

The walk visits each object once (memo by id), so a pickle of tuples that share references (2^40
paths in 800 bytes) costs as much as its objects, not its paths; it is iterative, so lists nested
200 000 deep are refused by the depth limit instead of overflowing the stack, and a structure that
contains itself is refused by name. Tensors must be dense CPU tensors whose shape needs no more bytes
than their storage holds: a stride-0 view can make one stored number look like gigabytes.
"""

from __future__ import annotations

import argparse
import os
import pathlib
from typing import Any, Dict, List, Tuple

import torch

from .errors import CheckpointError

MAX_ITEMS = 1_000_000  # container entries walked; a ViT-L release with optimizer state has ~20 000
MAX_DEPTH = 32  # nesting; real checkpoints nest 3-5 deep ({optimizer: {state: {0: {...}}}})

_CONTAINERS = (dict, list, tuple, set, frozenset, argparse.Namespace)


def _items(obj: Any) -> List[Tuple[str, Any]]:
    """(label, child) pairs; dict keys are children too (a key may be a path)."""
    if isinstance(obj, argparse.Namespace):
        obj = vars(obj)
    if isinstance(obj, dict):
        out = []
        for k, v in obj.items():
            out += [("", k), (str(k)[:80] if isinstance(k, (str, int)) else "", v)]
        return out
    return [("", v) for v in obj]


def _build(obj: Any, values: List[Any]) -> Any:
    if isinstance(obj, argparse.Namespace):
        return dict(zip(values[::2], values[1::2]))
    if isinstance(obj, dict):
        pairs = zip(values[::2], values[1::2])
        return type(obj)(pairs) if type(obj) in (dict,) or hasattr(type(obj), "move_to_end") else dict(pairs)
    if isinstance(obj, tuple) and type(obj) is not tuple:
        try:
            return type(obj)(values)  # torch.Size
        except TypeError:
            return tuple(values)
    return type(obj)(values)


def _leaf(obj: Any, path: str, label: str, tensors: Dict[int, Tuple[torch.Tensor, str]]) -> Any:
    if isinstance(obj, pathlib.PurePath):
        try:
            return str(obj)
        except Exception:  # a path rebuilt from non-text parts
            raise CheckpointError(
                f"{os.path.basename(path)} holds a damaged path value{_at(label)} (not text); "
                "it was not written by torch.save of real values"
            ) from None
    if isinstance(obj, torch.Tensor):
        tensors.setdefault(id(obj), (obj, label))
    return obj


def _at(label: str) -> str:
    return f" under '{label}'" if label else ""


def plain_objects(root: Any, path: str) -> Tuple[Any, List[Tuple[torch.Tensor, str]]]:
    """(plain copy of `root`, [(tensor, key it was found under)]); CheckpointError for cycles,
    nesting beyond MAX_DEPTH or more than MAX_ITEMS entries."""
    name = os.path.basename(path)
    tensors: Dict[int, Tuple[torch.Tensor, str]] = {}
    if not isinstance(root, _CONTAINERS):
        return _leaf(root, path, "", tensors), list(tensors.values())
    done: Dict[int, Any] = {}  # id -> plain copy
    height: Dict[int, int] = {}  # id -> longest chain of containers below it
    keep: List[Any] = []  # originals stay referenced, so ids stay unique
    active = set()
    budget = MAX_ITEMS

    def push(obj: Any, label: str) -> None:
        if len(stack) >= MAX_DEPTH:
            raise CheckpointError(
                f"{name} nests containers more than {MAX_DEPTH} deep{_at(label)}; real "
                "checkpoints nest a few levels, so it is refused"
            )
        active.add(id(obj))
        keep.append(obj)
        stack.append([obj, _items(obj), 0, label])

    stack: List[list] = []
    push(root, "")
    while stack:
        frame = stack[-1]
        obj, items, i, label = frame
        if i < len(items):
            frame[2] += 1
            budget -= 1
            if budget < 0:
                raise CheckpointError(
                    f"{name} holds more than {MAX_ITEMS:,} values; real checkpoints hold far " "fewer, so it is refused"
                )
            child_label, child = items[i]
            if isinstance(child, _CONTAINERS) and id(child) not in done:
                if id(child) in active:
                    raise CheckpointError(
                        f"{name} holds a container that contains itself{_at(child_label or label)}; "
                        "checkpoints written by torch.save of weights never do"
                    )
                push(child, child_label or label)
            continue
        stack.pop()
        active.discard(id(obj))
        values, h = [], 0
        for child_label, child in items:
            if isinstance(child, _CONTAINERS):
                values.append(done[id(child)])
                h = max(h, height[id(child)])
            else:
                values.append(_leaf(child, path, child_label or label, tensors))
        if h + 1 > MAX_DEPTH:
            raise CheckpointError(
                f"{name} nests containers more than {MAX_DEPTH} deep{_at(label)}; real "
                "checkpoints nest a few levels, so it is refused"
            )
        height[id(obj)] = h + 1
        try:
            done[id(obj)] = _build(obj, values)
        except TypeError:  # an unhashable key or set member: not something torch.save writes
            raise CheckpointError(f"{name} holds a malformed container{_at(label)}") from None
    return done[id(root)], list(tensors.values())


def check_tensor(t: torch.Tensor, path: str, label: str = "") -> None:
    """A dense CPU tensor whose logical size fits in its storage (no stride-0 or overlapping views)."""
    name = os.path.basename(path)
    where = f"tensor {label}" if label else "a tensor"
    if t.layout != torch.strided:
        raise CheckpointError(
            f"{name}: {where} is {str(t.layout).replace('torch.', '')}, not a dense tensor; "
            "weights files hold dense tensors"
        )
    if t.is_quantized:
        raise CheckpointError(f"{name}: {where} is quantized ({t.dtype}); import the floating-point release")
    if t.device.type != "cpu":
        raise CheckpointError(f"{name}: {where} has no data ({t.device.type} tensor); weights files hold data")
    logical = t.numel() * t.element_size()
    stored = t.untyped_storage().nbytes()
    if logical > stored:
        raise CheckpointError(
            f"{name}: {where} has shape {tuple(t.shape)} ({logical:,} bytes) but stores only {stored:,} bytes "
            "(a view that repeats its data); weights are stored in full, so it is refused"
        )
