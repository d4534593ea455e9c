"""Training events: small, frozen, JSON-serialisable.

They are the only thing that crosses from the training loop to a UI (rich
progress bars in the CLI, charts in the GUI, ``events.jsonl`` on disk).
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

EventSink = Callable[["Event"], None]


@dataclass(frozen=True)
class Event:
    type: str
    time: float = field(default_factory=time.time)
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), default=float)

    @staticmethod
    def from_dict(d: dict[str, Any]) -> "Event":
        return Event(d["type"], d.get("time", 0.0), d.get("data", {}))


# Event types, in the order a run emits them.
RUN_START, SCAN, PHASE_START, EPOCH_START, BATCH_END, EPOCH_END, PHASE_END = (
    "run_start", "scan", "phase_start", "epoch_start", "batch_end", "epoch_end", "phase_end")
WARNING, LOG, EXPORT, VERIFY, RUN_END = "warning", "log", "export", "verify", "run_end"


class EventLog:
    """Fans events out to the caller's sink and appends them to ``events.jsonl``.

    Batch events are throttled to ``max_rate`` per second: a UI cannot show
    more, and a fast CPU run would otherwise spend time on JSON.
    """

    def __init__(self, path: Optional[Path], sink: Optional[EventSink], max_rate: float = 4.0) -> None:
        self.path, self.sink = path, sink
        self._min_gap = 1.0 / max_rate
        self._last_batch = 0.0
        self._fh = open(path, "a", encoding="utf-8") if path else None

    def emit(self, type_: str, **data: Any) -> None:
        now = time.time()
        if type_ == BATCH_END:
            if now - self._last_batch < self._min_gap and not data.get("last"):
                return
            self._last_batch = now
        ev = Event(type_, now, data)
        if self._fh:
            self._fh.write(ev.to_json() + "\n")
            self._fh.flush()
        if self.sink:
            self.sink(ev)

    def close(self) -> None:
        if self._fh:
            self._fh.close()
            self._fh = None


def read_events(path: Path) -> list[Event]:
    return [Event.from_dict(json.loads(line)) for line in Path(path).read_text().splitlines() if line.strip()]
