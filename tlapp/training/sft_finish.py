"""The end of a language-model run (sft or dpo): held-out metrics, before/after answers, export + fresh
check, model card. A dpo run adds its preference settings and the held-out preference accuracy of the
starting model and of the tuned one."""

from __future__ import annotations

import hashlib
import json
import resource
import statistics
import time
from pathlib import Path
from typing import Any, Protocol

from tlapp.backbones.catalog import weights_origin
from tlapp.backbones.freeze import block_summary, layer_table, param_counts
from tlapp.base.errors import ExportError
from tlapp.base.fsutil import atomic_write_text
from tlapp.deploy.lm_export import export_lm, verify_lm
from tlapp.events import EXPORT, VERIFY
from tlapp.model.lm import causal_lm
from tlapp.rundir import versions
from tlapp.training.lifecycle import RunResult, completed
from tlapp.training.reports import hardware, md_table


class SftRun(Protocol):
    """What finishing reads of a trained language-model run (:class:`tlapp.training.sft.SftRun` provides it;
    this module never imports it)."""

    project: Any
    run_dir: Any
    log: Any
    report: Any
    split: Any
    history: list[dict[str, Any]]
    best: dict[str, Any]
    phases: list[Any]
    step_seconds: list[float]
    started: float

    @property
    def model_lm(self) -> Any: ...
    def batches(self, pairs: list[Any], seed: int) -> list[dict[str, Any]]: ...
    def sample_pairs(self) -> list[Any]: ...
    def answers(self, pairs: list[Any], who: str) -> list[str]: ...
    def prompts(self, pairs: list[Any]) -> list[list[int]]: ...
    def make_evaluator(self, model: Any) -> Any: ...
    def preference_before(self, pairs: list[Any]) -> Any: ...
    def stage(self, what: str, done: bool = False, total: int = 1, count: int = 0) -> None: ...


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # Linux reports KiB


def finish_sft(run: SftRun, before: list[str]) -> RunResult:
    p, rd, lm = run.project, run.run_dir, run.model_lm
    split = run.split
    assert split is not None
    evaluate = run.make_evaluator(causal_lm(lm.backbone))
    val = evaluate(run.batches(split.val, 0)) if split.val else None
    test = evaluate(run.batches(split.test, 0)) if split.test else None
    pairs = run.sample_pairs()
    after = run.answers(pairs, "tuned")
    samples = [
        {"line": pr.line, "prompt": pr.prompt, "reference": getattr(pr, "response", None) or pr.chosen}
        | ({"rejected": pr.rejected} if hasattr(pr, "rejected") else {})
        | {"before": b, "after": a}
        for pr, b, a in zip(pairs, before, after)
    ]
    last = run.phases[-1].freeze
    lora = (
        {"rank": last.rank, "alpha": last.alpha or 2.0 * last.rank, "targets": last.targets, "base": lm.entry.name}
        if last.mode == "lora"
        else None
    )
    export = None
    if p.export.formats:
        t0 = time.time()
        run.stage("exporting the merged model and its adapter, then checking it in a fresh process")
        prompts = run.prompts(pairs[:2])
        export = export_lm(
            lm,
            rd.export,
            p.name,
            f"LoRA rank {lora['rank']}" if lora else last.mode,
            lora,
            prompts,
            gguf="gguf" in p.export.formats,
        )
        if export.get("gguf_check") and not export["gguf_check"]["ok"]:
            raise ExportError(f"the GGUF export failed its read-back check: {export['gguf_check']['summary']}")
        export["seconds"] = {"write": round(time.time() - t0, 1)}
        run.log.emit(EXPORT, **export)
        if p.export.verify:
            t0 = time.time()
            export["verify"] = verify_lm(rd.export)
            export["verify"]["seconds"] = round(time.time() - t0, 1)
            export["verified"] = export["verify"]["ok"]
            run.log.emit(VERIFY, **export["verify"])
            if not export["verify"]["ok"]:
                raise ExportError(f"export parity check failed: {export['verify']['summary']}")
    tr, non = param_counts(lm.backbone)
    steps = run.step_seconds[1:] or run.step_seconds  # the first step includes the one-off trace
    # The exported weights' figures (the best epoch's, after keep_best), not the last epoch's.
    final = (
        {f"val_{k}": v for k, v in val.items()}
        if val
        else {
            k: v
            for k, v in (run.history[-1] if run.history else {}).items()
            if k not in ("phase", "phase_name", "epoch")
        }
    )
    metrics = {
        "task": p.task.type.value,
        "preference": preference_block(run, val, test),
        "final": final,
        "best": run.best,
        "history": run.history,
        "val": val,
        "test": test,
        "samples": samples,
        "n_train": len(split.train),
        "n_val": len(split.val),
        "n_test": len(split.test),
        "trainable_params": tr,
        "non_trainable_params": non,
        "lora": lora,
        "speed": {
            "seconds_per_step_median": round(statistics.median(steps), 3) if steps else None,
            "first_step_seconds": round(run.step_seconds[0], 1) if run.step_seconds else None,
            "steps": len(run.step_seconds),
            "peak_rss_gb": round(peak_rss_gb(), 2),
        },
        "export": export,
        "seconds": round(time.time() - run.started, 1),
        "finished": time.time(),
    }
    atomic_write_text(rd.metrics, json.dumps(metrics, indent=2, default=float))
    card = card_data(run, metrics)
    atomic_write_text(rd.model_card_json, json.dumps(card, indent=1, default=float))
    atomic_write_text(rd.model_card, render_card(card))
    return completed(rd, run.log, [], metrics, export, final)


