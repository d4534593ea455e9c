"""Llama-family causal LMs as Hugging Face folders: read from a GGUF file, written from Keras (issue #11).

One on-disk form serves every purpose: ``config.json`` + ``model.safetensors`` + ``tokenizer.json``
+ ``tokenizer_config.json``. keras-hub loads it offline (``CausalLM.from_preset(folder)``), so does
``transformers``, and llama.cpp's converter turns it back into a GGUF. The local model store holds
the converted base model in this form, and a tuned run exports its merged model the same way.

GGUF stores tensors in PyTorch layout ([out, in]) but with the q/k projection rows permuted for
llama.cpp's rotary layout: per head, the two halves of the head dimension are interleaved. They
are put back here, or the model only emits its end token.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tlapp.base.errors import WeightsError
from tlapp.base.fsutil import atomic_dir

TOKEN_CONTROL = 3  # GGUF token type of special tokens (<|im_start|>, <|endoftext|>, ...)


@dataclass
class LlamaFiles:
    """Everything a folder holds, in Hugging Face names and layout."""

    config: dict[str, Any]
    tensors: dict[str, np.ndarray]  # float32, [out, in]
    tokens: list[str]
    merges: list[str]  # "a b" per merge
    specials: list[int]  # ids of control tokens
    bos: str
    eos: str
    chat_template: str = ""


def _unpermute(w: np.ndarray, heads: int) -> np.ndarray:
    """Inverse of llama.cpp's ``permute``: rows [head, head_dim/2, 2] -> [head, 2, head_dim/2]."""
    return w.reshape(heads, w.shape[0] // heads // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def _permute(w: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's ``permute`` (for writing a GGUF back)."""
    return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


_GGUF_NAMES = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}


def read_gguf(path: Path, tensors: bool = True) -> LlamaFiles:
    """A llama-architecture GGUF (any quantization gguf-py can dequantize) as float32 HF tensors
    (``tensors=False``: the config and tokenizer only, in a fraction of a second)."""
    try:
        import gguf
        from gguf.quants import dequantize
    except ImportError:
        raise WeightsError("reading a GGUF file needs the `gguf` package: pip install gguf") from None
    try:
        reader = gguf.GGUFReader(str(path))
    except Exception as e:  # noqa: BLE001 - a damaged file raises anything from struct/numpy
        raise WeightsError(f"{path}: not a readable GGUF file ({type(e).__name__}: {e})") from None

    def field(key: str, default: Any = None) -> Any:
        f = reader.fields.get(key)
        return default if f is None else f.contents()

    arch = field("general.architecture")
    if arch != "llama":
        raise WeightsError(f"{path}: architecture {arch!r}; only llama-architecture GGUF files convert")
    if field("tokenizer.ggml.model") != "gpt2":
        raise WeightsError(
            f"{path}: tokenizer {field('tokenizer.ggml.model')!r}; only byte-level BPE (gpt2) tokenizers convert"
        )
    heads, kv = int(field("llama.attention.head_count")), int(field("llama.attention.head_count_kv"))
    out: dict[str, np.ndarray] = {}
    for t in reader.tensors if tensors else []:
        a = dequantize(t.data, t.tensor_type).astype(np.float32).reshape([int(d) for d in reversed(t.shape)])
        name = t.name
        if name == "token_embd.weight":
            out["model.embed_tokens.weight"] = a
        elif name == "output_norm.weight":
            out["model.norm.weight"] = a
        elif name == "output.weight":
            out["lm_head.weight"] = a
        elif name.startswith("blk."):
            _, i, kind, _ = name.split(".")
            if kind == "attn_q":
                a = _unpermute(a, heads)
            elif kind == "attn_k":
                a = _unpermute(a, kv)
            if kind not in _GGUF_NAMES:
                raise WeightsError(f"{path}: unexpected tensor {name!r}")
            out[f"model.layers.{i}.{_GGUF_NAMES[kind]}.weight"] = a
    tokens = list(field("tokenizer.ggml.tokens"))
    types = list(field("tokenizer.ggml.token_type"))
    bos, eos = int(field("tokenizer.ggml.bos_token_id")), int(field("tokenizer.ggml.eos_token_id"))
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": len(tokens),
        "hidden_size": int(field("llama.embedding_length")),
        "intermediate_size": int(field("llama.feed_forward_length")),
        "num_hidden_layers": int(field("llama.block_count")),
        "num_attention_heads": heads,
        "num_key_value_heads": kv,
        "rms_norm_eps": float(field("llama.attention.layer_norm_rms_epsilon")),
        "rope_theta": float(field("llama.rope.freq_base", 10000.0)),
        "max_position_embeddings": int(field("llama.context_length", 2048)),
        "tie_word_embeddings": not any(t.name == "output.weight" for t in reader.tensors),
        "hidden_act": "silu",
        "bos_token_id": bos,
        "eos_token_id": eos,
        "pad_token_id": int(field("tokenizer.ggml.padding_token_id", eos)),
        "torch_dtype": "float32",
    }
    return LlamaFiles(
        config,
        out,
        tokens,
        [str(m) for m in field("tokenizer.ggml.merges")],
        [i for i, t in enumerate(types) if t == TOKEN_CONTROL],
        tokens[bos],
        tokens[eos],
        str(field("tokenizer.chat_template", "")),
    )


