"""Bridges between QGIS progress objects and the engine's `spectralx.progress.Progress`."""
from __future__ import annotations

from typing import Callable, Optional

from . import deps


def _percent(done: int, total: int) -> float:
    if not total or total <= 0:
        return 0.0
    return max(0.0, min(100.0, 100.0 * float(done) / float(total)))


def feedback_progress(feedback):
    """A Progress that reports to a QgsProcessingFeedback and cancels when it is cancelled."""
    Progress = deps.engine("progress").Progress
    if feedback is None:
        return Progress()
    last = {"msg": None}

    def on_update(done, total, message=""):
        feedback.setProgress(_percent(done, total))
        if message and message != last["msg"]:
            last["msg"] = message
            feedback.setProgressText(message)

    return Progress(on_update=on_update, is_cancelled=feedback.isCanceled, on_log=feedback.pushInfo)


def task_progress(task, on_message: Optional[Callable[[str], None]] = None):
    """A Progress that reports to a QgsTask (setProgress; panel and task manager) and its cancel."""
    Progress = deps.engine("progress").Progress

    def on_update(done, total, message=""):
        task.setProgress(_percent(done, total))
        if message and on_message is not None:
            on_message(message)

    return Progress(on_update=on_update, is_cancelled=task.isCanceled,
                    on_log=on_message if on_message is not None else None)
