"""Issue #22, item 1 in numbers: where a small image run's time goes, and the fixed cost of its end.

    python benchmarks/export_cost.py [--baseline /path/to/older/checkout] [--json benchmarks/results/export_cost.json]

1. A default run (``tlapp init`` + ``tlapp train``, preset balanced, EfficientNet-Lite0) on 245
   sign-language photos from ``../shared`` (25 per class, 20 for the last class), as a user runs it:
   its own process, with the embedding store cleared first so every pass is a first pass. From the
   run's ``events.jsonl``: seconds per stage, and the **fixed cost** = the head phase's end to
   ``run completed`` (evaluation, export and the fresh-process check; before ffd2ed4 the export
   report too), as a share of the run, and when the export report, measured in the background
   since then, was written after ``run completed``. With ``--baseline``, the same run from another
   checkout (``PYTHONPATH``) first, in the same session on the same machine, so before and after
   are compared like with like.
2. The SavedModel write alone, on that run's model: Keras's ``ExportArchive`` with the three
   signatures (how tlapp wrote it before) vs :func:`tlapp.deploy.export.write_saved_model`, in one
   process, twice each, alternating.

Timings are reported, never asserted. Run it alone: anything else on the CPUs skews them.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SIGN = ROOT.parent / "shared" / "data" / "sign_language_digits" / "Dataset"
sys.path.insert(0, str(ROOT / "benchmarks"))
from provenance import provenance  # noqa: E402


def sign245(work: Path) -> Path:
    """245 photos: 25 per class, 20 for the last (a seeded choice, copied: tlapp reads no links)."""
    rng = random.Random(0)
    out = work / "sign245"
    shutil.rmtree(out, ignore_errors=True)
    classes = sorted(p.name for p in SIGN.iterdir() if p.is_dir())
    for c in classes:
        files = sorted((SIGN / c).iterdir())
        rng.shuffle(files)
        (out / c).mkdir(parents=True)
        for f in files[: 20 if c == classes[-1] else 25]:
            shutil.copy(f, out / c / f.name)
    return out


def stages(run_dir: Path) -> dict[str, Any]:
    """Seconds per stage of one run, from its events."""
    ev = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines() if x.strip()]
    t0 = ev[0]["time"]
    at = {}
    for e in ev:
        at.setdefault(e["type"], e["time"] - t0)
    embeds = [e for e in ev if e["type"] == "embeddings"]
    end, head_end = at["run_end"], at["phase_end"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    report = run_dir / "export" / "report.json"
    for _ in range(600):  # the background report (if this checkout has one) lands after the process ends
        if report.exists() and not (run_dir / "export" / "report.pending.json").exists():
            break
        time.sleep(0.2)
    report_after = report.stat().st_mtime - t0 - end if report.exists() else None
    out = {
        "scan_and_plan": round(at["phase_start"], 2),
        "embedding_passes": [round(e["data"]["seconds"], 2) for e in embeds],
        "head_and_insight": round(head_end - at["phase_start"] - sum(e["data"]["seconds"] for e in embeds), 2),
        "fixed_cost": round(end - head_end, 2),
        "run": round(end, 2),
        "fixed_share": round((end - head_end) / end, 3),
        "export_seconds": metrics.get("export", {}).get("seconds"),
        "report_after_run_end": round(report_after, 2) if report_after is not None else None,
        "decision": metrics.get("recipe", {}).get("summary") or metrics.get("recipe", {}).get("finetune"),
        "verified": metrics.get("export", {}).get("verified"),
    }
    return out


def default_run(work: Path, data: Path, root: Path, name: str) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(root), "TF_CPP_MIN_LOG_LEVEL": "2"}
    folder = work / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    clear = "from tlapp.training import embcache; embcache.clear()"
    subprocess.run([sys.executable, "-c", clear], env=env, check=True, cwd=folder)
    subprocess.run(
        [sys.executable, "-m", "tlapp", "init", "p.yaml", "--data", str(data)], env=env, check=True, cwd=folder
    )
    t0 = time.time()
    done = subprocess.run(
        [sys.executable, "-m", "tlapp", "train", "p.yaml"], env=env, cwd=folder, capture_output=True, text=True
    )
    wall = time.time() - t0
    if done.returncode != 0:
        raise SystemExit(f"{name}: tlapp train failed: {done.stderr[-600:]}")
    run_dir = next((folder / "runs").iterdir())
    return {"root": str(root), "process_seconds": round(wall, 2), **stages(run_dir), "run_dir": str(run_dir)}


SM_WRITE = r"""
import json, sys, time, shutil
from pathlib import Path
from tlapp.base.tfenv import quiet_import, quiet_keras_hub
tf, keras = quiet_import(); quiet_keras_hub()
import tlapp.model.image_model
from tlapp.deploy import export as ex

