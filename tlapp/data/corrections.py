"""A person's label decisions: examples to leave out and labels to change, kept in the project file.

The person's files are never moved, renamed or deleted: ``data.exclude`` and
``data.relabel`` name examples relative to the data source (a folder's files as
``class/file.jpg``, a CSV's rows as ``texts.csv#12``), so the project stays
portable, and every run, the CLI and the wizard read the same lists through
:func:`apply_corrections`, applied right after the scan.
"""

from __future__ import annotations

import os
from pathlib import Path

from tlapp.base.errors import DataError
from tlapp.config import Project
from tlapp.data.examples import ScanReport, summarise


def data_root(source: str | Path) -> Path:
    """What example keys are relative to: the folder itself, or the folder holding a CSV/JSONL."""
    p = Path(source)
    return p if p.is_dir() else p.parent


def key_of(path: str, root: Path) -> str:
    """An example's portable name: its path relative to ``root`` with forward slashes (a row keeps ``#n``)."""
    rel = os.path.relpath(path, root)
    return rel.replace(os.sep, "/")


def apply_corrections(report: ScanReport, exclude: list[str], relabel: dict[str, str]) -> None:
    """Drop excluded examples and change labels in place; recount the classes.

    A relabel to a class the data does not have is refused (it would create a class of one); a name that
    matches no example any more (the file was removed) is a warning, not an error: the decision is moot.
    """
    if not exclude and not relabel:
        return
    if report.task not in ("image_classification", "text_classification"):
        raise DataError(
            f"data.exclude/data.relabel: label decisions apply to single-label classification, not {report.task!r}"
        )
    root = data_root(report.source)
    for key, label in relabel.items():
        if label not in report.classes:
            raise DataError(
                f"data.relabel[{key!r}]: {label!r} is not a class of {report.source} "
                f"(classes: {', '.join(report.classes)})"
            )
    dropped, changed, kept = set(exclude), dict(relabel), []
    seen: set[str] = set()
    for ex in report.examples:
        k = key_of(ex.path, root)
        if k in dropped:
            seen.add(k)
            continue
        if k in changed:
            seen.add(k)
            ex.label = changed[k]
        kept.append(ex)
    report.examples = kept
    classes = list(report.classes)
    recounted = ("classes are imbalanced", "very few", "class(es) with one", "cannot be used and will be skipped")
    report.warnings = [w for w in report.warnings if not any(r in w for r in recounted)]
    summarise(report, classes)
    stale = sorted((dropped | set(changed)) - seen)
    n_ex, n_re = len(dropped & seen), len(set(changed) & seen)
    report.warnings.append(
        f"label decisions from the project: {n_ex} example(s) excluded, {n_re} relabelled"
        + (f"; {len(stale)} name(s) match no example any more (first: {stale[0]})" if stale else "")
    )


def with_decisions(project: Project, exclude: list[str], relabel: dict[str, str], keep: list[str]) -> Project:
    """The project with these decisions added; ``keep`` withdraws any earlier decision on an example
    (a later decision on the same example replaces an earlier one)."""
    ex = [k for k in project.data.exclude if k not in keep and k not in relabel]
    ex += [k for k in exclude if k not in ex]
    re = {k: v for k, v in project.data.relabel.items() if k not in keep and k not in exclude}
    re.update(relabel)
    return project.model_copy(update={"data": project.data.model_copy(update={"exclude": ex, "relabel": re})})
