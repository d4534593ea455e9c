"""The fresh-process export check: it fails when an artifact answers differently, and the exporter's
incremental protocol (each file sent as it is written, the rest at the end) checks every file."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np

from tlapp.deploy.export import FreshVerifier
from tlapp.deploy.samples import FILE, read_samples, write_samples


def _copy_export(trained_run, tmp_path):
    """The run's export beside a copy of its split (the report reads the split next to the folder)."""
    run_dir = trained_run[2]
    src = run_dir / "export"
    dst = tmp_path / "run" / "export"
    shutil.copytree(src, dst)
    shutil.copy(run_dir / "split.json", dst.parent / "split.json")
    return dst


def test_the_check_fails_when_an_artifact_answers_otherwise(trained_run, tmp_path):
    export = _copy_export(trained_run, tmp_path)
    data = read_samples(export / FILE)
    wrong = np.roll(np.asarray(data["expected"]), 1, axis=-1)  # what a model with shuffled outputs would say
    write_samples(export / FILE, wrong, images=data["images"], pngs=data["png"])
    out = subprocess.run(
        [sys.executable, "-m", "tlapp.deploy.verify", str(export)], capture_output=True, text=True, timeout=600
    )
    result = json.loads([x for x in out.stdout.splitlines() if x.startswith("{")][-1])
    assert result["ok"] is False and result["summary"].startswith("FAILED")
    assert {r["artifact"] for r in result["results"] if not r["ok"]} >= {"model.keras", "saved_model:serving_default"}


def test_files_sent_early_and_the_rest_at_the_end_are_all_checked_once(trained_run, tmp_path):
    export = _copy_export(trained_run, tmp_path)
    v = FreshVerifier.start()
    v.send(export, ["model.keras"])
    result = v.finish(export)
    names = [r["artifact"] for r in result["results"]]
    assert result["ok"] is True
    assert names.count("model.keras") == 1 and "saved_model:serving_bytes" in names
    assert set(result["report"]["artifacts"]) == {"model.keras", "saved_model"}
