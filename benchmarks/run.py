"""Every benchmark, side by side in one run: each row a ratio (or a bound) against a
plain baseline measured in the same process and minute, medians of ``--repeats``.

    python benchmarks/run.py [--quick] [--json PATH] [--only NAME,NAME]

Writes ``{"provenance", "quick", "repeats", "rows"}`` to PATH (each row ``{"name", "value", "goal",
"higher_is_better", "meets", "detail"}``, also printed). ``--quick`` uses smaller data but measures the
same ratios; CI runs it as a smoke test: nothing is asserted about the numbers, but a benchmark that
errors makes the run exit 1. A row whose inputs are absent here (``../shared``) says so in ``detail``
and has ``value: null``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from provenance import provenance  # noqa: E402

SHARED = ROOT.parent / "shared"


def row(name: str, value: Optional[float], goal: float, higher: bool, detail: str) -> dict[str, Any]:
    meets = None if value is None else (value >= goal if higher else value < goal)
    return {
        "name": name,
        "value": None if value is None else round(float(value), 3),
        "goal": goal,
        "higher_is_better": higher,
        "meets": meets,
        "detail": detail,
    }


def median_time(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def image_folder(
    root: Path, n: int, classes: int = 10, sizes=((64, 48), (96, 96), (120, 80), (80, 140)), seed: int = 0
) -> Path:
    """``n`` generated images of several sizes, half JPEG half PNG, textured so JPEG has work to do."""
    import numpy as np
    from PIL import Image

    done = root / ".complete"
    if done.is_file():
        return root
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (160, 160, 3), dtype=np.uint8)
    for i in range(n):
        c = i % classes
        w, h = sizes[i % len(sizes)]
        img = np.roll(base, (i * 7) % 160, axis=1)[:h, :w].copy()
        img[..., c % 3] = (img[..., c % 3] // 2 + 25 * c).astype(np.uint8)
        d = root / f"class{c}"
        d.mkdir(parents=True, exist_ok=True)
        if i % 2:
            Image.fromarray(img).save(d / f"{i:06d}.jpg", quality=85)
        else:
            Image.fromarray(img).save(d / f"{i:06d}.png", compress_level=1)
    done.write_text("ok")
    return root


def real_images() -> Optional[Path]:
    p = SHARED / "data" / "sign_language_digits" / "Dataset"
    return p if p.is_dir() else None


# ---- the benchmarks ------------------------------------------------------------
def frozen_phase(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    """tlapp's frozen phase (embedding cache) vs plain ``fit`` with the frozen backbone, and vs
    the physical limit: one forward pass of the backbone over the training images."""
    from tlapp.base.tfenv import quiet_import
    from tlapp.config import project_from_dict
    from tlapp.data.labels import LabelEncoder
    from tlapp.data.pipelines import image_dataset
    from tlapp.data.scan_images import scan
    from tlapp.data.split import split_examples
    from tlapp.model.image_model import build_model
    from tlapp.training import embcache

    tf, keras = quiet_import()
    data = real_images() or image_folder(tmp / "frozen", 400)
    per_class, size, epochs = (10, 96, 10) if args.quick else (40, 160, 10)
    base = {
        "name": "bench",
        "data": {"path": str(data), "val_fraction": 0.2, "max_per_class": per_class},
        "backbone": {"name": "efficientnet_lite0", "image_size": size},
        "head": {"dropout": 0.0},
        "export": {"formats": []},
    }
    phase = [{"name": "head", "epochs": epochs, "learning_rate": 1e-3}]

    def tlapp_phase() -> float:
        # In a fresh process, as `tlapp train` runs: inside this one, after it had built other models, the
        # same phase took 12 s instead of 7 s (process state, not tlapp's work).
        embcache.clear()  # each repeat pays its own embedding pass, as a first run does
        out = tmp / f"frozen{time.time_ns()}"
        proj = tmp / f"{out.name}.json"
        proj.write_text(json.dumps({**base, "train": {"batch_size": 32, "phases": phase}}))
        code = (
            "import sys, json; from tlapp.config import project_from_dict; from tlapp.training.run import train; "
            "train(project_from_dict(json.load(open(sys.argv[1]))), sys.argv[2])"
        )
        r = subprocess.run(
            [sys.executable, "-c", code, str(proj), str(out)], capture_output=True, text=True, timeout=1800
        )
        if r.returncode != 0:
            raise RuntimeError(r.stderr[-500:])
        events = [json.loads(x) for x in (out / "events.jsonl").read_text().splitlines()]
        start = next(e["time"] for e in events if e["type"] == "phase_start")
        return next(e["time"] for e in events if e["type"] == "phase_end") - start

    p = project_from_dict({**base, "train": {"batch_size": 32}})
    rep = scan(data)
    sp = split_examples(rep.examples, p.task.type, 0.2, 0.0, 42, per_class)
    enc = LabelEncoder(p.task.type, rep.classes)
    asm = build_model(p, len(rep.classes))
    asm.backbone.model.trainable = False
    ds = image_dataset(sp.train, enc, asm.backbone.size, 32, shuffle=True, cache="memory")
    vds = image_dataset(sp.val, enc, asm.backbone.size, 32, cache="memory")
    asm.model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")

    def plain_fit() -> None:
        asm.model.fit(ds, validation_data=vds, epochs=epochs, verbose=0)

    one_pass_ds = image_dataset(sp.train + sp.val, enc, asm.backbone.size, 32, cache="none", with_labels=False)
    nb = -(-len(sp.train + sp.val) // 32)
    forward = asm.features.predict_on_batch

    def one_pass() -> None:
        embcache.compute(forward, one_pass_ds, nb, len(sp.train + sp.val))

    t_tlapp = statistics.median(tlapp_phase() for _ in range(args.repeats))
    one_pass()  # warm-up: the physical limit is the pass itself, not its graph tracing
    t_pass = median_time(one_pass, args.repeats)
    t_plain = median_time(plain_fit, args.repeats)
    detail = (
        f"{len(sp.train)} train / {len(sp.val)} val images, efficientnet_lite0@{size}, {epochs} epochs; "
        f"tlapp {t_tlapp:.1f}s, plain fit {t_plain:.1f}s, one warm forward pass {t_pass:.1f}s"
    )
    return [
        row("frozen_phase_vs_fit", t_plain / t_tlapp, 8.0, True, detail),
        row("frozen_phase_vs_one_pass", t_tlapp / t_pass, 1.3, False, detail),
    ]


def finetune(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    """Fine-tune images/s: tlapp's phase vs plain Keras ``fit`` of the same model, batch and
    pipeline (top 2 blocks trainable, BatchNorm frozen, validation included in both)."""
    import numpy as np

    from tlapp.backbones.freeze import apply_plan
    from tlapp.base.tfenv import quiet_import
    from tlapp.config import FreezePlan, project_from_dict
    from tlapp.data.labels import LabelEncoder
    from tlapp.data.pipelines import image_dataset
    from tlapp.data.scan_images import scan
    from tlapp.data.split import split_examples
    from tlapp.model.image_model import build_model
    from tlapp.training.run import train

    tf, keras = quiet_import()
    data = real_images() or image_folder(tmp / "ft", 400)
    per_class, size, epochs = (8, 96, 3) if args.quick else (20, 128, 4)
    base = {
        "name": "bench",
        "data": {"path": str(data), "val_fraction": 0.2, "max_per_class": per_class},
        "backbone": {"name": "efficientnet_lite0", "image_size": size},
        "export": {"formats": []},
    }
    plan = {"mode": "top_blocks", "blocks": 2}
    events = []
    train(
        project_from_dict(
            {
                **base,
                "train": {
                    "batch_size": 16,
                    "phases": [{"name": "ft", "epochs": epochs, "learning_rate": 1e-4, "freeze": plan}],
                },
            }
        ),
        tmp / "ft_run",
        events.append,
    )
    tl = float(np.median([e.data["images_per_s"] for e in events if e.type == "epoch_end"][1:]))
    p = project_from_dict({**base, "train": {"batch_size": 16}})
    rep = scan(data)
    sp = split_examples(rep.examples, p.task.type, 0.2, 0.0, 42, per_class)
    enc = LabelEncoder(p.task.type, rep.classes)
    asm = build_model(p, len(rep.classes))
    apply_plan(asm.backbone.model, asm.backbone.entry, FreezePlan(**plan))
    ds = image_dataset(sp.train, enc, asm.backbone.size, 16, shuffle=True, cache="memory")
    vds = image_dataset(sp.val, enc, asm.backbone.size, 16, cache="memory")
    asm.model.compile(
        optimizer=keras.optimizers.Adam(1e-4), loss="sparse_categorical_crossentropy", metrics=["accuracy"]
    )
    asm.model.fit(ds, validation_data=vds, epochs=1, verbose=0)  # tracing, as tlapp's first epoch
    secs = median_time(lambda: asm.model.fit(ds, validation_data=vds, epochs=1, verbose=0), max(args.repeats, 2))
    plain = len(sp.train) / secs
    return [
        row(
            "finetune_vs_plain_keras",
            tl / plain,
            0.97,
            True,
            f"efficientnet_lite0@{size}, top 2 blocks, batch 16, {len(sp.train)} images: tlapp {tl:.1f} img/s, "
            f"plain fit {plain:.1f} img/s",
        )
    ]


def pipeline_headroom(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    """The decode pipeline alone (JPEG/PNG folder of mixed sizes) vs the model's fine-tune throughput."""
    from tlapp.base.tfenv import quiet_import
    from tlapp.config import TaskType, project_from_dict
    from tlapp.data.labels import LabelEncoder
    from tlapp.data.pipelines import image_dataset
    from tlapp.data.scan_images import scan
    from tlapp.model.image_model import build_model

    tf, keras = quiet_import()
    n, size = (400, 96) if args.quick else (1500, 160)
    data = image_folder(tmp / "pipe", n)
    rep = scan(data)
    enc = LabelEncoder(TaskType.image_classification, rep.classes)
    ds = image_dataset(rep.examples, enc, size, 32, shuffle=True, cache="none")
    pipe_s = median_time(lambda: [None for _ in ds], args.repeats)
    p = project_from_dict(
        {"name": "b", "data": {"path": str(data)}, "backbone": {"name": "efficientnet_lite0", "image_size": size}}
    )
    asm = build_model(p, len(rep.classes))
    asm.backbone.model.trainable = True
    asm.model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="sparse_categorical_crossentropy")
    x = tf.random.uniform((32, size, size, 3), 0, 255)
    y = tf.zeros((32,), tf.int32)
    asm.model.train_on_batch(x, y)
    steps = 4
    model_s = median_time(lambda: [asm.model.train_on_batch(x, y) for _ in range(steps)], args.repeats)
    pipe_ips, model_ips = len(rep.examples) / pipe_s, 32 * steps / model_s
    return [
        row(
            "pipeline_headroom",
            pipe_ips / model_ips,
            3.0,
            True,
            f"{len(rep.examples)} JPEG/PNG images of 4 sizes -> {size}px: pipeline {pipe_ips:.0f} img/s, "
            f"efficientnet_lite0 fine-tune step {model_ips:.1f} img/s",
        )
    ]