model = keras.saving.load_model(Path(sys.argv[1]) / "model.keras", compile=False)
size, key, out = int(sys.argv[2]), "probabilities", Path(sys.argv[3])

def archive(folder):  # tlapp's writer before this change: Keras's ExportArchive
    a = keras.export.ExportArchive()
    a.track(model)
    core = tf.function(lambda image: model(image, training=False),
                       input_signature=[tf.TensorSpec((None, None, None, 3), tf.float32)])
    a.add_endpoint("serving_default", lambda image: {key: core(ex.resize_like_training(image, size))},
                   input_signature=[tf.TensorSpec((None, None, None, 3), tf.float32, name="image")])
    a.add_endpoint("serving_uint8", lambda image: {key: core(ex.resize_like_training(tf.cast(image, tf.float32), size))},
                   input_signature=[tf.TensorSpec((None, None, None, 3), tf.uint8, name="image")])
    a.add_endpoint("serving_bytes", lambda b: {key: core(tf.map_fn(lambda x: ex.decode_like_training(x, size), b,
                   fn_output_signature=tf.TensorSpec((size, size, 3), tf.float32)))},
                   input_signature=[tf.TensorSpec((None,), tf.string, name="image_bytes")])
    a.write_out(str(folder), verbose=False)

times = {"export_archive": [], "tlapp": []}
for i in range(2):
    for name, fn in (("export_archive", archive), ("tlapp", lambda f: ex.write_saved_model(model, f, size, key))):
        folder = out / f"{name}{i}"
        t = time.time(); fn(folder); times[name].append(round(time.time() - t, 2))
print(json.dumps(times))
"""


def saved_model_write(export_dir: Path, work: Path) -> dict[str, Any]:
    out = work / "sm"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    res = subprocess.run(
        [sys.executable, "-c", SM_WRITE, str(export_dir), "224", str(out)], env=env, capture_output=True, text=True
    )
    if res.returncode != 0:
        raise SystemExit(f"SavedModel write benchmark failed: {res.stderr[-600:]}")
    times = json.loads(res.stdout.strip().splitlines()[-1])
    best = {k: min(v) for k, v in times.items()}
    return {"seconds": times, "best": best, "ratio_tlapp_vs_archive": round(best["tlapp"] / best["export_archive"], 3)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline", type=Path, help="an older checkout to run first (its tlapp on PYTHONPATH)")
    ap.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "export_cost.json")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tlapp-export-cost-"))
    data = sign245(work)
    result: dict[str, Any] = {"provenance": provenance(), "set": "sign245 (25 per class, 20 in class 9)"}
    if args.baseline:
        base = subprocess.run(
            ["git", "-C", str(args.baseline), "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True
        )
        result["before"] = {"commit": base.stdout.strip(), **default_run(work, data, args.baseline.resolve(), "before")}
        print("before", json.dumps(result["before"]), flush=True)
    result["after"] = default_run(work, data, ROOT, "after")
    print("after", json.dumps(result["after"]), flush=True)
    result["saved_model_write"] = saved_model_write(Path(result["after"]["run_dir"]) / "export", work)
    print("saved_model_write", json.dumps(result["saved_model_write"]), flush=True)
    for k in ("before", "after"):
        if k in result:
            result[k].pop("run_dir", None)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
