"""The head solve, live: cross-validation candidates and solver iterations as events and history rows.

An exact head solve has no epochs, but a person still watches it: each CV
candidate's out-of-fold score arrives as it finishes (an ``epoch_end`` with
``stage: cv``), and the final fit's L-BFGS iterations draw a loss and accuracy
curve (``solver_step``). Every point a chart draws is also a row of
``history.csv`` (with its ``stage`` and ``step``), so the file and the charts
always agree. ``x`` is where the point sits on the chart within the head phase:
the candidates share (0, 1], the solver (1, 2) (iteration i at 1 + i / (i + expected),
so a solve that runs longer than expected never runs off its part of the chart).
"""

from __future__ import annotations

import time
from typing import Any, Optional

from tlapp.config import TaskType
from tlapp.events import EPOCH_END, PROGRESS, SOLVER_STEP
from tlapp.model.tasks import metric_name

SPACING = 1.15  # after the first 10, a solver point each time the iteration count grows by this factor:
# about 40 points for the longest solve (500 iterations), enough for the curve's shape


def score_key(task: TaskType) -> str:
    """The key of a head's score in events and history: the chart's metric, or R^2 for regression."""
    return "r2" if task == TaskType.regression else metric_name(task)


class HeadTrace:
    """Emits the head solve's points for ``run`` (a :class:`tlapp.training.run.Run`)."""

    def __init__(self, run: Any, candidates: int, n_examples: int) -> None:
        self.run, self.total, self.n = run, max(candidates, 1), n_examples
        self.key = score_key(run.project.task.type)
        self.done = 0
        self.t0 = self.t_last = time.time()
        self.expected_iters = 100.0  # solver iterations of the final fit: the CV's own count at its L2, once known

    def _row(self, stage: str, step: int, metrics: dict[str, float], **extra: Any) -> None:
        self.run.history.append(
            {"phase": 0, "phase_name": "head", "epoch": 0, "stage": stage, "step": step, **extra, **metrics}
        )
        self.run.write_history()

    def candidate(self, row: dict[str, float], mirror: bool, class_weights: bool) -> None:
        """One CV candidate finished: its out-of-fold loss and score."""
        self.done += 1
        now = time.time()
        elapsed = max(now - self.t0, 1e-9)
        per_s = self.done / elapsed
        eta = (self.total - self.done) / per_s
        metrics = {
            "val_loss": row["loss"],
            f"val_{self.key}": row["score"],
            **({"val_mae": row["mae"]} if "mae" in row else {}),
            **({f"val_{self.key}_mirror_averaged": row["score_averaged"]} if "score_averaged" in row else {}),
        }
        what = {"l2": row["l2"], "mirror": mirror, "class_weights": class_weights}
        self.run.log.emit(
            EPOCH_END,
            phase=0,
            phase_name="head",
            stage="cv",
            epoch=self.done,
            epochs=self.total,
            x=self.done / self.total,
            metrics=metrics,
            candidate=what,
            seconds=round(now - self.t_last, 3),
            images_per_s=self.n * self.done / elapsed,
            eta_s=round(eta, 1),
        )
        self.run.log.emit(
            PROGRESS,
            stage="cross-validating the head",
            done=self.done,
            total=self.total,
            unit="candidates",
            per_s=round(per_s, 2),
            eta_s=round(eta, 1),
            last=self.done >= self.total,
        )
        self._row("cv", self.done, metrics, **what)
        self.t_last = now

    def solver(self, n_fit: int) -> "SolverTrace":
        return SolverTrace(self, n_fit)


class SolverTrace:
    """The final fit's iterations: the first ten, then log-spaced points, and the last one; each also a
    history row."""

    def __init__(self, head: HeadTrace, n_fit: int) -> None:
        self.head, self.n_fit = head, n_fit
        self.t0 = time.time()
        self.last: Optional[tuple[int, float, float]] = None
        self.sent = 0
        self.next = 1

    def __call__(self, it: int, loss: float, score: float) -> None:
        self.last = (it, loss, score)
        if it >= self.next:
            self._send(it, loss, score)
            self.next = it + 1 if it < 10 else max(it + 1, int(it * SPACING))

    def _send(self, it: int, loss: float, score: float, last: bool = False) -> None:
        h = self.head
        expected = max(h.expected_iters, 1.0)
        elapsed = max(time.time() - self.t0, 1e-9)
        metrics = {"loss": loss, h.key: score}
        total = it if last else round(max(expected, it * 1.25))
        h.run.log.emit(
            SOLVER_STEP,
            phase=0,
            iteration=it,
            x=1 + it / (it + expected),
            metrics=metrics,
            per_s=round(it / elapsed, 1),
            examples_per_s=round(it * self.n_fit / elapsed),
        )
        h.run.log.emit(
            PROGRESS,
            stage="solving the head",
            done=it,
            total=total,
            unit="iterations",
            per_s=round(it / elapsed, 1),
            eta_s=round((total - it) * elapsed / it, 1),
            last=last,
        )
        h._row("solver", it, metrics)
        self.sent = it

    def finish(self) -> None:
        """The last iteration always reaches the chart (the curve ends where the solver stopped)."""
        if self.last is not None:
            if self.last[0] != self.sent:
                self._send(*self.last, last=True)
            else:
                self.head.run.log.emit(
                    PROGRESS,
                    stage="solving the head",
                    done=self.sent,
                    total=self.sent,
                    unit="iterations",
                    per_s=0.0,
                    eta_s=0.0,
                    last=True,
                )
