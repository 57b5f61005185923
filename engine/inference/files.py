"""Output files: checked before any compute, written under temporary names, renamed on success.

A run produces up to three files (class raster, confidence raster, style); they appear together or
not at all. Temporary files live beside their targets (same filesystem, so the final rename is atomic)
and are hidden, so a crash leaves no half-written raster under the requested name.
"""

from __future__ import annotations

import os
from typing import List, Optional, Tuple

from ..errors import RasterError
from ..fileio import fsync_file, write_error


def temp_beside(path: str) -> str:
    # short whatever the target's length: a 240-character output name must still work (NAME_MAX 255)
    from ..fileio import temp_name

    return temp_name(path)


def check_output(path: str, overwrite: bool, inputs: Tuple[str, ...] = ()) -> str:
    """Absolute output path, or a clear error if it exists (without overwrite) or cannot be written."""
    path = os.path.abspath(os.path.expanduser(path))
    if any(os.path.exists(i) and os.path.exists(path) and os.path.samefile(path, i) for i in inputs):
        raise RasterError(f"output {path} is one of the inputs; choose another output file")
    if os.path.isdir(path):
        raise RasterError(f"output {path} is a folder; give a file name such as {os.path.join(path, 'classes.tif')}")
    if os.path.exists(path) and not overwrite:
        raise RasterError(f"output {path} already exists; choose another name or allow overwriting (--overwrite)")
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        raise RasterError(f"output folder {folder} does not exist; create it first")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise RasterError(f"output {path} exists and is read-only")
    return path


class OutputSet:
    """Temporary files for a set of targets; `commit()` renames them all, `discard()` removes them."""

    def __init__(self, targets: List[str]):
        self.pairs: List[Tuple[str, str]] = []
        try:
            for target in targets:
                tmp = temp_beside(target)
                # creating the file now proves the folder is writable before any compute
                with open(tmp, "wb"):
                    pass
                self.pairs.append((tmp, target))
        except OSError as exc:
            self.discard()
            raise RasterError(
                f"cannot write to {os.path.dirname(target)}: {exc.strerror or exc}; " "choose a folder you can write to"
            ) from None

    def temp(self, target: str) -> str:
        return next(t for t, final in self.pairs if final == target)

    def commit(self) -> None:
        done: List[str] = []
        final = self.pairs[0][1] if self.pairs else ""
        try:
            for tmp, final in self.pairs:
                fsync_file(tmp)  # the data is on disk before the name says it is complete
                os.replace(tmp, final)
                done.append(final)
        except OSError as exc:
            for name in done:  # all or nothing: take back what was already renamed
                _remove(name)
            self.discard()
            raise write_error(exc, final) from None  # "no space left on … while writing …; nothing was written"
        self.pairs = []

    def discard(self) -> None:
        for tmp, _ in self.pairs:
            _remove(tmp)
            _remove(tmp + ".aux.xml")
        self.pairs = []


def _remove(path: Optional[str]) -> None:
    try:
        if path and os.path.exists(path):
            os.remove(path)
    except OSError:
        pass
