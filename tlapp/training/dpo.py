"""Preference tuning of a causal language model with DPO (task ``dpo``, issue #24).

The SFT run's lifecycle, unchanged (events, cancel, a checkpoint per epoch and every few minutes,
resume, the best epoch kept, LoRA or top blocks, ``train.strategy``, exports checked in a fresh
process); what differs is the data (prompt / chosen / rejected triples), the step
(:mod:`tlapp.model.preference`) and what is measured:

- before anything trains, the starting model scores every chosen and rejected answer once; those
  log-probs are the reference (``reference_logps.json``), so no second model is ever in memory, and
  a resume reads them instead of scoring again;
- each step reports the loss, reward accuracy, reward margin and the chosen and rejected rewards;
  each epoch the same on validation triples, and ``preference_accuracy``: how often the model finds
  the chosen answer likelier (per token) than the rejected one. The starting model's figure comes
  free from the reference log-probs, so the run reports it before and after.

The starting model is the catalog's (``backbone.weights: pretrained``), a model folder, or a
finished SFT run's folder (its merged export).
"""

from __future__ import annotations

import json
from typing import Any, Callable

import numpy as np

from tlapp.backbones.causal_lm import LanguageModel
from tlapp.base.fsutil import atomic_write_text
from tlapp.data.preferences import scan_triples
from tlapp.model import preference as pref
from tlapp.model import triples
from tlapp.model.lm import causal_lm
from tlapp.training.sft import SftRun


class DpoRun(SftRun):
    NOUN = "triple"
    METRICS = pref.METRICS
    reference: dict[int, list[float]]

    @property
    def loss(self) -> pref.Loss:
        s = self.project.task.preference
        return pref.Loss(s.beta, s.loss, s.sft_weight)

    def read_data(self) -> Any:
        return scan_triples(self.project.data.path or "")

    def encode_data(self, lm: LanguageModel) -> tuple[list[Any], dict[str, Any]]:
        assert self.report is not None
        rows, truncate = self.report.pairs, self.project.data.too_long == "truncate"
        enc = triples.encode_triples(rows, lm.tokenizer, lm.max_len, truncate, lm.system)
        return enc, triples.triple_token_report(rows, enc, lm.tokenizer, lm.max_len, lm.system)

    def prepare(self, resume: bool) -> None:
        super().prepare(resume)
        self.reference = self.reference_logps(resume)

    def reference_logps(self, resume: bool) -> dict[int, list[float]]:
        """The starting model's log-probs of every usable triple's answers: read back on resume (the model
        has adapters by then), else computed now, before any adapter exists, and saved with the run."""
        saved = self.src.read_json(self.src.reference) if resume else None
        if saved:
            return {int(k): v for k, v in saved["logps"].items()}
        items = list(self.encoded.values())
        what = f"scoring {len(items)} chosen and rejected answers with the starting model (the DPO reference, once)"
        self.stage(what, total=len(items))
        score = pref.log_probs(causal_lm(self.model_lm.backbone))
        out: dict[int, list[float]] = {}
        for batch in triples.preference_batches(items, self.project.train.batch_size, self.pad_id, {}, 0):
            out.update(score([batch]))
            self.stage(what, total=len(items), count=len(out))
        if self.shared is None:
            atomic_write_text(
                self.run_dir.reference,
                json.dumps({"model": self.model_lm.weights_source, "logps": {str(k): v for k, v in out.items()}}),
            )
        return out

    @property
    def pad_id(self) -> int:
        return self.model_lm.tokenizer.pad_id

    def batches(self, pairs: list[Any], seed: int) -> list[dict[str, np.ndarray]]:
        items = [self.encoded[t.line] for t in pairs if t.line in self.encoded]
        return triples.preference_batches(items, self.project.train.batch_size, self.pad_id, self.reference, seed)

    def make_step(self, model: Any, opt: Any, strategy: Any) -> Callable[[dict[str, np.ndarray]], Any]:
        return pref.train_step(model, opt, self.loss, strategy)

    def make_evaluator(self, model: Any) -> Callable[[list[dict[str, np.ndarray]]], dict[str, float]]:
        return pref.evaluator(model, self.loss)

    def derived(self, logs: dict[str, float]) -> dict[str, float]:
        return dict(logs)

    def preference_before(self, pairs: list[Any]) -> Any:
        """The starting model's preference accuracy on ``pairs`` (from the reference log-probs)."""
        items = [self.encoded[t.line] for t in pairs if t.line in self.encoded]
        return triples.preference_accuracy(self.reference, items)
