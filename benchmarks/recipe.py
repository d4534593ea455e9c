"""Recipe benchmark: tlapp's defaults vs the Keras transfer-learning guide vs a linear probe.

    python benchmarks/recipe.py                                  # every set, every method
    python benchmarks/recipe.py --sets sign10,sms200             # a subset
    python benchmarks/recipe.py --quick --methods linear_probe   # smoke test (minutes)
    python benchmarks/recipe.py --sets sign30 --tlapp-set train.phases.1.epochs=5

What it measures, in one run, on every real labelled dataset available offline
(``../shared/data`` and scikit-learn's bundled digits): accuracy on a held-out
part that no method sees (not for training, not for validation, not for model
selection) and wall time, for three methods on the same backbone at the same
input size (EfficientNet-Lite0 @224 for images, MiniLM-L6 for texts):

- ``tlapp``: the product's defaults as a user runs them: ``python -m tlapp init``
  then ``python -m tlapp train`` (timed, process start, TF import, export and the
  fresh-process export check included); the held-out part is predicted with the
  exported SavedModel through ``tlapp.deploy.predict.Predictor``.
- ``keras_guide``: the Keras transfer-learning guide written plainly: frozen
  backbone + new head (Adam 1e-3), then the whole backbone with BatchNorm frozen
  (Adam 1e-5 images / 2e-5 texts), ``validation_split=0.2``.
- ``linear_probe``: LogisticRegression on the backbone's pooled embeddings, C by
  5-fold stratified CV on the training pool; the "frozen features" ceiling.

Every method runs in its own Python process (this script re-invokes itself with
``--run-method``), so each time includes process start and the TensorFlow import.
"Seconds" is the time to a trained model: for ``tlapp`` the ``tlapp train``
command, for the others the worker process up to the end of training; the
held-out prediction is timed separately (``predict_s``). A failing method is
recorded with its error text and the benchmark goes on. Results: a table on
stdout and JSON (default ``benchmarks/results/recipe.json``; ``--out``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(os.environ["TLAPP_ROOT"]).resolve() if os.environ.get("TLAPP_ROOT") else Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from provenance import provenance  # noqa: E402

SEED = 1337
METHODS = ("tlapp", "tlapp_best", "keras_guide", "linear_probe")  # tlapp_best: tlapp with train.preset=best
SIGN_DIR = SHARED / "data" / "sign_language_digits" / "Dataset"
SMS_FILE = SHARED / "data" / "smsspamcollection" / "SMSSpamCollection"
IMAGE_SIZE = 224  # EfficientNet-Lite0's default size in tlapp's catalog
SEQUENCE_LENGTH = 64  # MiniLM tokens for the guide and the probe
PROBE_CS = (0.01, 0.1, 1.0, 10.0)
GUIDE_EPOCHS = {"image": (5, 5), "text": (5, 2)}  # (frozen, fine-tune)
GUIDE_LR = {"image": (1e-3, 1e-5), "text": (1e-3, 2e-5)}
RESULT_TAG = "RECIPE_RESULT "


# ----------------------------------------------------------------------------- datasets


@dataclass
class BenchSet:
    """One training pool (a class-folder tree or a ``text,label`` CSV) and its held-out part."""

    name: str
    modality: str  # "image" | "text"
    train: str  # folder (images) or CSV (texts) given to every method
    train_items: list[tuple[str, str]]  # (path or text, label): the same pool, as a list
    heldout: list[tuple[str, str]]  # (path or text, label): never seen by any method
    quick: bool = False

    @property
    def manifest(self) -> Path:
        return Path(self.train).parent / "set.json"

    def save(self) -> None:
        self.manifest.write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, work: Path, name: str) -> BenchSet:
        d = json.loads((work / name / "set.json").read_text())
        d["train_items"] = [tuple(x) for x in d["train_items"]]
        d["heldout"] = [tuple(x) for x in d["heldout"]]
        return cls(**d)


def sizes(quick: bool = False) -> dict[str, dict[str, int]]:
    """Every set: training size and held-out size (per class for images, in total for texts)."""
    if quick:
        return {
            "sign10": {"per_class": 10, "heldout_per_class": 5},
            "digits": {"per_class": 10, "heldout_per_class": 5},
            "sms200": {"n": 200, "heldout": 100},
        }
    return {
        "sign10": {"per_class": 10, "heldout_per_class": 50},
        "sign30": {"per_class": 30, "heldout_per_class": 50},
        "sign100": {"per_class": 100, "heldout_per_class": 50},
        "digits": {"fraction": 0.5},
        "sms200": {"n": 200, "heldout": 1000},
        "sms1000": {"n": 1000, "heldout": 1000},
    }


def _fresh(folder: Path) -> Path:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    return folder


def _image_tree(folder: Path, items: list[tuple[str, str]]) -> None:
    """A folder per class of hard links to the original files (copies across file systems). Not symlinks:
    tlapp refuses links that leave the data folder (an untrusted folder must not read elsewhere)."""
    for path, label in items:
        dst = folder / label / Path(path).name
        dst.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(Path(path).resolve(), dst)
        except OSError:
            shutil.copy2(Path(path).resolve(), dst)


def _image_set(
    work: Path, name: str, train: list[tuple[str, str]], heldout: list[tuple[str, str]], quick: bool
) -> BenchSet:
    root = _fresh(work / name)
    _image_tree(root / "train", train)
    s = BenchSet(name, "image", str(root / "train"), train, heldout, quick)
    s.save()
    return s


def _by_class(folder: Path) -> dict[str, list[str]]:
    exts = {".jpg", ".jpeg", ".png"}
    return {
        c.name: sorted(str(f) for f in c.iterdir() if f.suffix.lower() in exts)
        for c in sorted(folder.iterdir())
        if c.is_dir()
    }


def sign_sets(work: Path, spec: dict[str, dict[str, int]], quick: bool) -> list[BenchSet]:
    """sign10/30/100: nested training pools per class, one held-out part disjoint from all of them."""
    if not SIGN_DIR.is_dir():
        raise FileNotFoundError(f"{SIGN_DIR} is missing (shared fixtures not available)")
    rng = random.Random(SEED)
    names = [n for n in spec if n.startswith("sign")]
    n_held = max(spec[n]["heldout_per_class"] for n in names)
    heldout, pools = [], {}
    for label, files in _by_class(SIGN_DIR).items():
        rng.shuffle(files)
        heldout += [(f, label) for f in files[:n_held]]
        pools[label] = files[n_held:]
    out = []
    for n in names:
        k = spec[n]["per_class"]
        train = [(f, label) for label, files in pools.items() for f in files[:k]]
        out.append(_image_set(work, n, train, heldout, quick))
    return out


def digits_set(work: Path, spec: dict[str, int], quick: bool) -> BenchSet:
    """scikit-learn digits rendered by tlapp's demo (64x64 RGB PNGs), split 50/50 stratified."""
    from sklearn.model_selection import train_test_split

    from tlapp.data.demo import write_digits

    rendered = write_digits(work / "_digits_png")
    items = [(f, label) for label, files in _by_class(rendered).items() for f in files]
    train, heldout = train_test_split(items, test_size=0.5, stratify=[y for _, y in items], random_state=SEED)
    if "per_class" in spec:  # quick: a few per class from each side
        train = _take_per_class(train, spec["per_class"])
        heldout = _take_per_class(heldout, spec["heldout_per_class"])
    return _image_set(work, "digits", sorted(train), sorted(heldout), quick)


