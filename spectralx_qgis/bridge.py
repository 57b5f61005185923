"""Bridges between QGIS progress objects and the engine's `spectralx.progress.Progress`."""

from __future__ import annotations

import re
import time
from typing import Callable, Optional

from ._vendor.spectralx import progress

Progress = progress.Progress  # the engine's progress and cancel object (torch-free)


def _percent(done: int, total: int) -> float:
    if not total or total <= 0:
        return 0.0
    return max(0.0, min(100.0, 100.0 * float(done) / float(total)))


def feedback_progress(feedback):
    """A Progress that reports to a QgsProcessingFeedback and cancels when it is cancelled."""
    if feedback is None:
        return Progress()
    last = {"msg": None}
    tiles = TileText()

    def on_update(done, total, message=""):
        feedback.setProgress(_percent(done, total))
        message = tiles(done, total, message)
        if message and message != last["msg"]:
            last["msg"] = message
            feedback.setProgressText(message)

    return Progress(on_update=on_update, is_cancelled=feedback.isCanceled, on_log=feedback.pushInfo)


def task_progress(task, on_message: Optional[Callable[[str], None]] = None, clock=time.monotonic):
    """A Progress that reports to a QgsTask (setProgress; panel and task manager) and its cancel;
    a segmentation's tile counts come with the time left."""
    tiles = TileText(clock)

    def on_update(done, total, message=""):
        task.setProgress(_percent(done, total))
        if message and on_message is not None:
            on_message(tiles(done, total, message))

    return Progress(
        on_update=on_update, is_cancelled=task.isCanceled, on_log=on_message if on_message is not None else None
    )


_VAL_MIOU = re.compile(r"val mIoU ([0-9.]+)")


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class TrainingText:
    """Turns the engine's (step, total, "loss … | val mIoU …") updates into the line an analyst
    reads: "step 120/300 · about 2 min 10 s left · loss 0.412 · validation mIoU 0.53"."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.start = None
        self.start_step = 0
        self.val_miou = None

    def __call__(self, done: int, total: int, message: str = "") -> str:
        now = self.clock()
        if self.start is None or done <= self.start_step:
            self.start, self.start_step = now, done
        found = _VAL_MIOU.search(message or "")
        if found:
            self.val_miou = float(found.group(1))
        parts = [f"step {done}/{total}"]
        if total and done > self.start_step and done < total:
            rate = (now - self.start) / (done - self.start_step)
            parts.append(f"about {_duration(rate * (total - done))} left")
        loss = re.search(r"loss ([0-9.]+)", message or "")
        if loss:
            parts.append(f"loss {loss.group(1)}")
        parts.append(
            f"validation mIoU {self.val_miou:.2f}" if self.val_miou is not None else "validation mIoU not yet measured"
        )
        return " · ".join(parts)


_TILES = re.compile(r"^\d+/\d+ tiles$")


class TileText:
    """The segmentation's "12/40 tiles" as "tile 12/40 · about 1 min 05 s left" (the rate since the
    first tile, as fine-tuning shows it); any other message passes unchanged."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.start = None
        self.start_done = 0

    def __call__(self, done: int, total: int, message: str = "") -> str:
        if not _TILES.match(message or ""):
            return message
        now = self.clock()
        if self.start is None or done < self.start_done:
            self.start, self.start_done = now, done
        text = f"tile {done}/{total}"
        if total and self.start_done < done < total and now > self.start:
            rate = (now - self.start) / (done - self.start_done)
            text += f" · about {_duration(rate * (total - done))} left"
        return text


def training_feedback_progress(feedback):
    """feedback_progress with the training line (step/total, time left, latest validation mIoU)."""
    text = TrainingText()
    last = {"msg": None}

    def on_update(done, total, message=""):
        feedback.setProgress(_percent(done, total))
        line = text(done, total, message)
        if line != last["msg"]:
            last["msg"] = line
            feedback.setProgressText(line)

    return Progress(on_update=on_update, is_cancelled=feedback.isCanceled, on_log=feedback.pushInfo)


def training_task_progress(task, on_message: Optional[Callable[[str], None]] = None):
    """task_progress with the training line in the panel's status."""
    text = TrainingText()

    def on_update(done, total, message=""):
        task.setProgress(_percent(done, total))
        if on_message is not None and total:
            on_message(text(done, total, message))

    return Progress(on_update=on_update, is_cancelled=task.isCanceled)
