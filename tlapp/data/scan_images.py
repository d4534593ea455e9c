"""Scan a dataset before training: decode every file once and report.

Training uses the scan's list of good files, so a corrupt image is skipped
and listed, never a crash in the middle of an epoch. macOS debris
(``__MACOSX``, ``._*``) and hidden files/folders are ignored and counted.
"""

from __future__ import annotations

import csv
import io
import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Optional

from tlapp.base.errors import Cancelled, DataError
from tlapp.data.duplicates import duplicate_groups, fingerprint
from tlapp.data.examples import BadFile, Example, ScanReport, summarise
from tlapp.data.imageio import ImageProblem, load_rgb
from tlapp.data.scan_text import decode_bytes  # the one encoding rule (BOMs, UTF-16, latin-1)

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


def _outside(path: Path, root: Path) -> Optional[str]:
    """Why a symbolic link is not followed: only links that stay inside the data folder are."""
    if not path.is_symlink():
        return None
    try:
        target = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return "broken symbolic link"
    return None if target.is_relative_to(root) else f"symbolic link to {target}, outside the data folder"


def _list_folder(root: Path, report: ScanReport) -> tuple[list[Example], list[str]]:
    classes, items = [], []
    root = root.resolve()
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        why = _debris((d.name,)) or _outside(d, root)
        if why:
            report.ignored.append(BadFile(str(d), why))
            continue
        classes.append(d.name)
        for dirpath, dirnames, filenames in os.walk(d):  # does not descend into linked folders
            rel = Path(dirpath).relative_to(root).parts
            for fn in sorted(filenames):
                why = _debris(rel + (fn,)) or _outside(Path(dirpath) / fn, root)
                if why:
                    report.ignored.append(BadFile(str(Path(dirpath) / fn), why))
                else:
                    items.append(Example(str(Path(dirpath) / fn), d.name))
            for dn in dirnames:
                if (Path(dirpath) / dn).is_symlink():
                    report.ignored.append(BadFile(str(Path(dirpath) / dn), "symbolic link to a folder (not followed)"))
            dirnames[:] = sorted(dirnames)
    for f in sorted(p for p in root.iterdir() if p.is_file()):
        report.ignored.append(BadFile(str(f), _debris((f.name,)) or "file outside class folders"))
    return items, classes


def _parse_label(raw: str, task: str, where: str) -> Any:
    raw = raw.strip()
    if task == "regression":
        try:
            value = float(raw)
        except ValueError:
            raise DataError(f"{where}: label {raw!r} is not a number (task is regression)") from None
        if not math.isfinite(value):
            raise DataError(f"{where}: label {raw!r} is not a finite number (task is regression)")
        return value
    if task == "multi_label":
        return sorted({t.strip() for t in raw.split(";") if t.strip()})
    return raw


def _list_csv(path: Path, task: str, report: ScanReport) -> list[Example]:
    text, used = decode_bytes(path.read_bytes(), None, str(path))
    if used == "latin-1":
        report.warnings.append(f"{path}: not valid UTF-8; decoded as latin-1")
    reader = csv.reader(io.StringIO(text, newline=""))  # quoted fields may hold newlines
    rows = [(reader.line_num, row) for row in reader]
    if rows and [c.strip().lower() for c in rows[0][1][:2]] == ["path", "label"]:
        rows = rows[1:]
    items = []
    for i, row in rows:
        if not row or not any(c.strip() for c in row):
            continue
        if len(row) < 2 or not row[1].strip():
            col = "label (column 2)" if len(row) >= 2 else "column 2"
            raise DataError(f"{path}:row {i}: {col} is missing; expected 'path,label', got {','.join(row)!r}")
        p = Path(row[0].strip()).expanduser()
        if not p.is_absolute():
            p = path.parent / p
        items.append(Example(str(p), _parse_label(row[1], task, f"{path}:row {i}, label (column 2)")))
    return items


def scan(
    source: str | Path,
    task: str = "image_classification",
    workers: int = 4,
    progress: Optional[Progress] = None,
    should_stop: Optional[Callable[[], bool]] = None,
) -> ScanReport:
    """Decode every file of a folder-per-class tree or a ``path,label`` CSV."""
    source = Path(source).expanduser()
    if not source.exists():
        raise DataError(f"{source}: data path does not exist")
    kind = "folder" if source.is_dir() else "csv"
    report = ScanReport(str(source), kind, task)
    if kind == "folder":
        if task == "regression":
            raise DataError(
                f"{source}: regression needs a CSV of path,value (a folder per class is for classification)"
            )
        items, folder_classes = _list_folder(source, report)
    else:
        items, folder_classes = _list_csv(source, task, report), []
    done = [0]

    def check(ex: Example) -> Optional[BadFile]:
        if should_stop and should_stop():
            return BadFile(ex.path, "scan cancelled")
        try:
            rgb = load_rgb(ex.path)
            report.fingerprints[ex.path] = fingerprint(Path(ex.path), rgb)
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
    report.duplicates = duplicate_groups(report)
    if report.duplicates:
        conflicting = sum(1 for g in report.duplicates if len(set(map(str, g["labels"]))) > 1)
        report.warnings.append(
            f"{len(report.duplicates)} group(s) of duplicate images ({sum(len(g['paths']) for g in report.duplicates)} "
            f"files, exact or resized/recompressed copies)"
            + (f", {conflicting} with different labels" if conflicting else "")
            + "; see the scan report's duplicates"
        )
    return report
