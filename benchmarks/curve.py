"""How honest is the data forecast? Fit the learning curve on at most half the data, forecast the full size,
and compare with what the full size actually scores.

    python benchmarks/curve.py                 # every offline set
    python benchmarks/curve.py --sets sign50   # one

Per set (the same offline sets and backbones as ``benchmarks/recipe.py``: EfficientNet-Lite0 @224 for
images, MiniLM-L6 for texts), the pool's embeddings are computed once; then tlapp's own curve protocol
(:func:`tlapp.training.curve.measure`, five seeds: a stratified held-out fold per seed, nested subsets
of the rest, the head refit with one L2 chosen by cross-validation on the pool) gives accuracy per
subset. The forecast uses only the subsets of at most half the pool (10, 20, 35, 50 %) and predicts the
score of the full pool (100 %), which was measured on the same held-out folds but never shown to the fit.
Reported per set: forecast, actual, error, and whether the 10-90 % band covers the actual score.
Goal (issue #23): within 2 points on average, and the band covers the actual score on most sets.
Results: ``benchmarks/results/curve.json`` with commit, date and machine.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from provenance import provenance  # noqa: E402
from recipe import SEED, SIGN_DIR, _by_class, _embedder, read_sms  # noqa: E402

# name -> (source, examples per class in the pool, or total texts)
SETS = {
    "sign20": ("sign", 20),
    "sign50": ("sign", 50),
    "sign150": ("sign", 150),
    "digits40": ("digits", 40),
    "digits120": ("digits", 120),
    "sms400": ("sms", 400),
    "sms1500": ("sms", 1500),
}
HALF = 4  # the fractions the forecast may see: 0.1, 0.2, 0.35, 0.5


def _pool(source: str, size: int, work: Path) -> tuple[str, list[str], list[str]]:
    """(modality, items, labels): a seeded, class-stratified sample."""
    rng = random.Random(SEED)
    if source == "sms":
        rows = read_sms()
        rng.shuffle(rows)
        spam = [r for r in rows if r[1] == "spam"][: size * 13 // 100]  # the corpus's 13 % spam, kept
        ham = [r for r in rows if r[1] == "ham"][: size - len(spam)]
        rows = spam + ham
        return "text", [t for t, _ in rows], [y for _, y in rows]
    if source == "sign":
        if not SIGN_DIR.is_dir():
            raise FileNotFoundError(f"{SIGN_DIR} is missing (shared fixtures not available)")
        by = _by_class(SIGN_DIR)
    else:
        from tlapp.data.demo import write_digits

        by = _by_class(write_digits(work / "_digits_png"))
    items = []
    for label, files in by.items():
        files = list(files)
        rng.shuffle(files)
        items += [(f, label) for f in files[:size]]
    return "image", [f for f, _ in items], [y for _, y in items]


def _embeddings(modality: str, items: list[str], cache: Path) -> np.ndarray:
    if cache.is_file():
        return np.load(cache)
    x = np.asarray(_embedder(modality)(items), np.float32)
    np.save(cache, x)
    return x


def evaluate_set(name: str, work: Path) -> dict[str, Any]:
    from tlapp.config import TaskType
    from tlapp.training import curve
    from tlapp.training.linear_head import choose_folds, cross_validate

    source, size = SETS[name]
    modality, items, labels = _pool(source, size, work)
    classes = sorted(set(labels))
    y = np.array([classes.index(v) for v in labels])
    t0 = time.time()
    x = _embeddings(modality, items, work / f"{source}-{size}.npy")
    embed_s = time.time() - t0
    task = TaskType.image_classification if modality == "image" else TaskType.text_classification
    cv = cross_validate(x, y, task, len(classes), folds=choose_folds(y, task), seed=SEED)
    raw = curve.measure(x, y, task, len(classes), cv.l2, seeds=5, budget_s=1e9)
    full = curve.analyse(raw, len(y) / len(classes))
    half = {**raw, "runs": [{**r, "wrong": r["wrong"][:HALF], "per_class": r["per_class"][:HALF]} for r in raw["runs"]]}
    n_full = float(np.mean([r["per_class"][-1] for r in raw["runs"]]))
    fc = curve.analyse(half, n_full)["forecast"][0]
    actual = full["points"][-1]["accuracy"]
    return {
        "set": name,
        "modality": modality,
        "examples": len(y),
        "classes": len(classes),
        "fit_on_per_class": [round(p["per_class"], 1) for p in full["points"][:HALF]],
        "forecast_at_per_class": round(n_full, 1),
        "forecast": fc["accuracy"],
        "low": fc["low"],
        "high": fc["high"],
        "actual": actual,
        "error": fc["accuracy"] - actual,
        "covered": fc["low"] <= actual <= fc["high"],
        "l2": cv.l2,
        "embed_s": round(embed_s, 1),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sets", default=",".join(SETS), help=f"comma-separated, of {', '.join(SETS)}")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "curve.json")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "tlapp-curve-bench")
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.sets.split(",") if n.strip()]
    unknown = [n for n in names if n not in SETS]
    if unknown:
        ap.error(f"--sets: unknown {unknown}; known: {', '.join(SETS)}")
    args.work.mkdir(parents=True, exist_ok=True)
    rows, failed = [], 0
    for n in names:
        try:
            rows.append(evaluate_set(n, args.work))
        except FileNotFoundError as e:
            rows.append({"set": n, "skipped": str(e)})
        except Exception as e:  # noqa: BLE001  recorded, and the exit code says so
            failed += 1
            rows.append({"set": n, "error": f"{type(e).__name__}: {e}"})
        r = rows[-1]
        if "forecast" in r:
            print(
                f"{n:10} forecast {r['forecast']:.3f} ({r['low']:.3f}-{r['high']:.3f}) actual {r['actual']:.3f} "
                f"error {r['error']:+.3f} {'covered' if r['covered'] else 'NOT covered'}",
                flush=True,
            )
        else:
            print(f"{n:10} {r.get('skipped') or r.get('error')}", flush=True)
    done = [r for r in rows if "forecast" in r]
    summary = {
        "sets": len(done),
        "mean_abs_error": float(np.mean([abs(r["error"]) for r in done])) if done else None,
        "mean_error": float(np.mean([r["error"] for r in done])) if done else None,
        "covered": sum(r["covered"] for r in done),
    }
    print(json.dumps(summary))
    doc = {"provenance": provenance(), "command": "python benchmarks/curve.py --sets " + ",".join(names)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({**doc, "summary": summary, "rows": rows}, indent=1, default=float) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
