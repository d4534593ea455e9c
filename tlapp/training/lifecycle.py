"""One run lifecycle for every task: the result, the plan at the start, progress, and the ends.

Classifier runs (:class:`tlapp.training.run.Run`) and language-model runs
(:class:`tlapp.training.sft.SftRun`) differ in their step and their metrics, not in
how a run starts, reports progress and ends: those live here, once. (Lightning's
``Trainer`` runs any module through one loop; Keras's ``fit`` through callbacks.)
The finishing modules read what they need through small protocols and never
import the run that calls them, so imports point one way.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional

from tlapp.base.progress import Rate
from tlapp.events import PHASE_START, PLAN, PROGRESS, RUN_END, RUN_START, EventLog
from tlapp.presets import phases_of
from tlapp.rundir import RunDir
from tlapp.training.plan import make_plan, plan_lines


@dataclass
class RunResult:
    run_dir: str
    status: str
    classes: list[str]
    metrics: dict[str, Any] = field(default_factory=dict)
    export: Optional[dict[str, Any]] = None
    note: str = ""  # set when this process did not write the run (a multi-worker run's other workers)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def write_history(path: Any, rows: list[dict[str, Any]]) -> None:
    """``history.csv``: one row per record, the union of their keys as columns (first seen first)."""
    import csv

    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


def progress(log: EventLog, stage: str, unit: str = "") -> Callable[[int, int], None]:
    """A ``(done, total)`` callback that emits PROGRESS events for one long step, with speed and time left
    (``stage`` may name ``{total}``; ``unit`` "" counts steps). The one home of progress events."""
    rate = Rate()

    def emit(done: int, total: int) -> None:
        eta = rate.eta_s(done, total)
        log.emit(
            PROGRESS,
            stage=stage.format(total=total),
            done=done,
            total=total,
            unit=unit,
            per_s=round(rate.per_s(done), 1),
            eta_s=None if eta is None else round(eta, 1),
            last=done >= total,
        )

    return emit


def run_start(
    log: EventLog, run_dir: RunDir, project: Any, resume: bool, runs_on: str, precision: str, placement: Any
) -> None:
    """The first event of every run: what, where, on which device and strategy."""
    log.emit(
        RUN_START,
        run_dir=str(run_dir.root),
        project=project.name,
        backbone=project.backbone.name,
        phases=[ph.name for ph in phases_of(project, 0)],
        resume=resume,
        device=project.train.device,
        runs_on=runs_on,
        precision=precision,
        strategy=placement.plan.describe(),
        replicas=placement.replicas,
    )


def show_plan(
    log: EventLog, project: Any, n_train: int, n_val: int, rate: float, measured: bool, classes: int = 0
) -> None:
    """The plan, before anything trains: its phases, expected times and the fine-tune decision (PLAN)."""
    plan = make_plan(project, n_train, n_val, rate, measured, classes)
    log.emit(PLAN, **plan.as_dict(), lines=plan_lines(plan))


def phase_start(
    log: EventLog,
    i: int,
    phase: Any,
    start_epoch: int,
    trainable: int,
    frozen: int,
    cached: bool,
    blocks: list[dict[str, Any]],
    **extra: Any,
) -> None:
    """What a phase trains, as it starts (the charts' phase line, the log, the model card's phase table)."""
    log.emit(
        PHASE_START,
        index=i,
        name=phase.name,
        epochs=phase.epochs,
        start_epoch=start_epoch,
        trainable_params=trainable,
        non_trainable_params=frozen,
        embedding_cache=cached,
        blocks=blocks,
        learning_rate=None if phase.solver == "exact" else phase.learning_rate,
        **extra,
    )


def worker_done(log: EventLog, shared: RunDir, worker: int, classes: list[str]) -> RunResult:
    """A multi-worker run's other worker: it trained beside the chief, which writes the run folder."""
    note = f"worker {worker} done; the chief evaluates, exports and writes the run folder"
    log.emit(RUN_END, status="completed", worker=worker, message=note)
    return RunResult(str(shared.root), "completed", classes, note=note)


def completed(
    run_dir: RunDir,
    log: EventLog,
    classes: list[str],
    metrics: dict[str, Any],
    export: Optional[dict[str, Any]],
    final: dict[str, Any],
) -> RunResult:
    """The end of a finished run: its status, the last event, the result."""
    run_dir.write_status("completed")
    log.emit(
        RUN_END,
        status="completed",
        metrics=final,
        export=(export or {}).get("dir"),
        verified=(export or {}).get("verified"),
    )
    return RunResult(str(run_dir.root), "completed", classes, metrics, export)
