"""CLI commands that train or use models: train, predict, evaluate, export, demo, gui."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer

from .cli import _dump, app, err, out
from .errors import Cancelled, TlappError


class _Renderer:
    """Renders training events as rich progress bars and log lines."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("{task.fields[info]}"), TimeRemainingColumn(), console=err, transient=True)
        self.task = None

    def __enter__(self) -> "_Renderer":
        self.progress.start()
        return self

    def __exit__(self, *a) -> None:
        self.progress.stop()

    def __call__(self, ev) -> None:
        d, t = ev.data, ev.type
        if t == "phase_start":
            cache = " (embedding cache)" if d.get("embedding_cache") else ""
            err.print(f"phase {d['index'] + 1} {d['name']!r}: {d['epochs']} epoch(s), lr {d['learning_rate']:g}, "
                      f"{d['trainable_params']:,} trainable / {d['non_trainable_params']:,} frozen params{cache}",
                      highlight=False)
        elif t == "epoch_start":
            if self.task is not None:
                self.progress.remove_task(self.task)
            self.task = self.progress.add_task(f"epoch {d['epoch']}/{d['epochs']}", total=None, info="")
        elif t == "batch_end" and self.task is not None:
            m = d.get("metrics", {})
            info = " ".join(f"{k} {v:.4f}" for k, v in m.items()) + f"  {d.get('images_per_s', 0):.0f} ex/s"
            self.progress.update(self.task, completed=d["batch"], total=d["steps"], info=info)
        elif t == "epoch_end":
            m = " ".join(f"{k} {v:.4f}" for k, v in d["metrics"].items())
            err.print(f"  epoch {d['epoch']}/{d['epochs']}: {m}  ({d['images_per_s']:.0f} examples/s, {d['seconds']:.1f}s)",
                      highlight=False)
        elif t == "embeddings":
            err.print(f"  embeddings for {d['n']} images ({'from cache' if d['cached'] else 'computed'})")
        elif t == "warning":
            err.print(f"[yellow]warning:[/yellow] {d['message']}", highlight=False)
        elif t == "verify":
            err.print(f"export check (fresh process): {d['summary']}", highlight=False)
        elif t == "scan":
            err.print(f"data: {d['n_good']} examples in {len(d['counts'])} classes, {len(d['bad'])} unusable skipped",
                      highlight=False)
            for b in d["bad"][:20]:
                err.print(f"  skipped {b['path']}: {b['reason']}", highlight=False)


def _default_run_dir(name: str) -> Path:
    import time

    return Path("runs") / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"


def run_training(project, run_dir: Path, project_file: Optional[Path], resume: bool = False):
    import signal
    import threading

    from .training import train

    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    try:
        with _Renderer() as r:
            return train(project, run_dir, r, stop.is_set, project_file=project_file, resume=resume)
    except Cancelled:
        err.print(f"interrupted: checkpoint kept. Resume with:\n  tlapp train {project_file or run_dir / 'config.yaml'} "
                  f"--resume {run_dir}", highlight=False)
        raise


def _summary(result) -> None:
    m = result.metrics
    fin = m.get("final", {})
    acc = fin.get("val_accuracy_exported", fin.get("val_accuracy"))
    out.print(f"run: {result.run_dir}", highlight=False)
    if acc is not None:
        out.print(f"validation accuracy: {acc:.4f} ({m.get('n_val')} images)")
    if result.export:
        out.print(f"export: {result.export['dir']}  verified: {result.export.get('verified')}", highlight=False)


@app.command()
def train(project: Path, out_dir: Optional[Path] = typer.Option(None, "--out", help="Run directory."),
          set_: List[str] = typer.Option([], "--set", help="dotted.key=value override (repeatable)"),
          resume: Optional[Path] = typer.Option(None, "--resume", help="Continue an interrupted run directory.")) -> None:
    """Train, evaluate, export and verify a project."""
    from .config import apply_overrides, load_project

    if resume:
        result = run_training(None, resume, project, resume=True)
    else:
        proj = apply_overrides(load_project(project), set_)
        result = run_training(proj, out_dir or _default_run_dir(proj.name), project)
    _summary(result)


