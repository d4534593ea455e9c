"""Training events: small, frozen, JSON-serialisable.

They are the only thing that crosses from the training loop to a UI (rich
progress bars in the CLI, charts in the GUI, ``events.jsonl`` on disk). Every
emitter and consumer uses the type constants below, and :func:`describe` is
the one place an event becomes a human line (the CLI and the GUI log both
print it), so a new event needs one edit to show everywhere.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

EventSink = Callable[["Event"], None]

# Event types, in the order a run emits them.
RUN_START = "run_start"
SCAN = "scan"
RESUME = "resume"
PLAN = "plan"  # the phases that will train, their expected times and the fine-tune decision, before training
RECIPE_DECISION = "recipe_decision"
BACKBONE_CHOICE = "backbone_choice"  # backbone.choose_from: each candidate's cross-validated head score, the winner
PHASE_START = "phase_start"
EMBEDDINGS = "embeddings"
DATA_CACHE = "data_cache"  # where a split's decoded images live between epochs, and why
PROGRESS = "progress"  # a long step that is not an epoch (scan, embedding, evaluation, export): stage, done, total, unit, per_s, eta_s
EPOCH_START = "epoch_start"
BATCH_END = "batch_end"
SOLVER_STEP = "solver_step"  # an exact head solve's iteration: iteration, x, metrics, per_s (a live curve point)
EPOCH_END = "epoch_end"
PHASE_END = "phase_end"
WARNING = "warning"
INSIGHT = "insight"  # what the run learned about its data: the learning curve's sentence, labels that look wrong
EXPORT = "export"
VERIFY = "verify"
RUN_END = "run_end"
# Sent by a process that hosts ``train`` (the GUI's child) when it dies outside ``train``.
CRASH = "crash"


@dataclass(frozen=True)
class Event:
    type: str
    time: float = field(default_factory=time.time)
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), default=float)


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
        if type_ in (BATCH_END, PROGRESS):
            if now - self._last_batch < self._min_gap and not data.get("last"):
                return
            self._last_batch = now
        ev = Event(type_, now, data)
        if self._fh:
            try:
                self._fh.write(ev.to_json() + "\n")
                self._fh.flush()
            except OSError as e:  # a full disk: stop writing the log (the sink still hears the end) and say where
                self._fh = None
                raise OSError(e.errno, e.strerror, str(self.path)) from e
        if self.sink:
            self.sink(ev)

    def close(self) -> None:
        if self._fh:
            self._fh.close()
            self._fh = None


def _metrics(m: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:.4f}" for k, v in m.items())


def _phase_start(d: dict[str, Any]) -> str:
    if d.get("solver"):
        return f"phase {d['index'] + 1} {d['name']!r}: {d['solver']}"
    cache = (
        " (embedding cache)"
        if d.get("embedding_cache")
        else f" (on cached activations below {d['cut_at']})"
        if d.get("cut_at")
        else ""
    )
    return (
        f"phase {d['index'] + 1} {d['name']!r}: {d['epochs']} epoch(s), lr {d['learning_rate']:g}, "
        f"{d['trainable_params']:,} trainable / {d['non_trainable_params']:,} frozen params{cache}"
    )


def _epoch_end(d: dict[str, Any]) -> str:
    if d.get("stage") == "cv":
        c = d.get("candidate", {})
        how = ", ".join(k.replace("_", " ") for k in ("mirror", "class_weights") if c.get(k))
        return (
            f"  CV candidate {d['epoch']}/{d['epochs']} (L2 {c.get('l2', 0):g}{', ' + how if how else ''}): "
            f"out of fold {_metrics(d['metrics'])}"
        )
    speed = f"  ({d['images_per_s']:.0f} examples/s, {d['seconds']:.1f}s)" if d.get("images_per_s") else ""
    return f"  epoch {d['epoch']}/{d['epochs']}: {_metrics(d['metrics'])}{speed}"


def _scan(d: dict[str, Any]) -> str:
    if d.get("pairs"):
        t = d.get("tokens") or {}
        what = "prompt/chosen/rejected triples" if "triples" in d.get("counts", {}) else "prompt/response pairs"
        lines = [
            f"data: {d['n_good']:,} {what} ({t.get('min', 0)}-{t.get('max', 0)} tokens, median "
            f"{t.get('median', 0)}), {len(d['bad'])} unusable skipped, {d.get('ignored', 0)} repeats dropped"
        ]
        return "\n".join(lines + [f"  skipped {b['path']}: {b['reason']}" for b in d["bad"][:20]])
    cap = d.get("max_per_class")
    using = (
        f" (using {d['used']:,}: at most {cap} per class)" if cap and d.get("used", d["n_good"]) < d["n_good"] else ""
    )
    lines = [f"data: {d['n_good']:,} examples in {len(d['counts'])} classes{using}, {len(d['bad'])} unusable skipped"]
    lines += [f"  skipped {b['path']}: {b['reason']}" for b in d["bad"][:20]]
    return "\n".join(lines)


def _choice(d: dict[str, Any]) -> str:
    scored = [c for c in d["candidates"] if c.get("score") is not None]
    rows = ", ".join(f"{c['name']}@{c['size']} {c['score']:.3f}" for c in scored)
    why = f" — {d['reason']}" if d.get("reason") else ""
    return f"backbone: {d['chosen']} (cross-validated head score: {rows}; {d['seconds']:.0f}s){why}"


def _run_end(d: dict[str, Any]) -> str:
    return f"run {d.get('status')}: {d.get('message', '')}".rstrip(": ")


_LINES: dict[str, Callable[[dict[str, Any]], Optional[str]]] = {
    RUN_START: lambda d: f"device: {d['runs_on']}, {d.get('precision', 'float32')}" if d.get("runs_on") else None,
    SCAN: _scan,
    DATA_CACHE: lambda d: f"  {d['split']} images: {d['why']}",
    RESUME: lambda d: d.get("message") or f"resuming at phase {d['phase'] + 1}, epoch {d['epoch']}",
    PLAN: lambda d: "\n".join(d["lines"]),
    RECIPE_DECISION: lambda d: f"recipe: {d['summary']}",
    BACKBONE_CHOICE: _choice,
    PHASE_START: _phase_start,
    EMBEDDINGS: lambda d: (
        f"  embeddings for {d['n']} examples ("
        + (
            "from cache"
            if d["cached"]
            else f"{d['reused']} from cache, {d['n'] - d['reused']} computed"
            if d.get("reused")
            else "computed"
        )
        + ")"
    ),
    EPOCH_END: _epoch_end,
    WARNING: lambda d: f"warning: {d['message']}",
    INSIGHT: lambda d: "\n".join(
        [f"more data? {d['curve']}"]
        + ([f"labels: {d['issues']} example(s) look mislabelled (tlapp label-issues RUN)"] if d.get("issues") else [])
    ),
    VERIFY: lambda d: f"export check (fresh process): {d['summary']}",
    RUN_END: _run_end,
    CRASH: lambda d: f"error: {d.get('message')}",
}


def describe(type_: str, data: dict[str, Any]) -> Optional[str]:
    """The human line for an event, or None for events that only drive progress bars and charts.

    Example::

        describe("warning", {"message": "classes are imbalanced"})  # 'warning: classes are imbalanced'
    """
    fn = _LINES.get(type_)
    return fn(data) if fn else None
