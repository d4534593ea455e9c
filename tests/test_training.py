import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_config import run_cli

from tlapp.base.errors import Cancelled, TrainingError
from tlapp.config import load_project, project_from_dict

from conftest import tiny_project_dict


def test_event_sequence(trained_run):
    result, events, run_dir = trained_run
    types = [e.type for e in events]
    main = [t for t in types if t not in ("progress", "data_cache")]  # progress bars and cache plans interleave
    assert main[:4] == ["run_start", "scan", "plan", "phase_start"] and types[-1] == "run_end"
    assert types[1] == "progress" and events[1].data["stage"].startswith("scanning")
    phases = [e.data for e in events if e.type == "phase_start"]
    assert [p["name"] for p in phases] == ["head", "finetune"]
    assert phases[0]["embedding_cache"] is True and phases[1]["embedding_cache"] is False
    assert phases[0]["trainable_params"] < phases[1]["trainable_params"]
    epochs = [(e.data["phase"], e.data["epoch"]) for e in events if e.type == "epoch_end"]
    assert epochs == [(0, 1), (0, 2), (1, 1)]
    assert all(
        {"loss", "val_loss", "accuracy", "val_accuracy"} <= set(e.data["metrics"])
        for e in events
        if e.type == "epoch_end"
    )
    assert any(e.type == "batch_end" for e in events)
    assert types.index("export") < types.index("verify") < types.index("run_end")
    on_disk = [json.loads(x)["type"] for x in (run_dir / "events.jsonl").read_text().splitlines()]
    assert on_disk == types


def test_run_directory_layout(trained_run):
    result, _, run_dir = trained_run
    for f in (
        "config.yaml",
        "events.jsonl",
        "history.csv",
        "metrics.json",
        "model_card.md",
        "split.json",
        "checkpoints/last/state.json",
        "checkpoints/last/optimizer.npz",
        "export/saved_model",
        "export/model.keras",
        "export/labels.txt",
        "logs",
    ):
        assert (run_dir / f).exists(), f
    assert load_project(run_dir / "config.yaml").backbone.name == "tiny_cnn"
    assert "versions: tlapp=" in (run_dir / "config.yaml").read_text()
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["export"]["verify"]["ok"] is True and len(m["export"]["verify"]["results"]) == 4
    assert [p["phase"] for p in m["phases"]] == ["head", "finetune"] and "val_loss" in m["phases"][0]["best"]
    card = (run_dir / "model_card.md").read_text()
    assert "Freeze map of phase 'finetune'" in card and "parity check: passed" in card and "tiny_cnn" in card
    data = json.loads((run_dir / "model_card.json").read_text())  # the card's source, as data
    assert len(data["data"]["content_sha256"]) == 64 and data["data"]["split"]["seed"] == 1
    assert [ph["name"] for ph in data["training"]["phases"]] == ["head", "finetune"]
    assert data["training"]["phases"][1]["blocks"] and data["metrics"]["val"]["per_class"]
    assert data["backbone"]["licence"] and data["environment"]["packages"]["tensorflow"]
    assert (run_dir / "plots" / "val_confusion.png").is_file() and (run_dir / "plots" / "val_reliability.png").is_file()
    page = (run_dir / "report.html").read_text()
    assert "<h2>Validation</h2>" in page and 'src="plots/val_confusion.png"' in page
    assert ("Most confidently wrong" in page and "data:image/jpeg;base64," in page) or "No misclassified" in page
    assert (run_dir / "export" / "labels.txt").read_text().split() == ["blue", "green", "red"]
    assert len((run_dir / "history.csv").read_text().strip().splitlines()) == 4


def test_batchnorm_statistics_unchanged_after_finetune(trained_run):
    """Fresh BN layers start at mean 0 / var 1; after a fine-tune they must still be there."""
    from tlapp.base.tfenv import quiet_import

    _, keras = quiet_import()
    import tlapp.model.image_model  # noqa: F401

    model = keras.saving.load_model(trained_run[2] / "export" / "model.keras", compile=False)
    bns = [
        layer
        for layer in model.get_layer("features").get_layer("tiny_cnn").layers
        if "BatchNormalization" in type(layer).__name__
    ]
    assert len(bns) == 4
    for bn in bns:
        assert np.allclose(bn.moving_mean.numpy(), 0) and np.allclose(bn.moving_variance.numpy(), 1), bn.name


