"""Prompt / chosen / rejected triples for preference tuning of a causal language model (issue #24).

Read from JSONL (``{"prompt", "chosen", "rejected"}`` per line, optional ``system``) or CSV/TSV with
those columns. The scan keeps every usable triple and names every unusable one by line: a missing
or empty field, a chosen answer identical to the rejected one (it teaches nothing and makes the
loss's gradient zero), and repeats (the same prompt and answers again, which would count twice and
leak between splits). A triple is held as two :class:`~tlapp.data.pairs.Pair` s that share their
prompt, so the SFT encoding, truncation and token counts apply to each answer unchanged.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from tlapp.base.errors import DataError
from tlapp.data.pairs import Pair, PairsReport, records, scan_pairs

FIELDS = ("prompt", "chosen", "rejected")


@dataclass(frozen=True)
class Triple:
    """One preference: the turns before the answer, the answer a person prefers, and the one they do not."""

    messages: tuple[tuple[str, str], ...]  # (role, content): an optional system turn, then the user's prompt
    chosen: str
    rejected: str
    line: int  # where it came from (1-based), for every message about it

    @property
    def prompt(self) -> str:
        return next((c for r, c in reversed(self.messages) if r == "user"), "")

    @property
    def as_chosen(self) -> Pair:
        return Pair(self.messages, self.chosen, self.line)

    @property
    def as_rejected(self) -> Pair:
        return Pair(self.messages, self.rejected, self.line)


@dataclass
class TriplesReport:
    """What a scan found. ``pairs`` holds the usable triples (the name every language-model scan shares)."""

    source: str
    pairs: list[Triple] = field(default_factory=list)
    problems: list[dict[str, Any]] = field(default_factory=list)  # {"line", "reason"}
    duplicates: list[list[int]] = field(default_factory=list)  # line numbers of each repeated triple
    chars: dict[str, Any] = field(default_factory=dict)  # lengths of prompt, chosen, rejected
    tokens: dict[str, Any] = field(default_factory=dict)  # token lengths, once a tokenizer counted them
    kind: str = "triples"

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
                f"{self.source}: {len(self.pairs)} usable prompt/chosen/rejected triple(s), need at least {least}{first}"
            )


def _from_record(rec: Any, line: int) -> tuple[Optional[Triple], Optional[str]]:
    if not isinstance(rec, dict):
        return None, "not a JSON object"
    missing = [k for k in FIELDS if not isinstance(rec.get(k), str)]
    if missing:
        return None, f"needs text fields prompt, chosen and rejected; missing {', '.join(missing)}"
    empty = [k for k in FIELDS if not rec[k].strip()]
    if empty:
        return None, f"empty {empty[0]}"
    if rec["chosen"].strip() == rec["rejected"].strip():
        return None, "chosen and rejected are the same answer (nothing to prefer)"
    system = rec.get("system")
    if system is not None and not isinstance(system, str):
        return None, "system must be text"
    turns = ((("system", system),) if system and system.strip() else ()) + (("user", rec["prompt"]),)
    return Triple(turns, rec["chosen"], rec["rejected"], line), None


def _spread(values: list[int]) -> dict[str, int]:
    v = sorted(values)
    return {"min": v[0], "median": v[len(v) // 2], "max": v[-1]} if v else {}


def scan_triples(source: str | Path) -> TriplesReport:
    path = Path(source).expanduser()
    if not path.is_file():
        raise DataError(f"{path}: preference file does not exist")
    report = TriplesReport(str(path))
    seen: dict[tuple[Any, ...], list[int]] = {}
    for line, rec, err in records(path, FIELDS):
        triple, why = (None, err) if err else _from_record(rec, line)
        if triple is None:
            report.problems.append({"line": line, "reason": why or "unusable"})
            continue
        key = (triple.messages, triple.chosen, triple.rejected)
        if key in seen:
            seen[key].append(line)
            continue
        seen[key] = [line]
        report.pairs.append(triple)
    report.duplicates = [lines for lines in seen.values() if len(lines) > 1]
    if report.pairs:
        report.chars = {
            k: _spread([len(getattr(t, k)) for t in report.pairs]) for k in ("prompt", "chosen", "rejected")
        }
    return report


def looks_like_triples(path: Path) -> bool:
    """A first record (JSONL) or header (CSV) with chosen and rejected: a preference file, not SFT pairs."""
    try:
        head = path.read_bytes()[:4096].decode("utf-8", "replace")
    except OSError:
        return False
    first = head.splitlines()[0] if head else ""
    return (
        '"chosen"' in first
        and '"rejected"' in first
        or {"chosen", "rejected"} <= {f.strip().strip('"').lower() for f in first.replace("\t", ",").split(",")}
    )


def scan_lm_file(path: str | Path, task: Any) -> PairsReport | TriplesReport:
    """The pairs (task sft) or preference triples (task dpo) of a file, without token counts."""
    return scan_triples(path) if getattr(task, "value", task) == "dpo" else scan_pairs(path)
