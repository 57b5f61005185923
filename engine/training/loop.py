"""One training loop for both stages: schedule, autocast, clipping, EMA, evaluation, early stopping.

Stage 1 and stage 2 differ only in what a step computes (`step_fn`) and whether there is a
validation score; everything else (warm-up + cosine schedule, the device module's autocast policy,
gradient clipping, progress and cancel, an optional exponential moving average of the weights,
keeping the best state) lives here once.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
import torch

from .. import devices
from ..progress import Progress
from .common import lr_factor, make_optimizer, non_backbone_state

GRAD_CLIP = 5.0


@dataclass
class LoopResult:
    steps_run: int = 0
    stopped_early: bool = False
    best_step: int = 0
    best_score: float = -1.0
    best_metrics: Optional[Dict[str, Any]] = None
    history: List[Dict[str, Any]] = field(default_factory=list)
    losses: List[float] = field(default_factory=list)


class WeightAverage:
    """Exponential moving average of the trainable parameters (decay 0 = off). Averaged weights are
    what a small, noisy fine-tuning run should keep: they are evaluated and saved instead of the last
    step's."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = float(decay)
        self.params = [(n, p) for n, p in model.named_parameters() if p.requires_grad] if decay else []
        self.shadow = [p.detach().clone() for _, p in self.params]
        self.updates = 0

    @torch.no_grad()
    def update(self) -> None:
        if not self.params:
            return
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))  # warm-up: early steps count more
        for s, (_, p) in zip(self.shadow, self.params):
            s.mul_(d).add_(p.detach(), alpha=1 - d)

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """Swap the averaged weights in for the duration (evaluation, snapshot)."""
        if not self.params:
            yield
            return
        with torch.no_grad():
            live = [p.detach().clone() for _, p in self.params]
            for s, (_, p) in zip(self.shadow, self.params):
                p.copy_(s)
        try:
            yield
        finally:
            with torch.no_grad():
                for v, (_, p) in zip(live, self.params):
                    p.copy_(v)


# the step after which the whole run's time is estimated and logged (the first step is not timed)
ETA_AFTER = 3


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def run_loop(
    model: torch.nn.Module,
    step_fn: Callable[[int], Tuple[torch.Tensor, float]],
    *,
    steps: int,
    lr: float,
    weight_decay: float,
    device: torch.device,
    progress: Progress,
    evaluate: Optional[Callable[[], Dict[str, Any]]] = None,
    eval_every: int = 0,
    patience: Optional[int] = None,
    ema: float = 0.0,
    describe: str = "loss",
    log_every: int = 0,
    full_state: bool = False,
) -> LoopResult:
    """Train the parameters that require grad. `step_fn(step)` returns (loss, value to report).
    With `evaluate` (returns a dict with "miou"), keeps the best state by validation mIoU and stops
    after `patience` evaluations without gain; the best (or, without validation, the final) state is
    loaded into the model on return."""
    # Long (100 lines) on purpose: the training step, evaluation, early stopping and progress share the loop's
    # state.
    params = [p for p in model.parameters() if p.requires_grad]
    opt = make_optimizer(params, lr, weight_decay)
    average = WeightAverage(model, ema)
    res = LoopResult()
    best_state = None
    bad = 0
    model.train()
    progress.update(0, steps, "starting")
    snapshot = (
        (lambda: {k: v.detach().clone() for k, v in model.state_dict().items()})
        if full_state
        else (lambda: non_backbone_state(model))
    )
    for step in range(1, steps + 1):
        progress.check()
        for g in opt.param_groups:
            g["lr"] = lr * lr_factor(step - 1, steps)
        with devices.autocast(str(device)):
            loss, value = step_fn(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP)
        opt.step()
        average.update()
        res.losses.append(float(value))
        res.steps_run = step
        msg = f"{describe} {np.mean(res.losses[-20:]):.4f}"
        if step == 1:
            paced = time.perf_counter()  # the first step builds the optimizer state: not timed
        elif step == ETA_AFTER and step < steps:
            # the whole run at this machine's pace, in the log (the progress bars show the time left):
            # a large backbone's budget on a CPU is said before it is spent
            per_step = (time.perf_counter() - paced) / (step - 1)
            progress.log(
                f"about {per_step:.3g} s per step on {device}: {steps} steps take about "
                f"{_minutes(per_step * steps)} (early stopping may end sooner)"
            )
        if evaluate is not None and eval_every and (step % eval_every == 0 or step == steps):
            with average.applied():
                m = evaluate()
                model.train()
                res.history.append(
                    {
                        "step": step,
                        "loss": float(np.mean(res.losses[-eval_every:])),
                        "val_miou": m["miou"],
                        "val_oa": m["overall_accuracy"],
                    }
                )
                if m["miou"] > res.best_score + 1e-4:
                    res.best_score, res.best_step, res.best_metrics = m["miou"], step, m
                    best_state = snapshot()
                    bad = 0
                else:
                    bad += 1
            msg += f" | val mIoU {m['miou']:.3f} (best {res.best_score:.3f} @ {res.best_step})"
            progress.log(f"step {step}/{steps}: {msg}")
            if patience is not None and bad >= patience:
                progress.update(step, steps, msg)
                progress.log(f"early stop at step {step}: no validation mIoU gain for {patience} evaluations")
                res.stopped_early = True
                break
        elif log_every and (step % log_every == 0 or step == steps):
            res.history.append({"step": step, describe: float(np.mean(res.losses[-log_every:]))})
            progress.log(f"step {step}/{steps}: {msg}")
        progress.update(step, steps, msg)
    progress.check()
    if best_state is not None:
        model.load_state_dict(best_state, strict=False)
    elif average.params:  # no validation: keep the averaged weights
        with torch.no_grad():
            for s, (_, p) in zip(average.shadow, average.params):
                p.copy_(s)
    if evaluate is None or best_state is None:
        res.best_step = res.steps_run
    model.eval()
    return res
