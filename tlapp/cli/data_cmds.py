"""``tlapp curve``, ``tlapp label-issues`` and ``tlapp suggest``: what a finished run says about its data.

How much more data would help (a learning curve with its forecast), which unlabeled examples to label
first, which labels look wrong, and the person's decisions about them, written into the project file's ``data.exclude`` / ``data.relabel``
(never by touching their files) for the next run to use.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from tlapp.base.errors import ConfigError
from tlapp.cli.app import app, dump, out


@app.command()
def curve(
    run: Path,
    target: Optional[float] = typer.Option(None, "--target", help="An accuracy to reach, e.g. 0.95."),
    as_json: bool = typer.Option(False, "--json"),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write the curve as a PNG here."),
) -> None:
    """How much more data would help: the run's learning curve and its forecast at 2x, 5x and 10x the data."""
    from tlapp.rundir import RunDir
    from tlapp.training.insight import read_curve

    a = read_curve(RunDir(run), target)
    if plot is not None:
        from tlapp.deploy.plots import learning_curve

        learning_curve(a, plot)
    if as_json:
        dump(a)
        return
    out.print(a["sentence"], highlight=False)
    if not a.get("available"):
        return
    out.print("measured (held out):", highlight=False)
    for p in a["points"]:
        out.print(f"  {p['per_class']:8.1f} per class  accuracy {p['accuracy']:.3f}", highlight=False)
    levels = f" (the pessimistic fit levels off near {a['ceiling']:.3f})" if a["ceiling"] < 0.995 else ""
    out.print(f"forecast{levels}:", highlight=False)
    for f in a["forecast"]:
        what = "now" if f["multiple"] == 1 else f"{f['multiple']}x data"
        out.print(
            f"  {what:>9}: {f['per_class']:8.0f} per class  ~{f['accuracy']:.3f} ({f['low']:.3f}-{f['high']:.3f})",
            highlight=False,
        )
    gains = [c for c in a["classes"] if c["gain_2x"] > 0.005][:5]
    if gains:
        out.print(
            "classes that would gain most from more examples: "
            + ", ".join(f"{c['name']} (+{c['gain_2x']:.2f})" for c in gains),
            highlight=False,
        )


@app.command("label-issues")
def label_issues(
    run: Path,
    as_json: bool = typer.Option(False, "--json"),
    top: int = typer.Option(20, "--top", help="How many to list (text output)."),
    show_all: bool = typer.Option(False, "--all", help="Also list the doubtful rest, after the flagged issues."),
    exclude: List[str] = typer.Option([], "--exclude", help="An example (as listed) to leave out of the next run."),
    relabel: List[str] = typer.Option([], "--relabel", help="EXAMPLE=LABEL: the label it should have."),
    keep: List[str] = typer.Option([], "--keep", help="An example whose label is right: drop any decision on it."),
    project: Optional[Path] = typer.Option(None, "--project", help="The project file that records the decisions."),
) -> None:
    """Which labels look wrong (confident learning on out-of-fold predictions), and the person's decisions."""
    from tlapp.rundir import RunDir
    from tlapp.training.insight import read_label_issues

    if exclude or relabel or keep:
        _decide(project, exclude, relabel, keep)
        return
    doc = read_label_issues(RunDir(run))
    if as_json:
        dump(doc)
        return
    issues = doc["issues"]
    out.print(
        f"{len(issues)} of {doc['examples_checked']} examples look mislabelled "
        f"(estimated label errors: {doc['estimated_errors']:.0f}; {doc['method']})",
        highlight=False,
    )
    rows = issues + (doc.get("doubtful", []) if show_all else [])
    for i, it in enumerate(rows[:top]):
        if i == len(issues):
            out.print("  doubtful (the head prefers another class, not flagged):", highlight=False)
        out.print(
            f"  {it['key']}: labelled {it['given']}, suggested {it['suggested']} "
            f"(probability of its label {it['self_confidence']:.3f})",
            highlight=False,
        )
    if not show_all and doc.get("doubtful"):
        out.print(f"  ({len(doc['doubtful'])} more look doubtful: --all lists them)", highlight=False)
    for g in doc["duplicate_conflicts"]:
        pairs = ", ".join(f"{k} ({lab})" for k, lab in zip(g["keys"], g["labels"]))
        out.print(f"  {g['kind']} duplicates with different labels: {pairs}", highlight=False)
    if issues:
        out.print(
            "decide with: tlapp label-issues RUN --project FILE --exclude NAME | --relabel NAME=LABEL", highlight=False
        )


def _decide(project: Optional[Path], exclude: list[str], relabel: list[str], keep: list[str]) -> None:
    from tlapp.config import load_project, save_project
    from tlapp.data.corrections import with_decisions

    if project is None:
        raise ConfigError("--exclude/--relabel/--keep: name the project file that records them with --project FILE")
    pairs = {}
    for r in relabel:
        key, sep, label = r.partition("=")
        if not sep or not key or not label:
            raise ConfigError(f"--relabel {r!r}: expected EXAMPLE=LABEL")
        pairs[key] = label
    proj = with_decisions(load_project(project), exclude, pairs, keep)
    save_project(proj, project)
    out.print(
        f"{project}: {len(proj.data.exclude)} excluded, {len(proj.data.relabel)} relabelled (the next run uses them)",
        highlight=False,
    )


@app.command()
def suggest(
    run: Path,
    source: Path,
    n: int = typer.Option(20, "--n", help="How many to suggest."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """What to label next: the unlabeled images (a folder) or texts (.txt/.csv) that would help most."""
    from rich.progress import Progress

    from tlapp.cli.app import err
    from tlapp.deploy.suggest import suggest as rank_unlabeled

    with Progress(console=err, transient=True) as bar:
        task = bar.add_task("embedding the unlabeled examples", total=None)
        s = rank_unlabeled(run, source, n, progress=lambda done, total: bar.update(task, completed=done, total=total))
    if as_json:
        dump({"items": s.items, "skipped": s.skipped, "unlabeled": s.unlabeled})
        return
    out.print(
        f"label these first ({len(s.items)} of {s.unlabeled}: least sure, and unlike each other):", highlight=False
    )
    for it in s.items:
        what = it.get("path") or it["text"][:100]
        out.print(
            f"  {it['rank']:3d}. {what}  (looks like {it['predicted']}, margin {it['margin']:.2f})", highlight=False
        )
    for sk in s.skipped[:20]:
        out.print(f"  skipped {sk['path']}: {sk['reason']}", highlight=False)
