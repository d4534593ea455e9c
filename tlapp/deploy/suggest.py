"""What to label next: rank unlabeled images or texts by how much labeling them would help.

Uncertainty alone picks twenty near-copies of the same confusing photo, so the
ranking mixes it with diversity: the ``POOL`` x n examples the model is least
sure of (smallest margin between its two most probable classes) are the
candidates, and k-center greedy on their embeddings (cosine distance) picks n of
them, the first the least sure, each next one the candidate farthest from those
already picked. The run's own exported model gives both the probabilities and
the embeddings (its ``features`` / ``encoder`` part): one backbone pass over the
unlabeled examples, with progress and cancel.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from tlapp.base.errors import Cancelled, DataError
from tlapp.data.imageio import IMAGE_EXTS, ImageProblem, load_rgb

POOL = 3  # candidates per suggestion, among the least certain
BATCH = 32


@dataclass
class Suggestions:
    items: list[dict[str, Any]]  # {path or text, predicted, margin, rank}
    skipped: list[dict[str, str]] = field(default_factory=list)  # {path, reason}: unreadable inputs, named
    unlabeled: int = 0


def margins(probs: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 probability per row: 0 is a coin toss between two classes, 1 is certainty."""
    top = np.sort(probs, axis=1)[:, ::-1]
    return top[:, 0] - (top[:, 1] if probs.shape[1] > 1 else 0.0)


def rank(probs: np.ndarray, feats: np.ndarray, n: int, pool: int = POOL) -> list[int]:
    """Indices of the n examples to label first: uncertain, and unlike each other (see the module doc)."""
    m = margins(probs)
    cand = np.argsort(m, kind="stable")[: max(n, pool * n)]
    unit = feats[cand] / np.maximum(np.linalg.norm(feats[cand], axis=1, keepdims=True), 1e-12)
    picked = [0]  # candidates are in order of uncertainty: the first is the least sure
    dist = 1.0 - unit @ unit[0]
    while len(picked) < min(n, len(cand)):
        dist[picked] = -np.inf
        nxt = int(np.argmax(dist))
        picked.append(nxt)
        dist = np.minimum(dist, 1.0 - unit @ unit[nxt])
    return [int(cand[i]) for i in picked]


def unlabeled_inputs(source: Path, text: bool) -> tuple[list[str], list[dict[str, str]]]:
    """Images in a folder (recursively), or texts: a .txt file (one a line) or a CSV's ``text`` column."""
    if not source.exists():
        raise DataError(f"{source}: no such file or folder")
    if not text:
        if not source.is_dir():
            raise DataError(f"{source}: expected a folder of images to suggest from")
        files = sorted(p for p in source.rglob("*") if p.is_file() and not p.name.startswith("."))
        good = [str(p) for p in files if p.suffix.lower() in IMAGE_EXTS]
        skipped = [{"path": str(p), "reason": "not an image tlapp reads"} for p in files if str(p) not in set(good)]
        return good, skipped
    if source.is_dir():
        raise DataError(f"{source}: expected a .txt (one text a line) or a CSV with a 'text' column")
    raw = source.read_text(encoding="utf-8", errors="replace")
    if source.suffix.lower() == ".csv":
        rows = list(csv.DictReader(raw.splitlines()))
        if rows and "text" not in rows[0]:
            raise DataError(f"{source}: no 'text' column (columns: {', '.join(rows[0])})")
        return [r["text"].strip() for r in rows if (r.get("text") or "").strip()], []
    return [line.strip() for line in raw.splitlines() if line.strip()], []


def suggest(
    run_dir: Path,
    source: Path,
    n: int = 20,
    progress: Optional[Callable[[int, int], None]] = None,
    should_stop: Optional[Callable[[], bool]] = None,
) -> Suggestions:
    """Load the run's export, embed and score the unlabeled examples, and rank them."""
    from tlapp.deploy.loading import load_parts

    if n < 1:
        raise DataError(f"--n must be at least 1, got {n}")
    if not Path(run_dir).is_dir():
        raise DataError(f"{run_dir}: no such run folder")
    export = Path(run_dir) / "export"
    parts = load_parts(export if export.is_dir() else Path(run_dir))  # a run, or its export folder
    if parts.task not in ("image_classification", "text_classification"):
        raise DataError(f"{run_dir}: suggestions are for single-label classification, not {parts.task}")
    text = parts.token_model is not None
    inputs, skipped = unlabeled_inputs(source, text)
    feats, probs, kept = _embed(parts, inputs, skipped, progress, should_stop)
    if not kept:
        raise DataError(f"{source}: no usable {'texts' if text else 'images'} to suggest from")
    m = margins(probs)
    items = []
    for r, i in enumerate(rank(probs, feats, n)):
        c = int(np.argmax(probs[i]))
        items.append(
            {"rank": r + 1, ("text" if text else "path"): kept[i], "predicted": parts.classes[c], "margin": float(m[i])}
        )
    return Suggestions(items, skipped, len(kept))


def _embed(
    parts: Any,
    inputs: list[str],
    skipped: list[dict[str, str]],
    progress: Optional[Callable[[int, int], None]],
    should_stop: Optional[Callable[[], bool]],
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    text = parts.token_model is not None
    if text:
        features, head = parts.token_model.get_layer("encoder"), parts.token_model.get_layer("head")
    else:
        from tlapp.model.image_model import single_pass

        one = single_pass(parts.model)  # a mirror-averaged model's margins would need two passes per image
        features, head = one.get_layer("features"), one.get_layer("head")
    feats, kept = [], []
    for start in range(0, len(inputs), BATCH):
        if should_stop is not None and should_stop():
            raise Cancelled(f"suggest cancelled after {start:,} of {len(inputs):,} examples")
        chunk = inputs[start : start + BATCH]
        if text:
            batch, ok = parts.preprocessor(np.array(chunk)), chunk
        else:
            arrays, ok = [], []
            for p in chunk:
                try:
                    arrays.append(load_rgb(p, (parts.size, parts.size)))
                    ok.append(p)
                except (ImageProblem, FileNotFoundError, OSError) as e:
                    skipped.append({"path": p, "reason": str(e)})
            if not arrays:
                continue
            batch = np.stack(arrays).astype(np.float32)
        feats.append(np.asarray(features(batch, training=False)))
        kept += ok
        if progress is not None:
            progress(min(start + BATCH, len(inputs)), len(inputs))
    if not feats:
        return np.zeros((0, 1)), np.zeros((0, 1)), []
    x = np.concatenate(feats)
    return x, np.asarray(head(x, training=False)), kept
