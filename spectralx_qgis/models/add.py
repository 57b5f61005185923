"""Adding a file that is already a SpectralX model (a checkpoint or a backbone file) to the model
folder: what to put in, then linking or copying it there. Release files go through the engine's
importer instead (model_manager.ImportTask); this module needs neither Qt nor torch.

A checkpoint needs its backbone: when the backbone sits beside the source and the folder has no
file of that name, it comes along. Files are hard-linked where the folder is on the same file
system (no second copy of a 1 GB backbone), else copied to a temporary name and renamed, so a
failed or cancelled copy never leaves a half-written model in the folder.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Tuple

from . import store as model_store


class AddError(Exception):
    """The file cannot be added (one line saying why and what to do)."""


@dataclass
class AddPlan:
    kind: str  # checkpoint | backbone
    files: List[Tuple[str, str]] = field(default_factory=list)  # (source, destination), backbone first
    note: str = ""  # said after adding (a backbone that is still missing)

    @property
    def destination(self) -> str:
        return self.files[-1][1]


def is_release(entry: model_store.ModelEntry) -> bool:
    """A file for the engine's importer: a release format, or safetensors without SpectralX metadata."""
    return entry.kind in ("release", "unknown")


def plan(source: str, folder: str, entry: Optional[model_store.ModelEntry] = None) -> AddPlan:
    """What adding `source` (a checkpoint or backbone file) to `folder` writes; AddError otherwise."""
    entry = entry or model_store.describe_file(source)
    name = os.path.basename(source)
    if entry.kind == "damaged":
        raise AddError(f"{name} cannot be added: {entry.error}")
    if entry.kind not in ("checkpoint", "backbone"):
        raise AddError(
            f"{name} is not a SpectralX checkpoint or backbone file; a foundation-model release " "is imported instead"
        )
    dest = os.path.join(folder, name)
    if os.path.exists(dest):
        if _same_file(source, dest):
            raise AddError(f"{name} is already in the model folder {folder}")
        raise AddError(
            f"a different file named {name} is already in the model folder {folder}: rename the "
            "file you are adding (or remove the other one), then add it again"
        )
    out = AddPlan(entry.kind)
    if entry.kind == "checkpoint" and entry.backbone_status != "none" and entry.backbone_file:
        beside = os.path.join(os.path.dirname(os.path.abspath(source)), entry.backbone_file)
        target = os.path.join(folder, entry.backbone_file)
        if os.path.exists(target):
            pass  # checked against the card's sha256 when the model loads
        elif os.path.isfile(beside):
            out.files.append((beside, target))
        elif entry.backbone_path:
            out.note = f"its backbone {entry.backbone_file} stays where it is: {entry.backbone_path}"
        else:
            out.note = (
                f"its backbone {entry.backbone_file} was not found: add that file too (Add model or " "backbone…)"
            )
    out.files.append((os.path.abspath(source), dest))
    return out


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def link_or_copy(src: str, dest: str, cancelled: Callable[[], bool] = lambda: False) -> str:
    """Put `src` at `dest` (which must not exist): a hard link, else a copy through a temporary name.
    Returns "linked" or "copied"."""
    try:
        os.link(src, dest)
        return "linked"
    except OSError:
        pass  # another file system, or links not allowed: copy
    tmp = os.path.join(os.path.dirname(dest), f".{os.path.basename(dest)}.{os.getpid()}.part")
    try:
        with open(src, "rb") as fin, open(tmp, "wb") as fout:
            for chunk in iter(lambda: fin.read(1 << 22), b""):
                if cancelled():
                    raise AddError("cancelled: nothing was added")
                fout.write(chunk)
        shutil.copystat(src, tmp)
        if os.path.exists(dest):
            raise AddError(f"{os.path.basename(dest)} appeared in the model folder meanwhile; nothing was added")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return "copied"


def add(p: AddPlan, cancelled: Callable[[], bool] = lambda: False) -> List[str]:
    """Link or copy the plan's files; on any failure the ones already put in are removed again.
    Returns one word per file ("linked"/"copied")."""
    done: List[str] = []
    how: List[str] = []
    try:
        for src, dest in p.files:
            try:
                how.append(link_or_copy(src, dest, cancelled))
            except OSError as exc:
                raise AddError(
                    f"cannot put {os.path.basename(src)} into {os.path.dirname(dest)}: " f"{exc.strerror or exc}"
                ) from None
            done.append(dest)
    except BaseException:
        for d in done:
            os.remove(d)
        raise
    return how
