"""Text data intake: CSV/TSV (or a folder of .txt files per class), scanned
before training.

Encoding: a BOM decides (UTF-8-BOM, UTF-16 LE/BE); otherwise strict UTF-8,
then latin-1 (which never fails), unless ``data.encoding`` names one. Quoted
newlines are handled by the csv module. Rows with empty text or a missing
label are reported by row number and skipped, never a crash at tokenisation.
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Optional

import numpy as np

from tlapp.base.errors import DataError
from tlapp.data.examples import BadFile, Example, ScanReport, summarise

MAX_TEXT_CHARS = 100_000  # longer rows are truncated (and reported): nobody classifies a book in one go
csv.field_size_limit(16 * 1024 * 1024)


def decode_bytes(raw: bytes, encoding: Optional[str], source: str) -> tuple[str, str]:
    """Return (text, encoding used)."""
    if encoding and encoding != "auto":
        try:
            return raw.decode(encoding), encoding
        except (UnicodeDecodeError, LookupError) as e:
            raise DataError(f"{source}: cannot decode as {encoding}: {e}") from None
    if raw.startswith(b"\xef\xbb\xbf"):
        return raw[3:].decode("utf-8", errors="replace"), "utf-8-sig"
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16"), "utf-16"
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return raw.decode("latin-1"), "latin-1"


def _delimiter(path: Path, sample: str) -> str:
    if path.suffix.lower() == ".tsv":
        return "\t"
    if path.suffix.lower() == ".csv":
        return ","
    first = sample.split("\n", 1)[0]
    return "\t" if first.count("\t") >= max(1, first.count(",")) else ","


def _columns(header: list[str], text_col: Optional[str], label_col: Optional[str]) -> Optional[tuple[int, int]]:
    low = [h.strip().lower() for h in header]
    want_t = (text_col or "text").lower()
    want_l = (label_col or "label").lower()
    if want_t in low and want_l in low:
        return low.index(want_t), low.index(want_l)
    return None


def read_table(
    path: Path, text_col: Optional[str], label_col: Optional[str], encoding: Optional[str], task: str
) -> ScanReport:
    raw = path.read_bytes()
    text, used = decode_bytes(raw, encoding, str(path))
    delim = _delimiter(path, text[:4096])
    # TSV files (SMS Spam Collection style) use no quoting: a leading '"' is part of the text.
    quoting = csv.QUOTE_NONE if delim == "\t" else csv.QUOTE_MINIMAL
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delim, quoting=quoting))
    report = ScanReport(str(path), "text", task)
    if not rows:
        raise DataError(f"{path}: no rows")
    cols = _columns(rows[0], text_col, label_col)
    if cols is None and (text_col or label_col):
        raise DataError(f"{path}: header {rows[0][:6]} has no column {text_col or 'text'!r} / {label_col or 'label'!r}")
    if cols is None:
        # No header: SMS-spam style "label<TAB>text" when the first field is short, else "text,label".
        first = rows[0]
        cols = (1, 0) if len(first) >= 2 and len(first[0]) <= 30 and len(first[1]) > len(first[0]) else (0, 1)
        start = 0
    else:
        start = 1
    ti, li = cols
    for i, row in enumerate(rows[start:], start=1 + start):
        where = f"{path}:row {i}"
        if not row or all(not c.strip() for c in row):
            continue
        txt = row[ti].strip() if len(row) > ti else ""
        lab = row[li].strip() if len(row) > li else ""
        if not lab:
            report.bad.append(BadFile(where, f"missing label (column {li + 1})"))
            continue
        if not txt:
            report.bad.append(BadFile(where, f"empty text (column {ti + 1})"))
            continue
        if len(txt) > MAX_TEXT_CHARS:
            report.warnings.append(f"{where}: text of {len(txt):,} characters truncated to {MAX_TEXT_CHARS:,}")
            txt = txt[:MAX_TEXT_CHARS]
        label = sorted({t.strip() for t in lab.split(";") if t.strip()}) if task == "text_multi_label" else lab
        report.examples.append(Example(f"{path}#{i}", label, text=txt))
    if used == "latin-1":
        report.warnings.append(f"{path}: not valid UTF-8; decoded as latin-1")
    return report


def read_folder(root: Path, task: str) -> ScanReport:
    report = ScanReport(str(root), "text", task)
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith((".", "__MACOSX"))):
        for f in sorted(d.rglob("*.txt")):
            if f.name.startswith("."):
                report.ignored.append(BadFile(str(f), "hidden file"))
                continue
            txt, _ = decode_bytes(f.read_bytes(), None, str(f))
            if not txt.strip():
                report.bad.append(BadFile(str(f), "empty text"))
            else:
                report.examples.append(Example(str(f), d.name, text=txt.strip()[:MAX_TEXT_CHARS]))
    return report


def length_stats(texts: list[str]) -> dict:
    """Word counts and a suggested sequence length (word pieces ~ 1.3 x words, p95, power of two)."""
    if not texts:
        return {}
    words = np.array([len(t.split()) for t in texts])
    p95 = float(np.percentile(words, 95))
    suggest = int(min(512, max(16, 2 ** math.ceil(math.log2(max(p95 * 1.3 + 2, 2))))))
    hist, edges = np.histogram(words, bins=min(30, max(1, int(words.max()))))
    return {
        "mean_words": float(words.mean()),
        "p50_words": float(np.median(words)),
        "p95_words": p95,
        "max_words": int(words.max()),
        "suggested_sequence_length": suggest,
        "histogram": {"counts": hist.tolist(), "edges": edges.tolist()},
    }


def scan_text(
    source: Path,
    task: str,
    text_col: Optional[str] = None,
    label_col: Optional[str] = None,
    encoding: Optional[str] = None,
) -> ScanReport:
    source = Path(source).expanduser()
    if not source.exists():
        raise DataError(f"{source}: data path does not exist")
    report = read_folder(source, task) if source.is_dir() else read_table(source, text_col, label_col, encoding, task)
    summarise(report, [], label_task="multi_label" if task == "text_multi_label" else "image_classification")
    report.lengths = length_stats([e.text or "" for e in report.examples])
    seen: dict[str, int] = {}
    for e in report.examples:
        seen[e.text or ""] = seen.get(e.text or "", 0) + 1
    dups = sum(n - 1 for n in seen.values() if n > 1)
    if dups:
        report.warnings.append(f"{dups} duplicate text(s) in the data; copies are kept together in one split")
    return report
