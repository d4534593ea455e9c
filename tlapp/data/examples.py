"""The shared data types: an example, an unusable file, and a scan report.

Image and text intake both produce a :class:`ScanReport`; training, the CLI and
the GUI read only this type, never the scanners' internals.
"""

from __future__ import annotations

import unicodedata
from dataclasses import asdict, dataclass, field
from typing import Any, Optional, Union

from tlapp.base.errors import DataError

Label = Union[str, list[str], float]


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
    # Images: path -> (sha256 of the bytes, difference hash of the picture), for duplicate checks.
    fingerprints: dict[str, tuple[str, str]] = field(default_factory=dict)
    duplicates: list[dict[str, Any]] = field(default_factory=list)  # groups of exact / near-duplicate files

    def as_dict(self, with_examples: bool = False) -> dict[str, Any]:
        d = asdict(self)
        d.pop("fingerprints")  # one line per file: only the duplicate groups are worth writing down
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
        for group in name_clashes(self.classes):
            raise DataError(
                f"{self.source}: classes {' and '.join(repr(c) for c in group)} differ only in letter "
                "case or Unicode form; merge or rename them (they would be two classes)"
            )
        for c in self.classes:
            if any(ch in c for ch in "\n\r\0"):
                raise DataError(f"{self.source}: class name {c!r} contains a line break or NUL; rename it")


def name_clashes(classes: list[str]) -> list[list[str]]:
    """Groups of class names equal after Unicode NFC normalisation and case folding ('Cat', 'cat')."""
    groups: dict[str, list[str]] = {}
    for c in classes:
        groups.setdefault(unicodedata.normalize("NFC", c).casefold().strip(), []).append(c)
    return [g for g in groups.values() if len(g) > 1]


def labels_of(ex: Example, task: str) -> list[str]:
    if task == "regression":
        return []
    return ex.label if isinstance(ex.label, list) else [ex.label]


def class_weights(counts: dict[str, int]) -> dict[str, float]:
    """Balanced weights n_total / (n_classes * n_c), as scikit-learn's 'balanced'."""
    total, k = sum(counts.values()), len(counts)
    return {c: round(total / (k * n), 4) for c, n in counts.items() if n}


def summarise(report: ScanReport, folder_classes: list[str], label_task: Optional[str] = None) -> None:
    task = label_task or report.task
    counts: dict[str, int] = {c: 0 for c in folder_classes}
    for ex in report.examples:
        for lab in labels_of(ex, task):
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
            f"classes are imbalanced (largest/smallest = {report.imbalance}); class weights are used by custom "
            "phases, and by the recipe when cross-validation says they help"
        )
    small = [c for c, n in report.counts.items() if 0 < n < 5]
    if small:
        report.warnings.append(f"very few examples (<5) for: {', '.join(small)}")
    single = [c for c, n in report.counts.items() if n == 1]
    if single:
        report.warnings.append(
            f"class(es) with one example cannot be validated (it always trains): {', '.join(single)}"
        )
    if report.bad:
        report.warnings.append(f"{len(report.bad)} file(s) cannot be used and will be skipped")
