"""Render the README's measured tables from the results files the benchmarks wrote.

    python benchmarks/report.py            # print every block
    python benchmarks/report.py --write    # put them into README.md between their markers
    python benchmarks/report.py --check    # exit 1 when README.md differs (tests/test_readme_figures.py)

A block sits in README.md between ``<!-- report:NAME -->`` and ``<!-- /report:NAME -->``; each ends
with the provenance of its results file (commit, dirty tree or not, date, CPU and cores), so every
figure in it can be traced to the run that measured it. A figure that no results file holds does
not belong in those blocks.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"
SET_LABELS = {
    "sign10": "sign-language, 10/class",
    "sign30": "sign-language, 30/class",
    "sign100": "sign-language, 100/class",
    "digits": "sklearn digits (64 px)",
    "sms200": "SMS spam",
    "sms1000": "SMS spam",
}


def _load(name: str) -> Any:
    return json.loads((RESULTS / name).read_text())


def source_line(prov: dict[str, Any] | None, file: str, command: str) -> str:
    if not prov:
        return f"_Source: `benchmarks/results/{file}` (`{command}`); commit and machine not recorded._"
    return f"_Source: `benchmarks/results/{file}` (`{command}`), {_made(prov)}._"


def _made(prov: dict[str, Any]) -> str:
    """Which commit, when and on what machine a results file (or a part of it) was written."""
    m = prov.get("machine", {})
    dirty = ", uncommitted changes" if prov.get("dirty") else ""
    return f"commit {prov.get('commit')}{dirty}, {prov.get('date')}, {m.get('cpu')}, {m.get('cores')} cores"


def _num(v: Any, fmt: str) -> str:
    return "—" if v is None else format(v, fmt)


def _shown(argv: list[str]) -> list[str]:
    """A benchmark's command line as run, without where it kept its scratch files or which file it merged into."""
    hidden = ("--work", "--out", "--merge")
    return [a for i, a in enumerate(argv) if a not in hidden and not (i and argv[i - 1] in hidden)]


def _merged_line(m: dict[str, Any], labels: dict[str, str]) -> str:
    """Who added rows to a results file (``recipe.py --merge``): its methods, command, commit, date and machine."""
    command = " ".join(["python benchmarks/recipe.py", *_shown(m["argv"]), "--merge recipe.json"])
    return (
        f"_{', '.join(labels.get(x, x) for x in m['methods'])} rows: `{command}`, {_made(m.get('provenance') or {})}._"
    )


def recipe_block() -> str:
    doc = _load("recipe.json")
    labels = {"tlapp": "tlapp", "tlapp_best": "tlapp best", "keras_guide": "Keras guide", "linear_probe": "probe"}
    ran = [m for m in labels if m in doc["meta"].get("methods", labels)]
    rows = [["set", "train", *[f"{labels[m]} {k}" for m in ran for k in ("acc", "s")]]]
    for name, r in doc["sets"].items():
        if "error" in r:
            continue
        m = r.get("methods", {})
        cells = [SET_LABELS.get(name, name), str(r.get("n_train", ""))]
        for meth in ran:
            cells += [_num(m.get(meth, {}).get("accuracy"), ".3f"), _num(m.get(meth, {}).get("seconds"), ".0f")]
        rows.append(cells)
    av = doc["summary"]["averages"]
    rows.append(
        ["**average**", ""]
        + [
            x
            for meth in ran
            for x in (_num(av.get(meth, {}).get("accuracy"), ".3f"), _num(av.get(meth, {}).get("seconds"), ".0f"))
        ]
    )
    command = " ".join(["python benchmarks/recipe.py", *_shown(doc["meta"].get("argv", []))])
    decisions = []
    for name, r in doc["sets"].items():
        for meth in ("tlapp", "tlapp_best"):
            res = r.get("methods", {}).get(meth) or {}
            if res.get("backbone"):
                rec = res.get("recipe") or {}
                tuned = bool((rec.get("finetune") or {}).get("finetune")) or "finetune_kept" in rec
                ft = (
                    ("fine-tune kept" if rec.get("finetune_kept") else "fine-tune not kept")
                    if tuned
                    else "no fine-tune"
                )
                decisions.append(f"{SET_LABELS.get(name, name)} / {labels[meth]}: {res['backbone']}, {ft}")
    checks = doc["summary"].get("checks", {})
    goals = "; ".join(
        f"{c['goal']}: {({True: 'yes', False: 'no', None: 'not run'})[c['pass']]}" for c in checks.values()
    )
    extra = ("\n\nBackbone and fine-tune per row: " + "; ".join(decisions) + ".") if decisions else ""
    extra += _stages_table(doc)
    return (
        _table(rows)
        + extra
        + ("\n\nGoals: " + goals + "." if goals else "")
        + "\n\n"
        + source_line(doc["meta"].get("provenance"), "recipe.json", command)
        + "".join("\n" + _merged_line(m, labels) for m in doc["meta"].get("merged", []))
    )


