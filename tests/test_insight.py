"""The learning curve, confident learning and the label decisions that the next run obeys."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tlapp.base.errors import DataError
from tlapp.config import TaskType
from tlapp.data.corrections import apply_corrections, key_of
from tlapp.data.examples import Example, ScanReport, summarise
from tlapp.data.label_issues import calibrate, confident_joint, find_issues, prune_by_noise_rate, thresholds
from tlapp.rundir import RunDir
from tlapp.training import curve

# ---- confident learning, worked by hand --------------------------------------------------------------

LABELS = np.array([0, 0, 0, 1, 1, 1])
PROBS = np.array([[0.9, 0.1], [0.8, 0.2], [0.2, 0.8], [0.1, 0.9], [0.3, 0.7], [0.6, 0.4]])


def test_confident_learning_matches_the_hand_worked_example() -> None:
    # t0 = mean(.9,.8,.2) = .6333; t1 = mean(.9,.7,.4) = .6667. Example 2 (labelled 0) passes only class 1's
    # threshold; example 5 passes neither (.6 < .6333, .4 < .6667) and is not counted.
    np.testing.assert_allclose(thresholds(LABELS, PROBS), [0.63333, 0.66667], atol=1e-4)
    joint, true = confident_joint(LABELS, PROBS)
    assert joint.tolist() == [[2, 1], [0, 2]]
    assert true.tolist() == [0, 0, 1, 1, 1, -1]
    # Calibration: row 0 already sums to its 3 examples; row 1 counts 2 of 3, so it scales by 3/2.
    np.testing.assert_allclose(calibrate(joint, LABELS), [[2, 1], [0, 3]])
    found = find_issues(LABELS, PROBS)
    assert found["estimated"] == pytest.approx(1.0)
    assert found["issues"] == [{"index": 2, "given": 0, "suggested": 1, "self_confidence": 0.2}]
    # Example 5 (labelled 1) was counted nowhere, but the head prefers class 0: doubtful, after the issues.
    assert found["doubtful"] == [{"index": 5, "given": 1, "suggested": 0, "self_confidence": 0.4}]


def test_issues_rank_lowest_self_confidence_first() -> None:
    # Thresholds: class 0 (.9+.9+.1+.15)/4 = .5125, class 1 .8, class 2 (.8+.18+.8)/3 = .593.
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    probs = np.array(
        [
            [0.9, 0.05, 0.05],
            [0.9, 0.05, 0.05],
            [0.1, 0.85, 0.05],  # labelled 0, passes only class 1's threshold: self-confidence .1, first
            [0.15, 0.05, 0.8],  # labelled 0, looks like 2: .15
            [0.1, 0.8, 0.1],
            [0.1, 0.8, 0.1],
            [0.1, 0.8, 0.1],
            [0.1, 0.1, 0.8],
            [0.0, 0.82, 0.18],  # labelled 2, looks like 1: .18
            [0.1, 0.1, 0.8],
        ]
    )
    found = find_issues(labels, probs)
    assert [(i["index"], i["suggested"]) for i in found["issues"]] == [(2, 1), (3, 2), (8, 1)]
    assert found["doubtful"] == []


def test_prune_by_noise_rate_flags_as_many_as_the_joint_estimates_and_only_where_the_head_disagrees() -> None:
    labels = np.array([0] * 6 + [1] * 4)
    probs = np.array([[0.9, 0.1]] * 3 + [[0.45, 0.55], [0.3, 0.7], [0.2, 0.8]] + [[0.2, 0.8]] * 4)
    calibrated = np.array([[4.0, 2.0], [0.0, 4.0]])  # two of class 0 are estimated to be 1
    assert prune_by_noise_rate(labels, probs, calibrated).tolist() == [4, 5]  # the two largest margins
    calibrated = np.array([[1.0, 5.0], [0.0, 4.0]])  # five estimated; only three have a positive margin
    assert prune_by_noise_rate(labels, probs, calibrated).tolist() == [3, 4, 5]


# ---- the learning curve -------------------------------------------------------------------------------


def test_power_law_fit_recovers_a_known_curve() -> None:
    n = np.array([2.0, 4, 8, 16, 32, 64])
    law = curve.fit_power_law(n, 0.5 * n**-0.7 + 0.05, floor=1e-4)
    assert (law.a, law.b, law.c) == pytest.approx((0.5, 0.7, 0.05), rel=0.02)
    assert law.needed(0.1) == pytest.approx((0.5 / 0.05) ** (1 / 0.7), rel=0.02)
    assert law.needed(0.04) is None  # below the asymptote: not reachable


def _blobs(per_class: int, k: int = 4, d: int = 32, sep: float = 0.35, seed: int = 0):
    rng = np.random.default_rng(seed)
    means = np.random.default_rng(99).normal(size=(k, d)) * sep
    y = np.repeat(np.arange(k), per_class)
    return (means[y] + rng.normal(size=(len(y), d))).astype(np.float32), y


def test_curve_rises_with_data_and_its_forecast_is_banded() -> None:
    x, y = _blobs(40)
    raw = curve.measure(x, y, TaskType.image_classification, 4, 1e-2, seeds=3, budget_s=60)
    out = curve.analyse(raw, n_now=40, target=0.99)
    acc = [p["accuracy"] for p in out["points"]]
    assert acc[-1] > acc[0] + 0.1  # 10 % of the data scores clearly worse than all of it
    sizes = [p["per_class"] for p in out["points"]]
    assert sizes == sorted(sizes) and sizes[-1] < 40  # nested subsets of the non-held-out part
    now, double = out["forecast"][0], out["forecast"][1]
    assert double["accuracy"] >= now["accuracy"]
    assert double["low"] <= double["accuracy"] <= double["high"]
    assert out["seeds"] == 3 and len(out["classes"]) == 4
    assert "0.99" in out["sentence"]
    # The data's real value at twice the size lies inside the band (held-out check on fresh samples).
    xb, yb = _blobs(80, seed=1)
    xt, yt = _blobs(300, seed=2)
    from tlapp.training.linear_head import fit_linear_head, predict

    real = (
        predict(
            fit_linear_head(xb, yb, TaskType.image_classification, 4, 1e-2), xt, TaskType.image_classification
        ).argmax(1)
        == yt
    ).mean()
    assert double["low"] - 0.05 <= real <= double["high"] + 0.05, (real, double)


def test_curve_round_trips_through_json_and_refuses_other_tasks() -> None:
    x, y = _blobs(20)
    raw = curve.measure(x, y, TaskType.image_classification, 4, 1e-2, seeds=2, budget_s=60)
    again = curve.from_json(json.loads(json.dumps(curve.to_json(raw))))
    assert curve.analyse(again, 20)["forecast"] == curve.analyse(raw, 20)["forecast"]
    none = curve.measure(x, np.eye(4)[y], TaskType.multi_label, 4, 1e-2)
    assert none["available"] is False and "single-label" in curve.analyse(none, 20)["reason"]


# ---- label decisions in the project -------------------------------------------------------------------


def _report(tmp_path):
    exs = [Example(str(tmp_path / c / f"{c}{i}.png"), c) for c in ("cat", "dog") for i in range(3)]
    rep = ScanReport(str(tmp_path), "folder", "image_classification", examples=exs)
    summarise(rep, ["cat", "dog"])
    return rep


def test_corrections_exclude_and_relabel_by_relative_name(tmp_path) -> None:
    rep = _report(tmp_path)
    assert key_of(rep.examples[0].path, tmp_path) == "cat/cat0.png"
    apply_corrections(rep, ["cat/cat0.png", "cat/gone.png"], {"cat/cat1.png": "dog"})
    assert [(e.path.split("/")[-1], e.label) for e in rep.examples][:2] == [("cat1.png", "dog"), ("cat2.png", "cat")]
    assert rep.counts == {"cat": 1, "dog": 4}
    assert any("1 example(s) excluded, 1 relabelled; 1 name(s) match no example" in w for w in rep.warnings)


def test_a_relabel_to_an_unknown_class_names_the_field(tmp_path) -> None:
    with pytest.raises(DataError, match=r"data.relabel\['cat/cat1.png'\]: 'bird' is not a class"):
        apply_corrections(_report(tmp_path), [], {"cat/cat1.png": "bird"})


# ---- a real run: curve.json, label_issues.json, the CLI, and the next run obeying an exclusion ----------


def test_a_run_finds_the_mislabelled_image_and_forecasts(mislabelled_run) -> None:
    root, _, _ = mislabelled_run
    rd = RunDir(root / "run")
    issues = json.loads(rd.label_issues.read_text())
    top = issues["issues"][0]
    assert (top["key"], top["given"], top["suggested"]) == ("green/red_00.png", "green", "red")
    card = json.loads(rd.model_card_json.read_text())
    assert card["data_forecast"]["sentence"].startswith(("About", "More", "Accuracy"))
    assert card["label_issues"]["found"] == len(issues["issues"])


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    """``tlapp ARGS`` in this process (no TensorFlow start-up per call): exit code, stdout, stderr."""
    from tlapp.cli.main import main

    try:
        main(list(args))
        code = 0
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_curve_label_issues_and_the_exclusion_the_next_run_obeys(mislabelled_run, capsys) -> None:
    root, pf, _ = mislabelled_run
    run = str(root / "run")
    code, out, err = _cli(capsys, "curve", run, "--json", "--target", "0.999")
    assert code == 0, err
    doc = json.loads(out)
    assert doc["target"]["accuracy"] == 0.999 and len(doc["points"]) == len(curve.FRACTIONS)
    code, _, err = _cli(capsys, "curve", run, "--target", "1.5")
    assert code == 2 and err.strip().splitlines()[-1].startswith("error: --target")
    code, out, _ = _cli(capsys, "label-issues", run)
    assert code == 0 and "green/red_00.png" in out and "suggested red" in out
    code, _, err = _cli(capsys, "label-issues", run, "--exclude", "green/red_00.png")
    assert code == 2 and "--project FILE" in err
    proc = subprocess.run(  # one real process end to end: the command as a person types it
        [sys.executable, "-m", "tlapp", "label-issues", run, "--exclude", "green/red_00.png", "--project", str(pf)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    from tlapp.config import load_project
    from tlapp.data.sources import scan_project

    project = load_project(pf)
    assert project.data.exclude == ["green/red_00.png"]
    report = scan_project(project, pf)
    assert report.counts == {"blue": 12, "green": 12, "red": 11}
    assert (root / "data" / "green" / "red_00.png").is_file()  # the person's file is untouched


def test_the_wizard_shows_the_curve_and_saves_label_decisions_into_the_project(mislabelled_run, window, tmp_path):
    from tlapp.config import load_project

    root, _, _ = mislabelled_run
    assert window.open_run(root / "run")
    ev = window.pages[5]
    assert ev.more_data.ask.isEnabled() and "per class" in ev.more_data.sentence.text()
    ev.more_data.target.setValue(0.97)
    ev.more_data.ask.click()
    assert "0.97" in ev.more_data.sentence.text()
    lc = ev.label_check
    assert lc.table.rowCount() >= 1 and lc.table.item(0, 0).text() == "green/red_00.png"
    assert (lc.table.item(0, 1).text(), lc.table.item(0, 2).text()) == ("green", "red")
    assert not lc.table.item(0, 0).icon().isNull()  # the thumbnail
    box = lc.table.cellWidget(0, 4)
    box.setCurrentIndex(box.findText("exclude"))
    window.state.path = tmp_path / "p.yaml"
    lc.save.click()
    assert load_project(tmp_path / "p.yaml").data.exclude == ["green/red_00.png"]
    assert "leaves out 1" in lc.status.text()
    lc.show_run(RunDir(root / "run"))  # reopened: the decision shows as made
    assert lc.table.cellWidget(0, 4).currentText() == "exclude"


def test_a_large_run_measures_its_curve_on_a_sample_and_forecasts_for_all_of_it(tmp_path, monkeypatch) -> None:
    from tlapp.training import insight

    monkeypatch.setattr(insight, "CURVE_MAX", 120)
    x, y = _blobs(75)  # 300 examples, 4 classes
    a = insight.write_curve(
        RunDir(tmp_path), x, y, TaskType.image_classification, 4, 1e-2, None, "images", list("abcd")
    )
    assert max(p["per_class"] for p in a["points"]) <= 120 / 4 and a["n_now"] == 75
    assert json.loads(RunDir(tmp_path).curve.read_text())["analysis"]["n_now"] == 75
