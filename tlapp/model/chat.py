"""ChatML conversations as token ids with a loss mask, and length buckets (issue #11).

A pair becomes ``<|im_start|>user\\n{prompt}<|im_end|>\\n<|im_start|>assistant\\n{response}<|im_end|>``
(SmolLM2's chat template; earlier system/user/assistant turns come first the same way). The model
learns only the response and its end token: every other position gets weight 0, so the loss
never rewards reproducing the user's words. Each distinct sequence length costs another graph
trace (~27 s for SmolLM2 on 2 CPUs), so batches are formed within length buckets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np

from tlapp.data.pairs import Pair

BUCKET = 32  # tokens: lengths are rounded up to a multiple of this


@dataclass(frozen=True)
class Encoded:
    ids: np.ndarray  # int32 [n]
    weights: np.ndarray  # float32 [n]: 1 where the token is to be learned (response + end)
    line: int
    truncated: bool = False
    full_length: int = 0  # tokens before truncation


def prompt_ids(
    messages: Sequence[tuple[str, str]],
    tokenize: Callable[[str], Sequence[int]],
    start_id: int,
    end_id: int,
    system: str = "",
) -> list[int]:
    """The turns and the assistant header that asks for the answer (what generation starts from).

    ``system``: the model's default system prompt, added when the conversation has none (SmolLM2's
    template does the same, so training and chatting see the prompt the model was tuned with)."""
    if system and not any(r == "system" for r, _ in messages):
        messages = [("system", system), *messages]
    newline = list(tokenize("\n"))
    prefix: list[int] = []
    for role, content in messages:
        prefix += [start_id, *tokenize(f"{role}\n{content}"), end_id, *newline]
    return prefix + [start_id, *tokenize("assistant\n")]


def encode(
    pair: Pair,
    tokenize: Callable[[str], Sequence[int]],
    start_id: int,
    end_id: int,
    max_len: int,
    truncate: bool = True,
    system: str = "",
) -> Optional[Encoded]:
    """Token ids and loss weights of one pair, at most ``max_len`` tokens; None when it is longer and
    ``truncate`` is false. Truncation drops the oldest prompt tokens first (the answer is what is
    learned), then the answer's tail."""
    prefix = prompt_ids(pair.messages, tokenize, start_id, end_id, system)
    target = [*tokenize(pair.response), end_id]
    ids, weights = prefix + target, [0.0] * len(prefix) + [1.0] * len(target)
    full, cut = len(ids), len(ids) > max_len
    if cut and not truncate:
        return None
    if cut:
        over = len(ids) - max_len
        drop = min(over, max(len(prefix) - 2, 0))  # keep at least the assistant header's last tokens
        ids, weights = ids[drop:], weights[drop:]
        ids, weights = ids[:max_len], weights[:max_len]
    return Encoded(np.asarray(ids, np.int32), np.asarray(weights, np.float32), pair.line, cut, full)


def bucket_length(n: int, step: int = BUCKET) -> int:
    return max(step, -(-n // step) * step)


def bucketed_batches(
    items: list[Encoded], batch_size: int, pad_id: int, seed: int = 0, step: int = BUCKET
) -> list[dict[str, np.ndarray]]:
    """Batches of next-token examples, padded to their bucket's length; order shuffled by ``seed``.

    Each batch has ``token_ids``/``padding_mask`` (inputs), ``labels`` (the next token) and
    ``sample_weight`` (the loss mask shifted with the labels; padding weighs 0).
    """
    rng = np.random.default_rng(seed)
    by: dict[int, list[Encoded]] = {}
    for it in items:
        by.setdefault(bucket_length(len(it.ids) - 1, step), []).append(it)
    batches = []
    for length, group in sorted(by.items()):
        order = rng.permutation(len(group))
        for s in range(0, len(group), batch_size):
            batches.append(padded_rows([group[i] for i in order[s : s + batch_size]], length, pad_id))
    return [batches[i] for i in rng.permutation(len(batches))]


def padded_rows(items: Sequence[Encoded], length: int, pad_id: int) -> dict[str, np.ndarray]:
    """Next-token rows of ``items``, padded to ``length``: inputs, labels (shifted by one) and loss weights."""
    ids = np.full((len(items), length), pad_id, np.int32)
    labels = np.full((len(items), length), pad_id, np.int32)
    mask = np.zeros((len(items), length), bool)
    weight = np.zeros((len(items), length), np.float32)
    for r, it in enumerate(items):
        n = len(it.ids) - 1
        ids[r, :n], labels[r, :n], mask[r, :n] = it.ids[:-1], it.ids[1:], True
        weight[r, :n] = it.weights[1:]
    return {"token_ids": ids, "padding_mask": mask, "labels": labels, "sample_weight": weight}


def suggest_length(
    pairs: Sequence[Pair],
    tokenize: Callable[[str], Sequence[int]],
    start_id: int,
    end_id: int,
    system: str = "",
    most: int = 1024,
) -> int:
    """A sequence length that holds 95% of the conversations whole (a multiple of BUCKET, 64 to ``most``):
    longer only costs time on the few that need it; shorter truncates many."""
    lengths = sorted(
        e.full_length
        for e in (encode(p, tokenize, start_id, end_id, 10**9, system=system) for p in pairs)
        if e is not None
    )
    if not lengths:
        return 256
    p95 = lengths[min(len(lengths) - 1, int(0.95 * len(lengths)))]
    return int(min(max(bucket_length(p95), 64), most))


def token_report(items: list[Optional[Encoded]], pairs: list[Pair], max_len: int) -> dict[str, Any]:
    """Token lengths (a histogram in 32-token bins) and the pairs over the limit, by line."""
    full = [e.full_length for e in items if e is not None]
    over = [p.line for p, e in zip(pairs, items) if e is None or e.truncated]
    hist: dict[str, int] = {}
    for n in full:
        lo = (n - 1) // BUCKET * BUCKET
        key = f"{lo + 1}-{lo + BUCKET}"
        hist[key] = hist.get(key, 0) + 1
    return {
        "max_tokens": max_len,
        "min": min(full, default=0),
        "median": int(np.median(full)) if full else 0,
        "max": max(full, default=0),
        "histogram": hist,
        "over_limit_lines": over,
    }


def encode_all(
    pairs: Sequence[Pair], tokenizer: Any, max_len: int, truncate: bool, system: str = ""
) -> list[Optional[Encoded]]:
    """Every pair through :func:`encode` with a model tokenizer (``encode``, ``start_id``, ``end_id``)."""
    return [encode(p, tokenizer.encode, tokenizer.start_id, tokenizer.end_id, max_len, truncate, system) for p in pairs]