STAGES = {
    "process": "process start",
    "scan_plan": "scan + plan",
    "embedding": "embedding passes",
    "head": "head (CV, insights, solve)",
    "finetune": "fine-tune",
    "refit": "refit on all data",
    "export_check": "export + fresh check",
}


def _stages_table(doc: dict) -> str:
    """Where the default run's seconds went, per set (benchmarks/recipe.py's ``run_stages``)."""
    rows = [["set (tlapp, seconds)", *STAGES.values(), "fixed share"]]
    for name, r in doc["sets"].items():
        st = (r.get("methods", {}).get("tlapp") or {}).get("stages")
        if not st:
            continue
        total = sum(st.values())
        fixed = (st["process"] + st["scan_plan"] + st["export_check"]) / max(total, 1e-9)
        rows.append([SET_LABELS.get(name, name), *[_num(st.get(k), ".1f") for k in STAGES], f"{fixed:.0%}"])
    if len(rows) == 1:
        return ""
    return "\n\nWhere tlapp's seconds went (from each run's `events.jsonl`; fixed = process start, scan + plan, " + (
        "export + check):\n\n" + _table(rows)
    )


def suite_block() -> str:
    doc = _load("suite.json")
    rows_in = doc["rows"] if isinstance(doc, dict) else doc
    rows = [["benchmark", "value", "goal", "meets"]]
    for r in rows_in:
        goal = ("≥ " if r["higher_is_better"] else "< ") + f"{r['goal']:g}"
        meets = {True: "yes", False: "no", None: "—"}[r["meets"]]
        rows.append([f"`{r['name']}`", _num(r["value"], ".3g"), goal, meets])
    mode = "quick" if isinstance(doc, dict) and doc.get("quick") else "full"
    return (
        _table(rows)
        + "\n\n"
        + source_line(
            doc.get("provenance") if isinstance(doc, dict) else None,
            "suite.json",
            f"python benchmarks/run.py{' --quick' * (mode == 'quick')}",
        )
    )


def sft_block() -> str:
    doc = _load("sft.json")
    s = doc["smollm2_lora_sft"]
    ppl = s.get("perplexity_plain_english") or {}
    text = (
        f"LoRA SFT of SmolLM2-135M on {s.get('pairs')} paraphrases of an invented fact, the default recipe: "
        f"{s.get('steps')} steps, median {_num(s.get('seconds_per_step_median'), '.2f')} s a step, first step "
        f"{_num(s.get('first_step_seconds'), '.0f')} s, peak RSS {_num(s.get('peak_rss_gb'), '.2f')} GB; the "
        f'held-out paraphrase answered with the fact: {s.get("learnt_fact")}; "Paris" kept: {s.get("kept_paris")}; '
        f"plain-English perplexity {_num(ppl.get('before'), '.1f')} → {_num(ppl.get('after'), '.1f')}."
    )
    rows = [["text classification (SMS spam, MiniLM-L6)", "validation accuracy", "trainable params", "fine-tune s"]]
    for r in doc.get("text_lora_vs_top_blocks", []):
        rows.append(
            [
                r["name"],
                f"{r['val_accuracy']:.3f} (n={r['n_val']})",
                f"{r['trainable_params']:,}",
                _num(r.get("finetune_seconds"), ".0f"),
            ]
        )
    return (
        text
        + "\n\n"
        + _table(rows)
        + "\n\n"
        + source_line(doc.get("provenance"), "sft.json", "python benchmarks/sft.py")
    )


