"""Fault cases of issue #10 that earlier test files did not cover, one test per case
(numbered as in the issue). Real processes where it matters (kill -9, Ctrl-C twice,
a closed pipe); everything else in-process and fast."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import unicodedata
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from tlapp.base.errors import ConfigError, DataError, TlappError, TrainingError
from tlapp.config import load_project, project_from_dict
from tlapp.data.scan_images import scan
from tlapp.rundir import RunDir

from conftest import make_color_dataset, tiny_project_dict


def _img(path: Path, value: int = 128) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((16, 16, 3), value, np.uint8)).save(path)


def _wait_for(path: Path, needle: str, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.is_file() and needle in path.read_text(errors="replace"):
            return
        time.sleep(0.1)
    raise TimeoutError(f"{needle!r} never appeared in {path}")


def _long_project(tmp_path: Path, color_data: Path) -> Path:
    d = tiny_project_dict(color_data)
    d["train"]["phases"] = [{"name": "ft", "epochs": 4, "freeze": {"mode": "none"}, "steps_per_epoch": 40}]
    d["export"] = {"formats": ["keras"], "verify": False}
    pf = tmp_path / "p.yaml"
    pf.write_text(yaml.safe_dump(d))
    return pf


# 3, 4, 7 ----------------------------------------------------------------------
def test_3_4_7_debris_unsupported_and_empty_classes_are_counted_and_named(tmp_path):
    root = tmp_path / "d"
    _img(root / "a" / "1.png")
    _img(root / "b" / "1.png")
    (root / ".ipynb_checkpoints").mkdir()
    _img(root / "a" / ".ipynb_checkpoints" / "1-checkpoint.png")
    (root / "c").mkdir()
    (root / "c" / "x.heic").write_bytes(b"\x00\x00\x00\x18ftypheic")
    rep = scan(root)
    assert rep.classes == ["a", "b", "c"] and rep.empty_classes == ["c"]
    assert any(".ipynb_checkpoints" in b.path for b in rep.ignored)
    assert [b.reason for b in rep.bad if b.path.endswith("x.heic")][0].startswith("unsupported image format")
    with pytest.raises(DataError, match="no usable images: c"):
        rep.require_usable()


# 6 ----------------------------------------------------------------------------
def test_6_huge_declared_png_is_refused_from_its_header(tmp_path):
    from badfixtures import png_declaring

    root = tmp_path / "d"
    _img(root / "a" / "1.png")
    _img(root / "b" / "1.png")
    (root / "a" / "huge.png").write_bytes(png_declaring(60000, 60000))
    # In a fresh process: ru_maxrss is a lifetime peak, which earlier tests in this one have already raised.
    code = (
        "import json, resource, sys\n"
        "from tlapp.data.sources import scan_data\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "rep = scan_data(sys.argv[1], 'image_classification')\n"
        "grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024\n"
        "print(json.dumps({'grown_mb': grown, 'bad': {b.path: b.reason for b in rep.bad}}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-600:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "decompression bomb" in next(r for p, r in out["bad"].items() if p.endswith("huge.png"))
    assert out["grown_mb"] < 200  # 60000² RGB would be 10 GB


# 8 ----------------------------------------------------------------------------
def test_8_one_image_class_is_named_not_a_tf_error(tmp_path):
    from tlapp.config import TaskType
    from tlapp.data.split import split_examples

    root = tmp_path / "d"
    for i in range(5):
        _img(root / "many" / f"{i}.png")
    _img(root / "lonely" / "0.png")
    rep = scan(root)
    assert any("one example" in w and "lonely" in w for w in rep.warnings)
    s = split_examples(rep.examples, TaskType.image_classification, 0.2, 0.0, 0)
    assert [e.label for e in s.train].count("lonely") == 1 and "many" in [e.label for e in s.val]


# 9 ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "names", [("Cat", "cat"), (unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café"))]
)
def test_9_class_names_that_differ_only_in_case_or_unicode_form_are_refused(tmp_path, names):
    root = tmp_path / "d"
    for n in names:
        _img(root / n / "1.png")
    _img(root / "dog" / "1.png")
    rep = scan(root)
    if len(rep.classes) < 3:
        pytest.skip("this file system folds these names into one folder")
    with pytest.raises(DataError, match="differ only in letter case or Unicode form"):
        rep.require_usable()


def test_9_one_class_is_refused(tmp_path):
    _img(tmp_path / "d" / "only" / "1.png")
    with pytest.raises(DataError, match="at least 2 classes"):
        scan(tmp_path / "d").require_usable()


# 10 ---------------------------------------------------------------------------
WEIRD = ["..", "CON", "a/b", "x" * 300, "שלום עולם", " spaced "]


def test_10_odd_labels_are_stored_exactly_and_nothing_escapes_the_run_dir(tmp_path):
    from tlapp.training.run import train

    img = tmp_path / "img.png"
    _img(img)
    rows = ["path,label"] + [f'{img},"{lab}"' for lab in WEIRD for _ in range(4)]
    (tmp_path / "data.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    d = tiny_project_dict(tmp_path / "data.csv")
    d["data"].update(source="csv", val_fraction=0.25)
    d["train"]["phases"] = [{"name": "head", "epochs": 1, "freeze": {"mode": "all"}}]
    d["export"] = {"formats": ["keras"], "verify": False}
    before = {p for p in tmp_path.rglob("*")}
    run = tmp_path / "run"
    train(project_from_dict(d), run)
    meta = json.loads((run / "export" / "meta.json").read_text())
    assert sorted(meta["classes"]) == sorted(lab.strip() for lab in WEIRD)  # CSV cells are trimmed, no more
    assert {p for p in tmp_path.rglob("*") if not str(p).startswith(str(run))} == before


def test_10_label_with_a_line_break_or_nul_is_refused(tmp_path):
    img = tmp_path / "img.png"
    _img(img)
    (tmp_path / "data.csv").write_text(f'path,label\n{img},"two\nlines"\n{img},ok\n', encoding="utf-8")
    with pytest.raises(DataError, match="line break or NUL"):
        scan(tmp_path / "data.csv").require_usable()


# 11 ---------------------------------------------------------------------------
def test_11_image_csv_encodings_quotes_and_bad_labels(tmp_path):
    img = tmp_path / "ü.png"
    _img(img)
    text = f'path,label\n"{img}","caf\u00e9"\n"{img}","multi\nline"\n'.replace("multi\nline", "multi line")
    (tmp_path / "u16.csv").write_bytes(text.encode("utf-16"))
    assert {e.label for e in scan(tmp_path / "u16.csv").examples} == {"café", "multi line"}
    (tmp_path / "l1.csv").write_bytes(f"path,label\n{img.name},caf\u00e9\n".encode("latin-1"))
    rep = scan(tmp_path / "l1.csv")
    assert rep.examples[0].label == "café" and any("latin-1" in w for w in rep.warnings)
    (tmp_path / "q.csv").write_text(f'path,label\n"{img}","a, quoted\nnewline"\n{img},b\n')
    assert scan(tmp_path / "q.csv").examples[0].label == "a, quoted\nnewline"
    (tmp_path / "miss.csv").write_text(f"path,label\n{img},a\n{img},\n")
    with pytest.raises(DataError, match=r"miss.csv:row 3: label \(column 2\) is missing"):
        scan(tmp_path / "miss.csv")
    (tmp_path / "nan.csv").write_text(f"path,label\n{img},1.5\n{img},nan\n")
    with pytest.raises(DataError, match=r"nan.csv:row 3, label \(column 2\): label 'nan' is not a finite number"):
        scan(tmp_path / "nan.csv", "regression")


# 12 ---------------------------------------------------------------------------
def test_12_symlinks_outside_the_data_folder_are_not_followed(tmp_path):
    outside = tmp_path / "outside"
    _img(outside / "secret.png")
    root = tmp_path / "d"
    _img(root / "a" / "1.png")
    _img(root / "b" / "1.png")
    (root / "linked").symlink_to(outside, target_is_directory=True)
    (root / "a" / "leak.png").symlink_to(outside / "secret.png")
    (root / "b" / "inside.png").symlink_to(root / "a" / "1.png")  # a link that stays inside is fine
    rep = scan(root)
    assert rep.classes == ["a", "b"]
    assert all("secret" not in e.path and "linked" not in e.path for e in rep.examples) and len(rep.examples) == 3
    reasons = {Path(b.path).name: b.reason for b in rep.ignored}
    assert "outside the data folder" in reasons["linked"] and "outside the data folder" in reasons["leak.png"]


# 13 ---------------------------------------------------------------------------
def test_13_absurd_learning_rate_is_refused_up_front(color_data):
    d = tiny_project_dict(color_data)
    d["train"]["phases"][0]["learning_rate"] = 1e12
    with pytest.raises(ConfigError, match=r"learning_rate.*less than or equal to 10.*1000000000000"):
        project_from_dict(d)


def test_13_divergence_stops_within_a_batch_naming_epoch_batch_and_rate():
    from tlapp.training.callbacks import EventCallback

    class Log:
        def emit(self, *a, **k):
            pass

    cb = EventCallback(Log(), 0, "finetune", 3, 10, 8, None, lambda *a: None, learning_rate=5.0)
    cb.on_epoch_begin(1)
    cb.on_train_batch_end(0, {"loss": 2.3})
    cb.on_train_batch_end(1, {"loss": 40.0})
    with pytest.raises(TrainingError, match=r"diverged: loss 1e\+13.*epoch 2, batch 3 at learning rate 5; try 0.5"):
        cb.on_train_batch_end(2, {"loss": 1e13})


# 14 ---------------------------------------------------------------------------
_OOM = r"""
import json, resource, sys
from pathlib import Path
import tensorflow as tf
from tlapp.base.errors import TrainingError
from tlapp.config import project_from_dict
from tlapp.rundir import RunDir
from tlapp.training import run as run_mod