def hf_tokenizer(files: LlamaFiles) -> Any:
    """A ``tokenizers.Tokenizer`` that splits like SmolLM2's own: each digit alone, then GPT-2's
    byte-level regex. (keras-hub's Llama-3 pre-tokenizer differs on some inputs; tlapp encodes
    with this one.)"""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    vocab = {t: i for i, t in enumerate(files.tokens)}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[tuple(m.split(" ", 1)) for m in files.merges]))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([files.tokens[i] for i in files.specials])
    return tok


def write_folder(files: LlamaFiles, dest: Path) -> Path:
    """The folder, written whole or not at all (a crash leaves the previous one)."""
    from safetensors.numpy import save_file

    with atomic_dir(dest) as tmp:
        save_file(
            {k: np.ascontiguousarray(v, np.float32) for k, v in files.tensors.items()},
            str(tmp / "model.safetensors"),
            metadata={"format": "pt"},
        )
        (tmp / "config.json").write_text(json.dumps(files.config, indent=2))
        hf_tokenizer(files).save(str(tmp / "tokenizer.json"))
        (tmp / "tokenizer_config.json").write_text(
            json.dumps(
                {
                    "bos_token": files.bos,
                    "eos_token": files.eos,
                    "pad_token": files.tokens[files.config["pad_token_id"]],
                    "add_bos_token": False,
                    "add_prefix_space": False,
                    "model_max_length": files.config["max_position_embeddings"],
                    "tokenizer_class": "GPT2Tokenizer",
                    "chat_template": files.chat_template,
                    "additional_special_tokens": [files.tokens[i] for i in files.specials],
                },
                indent=2,
            )
        )
    return dest


def read_folder_tokens(folder: Path) -> LlamaFiles:
    """The tokenizer part of a folder (tensors left empty): for writing a tuned model beside it."""
    try:
        tj = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
        tc = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise WeightsError(f"{folder}: not a complete language-model folder ({e})") from None
    vocab = dict(tj["model"]["vocab"])
    for t in tj.get("added_tokens", []):
        vocab[t["content"]] = t["id"]
    tokens = [""] * len(vocab)
    for t, i in vocab.items():
        tokens[i] = t
    merges = [m if isinstance(m, str) else " ".join(m) for m in tj["model"]["merges"]]
    specials = [t["id"] for t in tj.get("added_tokens", []) if t.get("special")]
    return LlamaFiles(
        config, {}, tokens, merges, specials, tc["bos_token"], tc["eos_token"], tc.get("chat_template", "")
    )


def tensors_from_backbone(backbone: Any) -> dict[str, np.ndarray]:
    """A keras-hub ``Llama3Backbone``'s weights in HF names and layout (the inverse of keras-hub's
    converter). A LoRA layer's ``kernel`` already includes its adapter, so this is the merged model."""
    out = {"model.embed_tokens.weight": np.asarray(backbone.get_layer("token_embedding").embeddings)}
    if not backbone.tie_word_embeddings:
        out["lm_head.weight"] = np.asarray(backbone.get_layer("token_embedding").reverse_embeddings).T
    flat = lambda k: np.asarray(k).reshape(-1, np.asarray(k).shape[-1]) if np.asarray(k).ndim == 3 else np.asarray(k)  # noqa: E731
    for i in range(backbone.num_layers):
        layer = backbone.get_layer(f"transformer_layer_{i}")
        att, p = layer._self_attention_layer, f"model.layers.{i}."
        out[p + "input_layernorm.weight"] = np.asarray(layer._self_attention_layernorm.scale)
        out[p + "post_attention_layernorm.weight"] = np.asarray(layer._feedforward_layernorm.scale)
        for name, dense in (("q_proj", att._query_dense), ("k_proj", att._key_dense), ("v_proj", att._value_dense)):
            k = np.asarray(dense.kernel)  # [hidden, heads, head_dim]
            out[p + f"self_attn.{name}.weight"] = k.reshape(k.shape[0], -1).T
        out[p + "self_attn.o_proj.weight"] = flat(att._output_dense.kernel).T  # [heads*head_dim, hidden].T
        out[p + "mlp.gate_proj.weight"] = np.asarray(layer._feedforward_gate_dense.kernel).T
        out[p + "mlp.up_proj.weight"] = np.asarray(layer._feedforward_intermediate_dense.kernel).T
        out[p + "mlp.down_proj.weight"] = np.asarray(layer._feedforward_output_dense.kernel).T
    out["model.norm.weight"] = np.asarray(backbone.get_layer("sequence_output_layernorm").scale)
    return out


