"""Does "what to label next" beat labeling at random? Three rounds of ten labels each, from five per class.

    python benchmarks/suggest.py                  # sign150, digits120, sms1500
    python benchmarks/suggest.py --sets sms1500

Per set (the pools and cached embeddings of ``benchmarks/curve.py``: EfficientNet-Lite0 @224 for
images, MiniLM-L6 for texts) and per seed: 30 % of the pool is a held-out test part; from the rest, 5
examples per class start labeled and the others are "unlabeled". Each round fits tlapp's head (its L2
chosen by cross-validation on the labeled examples, as a run does) and labels 10 more: either the 10
that :func:`tlapp.deploy.suggest.rank` puts first (uncertainty mixed with k-center diversity, as
``tlapp suggest`` ranks them) or 10 at random. After 3 rounds, held-out accuracy. Reported per set:
the mean over seeds of both, and the gain. Results: ``benchmarks/results/suggest.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from curve import SETS, _embeddings, _pool  # noqa: E402
from provenance import provenance  # noqa: E402

START, PER_ROUND, ROUNDS, SEEDS = 5, 10, 3, 5
DEFAULT_SETS = ("sign150", "digits120", "sms1500")


def _fit(x: np.ndarray, y: np.ndarray, k: int, task: Any) -> Any:
    from tlapp.training.linear_head import choose_folds, cross_validate, fit_linear_head

    l2 = cross_validate(x, y, task, k, folds=choose_folds(y, task), seed=0).l2
    return fit_linear_head(x, y, task, k, l2)


def one_seed(x: np.ndarray, y: np.ndarray, k: int, task: Any, seed: int, strategy: str) -> float:
    from tlapp.deploy.suggest import rank
    from tlapp.training.linear_head import predict

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    test, pool = order[: int(0.3 * len(y))], order[int(0.3 * len(y)) :]
    labeled = np.concatenate([pool[y[pool] == c][:START] for c in range(k)])
    for _ in range(ROUNDS):
        rest = np.setdiff1d(pool, labeled)
        if strategy == "suggest":
            head = _fit(x[labeled], y[labeled], k, task)
            picked = rest[rank(predict(head, x[rest], task), x[rest], PER_ROUND)]
        else:
            picked = rng.choice(rest, PER_ROUND, replace=False)
        labeled = np.concatenate([labeled, picked])
    head = _fit(x[labeled], y[labeled], k, task)
    return float((predict(head, x[test], task).argmax(1) == y[test]).mean())


def evaluate_set(name: str, work: Path) -> dict[str, Any]:
    from tlapp.config import TaskType

    source, size = SETS[name]
    modality, items, labels = _pool(source, size, work)
    classes = sorted(set(labels))
    y = np.array([classes.index(v) for v in labels])
    x = _embeddings(modality, items, work / f"{source}-{size}.npy")
    task = TaskType.image_classification if modality == "image" else TaskType.text_classification
    acc = {s: [one_seed(x, y, len(classes), task, seed, s) for seed in range(SEEDS)] for s in ("suggest", "random")}
    return {
        "set": name,
        "classes": len(classes),
        "start_labeled": START * len(classes),
        "labeled_at_end": START * len(classes) + ROUNDS * PER_ROUND,
        "suggest": float(np.mean(acc["suggest"])),
        "random": float(np.mean(acc["random"])),
        "gain": float(np.mean(acc["suggest"]) - np.mean(acc["random"])),
        "per_seed": acc,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", default=",".join(DEFAULT_SETS))
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "suggest.json")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "tlapp-curve-bench")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.sets.split(",") if n.strip()]
    if [n for n in names if n not in SETS]:
        ap.error(f"--sets: known: {', '.join(SETS)}")
    args.work.mkdir(parents=True, exist_ok=True)
    rows, failed = [], 0
    for n in names:
        try:
            rows.append(evaluate_set(n, args.work))
            r = rows[-1]
            print(f"{n:10} suggested {r['suggest']:.3f}  random {r['random']:.3f}  gain {r['gain']:+.3f}", flush=True)
        except FileNotFoundError as e:
            rows.append({"set": n, "skipped": str(e)})
        except Exception as e:  # noqa: BLE001  recorded, and the exit code says so
            failed += 1
            rows.append({"set": n, "error": f"{type(e).__name__}: {e}"})
            print(f"{n:10} {rows[-1]['error']}", flush=True)
    doc = {
        "provenance": provenance(),
        "command": "python benchmarks/suggest.py --sets " + ",".join(names),
        "protocol": {"start_per_class": START, "per_round": PER_ROUND, "rounds": ROUNDS, "seeds": SEEDS},
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