def test_embedding_cache_head_matches_full_model(color_data, tmp_path):
    from tlapp.training.run import train

    losses = {}
    for cached in (True, False):
        d = tiny_project_dict(color_data)
        d["train"]["phases"] = [{"name": "head", "epochs": 2, "learning_rate": 0.01, "use_embedding_cache": cached}]
        d["export"] = {"formats": []}
        events = []
        train(project_from_dict(d), tmp_path / str(cached), events.append)
        starts = [e.data for e in events if e.type == "phase_start"]
        assert starts[0]["embedding_cache"] is cached
        losses[cached] = [e.data["metrics"] for e in events if e.type == "epoch_end"][-1]
    for k in ("loss", "val_loss"):
        assert losses[True][k] == pytest.approx(losses[False][k], rel=2e-2), k


def test_atomic_checkpoint_survives_failed_write(tmp_path):
    from tlapp.base.tfenv import quiet_import
    from tlapp.training.checkpoint import read_state, save_checkpoint

    _, keras = quiet_import()
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    folder = tmp_path / "last"
    save_checkpoint(folder, model, None, {"epoch_done": 1})

    class Exploding:
        def save_weights(self, path):
            Path(path).write_bytes(b"partial")
            raise OSError("disk full")

    with pytest.raises(OSError):
        save_checkpoint(folder, Exploding(), None, {"epoch_done": 2})
    assert read_state(folder) == {"epoch_done": 1}
    model.load_weights(folder / "model.weights.h5")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize("cached", [False, True])
def test_cancel_then_resume_continues_at_next_epoch(color_data, tmp_path, cached):
    from tlapp.training.run import train

    d = tiny_project_dict(color_data)
    d["train"]["phases"] = [
        {"name": "only", "epochs": 3, "learning_rate": 0.01, "schedule": "cosine", "use_embedding_cache": cached}
    ]
    d["export"] = {"formats": []}
    events = []
    stop = lambda: sum(e.type == "epoch_end" for e in events) >= 1  # noqa: E731
    with pytest.raises(Cancelled, match="epoch 2, batch 1"):
        train(project_from_dict(d), tmp_path / "run", events.append, stop)
    assert json.loads((tmp_path / "run" / "status.json").read_text())["status"] == "cancelled"
    state = json.loads((tmp_path / "run" / "checkpoints" / "last" / "state.json").read_text())
    assert state["epoch_done"] == 1
    more = []
    result = train(None, tmp_path / "run", more.append, resume=True)
    assert [e.data["epoch"] for e in more if e.type == "epoch_start"] == [2, 3]
    assert [e.data for e in more if e.type == "resume"] == [{"phase": 0, "epoch": 2}]
    assert (
        result.status == "completed" and len(result.metrics["phases"][0]) and result.metrics["phases"][0]["epochs"] == 3
    )


def test_resume_restores_optimizer_iterations(color_data, tmp_path):
    """The LR schedule continues: optimizer.iterations comes back from the checkpoint."""
    from tlapp.base.tfenv import quiet_import
    from tlapp.training.checkpoint import restore_optimizer, save_checkpoint

    _, keras = quiet_import()
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    opt = keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(0.1, 100))
    model.compile(opt, "mse")
    model.fit(np.ones((8, 3)), np.ones((8, 2)), batch_size=2, epochs=1, verbose=0)
    save_checkpoint(tmp_path / "c", model, opt, {})
    opt2 = keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(0.1, 100))
    assert restore_optimizer(tmp_path / "c", opt2, model.trainable_variables)
    assert int(opt2.iterations.numpy()) == 4


