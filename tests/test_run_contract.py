"""What the restructure promised about runs: best weights after a resume, disk caches per split,
the device setting, re-export for every task, values (not shapes) in the export checks."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from test_config import run_cli

from tlapp.base.errors import Cancelled, ConfigError, DataError, TrainingError
from tlapp.config import project_from_dict
from tlapp.rundir import RunDir

from conftest import tiny_project_dict


def _worsening_project(color_data) -> dict:
    """A good cached head phase, then a fine-tune at a destructive LR: the best epoch is in phase 1."""
    d = tiny_project_dict(color_data)
    d["train"]["phases"] = [
        {"name": "head", "epochs": 3, "learning_rate": 0.05},
        {"name": "wreck", "epochs": 2, "optimizer": "sgd", "learning_rate": 0.5, "freeze": {"mode": "none"}},
    ]
    d["export"] = {"formats": ["keras"], "verify_samples": 4}
    return d


def _exported_matches_best(run_dir, project_dict) -> None:
    from tlapp.base.tfenv import quiet_import
    from tlapp.model.image_model import build_model

    _, keras = quiet_import()
    rd = RunDir(run_dir)
    asm = build_model(project_from_dict(project_dict), 3)
    asm.model.load_weights(rd.best_weights)
    samples = np.load(rd.export / "parity_samples.npz", allow_pickle=True)
    got = np.asarray(asm.model.predict_on_batch(samples["images"].astype(np.float32)))
    np.testing.assert_allclose(got, samples["expected"], atol=1e-5)


@pytest.mark.parametrize("resumed", [False, True])
def test_best_weights_are_written_and_restored(color_data, tmp_path, resumed):
    from tlapp.training.run import train

    d = _worsening_project(color_data)
    events = []
    if resumed:  # stop inside the fine-tune: the best weights exist only on disk when training resumes
        stop = lambda: any(e.type == "epoch_end" and e.data["phase"] == 1 for e in events)  # noqa: E731
        with pytest.raises(Cancelled):
            train(project_from_dict(d), tmp_path / "run", events.append, stop)
        result = train(None, tmp_path / "run", events.append, resume=True)
    else:
        result = train(project_from_dict(d), tmp_path / "run", events.append)
    best = result.metrics["best"]
    assert RunDir(tmp_path / "run").best_weights.is_file()
    assert best["phase_name"] == "head" and best.get("restored") is True, best
    _exported_matches_best(tmp_path / "run", d)


def test_disk_cache_gives_each_split_its_own_file(color_data, tmp_path):
    from tlapp.training.run import train

    d = tiny_project_dict(color_data)
    d["data"]["cache"] = "disk"
    d["train"]["device"] = "cpu"
    d["train"]["phases"] = [{"name": "pixels", "epochs": 1, "use_embedding_cache": False}]
    d["export"] = {"formats": []}
    train(project_from_dict(d), tmp_path / "run")
    names = {p.name.split(".")[0] for p in RunDir(tmp_path / "run").cache.iterdir()}
    assert {"train", "val"} <= names


def test_device_setting(color_data, tmp_path):
    from tlapp.training.run import train

    d = tiny_project_dict(color_data)
    with pytest.raises(ConfigError, match="train.device"):
        project_from_dict({**d, "train": {**d["train"], "device": "tpu"}})
    d["train"]["device"] = "gpu:3"
    with pytest.raises(TrainingError, match=r"train.device: 'gpu:3' requested but TensorFlow sees 0 GPU"):
        train(project_from_dict(d), tmp_path / "run")


def test_cls_pooling_on_an_image_task_is_a_config_error(color_data):
    d = tiny_project_dict(color_data)
    d["head"]["pooling"] = "cls"
    with pytest.raises(ConfigError, match="head.pooling 'cls' is for text tasks"):
        project_from_dict(d)


def test_tfds_not_installed_is_not_reported_as_offline(monkeypatch, tmp_path):
    from tlapp.data.sources import materialize_tfds

    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(DataError, match="needs tensorflow-datasets, which is not installed"):
        materialize_tfds("tf_flowers", str(tmp_path), tmp_path / "out")


def test_predictions_are_right_not_just_well_formed(trained_run, color_data, capsys):
    """Red images are called red; the bytes signature agrees with the pixel signature on real files."""
    run = trained_run[2]
    code, out, err = run_cli(["predict", str(run), str(color_data / "red"), "--json"], capsys)
    assert code == 0, err
    labels = [json.loads(line)["label"] for line in out.splitlines()]
    assert labels.count("red") >= 8, labels
    files = sorted((color_data / "blue").iterdir())[:3] + sorted((color_data / "green").iterdir())[:3]
    script = (
        "import sys, json, numpy as np, tensorflow as tf\nfrom PIL import Image\n"
        f"m = tf.saved_model.load({str(run / 'export' / 'saved_model')!r})\n"
        f"files = {[str(f) for f in files]!r}\n"
        "b = m.signatures['serving_bytes'](image_bytes=tf.constant([open(f, 'rb').read() for f in files]))\n"
        "px = np.stack([np.asarray(Image.open(f).convert('RGB'), np.float32) for f in files])\n"
        "p = m.signatures['serving_default'](image=tf.constant(px))\n"
        "print(json.dumps([b['probabilities'].numpy().argmax(1).tolist(), p['probabilities'].numpy().argmax(1).tolist()]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-500:]
    from_bytes, from_pixels = json.loads(proc.stdout.strip().splitlines()[-1])
    assert from_bytes == from_pixels


def test_class_weights_reach_fit(tmp_path, monkeypatch):
    from tlapp.base.tfenv import quiet_import
    from tlapp.training.run import train

    from conftest import make_color_dataset

    _, keras = quiet_import()
    data = make_color_dataset(tmp_path / "data", classes=("red", "blue"), n=12)
    for f in sorted((data / "blue").iterdir())[4:]:
        f.unlink()  # 12 red, 4 blue
    seen = []
    real_fit = keras.Model.fit

    def spy(self, *a, **k):
        seen.append(k.get("class_weight"))
        return real_fit(self, *a, **k)

    monkeypatch.setattr(keras.Model, "fit", spy)
    d = tiny_project_dict(data)
    d["train"]["phases"] = [{"name": "pixels", "epochs": 1, "use_embedding_cache": False}]
    d["export"] = {"formats": []}
    train(project_from_dict(d), tmp_path / "run")
    weights = [w for w in seen if w]
    assert (
        weights and weights[0][0] == pytest.approx(2.0) and weights[0][1] == pytest.approx(0.6667, abs=1e-3)
    )  # blue (4) vs red (12)