d, out = json.loads(sys.argv[1]), Path(sys.argv[2])
real = run_mod.Run.run
unlimited = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)

def oom(self, resume):
    # A real allocation failure: 1 GiB of headroom for TensorFlow's data, then a 4 GiB tensor.
    vm = int(open("/proc/self/statm").read().split()[0]) * 4096
    resource.setrlimit(resource.RLIMIT_DATA, (vm + 2**30, resource.RLIM_INFINITY))
    try:
        tf.ones([64, 1024, 1024, 16])
    finally:
        resource.setrlimit(resource.RLIMIT_DATA, unlimited)

run_mod.Run.run = oom
try:
    run_mod.train(project_from_dict(d), out / "a")
    print("NO ERROR")
except TrainingError as e:
    print("ERROR", e)
except BaseException as e:
    print("RAW", type(e).__name__, str(e)[:300])
print("STATUS", RunDir(out / "a").status()["status"])
run_mod.Run.run = real
print("RETRY", run_mod.train(project_from_dict(d), out / "b").status)
"""


def test_14_out_of_memory_is_one_message_and_a_retry_works(color_data, tmp_path):
    """A real ResourceExhaustedError, as TensorFlow raises it when an allocation fails in a memory-limited
    process (RLIMIT_DATA), reaches the run's handler and becomes the one-line advice. (A whole training
    squeezed under such a limit on CPU ends in std::bad_alloc inside tf.data, an abort: that run shows as
    interrupted and resumes, as test_15's kill -9 does.)"""
    d = tiny_project_dict(color_data)
    d["export"] = {"formats": [], "verify": False}
    proc = subprocess.run(
        [sys.executable, "-c", _OOM, json.dumps(d), str(tmp_path)], capture_output=True, text=True, timeout=600
    )
    lines = dict(line.split(" ", 1) for line in proc.stdout.splitlines() if " " in line)
    assert lines.get("ERROR", "").startswith("out of memory at batch size 8: set train.batch_size to 4"), (
        proc.stdout + proc.stderr[-2000:]
    )
    assert lines["STATUS"] == "failed" and lines["RETRY"] == "completed"