def test_nan_loss_stops_naming_epoch_and_batch(color_data, tmp_path):
    from tlapp.training.run import train

    files = sorted(color_data.rglob("*.png"))
    csv = tmp_path / "reg.csv"
    csv.write_text("".join(f"{f},{1e30 if i % 2 else 1.0}\n" for i, f in enumerate(files)))
    d = tiny_project_dict(csv)
    d["data"]["source"] = "csv"
    d["task"] = {"type": "regression"}
    d["train"]["phases"] = [{"name": "head", "epochs": 1}]
    with pytest.raises(TrainingError, match=r"loss became (inf|nan) in phase 'head', epoch 1, batch 1"):
        train(project_from_dict(d), tmp_path / "run")


def test_predict_json(trained_run, color_data, capsys):
    code, out, err = run_cli(["predict", str(trained_run[2]), str(color_data / "red"), "--json"], capsys)
    assert code == 0, err
    rows = [json.loads(x) for x in out.splitlines()]
    assert len(rows) == 10
    r = rows[0]
    assert set(r) == {"path", "label", "score", "scores"} and set(r["scores"]) == {"red", "green", "blue"}
    assert abs(sum(r["scores"].values()) - 1) < 1e-4 and r["score"] == pytest.approx(
        max(r["scores"].values()), abs=1e-6
    )
    code, _, err = run_cli(["predict", str(trained_run[2]), str(color_data / "nope")], capsys)
    assert code == 2 and "no such file" in err


def test_evaluate_and_reexport_cli(trained_run, tmp_path, capsys):
    code, out, err = run_cli(["evaluate", str(trained_run[2]), "--json"], capsys)
    assert code == 0, err
    rep = json.loads(out)
    assert rep["n"] == 9 and len(rep["confusion_matrix"]) == 3
    code, out, err = run_cli(
        ["export", str(trained_run[2]), "--format", "savedmodel", "--format", "h5", "--out", str(tmp_path / "x")],
        capsys,
    )
    assert code == 0, err
    assert (tmp_path / "x" / "saved_model").is_dir() and "passed" in out
    import keras

    h5 = keras.saving.load_model(tmp_path / "x" / "model.h5", compile=False)  # the .h5 it asked for, usable
    assert h5.output_shape[-1] == 3


def test_reexport_in_place_adds_a_format_and_loses_none(trained_run, tmp_path, capsys, color_data):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run[2], run)
    before = sorted(p.name for p in (run / "export").iterdir())
    code, out, err = run_cli(["export", str(run), "--format", "tflite"], capsys)
    assert code == 0, err
    after = sorted(p.name for p in (run / "export").iterdir())
    assert set(before) - {"report.json"} <= set(after) and "model.tflite" in after
    readme = (run / "export" / "README.md").read_text()
    assert "saved_model" in readme and "model.tflite" in readme and "model.keras" in readme
    report = json.loads((run / "export" / "report.json").read_text())
    assert "saved_model" in json.dumps(report) and "tflite" in json.dumps(report)
    image = str(sorted((color_data / "red").iterdir())[0])
    code, out, err = run_cli(["predict", str(run), image, "--json"], capsys)
    assert code == 0 and json.loads(out.splitlines()[0])["label"] == "red", err


