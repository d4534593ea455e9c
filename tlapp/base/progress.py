"""Rate and time left for a long step (scan, embedding pass): one rule for the
CLI, the GUI and the training events, so every progress bar agrees."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Optional


def describe_seconds(s: float) -> str:
    """``"42 s"`` below 90 seconds, ``"3.5 min"`` above: what a person reads at a glance."""
    return f"{s:.0f} s" if s < 90 else f"{s / 60:.1f} min"


@dataclass
class Rate:
    """Items per second since the step started, and the seconds it still needs.

    The first item is often slow (file cache, graph tracing), so the ETA stays
    unknown until a few percent or two seconds of work are done.
    """

    started: float = field(default_factory=time.monotonic)

    def per_s(self, done: int) -> float:
        return done / max(time.monotonic() - self.started, 1e-6)

    def eta_s(self, done: int, total: int) -> Optional[float]:
        elapsed = time.monotonic() - self.started
        if done <= 0 or total <= 0 or (done < 0.03 * total and elapsed < 2.0):
            return None
        return max(total - done, 0) * elapsed / done

    def text(self, done: int, total: int, unit: str = "files") -> str:
        """``"1,200 of 5,000 files · 310 files/s · about 12 s left"``."""
        return progress_text(done, total, unit, self.per_s(done) if done else None, self.eta_s(done, total))


def progress_text(done: int, total: int, unit: str, per_s: Optional[float], eta_s: Optional[float]) -> str:
    """The one wording of a progress bar (the scan's in the wizard, and every PROGRESS event's).
    ``unit`` "" counts steps without a speed."""
    parts = [f"{done:,} of {total:,}" + (f" {unit}" if unit else "")]
    if per_s and unit:
        parts.append(f"{per_s:,.0f} {unit}/s")
    if eta_s is not None and done < total:
        parts.append(f"about {describe_seconds(eta_s)} left")
    return " · ".join(parts)
