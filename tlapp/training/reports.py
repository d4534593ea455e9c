"""What a finished run writes about itself: ``metrics.json`` and ``model_card.md``.

Both are built from a :class:`RunRecord` — plain data the trainer hands over —
so the reports never reach into the trainer's internals.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any, Optional

from tlapp.backbones.catalog import BackboneEntry
from tlapp.base.fsutil import atomic_write_text, sha256_file
from tlapp.config import Project
from tlapp.data.examples import ScanReport
from tlapp.data.split import Splits
from tlapp.rundir import RunDir, versions

_NOT_METRICS = ("phase", "phase_name", "epoch", "stage", "step", "l2", "mirror", "class_weights")


@dataclass
class RunRecord:
    """Everything the reports say about a run."""

    project: Project
    run_dir: RunDir
    scan: ScanReport
    splits: Splits
    classes: list[str]
    history: list[dict[str, Any]]
    best: dict[str, Any]
    entry: BackboneEntry
    weights_source: str
    input_size: int
    freeze_map: list[dict[str, Any]]  # tlapp.backbones.freeze.block_summary of the final model
    recipe: dict[str, Any] = field(default_factory=dict)  # what the recipe decided, and its CV estimate
    seconds: float = 0.0  # wall time of the (last) training session, scan to export
    phases: list[Any] = field(default_factory=list)  # the plan that trained (train.phases or the proposal)
    choice: list[dict[str, Any]] = field(default_factory=list)  # backbone.choose_from's scored candidates
    choice_reason: str = ""  # why the winner won (tlapp.training.choice.pick)


def metric_mode(key: str) -> str:
    """'min' for losses and errors, 'max' for scores."""
    return "min" if "loss" in key or key.endswith(("mae", "mse", "rmse")) else "max"


def _phase_summary(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    for row in history:
        if row.get("stage"):  # a head solve's CV candidate or solver iteration: a chart point, not an epoch
            continue
        ph = out.setdefault(row["phase"], {"phase": row["phase_name"], "epochs": 0, "final": {}, "best": {}})
        ph["epochs"] += 1
        metrics = {k: v for k, v in row.items() if k not in _NOT_METRICS}
        ph["final"] = metrics
        for k, v in metrics.items():
            better = min if metric_mode(k) == "min" else max
            ph["best"][k] = better(ph["best"].get(k, v), v)
    return list(out.values())


def write_metrics(
    rec: RunRecord, evaluation: dict[str, Any], export: Optional[dict[str, Any]], test: Optional[dict[str, Any]] = None
) -> dict[str, Any]:
    final = {k: v for k, v in (rec.history[-1] if rec.history else {}).items() if k not in _NOT_METRICS}
    if evaluation.get("accuracy") is not None:
        cv = evaluation.get("method") == "cross-validation"
        final["cv_accuracy" if cv else "val_accuracy_exported"] = evaluation["accuracy"]
    metrics = {
        "final": final,
        "best": rec.best,
        "phases": _phase_summary(rec.history),
        "recipe": rec.recipe,
        "evaluation": {k: v for k, v in evaluation.items() if k != "predictions"},
        "test": {k: v for k, v in test.items() if k != "predictions"} if test else None,
        "export": export,
        "classes": rec.classes,
        "n_train": len(rec.splits.train),
        "n_val": len(rec.splits.val),
        "n_test": len(rec.splits.test),
        "seconds": round(rec.seconds, 1),
        "finished": time.time(),
    }
    atomic_write_text(rec.run_dir.metrics, json.dumps(metrics, indent=2, default=float))
    return metrics


def content_hash(paths: list[str], known: Optional[dict[str, tuple[str, str]]] = None) -> str:
    """sha256 over the sha256 of every training file's bytes, in sorted path order: it changes when
    any image or text changes (a path list would not notice an edited image). ``known``: the scan's
    fingerprints, whose digests spare reading every file a second time."""
    h = hashlib.sha256()
    for path in sorted(paths):
        digest = (known or {}).get(path, ("",))[0]
        if not digest:
            try:
                digest = sha256_file(path)
            except OSError:
                digest = f"unreadable:{path}"
        h.update(digest.encode())
    return h.hexdigest()


def hardware() -> dict[str, Any]:
    import os
    import platform

    from tlapp.base.memory import describe_bytes
    from tlapp.training.devices import devices

    found = devices()
    try:
        ram = describe_bytes(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        ram = "unknown"
    return {
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "cpu_cores": os.cpu_count(),
        "ram": ram,
        "device": found["device"],
        "gpus": found.get("gpus", []),
        "platform": platform.platform(),
    }


def card_data(rec: RunRecord, metrics: dict[str, Any], export: Optional[dict[str, Any]]) -> dict[str, Any]:
    """The model card as data (``model_card.json``); ``model_card.md`` is rendered from it."""
    p, e, scan = rec.project, rec.entry, rec.scan
    from tlapp.backbones.catalog import weights_origin

    phases = [ev["data"] for ev in rec.run_dir.read_events() if ev["type"] == "phase_start"]
    texts = [x.text or "" for x in scan.examples if x.text is not None]
    return {
        "schema": 1,
        "name": p.name,
        "task": p.task.type.value,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "data": {
            "source": scan.source,
            "content_sha256": (
                hashlib.sha256("\n".join(texts).encode()).hexdigest()
                if texts
                else content_hash(
                    [x.path for x in rec.splits.train + rec.splits.val + rec.splits.test], scan.fingerprints
                )
            ),
            "usable": len(scan.examples),
            "unusable": len(scan.bad),
            "ignored": len(scan.ignored),
            "class_counts": scan.counts,
            "split": {
                "seed": p.data.seed,
                "train": len(rec.splits.train),
                "val": len(rec.splits.val),
                "test": len(rec.splits.test),
            },
        },
        "backbone": {
            "name": e.name,
            "family": e.family,
            "params_m": e.params_m,
            "licence": e.licence,
            "weights": rec.weights_source,
            "weights_origin": weights_origin(e),
            "input_size": rec.input_size,
            "preprocessing": e.preprocessing,
            "chosen_from": rec.choice,
            "chosen_why": rec.choice_reason,
        },
        "head": {"pooling": p.head.pooling, "dropout": p.head.dropout, "hidden": p.head.hidden},
        "training": {
            "preset": p.train.preset,
            "batch_size": p.train.batch_size,
            "seed": p.train.seed,
            "class_weights": p.train.class_weights,
            "strategy": p.train.strategy,
            "recipe": rec.recipe,
            # Per phase as it ran: hyper-parameters, trainable counts and the freeze map (blocks).
            "phases": [
                {
                    k: ph.get(k)
                    for k in (
                        "index",
                        "name",
                        "epochs",
                        "learning_rate",
                        "solver",
                        "trainable_params",
                        "non_trainable_params",
                        "embedding_cache",
                        "blocks",
                    )
                }
                for ph in phases
            ],
            "planned_phases": [
                ph.model_dump(mode="json", exclude_defaults=True) | {"name": ph.name}
                for ph in (rec.phases or p.train.phases)
            ],
            "best": rec.best,
        },
        "metrics": {
            "final": metrics.get("final"),
            "cross_validation": rec.recipe.get("cv"),
            "val": metrics.get("evaluation"),
            "test": metrics.get("test"),
        },
        "export": export,
        **_data_insight(rec.run_dir),
        "environment": {"packages": versions(), "hardware": hardware(), "seconds": round(rec.seconds, 1)},
    }


def _data_insight(rd: RunDir) -> dict[str, Any]:
    """``data_forecast`` and ``label_issues`` for the card, when the run measured them."""
    out: dict[str, Any] = {}
    curve = rd.read_json(rd.curve)
    if curve:
        a = curve["analysis"]
        out["data_forecast"] = {
            "sentence": a["sentence"],
            **({k: a[k] for k in ("n_now", "ceiling", "forecast", "law")} if a.get("available") else {}),
            "note": "the head on the run's frozen embeddings, refit on nested subsets and scored on held-out folds",
        }
    issues = rd.read_json(rd.label_issues)
    if issues:
        out["label_issues"] = {
            "found": len(issues["issues"]),
            "estimated_errors": issues["estimated_errors"],
            "duplicate_conflicts": len(issues["duplicate_conflicts"]),
            "method": issues["method"],
        }
    return out


def md_table(rows: list[list[Any]], head: list[str]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _per_class_table(rep: dict[str, Any]) -> list[str]:
    if rep.get("per_class"):
        return [
            "",
            md_table(
                [
                    [c, f"{m['precision']:.3f}", f"{m['recall']:.3f}", f"{m['f1']:.3f}", m["support"]]
                    for c, m in rep["per_class"].items()
                ],
                ["class", "precision", "recall", "F1", "support"],
            ),
        ]
    if rep.get("per_label"):
        return [
            "",
            md_table(
                [
                    [
                        c,
                        f"{m['precision']:.3f}",
                        f"{m['recall']:.3f}",
                        f"{m['f1']:.3f}",
                        m["support"],
                        f"{m['tuned_threshold']:.2f}",
                    ]
                    for c, m in rep["per_label"].items()
                ],
                ["label", "precision", "recall", "F1", "support", "best-F1 threshold (val)"],
            ),
        ]
    return []


def render_card(card: dict[str, Any]) -> str:
    """``model_card.md`` from the card's data: one source of truth for both files."""
    from tlapp.deploy.metrics import summary_lines
    from tlapp.deploy.report import pending_line
    from tlapp.deploy.report import summary as export_summary

    d, b, t, env = card["data"], card["backbone"], card["training"], card["environment"]
    text_task = card["task"].startswith("text_")
    parts = [
        f"# Model card: {card['name']}",
        "",
        f"- Task: {card['task']}",
        f"- Backbone: {b['name']} ({b['family']}, {b['params_m']:.1f} M params, licence {b['licence']})",
        f"- Weights: {b['weights']} — {b['weights_origin']}",
        *(
            [
                "- Chosen before training by the cross-validated linear head on each one's embeddings: "
                + ", ".join(
                    f"{c['name']}@{c['size']} {c['score']:.3f}"
                    if c.get("score") is not None
                    else f"{c['name']} (not run: {c['why']})"
                    for c in b["chosen_from"]
                )
                + (f"; {b['chosen_why']}" if b.get("chosen_why") else "")
            ]
            if b.get("chosen_from")
            else []
        ),
        (
            f"- Input: raw strings (tokenizer inside the model; {b['input_size']} tokens, padded/truncated)"
            if text_task
            else f"- Input: raw RGB pixels 0-255, any size (resized to {b['input_size']}x{b['input_size']} inside the "
            f"model; backbone scaling '{b['preprocessing']}' is built in)"
        ),
        f"- Created: {card['created']} with " + ", ".join(f"{k} {v}" for k, v in env["packages"].items()),
        f"- Hardware: {env['hardware']['processor']}, {env['hardware']['cpu_cores']} cores, {env['hardware']['ram']}"
        f" RAM, {env['hardware']['device']}; {env['seconds']:.0f} s",
        "",
        "## Data",
        "",
        f"Source `{d['source']}`; content sha256 {d['content_sha256'][:16]}…; {d['usable']} usable, "
        f"{d['unusable']} unusable files skipped, {d['ignored']} ignored. Split seed {d['split']['seed']}: "
        f"train {d['split']['train']}, val {d['split']['val']}, test {d['split']['test']}.",
        "",
        md_table([[c, n] for c, n in d["class_counts"].items()], ["class", "examples"]) if d["class_counts"] else "",
        "",
        "## Training",
        "",
    ]
    if t["recipe"]:
        parts += [f"Recipe: {t['recipe'].get('summary', '')}", ""]
    parts += [
        md_table(
            [
                [
                    ph["index"],
                    ph["name"],
                    "—" if ph.get("solver") else ph["epochs"],
                    "—" if ph["learning_rate"] is None else ph["learning_rate"],
                    ph.get("solver") or "Adam/fit",
                    ph["trainable_params"],
                    "cached" if ph["embedding_cache"] else "images",
                ]
                for ph in t["phases"]
            ],
            ["#", "phase", "epochs", "lr", "solver", "trainable params", "input"],
        ),
        "",
        f"Batch size {t['batch_size']}; class weights {t['class_weights']}; strategy {t['strategy']}; "
        f"head: pooling {card['head']['pooling']}, dropout {card['head']['dropout']}, "
        f"hidden {card['head']['hidden']}.",
    ]
    last = next((ph for ph in reversed(t["phases"]) if ph.get("blocks")), None)
    if last:
        parts += [
            "",
            f"Freeze map of phase '{last['name']}' (backbone blocks):",
            "",
            md_table(
                [[s["block"], s["layers"], s["params"], s["trainable_params"]] for s in last["blocks"]],
                ["block", "layers", "params", "trainable params"],
            ),
        ]
    m = card["metrics"]
    parts += ["", "## Metrics", ""]
    for name, rep in (("Validation", m["val"]), ("Test (held out, evaluated once)", m["test"])):
        if rep:
            parts += [f"**{name}**", "", *summary_lines(rep), *_per_class_table(rep), ""]
    if m["cross_validation"]:
        parts += [f"Cross-validation of the head: {json.dumps(m['cross_validation'], default=float)}", ""]
    if card.get("data_forecast") or card.get("label_issues"):
        parts += ["## Data: more of it, and its labels", ""]
        if card.get("data_forecast"):
            parts += [f"More data? {card['data_forecast']['sentence']}", ""]
        li = card.get("label_issues")
        if li:
            parts += [
                f"Labels: {li['found']} example(s) look mislabelled (estimated label errors "
                f"{li['estimated_errors']:.0f}; {li['method']}); `tlapp label-issues RUN` lists them.",
                "",
            ]
    ex = card["export"]
    if ex:
        parts += [
            "## Export",
            "",
            f"Folder `{ex.get('dir')}`; formats {ex.get('formats')}.",
            f"Fresh-process parity check: {(ex.get('verify') or {}).get('summary', 'not run')}",
            "",
            *([pending_line()] if ex.get("report_pending") else export_summary(ex.get("report"))),
            "",
        ]
        if ex.get("errors"):
            parts += ["Not exported: " + "; ".join(f"{k}: {v}" for k, v in ex["errors"].items()), ""]
    parts += ["## Limits", "", "Validated only on the data above; accuracy on other sources may be lower."]
    return "\n".join(parts) + "\n"


def write_model_card(rec: RunRecord, metrics: dict[str, Any], export: Optional[dict[str, Any]]) -> dict[str, Any]:
    card = card_data(rec, metrics, export)
    atomic_write_text(rec.run_dir.model_card_json, json.dumps(card, indent=1, default=float))
    atomic_write_text(rec.run_dir.model_card, render_card(card))
    return card
