"""The Data step's scan of a language-model project: its pairs or triples with token lengths for the
chosen model. Its own module because it joins :mod:`chat` (pairs) and :mod:`triples` (preferences)."""

from __future__ import annotations

from typing import Any, Optional

from tlapp.base.errors import DataError
from tlapp.data.preferences import scan_lm_file
from tlapp.model.chat import encode_all, token_report
from tlapp.model.triples import encode_triples, triple_token_report


def scan_project_pairs(project: Any, project_file: Optional[Any] = None) -> Any:
    """A project's pairs (or triples, for dpo) with token lengths for its model (the wizard's Data step,
    ``tlapp scan``). Without the model's tokenizer (not installed yet) the scan still reports the examples
    and problems, and says why tokens are missing."""
    from tlapp.backbones.catalog import check_backbone
    from tlapp.backbones.causal_lm import default_system, tokenizer_for
    from tlapp.base.errors import TlappError
    from tlapp.config import resolve_data_path

    path = resolve_data_path(project, project_file)
    dpo = project.task.type.value == "dpo"
    if path is None:
        what = "prompt,chosen,rejected" if dpo else "prompt,response"
        raise DataError(f"data.path: choose a {'preference' if dpo else 'pairs'} file (.jsonl or .csv with {what})")
    _, max_len, _ = check_backbone(project.backbone, "lm")
    report = scan_lm_file(path, project.task.type)
    try:
        tok = tokenizer_for(project.backbone)
    except TlappError as e:
        report.tokens = {"error": str(e)}
        return report
    truncate, system = project.data.too_long == "truncate", default_system(tok.files)
    if dpo:
        enc = encode_triples(report.pairs, tok, max_len, truncate, system)
        report.tokens = triple_token_report(report.pairs, enc, tok, max_len, system)
    else:
        report.tokens = token_report(encode_all(report.pairs, tok, max_len, truncate, system), report.pairs, max_len)
    return report
