"""Scan a dataset before training: decode every file once and report.

Training uses the scan's list of good files, so a corrupt image is skipped
and listed, never a crash in the middle of an epoch. macOS debris
(``__MACOSX``, ``._*``) and hidden files/folders are ignored and counted.
"""
from __future__ import annotations

import csv
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Union

from .errors import DataError
from .imageio import ImageProblem, load_rgb

Label = Union[str, list[str], float]
Progress = Callable[[int, int], None]


@dataclass
class Example:
    path: str  # a file, or "file#row" for a text row
    label: Any  # str (single-label), list[str] (multi-label) or float (regression)
    text: Optional[str] = None  # text tasks: the example itself


@dataclass
class BadFile:
    path: str
    reason: str


@dataclass
class ScanReport:
    source: str
    kind: str  # "folder" | "csv"
    task: str
    classes: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    examples: list[Example] = field(default_factory=list)
    bad: list[BadFile] = field(default_factory=list)
    ignored: list[BadFile] = field(default_factory=list)
    empty_classes: list[str] = field(default_factory=list)
    class_weights: dict[str, float] = field(default_factory=dict)
    imbalance: float = 1.0
    warnings: list[str] = field(default_factory=list)
    lengths: dict[str, Any] = field(default_factory=dict)  # text tasks: length distribution

    def as_dict(self, with_examples: bool = False) -> dict[str, Any]:
        d = asdict(self)
        if not with_examples:
            d.pop("examples")
        d["n_good"], d["n_bad"], d["n_ignored"] = len(self.examples), len(self.bad), len(self.ignored)
        return d

    def require_usable(self) -> None:
        """Raise if training cannot proceed on this data."""
        if self.empty_classes:
            raise DataError(f"{self.source}: class folder(s) with no usable images: {', '.join(self.empty_classes)}")
        if not self.examples:
            raise DataError(f"{self.source}: no usable images found")
        if self.task != "regression" and len(self.classes) < 2:
            raise DataError(f"{self.source}: need at least 2 classes, found {self.classes}")


def _debris(rel_parts: tuple[str, ...]) -> Optional[str]:
    for p in rel_parts:
        if p == "__MACOSX":
            return "macOS archive debris (__MACOSX)"
        if p.startswith("._"):
            return "macOS resource fork (._ file)"
        if p.startswith("."):
            return "hidden file or folder"
    return None


def _list_folder(root: Path, report: ScanReport) -> tuple[list[Example], list[str]]:
    classes, items = [], []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        why = _debris((d.name,))
        if why:
            report.ignored.append(BadFile(str(d), why))
            continue
        classes.append(d.name)
        for dirpath, dirnames, filenames in os.walk(d):
            rel = Path(dirpath).relative_to(root).parts
            for fn in sorted(filenames):
                why = _debris(rel + (fn,))
                if why:
                    report.ignored.append(BadFile(str(Path(dirpath) / fn), why))
                else:
                    items.append(Example(str(Path(dirpath) / fn), d.name))
            dirnames[:] = sorted(dirnames)
    for f in sorted(p for p in root.iterdir() if p.is_file()):
        report.ignored.append(BadFile(str(f), _debris((f.name,)) or "file outside class folders"))
    return items, classes


def _parse_label(raw: str, task: str, where: str) -> Any:
    raw = raw.strip()
    if task == "regression":
        try:
            return float(raw)
        except ValueError:
            raise DataError(f"{where}: label {raw!r} is not a number (task is regression)") from None
    if task == "multi_label":
        return sorted({t.strip() for t in raw.split(";") if t.strip()})
    return raw


def _list_csv(path: Path, task: str) -> list[Example]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        text = path.read_text(encoding="latin-1")
    rows = list(csv.reader(text.splitlines()))
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["path", "label"]:
        rows = rows[1:]
        start = 2
    else:
        start = 1
    items = []
    for i, row in enumerate(rows, start=start):
        if not row or not any(c.strip() for c in row):
            continue
        if len(row) < 2 or not row[1].strip():
            raise DataError(f"{path}:{i}: expected 'path,label', got {','.join(row)!r}")
        p = Path(row[0].strip()).expanduser()
        if not p.is_absolute():
            p = path.parent / p
        items.append(Example(str(p), _parse_label(row[1], task, f"{path}:{i}")))
    return items


def _labels_of(ex: Example, task: str) -> list[str]:
    if task == "regression":
        return []
    return ex.label if isinstance(ex.label, list) else [ex.label]


def class_weights(counts: dict[str, int]) -> dict[str, float]:
    """Balanced weights n_total / (n_classes * n_c), as scikit-learn's 'balanced'."""
    total, k = sum(counts.values()), len(counts)
    return {c: round(total / (k * n), 4) for c, n in counts.items() if n}


def scan(source: str | Path, task: str = "image_classification", workers: int = 4,
         progress: Optional[Progress] = None, should_stop: Optional[Callable[[], bool]] = None) -> ScanReport:
    """Decode every file of a folder-per-class tree or a ``path,label`` CSV."""
    source = Path(source).expanduser()
    if not source.exists():
        raise DataError(f"{source}: data path does not exist")
    kind = "folder" if source.is_dir() else "csv"
    report = ScanReport(str(source), kind, task)
    if kind == "folder":
        if task == "regression":
            raise DataError(f"{source}: regression needs a CSV of path,value (a folder per class is for classification)")
        items, folder_classes = _list_folder(source, report)
    else:
        items, folder_classes = _list_csv(source, task), []
    done = [0]

    def check(ex: Example) -> Optional[BadFile]:
        if should_stop and should_stop():
            return BadFile(ex.path, "scan cancelled")
        try:
            load_rgb(ex.path)
            return None
        except ImageProblem as e:
            return BadFile(ex.path, str(e))
        except FileNotFoundError:
            return BadFile(ex.path, "file not found")
        finally:
            done[0] += 1
            if progress:
                progress(done[0], len(items))

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(check, items))
    for ex, bad in zip(items, results):
        (report.bad.append(bad) if bad else report.examples.append(ex))
    _summarise(report, folder_classes)
    return report


def _summarise(report: ScanReport, folder_classes: list[str], label_task: Optional[str] = None) -> None:
    task = label_task or report.task
    counts: dict[str, int] = {c: 0 for c in folder_classes}
    for ex in report.examples:
        for lab in _labels_of(ex, task):
            counts[lab] = counts.get(lab, 0) + 1
    report.classes = sorted(counts)
    report.counts = {c: counts[c] for c in report.classes}
    report.empty_classes = [c for c, n in report.counts.items() if n == 0]
    nonzero = [n for n in report.counts.values() if n]
    if nonzero:
        report.imbalance = round(max(nonzero) / min(nonzero), 3)
        report.class_weights = class_weights({c: n for c, n in report.counts.items() if n})
    if report.imbalance >= 1.5:
        report.warnings.append(
            f"classes are imbalanced (largest/smallest = {report.imbalance}); class weights will be applied"
        )
    small = [c for c, n in report.counts.items() if 0 < n < 5]
    if small:
        report.warnings.append(f"very few examples (<5) for: {', '.join(small)}")
    if report.bad:
        report.warnings.append(f"{len(report.bad)} file(s) cannot be used and will be skipped")
