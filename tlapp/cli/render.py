"""Training events on a terminal: a rich progress bar per epoch, and the one
human line per event that :func:`tlapp.events.describe` gives (shared with the GUI log).
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.text import Text

from tlapp.events import BATCH_END, EPOCH_START, PROGRESS, RUN_END, WARNING, Event, describe


class ProgressRenderer:
    """An event sink: ``train(..., on_event=ProgressRenderer(console))`` inside a ``with`` block."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self.task: Any = None
        self.stage = ""

    def __enter__(self) -> "ProgressRenderer":
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def __call__(self, ev: Event) -> None:
        d, t = ev.data, ev.type
        if t == EPOCH_START:
            if self.task is not None:
                self.progress.remove_task(self.task)
            self.task = self.progress.add_task(f"epoch {d['epoch']}/{d['epochs']}", total=None, info="")
        elif t == PROGRESS:
            if self.task is None or self.stage != d["stage"]:
                if self.task is not None:
                    self.progress.remove_task(self.task)
                self.task, self.stage = self.progress.add_task(d["stage"], total=d["total"], info=""), d["stage"]
            self.progress.update(self.task, completed=d["done"])
        elif t == BATCH_END and self.task is not None:
            info = " ".join(f"{k} {v:.4f}" for k, v in d.get("metrics", {}).items())
            self.progress.update(
                self.task, completed=d["batch"], total=d["steps"], info=f"{info}  {d.get('images_per_s', 0):.0f} ex/s"
            )
        if t == RUN_END and d.get("status") in ("failed", "cancelled"):
            return  # the CLI says it once, as the command's own last line (exit 2 or 130)
        line = describe(t, d)
        if line is not None:
            self.console.print(Text(line, style="yellow" if t == WARNING else ""))
