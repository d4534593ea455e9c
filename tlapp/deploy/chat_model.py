"""Talk to a causal LM folder: a tuned run's ``export/preset`` or the store's base model (issue #11).

Used by ``tlapp generate``, the wizard's chat box and the conversion check of
``tlapp weights install-lm-default``. A prompt becomes the same ChatML the model was tuned on
(with the model's default system prompt when none is given).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from tlapp.backbones.causal_lm import default_system, load_folder
from tlapp.base.errors import TlappError
from tlapp.model.chat import prompt_ids
from tlapp.model.lm import Generator, causal_lm, evaluator
from tlapp.rundir import RunDir

# Fixed prompts and sentences for checking a conversion: a broken one (q/k left permuted, a wrong
# tokenizer) answers with nothing or garbage and reads English at a perplexity in the thousands.
CHECK_PROMPTS = {"What is the capital of France?": "paris", "What is 2 + 2?": "4"}
CHECK_SENTENCES = [
    "The cat sat on the mat and looked out of the window.",
    "Paris is the capital and most populous city of France.",
    "Water boils at one hundred degrees Celsius at sea level.",
]
PERPLEXITY_LIMIT = 100.0


def run_model_folder(run_dir: Path) -> Path:
    folder = RunDir(run_dir).export / "preset"
    if not (folder / "config.json").is_file():
        raise TlappError(
            f"{run_dir}: no exported language model ({folder} is missing); is it a finished sft or dpo run?"
        )
    return folder


class ChatModel:
    def __init__(self, folder: Path, temperature: float = 0.0, seed: int = 0) -> None:
        self.folder = folder
        self.backbone, self.tokenizer = load_folder(folder)
        self.system = default_system(self.tokenizer.files)
        self.generate = Generator(self.backbone, self.tokenizer.end_id, temperature, seed)

    def answer(self, prompts: Sequence[str], max_new: int = 128, system: Optional[str] = None) -> list[str]:
        tok = self.tokenizer
        sys_prompt = self.system if system is None else system
        ids = [prompt_ids((("user", p),), tok.encode, tok.start_id, tok.end_id, sys_prompt) for p in prompts]
        return [tok.decode(a).strip() for a in self.generate(ids, max_new)]

    def perplexity(self, texts: Sequence[str]) -> float:
        """exp(mean next-token loss) over plain sentences, every token weighed (the training loss's rule)."""
        batches = []
        for t in texts:
            ids = np.asarray([self.tokenizer.encode(t)], np.int32)
            batches.append(
                {
                    "token_ids": ids[:, :-1],
                    "padding_mask": np.ones_like(ids[:, :-1], bool),
                    "labels": ids[:, 1:],
                    "sample_weight": np.ones(ids[:, 1:].shape, np.float32),
                }
            )
        return evaluator(causal_lm(self.backbone))(batches)["perplexity"]


def check_conversion(folder: Path) -> dict[str, Any]:
    """Answers to fixed prompts must contain the expected word, and perplexity must be English-like."""
    m = ChatModel(folder)
    answers = dict(zip(CHECK_PROMPTS, m.answer(list(CHECK_PROMPTS), 24)))
    ppl = m.perplexity(CHECK_SENTENCES)
    wrong = [q for q, a in answers.items() if CHECK_PROMPTS[q] not in a.lower()]
    why = "; ".join(
        [f"{q!r} answered {answers[q]!r}" for q in wrong]
        + ([f"perplexity {ppl:.0f} > {PERPLEXITY_LIMIT:.0f}"] if ppl > PERPLEXITY_LIMIT else [])
    )
    return {"answers": answers, "perplexity": ppl, "ok": not why, "why": why}


def install_and_check() -> dict[str, Any]:
    """`tlapp weights install-lm-default`: install, convert, check (the wizard's Install button too)."""
    from tlapp.backbones.causal_lm import install_default

    folder = install_default()
    return {"folder": str(folder), **check_conversion(folder)}
