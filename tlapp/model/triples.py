"""Preference triples as token ids (issue #24): encodings, token counts and batches; no TensorFlow
(the Data step and ``tlapp scan`` count tokens with it).

A batch holds B triples as ``[B, 2, L]`` arrays (row 0 the chosen answer, row 1 the rejected one,
both after the same prompt), so splitting a batch between replicas keeps each pair together. A
triple's answers are padded to the bucket of the longer one, so its padding never changes between
epochs and the reference log-probs computed once stay exact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from tlapp.data.preferences import Triple
from tlapp.model.chat import BUCKET, Encoded, bucket_length, encode, padded_rows, prompt_ids, token_report


@dataclass(frozen=True)
class EncodedTriple:
    chosen: Encoded
    rejected: Encoded
    line: int

    @property
    def tokens(self) -> np.ndarray:
        """Answer tokens (and end token) of chosen and rejected: what a log-probability sums over."""
        return np.asarray([self.chosen.weights.sum(), self.rejected.weights.sum()], np.float32)


def encode_triples(
    triples: Sequence[Triple], tokenizer: Any, max_len: int, truncate: bool, system: str = ""
) -> list[Optional[EncodedTriple]]:
    """Both conversations of each triple (None where either is too long and ``truncate`` is false)."""
    out: list[Optional[EncodedTriple]] = []
    for t in triples:
        c, r = (
            encode(pair, tokenizer.encode, tokenizer.start_id, tokenizer.end_id, max_len, truncate, system)
            for pair in (t.as_chosen, t.as_rejected)
        )
        out.append(EncodedTriple(c, r, t.line) if c is not None and r is not None else None)
    return out


def triple_token_report(
    triples: Sequence[Triple], encoded: Sequence[Optional[EncodedTriple]], tokenizer: Any, max_len: int, system: str
) -> dict[str, Any]:
    """Token lengths of prompt, chosen and rejected, the longer conversation's histogram, and the triples
    over ``max_len`` by line (the SFT scan's report, per part)."""
    tok = tokenizer
    longest: list[Optional[Encoded]] = []
    for e in encoded:
        longest.append(None if e is None else max((e.chosen, e.rejected), key=lambda x: x.full_length))
        if e is not None and (e.chosen.truncated or e.rejected.truncated):
            longest[-1] = Encoded(longest[-1].ids, longest[-1].weights, e.line, True, longest[-1].full_length)
    out = token_report(longest, [t.as_chosen for t in triples], max_len)
    parts = {
        "prompt": [len(prompt_ids(t.messages, tok.encode, tok.start_id, tok.end_id, system)) for t in triples],
        "chosen": [len(tok.encode(t.chosen)) + 1 for t in triples],
        "rejected": [len(tok.encode(t.rejected)) + 1 for t in triples],
    }
    for k, v in parts.items():
        out[k] = {"min": min(v), "median": int(np.median(v)), "max": max(v)} if v else {}
    return out


def preference_batches(
    items: Sequence[EncodedTriple],
    batch_size: int,
    pad_id: int,
    reference: dict[int, Sequence[float]],
    seed: int = 0,
    step: int = BUCKET,
) -> list[dict[str, np.ndarray]]:
    """Batches of triples grouped by the bucket of their longer answer, shuffled by ``seed``.

    Each batch: ``token_ids``/``padding_mask``/``labels``/``sample_weight`` ``[B, 2, L]``, ``reference``
    ``[B, 2]`` (the reference model's log-probs, zeros when not yet known), ``tokens`` ``[B, 2]`` and
    ``line`` ``[B]``. A triple always lands in the same bucket, so its padding never changes.
    """
    rng = np.random.default_rng(seed)
    by: dict[int, list[EncodedTriple]] = {}
    for it in items:
        n = max(len(it.chosen.ids), len(it.rejected.ids)) - 1
        by.setdefault(bucket_length(n, step), []).append(it)
    batches = []
    for length, group in sorted(by.items()):
        order = rng.permutation(len(group))
        for s in range(0, len(group), batch_size):
            chunk = [group[i] for i in order[s : s + batch_size]]
            rows = padded_rows([e for t in chunk for e in (t.chosen, t.rejected)], length, pad_id)
            batch = {k: v.reshape(len(chunk), 2, length) for k, v in rows.items()}
            batch["reference"] = np.asarray([reference.get(t.line, (0.0, 0.0)) for t in chunk], np.float32)
            batch["tokens"] = np.stack([t.tokens for t in chunk])
            batch["line"] = np.asarray([t.line for t in chunk], np.int32)
            batches.append(batch)
    return [batches[i] for i in rng.permutation(len(batches))]


def preference_hits(logps: np.ndarray, tokens: np.ndarray) -> float:
    """How many pairs' chosen answer has the higher mean log-prob per token."""
    per = np.asarray(logps) / np.maximum(np.asarray(tokens), 1.0)
    return float(np.sum(per[:, 0] > per[:, 1]))


def preference_accuracy(reference: dict[int, Sequence[float]], items: Sequence[EncodedTriple]) -> Optional[float]:
    """The reference (starting) model's preference accuracy on ``items``, from the stored log-probs."""
    rows = [(reference[t.line], t.tokens) for t in items if t.line in reference]
    if not rows:
        return None
    return preference_hits(np.asarray([r for r, _ in rows]), np.asarray([n for _, n in rows])) / len(rows)