@app.command()
def predict(model: Path, inputs: List[str] = typer.Argument(None, help="Image files/folders, or texts."),
            as_json: bool = typer.Option(False, "--json", help="One JSON object per input."),
            file: Optional[Path] = typer.Option(None, "--file", help="Text models: one text per line.")) -> None:
    """Predict with an exported model (or a run directory)."""
    from .errors import DataError
    from .predict import Predictor, expand_inputs

    pred = Predictor.load(model)
    if pred.is_text:
        texts = list(inputs or [])
        if file is not None:
            if not file.is_file():
                raise DataError(f"--file {file}: no such file")
            from .textdata import decode_bytes

            texts += [l for l in decode_bytes(file.read_bytes(), None, str(file))[0].splitlines() if l.strip()]
        if not texts:
            raise DataError("give texts as arguments or --file FILE")
        results = pred.predict_texts(texts)
    else:
        if not inputs:
            raise DataError("give image files or folders to predict")
        results = pred.predict_files(expand_inputs(inputs))
    for r in results:
        if as_json:
            sys.stdout.write(json.dumps(r) + "\n")
        elif "error" in r:
            out.print(f"{r['path']}: error: {r['error']}", highlight=False)
        elif "label" in r:
            out.print(f"{r.get('path') or r['text'][:60]!s}: {r['label']} ({r['score']:.3f})", highlight=False)
        else:
            out.print(f"{r['path']}: {r.get('labels', r.get('value'))}", highlight=False)


@app.command()
def evaluate(run_dir: Path, data: Optional[Path] = typer.Option(None, "--data", help="Other labelled data."),
             as_json: bool = typer.Option(False, "--json")) -> None:
    """Evaluate the exported model on the run's validation split or other data."""
    from .evaluation_cli import evaluate_run

    rep = evaluate_run(run_dir, data)
    if as_json:
        _dump(rep)
        return
    out.print(f"accuracy: {rep['accuracy']:.4f} on {rep['n']} examples", highlight=False)
    for c, m in rep.get("per_class", {}).items():
        out.print(f"  {c}: precision {m['precision']:.3f} recall {m['recall']:.3f} f1 {m['f1']:.3f} "
                  f"(n={m['support']})", highlight=False)


@app.command("export")
def export_cmd(run_dir: Path, format_: List[str] = typer.Option(["savedmodel"], "--format",
                                                                help="savedmodel | keras | h5 (repeatable)"),
               out_dir: Optional[Path] = typer.Option(None, "--out")) -> None:
    """Re-export a finished run's model in other formats (verified in a fresh process)."""
    from .evaluation_cli import reexport

    info = reexport(run_dir, format_, out_dir)
    out.print(f"exported {info['formats']} to {info['dir']}; check: {info.get('verify', {}).get('summary')}",
              highlight=False)
    for k, v in info["errors"].items():
        err.print(f"[yellow]warning:[/yellow] {k}: {v}", highlight=False)


@app.command()
def demo(out_dir: Path = typer.Option(Path("demo-run"), "--out", help="Run directory."),
         quick: bool = typer.Option(False, "--quick", help="Smaller/faster (for smoke tests).")) -> None:
    """Train EfficientNet-Lite0 on bundled handwritten digits, offline, export and verify."""
    import time

    from .demo import demo_project

    t0 = time.time()
    project, pfile = demo_project(out_dir, quick)
    result = run_training(project, out_dir / "run", pfile)
    _summary(result)
    out.print(f"project file: {pfile}\ntry: tlapp predict {out_dir / 'run'} {out_dir / 'data' / '3'}\n"
              f"demo finished in {time.time() - t0:.0f}s", highlight=False)


@app.command()
def gui(project: Optional[Path] = typer.Argument(None)) -> None:
    """Open the desktop wizard (same as `tlapp-gui`)."""
    import importlib.util
    import os

    if importlib.util.find_spec("gui") is None or importlib.util.find_spec("PySide6") is None:
        raise TlappError("the GUI is not installed (pip install tlapp with PySide6-Essentials)")
    # The core never imports Qt: hand the process over to the GUI package.
    os.execv(sys.executable, [sys.executable, "-m", "gui.app", *([str(project)] if project else [])])

