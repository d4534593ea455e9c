"""Issue #12: tf.distribute strategies from the project file.

The strategies need TensorFlow configured before it starts (logical CPU devices, a
TF_CONFIG cluster), so those tests run tlapp in child processes, as a user would.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tlapp.base.errors import ConfigError
from tlapp.config import project_from_dict
from tlapp.training import strategy

from conftest import tiny_project_dict

ROOT = Path(__file__).resolve().parents[1]


def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CONFIG", "TLAPP_CPU_DEVICES")}
    env.update(PYTHONPATH=str(ROOT), TMPDIR=str(tmp), **extra)
    return env


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def test_strategy_settings_are_checked_with_the_value_named(monkeypatch):
    d = tiny_project_dict(Path("."))
    d["train"]["devices"] = ["gpu:1", "CPU:0"]
    assert project_from_dict(d).train.devices == ["GPU:1", "CPU:0"]
    d["train"]["devices"] = ["tpu0"]
    with pytest.raises(ConfigError, match="'tpu0' is not a device name"):
        project_from_dict(d)
    d["train"]["devices"], d["train"]["strategy"] = None, "ring"
    with pytest.raises(ConfigError, match="strategy"):
        project_from_dict(d)

    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ConfigError, match="needs the TF_CONFIG"):
        strategy.plan("multi_worker")
    monkeypatch.setenv("TF_CONFIG", "{not json")
    with pytest.raises(ConfigError, match="TF_CONFIG: not valid JSON"):
        strategy.plan("multi_worker")
    monkeypatch.setenv(
        "TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}})
    )
    with pytest.raises(ConfigError, match="task index 2 but cluster has 2"):
        strategy.plan("multi_worker")
    monkeypatch.setenv(
        "TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}})
    )
    p = strategy.plan("multi_worker")
    assert (p.kind, p.workers, p.worker, p.chief) == ("multi_worker", 2, 1, False)
    monkeypatch.setenv(
        "TF_CONFIG", json.dumps({"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 0}})
    )
    assert strategy.plan("multi_worker").chief

    # This machine has no GPU: auto is one device; mirrored names the devices it would use.
    assert strategy.plan("auto").kind == "default"
    with pytest.raises(ConfigError, match="train.devices: GPU:3 is not on this machine"):
        strategy.plan("mirrored", ["GPU:3"])


def test_cpu_devices_variable_splits_the_cpu_and_doctor_lists_them(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "tlapp", "doctor", "--json"],
        capture_output=True,
        text=True,
        env=_env(tmp_path, TLAPP_CPU_DEVICES="3"),
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    info = json.loads(r.stdout)
    assert info["cpu_devices"] == ["CPU:0", "CPU:1", "CPU:2"]
    assert info["strategy_auto"].startswith("default")
    assert "replicas on 3 logical CPU device(s)" in info["strategy_mirrored"]
    bad = subprocess.run(
        [sys.executable, "-m", "tlapp", "doctor"],
        capture_output=True,
        text=True,
        env=_env(tmp_path, TLAPP_CPU_DEVICES="two"),
        timeout=300,
    )
    assert bad.returncode != 0 and "TLAPP_CPU_DEVICES: 'two'" in bad.stderr + bad.stdout


MIRRORED = textwrap.dedent("""
    import json, sys
    from tlapp.config import project_from_dict
    from tlapp.training.run import train
    d = json.loads(sys.argv[1])
    out = {}
    for name in ("default", "mirrored"):
        d["train"]["strategy"] = name
        events = []
        r = train(project_from_dict(d), sys.argv[2] + "/" + name, events.append)
        start = next(e.data for e in events if e.type == "run_start")
        out[name] = {"status": r.status, "replicas": start["replicas"], "strategy": start["strategy"],
                     "history": [e.data["metrics"] for e in events if e.type == "epoch_end"],
                     "exported": (r.export or {}).get("dir")}
    print("RESULT " + json.dumps(out))
