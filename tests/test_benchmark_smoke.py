"""The benchmark smoke step can fail: a benchmark that errors makes benchmarks/run.py exit 1 (CI's step),
after the other benchmarks ran and the rows were written with their provenance."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run_module():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "benchmarks" / "run.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_a_benchmark_that_errors_fails_the_run(tmp_path, monkeypatch):
    run = _run_module()

    def boom(args, tmp):
        raise RuntimeError("the training it watched failed")

    def fine(args, tmp):
        return [run.row("fine", 1.0, 0.5, True, "measured")]

    monkeypatch.setattr(run, "BENCHMARKS", {"fine": fine, "boom": boom})
    out = tmp_path / "bench.json"
    with pytest.raises(SystemExit) as e:
        run.main(["--only", "fine,boom", "--json", str(out)])
    assert e.value.code == 1
    doc = json.loads(out.read_text())
    assert [r["name"] for r in doc["rows"]] == ["fine", "boom"] and doc["rows"][1]["value"] is None
    assert "failed: RuntimeError" in doc["rows"][1]["detail"] and doc["provenance"]["machine"]["cores"]
    monkeypatch.setattr(run, "BENCHMARKS", {"fine": fine})
    assert len(run.main(["--only", "fine", "--json", str(out)])) == 1  # all well: no exit