# 15 ---------------------------------------------------------------------------
def test_15_kill_9_shows_interrupted_and_resume_continues(color_data, tmp_path):
    pf = _long_project(tmp_path, color_data)
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tlapp", "train", str(pf), "--out", str(run)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 180
    while not (run / "checkpoints" / "last" / "manifest.json").is_file() and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.4)  # into the next epoch
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    rd = RunDir(run)
    assert rd.status()["status"] == "interrupted" and rd.has_checkpoint()
    assert not rd.lock_file.exists() or json.loads(rd.lock_file.read_text())["pid"] == proc.pid  # stale lock
    done = json.loads((rd.last_checkpoint / "state.json").read_text())["epoch_done"]
    r = subprocess.run(
        [sys.executable, "-m", "tlapp", "train", str(pf), "--resume", str(run)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-800:]
    assert rd.status()["status"] == "completed"
    events = rd.read_events()
    resumed = [e for e in events if e["type"] == "resume"][-1]["data"]
    assert resumed["epoch"] == done + 1
    epochs = [e["data"]["epoch"] for e in events if e["type"] == "epoch_end"]
    assert epochs[-1] == 4


# 16 ---------------------------------------------------------------------------
def test_16_second_ctrl_c_stops_at_once_and_corrupts_nothing(color_data, tmp_path):
    pf = _long_project(tmp_path, color_data)
    run = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tlapp", "train", str(pf), "--out", str(run)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for(run / "events.jsonl", '"epoch_end"')
    os.kill(proc.pid, signal.SIGINT)
    time.sleep(0.5)  # a person's double press
    os.kill(proc.pid, signal.SIGINT)
    t0 = time.time()
    _, err = proc.communicate(timeout=60)
    # 130, or killed by SIGINT itself when the second press lands during interpreter shutdown (a shell
    # reports both as 130).
    assert proc.returncode in (130, -signal.SIGINT) and time.time() - t0 < 30, err[-800:]
    assert RunDir(run).status()["status"] in ("cancelled", "interrupted")
    assert "Traceback" not in err and f"--resume {run}" in err.replace("\n", " ")
    from tlapp.training import checkpoint as ckpt

    assert ckpt.problem(RunDir(run).last_checkpoint) is None  # the checkpoint on disk is sound


# 17, 19 -----------------------------------------------------------------------
@pytest.fixture
def two_checkpoints(tmp_path):
    import keras

    from tlapp.training import checkpoint as ckpt

    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    folder = tmp_path / "checkpoints" / "last"
    for epoch in (1, 2):
        ckpt.save_checkpoint(folder, model, None, {"phase": 0, "epoch_done": epoch, "phase_epochs": 3})
    return folder


def test_19_corrupt_checkpoint_falls_back_to_the_previous_one(two_checkpoints):
    from tlapp.training import checkpoint as ckpt

    last = two_checkpoints
    w = last / "model.weights.h5"
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])  # truncated
    assert "does not match its recorded hash" in ckpt.problem(last)
    warning = ckpt.choose(last.parent)
    assert "is corrupt" in warning and "resuming from the one before it" in warning
    assert ckpt.read_state(last)["epoch_done"] == 1 and ckpt.problem(last) is None


