"""How a background run (QgsTask) ended, as one typed value: `Done(value)` with its result, `Failed(message)`
with the one line the analyst reads (more lines: the log's details, such as a bug's traceback), or
`Cancelled(message)`. The panel's engine runs, the model manager's downloads and imports, and the
dependency installer all report through these."""

from __future__ import annotations

import traceback
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Outcome:
    """How a background run ended (one of the three below)."""


@dataclass(frozen=True)
class Done(Outcome):
    value: Any  # the run's result (a SegmentResult, a DownloadResult, …)


@dataclass(frozen=True)
class Failed(Outcome):
    message: str  # first line: what the user reads; more lines: the log's details

    @property
    def line(self) -> str:
        return (self.message or "unknown error").splitlines()[0]


@dataclass(frozen=True)
class Cancelled(Outcome):
    message: str = ""  # what the cancel left behind, when there is something to say


def bug(exc: BaseException) -> Failed:
    """An unexpected exception: its one line, then the traceback for the log."""
    return Failed(f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
