"""Background runs (QgsTask): the engine runs in a worker thread; results are handled on the main
thread in `finished()`. Progress goes to the task (QGIS task manager) and to the panel; cancel
goes to the engine through `Progress.cancelled`. A cancelled or failed run leaves no file behind.
"""
from __future__ import annotations

import os
import shutil
import traceback
from typing import Any, Callable, List, Optional

from qgis.core import QgsTask
from qgis.PyQt.QtCore import pyqtSignal

from . import deps
from .bridge import task_progress, training_task_progress


def _remove(paths: List[Optional[str]]) -> None:
    for p in paths:
        if p and os.path.exists(p):
            try:
                os.remove(p)
            except OSError:
                pass


class EngineTask(QgsTask):
    """Runs `self.work(progress)`; `callback(task)` runs on the main thread when done."""

    message = pyqtSignal(str)

    def __init__(self, description: str, callback: Optional[Callable[["EngineTask"], None]] = None):
        super().__init__(description, QgsTask.CanCancel)
        self.callback = callback
        self.result_value: Any = None
        self.error: Optional[str] = None
        self.cancelled_by_user = False
        self.outputs: List[Optional[str]] = []   # files this run creates (removed unless success)
        self.succeeded = False

    def work(self, progress):  # pragma: no cover
        raise NotImplementedError

    def make_progress(self):
        return task_progress(self, self.message.emit)

    def run(self):
        try:
            errors = deps.engine("errors")
        except deps.MissingDependencies as exc:
            self.error = str(exc)
            return False
        try:
            progress = self.make_progress()
            self.result_value = self.work(progress)
            if self.isCanceled():
                self.cancelled_by_user = True
                return False
            return True
        except errors.Cancelled:
            self.cancelled_by_user = True
            return False
        except errors.SpectralXError as exc:
            self.error = deps.engine("bands").explain(exc, "dock")     # the panel's words, no CLI flags
        except deps.MissingDependencies as exc:
            self.error = str(exc)
            return False
        except Exception as exc:  # a bug: keep the traceback for the log
            self.error = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
            return False

    def finished(self, result):
        self.succeeded = bool(result)
        if not result:
            if self.isCanceled():
                self.cancelled_by_user = True
            _remove(self.outputs)
        if self.callback is not None:
            self.callback(self)


class SegmentTask(EngineTask):
    def __init__(self, request, callback=None, description="SpectralX: segment"):
        super().__init__(description, callback)
        self.request = request
        self.outputs = request.outputs()

    def work(self, progress):
        args, kwargs = self.request.engine_args()
        return deps.engine("inference").segment(*args, progress=progress, **kwargs)


class FinetuneTask(EngineTask):
    """Fine-tune; `cleanup` (the temporary label raster's folder) is removed however the run ends."""

    def __init__(self, request, callback=None, description="SpectralX: fine-tune", cleanup: Optional[str] = None):
        super().__init__(description, callback)
        self.request = request
        self.cleanup = cleanup
        self.outputs = [request.output]

    def work(self, progress):
        args, kwargs = self.request.engine_args()
        return deps.engine("training").finetune(*args, progress=progress, **kwargs)

    def make_progress(self):
        return training_task_progress(self, self.message.emit)

    def finished(self, result):
        if self.cleanup:
            shutil.rmtree(self.cleanup, ignore_errors=True)
        super().finished(result)


class BandTask(QgsTask):
    """Reads a raster's band metadata and maps it onto a checkpoint's bands, off the UI thread:
    `spectralx.bands.plan_bands`, the same function the CLI and Processing go through."""

    def __init__(self, path: str, card, sensor: Optional[str] = None, callback=None):
        super().__init__("SpectralX: read band metadata", QgsTask.CanCancel)
        self.path, self.card, self.sensor, self.callback = path, card, sensor, callback
        self.plan = None
        self.error: Optional[str] = None

    def run(self):
        try:
            bands = deps.engine("bands")
            self.plan = bands.plan_bands(self.path, self.card, self.sensor)
            if self.plan.error is not None:
                self.error = bands.explain(self.plan.error, "dock")
        except Exception as exc:  # noqa: BLE001  (engine errors are one line; shown in the panel)
            try:
                self.error = deps.engine("bands").explain(exc, "dock")
            except Exception:  # noqa: BLE001
                self.error = str(exc)
        return True

    def finished(self, result):
        if self.callback is not None:
            self.callback(self)