def test_saved_model_bytes_signature_in_plain_tensorflow(trained_run, color_data):
    """A deployment with only TensorFlow: encoded image bytes in, probabilities out."""
    script = (
        "import sys, tensorflow as tf\n"
        f"m = tf.saved_model.load({str(trained_run[2] / 'export' / 'saved_model')!r})\n"
        f"b = open({str(sorted((color_data / 'blue').iterdir())[0])!r}, 'rb').read()\n"
        "out = m.signatures['serving_bytes'](image_bytes=tf.constant([b, b]))['probabilities'].numpy()\n"
        "print(out.shape, round(float(out.sum()), 3))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-500:]
    assert proc.stdout.strip().endswith("(2, 3) 2.0")


def test_discriminative_lr_scales_updates_per_block():
    """Lower blocks move less: the same gradient, half the step one block further down."""
    from tlapp.base.tfenv import quiet_import
    from tlapp.config import Phase
    from tlapp.model.optim import block_multipliers, make_optimizer

    _, keras = quiet_import()
    lower, upper = keras.Variable(np.zeros(3), name="lower"), keras.Variable(np.zeros(3), name="upper")
    mult = block_multipliers({"block1": [lower], "block2": [upper]}, ["stem", "block1", "block2", "top"], 0.5)
    assert mult == {lower.path: 0.5, upper.path: 1.0}
    opt = make_optimizer(Phase(optimizer="sgd", learning_rate=0.1), 10, mult)
    opt.apply([np.ones(3), np.ones(3)], [lower, upper])
    assert np.allclose(upper.numpy(), -0.1) and np.allclose(lower.numpy(), -0.05)


def test_mixed_precision_on_cpu_warns_and_uses_float32(color_data, tmp_path):
    from tlapp.base.tfenv import quiet_import
    from tlapp.training.run import train

    _, keras = quiet_import()
    d = tiny_project_dict(color_data)
    d["train"]["mixed_precision"] = True
    d["train"]["phases"] = [{"name": "head", "epochs": 1}]
    d["export"] = {"formats": []}
    events = []
    train(project_from_dict(d), tmp_path / "run", events.append)
    assert any(e.type == "warning" and "mixed precision needs a GPU" in e.data["message"] for e in events)
    assert keras.mixed_precision.global_policy().name == "float32"


def test_cli_ctrl_c_exits_130_with_resume_command(color_data, tmp_path):
    import os
    import signal
    import time

    import yaml

    d = tiny_project_dict(color_data)
    d["train"]["phases"] = [{"name": "ft", "epochs": 3, "freeze": {"mode": "none"}, "steps_per_epoch": 300}]
    d["export"] = {"formats": []}
    pf = tmp_path / "p.yaml"
    pf.write_text(yaml.safe_dump(d))
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tlapp", "train", str(pf), "--out", str(run)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 180
    while time.time() < deadline:
        ev = run / "events.jsonl"
        if ev.is_file() and '"epoch_end"' in ev.read_text():
            break
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-800:]
    assert f"--resume {run}" in err.replace("\n", " ")
    assert json.loads((run / "status.json").read_text())["status"] == "cancelled"


def test_tflite_exports_are_checked_in_a_fresh_process_and_reported_on_validation(trained_run, capsys):
    run_dir = trained_run[2]
    out_dir = run_dir / "export_lite"  # beside the run's split.json: the report re-runs its validation split
    code, out, err = run_cli(
        [
            "export",
            str(run_dir),
            "--format",
            "tflite",
            "--format",
            "tflite_fp16",
            "--format",
            "tflite_int8",
            "--format",
            "keras",
            "--format",
            "onnx",
            "--out",
            str(out_dir),
        ],
        capsys,
    )
    assert code == 0, err
    for name in ("model.tflite", "model_fp16.tflite", "model_int8.tflite"):
        assert (out_dir / name).stat().st_size > 1000, name
    meta = json.loads((out_dir / "meta.json").read_text())
    assert meta["tflite"]["model_int8.tflite"].startswith("uint8 [1,32,32,3]")
    report = json.loads((out_dir / "report.json").read_text())
    arts = report["artifacts"]
    assert report["n"] == 9 and report["reference"] == "model.keras" and report["split"] == "val"
    assert report["seen_in_training"] is False  # custom phases: validation was held out
    assert set(arts) == {"model.keras", "model.tflite", "model_fp16.tflite", "model_int8.tflite", "model.onnx"}
    assert arts["model.onnx"]["max_abs_diff"] < 1e-4 and arts["model.onnx"]["agreement"] == 1.0
    assert arts["model.tflite"]["max_abs_diff"] < 1e-3 and arts["model.tflite"]["agreement"] == 1.0
    int8 = arts["model_int8.tflite"]
    assert "accuracy_delta" in int8 and 0 <= int8["agreement"] <= 1 and int8["ms_per_image"] > 0
    assert int8["size_bytes"] < arts["model.tflite"]["size_bytes"]  # quantised: smaller
    assert "model_int8.tflite: accuracy" in out and "passed" in out
    readme = (out_dir / "README.md").read_text()
    assert "## TensorFlow Lite" in readme and "## ONNX" in readme and "labels.txt" in readme
