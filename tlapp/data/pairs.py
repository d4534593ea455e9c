"""Prompt → response pairs for supervised fine-tuning of a causal language model (issue #11).

Read from JSONL (``{"prompt", "response"}`` per line, or chat form ``{"messages": [{"role",
"content"}, ...]}``) or CSV/TSV with ``prompt`` and ``response`` columns. The scan keeps every
usable pair and names every unusable one by line: empty fields, unknown roles, a chat that does
not end with the assistant, and duplicates (the same prompt and response again, which would
count twice in the loss and leak between splits).
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from tlapp.base.errors import DataError
from tlapp.data.scan_text import decode_bytes

ROLES = ("system", "user", "assistant")
MAX_FILE_BYTES = 512 * 2**20


@dataclass(frozen=True)
class Pair:
    """One training conversation: the turns before the answer, and the answer the model learns."""

    messages: tuple[tuple[str, str], ...]  # (role, content) up to and excluding the answer
    response: str
    line: int  # where it came from (1-based), for every message about it

    @property
    def prompt(self) -> str:
        return next((c for r, c in reversed(self.messages) if r == "user"), "")


@dataclass
class PairsReport:
    source: str
    pairs: list[Pair] = field(default_factory=list)
    problems: list[dict[str, Any]] = field(default_factory=list)  # {"line", "reason"}
    duplicates: list[list[int]] = field(default_factory=list)  # line numbers of each repeated pair
    chars: dict[str, Any] = field(default_factory=dict)  # length distribution (prompt + response)
    tokens: dict[str, Any] = field(default_factory=dict)  # token lengths, once a tokenizer counted them
    kind: str = "pairs"

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("pairs")
        d["n_pairs"], d["n_problems"] = len(self.pairs), len(self.problems)
        return d

    def require_usable(self, least: int = 2) -> None:
        if len(self.pairs) < least:
            first = (
                f"; first problem: line {self.problems[0]['line']}: {self.problems[0]['reason']}"
                if self.problems
                else ""
            )
            raise DataError(
                f"{self.source}: {len(self.pairs)} usable prompt/response pair(s), need at least {least}{first}"
            )


def _from_record(rec: Any, line: int) -> tuple[Optional[Pair], Optional[str]]:
    if not isinstance(rec, dict):
        return None, "not a JSON object"
    if "messages" in rec:
        msgs = rec["messages"]
        if not isinstance(msgs, list) or not msgs:
            return None, "'messages' must be a non-empty list"
        turns = []
        for i, m in enumerate(msgs):
            if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
                return None, f"message {i + 1}: needs 'role' (one of {', '.join(ROLES)}) and text 'content'"
            if not m["content"].strip():
                return None, f"message {i + 1} ({m['role']}): empty content"
            turns.append((m["role"], m["content"]))
        if turns[-1][0] != "assistant":
            return None, "the conversation must end with the assistant's answer (the text to learn)"
        if not any(r == "user" for r, _ in turns[:-1]):
            return None, "no user message before the answer"
        return Pair(tuple(turns[:-1]), turns[-1][1], line), None
    prompt, response = rec.get("prompt"), rec.get("response")
    if not isinstance(prompt, str) or not isinstance(response, str):
        return None, "needs text fields 'prompt' and 'response' (or 'messages')"
    if not prompt.strip():
        return None, "empty prompt"
    if not response.strip():
        return None, "empty response"
    return Pair((("user", prompt),), response, line), None


def records(path: Path, columns: tuple[str, ...] = ("prompt", "response")) -> list[tuple[int, Any, Optional[str]]]:
    """(line, record, parse error) for a JSONL file or the rows of a CSV/TSV (which must have ``columns``)."""
    data = path.read_bytes()
    if len(data) > MAX_FILE_BYTES:
        raise DataError(f"{path}: {len(data) / 2**20:.0f} MB is over the {MAX_FILE_BYTES // 2**20} MB limit for pairs")
    text, _ = decode_bytes(data, None, str(path))
    if path.suffix.lower() in (".jsonl", ".json", ".ndjson"):
        out = []
        for i, raw in enumerate(text.splitlines(), 1):
            if not raw.strip():
                continue
            try:
                out.append((i, json.loads(raw), None))
            except json.JSONDecodeError as e:
                out.append((i, None, f"not valid JSON ({e.msg} at column {e.colno})"))
        return out
    if path.suffix.lower() not in (".csv", ".tsv"):
        raise DataError(f"{path}: pairs are read from .jsonl or .csv/.tsv (columns {', '.join(columns)})")
    reader = csv.DictReader(io.StringIO(text), delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
    missing = set(columns) - set(reader.fieldnames or [])
    if missing:
        raise DataError(
            f"{path}: needs columns {', '.join(columns)}; missing {', '.join(sorted(missing))} "
            f"(columns: {', '.join(reader.fieldnames or [])})"
        )
    return [(reader.line_num, dict(row), None) for row in reader]


def scan_pairs(source: str | Path) -> PairsReport:
    path = Path(source).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: pairs file does not exist")
    report = PairsReport(str(path))
    seen: dict[tuple[Any, ...], list[int]] = {}
    for line, rec, err in records(path):
        pair, why = (None, err) if err else _from_record(rec, line)
        if pair is None:
            report.problems.append({"line": line, "reason": why or "unusable"})
            continue
        key = (pair.messages, pair.response)
        if key in seen:
            seen[key].append(line)
            continue
        seen[key] = [line]
        report.pairs.append(pair)
    report.duplicates = [lines for lines in seen.values() if len(lines) > 1]
    lengths = sorted(len(p.prompt) + len(p.response) for p in report.pairs)
    if lengths:
        report.chars = {"min": lengths[0], "median": lengths[len(lengths) // 2], "max": lengths[-1]}
    return report


def pair_split_sizes(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int]:
    """(validation, test) pairs of ``n``: at least one each when asked for and there are 4 or more."""
    n_val = max(1, round(val_fraction * n)) if val_fraction > 0 and n >= 4 else 0
    n_test = max(1, round(test_fraction * n)) if test_fraction > 0 and n - n_val >= 4 else 0
    return n_val, n_test
