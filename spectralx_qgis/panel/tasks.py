"""Background runs (QgsTask): the engine runs in a worker thread; results are handled on the main
thread in `finished()`. Progress goes to the task (QGIS task manager) and to the panel; cancel
goes to the engine through `Progress.cancelled`. A cancelled or failed run leaves no file behind.

How a run ended is one typed value, `task.outcome` (outcomes.py): `Done(value)` with the engine's result
(a SegmentResult, a FinetuneResult, …), `Failed(message)` with the one line the analyst reads (plus the
traceback for the log when it was a bug), or `Cancelled()`.
"""

from __future__ import annotations

import os
import shutil
from typing import Callable, List, Optional

from qgis.core import QgsTask
from qgis.PyQt.QtCore import pyqtSignal

from .._vendor.spectralx.contract import errors
from ..bridge import task_progress, training_task_progress
from ..outcomes import Cancelled, Done, Failed, Outcome, bug
from ..setup import deps


def _remove(paths: List[Optional[str]]) -> None:
    for p in paths:
        if p and os.path.exists(p):
            try:
                os.remove(p)
            except OSError:
                pass


def _failure(exc: BaseException) -> Failed:
    """An engine error in the panel's words (no command-line flags); anything else is a bug, with its
    traceback for the log."""
    if isinstance(exc, errors.SpectralXError):
        return Failed(errors.for_qgis(exc, "dock"))
    return bug(exc)


class EngineTask(QgsTask):
    """Runs `self.work(progress)`; `callback(task)` runs on the main thread when done, with
    `task.outcome` set."""

    message = pyqtSignal(str)

    def __init__(self, description: str, callback: Optional[Callable[["EngineTask"], None]] = None):
        super().__init__(description, QgsTask.CanCancel)
        self.callback = callback
        self.outcome: Optional[Outcome] = None
        self.outputs: List[Optional[str]] = []  # files this run creates (removed unless it is Done)

    def work(self, progress):  # pragma: no cover
        raise NotImplementedError

    def make_progress(self):
        return task_progress(self, self.message.emit)

    def run(self):
        try:
            deps.require()
        except deps.MissingDependencies as exc:
            self.outcome = Failed(str(exc))
            return False
        try:
            value = self.work(self.make_progress())
        except errors.Cancelled:
            self.outcome = Cancelled()
            return False
        except deps.MissingDependencies as exc:
            self.outcome = Failed(str(exc))
            return False
        except Exception as exc:  # noqa: BLE001  engine errors are one line; a bug keeps its traceback
            self.outcome = _failure(exc)
            return False
        self.outcome = Cancelled() if self.isCanceled() else Done(value)
        return isinstance(self.outcome, Done)

    def finished(self, result):
        if not result:
            if self.isCanceled() or self.outcome is None:
                self.outcome = Cancelled()
            _remove(self.outputs)
        if self.callback is not None:
            self.callback(self)


class SegmentTask(EngineTask):
    def __init__(self, request, callback=None, description="SpectralX: segment"):
        super().__init__(description, callback)
        self.request = request
        self.outputs = request.outputs()

    def work(self, progress):
        from .._vendor.spectralx import inference

        args, kwargs = self.request.engine_args()
        return inference.segment(*args, progress=progress, **kwargs)


class FinetuneTask(EngineTask):
    """Fine-tune; `cleanup` (the temporary label raster's folder) is removed however the run ends."""

    def __init__(self, request, callback=None, description="SpectralX: fine-tune", cleanup: Optional[str] = None):
        super().__init__(description, callback)
        self.request = request
        self.cleanup = cleanup
        self.outputs = [request.output]

    def work(self, progress):
        from .._vendor.spectralx import training

        args, kwargs = self.request.engine_args()
        return training.finetune(*args, progress=progress, **kwargs)

    def make_progress(self):
        return training_task_progress(self, self.message.emit)

    def finished(self, result):
        if self.cleanup:
            shutil.rmtree(self.cleanup, ignore_errors=True)
        super().finished(result)


class BandTask(QgsTask):
    """Reads a raster's band metadata and maps it onto a checkpoint's bands, off the UI thread:
    `spectralx.bands.plan_bands`, the same function the CLI and Processing go through. `outcome` is
    Done(plan) (a plan that cannot run carries its error) or Failed(the panel's one line)."""

    def __init__(self, path: str, card, sensor: Optional[str] = None, callback=None):
        super().__init__("SpectralX: read band metadata", QgsTask.CanCancel)
        self.path, self.card, self.sensor, self.callback = path, card, sensor, callback
        self.outcome: Optional[Outcome] = None

    def run(self):
        try:
            deps.require()
            from .._vendor.spectralx import bands

            self.outcome = Done(bands.plan_bands(self.path, self.card, self.sensor))
        except Exception as exc:  # noqa: BLE001  (engine errors are one line; shown in the panel)
            self.outcome = Failed(errors.for_qgis(exc, "dock"))
        return True

    def finished(self, result):
        if self.callback is not None:
            self.callback(self)
