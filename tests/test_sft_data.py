"""Issue #11, first slice: prompt/response pairs, the ChatML template, loss masking and length buckets."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tlapp.base.errors import DataError
from tlapp.data.pairs import scan_pairs
from tlapp.model.chat import bucket_length, bucketed_batches, encode

START, END = 1, 2


def toy_tokenize(text: str) -> list[int]:
    """One token per character (ids from 10 on): enough to check positions exactly."""
    return [10 + ord(c) % 200 for c in text]


def test_jsonl_and_csv_pairs_with_every_problem_named_by_line(tmp_path):
    f = tmp_path / "pairs.jsonl"
    rows = [
        {"prompt": "Capital of France?", "response": "Paris."},
        {"prompt": "", "response": "x"},
        {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]},
        {"messages": [{"role": "user", "content": "Hi"}]},
        {"prompt": "Capital of France?", "response": "Paris."},
        {"messages": [{"role": "robot", "content": "?"}, {"role": "assistant", "content": "!"}]},
    ]
    f.write_text("\n".join(json.dumps(r) for r in rows) + "\n{broken\n")
    rep = scan_pairs(f)
    assert [p.line for p in rep.pairs] == [1, 3] and rep.pairs[1].prompt == "Hi"
    reasons = {p["line"]: p["reason"] for p in rep.problems}
    assert reasons[2] == "empty prompt" and "end with the assistant" in reasons[4]
    assert "role" in reasons[6] and "not valid JSON" in reasons[7]
    assert rep.duplicates == [[1, 5]]
    c = tmp_path / "pairs.csv"
    c.write_text('prompt,response\n"Two\nlines",yes\nq,\n')
    rep = scan_pairs(c)
    assert len(rep.pairs) == 1 and rep.pairs[0].prompt == "Two\nlines" and rep.problems[0]["reason"] == "empty response"
    with pytest.raises(DataError, match="need at least 2"):
        rep.require_usable()
    (tmp_path / "bad.csv").write_text("question,answer\na,b\n")
    with pytest.raises(DataError, match="missing prompt, response"):
        scan_pairs(tmp_path / "bad.csv")


def test_template_masks_everything_but_the_answer_and_its_end_token(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text(json.dumps({"prompt": "Q?", "response": "Ans"}) + "\n")
    pair = scan_pairs(f).pairs[0]
    e = encode(pair, toy_tokenize, START, END, max_len=100)
    prefix = [START, *toy_tokenize("user\nQ?"), END, *toy_tokenize("\n"), START, *toy_tokenize("assistant\n")]
    assert e.ids.tolist() == prefix + toy_tokenize("Ans") + [END]
    assert e.weights.tolist() == [0.0] * len(prefix) + [1.0] * 4  # "Ans" and <|im_end|>: learned; the prompt: 0
    short = encode(pair, toy_tokenize, START, END, max_len=12)
    assert short.truncated and len(short.ids) == 12 and short.weights[-4:].tolist() == [1.0] * 4
    assert encode(pair, toy_tokenize, START, END, max_len=12, truncate=False) is None


def test_batches_come_from_length_buckets_with_shifted_weights(tmp_path):
    f = tmp_path / "p.jsonl"
    f.write_text(
        "\n".join(json.dumps({"prompt": "q" * n, "response": "a" * (n % 7 + 1)}) for n in (1, 2, 3, 40, 41, 80)) + "\n"
    )
    enc = [encode(p, toy_tokenize, START, END, 200) for p in scan_pairs(f).pairs]
    batches = bucketed_batches(enc, batch_size=2, pad_id=0, seed=3)
    lengths = sorted(b["token_ids"].shape[1] for b in batches)
    assert set(lengths) <= {32, 64, 96, 128} and all(bucket_length(len(e.ids) - 1) in lengths for e in enc)
    assert sum(len(b["token_ids"]) for b in batches) == len(enc)
    for b in batches:
        for r in range(len(b["token_ids"])):
            n = int(b["padding_mask"][r].sum())
            assert (b["labels"][r, : n - 1] == b["token_ids"][r, 1:n]).all()  # the next token
            assert b["sample_weight"][r, n:].sum() == 0  # padding never counts
            assert b["sample_weight"][r].sum() > 0  # every example teaches its answer
    assert np.isclose(sum(b["sample_weight"].sum() for b in batches), sum(e.weights[1:].sum() for e in enc))
