"""Backbone leaderboard (``tlapp compare``): which backbone suits *this* data, from evidence.

Each candidate embeds the project's examples once (the same cache training uses), fits the
linear head by cross-validation exactly as the default recipe does, and is ranked by its
out-of-fold score, then by measured latency. It is the recipe's own first step, so the ranking
predicts what training would give a head on that backbone; a fine-tune can only add to it.
Results are kept per backbone and data hash: asking again is instant.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from tlapp.backbones.catalog import get_entry
from tlapp.backbones.speed import cached_latency, measure_latency
from tlapp.backbones.weights import offline_status
from tlapp.base.errors import ConfigError, TlappError
from tlapp.base.fsutil import atomic_write_text
from tlapp.base.paths import store_dir
from tlapp.config import Backbone, Project
from tlapp.data.examples import Example
from tlapp.data.labels import LabelEncoder
from tlapp.data.sources import scan_project
from tlapp.training import embcache
from tlapp.training.linear_head import choose_folds, cross_validate, ranking

BATCH = 32


@dataclass
class Row:
    backbone: str  # the spec as given, e.g. "mobilenet_v2@128:alpha=0.35"
    name: str
    image_size: int
    params_m: float  # of the backbone as built (a MobileNet's alpha changes it)
    score: Optional[float] = None  # out-of-fold accuracy (R² for regression)
    loss: Optional[float] = None
    folds: int = 0
    n: int = 0
    ms_per_image: Optional[float] = None
    seconds: float = 0.0
    cached: bool = False
    skipped: str = ""  # why this candidate was not scored


def parse_spec(spec: str, project: Project) -> Backbone:
    """``name[@size][:key=value...]`` (e.g. ``mobilenet_v2@128:alpha=0.35``) as a backbone setting."""
    head, *opts = spec.strip().split(":")
    name, _, size = head.partition("@")
    options: dict[str, Any] = {}
    for o in opts:
        k, eq, v = o.partition("=")
        if not eq or not k:
            raise ConfigError(f"--backbones: {spec!r}: options are key=value (e.g. {name}:alpha=0.35)")
        try:
            options[k] = json.loads(v)
        except ValueError:
            options[k] = v
    get_entry(name)  # an unknown name: BackboneError with the close matches
    if size and not size.isdigit():
        raise ConfigError(f"--backbones: {spec!r}: the size after @ must be a whole number of pixels")
    base = project.backbone.model_dump()
    return Backbone.model_validate(
        {**base, "name": name, "image_size": int(size) if size else None, "options": options, "weights": "imagenet"}
    )


def sample(examples: list[Example], per_class: Optional[int], seed: int, single_label: bool) -> list[Example]:
    """At most ``per_class`` examples of each class (a seeded draw), all of them without a cap."""
    if not per_class or not single_label:
        return list(examples)
    rng = np.random.default_rng(seed)
    by: dict[str, list[Example]] = {}
    for e in examples:
        by.setdefault(str(e.label), []).append(e)
    out: list[Example] = []
    for label in sorted(by):
        group = by[label]
        out += [group[i] for i in sorted(rng.permutation(len(group))[:per_class])]
    return out


def compare(
    project: Project,
    specs: list[str],
    per_class: Optional[int] = None,
    project_file: Optional[Path] = None,
    on_row: Optional[Callable[[Row], None]] = None,
    should_stop: Optional[Callable[[], bool]] = None,
) -> list[Row]:
    """Score every backbone in ``specs`` on the project's data; rows ranked best first (skipped last)."""
    if not specs:
        raise ConfigError("--backbones: name at least one backbone")
    task = project.task.type
    report = scan_project(project, project_file, should_stop=should_stop)
    examples = sample(report.examples, per_class, project.data.seed, task.is_single_label)
    if len(examples) < 4:
        raise TlappError(f"{report.source}: {len(examples)} usable examples; comparing backbones needs at least 4")
    encoder = LabelEncoder(task, report.classes)
    y = encoder.encode_all(examples)
    units = 1 if task.value == "regression" else len(report.classes)
    folds = choose_folds(y, task)
    rows = []
    for spec in specs:
        row = _score(project, spec, examples, encoder, y, units, folds, should_stop)
        rows.append(row)
        if on_row:
            on_row(row)
    return sorted(rows, key=lambda r: (r.skipped != "", *ranking(r.score or 0.0, r.loss or 0.0), r.ms_per_image or 0.0))


def _score(
    project: Project,
    spec: str,
    examples: list[Example],
    encoder: LabelEncoder,
    y: np.ndarray,
    units: int,
    folds: int,
    should_stop: Optional[Callable[[], bool]],
) -> Row:
    cfg = parse_spec(spec, project)
    entry = get_entry(cfg.name)
    size = cfg.image_size or entry.default_size
    row = Row(spec, entry.name, size, entry.params_m, n=len(examples), folds=folds)
    if (entry.modality == "text") != project.task.type.is_text:
        row.skipped = (
            f"a {entry.modality} backbone; this project is {'text' if project.task.type.is_text else 'images'}"
        )
        return row
    if not offline_status(entry.name, size, cfg.options):
        row.skipped = "no weights on this machine (see `tlapp weights list`)"
        return row
    p = project.model_copy(update={"backbone": cfg.model_copy(update={"image_size": size})})
    t0 = time.time()
    asm = _build(p, len(encoder.classes))
    row.params_m = round(asm.backbone.model.count_params() / 1e6, 2)  # as built: alpha and size included
    key = embcache.cache_key(examples, embcache.identity(asm, p))
    board = store_dir("cache", "compare") / f"{key}.json"
    if board.is_file():
        saved = json.loads(board.read_text())
        row.score, row.loss, row.cached = saved["score"], saved["loss"], True
    else:
        x, _ = embcache.rows(
            examples,
            embcache.identity(asm, p),
            store_dir("cache", "embeddings"),
            lambda todo: embcache.pass_over(
                asm, p, todo, encoder, BATCH, asm.features.predict_on_batch, should_stop=should_stop
            )(),
        )
        cv = cross_validate(x, y, p.task.type, units, folds=folds, seed=p.train.seed)
        row.score, row.loss = float(cv.score), float(cv.loss)
        atomic_write_text(
            board,
            json.dumps({"score": row.score, "loss": row.loss, "folds": folds, "n": len(x), "l2": cv.l2, "spec": spec}),
        )
    row.ms_per_image = cached_latency(entry.name, size) or round(measure_latency(p.backbone), 2)
    row.seconds = round(time.time() - t0, 1)
    return row


def _build(project: Project, n_classes: int) -> Any:
    if project.task.type.is_text:
        from tlapp.model.text_model import build_text_model

        return build_text_model(project, n_classes)
    from tlapp.model.image_model import build_model

    return build_model(project, n_classes)


def as_dicts(rows: list[Row]) -> list[dict[str, Any]]:
    return [{"rank": i + 1 if not r.skipped else None, **asdict(r)} for i, r in enumerate(rows)]