def _take_per_class(items: list[tuple[str, str]], k: int) -> list[tuple[str, str]]:
    seen: dict[str, int] = {}
    out = []
    for x, y in items:
        if seen.get(y, 0) < k:
            seen[y] = seen.get(y, 0) + 1
            out.append((x, y))
    return out


def read_sms() -> list[tuple[str, str]]:
    """(text, label) rows; identical texts kept once so held-out texts never occur in training."""
    if not SMS_FILE.is_file():
        raise FileNotFoundError(f"{SMS_FILE} is missing (shared fixtures not available)")
    rows: dict[str, str] = {}
    for line in SMS_FILE.read_text(encoding="utf-8").splitlines():
        label, _, text = line.partition("\t")
        if text.strip() and label in ("ham", "spam"):
            rows.setdefault(text, label)
    return sorted(rows.items())


def sms_sets(work: Path, spec: dict[str, dict[str, int]], quick: bool) -> list[BenchSet]:
    """sms200/sms1000: nested stratified samples; held-out texts disjoint from both."""
    from sklearn.model_selection import train_test_split

    rows = read_sms()
    names = sorted((n for n in spec if n.startswith("sms")), key=lambda n: -spec[n]["n"])
    n_held = max(spec[n]["heldout"] for n in names)
    pool, heldout = train_test_split(rows, test_size=n_held, stratify=[y for _, y in rows], random_state=SEED)
    out = []
    for n in names:  # largest first, each smaller pool drawn from the previous one
        if len(pool) > spec[n]["n"]:
            pool, _ = train_test_split(pool, train_size=spec[n]["n"], stratify=[y for _, y in pool], random_state=SEED)
        root = _fresh(work / n)
        with open(root / "train.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            w.writerows(pool)
        s = BenchSet(n, "text", str(root / "train.csv"), list(pool), list(heldout), quick)
        s.save()
        out.append(s)
    return out


def datasets(work: Path, spec: dict[str, dict[str, int]], quick: bool = False) -> dict[str, Any]:
    """Build the requested sets under ``work``: name -> BenchSet, or the error text if its source is missing."""
    groups: list[tuple[list[str], Callable[[], list[BenchSet]]]] = [
        ([n for n in spec if n.startswith("sign")], lambda: sign_sets(work, spec, quick)),
        (["digits"] if "digits" in spec else [], lambda: [digits_set(work, spec["digits"], quick)]),
        ([n for n in spec if n.startswith("sms")], lambda: sms_sets(work, spec, quick)),
    ]
    out: dict[str, Any] = {}
    for names, build in groups:
        if not names:
            continue
        try:
            out.update({s.name: s for s in build()})
        except Exception as e:  # noqa: BLE001  a missing fixture skips its sets, with the reason
            out.update({n: f"{type(e).__name__}: {e}" for n in names})
    return {n: out[n] for n in spec}


# ----------------------------------------------------------------------------- method: tlapp


def _run_logged(cmd: list[str], log: Path) -> float:
    """Run a command with output to ``log``; return its wall time; raise with the log's tail on failure."""
    t0 = time.time()
    with open(log, "w") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, check=False).returncode
    seconds = time.time() - t0
    if rc != 0:
        raise RuntimeError(f"{' '.join(cmd[1:4])} exited {rc}:\n{log.read_text()[-3000:]}")
    return seconds


