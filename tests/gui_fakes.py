"""A fake trainer with TrainingProcess's interface, for wiring tests."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Optional

from PySide6.QtCore import QObject, QTimer, Signal


class FakeTrainer(QObject):
    event = Signal(dict)
    finished = Signal(str)
    source_run: Optional[Path] = None  # a finished run copied into run_dir on success

    def __init__(self, n_batches: int = 30, interval_ms: int = 5) -> None:
        super().__init__()
        self.n, self.i = n_batches, 0
        self.timer = QTimer(self)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)
        self.cancelled = False
        self.started_with: Optional[tuple] = None

    def start(self, project_json: str, run_dir: Path, resume: bool = False) -> None:
        self.started_with = (project_json, Path(run_dir), resume)
        self.run_dir = Path(run_dir)
        self.event.emit({"type": "run_start", "data": {}})
        self.event.emit(
            {
                "type": "phase_start",
                "data": {
                    "index": 0,
                    "name": "head",
                    "epochs": 3,
                    "trainable_params": 10,
                    "non_trainable_params": 100,
                    "learning_rate": 1e-3,
                    "start_epoch": 0,
                },
            }
        )
        self.timer.start()

    def _tick(self) -> None:
        if self.cancelled:
            self.timer.stop()
            self.event.emit({"type": "run_end", "data": {"status": "cancelled"}})
            self.finished.emit("cancelled")
            return
        self.i += 1
        epoch, batch = (self.i - 1) // 10 + 1, (self.i - 1) % 10 + 1
        self.event.emit(
            {
                "type": "batch_end",
                "data": {
                    "phase": 0,
                    "epoch": epoch,
                    "batch": batch,
                    "steps": 10,
                    "metrics": {"loss": 1.0 / self.i, "accuracy": 0.5},
                    "images_per_s": 100.0,
                },
            }
        )
        if batch == 10:
            self.event.emit(
                {
                    "type": "epoch_end",
                    "data": {
                        "phase": 0,
                        "phase_name": "head",
                        "epoch": epoch,
                        "epochs": 3,
                        "metrics": {
                            "loss": 1.0 / self.i,
                            "val_loss": 1.1 / self.i,
                            "accuracy": 0.6,
                            "val_accuracy": 0.55,
                        },
                        "images_per_s": 100.0,
                        "eta_s": 1.0,
                        "seconds": 0.1,
                    },
                }
            )
        if self.i >= self.n:
            self.timer.stop()
            if self.source_run is not None:
                shutil.copytree(self.source_run, self.run_dir, dirs_exist_ok=True)
            self.event.emit({"type": "run_end", "data": {"status": "completed"}})
            self.finished.emit("completed")

    def cancel(self) -> None:
        self.cancelled = True

    def wait(self, timeout_s: float = 60.0) -> bool:
        self.timer.stop()
        return True


class LoopProbe:
    """A 20 ms QTimer that records the gaps between its ticks: how long the GUI event loop stalled."""

    def __init__(self, interval_ms: int = 20) -> None:
        import time

        self._clock = time.perf_counter
        self.gaps: list[float] = []
        self._last = self._clock()
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)

    def _tick(self) -> None:
        now = self._clock()
        self.gaps.append(now - self._last)
        self._last = now

    def start(self) -> "LoopProbe":
        self._last = self._clock()
        self.timer.start()
        return self

    def stop(self) -> float:
        """Stop; the longest gap in seconds."""
        self.timer.stop()
        return max(self.gaps, default=0.0)