def test_19_no_sound_checkpoint_is_one_clear_error(two_checkpoints):
    from tlapp.training import checkpoint as ckpt

    for d in (two_checkpoints, two_checkpoints.with_name("previous")):
        (d / "state.json").write_bytes(os.urandom(50))
    with pytest.raises(TrainingError, match=r"checkpoint .*last is corrupt \(state.json does not match"):
        ckpt.choose(two_checkpoints.parent)


def test_17_interrupted_swap_is_recovered_and_stale_temps_removed(two_checkpoints):
    from tlapp.training import checkpoint as ckpt

    last = two_checkpoints
    os.replace(last, last.with_name(".last.old"))  # killed between the two renames
    (last.parent / ".last.abc123").mkdir()  # a temp folder from a killed save
    assert RunDir(last.parent.parent).has_checkpoint()
    assert ckpt.choose(last.parent) is None
    assert ckpt.read_state(last)["epoch_done"] == 2
    assert not [p for p in last.parent.iterdir() if p.name.startswith(".")]


# 18 ---------------------------------------------------------------------------
def test_18_unwritable_output_is_exit_2_with_one_line(color_data, tmp_path):
    pf = tmp_path / "p.yaml"
    pf.write_text(yaml.safe_dump(tiny_project_dict(color_data)))
    (tmp_path / "afile").write_text("x")
    for out in (tmp_path / "afile" / "run",):
        r = subprocess.run(
            [sys.executable, "-m", "tlapp", "train", str(pf), "--out", str(out)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert r.returncode == 2 and "Traceback" not in r.stderr
        assert "cannot create the run folder" in r.stderr and len(r.stderr.strip().splitlines()) <= 2


def test_18_read_only_output_is_exit_2_with_one_line(color_data, tmp_path):
    """A read-only folder, for root too: root writes through permission bits, so as root the folder is a
    read-only tmpfs mounted in a private mount namespace of the child (the mount ends with it)."""
    import shutil

    pf = tmp_path / "p.yaml"
    pf.write_text(yaml.safe_dump(tiny_project_dict(color_data)))
    ro = tmp_path / "ro"
    ro.mkdir()
    train = [sys.executable, "-m", "tlapp", "train", str(pf), "--out", str(ro / "run")]
    if os.geteuid() != 0:
        os.chmod(ro, 0o500)
        cmd = train
    else:
        if shutil.which("unshare") is None:
            pytest.skip("root without util-linux's unshare: no read-only folder can be made for a child")
        cmd = ["unshare", "-m", "sh", "-c", f'mount -t tmpfs -o ro,size=1m tmpfs "{ro}" && exec "$@"', "sh", *train]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    finally:
        os.chmod(ro, 0o700)
    if os.geteuid() == 0 and ("mount:" in r.stderr or "unshare:" in r.stderr):
        pytest.skip(f"this machine refuses a private read-only mount: {r.stderr.strip()[:200]}")
    lines = [x for x in r.stderr.splitlines() if x.strip()]
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(lines) == 1, r.stderr[-1500:]
    assert str(ro / "run") in lines[0] and ("Read-only file system" in lines[0] or "Permission denied" in lines[0])
    assert not (ro / "run").exists()


def _tlapp_with_file_limit(args: list[str], max_bytes: int) -> subprocess.CompletedProcess:
    """``tlapp ARGS`` in a child whose files cannot grow past ``max_bytes`` (RLIMIT_FSIZE): every write past
    it fails with EFBIG, as a full disk fails a write with ENOSPC — a real failure from the real writers
    (h5py, Keras, the event log), not a hand-built exception."""
    import resource

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel kills the writer instead of failing it
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))

    return subprocess.run(
        [sys.executable, "-m", "tlapp", *args], preexec_fn=limit, capture_output=True, text=True, timeout=600
    )


def _one_error_line(stderr: str) -> str:
    lines = [x for x in stderr.splitlines() if x.strip()]
    assert "Traceback" not in stderr and "run failed" not in stderr, stderr[-1500:]
    assert sum(x.startswith("error:") for x in lines) == 1 and lines[-1].startswith("error: "), stderr[-1500:]
    return lines[-1]


