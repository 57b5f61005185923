"""Runs for the panel: owns the running task, output and layer names, progress, cancel and the
messages an analyst reads. The dock hands it typed requests; it hands back finished tasks."""

from __future__ import annotations

import datetime as _dt
import os
import re
from typing import Callable, Optional

from qgis.core import Qgis, QgsApplication, QgsProject
from qgis.PyQt.QtCore import QObject, pyqtSignal, pyqtSlot

from .. import styling
from .tasks import Cancelled, Done, Failed

CANCELLED_TEXT = "Cancelled: nothing was written."


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "_", text).strip("_")[:40] or "layer"


def model_name(checkpoint: str) -> str:
    return os.path.splitext(os.path.basename(checkpoint))[0] if checkpoint else "spectralx"


def unique_layer_name(base: str, project: Optional[QgsProject] = None) -> str:
    """`base`, or `base (2)`, `base (3)` … so that repeated runs are told apart in the layer tree."""
    project = project or QgsProject.instance()
    taken = {lyr.name() for lyr in project.mapLayers().values()}
    if base not in taken:
        return base
    n = 2
    while f"{base} ({n})" in taken:
        n += 1
    return f"{base} ({n})"


class RunController(QObject):
    """One run at a time. Signals: `busyChanged(bool)`, `progress(int)`, `status(str)`, `finished(task)`."""

    busyChanged = pyqtSignal(bool)
    progress = pyqtSignal(int)
    status = pyqtSignal(str)
    finished = pyqtSignal(object)
    message = pyqtSignal(str, object)  # text, Qgis message level (for the message bar)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.task = None
        self.alive = True

    def busy(self) -> bool:
        return self.task is not None

    # ---------------------------------------------------------------- names
    @staticmethod
    def stamp() -> str:
        return _dt.datetime.now().strftime("%Y%m%d_%H%M%S_%f")

    def segment_paths(self, folder: str, layer_name: str, checkpoint: str, kind: str):
        """(classes.tif, confidence.tif) named after the layer, the model and the area kind."""
        stem = f"{slug(layer_name)}_{slug(model_name(checkpoint))}_{kind or 'layer'}_{self.stamp()}"
        return os.path.join(folder, stem + ".tif"), os.path.join(folder, stem + "_confidence.tif")

    def model_path(self, models: str, base_checkpoint: str, raster_name: str = "", round_no: int = 1) -> str:
        """A new model's path in the model folder `models` (the model manager's folder, so every model
        the panel writes is listed there; the engine puts the backbone beside it when it is elsewhere).
        Named after the raster, the round and the minute, never after the base model: names do not
        grow round after round (`a_finetuned_…_finetuned_…`)."""
        try:
            os.makedirs(models, exist_ok=True)
        except OSError as exc:
            raise RuntimeError(
                f"cannot write to the model folder {models} ({exc.strerror or exc}): make it "
                "writable, or set SPECTRALX_MODELS to a writable folder and restart QGIS"
            ) from None
        root = slug(raster_name)[:24] if raster_name else slug(model_name(base_checkpoint))[:24]
        stem = f"{root}_r{max(1, int(round_no))}_{self.stamp()[:13]}"
        path, n = os.path.join(models, stem + ".safetensors"), 2
        while os.path.exists(path):
            path, n = os.path.join(models, f"{stem}_{n}.safetensors"), n + 1
        return path

    @staticmethod
    def layer_name(layer_name: str, checkpoint: str, kind: str) -> str:
        what = {"": "classes", "view": "classes (view)", "area": "classes (area)"}.get(kind, kind)
        return unique_layer_name(f"{layer_name} · {what} · {model_name(checkpoint)}")

    # ---------------------------------------------------------------- runs
    def start(self, task, on_done: Optional[Callable] = None):
        if self.task is not None:
            raise RuntimeError("a SpectralX run is already in progress")
        self.task = task
        self.progress.emit(0)
        self.status.emit(task.description() + " …")
        task.progressChanged.connect(self._on_progress)  # queued: the task reports from its thread
        task.message.connect(self.status)

        def done(t):
            if not self.alive:  # the panel was closed while the task ran
                return
            self.task = None
            outcome = t.outcome
            self.progress.emit(100 if isinstance(outcome, Done) else 0)
            if isinstance(outcome, Cancelled):
                self.message.emit(CANCELLED_TEXT, Qgis.Info)
            elif isinstance(outcome, Failed):
                self.message.emit(f"Failed: {outcome.line}", Qgis.Critical)
                if "\n" in outcome.message:
                    QgsApplication.messageLog().logMessage(outcome.message, "SpectralX", Qgis.Critical)
            if on_done is not None:
                on_done(t)
            self.busyChanged.emit(False)
            self.finished.emit(t)

        task.callback = done
        self.busyChanged.emit(True)
        QgsApplication.taskManager().addTask(task)
        return task

    @pyqtSlot(float)
    def _on_progress(self, value):
        self.progress.emit(int(value))

    def cancel(self):
        if self.task is not None:
            self.task.cancel()
            self.status.emit("Cancelling …")

    def load_segmentation(self, task, name: str, classes):
        """Styled class (+ confidence) layers in the SpectralX group, named after layer and model."""
        res = task.outcome.value  # the engine's SegmentResult
        layers = styling.load_results(res.output, res.classes or classes, res.confidence, name=name)
        self.message.emit(
            f"Segmented into {res.output}" + (f" in {res.seconds:.1f} s" if res.seconds else ""), Qgis.Success
        )
        return layers

    def shutdown(self):
        self.alive = False
        if self.task is not None:
            self.task.cancel()