def startup(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    """``tlapp --help`` (must not import TensorFlow) and the wizard's window becoming visible."""
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    help_s = median_time(
        lambda: subprocess.run([sys.executable, "-m", "tlapp", "--help"], capture_output=True, env=env, check=True),
        args.repeats,
    )
    code = (
        "import time; t=time.perf_counter(); from PySide6.QtWidgets import QApplication; a=QApplication([]); "
        "from gui.main_window import MainWindow; w=MainWindow(); w.show(); a.processEvents(); "
        "print(time.perf_counter()-t); import os; os._exit(0)"
    )
    win = [
        float(
            subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, check=True)
            .stdout.strip()
            .splitlines()[-1]
        )
        for _ in range(args.repeats)
    ]
    return [
        row("start_help_s", help_s, 0.5, False, "wall time of `python -m tlapp --help`, process start included"),
        row(
            "gui_window_s",
            statistics.median(win),
            3.0,
            False,
            "import the GUI, build the main window and show it (offscreen), in a fresh process",
        ),
    ]


def gui_stall(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    """Longest event-loop stall (20 ms probe) while the wizard scans, embeds and trains for real."""
    code = f"""
import os, sys, time, json
sys.path[:0] = [{str(ROOT)!r}, {str(ROOT / "tests")!r}]
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QApplication
app = QApplication([])
from gui.main_window import MainWindow
from gui_fakes import LoopProbe
w = MainWindow(settings=QSettings({str(tmp / "stall.ini")!r}, QSettings.Format.IniFormat))
w.show(); w.show_wizard()
for _ in range(20): app.processEvents(); time.sleep(0.01)
def pump(cond, limit=1800):
    t0 = time.time()
    while not cond() and time.time() - t0 < limit:
        app.processEvents(); time.sleep(0.005)
probe = LoopProbe().start()
page = w.pages[0]
page.path.setText({str(real_images() or image_folder(tmp / "stall", 600))!r}); page.start_scan()
pump(lambda: w.state.scan_report is not None and not page.scanning())
w.state.update("data", max_per_class={10 if args.quick else 40})
w.state.update("backbone", name="efficientnet_lite0", image_size=96)
w.go(4, check=False)
tp = w.training
tp.start()
pump(lambda: tp.status_text != "running")
print(json.dumps({{"max_ms": max(probe.gaps[1:]) * 1000, "n": len(probe.gaps), "status": tp.status_text}}))
os._exit(0)
"""
    r = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen", "TLAPP_PROJECTS": str(tmp / "projects")},
        timeout=1800,
    )
    if r.returncode != 0:
        raise RuntimeError(f"the GUI run failed: {r.stderr.strip()[-300:]}")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    if out["status"] != "completed":  # a stall measured over a run that failed measures nothing
        raise RuntimeError(f"the training the probe watched ended {out['status']!r}, not completed")
    return [
        row(
            "gui_max_stall_ms",
            out["max_ms"],
            100.0,
            False,
            f"{out['n']} probes over a real scan, embedding pass and training run ({out['status']})",
        )
    ]