""")


@pytest.mark.slow  # several processes for a minute: CI runs it in its slow step
def test_mirrored_over_two_cpu_devices_matches_the_default_strategy(color_data, tmp_path):
    d = tiny_project_dict(color_data)
    # One step per epoch over all 24 training images: each replica gets 12, gradients are averaged.
    # (With smaller batches a distributed tf.data pipeline draws its batches in another order, so
    # runs then agree in distribution, not step by step.)
    d["data"]["val_fraction"], d["train"]["batch_size"] = 0.2, 24
    d["train"]["phases"] = [{"name": "ft", "epochs": 3, "learning_rate": 0.01, "freeze": {"mode": "none"}}]
    d["export"] = {"formats": ["savedmodel"], "verify_samples": 4}
    r = subprocess.run(
        [sys.executable, "-c", MIRRORED, json.dumps(d), str(tmp_path)],
        capture_output=True,
        text=True,
        env=_env(tmp_path, TLAPP_CPU_DEVICES="2"),
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(next(x for x in r.stdout.splitlines() if x.startswith("RESULT "))[7:])
    one, two = res["default"], res["mirrored"]
    assert one["replicas"] == 1 and two["replicas"] == 2 and "2 logical CPU" in two["strategy"]
    assert one["status"] == two["status"] == "completed"
    # The same global batch, gradients averaged over replicas (BatchNorm frozen, as tlapp trains it):
    # the same training to float rounding.
    assert len(one["history"]) == len(two["history"]) == 3
    for a, b in zip(one["history"], two["history"]):
        for k in ("loss", "val_loss", "val_accuracy"):
            assert abs(a[k] - b[k]) < 1e-4, (k, one["history"], two["history"])
    # The export is the same plain model whatever trained it: same signature keys and files.
    sig = lambda p: sorted(x.name for x in (Path(p) / "saved_model").iterdir())  # noqa: E731
    assert two["exported"] and sig(one["exported"]) == sig(two["exported"])


def _start_workers(proj: Path, run: Path, tmp: Path, ports: list[int], resume: bool, tag: str) -> list:
    procs = []
    for i in range(2):
        cfg = {"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]}, "task": {"type": "worker", "index": i}}
        args = ["train", str(proj), "--resume", str(run)] if resume else ["train", str(proj), "--out", str(run)]
        log = open(tmp / f"{tag}-worker{i}.log", "w")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "tlapp", *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_env(tmp / f"scratch-{tag}", TF_CONFIG=json.dumps(cfg)),
            )
        )
    return procs


def _both_finish(proj: Path, run: Path, tmp: Path, resume: bool, tag: str) -> None:
    """Start two workers, wait for both; each must exit 0 and the other worker must leave the writing
    to the chief."""
    procs = _start_workers(proj, run, tmp, _free_ports(2), resume=resume, tag=tag)
    for p in procs:
        p.wait(timeout=600)
    logs = [(tmp / f"{tag}-worker{i}.log").read_text() for i in range(2)]
    assert [p.returncode for p in procs] == [0, 0], logs[0][-3000:] + logs[1][-3000:]
    assert "worker 1 done; the chief evaluates" in logs[1]


def _events(run: Path) -> list[dict]:
    try:
        return [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines() if x.strip()]
    except (OSError, ValueError):
        return []


@pytest.mark.slow  # several processes for a minute: CI runs it in its slow step
def test_two_workers_train_the_chief_alone_writes_and_both_resume_after_a_kill(color_data, tmp_path):
    for tag in ("first", "second"):
        (tmp_path / f"scratch-{tag}").mkdir()
    d = tiny_project_dict(color_data)
    d["train"]["strategy"] = "multi_worker"
    d["train"]["phases"] = [{"name": "ft", "epochs": 40, "learning_rate": 0.01, "freeze": {"mode": "none"}}]
    d["export"] = {"formats": ["savedmodel"], "verify": False}
    proj, run = tmp_path / "p.yaml", tmp_path / "run"
    proj.write_text(json.dumps(d))

    procs = _start_workers(proj, run, tmp_path, _free_ports(2), resume=False, tag="first")
    deadline = time.time() + 300
    while time.time() < deadline and sum(e["type"] == "epoch_end" for e in _events(run)) < 3:
        assert all(p.poll() is None for p in procs), (tmp_path / "first-worker0.log").read_text()[-3000:]
        time.sleep(0.2)
    procs[1].send_signal(signal.SIGKILL)  # a worker dies mid-run...
    time.sleep(2)
    procs[0].send_signal(signal.SIGKILL)  # ...and the chief, stuck waiting for it, is stopped too
    for p in procs:
        p.wait(timeout=60)
    done_before = max(e["data"]["epoch"] for e in _events(run) if e["type"] == "epoch_end")
    assert done_before < 40 and (run / "checkpoints" / "last").is_dir()
    assert not (run / "export").exists()

    _both_finish(proj, run, tmp_path, resume=True, tag="second")

    ev = _events(run)
    resumed = [e["data"] for e in ev if e["type"] == "resume"]
    assert resumed and resumed[-1]["epoch"] > 1  # continued, not restarted
    # Only the chief wrote this folder: one run_start per session, not one per worker.
    assert [e["data"]["replicas"] for e in ev if e["type"] == "run_start"] == [2, 2]
    assert ev[-1]["type"] == "run_end" and ev[-1]["data"]["status"] == "completed"
    assert (run / "export" / "saved_model").is_dir() and (run / "metrics.json").is_file()
    epochs = [e["data"]["epoch"] for e in ev if e["type"] == "epoch_end"]
    assert epochs[-1] == 40
    assert not list((tmp_path / "scratch-second").iterdir())  # the other worker's scratch folder is gone


LM_MIRRORED = textwrap.dedent("""
    import csv, json, sys
    sys.path.insert(0, sys.argv[3])
    from test_dpo import dpo_dict, write_triples
    from test_sft import sft_dict, write_pairs
    from pathlib import Path
    from tlapp.config import project_from_dict
    from tlapp.training.run import train
    if sys.argv[4] == "dpo":
        d = dpo_dict(write_triples(Path(sys.argv[2]) / "triples.jsonl"), epochs=2)
    else:
        d = sft_dict(write_pairs(Path(sys.argv[2]) / "pairs.jsonl"), epochs=2)
    d["export"] = {"verify": False}
    out = {}
    for name in ("default", "mirrored"):
        d["train"]["strategy"] = name
        events = []
        r = train(project_from_dict(d), sys.argv[2] + "/" + name, events.append)
        start = next(e.data for e in events if e.type == "run_start")
        out[name] = {"status": r.status, "replicas": start["replicas"],
                     "batches": [e.data["metrics"]["loss"] for e in events if e.type == "batch_end"],
                     "steps": [float(x["loss"]) for x in csv.DictReader(open(sys.argv[2] + "/" + name + "/history.csv"))
                               if x["stage"] == "step"],
                     "epochs": [e.data["metrics"] for e in events if e.type == "epoch_end"]}
    print("RESULT " + json.dumps(out))
