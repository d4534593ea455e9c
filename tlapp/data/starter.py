"""A new project for a dataset, with the defaults that fit its task — the one
rule behind ``tlapp init`` and the wizard's "new project".
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

from tlapp.base.errors import DataError
from tlapp.config import (
    DEFAULT_IMAGE_BACKBONE,
    DEFAULT_LM_BACKBONE,
    DEFAULT_TEXT_BACKBONE,
    Project,
    TaskType,
    project_from_dict,
)
from tlapp.data.examples import ScanReport
from tlapp.data.imageio import IMAGE_EXTS
from tlapp.data.preferences import looks_like_triples, scan_lm_file
from tlapp.presets import with_proposed_phases

MAX_DEFAULT_SEQUENCE = 256  # longer default sequences cost more than they add for classification


PAIRS_EXTS = (".jsonl", ".ndjson")
SFT_BATCH = 4  # a causal LM step on 2 CPUs: 4 x 128 tokens take ~3 s; 32 would take minutes and gigabytes


def source_kind(path: Path, task: Optional[TaskType] = None) -> str:
    """'folder' for a directory of class folders, 'pairs' for prompt/response pairs, 'csv' for a file."""
    if (task is not None and task.is_generative) or (task is None and Path(path).suffix.lower() in PAIRS_EXTS):
        return "pairs"
    return "folder" if Path(path).is_dir() else "csv"


def guess_task(path: Path) -> TaskType:
    """Images or texts, from a quick look (what a dropped folder or file most likely is).

    A folder whose class folders hold more ``.txt`` files than images is text; a
    table whose header names a path/file/image column, or whose first field is an
    image file name, lists images; any other table is text.
    """
    path = Path(path)
    if path.suffix.lower() in PAIRS_EXTS:
        return TaskType.dpo if looks_like_triples(path) else TaskType.sft
    if path.is_dir():
        images = texts = 0
        for i, f in enumerate(p for p in path.rglob("*") if p.is_file()):
            ext = f.suffix.lower()
            images += ext in IMAGE_EXTS
            texts += ext == ".txt"
            if i >= 400:
                break
        return TaskType.text_classification if texts > images else TaskType.image_classification
    try:
        head = path.read_bytes()[:4096].decode("utf-8", "replace")
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    first = head.splitlines()[0] if head else ""
    fields = [f.strip().strip('"').lower() for f in first.replace("\t", ",").split(",")]
    if {"prompt", "chosen", "rejected"} <= set(fields):
        return TaskType.dpo
    if {"prompt", "response"} <= set(fields):
        return TaskType.sft
    if set(fields) & {"path", "file", "filename", "image", "image_path"} or (
        fields and Path(fields[0]).suffix in IMAGE_EXTS
    ):
        return TaskType.image_classification
    return TaskType.text_classification


def retarget(project: Project, kind: str) -> Project:
    """``project`` for another kind of data ("image", "text", "pairs" or "triples"): that kind's task, default backbone
    and proposed plan, keeping the name and the data section (the wizard's Data step when the kind changes:
    an image plan must not train a text model)."""
    task = {
        "pairs": TaskType.sft,
        "triples": TaskType.dpo,
        "text": TaskType.text_classification,
        "image": TaskType.image_classification,
    }[kind]
    return starter_project(project.name, task, project.data.model_dump(mode="json"))


def data_section(data: str, project_file: Path, task: Optional[TaskType] = None, **extra: Any) -> dict[str, Any]:
    """The ``data`` section for a path (stored relative to the project file) or ``tfds:NAME``."""
    if data.startswith("tfds:"):
        return {"source": "tfds", "tfds_name": data[5:], **extra}
    p = Path(data).expanduser().resolve()
    rel = os.path.relpath(p, Path(project_file).resolve().parent)
    return {"source": source_kind(p, task), "path": rel, **extra}


def starter_project(
    name: str,
    task: TaskType,
    data: dict[str, Any],
    report: Optional[ScanReport] = None,
    backbone: Optional[str] = None,
    image_size: Optional[int] = None,
    sequence_length: Optional[int] = None,
    n_pairs: Optional[int] = None,
) -> Project:
    """A valid project: the task's default backbone, for text a sequence length from the scan, and the
    default preset's proposed phases written out."""
    if task.is_generative:
        if n_pairs is None:  # epochs follow the number of pairs (a few need many passes)
            try:
                n_pairs = len(scan_lm_file(data.get("path") or "", task).pairs)
            except DataError:
                n_pairs = None
        n_train = round((1 - data.get("val_fraction", 0.2)) * (n_pairs or 100))
        return with_proposed_phases(
            project_from_dict(
                {
                    "name": name,
                    "task": {"type": task.value},
                    "data": data,
                    "backbone": {
                        "name": backbone or DEFAULT_LM_BACKBONE,
                        "weights": "pretrained",
                        "sequence_length": sequence_length,
                    },
                    "train": {"batch_size": SFT_BATCH, "preset": "balanced"},
                },
                "init",
            ),
            n_train,
        )
    if task.is_text:
        seq = None
        if report is not None and report.lengths:
            seq = min(report.lengths.get("suggested_sequence_length", 128), MAX_DEFAULT_SEQUENCE)
        bb = {"name": backbone or DEFAULT_TEXT_BACKBONE, "weights": "pretrained", "sequence_length": seq}
    else:
        bb = {"name": backbone or DEFAULT_IMAGE_BACKBONE, "image_size": image_size}
    n_train = round(len(report.examples) * 0.8) if report is not None else 0
    return with_proposed_phases(
        project_from_dict({"name": name, "task": {"type": task.value}, "data": data, "backbone": bb}, "init"), n_train
    )