def gui_vs_headless(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    data = real_images()
    if data is None:
        return [row("gui_vs_headless", None, 0.95, True, "did not run: needs ../shared's sign-language digits")]
    r = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "gui_vs_cli.py"),
            "--per-class",
            "10" if args.quick else "30",
            "--epochs",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=3600,
        env={**os.environ, "QT_QPA_PLATFORM": "offscreen"},
    )
    line = next((x for x in r.stdout.splitlines() if "GUI/CLI" in x), "")
    try:
        value = float(line.rsplit("GUI/CLI", 1)[1].strip())
    except (IndexError, ValueError):
        raise RuntimeError(f"gui_vs_cli.py printed no GUI/CLI ratio: {(r.stderr or r.stdout)[-300:]}") from None
    return [row("gui_vs_headless", value, 0.95, True, line.strip())]


def large_set(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    """A large generated set through scan, embedding and the head at 96 px in a child process: its
    peak RSS, and the embedding pass's images/s against the same pass on 2,000 images."""
    n = 5_000 if args.quick else 50_000

    def run(count: int, name: str) -> tuple[float, float]:
        data = image_folder(tmp / f"large{count}", count)
        proj = tmp / f"{name}.yaml"
        proj.write_text(
            json.dumps(
                {
                    "name": name,
                    "data": {"path": str(data), "val_fraction": 0.1},
                    "backbone": {"name": "efficientnet_lite0", "image_size": 96},
                    "train": {"preset": "fast", "batch_size": 64},
                    "export": {"formats": ["savedmodel"], "verify": False},
                }
            )
        )
        out = tmp / f"run-{name}"
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss across fork+exec, so a child started from this
        # (TensorFlow-laden) benchmark process would report the parent's size (measured: 3.25 GB vs 1.2 GB).
        code = (
            "import sys; from tlapp.cli.main import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n    code = e.code\nelse:\n    code = 0\n"
            "hwm = next(l for l in open('/proc/self/status') if l.startswith('VmHWM')).split()[1]\n"
            "print('PEAK_KB', hwm, file=sys.stderr)\n"
            "sys.exit(code or 0)"
        )
        r = subprocess.run(
            [sys.executable, "-c", code, "train", str(proj), "--out", str(out)],
            capture_output=True,
            text=True,
            timeout=7200,
        )
        if r.returncode != 0:
            raise RuntimeError(r.stderr[-500:])
        peak = int(next(x for x in r.stderr.splitlines() if x.startswith("PEAK_KB")).split()[1]) / 2**20
        ev = [json.loads(x) for x in (out / "events.jsonl").read_text().splitlines()]
        emb = [e["data"] for e in ev if e["type"] == "embeddings" and not e["data"]["cached"]]
        ips = sum(e["n"] for e in emb) / max(sum(e["seconds"] for e in emb), 1e-9)
        return peak, ips

    peak_big, ips_big = run(n, "large")  # a failure raises: a benchmark that errors fails the suite
    peak_small, ips_small = run(2000, "small")
    return [
        row(
            "large_set_peak_rss_gb",
            peak_big,
            3.0,
            False,
            f"{n:,} generated JPEG/PNG images, 10 classes, efficientnet_lite0@96, preset fast, peak RSS of the "
            f"training process ({peak_small:.2f} GB for 2,000 images)",
        ),
        row(
            "large_set_embed_speed_ratio",
            ips_big / ips_small,
            0.9,
            True,
            f"embedding pass {ips_big:.0f} img/s on {n:,} images vs {ips_small:.0f} img/s on 2,000",
        ),
    ]


def text_rows(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    if not (ROOT.parent / "shared" / "data" / "smsspamcollection" / "SMSSpamCollection").is_file():
        return [
            row("text_finetune_vs_keras_hub", None, 1.5, True, "did not run: needs ../shared's SMS Spam Collection"),
            *text_frozen(args, tmp),
        ]
    r = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "text_finetune.py")], capture_output=True, text=True, timeout=3600
    )
    lines = [x for x in r.stdout.splitlines() if "texts/s" in x or x.startswith("ratio:")]
    ratio = next((x for x in lines if x.startswith("ratio:")), "")
    if r.returncode != 0 or not ratio:
        raise RuntimeError(f"text_finetune.py failed: {r.stderr[-300:]}")
    value = float(ratio.split(":")[1].strip().rstrip("x"))
    detail = "; ".join(lines) + " (padded strings = the usual keras-hub recipe: preprocessor in ds.map, padded)"
    return [row("text_finetune_vs_keras_hub", value, 1.5, True, detail), *text_frozen(args, tmp)]


