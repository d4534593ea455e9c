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
