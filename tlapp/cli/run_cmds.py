"""CLI commands that train or use models: train, predict, evaluate, export, demo, gui."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, List, Optional

import typer

from tlapp.base.errors import Cancelled, DataError, TlappError
from tlapp.cli.app import app, dump, err, out
from tlapp.cli.plan_cmds import project_with_overrides
from tlapp.cli.render import ProgressRenderer
from tlapp.config import Project
from tlapp.data.demo import demo_project
from tlapp.data.scan_text import decode_bytes
from tlapp.deploy.predict import Predictor, expand_inputs
from tlapp.deploy.summary import summarize_run
from tlapp.rundir import RunDir

PREDICT_CHUNK = 64  # files per model call in `tlapp predict`


def run_training(project: Optional[Project], run_dir: Path, project_file: Optional[Path], resume: bool = False) -> Any:
    """Train with a progress display; Ctrl-C asks the run to stop after the current batch (exit 130)."""
    from tlapp.training.run import train  # loads TensorFlow

    stop = threading.Event()

    def on_sigint(*_: Any) -> None:
        if stop.is_set():
            # A second Ctrl-C: stop now. Every file tlapp writes is written atomically, so nothing is
            # half-written; the run shows as interrupted and resumes from its last checkpoint.
            err.print(
                f"stopped. Resume with:\n  tlapp train {project_file or run_dir / 'config.yaml'} --resume {run_dir}",
                highlight=False,
            )
            os._exit(130)
        stop.set()
        err.print("stopping after the current batch… (Ctrl-C again to stop at once)", highlight=False)

    signal.signal(signal.SIGINT, on_sigint)
    try:
        with ProgressRenderer(err) as r:
            return train(project, run_dir, r, stop.is_set, project_file=project_file, resume=resume)
    except Cancelled as e:
        if RunDir(run_dir).has_checkpoint():
            err.print(
                f"interrupted ({e}): checkpoint kept. Resume with:\n  tlapp train "
                f"{project_file or run_dir / 'config.yaml'} --resume {run_dir}",
                highlight=False,
            )
        else:
            err.print(
                f"interrupted ({e}) before any checkpoint was written; start again with:\n  tlapp train "
                f"{project_file or run_dir / 'config.yaml'}",
                highlight=False,
            )
        raise SystemExit(130) from None


def _summary(result: Any) -> None:
    if result.note:
        out.print(result.note, highlight=False)
        return
    s = summarize_run(result.run_dir)
    out.print(f"run: {result.run_dir}", highlight=False)
    out.print(s.headline, highlight=False)
    if s.recipe:
        out.print(f"recipe: {s.recipe}", highlight=False)
    if result.export:
        out.print(f"export: {result.export['dir']}  verified: {result.export.get('verified')}", highlight=False)
        if result.export.get("report_pending"):
            out.print(
                f"export report: being measured in the background -> {Path(result.export['dir']) / 'report.json'}",
                highlight=False,
            )


@app.command()
def train(
    project: Path,
    out_dir: Optional[Path] = typer.Option(None, "--out", help="Run directory."),
    set_: List[str] = typer.Option([], "--set", help="dotted.key=value override (repeatable)"),
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue an interrupted run directory."),
) -> None:
    """Train, evaluate, export and verify a project."""
    if resume:
        result = run_training(None, resume, project, resume=True)
    else:
        proj = project_with_overrides(project, set_)
        result = run_training(proj, out_dir or RunDir.new(proj.name).root, project)
    _summary(result)


@app.command()
def predict(
    model: Path,
    inputs: List[str] = typer.Argument(None, help="Image files/folders, or texts."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per input."),
    file: Optional[Path] = typer.Option(None, "--file", help="Text models: one text per line."),
) -> None:
    """Predict with an exported model (or a run directory)."""
    pred = Predictor.load(model)
    if pred.is_text:
        texts = list(inputs or [])
        if file is not None:
            if not file.is_file():
                raise DataError(f"--file {file}: no such file")
            texts += [x for x in decode_bytes(file.read_bytes(), None, str(file))[0].splitlines() if x.strip()]
        if not texts:
            raise DataError("give texts as arguments or --file FILE")
        batches = (pred.predict_texts(texts[i : i + PREDICT_CHUNK]) for i in range(0, len(texts), PREDICT_CHUNK))
    else:
        if not inputs:
            raise DataError("give image files or folders to predict")
        paths = expand_inputs(inputs)
        # A lazy sequence of chunks: results print as they come, not after the last of 10,000 files.
        batches = (pred.predict_files(paths[i : i + PREDICT_CHUNK]) for i in range(0, len(paths), PREDICT_CHUNK))
    for chunk in batches:
        for r in chunk:
            _print_prediction(r, as_json)
        sys.stdout.flush()


def _print_prediction(r: dict, as_json: bool) -> None:
    if as_json:
        sys.stdout.write(json.dumps(r) + "\n")
    elif "error" in r:
        out.print(f"{r['path']}: error: {r['error']}", highlight=False)
    elif "label" in r:
        out.print(f"{r.get('path') or r['text'][:60]!s}: {r['label']} ({r['score']:.3f})", highlight=False)
    else:
        out.print(f"{r['path']}: {r.get('labels', r.get('value'))}", highlight=False)


@app.command()
def evaluate(
    run_dir: Path,
    data: Optional[Path] = typer.Option(None, "--data", help="Other labelled data."),
    split: Optional[str] = typer.Option(
        None, "--split", help="The run's split to score: val or test (default: test when the run has one)."
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Evaluate the exported model on the run's test (or validation) split, or on other data."""
    from tlapp.deploy.finished_run import evaluate_run  # loads TensorFlow

    rep = evaluate_run(run_dir, data, split)
    if rep.get("warning"):
        err.print(f"warning: {rep['warning']}", highlight=False)
    if as_json:
        dump(rep)
        return
    from tlapp.deploy.metrics import summary_lines

    for line in summary_lines(rep):
        out.print(line, highlight=False)


