"""Keras callbacks that turn ``fit`` into events, checkpoints and guardrails.

Cancel is an exception raised from a per-batch check, not
``model.stop_training`` (which still finishes the epoch and lets Keras
delete its backup).
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Optional

from tlapp.base.errors import Cancelled, TrainingError
from tlapp.base.tfenv import quiet_import
from tlapp.events import BATCH_END, EPOCH_END, EPOCH_START, EventLog

_, keras = quiet_import()


def _floats(logs: Optional[dict[str, Any]]) -> dict[str, float]:
    return {k: float(v) for k, v in (logs or {}).items() if not k.startswith("_")}


DIVERGED_LOSS = 1e4  # a loss this large (and 1000x its start) means divergence, not learning
DIVERGED_FACTOR = 1e3


class EventCallback(keras.callbacks.Callback):
    """Batch/epoch events with images/s and ETA; NaN guard; cooperative cancel."""

    def __init__(
        self,
        log: EventLog,
        phase_index: int,
        phase_name: str,
        epochs: int,
        steps: int,
        batch_size: int,
        should_stop: Optional[Callable[[], bool]],
        on_epoch: Callable[[int, dict[str, float]], None],
        learning_rate: float = 0.0,
    ) -> None:
        super().__init__()
        self.log, self.phase_index, self.phase_name = log, phase_index, phase_name
        self.learning_rate = learning_rate
        self._first_loss: Optional[float] = None
        self.epochs, self.steps, self.batch_size = epochs, steps, batch_size
        self.should_stop, self.on_epoch = should_stop, on_epoch
        self._t0 = self._tb = time.time()
        self._seen = 0
        self._epoch = 0

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self._epoch, self._t0, self._seen = epoch, time.time(), 0
        self.log.emit(
            EPOCH_START, phase=self.phase_index, phase_name=self.phase_name, epoch=epoch + 1, epochs=self.epochs
        )

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        logs = _floats(logs)
        loss = logs.get("loss")
        where = f"phase {self.phase_name!r}, epoch {self._epoch + 1}, batch {batch + 1}"
        lr = f" at learning rate {self.learning_rate:g}; try {self.learning_rate / 10:g}" if self.learning_rate else ""
        if loss is not None and not math.isfinite(loss):
            raise TrainingError(
                f"loss became {loss} in {where}{lr} (lower the learning rate, or check the labels); "
                "the last good checkpoint is kept"
            )
        if loss is not None and self._first_loss is None:
            self._first_loss = loss
        elif loss is not None and loss > max(DIVERGED_LOSS, DIVERGED_FACTOR * (self._first_loss or 0.0)):
            # Adam with an absurd rate drives the loss to ~1e13 without a NaN: stop instead of finishing silently.
            raise TrainingError(
                f"training diverged: loss {loss:.3g} (it started at {self._first_loss:.3g}) in "
                f"{where}{lr}; the last good checkpoint is kept"
            )
        self._seen += self.batch_size
        elapsed = max(time.time() - self._t0, 1e-9)
        self.log.emit(
            BATCH_END,
            phase=self.phase_index,
            epoch=self._epoch + 1,
            batch=batch + 1,
            steps=self.steps,
            metrics=logs,
            images_per_s=self._seen / elapsed,
            last=batch + 1 == self.steps,
        )
        if self.should_stop and self.should_stop():
            raise Cancelled(f"cancelled in phase {self.phase_name!r}, epoch {self._epoch + 1}, batch {batch + 1}")

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        logs = _floats(logs)
        seconds = time.time() - self._t0
        remaining = (self.epochs - epoch - 1) * seconds
        self.log.emit(
            EPOCH_END,
            phase=self.phase_index,
            phase_name=self.phase_name,
            epoch=epoch + 1,
            epochs=self.epochs,
            metrics=logs,
            seconds=seconds,
            images_per_s=self._seen / max(seconds, 1e-9),
            eta_s=remaining,
        )
        self.on_epoch(epoch, logs)