def run_stages(run_dir: Path, seconds: float) -> dict[str, float]:
    """Where a tlapp run's seconds went, from its own ``events.jsonl``: process start (imports, project load,
    and the printing after), scan+plan (to the first phase), embedding passes, the head (cross-validation,
    insights, solve), the fine-tune, its refit on all the data, and the export with its fresh-process check."""
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines() if line.strip()]
    at = lambda kind, **match: [  # noqa: E731
        e["time"] for e in events if e["type"] == kind and all(e["data"].get(k) == v for k, v in match.items())
    ]
    start, end = at("run_start")[0], at("run_end")[-1]
    embed = sum(float(e["data"].get("seconds", 0.0)) for e in events if e["type"] == "embeddings")
    head_start, head_end = at("phase_start", index=0)[0], at("phase_end", index=0)[0]
    ends = at("phase_end")
    ft_end = (at("phase_end", index=1) or [head_end])[0]
    out = {
        "process": seconds - (end - start),
        "scan_plan": head_start - start,
        "embedding": embed,
        "head": head_end - head_start - embed,
        "finetune": ft_end - head_end,
        "refit": max(ends) - ft_end,
        "export_check": end - max(ends),
    }
    return {k: round(v, 1) for k, v in out.items()}


def method_tlapp(s: BenchSet, res: dict[str, Any], tlapp_sets: list[str], folder: str = "tlapp") -> None:
    from tlapp.deploy.predict import Predictor
    from tlapp.training import embcache

    embcache.clear()  # a first run: no vectors left in the model store by an earlier benchmark
    root = _fresh(Path(s.train).parent / folder)
    proj, run = root / "P.yaml", root / "run"
    task = ["--task", "text_classification"] if s.modality == "text" else []
    res["init_s"] = _run_logged(
        [sys.executable, "-m", "tlapp", "init", str(proj), "--data", s.train, *task], root / "init.log"
    )
    overrides = [a for kv in tlapp_sets for a in ("--set", kv)]
    res["seconds"] = _run_logged(
        [sys.executable, "-m", "tlapp", "train", str(proj), "--out", str(run), *overrides], root / "train.log"
    )
    metrics = json.loads((run / "metrics.json").read_text())
    res["recipe"], res["final"] = metrics.get("recipe"), metrics.get("final")
    res["backbone"] = json.loads((run / "model_card.json").read_text())["backbone"]["name"]
    t0 = time.time()
    pred = Predictor.load(run)
    xs = [x for x, _ in s.heldout]
    out = pred.predict_texts(xs) if s.modality == "text" else pred.predict_files(xs)
    res["predict_s"] = time.time() - t0
    res["accuracy"] = _accuracy([r.get("label") for r in out], [y for _, y in s.heldout])
    res["run_dir"] = str(run)
    res["stages"] = run_stages(run, res["seconds"])