def text_frozen(args: argparse.Namespace, tmp: Path) -> list[dict[str, Any]]:
    """The text head phase (embedding cache) vs plain ``fit`` of the same model with its backbone frozen."""
    from tlapp.config import project_from_dict
    from tlapp.data.labels import LabelEncoder
    from tlapp.data.pipelines import text_dataset
    from tlapp.data.scan_text import scan_text
    from tlapp.data.split import split_examples
    from tlapp.model.text_model import build_text_model
    from tlapp.training import embcache
    from tlapp.training.run import train

    data = SHARED / "data" / "smsspamcollection" / "SMSSpamCollection"
    if not data.is_file():
        return [row("text_frozen_vs_fit", None, 5.0, True, "did not run: needs ../shared's SMS Spam Collection")]
    per_class, epochs = (50, 10) if args.quick else (150, 10)
    d = {
        "name": "tb",
        "task": {"type": "text_classification"},
        "data": {"path": str(data), "val_fraction": 0.2, "max_per_class": per_class},
        "backbone": {"name": "minilm_l6", "weights": "pretrained", "sequence_length": 64},
        "export": {"formats": []},
    }

    def tlapp_phase() -> float:
        embcache.clear()
        events = []
        train(
            project_from_dict(
                {
                    **d,
                    "train": {"batch_size": 32, "phases": [{"name": "head", "epochs": epochs, "learning_rate": 1e-3}]},
                }
            ),
            tmp / f"tf{time.time_ns()}",
            events.append,
        )
        start = next(e.time for e in events if e.type == "phase_start")
        return next(e.time for e in events if e.type == "phase_end") - start

    p = project_from_dict(d)
    rep = scan_text(data, "text_classification")
    sp = split_examples(rep.examples, p.task.type, 0.2, 0.0, 42, per_class)
    enc = LabelEncoder(p.task.type, rep.classes)
    asm = build_text_model(p, len(rep.classes))
    asm.backbone.model.trainable = False
    ds, vds = text_dataset(sp.train, enc, 32, shuffle=True), text_dataset(sp.val, enc, 32)
    asm.model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    t_tlapp = statistics.median(tlapp_phase() for _ in range(args.repeats))
    t_plain = median_time(lambda: asm.model.fit(ds, validation_data=vds, epochs=epochs, verbose=0), args.repeats)
    return [
        row(
            "text_frozen_vs_fit",
            t_plain / t_tlapp,
            5.0,
            True,
            f"minilm_l6, sequence 64, {len(sp.train)} train / {len(sp.val)} val texts, {epochs} epochs: tlapp "
            f"{t_tlapp:.1f}s, plain fit (padded strings, frozen backbone) {t_plain:.1f}s",
        )
    ]


