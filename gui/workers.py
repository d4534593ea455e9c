"""Background work for the wizard.

- :class:`FunctionWorker` runs a short blocking call (scan, build a backbone,
  import weights, predict) in a QThread and reports the result by signal.
- :class:`TrainingProcess` runs ``tlapp.training.train`` in a child process:
  graph tracing in the first epoch holds the GIL for hundreds of ms, which
  would freeze the window if training shared the GUI's interpreter. Events
  come back over a queue that a 50 ms timer drains on the GUI thread.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import queue
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Optional

from PySide6.QtCore import QObject, QProcess, QThread, QTimer, Signal

from tlapp.base.errors import Cancelled
from tlapp.config import Project
from tlapp.events import CRASH, RUN_END

_EXIT = "_exit"  # the child's last message on the queue (not a training event)

# What starting a training child needs, imported now rather than on the first Start click
# (measured: 230 ms of imports in the GUI thread at that moment).
import multiprocessing.queues  # noqa: E402,F401
import multiprocessing.synchronize  # noqa: E402,F401

try:
    import multiprocessing.popen_spawn_posix  # noqa: E402,F401
except ImportError:  # Windows
    pass


class DeviceProbe(QObject):
    """Asks a short-lived child process which device training would use.

    Importing TensorFlow in the GUI's own process held the GIL for seconds at start-up and
    stalled the window (150-230 ms gaps measured); a child costs the window nothing.
    """

    done = Signal(dict)
    failed = Signal(str)
    # Lowest priority: importing TensorFlow is seconds of CPU that must not starve the window.
    CODE = (
        "import json, os; os.nice(19) if hasattr(os, 'nice') else None; "
        "from tlapp.training.strategy import survey; print(json.dumps(survey()))"
    )

    def __init__(self) -> None:
        super().__init__()
        self.started = False
        self.proc = QProcess(self)
        self.proc.finished.connect(self._finished)

    def start(self) -> None:
        if self.proc.state() == QProcess.ProcessState.NotRunning and not self.started:
            self.started = True
            self.proc.start(sys.executable, ["-c", self.CODE])

    def _finished(self, code: int, _status: Any) -> None:
        out = bytes(self.proc.readAllStandardOutput().data()).decode(errors="replace").strip().splitlines()
        try:
            self.done.emit(json.loads(out[-1]))
        except (IndexError, ValueError):
            err = bytes(self.proc.readAllStandardError().data()).decode(errors="replace").strip().splitlines()
            self.failed.emit(err[-1] if err else f"exit code {code}")

    def stop(self) -> None:
        """Closing the window: end the probe now (a QProcess destroyed while running aborts)."""
        if self.proc.state() != QProcess.ProcessState.NotRunning:
            self.proc.finished.disconnect()
            self.proc.kill()
            self.proc.waitForFinished(5000)


class FunctionWorker(QThread):
    done = Signal(object)
    failed = Signal(str, str)  # one-line message, details
    progress = Signal(int, int)
    live: set["FunctionWorker"] = set()  # running workers, so closing the window can wait for them

    @classmethod
    def stop_all(cls, timeout_ms: int = 30000) -> None:
        """Ask every running worker to stop and wait for it (a QThread destroyed while running aborts)."""
        for w in list(cls.live):
            w.stop()
        for w in list(cls.live):
            w.wait(timeout_ms)

    def __init__(
        self, fn: Callable[..., Any], *args: Any, with_progress: bool = False, with_stop: bool = False, **kwargs: Any
    ) -> None:
        """``with_progress``: pass ``progress=(done, total)`` callback; ``with_stop``: pass
        ``should_stop`` (True after :meth:`stop`)."""
        super().__init__()
        self.fn, self.args, self.kwargs = fn, args, kwargs
        self.with_progress, self.with_stop = with_progress, with_stop
        self._stop = False

    def stop(self) -> None:
        self._stop = True

    def should_stop(self) -> bool:
        return self._stop

    def _throttled_progress(self, done: int, total: int) -> None:
        """At most ~20 updates a second reach the GUI (a scan reports every file), and always the last."""
        now = time.monotonic()
        if done >= total or now - self._last_progress >= 0.05:
            self._last_progress = now
            self.progress.emit(done, total)

    def start(self, *args: Any) -> None:
        FunctionWorker.live.add(self)
        self.finished.connect(lambda: FunctionWorker.live.discard(self))
        super().start(*args)

    def run(self) -> None:
        self._last_progress = 0.0
        try:
            kw = dict(self.kwargs)
            if self.with_progress:
                kw["progress"] = self._throttled_progress
            if self.with_stop:
                kw["should_stop"] = self.should_stop
            self.done.emit(self.fn(*self.args, **kw))
        except Exception as e:  # reported to the user, never swallowed
            self.failed.emit(str(e).splitlines()[0] if str(e) else type(e).__name__, traceback.format_exc())


def _child(project_json: str, run_dir: str, q: Any, stop: Any, resume: bool) -> None:
    """Entry point of the training process."""
    from tlapp.training.run import train  # TensorFlow loads in the child only

    try:
        project = None if resume else Project.model_validate_json(project_json)
        train(project, run_dir, lambda ev: q.put(ev.to_dict()), stop.is_set, resume=resume)
    except Cancelled:
        pass  # the run_end event already says "cancelled"
    except Exception as e:
        q.put(
            {
                "type": CRASH,
                "data": {"message": str(e).splitlines()[0] if str(e) else repr(e), "details": traceback.format_exc()},
            }
        )
    finally:
        q.put({"type": _EXIT, "data": {}})


class TrainingProcess(QObject):
    """Starts/cancels a training child process and relays its events as signals."""

    event = Signal(dict)
    finished = Signal(str)  # "completed" | "cancelled" | "failed"

    def __init__(self, poll_ms: int = 50) -> None:
        super().__init__()
        self._ctx = mp.get_context("spawn")
        self._proc: Optional[Any] = None
        self._timer = QTimer(self)
        self._timer.setInterval(poll_ms)
        self._timer.timeout.connect(self._drain)
        self._status = "failed"

    def is_running(self) -> bool:
        return self._proc is not None and self._proc.is_alive()

    def start(self, project_json: str, run_dir: Path, resume: bool = False) -> None:
        self._q = self._ctx.Queue()
        self._stop = self._ctx.Event()
        self._status = "failed"
        self._proc = self._ctx.Process(
            target=_child, args=(project_json, str(run_dir), self._q, self._stop, resume), daemon=True
        )
        self._proc.start()
        self._timer.start()

    def cancel(self) -> None:
        if self._proc is not None:
            self._stop.set()

    def wait(self, timeout_s: float = 60.0) -> bool:
        """Block until the child exits (used when closing the window)."""
        if self._proc is None:
            return True
        self._proc.join(timeout_s)
        if self._proc.is_alive():
            self._proc.terminate()
            self._proc.join(5)
        self._drain()
        return not self._proc.is_alive()

    def _drain(self) -> None:
        for _ in range(200):
            try:
                ev = self._q.get_nowait()
            except (queue.Empty, OSError, ValueError):
                break
            if ev["type"] == _EXIT:
                self._finish()
                return
            if ev["type"] == RUN_END:
                self._status = ev["data"].get("status", "failed")
            if ev["type"] == CRASH:
                self._status = "failed"
            self.event.emit(ev)
        if self._proc is not None and not self._proc.is_alive() and self._q.empty():
            self._finish()

    def _finish(self) -> None:
        if not self._timer.isActive():
            return
        self._timer.stop()
        self.finished.emit(self._status)