_HF_TO_GGUF = {v: k for k, v in _GGUF_NAMES.items()}


def write_gguf(files: LlamaFiles, dest: Path, name: str = "tlapp") -> Path:
    """An f16 GGUF that llama.cpp runs: matrices in float16, norms in float32, q/k rows permuted back into
    llama.cpp's rotary layout, the tokenizer (byte-level BPE, SmolLM-style splitting) and chat template
    in the metadata. Written beside ``dest`` and moved into place."""
    import gguf

    from tlapp.base.fsutil import atomic_path

    c = files.config
    heads, kv, hidden = c["num_attention_heads"], c["num_key_value_heads"], c["hidden_size"]
    with atomic_path(dest, suffix=".gguf") as tmp:
        w = gguf.GGUFWriter(str(tmp), arch="llama")
        w.add_name(name)
        w.add_block_count(c["num_hidden_layers"])
        w.add_context_length(c["max_position_embeddings"])
        w.add_embedding_length(hidden)
        w.add_feed_forward_length(c["intermediate_size"])
        w.add_head_count(heads)
        w.add_head_count_kv(kv)
        w.add_rope_freq_base(c["rope_theta"])
        w.add_rope_dimension_count(hidden // heads)
        w.add_layer_norm_rms_eps(c["rms_norm_eps"])
        w.add_vocab_size(len(files.tokens))
        w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
        w.add_tokenizer_model("gpt2")
        w.add_tokenizer_pre("smollm")
        w.add_token_list(files.tokens)
        special = set(files.specials)
        w.add_token_types(
            [gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL for i in range(len(files.tokens))]
        )
        w.add_token_merges(files.merges)
        w.add_bos_token_id(c["bos_token_id"])
        w.add_eos_token_id(c["eos_token_id"])
        w.add_pad_token_id(c["pad_token_id"])
        w.add_add_bos_token(False)
        if files.chat_template:
            w.add_chat_template(files.chat_template)
        for key, a in files.tensors.items():
            if key == "model.embed_tokens.weight":
                out, arr = "token_embd.weight", a.astype(np.float16)
            elif key == "model.norm.weight":
                out, arr = "output_norm.weight", a.astype(np.float32)
            elif key == "lm_head.weight":
                out, arr = "output.weight", a.astype(np.float16)
            else:
                _, _, i, *rest = key.split(".")
                kind = _HF_TO_GGUF[".".join(rest[:-1])]
                if kind == "attn_q":
                    a = _permute(a, heads)
                elif kind == "attn_k":
                    a = _permute(a, kv)
                out, arr = f"blk.{i}.{kind}.weight", a.astype(np.float32 if a.ndim == 1 else np.float16)
            w.add_tensor(out, np.ascontiguousarray(arr))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
    return dest


def check_gguf(path: Path, files: LlamaFiles) -> dict[str, Any]:
    """Read a written GGUF back: same config, tokens and merges, and every tensor equal to the float32
    original within float16 rounding (so q/k were permuted back correctly)."""
    back = read_gguf(path)
    worst = 0.0
    for k, a in files.tensors.items():
        b = back.tensors.get(k)
        if b is None or b.shape != a.shape:
            return {"ok": False, "summary": f"{k}: missing or misshapen after reading the GGUF back"}
        worst = max(worst, float(np.max(np.abs(b - a)) / (np.max(np.abs(a)) + 1e-12)))
    same = (
        back.tokens == files.tokens
        and back.merges == files.merges
        and all(
            back.config[k] == files.config[k]
            for k in (
                "num_hidden_layers",
                "num_attention_heads",
                "num_key_value_heads",
                "hidden_size",
                "intermediate_size",
                "vocab_size",
            )
        )
    )
    ok = same and worst < 2e-3
    return {
        "ok": ok,
        "max_relative_diff": worst,
        "summary": f"read back: {len(back.tensors)} tensors, largest difference {worst:.1e} of each tensor's "
        f"range (float16 rounding), tokenizer and config {'identical' if same else 'DIFFERENT'}",
    }