@pytest.mark.slow  # several processes for a minute: CI runs it in its slow step
def test_18_a_full_disk_is_one_line_keeps_the_checkpoint_and_the_export(color_data, tmp_path):
    from tlapp.base.errors import Cancelled
    from tlapp.training.run import train

    d = tiny_project_dict(color_data)
    d["backbone"]["options"] = {"width": 64}  # weights of about 290 KB: more than the limit below
    d["export"] = {"formats": ["savedmodel", "keras"], "verify": False}
    pf = tmp_path / "p.yaml"
    pf.write_text(yaml.safe_dump(d))
    # The best weights of the first epoch cannot be written.
    r = _tlapp_with_file_limit(["train", str(pf), "--out", str(tmp_path / "a")], 150_000)
    line = _one_error_line(r.stderr)
    assert r.returncode == 2 and "checkpoints" in line and "File too large" in line and "free some space" in line
    assert RunDir(tmp_path / "a").status()["status"] == "failed"
    assert not [f for f in (tmp_path / "a" / "checkpoints").iterdir() if f.name.startswith(".")]  # no debris
    # The event log cannot grow.
    r = _tlapp_with_file_limit(["train", str(pf), "--out", str(tmp_path / "b")], 4000)
    assert r.returncode == 2 and "events.jsonl: File too large" in _one_error_line(r.stderr)
    # A run with a checkpoint stays resumable: a resume that fails to write keeps the checkpoint it read.
    seen = {"epoch": False}
    with pytest.raises(Cancelled):
        train(
            load_project(pf),
            tmp_path / "c",
            lambda ev: seen.update(epoch=seen["epoch"] or ev.type == "epoch_end"),
            should_stop=lambda: seen["epoch"],
            project_file=pf,
        )
    state = (tmp_path / "c" / "checkpoints" / "last" / "state.json").read_text()
    r = _tlapp_with_file_limit(["train", str(pf), "--resume", str(tmp_path / "c")], 150_000)
    assert r.returncode == 2 and "File too large" in _one_error_line(r.stderr)
    assert (tmp_path / "c" / "checkpoints" / "last" / "state.json").read_text() == state
    r = subprocess.run(
        [sys.executable, "-m", "tlapp", "train", str(pf), "--resume", str(tmp_path / "c")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0 and RunDir(tmp_path / "c").status()["status"] == "completed", r.stderr[-1500:]
    # A re-export that cannot write leaves the export that was there.
    keras_file = tmp_path / "c" / "export" / "model.keras"
    before = keras_file.read_bytes()
    r = _tlapp_with_file_limit(["export", str(tmp_path / "c"), "--format", "h5"], 150_000)
    assert r.returncode == 2 and "File too large" in _one_error_line(r.stderr)
    assert keras_file.read_bytes() == before and (tmp_path / "c" / "export" / "saved_model").is_dir()
    assert not (tmp_path / "c" / "export" / "model.h5").exists()
    image = str(sorted((color_data / "red").iterdir())[0])
    r = subprocess.run(
        [sys.executable, "-m", "tlapp", "predict", str(tmp_path / "c"), image, "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0 and json.loads(r.stdout.splitlines()[0])["label"] in ("red", "green", "blue")


# 26 ---------------------------------------------------------------------------
def test_26_two_trainers_into_one_run_folder(color_data, tmp_path):
    from tlapp.training.run import train

    rd = RunDir(tmp_path / "run")
    with rd.lock():
        with pytest.raises(TlappError, match=r"another tlapp \(pid \d+ on .*\) is training into this folder"):
            train(project_from_dict(tiny_project_dict(color_data)), rd.root)
    # A lock left by a dead process is taken over.
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    import socket

    rd.lock_file.write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}))
    with rd.lock():
        assert json.loads(rd.lock_file.read_text())["pid"] == os.getpid()
    assert not rd.lock_file.exists()


# 27 ---------------------------------------------------------------------------
def test_27_hostile_project_files(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(
        "a: &a [x, x, x, x, x, x, x, x, x]\n"
        + "".join(
            f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
            for p, c in zip("abcdefgh", "bcdefghi")
        )
        + "name: x\n"
    )
    with pytest.raises(ConfigError, match="line 2, column .*aliases"):
        load_project(bomb)
    big = tmp_path / "big.yaml"
    with open(big, "w") as f:
        f.write("name: x\n# " + "x" * (50 * 2**20) + "\n")
    t0 = time.time()
    with pytest.raises(ConfigError, match="far too large for a project file"):
        load_project(big)
    assert time.time() - t0 < 1
    tabs = tmp_path / "tabs.yaml"
    tabs.write_text("name: x\ndata:\n\tpath: d\n")
    with pytest.raises(ConfigError, match=r"line 3, column 1: .*YAML indents with spaces, not tabs"):
        load_project(tabs)
    bom = tmp_path / "bom.yaml"
    bom.write_bytes(b"\xef\xbb\xbfname: x\ndata: {path: .}\n")
    assert load_project(bom).name == "x"


def test_27_resume_uses_the_runs_own_config(color_data, tmp_path, capsys):
    """Editing the project file after a run changes nothing for its --resume: config.yaml in the run is used."""
    import yaml

    from tlapp.base.errors import Cancelled
    from tlapp.cli.main import main
    from tlapp.training.run import train

    d = tiny_project_dict(color_data)
    d["train"]["phases"] = [{"name": "head", "epochs": 2, "freeze": {"mode": "all"}}]
    d["export"] = {"formats": [], "verify": False}
    pfile, run = tmp_path / "p.yaml", tmp_path / "run"
    pfile.write_text(yaml.safe_dump(d))
    seen = {"epoch": False}

    def on_event(ev):
        seen["epoch"] = seen["epoch"] or ev.type == "epoch_end"

    with pytest.raises(Cancelled):
        train(load_project(pfile), run, on_event, should_stop=lambda: seen["epoch"], project_file=pfile)
    d["train"]["phases"][0]["epochs"] = 7  # the user edits the project file meanwhile: no effect on --resume
    pfile.write_text(yaml.safe_dump(d))
    try:
        main(["train", str(pfile), "--resume", str(run)])
        code = 0
    except SystemExit as e:
        code = e.code
    assert code in (0, None), capsys.readouterr().err
    events = [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines()]
    epochs = [e["data"]["epoch"] for e in events if e["type"] == "epoch_end"]
    assert epochs == [1, 2] and max(epochs) < 7  # resumed at epoch 2 of the run's own 2, not the file's 7
    assert load_project(run / "config.yaml").train.phases[0].epochs == 2


# 29 ---------------------------------------------------------------------------
# tests/test_gui_welcome.py::test_recent_list_survives_missing_files_and_corrupt_settings


# 30 ---------------------------------------------------------------------------
def test_30_predict_many_files_with_bad_ones_into_a_closed_pipe(trained_run, tmp_path):
    data = make_color_dataset(tmp_path / "many", n=100)
    (data / "red" / "broken.png").write_bytes(b"not a png")
    assert len(sorted(data.rglob("*.png"))) == 301  # 300 images and one broken file
    out = subprocess.run(
        f"{sys.executable} -m tlapp predict {trained_run[2]} {data} --json | head -n 3",
        shell=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0 and len(out.stdout.strip().splitlines()) == 3
    assert "Traceback" not in out.stderr and "BrokenPipe" not in out.stderr, out.stderr[-600:]
    full = subprocess.run(
        [sys.executable, "-m", "tlapp", "predict", str(trained_run[2]), str(data / "red"), "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    rows = [json.loads(line) for line in full.stdout.splitlines()]
    bad = [r for r in rows if "error" in r]
    assert len(rows) == 101 and len(bad) == 1 and bad[0]["path"].endswith("broken.png") and bad[0]["error"]


# 2, 5 -------------------------------------------------------------------------
def test_2_5_exported_bytes_signature_decodes_like_training(tmp_path):
    """serving_bytes's decoder against training's (imageio.load_rgb) on every odd format."""
    from badfixtures import make_bad_dataset

    from tlapp.base.tfenv import quiet_import
    from tlapp.data.imageio import load_rgb
    from tlapp.deploy.export import decode_like_training

    tf, _ = quiet_import()
    make_bad_dataset(tmp_path / "bad")
    odd = tmp_path / "bad" / "odd"
    rng = np.random.default_rng(0)
    frames = [Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)) for _ in range(3)]
    frames[0].save(odd / "anim.gif", save_all=True, append_images=frames[1:])
    Image.fromarray(rng.integers(0, 255, (300, 200, 3), dtype=np.uint8)).save(odd / "big.jpg", quality=92)
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(odd / "png-named.jpg", format="PNG")
    for f in sorted(odd.iterdir()):
        for size in (16, 64):
            want = load_rgb(f, (size, size)).astype(np.float32)
            got = decode_like_training(tf.constant(f.read_bytes()), size).numpy()
            diff = np.abs(want - got)
            assert diff.max() <= 3 and diff.mean() < 1.0, (f.name, size, diff.max(), diff.mean())


# 23, 24 -----------------------------------------------------------------------
_FRESH = r"""
import json, sys
import numpy as np
import tensorflow as tf
import keras
d, export = sys.argv[1], sys.argv[2]
meta = json.load(open(f"{export}/meta.json"))
key = meta["output_key"]
x = np.load(f"{d}/x.npy")
raw = [open(p, "rb").read() for p in json.load(open(f"{d}/raw.json"))]
sm = tf.saved_model.load(f"{export}/saved_model")
kr = keras.saving.load_model(f"{export}/model.keras", compile=False, safe_mode=True)
h5 = keras.saving.load_model(f"{export}/model.h5", compile=False)
out = {}
for n in (1, 7):
    out[f"sm_float_{n}"] = sm.signatures["serving_default"](image=tf.constant(x[:n].astype("float32")))[key].numpy()
    out[f"sm_uint8_{n}"] = sm.signatures["serving_uint8"](image=tf.constant(x[:n]))[key].numpy()
    out[f"sm_bytes_{n}"] = sm.signatures["serving_bytes"](image_bytes=tf.constant(raw[:n]))[key].numpy()
    out[f"keras_{n}"] = np.asarray(kr.predict_on_batch(x[:n].astype("float32")))
    out[f"h5_{n}"] = np.asarray(h5.predict_on_batch(x[:n].astype("float32")))
np.savez(f"{d}/out.npz", **out)
print(json.dumps({"tlapp_imported": any(m == "tlapp" or m.startswith("tlapp.") for m in sys.modules)}))
"""


@pytest.mark.parametrize("mode", ["tf", "caffe", "torch", "raw"])
def test_23_24_export_parity_per_preprocessing_family_without_tlapp(mode, color_data, tmp_path, monkeypatch):
    """Raw images (odd sizes, files on disk) through SavedModel (3 signatures), .keras and .h5,
    reloaded in a fresh process that never imports tlapp, match the app; batch 1 and 7."""
    from dataclasses import replace

    from tlapp.backbones import catalog
    from tlapp.data.imageio import load_rgb
    from tlapp.deploy.loading import load_parts
    from tlapp.training.run import train

    monkeypatch.setitem(catalog._REGISTRY, "tiny_cnn", replace(catalog.get_entry("tiny_cnn"), preprocessing=mode))
    d = tiny_project_dict(color_data)
    d["train"]["phases"] = [{"name": "head", "epochs": 1, "freeze": {"mode": "all"}}]
    d["export"] = {"formats": ["savedmodel", "keras", "h5"], "verify": False}
    run = tmp_path / "run"
    train(project_from_dict(d), run)
    export = run / "export"
    rng = np.random.default_rng(1)
    raw = []
    for i, (w, h) in enumerate([(50, 37), (31, 64), (32, 32), (90, 45), (20, 20), (64, 33), (41, 41)]):
        p = tmp_path / f"raw{i}.png"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(p)
        raw.append(str(p))
    x = np.stack([load_rgb(p, (32, 32)) for p in raw])
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "raw.json").write_text(json.dumps(raw))
    r = subprocess.run(
        [sys.executable, "-c", _FRESH, str(tmp_path), str(export)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": ""},
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-1500:]
    assert json.loads(r.stdout.strip().splitlines()[-1]) == {"tlapp_imported": False}
    got = np.load(tmp_path / "out.npz")
    app = np.asarray(load_parts(export).model.predict_on_batch(x.astype("float32")))
    for n in (1, 7):
        for name in ("sm_float", "sm_uint8", "keras", "h5"):
            np.testing.assert_allclose(got[f"{name}_{n}"], app[:n], atol=1e-5, err_msg=f"{mode} {name} batch {n}")
        # Encoded bytes are decoded and resized in the graph: a level or two from Pillow's pixels.
        np.testing.assert_allclose(got[f"sm_bytes_{n}"], app[:n], atol=0.02, err_msg=f"{mode} bytes batch {n}")


# 1 ----------------------------------------------------------------------------
def test_1_corrupt_files_are_named_before_any_epoch_and_training_finishes(tmp_path):
    import shutil

    from badfixtures import make_bad_dataset

    from tlapp.training.run import train

    expected = make_bad_dataset(tmp_path / "bad")
    shutil.rmtree(tmp_path / "bad" / "empty")
    d = tiny_project_dict(tmp_path / "bad")
    d["data"]["val_fraction"] = 0.3
    d["train"]["phases"] = [{"name": "ft", "epochs": 2, "freeze": {"mode": "none"}, "augment": {"flip": True}}]
    d["export"] = {"formats": [], "verify": False}
    events = []
    result = train(project_from_dict(d), tmp_path / "run", events.append)
    assert result.status == "completed"
    types = [e.type for e in events]
    scan_ev = events[types.index("scan")].data
    assert types.index("scan") < types.index("epoch_start")
    named = {Path(b["path"]).relative_to(tmp_path / "bad").as_posix(): b["reason"] for b in scan_ev["bad"]}
    for rel, reason in expected.items():
        assert reason in named[rel], rel


# 21 ---------------------------------------------------------------------------
def test_21_closing_mid_training_and_answering_no_keeps_training(window, qtbot, color_data, monkeypatch):
    from PySide6.QtWidgets import QMessageBox
    from test_gui import to_training

    from gui_fakes import FakeTrainer

    to_training(qtbot, window, color_data)
    tp = window.training
    tp.trainer_factory = lambda: FakeTrainer(n_batches=10_000, interval_ms=20)
    tp.start()
    qtbot.waitUntil(lambda: tp.charts.updates > 3, timeout=5000)
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.No)
    window.close()
    assert window.isVisible() and tp.is_running()
    n = tp.charts.updates
    qtbot.waitUntil(lambda: tp.charts.updates > n + 3, timeout=5000)  # still training
    tp.cancel()
    qtbot.waitUntil(lambda: tp.status_text == "cancelled", timeout=5000)


# 22 ---------------------------------------------------------------------------
def test_22_batchnorm_statistics_move_only_when_opted_in(color_data, tmp_path):
    import keras

    from tlapp.training.run import train

    moved = {}
    for opt_in in (False, True):
        d = tiny_project_dict(color_data)
        d["train"]["phases"] = [{"name": "ft", "epochs": 2, "freeze": {"mode": "none", "train_batchnorm": opt_in}}]
        d["export"] = {"formats": ["keras"], "verify": False}
        train(project_from_dict(d), tmp_path / str(opt_in))
        m = keras.saving.load_model(tmp_path / str(opt_in) / "export" / "model.keras", compile=False)
        bns = [
            lay
            for lay in m.get_layer("features").get_layer("tiny_cnn").layers
            if isinstance(lay, keras.layers.BatchNormalization)
        ]
        moved[opt_in] = max(float(np.abs(b.moving_mean.numpy()).max()) for b in bns)
    assert moved[False] == 0.0 and moved[True] > 1e-3


# 25 ---------------------------------------------------------------------------
def test_25_same_seed_twice_gives_identical_weights(color_data, tmp_path):
    import keras

    from tlapp.training.run import train

    weights = []
    for i in range(2):
        d = tiny_project_dict(color_data)
        d["train"]["deterministic"] = True
        d["train"]["phases"] = [{"name": "ft", "epochs": 2, "freeze": {"mode": "none"}, "augment": {"flip": True}}]
        d["export"] = {"formats": ["keras"], "verify": False}
        train(project_from_dict(d), tmp_path / str(i))
        m = keras.saving.load_model(tmp_path / str(i) / "export" / "model.keras", compile=False)
        weights.append(m.get_weights())
    for a, b in zip(*weights):
        np.testing.assert_array_equal(a, b)
    splits = [json.loads((tmp_path / str(i) / "split.json").read_text()) for i in range(2)]
    assert splits[0] == splits[1]
    assert not {tuple(r) for r in splits[0]["train"]} & {tuple(r) for r in splits[0]["val"]}


# 28 ---------------------------------------------------------------------------
def test_28_weights_that_do_not_fit_name_the_layer_and_shapes(tmp_path):
    from tlapp.backbones.build import build_any_backbone
    from tlapp.config import Backbone

    other = build_any_backbone(Backbone(name="tiny_cnn", image_size=32, weights="none", options={"width": 16}))
    path = tmp_path / "wide.keras"
    other.model.save(path)
    with pytest.raises(Exception) as e:
        build_any_backbone(Backbone(name="tiny_cnn", image_size=32, weights=str(path)))
    msg = str(e.value)
    assert "wide.keras" in msg and "needs shape" in msg and "the file has" in msg, msg


def _with_orientation(path, pixels, orientation):
    img = Image.fromarray(pixels)
    exif = Image.Exif()
    exif[0x0112] = orientation
    img.save(path, format="JPEG", quality=95, subsampling=0, exif=exif.tobytes())  # 4:4:4: decoders agree


def test_exif_orientation_is_applied_in_the_graph_as_pillow_does(tmp_path):
    from tlapp.base.tfenv import quiet_import
    from tlapp.data.imageio import load_rgb
    from tlapp.deploy.export import decode_like_training, exif_orientation

    tf, _ = quiet_import()
    rng = np.random.default_rng(1)
    base = np.kron(rng.integers(0, 255, (6, 9, 3)), np.ones((8, 8, 1))).astype(np.uint8)  # 48 x 72, blocky
    for o in range(1, 9):
        f = tmp_path / f"o{o}.jpg"
        _with_orientation(f, base, o)
        raw = tf.constant(f.read_bytes())
        assert int(exif_orientation(raw)) == o
        want = load_rgb(f).astype(np.float32)  # Pillow's exif_transpose
        got = decode_like_training(raw, 64).numpy()
        diff = np.abs(load_rgb(f, (64, 64)).astype(np.float32) - got)
        assert diff.max() <= 3 and diff.mean() < 1.0, (o, want.shape, diff.max(), diff.mean())
    png = tmp_path / "x.png"
    Image.fromarray(base).save(png)
    assert int(exif_orientation(tf.constant(png.read_bytes()))) == 1


def test_rotated_jpeg_and_rgba_png_get_one_answer_from_every_prediction_path(trained_run, tmp_path):
    """`tlapp predict`, the pixel signature (pixels of any size) and the bytes signature."""
    from tlapp.base.tfenv import quiet_import
    from tlapp.data.imageio import load_rgb
    from tlapp.deploy.predict import Predictor

    tf, _ = quiet_import()
    run = trained_run[2]
    upright = np.zeros((90, 60, 3), np.uint8)
    upright[:45] = (220, 30, 30)  # red above, blue below: a wrong rotation changes the picture
    upright[45:] = (30, 30, 220)
    rotated = tmp_path / "rotated.jpg"
    _with_orientation(rotated, np.ascontiguousarray(np.rot90(upright, k=1)), 6)  # stored turned, EXIF says "turn back"
    assert load_rgb(rotated).shape == upright.shape
    rgba = np.zeros((50, 70, 4), np.uint8)
    rgba[..., 2], rgba[..., 3] = 200, 128  # half-transparent blue: composited on white
    png = tmp_path / "rgba.png"
    Image.fromarray(rgba, "RGBA").save(png)

    pred = Predictor.load(run)
    sm = tf.saved_model.load(str(run / "export" / "saved_model"))
    for f in (rotated, png):
        by_predict = np.array(list(pred.predict_files([str(f)])[0]["scores"].values()))
        pixels = load_rgb(f)[None].astype(np.float32)  # its own size: the signature resizes like training
        by_pixels = sm.signatures["serving_default"](image=tf.constant(pixels))["probabilities"].numpy()[0]
        by_bytes = sm.signatures["serving_bytes"](image_bytes=tf.constant([f.read_bytes()]))["probabilities"].numpy()[0]
        for name, got in (("pixels", by_pixels), ("bytes", by_bytes)):
            assert got.argmax() == by_predict.argmax(), (f.name, name, got, by_predict)
            assert np.abs(got - by_predict).max() < 0.02, (f.name, name, got, by_predict)