def preference_block(run: SftRun, val: Any, test: Any) -> Any:
    """A dpo run's settings, its data's hash and the preference accuracy of the starting and tuned models
    on held-out triples (None for sft)."""
    if run.project.task.type.value != "dpo":
        return None
    s, split = run.project.task.preference, run.split
    assert split is not None and run.report is not None
    held = [("val", split.val, val), ("test", split.test, test)]
    return {
        "beta": s.beta,
        "loss": s.loss,
        "sft_weight": s.sft_weight,
        "reference": run.model_lm.weights_source,
        "pairs_sha256": hashlib.sha256(Path(run.report.source).read_bytes()).hexdigest(),
        "preference_accuracy": {
            name: {"before": run.preference_before(pairs), "after": rep["preference_accuracy"], "n": len(pairs)}
            for name, pairs, rep in held
            if rep
        },
    }


def card_data(run: SftRun, metrics: dict[str, Any]) -> dict[str, Any]:
    p, lm, rep = run.project, run.model_lm, run.report
    assert rep is not None and run.split is not None
    return {
        "schema": 1,
        "name": p.name,
        "task": p.task.type.value,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "data": {
            "source": rep.source,
            "pairs": len(rep.pairs),
            "problems": len(rep.problems),
            "duplicates": len(rep.duplicates),
            "split": {
                "seed": p.data.seed,
                "train": len(run.split.train),
                "val": len(run.split.val),
                "test": len(run.split.test),
            },
        },
        "backbone": {
            "name": lm.entry.name,
            "family": lm.entry.family,
            "params_m": lm.entry.params_m,
            "licence": lm.entry.licence,
            "weights": lm.weights_source,
            "weights_origin": weights_origin(lm.entry),
            "max_tokens": lm.max_len,
            "system_prompt": lm.system,
        },
        "training": {
            "batch_size": p.train.batch_size,
            "seed": p.train.seed,
            "lora": metrics["lora"],
            "trainable_params": metrics["trainable_params"],
            "best": run.best,
            "freeze_map": block_summary(layer_table(lm.backbone, lm.entry)),
        },
        "preference": metrics["preference"],
        "metrics": {"val": metrics["val"], "test": metrics["test"], "speed": metrics["speed"]},
        "samples": metrics["samples"],
        "export": {k: v for k, v in (metrics["export"] or {}).items() if k != "verify"}
        | ({"verify": (metrics["export"] or {}).get("verify", {}).get("summary")} if metrics["export"] else {}),
        "environment": {"packages": versions(), "hardware": hardware(), "seconds": metrics["seconds"]},
    }


def _cell(text: str, n: int = 160) -> str:
    t = " ".join(str(text).split()).replace("|", "\\|")
    return t if len(t) <= n else t[: n - 1] + "…"


