"""Background runs (QgsTask): the engine runs in a worker thread; results are handled on the main
thread in `finished()`. Progress goes to the task (QGIS task manager) and to the panel; cancel
goes to the engine through `Progress.cancelled`. A cancelled or failed run leaves no file behind.
"""
from __future__ import annotations

import os
import traceback
from typing import Any, Callable, Dict, List, Optional

from qgis.core import QgsTask
from qgis.PyQt.QtCore import pyqtSignal

from . import deps
from .bridge import task_progress


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

    def run(self):
        try:
            errors = deps.engine("errors")
        except deps.MissingDependencies as exc:
            self.error = str(exc)
            return False
        try:
            progress = task_progress(self, self.message.emit)
            self.result_value = self.work(progress)
            if self.isCanceled():
                self.cancelled_by_user = True
                return False
            return True
        except errors.Cancelled:
            self.cancelled_by_user = True
            return False
        except (errors.SpectralXError, deps.MissingDependencies) as exc:
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
    def __init__(self, params: Dict[str, Any], callback=None, description="SpectralX: segment"):
        super().__init__(description, callback)
        self.params = dict(params)
        out = self.params["output"]
        conf = self.params.get("confidence")
        self.outputs = [out, conf, os.path.splitext(out)[0] + ".qml"]

    def work(self, progress):
        inference = deps.engine("inference")
        p = dict(self.params)
        raster, checkpoint, output = p.pop("raster"), p.pop("checkpoint"), p.pop("output")
        return inference.segment(raster, checkpoint, output, progress=progress, **p)


class FinetuneTask(EngineTask):
    def __init__(self, params: Dict[str, Any], callback=None, description="SpectralX: fine-tune"):
        super().__init__(description, callback)
        self.params = dict(params)
        self.outputs = [self.params["output"]]

    def work(self, progress):
        training = deps.engine("training")
        p = dict(self.params)
        images, labels, output = p.pop("images"), p.pop("labels"), p.pop("output")
        return training.finetune(images, labels, output, progress=progress, **p)


class BandTask(QgsTask):
    """Reads a raster's band metadata and maps it onto a checkpoint's bands, off the UI thread.

    Same steps as `spectralx.bands.resolve_band_map(path, card, "auto")` (detect_bands_for_card,
    then map_bands), but keeps the detected raster bands for the panel's editor, so the file is
    scanned once."""

    def __init__(self, path: str, card, callback=None):
        super().__init__("SpectralX: read band metadata", QgsTask.CanCancel)
        self.path, self.card, self.callback = path, card, callback
        self.raster_bands = None
        self.mapping = None
        self.error: Optional[str] = None

    def run(self):
        try:
            bands = deps.engine("bands")
            raster_bands, sensor, _ = bands.detect_bands_for_card(self.path, self.card)
            self.raster_bands = list(raster_bands)
            if self.isCanceled():
                return False
            self.mapping = bands.map_bands(self.raster_bands, self.card.bands, strategy="auto", sensor=sensor)
        except Exception as exc:  # noqa: BLE001  (engine errors are one line; shown in the panel)
            self.error = str(exc)
        return True

    def finished(self, result):
        if self.callback is not None:
            self.callback(self)
