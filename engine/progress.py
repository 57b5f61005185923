"""One progress/cancel interface shared by the CLI (tqdm bar) and QGIS (QgsProcessingFeedback).

Long-running engine functions take `progress: Progress | None`. They call `progress.update(done,
total, message)` and check `progress.cancelled` between units of work (a batch, a step); when it is
true they raise `Cancelled` after cleaning up.
"""

from __future__ import annotations

from typing import Callable, Optional

from .errors import Cancelled


class Progress:
    """Base implementation: silent and never cancelled. Subclass or pass callbacks."""

    def __init__(
        self,
        on_update: Optional[Callable[[int, int, str], None]] = None,
        is_cancelled: Optional[Callable[[], bool]] = None,
        on_log: Optional[Callable[[str], None]] = None,
    ):
        self._on_update = on_update
        self._is_cancelled = is_cancelled
        self._on_log = on_log

    def update(self, done: int, total: int, message: str = "") -> None:
        if self._on_update is not None:
            self._on_update(done, total, message)

    def log(self, message: str) -> None:
        if self._on_log is not None:
            self._on_log(message)

    @property
    def cancelled(self) -> bool:
        return bool(self._is_cancelled and self._is_cancelled())

    def check(self) -> None:
        """Raise Cancelled if the user asked to stop."""
        if self.cancelled:
            raise Cancelled("cancelled by the user")


def ensure(progress: Optional[Progress]) -> Progress:
    return progress if progress is not None else Progress()


class TqdmProgress(Progress):
    """Terminal progress bar for the CLI (tqdm: small, robust, handles non-tty output)."""

    def __init__(self, description: str = "", disable: bool = False):
        super().__init__()
        self._description = description
        self._disable = disable
        self._bar = None

    def update(self, done: int, total: int, message: str = "") -> None:
        from tqdm import tqdm

        if self._bar is None:
            self._bar = tqdm(total=total, desc=self._description, unit="it", disable=self._disable, dynamic_ncols=True)
        if self._bar.total != total:
            self._bar.total = total
        self._bar.n = done
        if message:
            self._bar.set_postfix_str(message, refresh=False)
        self._bar.refresh()

    def log(self, message: str) -> None:
        from tqdm import tqdm

        tqdm.write(message)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


__all__ = ["Progress", "TqdmProgress", "Cancelled", "ensure"]