def render_card(card: dict[str, Any]) -> str:
    d, b, t, m, env = card["data"], card["backbone"], card["training"], card["metrics"], card["environment"]
    how = (
        f"LoRA rank {t['lora']['rank']} (alpha {t['lora']['alpha']:g}) on {', '.join(t['lora']['targets'])}"
        if t["lora"]
        else "top transformer blocks"
    )
    parts = [
        f"# Model card: {card['name']}",
        "",
        "- Task: "
        + (
            "preference tuning (DPO on prompt / chosen / rejected, ChatML)"
            if card.get("preference")
            else "supervised fine-tuning (prompt -> response, ChatML)"
        ),
        f"- Base model: {b['name']} ({b['family']}, {b['params_m']:.1f} M params, licence {b['licence']})",
        f"- Weights: {b['weights']} — {b['weights_origin']}",
        f"- Trained: {how}; {t['trainable_params']:,} trainable parameters; at most {b['max_tokens']} tokens "
        "per conversation; loss on the answer tokens only",
        f"- Created: {card['created']} with " + ", ".join(f"{k} {v}" for k, v in env["packages"].items()),
        f"- Hardware: {env['hardware']['processor']}, {env['hardware']['cpu_cores']} cores, "
        f"{env['hardware']['device']}; {env['seconds']:.0f} s",
        "",
        "## Data",
        "",
        f"`{d['source']}`: {d['pairs']} pairs, {d['problems']} unusable, {d['duplicates']} repeated. Split seed "
        f"{d['split']['seed']}: train {d['split']['train']}, val {d['split']['val']}, test {d['split']['test']}.",
        "",
        "## Metrics (held-out pairs)",
        "",
    ]
    pr = card.get("preference")
    for name, rep in (("Validation", m["val"]), ("Test", m["test"])):
        if rep and pr:
            parts.append(
                f"- {name}: DPO loss {rep['loss']:.3f}, reward accuracy {rep['reward_accuracy']:.3f}, "
                f"reward margin {rep['reward_margin']:.3f} (chosen {rep['chosen_reward']:.3f}, "
                f"rejected {rep['rejected_reward']:.3f})"
            )
        elif rep:
            parts.append(
                f"- {name}: loss {rep['loss']:.3f}, perplexity {rep['perplexity']:.2f}, "
                f"token accuracy {rep['token_accuracy']:.3f}"
            )
    if pr:
        parts += ["", "## Preference", ""]
        parts.append(
            f"DPO ({pr['loss']} loss, beta {pr['beta']:g}"
            + (f", plus {pr['sft_weight']:g} x the chosen answers' next-token loss" if pr["sft_weight"] else "")
            + f"); reference: the starting model, {pr['reference']}. Triples file sha256 {pr['pairs_sha256'][:16]}…"
        )
        for name, acc in pr["preference_accuracy"].items():
            before = "n/a" if acc["before"] is None else f"{acc['before']:.3f}"
            parts.append(
                f"- Preference accuracy on {acc['n']} held-out {name} triples (chosen likelier per token than "
                f"rejected): {before} before, {acc['after']:.3f} after"
            )
    if not m["val"]:
        parts.append("- No validation pairs (too few pairs to hold any out): nothing measures generalisation.")
    sp = m["speed"]
    parts += [
        f"- Speed: {sp['seconds_per_step_median']} s per step (median; first step {sp['first_step_seconds']} s "
        f"with tracing), peak memory {sp['peak_rss_gb']} GB",
        "",
        "## Before and after",
        "",
        "Greedy answers of the base model and of the tuned model to held-out prompts"
        + ("" if m["val"] else " (training prompts: there was no validation split)")
        + ":",
        "",
        md_table(
            [[s["line"], _cell(s["prompt"], 80), _cell(s["before"]), _cell(s["after"])] for s in card["samples"]],
            ["line", "prompt", "base model", "tuned model"],
        ),
        "",
    ]
    ex = card["export"]
    if ex:
        parts += [
            "## Export",
            "",
            f"Folder `{ex.get('dir')}`: {', '.join(ex.get('files', []))}.",
            f"Fresh-process check: {ex.get('verify', 'not run')}",
            "",
        ]
        if ex.get("gguf_check"):
            parts += [f"GGUF (f16, llama.cpp): {ex['gguf_check']['summary']}", ""]
    parts += [
        "## Limits",
        "",
        "A small model tuned on few examples: it can state wrong facts fluently. Check its "
        "answers on prompts like your real ones before relying on it.",
    ]
    return "\n".join(parts) + "\n"