@app.command()
def explain(
    run_dir: Path,
    image: Path,
    out_file: Optional[Path] = typer.Option(None, "--out", help="PNG to write (default: beside the export)."),
    class_name: Optional[str] = typer.Option(None, "--class", help="Explain this class (default: the predicted one)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Grad-CAM heat map: which parts of IMAGE moved the model towards a class."""
    from tlapp.deploy.explain import explain_file  # loads TensorFlow

    ex, path = explain_file(run_dir, image, class_name, out_file)
    info = {
        "image": str(image),
        "class": ex.class_name,
        "score": ex.score,
        "predicted": ex.predicted,
        "heat_map": str(path),
        "feature_map": list(ex.feature_map),
    }
    if as_json:
        dump(info)
        return
    out.print(
        f"{image}: predicted {ex.predicted}; heat map for {ex.class_name!r} (score {ex.score:.3f}, from a "
        f"{ex.feature_map[0]}x{ex.feature_map[1]} feature map) written to {path}",
        highlight=False,
    )


@app.command()
def generate(
    run: Path = typer.Argument(..., help="A finished sft run folder (or a model folder with config.json)."),
    prompt: Optional[str] = typer.Argument(None, help="The question; or use --file."),
    file: Optional[Path] = typer.Option(None, "--file", help="A text file with one prompt per line."),
    max_tokens: int = typer.Option(128, "--max-tokens", min=1, max=2048),
    temperature: float = typer.Option(0.0, "--temperature", min=0.0, max=5.0, help="0 = greedy."),
    seed: int = typer.Option(0, "--seed"),
    system: Optional[str] = typer.Option(None, "--system", help="System prompt (default: the model's own)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Answer prompts with a fine-tuned language model (task sft)."""
    prompts = [prompt] if prompt else []
    if file is not None:
        if not file.is_file():
            raise TlappError(f"--file {file}: file not found")
        text, _ = decode_bytes(file.read_bytes(), None, str(file))
        prompts += [line.strip() for line in text.splitlines() if line.strip()]
    if not prompts:
        raise TlappError("generate: give a prompt, or --file with one prompt per line")
    from tlapp.deploy.chat_model import ChatModel, run_model_folder  # loads TensorFlow

    folder = run if (run / "config.json").is_file() and not (run / "config.yaml").is_file() else run_model_folder(run)
    t0 = time.time()
    answers = ChatModel(folder, temperature, seed).answer(prompts, max_tokens, system)
    if as_json:
        dump(
            {
                "model": str(folder),
                "temperature": temperature,
                "seconds": round(time.time() - t0, 2),
                "answers": [{"prompt": p, "answer": a} for p, a in zip(prompts, answers)],
            }
        )
        return
    for p, a in zip(prompts, answers):
        if len(prompts) > 1:
            out.print(f"[bold]> {p}[/bold]", highlight=False)
        out.print(a, highlight=False, markup=False)


@app.command("export")
def export_cmd(
    run_dir: Path,
    format_: List[str] = typer.Option(
        ["savedmodel"],
        "--format",
        help="savedmodel | keras | h5 | onnx | tflite | tflite_fp16 | tflite_int8 (repeatable)",
    ),
    out_dir: Optional[Path] = typer.Option(None, "--out"),
) -> None:
    """Re-export a finished run's model in other formats (verified in a fresh process)."""
    from tlapp.deploy.finished_run import reexport  # loads TensorFlow

    info = reexport(run_dir, format_, out_dir)
    out.print(
        f"exported {info['formats']} to {info['dir']}; check: {info.get('verify', {}).get('summary')}", highlight=False
    )
    from tlapp.deploy.report import summary

    for line in summary(info.get("report")):
        out.print(line, highlight=False)
    for k, v in info["errors"].items():
        err.print(f"[yellow]warning:[/yellow] {k}: {v}", highlight=False)


@app.command()
def demo(
    out_dir: Path = typer.Option(Path("demo-run"), "--out", help="Run directory."),
    quick: bool = typer.Option(False, "--quick", help="Smaller/faster (for smoke tests)."),
) -> None:
    """Train EfficientNet-Lite0 on bundled handwritten digits, offline, export and verify."""
    t0 = time.time()
    project, pfile = demo_project(out_dir, quick)
    result = run_training(project, out_dir / "run", pfile)
    _summary(result)
    out.print(
        f"project file: {pfile}\ntry: tlapp predict {out_dir / 'run'} {out_dir / 'data' / '3'}\n"
        f"demo finished in {time.time() - t0:.0f}s",
        highlight=False,
    )


@app.command()
def gui(project: Optional[Path] = typer.Argument(None)) -> None:
    """Open the desktop wizard (same as `tlapp-gui`)."""
    if importlib.util.find_spec("gui") is None or importlib.util.find_spec("PySide6") is None:
        raise TlappError("the GUI is not installed (pip install tlapp with PySide6-Essentials)")
    # The core never imports Qt: hand the process over to the GUI package.
    os.execv(sys.executable, [sys.executable, "-m", "gui.app", *([str(project)] if project else [])])
