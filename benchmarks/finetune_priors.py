"""The fine-tune priors (issue #22, item 3): what a kept fine-tune does to held-out accuracy against the
head alone, per modality and data size, as the preset runs it.

    python benchmarks/finetune_priors.py                     # runs benchmarks/recipe.py twice (about an hour)
    python benchmarks/finetune_priors.py --from ALWAYS.json NEVER.json   # from two recipe.py results files

``benchmarks/recipe.py --methods tlapp`` on every set, once with ``train.finetune=always`` (the fine-tune
runs and is kept at its best epoch) and once with ``train.finetune=never`` (the head alone, refit on all
the data); both are scored on the held-out part that no method sees. Writes
``benchmarks/results/finetune_priors.json``: per set its modality, examples per class, both accuracies
and the gain. :data:`tlapp.training.plan.PRIORS` holds these gains, and tests/test_recipe.py fails when
the two differ, so the auto rule's evidence is always this file.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results" / "finetune_priors.json"


def _recipe(setting: str, work: Path) -> Path:
    out = work / f"{setting}.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "recipe.py"), "--methods", "tlapp"]
    cmd += ["--tlapp-set", f"train.finetune={setting}", "--work", str(work / setting), "--out", str(out)]
    subprocess.run(cmd, check=True)
    return out


def classes_of(s: dict[str, Any]) -> int:
    """The number of classes a recipe.py set has (its tlapp run's final model says it)."""
    run_dir = Path(s["methods"]["tlapp"].get("run_dir", ""))
    labels = run_dir / "export" / "labels.txt"
    if labels.is_file():
        return len(labels.read_text().split())
    return {"image": 10, "text": 2}[s["modality"]]  # the sets recipe.py builds: sign digits / digits, SMS spam


def priors(always: dict[str, Any], never: dict[str, Any], classes: dict[str, int]) -> list[dict[str, Any]]:
    rows = []
    for name, s in always["sets"].items():
        a, n = s["methods"].get("tlapp", {}), never["sets"].get(name, {}).get("methods", {}).get("tlapp", {})
        if "accuracy" not in a or "accuracy" not in n:
            continue
        k = classes[name]
        rows.append(
            {
                "set": name,
                "modality": s["modality"],
                "n_train": s["n_train"],
                "classes": k,
                "per_class": round(s["n_train"] / k),
                "n_heldout": s["n_heldout"],
                "accuracy_always": a["accuracy"],
                "accuracy_never": n["accuracy"],
                "gain": round(a["accuracy"] - n["accuracy"], 4),
                "seconds_always": round(a["seconds"], 1),
                "seconds_never": round(n["seconds"], 1),
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--from", dest="files", nargs=2, type=Path, metavar=("ALWAYS", "NEVER"))
    ap.add_argument("--json", type=Path, default=OUT)
    args = ap.parse_args()
    if args.files:
        always_f, never_f = args.files
    else:
        work = Path(tempfile.mkdtemp(prefix="tlapp-priors-"))
        always_f, never_f = _recipe("always", work), _recipe("never", work)
    always, never = json.loads(always_f.read_text()), json.loads(never_f.read_text())
    classes = {name: classes_of(s) for name, s in always["sets"].items()}
    doc = {
        "command": "python benchmarks/finetune_priors.py",
        "provenance": always["meta"].get("provenance"),
        "provenance_never": never["meta"].get("provenance"),
        "priors": priors(always, never, classes),
    }
    args.json.write_text(json.dumps(doc, indent=1) + "\n")
    for r in doc["priors"]:
        print(
            f"{r['set']:8s} {r['modality']:5s} {r['per_class']:4d}/class  always {r['accuracy_always']:.3f}  "
            f"never {r['accuracy_never']:.3f}  gain {r['gain'] * 100:+.1f} points"
        )
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
