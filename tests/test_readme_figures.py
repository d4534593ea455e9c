"""Every measured figure in README.md is what benchmarks/report.py renders from the results files."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _report():
    spec = importlib.util.spec_from_file_location("report", ROOT / "benchmarks" / "report.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_readme_tables_equal_what_the_results_files_render():
    report = _report()
    text = (ROOT / "README.md").read_text()
    assert report.render_readme(text) == text, "run: python benchmarks/report.py --write"


def test_a_changed_results_figure_changes_the_render(tmp_path, monkeypatch):
    """The check can fail: one figure changed in a results file makes the README stale."""
    import json
    import shutil

    report = _report()
    results = tmp_path / "results"
    shutil.copytree(report.RESULTS, results)
    doc = json.loads((results / "recipe.json").read_text())
    doc["summary"]["averages"]["tlapp"]["accuracy"] = 0.123456
    (results / "recipe.json").write_text(json.dumps(doc))
    monkeypatch.setattr(report, "RESULTS", results)
    text = (ROOT / "README.md").read_text()
    assert "0.123" in report.render_readme(text) and report.render_readme(text) != text