def _accuracy(pred: list[Any], true: list[str]) -> float:
    return sum(str(p) == t for p, t in zip(pred, true)) / max(len(true), 1)


# ----------------------------------------------------------------------------- shared backbone helpers


def _image_backbone() -> Any:
    from tlapp.backbones.image import build_backbone
    from tlapp.config import Backbone

    built = build_backbone(Backbone(name="efficientnet_lite0"))
    assert built.size == IMAGE_SIZE, built.size
    return built.model


def _text_backbone() -> Any:
    from tlapp.backbones.text import build_text_backbone
    from tlapp.config import Backbone

    return build_text_backbone(Backbone(name="minilm_l6", weights="pretrained", sequence_length=SEQUENCE_LENGTH))


def _load_images(paths: list[str], batch: int = 32) -> Any:
    """Files -> batches of 224x224x3 float 0..255, decoded and resized as image_dataset_from_directory does."""
    import tensorflow as tf

    def load(p: Any) -> Any:
        img = tf.io.decode_image(tf.io.read_file(p), channels=3, expand_animations=False)
        return tf.image.resize(img, (IMAGE_SIZE, IMAGE_SIZE))

    return tf.data.Dataset.from_tensor_slices(paths).map(load, num_parallel_calls=tf.data.AUTOTUNE).batch(batch)


def _tokens(pre: Any, texts: list[str], batch: int = 256) -> dict[str, Any]:
    """Strings -> dict of numpy token_ids / segment_ids / padding_mask (fixed SEQUENCE_LENGTH)."""
    import numpy as np
    import tensorflow as tf

    parts = [pre(tf.constant(texts[i : i + batch])) for i in range(0, len(texts), batch)]
    return {k: np.concatenate([np.asarray(p[k]) for p in parts]) for k in parts[0]}


def _masked_mean(seq: Any, padding_mask: Any) -> Any:
    import keras

    m = keras.ops.expand_dims(keras.ops.cast(padding_mask, seq.dtype), -1)
    return keras.ops.sum(seq * m, axis=1) / keras.ops.maximum(keras.ops.sum(m, axis=1), 1.0)


def _text_encoder(backbone: Any) -> Any:
    """Token dict -> masked mean of sequence_output (a Keras model)."""
    import keras

    inputs = {
        k: keras.Input(shape=(SEQUENCE_LENGTH,), dtype=dt, name=k)
        for k, dt in (("token_ids", "int32"), ("segment_ids", "int32"), ("padding_mask", "bool"))
    }
    return inputs, _masked_mean(backbone(inputs)["sequence_output"], inputs["padding_mask"])


def _started() -> float:
    """When the parent launched this worker (so the time includes process start and imports)."""
    return float(os.environ.get("RECIPE_T0", time.time()))


# ----------------------------------------------------------------------------- method: keras_guide


def _freeze_batchnorm(model: Any) -> None:
    """BatchNorm stays frozen (the guide's rule), in nested models too."""
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = False
        elif hasattr(layer, "layers"):
            _freeze_batchnorm(layer)


