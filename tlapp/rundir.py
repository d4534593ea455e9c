"""A run folder: every path inside it, and its small files (resolved config, status).

:class:`RunDir` is the one place that knows the layout, so the trainer, the
CLI, the GUI and the deploy tools never spell a file name themselves::

    rd = RunDir("runs/a")
    rd.metrics        # runs/a/metrics.json
    rd.export         # runs/a/export/
"""

from __future__ import annotations

import json
import os
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator, Optional

from tlapp.base.errors import TlappError
from tlapp.base.fsutil import atomic_write_text
from tlapp.config import Project, project_to_yaml, resolve_data_path

_PACKAGES = ("tlapp", "tensorflow", "keras", "keras-hub", "numpy", "pillow")


@dataclass(frozen=True)
class RunDir:
    """The layout of one run folder (paths only; nothing is created until written)."""

    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    @staticmethod
    def new(project_name: str, parent: str | Path = "runs") -> "RunDir":
        """A fresh, timestamped run folder under ``parent`` (default ``./runs``)."""
        return RunDir(Path(parent) / f"{project_name}-{time.strftime('%Y%m%d-%H%M%S')}")

    config = property(lambda self: self.root / "config.yaml")
    status_file = property(lambda self: self.root / "status.json")
    events = property(lambda self: self.root / "events.jsonl")
    history = property(lambda self: self.root / "history.csv")
    # dpo: the starting model's log-probs of every chosen and rejected answer, computed once per run
    reference = property(lambda self: self.root / "reference_logps.json")
    metrics = property(lambda self: self.root / "metrics.json")
    evaluation = property(lambda self: self.root / "evaluation.json")
    evaluation_test = property(lambda self: self.root / "evaluation_test.json")  # only when there is a test split
    plots = property(lambda self: self.root / "plots")
    report_html = property(lambda self: self.root / "report.html")
    split = property(lambda self: self.root / "split.json")
    scan = property(lambda self: self.root / "scan.json")
    model_card = property(lambda self: self.root / "model_card.md")
    model_card_json = property(lambda self: self.root / "model_card.json")
    curve = property(lambda self: self.root / "curve.json")  # the learning curve and its data forecast
    label_issues = property(lambda self: self.root / "label_issues.json")  # labels that look wrong
    backbone_choice = property(lambda self: self.root / "backbone_choice.json")  # backbone.choose_from's scores
    checkpoints = property(lambda self: self.root / "checkpoints")
    last_checkpoint = property(lambda self: self.root / "checkpoints" / "last")
    best_weights = property(lambda self: self.root / "checkpoints" / "best.weights.h5")
    logs = property(lambda self: self.root / "logs")
    cache = property(lambda self: self.root / "cache")
    export = property(lambda self: self.root / "export")

    def has_checkpoint(self) -> bool:
        """A checkpoint to resume from: ``last``, or the one an interrupted save left (see checkpoint.choose)."""
        c = self.checkpoints
        return any((d / "state.json").is_file() for d in (c / "last", c / ".last.old", c / "previous"))

    def is_finished(self) -> bool:
        """A completed run: its metrics are written (the last file a run writes before its status)."""
        return self.metrics.is_file()

    def read_json(self, path: Path, default: Any = None) -> Any:
        return json.loads(path.read_text()) if path.is_file() else default

    def read_events(self) -> list[dict[str, Any]]:
        """The run's events in order; a torn last line (a killed run) is skipped."""
        if not self.events.is_file():
            return []
        out = []
        for line in self.events.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
        return out

    lock_file = property(lambda self: self.root / "train.lock")

    def write_status(self, status: str, message: str = "") -> None:
        atomic_write_text(
            self.status_file,
            json.dumps(
                {
                    "status": status,
                    "message": message,
                    "time": time.time(),
                    "pid": os.getpid(),
                    "host": socket.gethostname(),
                }
            ),
        )

    def status(self) -> dict[str, Any]:
        """status.json, with "running" turned into "interrupted" when its process is gone
        (a run killed with kill -9 or a power cut never wrote its end)."""
        st = self.read_json(self.status_file, {}) or {}
        if st.get("status") == "running" and st.get("host") == socket.gethostname() and not _alive(st.get("pid")):
            st = {
                **st,
                "status": "interrupted",
                "message": "the training process ended without finishing (killed or crashed); resume it",
            }
        return st

    @contextmanager
    def lock(self) -> Iterator[None]:
        """One trainer per run folder: a second ``tlapp train`` into it is refused while the
        first runs; a lock left by a dead process is taken over."""
        self.root.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname()}
        for _ in range(2):
            try:
                fd = os.open(self.lock_file, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                other = self.read_json(self.lock_file, {}) if self.lock_file.stat().st_size else {}
                if other.get("host") == me["host"] and not _alive(other.get("pid")):
                    self.lock_file.unlink(missing_ok=True)  # stale: its process is gone
                    continue
                raise TlappError(
                    f"{self.root}: another tlapp (pid {other.get('pid', '?')} on "
                    f"{other.get('host', '?')}) is training into this folder; wait for it to end "
                    "or choose another --out"
                ) from None
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(me))
            break
        try:
            yield
        finally:
            self.lock_file.unlink(missing_ok=True)

    def write_resolved_config(self, project: Project) -> None:
        header = [
            f"# tlapp run config, written {time.strftime('%Y-%m-%d %H:%M:%S')}",
            f"# data split seed: {project.data.seed}; training seed: {project.train.seed}",
            "# versions: " + ", ".join(f"{k}={v}" for k, v in versions().items()),
            "",
        ]
        atomic_write_text(self.config, "\n".join(header) + project_to_yaml(project))


def _alive(pid: Any) -> bool:
    """Whether a process with this pid exists on this machine."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def versions() -> dict[str, str]:
    """Installed versions of the packages a run depends on (recorded in config.yaml and the model card)."""
    out = {}
    for p in _PACKAGES:
        try:
            out[p] = metadata.version(p)
        except metadata.PackageNotFoundError:
            out[p] = "-"
    return out


def absolute_data_path(project: Project, project_file: Optional[Path]) -> Project:
    """Data paths are relative to the project file; a run keeps them absolute."""
    if not project.data.path:
        return project
    p = resolve_data_path(project, project_file) if project_file else Path(project.data.path).expanduser().resolve()
    return project.model_copy(update={"data": project.data.model_copy(update={"path": str(p)})})
