"""Scan a dataset before training: decode every file once and report.

Training uses the scan's list of good files, so a corrupt image is skipped
and listed, never a crash in the middle of an epoch. macOS debris
(``__MACOSX``, ``._*``) and hidden files/folders are ignored and counted.
"""
from __future__ import annotations

import csv
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Optional

from tlapp.base.errors import Cancelled, DataError
from tlapp.data.examples import BadFile, Example, ScanReport, summarise
from tlapp.data.imageio import ImageProblem, load_rgb

Progress = Callable[[int, int], None]


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
    if should_stop and should_stop():
        raise Cancelled(f"{source}: scan cancelled after {done[0]:,} of {len(items):,} files")
    for ex, bad in zip(items, results):
        (report.bad.append(bad) if bad else report.examples.append(ex))
    summarise(report, folder_classes)
    return report