def _two_phases(model: Any, base: Any, fit: Callable[[int], Any], s: BenchSet, bn: bool) -> None:
    """Phase 1: base frozen. Phase 2: base trainable (BatchNorm frozen), low LR, recompile."""
    import keras

    (e1, e2), (lr1, lr2) = GUIDE_EPOCHS[s.modality], GUIDE_LR[s.modality]
    if s.quick:
        e1, e2 = 1, 1
    for trainable, lr, epochs in ((False, lr1, e1), (True, lr2, e2)):
        base.trainable = trainable
        if trainable and bn:
            _freeze_batchnorm(base)
        model.compile(optimizer=keras.optimizers.Adam(lr), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        fit(epochs)


def keras_guide_image(s: BenchSet, res: dict[str, Any]) -> None:
    import keras
    import numpy as np

    keras.utils.set_random_seed(SEED)
    train_ds, val_ds = keras.utils.image_dataset_from_directory(
        s.train, image_size=(IMAGE_SIZE, IMAGE_SIZE), batch_size=32, validation_split=0.2, subset="both", seed=1337
    )
    classes = train_ds.class_names
    base = _image_backbone()
    augment = keras.Sequential([keras.layers.RandomFlip("horizontal"), keras.layers.RandomRotation(0.1)])
    inputs = keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(augment(inputs))
    x = keras.layers.GlobalAveragePooling2D()(base(x, training=False))
    outputs = keras.layers.Dense(len(classes), activation="softmax")(keras.layers.Dropout(0.2)(x))
    model = keras.Model(inputs, outputs)

    def fit(epochs):
        return model.fit(train_ds.prefetch(2), validation_data=val_ds, epochs=epochs, verbose=2)

    _two_phases(model, base, fit, s, bn=True)
    res["seconds"] = time.time() - _started()
    t0 = time.time()
    probs = model.predict(_load_images([p for p, _ in s.heldout]), verbose=0)
    res["predict_s"] = time.time() - t0
    res["accuracy"] = _accuracy([classes[i] for i in np.argmax(probs, 1)], [y for _, y in s.heldout])


def keras_guide_text(s: BenchSet, res: dict[str, Any]) -> None:
    import keras
    import numpy as np

    keras.utils.set_random_seed(SEED)
    classes = sorted({y for _, y in s.train_items})
    items = list(s.train_items)
    random.Random(SEED).shuffle(items)  # validation_split takes the last 20%
    built = _text_backbone()
    x = _tokens(built.preprocessor, [t for t, _ in items])
    y = np.array([classes.index(lab) for _, lab in items])
    inputs, pooled = _text_encoder(built.model)
    outputs = keras.layers.Dense(len(classes), activation="softmax")(keras.layers.Dropout(0.1)(pooled))
    model = keras.Model(inputs, outputs)

    def fit(epochs):
        return model.fit(x, y, validation_split=0.2, batch_size=32, epochs=epochs, verbose=2)

    _two_phases(model, built.model, fit, s, bn=False)
    res["seconds"] = time.time() - _started()
    t0 = time.time()
    probs = model.predict(_tokens(built.preprocessor, [t for t, _ in s.heldout]), batch_size=64, verbose=0)
    res["predict_s"] = time.time() - t0
    res["accuracy"] = _accuracy([classes[i] for i in np.argmax(probs, 1)], [y for _, y in s.heldout])


def method_keras_guide(s: BenchSet, res: dict[str, Any]) -> None:
    (keras_guide_text if s.modality == "text" else keras_guide_image)(s, res)


# ----------------------------------------------------------------------------- method: linear_probe


def _embedder(modality: str) -> Callable[[list[str]], Any]:
    """A function: list of paths / texts -> (N, D) pooled backbone embeddings."""
    import keras

    if modality == "image":
        base = _image_backbone()
        inputs = keras.Input(shape=(IMAGE_SIZE, IMAGE_SIZE, 3))
        x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
        model = keras.Model(inputs, keras.layers.GlobalAveragePooling2D()(base(x, training=False)))
        return lambda xs: model.predict(_load_images(xs), verbose=0)
    built = _text_backbone()
    inputs, pooled = _text_encoder(built.model)
    model = keras.Model(inputs, pooled)
    return lambda xs: model.predict(_tokens(built.preprocessor, xs), batch_size=64, verbose=0)


def method_linear_probe(s: BenchSet, res: dict[str, Any]) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from threadpoolctl import threadpool_limits

    embed = _embedder(s.modality)
    t0 = time.time()
    x, y = embed([x for x, _ in s.train_items]), [lab for _, lab in s.train_items]
    res["embed_s"] = time.time() - t0
    search = GridSearchCV(
        LogisticRegression(solver="lbfgs", max_iter=5000),
        {"C": list(PROBE_CS)},
        cv=StratifiedKFold(5, shuffle=True, random_state=SEED),
        n_jobs=1,
    )
    t0 = time.time()
    # One BLAS thread: on small matrices multi-threaded OpenBLAS spins and was 100x slower on 2 busy cores.
    with threadpool_limits(1):
        search.fit(x, y)
    res["cv_s"] = time.time() - t0
    res["seconds"] = time.time() - _started()
    res["C"], res["cv_accuracy"] = search.best_params_["C"], float(search.best_score_)
    t0 = time.time()
    pred = search.predict(embed([x for x, _ in s.heldout]))
    res["predict_s"] = time.time() - t0
    res["accuracy"] = _accuracy(list(pred), [lab for _, lab in s.heldout])


# ----------------------------------------------------------------------------- worker (one method, one set)


def worker(method: str, work: Path, name: str, tlapp_sets: list[str]) -> int:
    """Run one method on one set in this process; print one result line (partial + error on failure)."""
    s = BenchSet.load(work, name)
    res: dict[str, Any] = {"n_heldout": len(s.heldout)}
    rc = 0
    try:
        if method == "tlapp":
            method_tlapp(s, res, tlapp_sets)
        elif method == "tlapp_best":
            method_tlapp(s, res, [*tlapp_sets, "train.preset=best"], "tlapp_best")
        else:
            {"keras_guide": method_keras_guide, "linear_probe": method_linear_probe}[method](s, res)
    except Exception:  # noqa: BLE001  any failure is a result: recorded, never fatal
        res["error"] = traceback.format_exc()[-4000:]
        rc = 1
    sys.stdout.write(RESULT_TAG + json.dumps(res, default=str) + "\n")
    sys.stdout.flush()
    return rc


# ----------------------------------------------------------------------------- parent


def run_method(method: str, work: Path, name: str, tlapp_sets: list[str], timeout: float) -> dict[str, Any]:
    """The worker in a fresh process (own process group, killed whole on timeout)."""
    logs = work / name / "logs"
    logs.mkdir(exist_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--run-method", method, "--set", name, "--work", str(work)]
    cmd += [a for kv in tlapp_sets for a in ("--tlapp-set", kv)]
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path, "TLAPP_ROOT": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    t0 = time.time()
    env["RECIPE_T0"] = repr(t0)
    with open(logs / f"{method}.out", "w") as out, open(logs / f"{method}.err", "w") as err:
        p = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, start_new_session=True)
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    wall = time.time() - t0
    lines = [x for x in (logs / f"{method}.out").read_text().splitlines() if x.startswith(RESULT_TAG)]
    res = json.loads(lines[-1][len(RESULT_TAG) :]) if lines else {}
    res["wall_s"] = wall
    if p.returncode != 0 and "error" not in res:
        why = f"timed out after {timeout:.0f} s" if wall >= timeout else f"exited {p.returncode}"
        res["error"] = f"{why}:\n{(logs / f'{method}.err').read_text()[-4000:]}"
    return res


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def _pairs(results: dict[str, Any], a: str, b: str, key: str) -> tuple[list[tuple[str, float, float]], list[str]]:
    """Per set (name, a's value, b's value) where both have ``key``; and the sets where one is missing."""
    pairs, missing = [], []
    for name, r in results.items():
        if "error" in r:  # the set itself could not be built (fixture absent): not a result to judge
            continue
        m = r.get("methods", {})
        va, vb = m.get(a, {}).get(key), m.get(b, {}).get(key)
        (pairs.append((name, va, vb)) if va is not None and vb is not None else missing.append(name))
    return pairs, missing


def goal_checks(results: dict[str, Any], methods: list[str]) -> dict[str, Any]:
    """The three goals; ``pass`` is None when a method was not run, False when any set lacks a result."""

    def check(a: str, b: str, key: str, ok: Callable[[list[tuple[str, float, float]]], bool], what: str) -> dict:
        if a not in methods or b not in methods:
            return {"goal": what, "pass": None, "detail": "not run"}
        pairs, missing = _pairs(results, a, b, key)
        passed = bool(pairs) and not missing and ok(pairs)
        detail = {n: [round(x, 4), round(y, 4)] for n, x, y in pairs}
        return {"goal": what, "pass": passed, "per_set": detail, "missing": missing}

    def avg(p):
        return _mean([x for _, x, _ in p]) >= _mean([y for _, _, y in p]) + 0.01

    return {
        "tlapp_ge_probe_every_set": check(
            "tlapp",
            "linear_probe",
            "accuracy",
            lambda p: all(x >= y for _, x, y in p),
            "tlapp accuracy >= linear probe on every set",
        ),
        "tlapp_ge_probe_plus_1pt_avg": check(
            "tlapp", "linear_probe", "accuracy", avg, "mean tlapp accuracy >= mean linear probe accuracy + 0.01"
        ),
        "best_ge_balanced_plus_1_5pt_avg": check(
            "tlapp_best",
            "tlapp",
            "accuracy",
            lambda p: _mean([x for _, x, _ in p]) >= _mean([y for _, _, y in p]) + 0.015,
            "mean tlapp_best accuracy >= mean tlapp (balanced) accuracy + 0.015",
        ),
        "tlapp_ge_keras_plus_1pt_avg": check(
            "tlapp", "keras_guide", "accuracy", avg, "mean tlapp accuracy >= mean keras_guide accuracy + 0.01"
        ),
        "tlapp_time_le_keras_every_set": check(
            "tlapp",
            "keras_guide",
            "seconds",
            lambda p: all(x <= y for _, x, y in p),
            "tlapp seconds <= keras_guide seconds on every set",
        ),
    }


def averages(results: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    out = {}
    for m in METHODS:
        rs = [r.get("methods", {}).get(m, {}) for r in results.values()]
        out[m] = {k: _mean([r[k] for r in rs if r.get(k) is not None]) for k in ("accuracy", "seconds")}
        out[m]["n_sets"] = sum(r.get("accuracy") is not None for r in rs)
    return out


def _headline(error: str) -> str:
    """One line of an error text: a traceback's last line, else the first line."""
    lines = [x for x in error.strip().splitlines() if x.strip()] or ["?"]
    return (lines[-1] if lines[0].startswith("Traceback") else lines[0])[:160]


def table(results: dict[str, Any], summary: dict[str, Any]) -> str:
    cols = [("set", 9), ("n_train", 8)] + [
        (f"{short} {k}", 10) for short in ("tlapp", "best", "keras", "probe") for k in ("acc", "s")
    ]

    def fmt(v, k):
        return "-" if v is None else (f"{v:.4f}" if k == "accuracy" else f"{v:.1f}")

    def row(label: str, n: Any, per_method: dict[str, dict]) -> str:
        def cell(r: dict, k: str) -> str:
            return "ERR" if r.get(k) is None and r.get("error") else fmt(r.get(k), k)

        cells = [label, str(n)] + [cell(per_method.get(m, {}), k) for m in METHODS for k in ("accuracy", "seconds")]
        return "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, (_, w)) in enumerate(zip(cells, cols)))

    lines = ["  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(cols))]
    lines.append("-" * len(lines[0]))
    for name, r in results.items():
        lines.append(
            row(name, r.get("n_train", "-"), r.get("methods", {}))
            if "error" not in r
            else f"{name:<9}  skipped: {r['error']}"
        )
    lines.append("-" * len(lines[0]))
    lines.append(row("average", "", summary["averages"]))
    for c in summary["checks"].values():
        mark = {True: "PASS", False: "FAIL", None: "n/a "}[c["pass"]]
        extra = f"  (missing: {', '.join(c['missing'])})" if c.get("missing") else ""
        lines.append(f"[{mark}] {c['goal']}{extra}")
    errors = [
        f"  {n}/{m}: {_headline(v['error'])}"
        for n, r in results.items()
        for m, v in r.get("methods", {}).items()
        if v.get("error")
    ]
    return "\n".join(lines + (["errors:"] + errors if errors else []))


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("tensorflow", "keras", "keras-hub", "scikit-learn", "tlapp"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "missing"
    try:
        out["tlapp_git"] = subprocess.run(
            ["git", "-C", str(ROOT), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        out["tlapp_git"] = "unknown"
    return out


def write_json(path: Path, doc: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=str))
    tmp.replace(path)


def _csv(s: str | None, allowed: tuple[str, ...] | list[str], what: str) -> list[str]:
    names = [x.strip() for x in s.split(",") if x.strip()] if s else list(allowed)
    bad = [n for n in names if n not in allowed]
    if bad:
        raise SystemExit(f"--{what}: unknown {', '.join(bad)}; choose from {', '.join(allowed)}")
    return names


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], allow_abbrev=False)
    ap.add_argument("--sets", help="comma-separated subset of: " + ", ".join(sizes()))
    ap.add_argument("--methods", help="comma-separated subset of: " + ", ".join(METHODS))
    ap.add_argument("--quick", action="store_true", help="tiny sets and 1+1 guide epochs (smoke test)")
    ap.add_argument("--work", type=Path, help="where the sets and runs go (default: a temp dir, removed after)")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "recipe.json")
    ap.add_argument(
        "--tlapp-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra `tlapp train --set` override (repeatable)",
    )
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per method and set")
    ap.add_argument(
        "--merge",
        type=Path,
        help="a results file of an earlier run (same sets) whose other methods' rows are kept; "
        "its provenance stays, and this run's is added under meta.merged",
    )
    ap.add_argument("--run-method", choices=METHODS, help=argparse.SUPPRESS)  # internal: worker mode
    ap.add_argument("--set", dest="one_set", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.run_method:
        return worker(args.run_method, args.work, args.one_set, args.tlapp_set)
    spec_all = sizes(args.quick)
    names, methods = _csv(args.sets, list(spec_all), "sets"), _csv(args.methods, METHODS, "methods")
    work = (args.work or Path(tempfile.mkdtemp(prefix="recipe_bench_"))).resolve()
    work.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {
        "meta": {
            "argv": sys.argv[1:],
            "quick": args.quick,
            "methods": methods,
            "tlapp_set": args.tlapp_set,
            "seed": SEED,
            "work": str(work),
            "cpus": os.cpu_count(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S"),
            "versions": _versions(),
            "provenance": provenance(),
        },
        "sets": {},
    }
    if args.merge:  # this run adds (or replaces) its methods' rows in an earlier results file
        earlier = json.loads(args.merge.read_text())
        if earlier["meta"].get("quick") != args.quick or earlier["meta"].get("seed") != SEED:
            raise SystemExit(f"--merge {args.merge}: another kind of run (quick/seed differ)")
        added = {"methods": methods, "argv": sys.argv[1:], "provenance": doc["meta"]["provenance"]}
        doc = {**earlier, "sets": earlier["sets"]}
        doc["meta"] = {**earlier["meta"], "merged": [*earlier["meta"].get("merged", []), added]}
        doc["meta"]["methods"] = [m for m in METHODS if m in {*earlier["meta"]["methods"], *methods}]
    print(f"building sets in {work}", flush=True)
    sets = datasets(work, {n: spec_all[n] for n in names}, args.quick)
    for name, s in sets.items():
        before = doc["sets"].get(name) or {}
        kept = before.get("methods", {})
        if kept and not isinstance(s, str) and before.get("n_train") != len(s.train_items):
            raise SystemExit(
                f"--merge: set {name} had {before.get('n_train')} training examples, now {len(s.train_items)}"
            )
        r = doc["sets"][name] = (
            {"error": s}
            if isinstance(s, str)
            else {"modality": s.modality, "n_train": len(s.train_items), "n_heldout": len(s.heldout), "methods": kept}
        )
        for m in methods if "error" not in r else []:
            print(f"{name}: {m} ...", flush=True)
            res = r["methods"][m] = run_method(m, work, name, args.tlapp_set, args.timeout)
            print(
                f"{name}: {m}: acc {res.get('accuracy')} seconds {res.get('seconds')}"
                + (" (error)" if res.get("error") else ""),
                flush=True,
            )
            write_json(args.out, doc)
    doc["summary"] = {"averages": averages(doc["sets"]), "checks": goal_checks(doc["sets"], doc["meta"]["methods"])}
    write_json(args.out, doc)
    print(table(doc["sets"], doc["summary"]))
    print(f"json: {args.out}")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