""")


@pytest.mark.slow  # several processes for a minute: CI runs it in its slow step
def test_sft_mirrored_over_two_cpu_devices_takes_the_same_steps(tmp_path):
    """#12 item 4: SFT under a strategy. Each replica takes every other row of the same global batch and
    divides its loss by the global answer-token count, so each step equals the one-device step."""
    r = subprocess.run(
        [sys.executable, "-c", LM_MIRRORED, "{}", str(tmp_path), str(ROOT / "tests"), "sft"],
        capture_output=True,
        text=True,
        env=_env(tmp_path, TLAPP_CPU_DEVICES="2"),
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(next(x for x in r.stdout.splitlines() if x.startswith("RESULT "))[7:])
    one, two = res["default"], res["mirrored"]
    assert (one["replicas"], two["replicas"]) == (1, 2) and one["status"] == two["status"] == "completed"
    assert len(one["epochs"]) == len(two["epochs"]) == 2
    for a, b in zip(one["epochs"], two["epochs"]):
        for k in ("loss", "token_accuracy", "val_loss"):
            assert abs(a[k] - b[k]) < 1e-4, (k, one["epochs"], two["epochs"])


@pytest.mark.slow  # several processes for a minute: CI runs it in its slow step
def test_dpo_mirrored_over_two_cpu_devices_takes_the_same_steps_batch_by_batch(tmp_path):
    """#24: DPO under a strategy. A replica takes every other pair (chosen and rejected stay together) and
    divides by the global batch's pairs, so every step's loss equals the one-device step's."""
    r = subprocess.run(
        [sys.executable, "-c", LM_MIRRORED, "{}", str(tmp_path), str(ROOT / "tests"), "dpo"],
        capture_output=True,
        text=True,
        env=_env(tmp_path, TLAPP_CPU_DEVICES="2"),
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads(next(x for x in r.stdout.splitlines() if x.startswith("RESULT "))[7:])
    one, two = res["default"], res["mirrored"]
    assert (one["replicas"], two["replicas"]) == (1, 2) and one["status"] == two["status"] == "completed"
    # Every step from history.csv (the events thin out batch_end when steps come fast).
    assert len(one["steps"]) == len(two["steps"]) == 4  # 8 training triples, batches of 4, 2 epochs
    assert one["steps"][0] == pytest.approx(0.6931, abs=1e-4)
    assert two["steps"] == pytest.approx(one["steps"], abs=1e-4), (one["steps"], two["steps"])
    for a, b in zip(one["epochs"], two["epochs"]):
        for k in ("reward_margin", "val_loss", "val_reward_accuracy"):
            assert abs(a[k] - b[k]) < 1e-4, (k, one["epochs"], two["epochs"])


@pytest.mark.slow  # several processes for a minute: CI runs it in its slow step
def test_sft_on_two_workers_the_chief_alone_writes_and_exports(tmp_path):
    from test_sft import sft_dict, write_pairs

    (tmp_path / "scratch-sft").mkdir()
    d = sft_dict(write_pairs(tmp_path / "pairs.jsonl"), epochs=2)
    d["train"]["strategy"] = "multi_worker"
    proj, run = tmp_path / "p.yaml", tmp_path / "run"
    proj.write_text(json.dumps(d))
    _both_finish(proj, run, tmp_path, resume=False, tag="sft")
    ev = _events(run)
    assert [e["data"]["replicas"] for e in ev if e["type"] == "run_start"] == [2]
    assert [e["data"]["epoch"] for e in ev if e["type"] == "epoch_end"] == [1, 2]
    m = json.loads((run / "metrics.json").read_text())
    assert m["export"]["verify"]["ok"] and (run / "export" / "lora.weights.h5").is_file()
    assert not list((tmp_path / "scratch-sft").iterdir())
