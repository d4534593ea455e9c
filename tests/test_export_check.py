"""The fresh-process export check: it fails when an artifact answers differently, and the exporter's
incremental protocol (each file sent as it is written, the rest at the end) checks every file."""

from __future__ import annotations

import json
import os
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


def test_files_loaded_before_the_samples_are_compared_after_them_and_the_report_can_follow(trained_run, tmp_path):
    """The run's order: files before the samples, the verdict before the report, which the checker writes
    once released (a cancel after the release no longer stops it)."""
    from tlapp.deploy import report

    export = _copy_export(trained_run, tmp_path)
    v = FreshVerifier.start()
    v.send(export, ["model.keras", "saved_model"])
    v.send(export, [], samples=True)
    result = v.finish(export, report_later=True)
    assert result["ok"] is True and result["report_pending"] is True and result["report"] is None
    assert [r["artifact"] for r in result["results"]].count("model.keras") == 1
    report.mark_pending(export, v.proc.pid)
    v.release(export)
    v.cancel()
    st = report.wait(export, timeout=300)
    assert st["status"] == "done" and set(st["report"]["artifacts"]) == {"model.keras", "saved_model"}


def test_a_text_savedmodel_with_a_lookup_table_is_saved_with_it(tmp_path):
    """The bare SavedModel holds only variables and signatures; TensorFlow refuses a captured lookup table
    that nothing tracks, so such a model goes through Keras's archive and its table is saved."""
    from tlapp.base.tfenv import quiet_import
    from tlapp.deploy.export import write_text_saved_model

    tf, keras = quiet_import()
    inp = keras.Input((), dtype="string")
    ids = keras.layers.StringLookup(vocabulary=["spam", "ham", "offer"])(inp)
    out = keras.layers.Dense(2, activation="softmax")(keras.ops.one_hot(ids, 4))
    model = keras.Model(inp, out)
    write_text_saved_model(model, tmp_path / "sm", "probabilities")
    code = (
        "import sys, json, tensorflow as tf\n"
        f"sm = tf.saved_model.load({str(tmp_path / 'sm')!r})\n"
        "y = sm.signatures['serving_default'](text=tf.constant(['offer', 'ham', 'unknown']))['probabilities']\n"
        "print(json.dumps(y.numpy().tolist()))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    got = np.array(json.loads(done.stdout.strip().splitlines()[-1]))
    want = model(tf.constant(["offer", "ham", "unknown"])).numpy()
    assert np.abs(got - want).max() < 1e-6 and not np.allclose(got[0], got[2])  # "offer" is not out-of-vocabulary


def test_the_export_report_lands_after_the_run_in_the_file_and_the_model_card(trained_run):
    """The run ends with the verdict; the checker then measures the report and writes it beside the export,
    replacing the card's pending line with the report's own lines."""
    from tlapp.deploy import report

    result, events, run_dir = trained_run
    exported = [e for e in events if e.type == "export"][-1].data
    assert exported["report_pending"] is True and "report" not in exported
    st = report.wait(run_dir / "export", timeout=300)
    assert st["status"] == "done", st
    assert set(st["report"]["artifacts"]) >= {"model.keras", "saved_model"}
    assert st["report"]["artifacts"]["saved_model"]["size_bytes"] > 10_000  # measured before the folder moved
    card = (run_dir / "model_card.md").read_text()
    assert report.pending_line() not in card and "saved_model: accuracy" in card
    page = (run_dir / "report.html").read_text()  # the HTML report shows the card: it follows too
    assert "in the background" not in page and "saved_model: accuracy" in page
    assert not (run_dir / "export" / report.PENDING).exists()


def test_a_report_whose_process_died_reads_failed_and_a_replaced_export_keeps_its_own(tmp_path):
    from tlapp.deploy import report

    export = tmp_path / "run" / "export"
    export.mkdir(parents=True)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    report.mark_pending(export, gone.pid)
    st = report.status(export)
    assert st["status"] == "failed" and "ended without writing report.json" in st["error"]
    # A checker whose export was replaced meanwhile (its pid is not the pending one) writes nothing.
    report.deliver(export, {"n": 1, "split": "val", "reference": "model.keras", "artifacts": {}})
    assert not (export / report.FILE).exists()
    report.mark_pending(export, os.getpid())
    assert report.status(export)["status"] == "running"
    report.deliver(export, None, "OSError: disk full")
    assert report.status(export) == {"status": "failed", "error": "OSError: disk full"}