BENCHMARKS: dict[str, Callable[[argparse.Namespace, Path], list[dict[str, Any]]]] = {
    "startup": startup,
    "frozen_phase": frozen_phase,
    "finetune": finetune,
    "pipeline": pipeline_headroom,
    "gui_stall": gui_stall,
    "gui_vs_headless": gui_vs_headless,
    "text": text_rows,
    "large_set": large_set,
}


def main(argv: Optional[list[str]] = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller data, the same ratios")
    ap.add_argument("--json", type=Path, help="write the rows here")
    ap.add_argument("--only", default="", help=f"comma-separated subset of: {', '.join(BENCHMARKS)}")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    chosen = [b for b in args.only.split(",") if b] or list(BENCHMARKS)
    unknown = [b for b in chosen if b not in BENCHMARKS]
    if unknown:
        ap.error(f"unknown benchmark(s): {', '.join(unknown)}")
    tmp = Path(tempfile.mkdtemp(prefix="tlapp-bench-"))
    rows: list[dict[str, Any]] = []
    failed: list[str] = []
    for name in chosen:
        t0 = time.time()
        try:
            got = BENCHMARKS[name](args, tmp)
        except Exception as e:  # one failing benchmark must not hide the others, but it fails the run
            failed.append(name)
            got = [row(name, None, 0.0, True, f"failed: {type(e).__name__}: {str(e)[:300]}")]
        for r in got:
            r["detail"] += f" [{time.time() - t0:.0f}s]"
            print(json.dumps(r), flush=True)
        rows += got
    if args.json:  # one run, one file: the rows and where they were measured
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {"provenance": provenance(), "quick": args.quick, "repeats": args.repeats, "rows": rows}, indent=1
            )
        )
    if failed:
        print(f"benchmarks that failed: {', '.join(failed)}", file=sys.stderr)
        raise SystemExit(1)
    return rows


if __name__ == "__main__":
    main()