def dpo_block() -> str:
    if not (RESULTS / "dpo.json").exists():
        return "*Not measured yet: run `python benchmarks/dpo.py`.*"
    doc = _load("dpo.json")
    sc, r = doc["step_cost"], doc["run"]
    pa, style = r["held_out_preference_accuracy"], r["new_prompts_in_style"]
    rows = [
        ["", "s / step (median)", "first step s", "peak RSS GB", "batch"],
        [
            "LoRA SFT",
            f"{sc['sft']['seconds_per_step_median']:.2f}",
            f"{sc['sft']['first_step_s']:.0f}",
            f"{sc['sft']['peak_rss_gb']:.2f}",
            "×".join(map(str, sc["sft"]["batch_shape"])),
        ],
        [
            "LoRA DPO",
            f"{sc['dpo']['seconds_per_step_median']:.2f}",
            f"{sc['dpo']['first_step_s']:.0f}",
            f"{sc['dpo']['peak_rss_gb']:.2f}",
            "×".join(map(str, sc["dpo"]["batch_shape"])),
        ],
        ["**DPO / SFT**", f"**{sc['step_ratio']:.2f}×**", "", f"**{sc['memory_ratio']:.2f}×**", ""],
    ]
    text = (
        f"The reference pass over the same 4 triples took {sc['dpo']['reference_pass_s']:.0f} s, once per run. "
        f"The default DPO run (beta {r['beta']:g}, {r['loss']} loss, sft_weight {r.get('sft_weight', 0):g}, "
        f"lr {r['learning_rate']:g}) on {r['triples']} "
        f"triples ({r['n_train']} train, {r['n_val']} held out), {r['epochs']} epochs, {r['steps']} steps, "
        f"{r['run_seconds']:.0f} s as a whole process with export and check, peak RSS {r['peak_rss_gb']:.2f} GB: "
        f"held-out preference accuracy **{pa['before']:.2f} → {pa['after']:.2f}** (n={pa['n']}); reward accuracy "
        f"{r['val_reward_accuracy']:.2f}, margin {r['val_reward_margin']:.2f}; greedy answers to {style['of']} new "
        f'prompts in the house style: {style["before"]} before, {style["after"]} after; "{r["general"]["prompt"]}" '
        f'→ "{r["general"]["after"]}" (Paris kept: {r["general"]["kept_paris"]}).'
    )
    return (
        _table(rows) + "\n\n" + text + "\n\n" + source_line(doc["provenance"], "dpo.json", "python benchmarks/dpo.py")
    )


def curve_block() -> str:
    doc = _load("curve.json")
    rows = [["set", "examples", "fit on (per class)", "forecast at", "forecast (10-90 %)", "actual", "error"]]
    for r in doc["rows"]:
        if "forecast" not in r:
            continue
        rows.append(
            [
                r["set"],
                str(r["examples"]),
                ", ".join(f"{v:g}" for v in r["fit_on_per_class"]),
                f"{r['forecast_at_per_class']:g}",
                f"{r['forecast']:.3f} ({r['low']:.3f}-{r['high']:.3f})",
                f"{r['actual']:.3f}",
                f"{r['error']:+.3f}",
            ]
        )
    s = doc["summary"]
    text = (
        f"Mean absolute error of the forecast {_num(s['mean_abs_error'], '.3f')} (mean {_num(s['mean_error'], '+.3f')}); "
        f"the band covers the actual score on {s['covered']} of {s['sets']} sets."
    )
    return _table(rows) + "\n\n" + text + "\n\n" + source_line(doc["provenance"], "curve.json", doc["command"])


def label_issues_block() -> str:
    doc = _load("label_issues.json")
    rows = [
        [
            "set",
            "examples",
            "flipped (k)",
            "listed",
            "precision@k",
            "recall@k",
            "recall@2k",
            "held-out acc before → after excluding",
        ]
    ]
    for r in doc["rows"]:
        if "recall_at_k" not in r:
            continue
        rows.append(
            [
                r["set"],
                str(r["examples"]),
                str(r["flipped"]),
                str(r["listed"]),
                f"{r['precision_at_k']:.2f}",
                f"{r['recall_at_k']:.2f}",
                f"{r['recall_at_2k']:.2f}",
                f"{r['heldout_before']:.3f} → {r['heldout_after_excluding']:.3f}",
            ]
        )
    return _table(rows) + "\n\n" + source_line(doc["provenance"], "label_issues.json", doc["command"])


def suggest_block() -> str:
    doc = _load("suggest.json")
    pr = doc["protocol"]
    rows = [["set", "classes", "labeled: start → end", "suggested", "random", "gain"]]
    for r in doc["rows"]:
        if "suggest" not in r:
            continue
        rows.append(
            [
                r["set"],
                str(r["classes"]),
                f"{r['start_labeled']} → {r['labeled_at_end']}",
                f"{r['suggest']:.3f}",
                f"{r['random']:.3f}",
                f"{r['gain']:+.3f}",
            ]
        )
    text = (
        f"Held-out accuracy after {pr['rounds']} rounds of {pr['per_round']} labels from {pr['start_per_class']} per "
        f"class, mean of {pr['seeds']} seeds."
    )
    return _table(rows) + "\n\n" + text + "\n\n" + source_line(doc["provenance"], "suggest.json", doc["command"])


def export_cost_block() -> str:
    if not (RESULTS / "export_cost.json").exists():
        return "*Not measured yet: run `python benchmarks/export_cost.py`.*"
    doc = _load("export_cost.json")
    rows = [["default run, 245 photos", "process s", "run s", "embedding passes s", "end of run s", "share"]]
    for key in ("before", "after"):
        r = doc.get(key)
        if not r:
            continue
        ex = r.get("export_seconds") or {}
        label = f"{key} ({r.get('commit') or (doc.get('provenance') or {}).get('commit', '?')})"
        rows.append(
            [
                label,
                f"{r['process_seconds']:.1f}",
                f"{r['run']:.1f}",
                " + ".join(f"{x:.1f}" for x in r["embedding_passes"]),
                f"{r['fixed_cost']:.1f} (write {ex.get('write', 0):.1f}, check {ex.get('verify_wait', 0):.1f})",
                f"{r['fixed_share']:.0%}",
            ]
        )
    sm = doc.get("saved_model_write", {}).get("best", {})
    text = (
        "The end of a run is the held-out evaluation, the export and the fresh-process check (before "
        "ffd2ed4 the export report too; it now follows run completed, in the background"
        + (
            f": it landed {a['report_after_run_end']:.1f} s after"
            if (a := doc.get("after") or {}).get("report_after_run_end") is not None
            else ""
        )
        + "). "
        f"The SavedModel write alone on that model: {_num(sm.get('export_archive'), '.1f')} s with Keras's "
        f"ExportArchive, {_num(sm.get('tlapp'), '.1f')} s with tlapp's writer."
    )
    return (
        _table(rows)
        + "\n\n"
        + text
        + "\n\n"
        + source_line(doc.get("provenance"), "export_cost.json", "python benchmarks/export_cost.py --baseline OLD")
    )


def finetune_priors_block() -> str:
    doc = _load("finetune_priors.json")
    rows = [["set", "modality", "per class", "fine-tune kept", "head alone", "gain (points)"]]
    for r in doc.get("priors", []):
        rows.append(
            [
                SET_LABELS.get(r["set"], r["set"]),
                r["modality"],
                str(r["per_class"]),
                f"{r['accuracy_always']:.3f}",
                f"{r['accuracy_never']:.3f}",
                f"{r['gain'] * 100:+.1f}",
            ]
        )
    return _table(rows) + "\n\n" + source_line(doc.get("provenance"), "finetune_priors.json", doc.get("command", ""))


BLOCKS: dict[str, Callable[[], str]] = {
    "finetune_priors": finetune_priors_block,
    "export_cost": export_cost_block,
    "recipe": recipe_block,
    "suite": suite_block,
    "sft": sft_block,
    "dpo": dpo_block,
    "curve": curve_block,
    "label_issues": label_issues_block,
    "suggest": suggest_block,
}


def _table(rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    return "\n".join(out + ["| " + " | ".join(r) + " |" for r in rows[1:]])


def render_readme(text: str) -> str:
    """``text`` with every report block replaced by what the results files say now."""
    for name, fn in BLOCKS.items():
        pattern = re.compile(rf"(<!-- report:{name} -->\n)(?:.*?\n)?(<!-- /report:{name} -->)", re.S)
        if not pattern.search(text):
            raise SystemExit(f"README.md has no <!-- report:{name} --> block")
        text = pattern.sub(lambda m, body=fn(): m.group(1) + body + "\n" + m.group(2), text)
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args(argv)
    text = README.read_text()
    new = render_readme(text)
    if args.write:
        README.write_text(new)
    elif args.check:
        if new != text:
            print(
                "README.md's measured tables differ from benchmarks/results: run python benchmarks/report.py --write",
                file=sys.stderr,
            )
            return 1
    else:
        for name, fn in BLOCKS.items():
            print(f"<!-- report:{name} -->\n{fn()}\n<!-- /report:{name} -->\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
