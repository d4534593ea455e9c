"""Fresh-process parity check: ``python -m tlapp.deploy.verify EXPORT_DIR``
(or ``--wait``: import everything first, then read what to check from stdin).

Loads each exported artifact the way a deployment would (SavedModel with
plain TensorFlow; ``.keras`` with Keras) and compares its outputs on the saved
samples with what the in-app model produced: same argmax and max abs diff
<= 1e-4. Prints one JSON line.

``--wait`` reads JSON lines: ``{"dir": D, "artifacts": [...]}`` (load those now: the exporter sends
each file as soon as it is written, so this process loads the ``.keras`` file
while the other writes the SavedModel), ``{"dir": D, "samples": true}`` (the
parity samples are written: compare what is loaded, and each file loaded after)
and finally ``{"dir": D, "end": true}`` (check the rest, then the export report
over every artifact, and the JSON line). With ``"report": "later"`` the JSON
line comes before the report, which then goes to the folder named by one more
line, ``{"report_to": EXPORT}`` (the run has swapped the export in by then); at
the end of input instead, no report is written (the export was abandoned).
"""

from __future__ import annotations

import json
import os
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Optional

import numpy as np

from tlapp.deploy.samples import FILE as SAMPLES_FILE
from tlapp.deploy.samples import read_samples

TOLERANCE = 1e-4


# TFLite float32 runs other kernels than TensorFlow (measured differences ~1e-6); float16 weights and
# int8 maths change outputs by design: they are reported (here and in export/report.json on the
# validation split), not failed on, since the user chose that trade.
LITE_TOLERANCE = {"model.tflite": 1e-3}


def _compare(
    name: str, got: np.ndarray, expected: np.ndarray, tolerance: float = TOLERANCE, report_only: bool = False
) -> dict:
    diff = float(np.max(np.abs(got - expected))) if got.size else 0.0
    same = bool((got.argmax(-1) == expected.argmax(-1)).all()) if got.shape[-1] > 1 else True
    out = {"artifact": name, "max_abs_diff": diff, "argmax_match": same, "ok": same and diff <= tolerance}
    if report_only:
        out.update(ok=True, report_only=True)
    return out


class Check:
    """One export folder's check, artifact by artifact, each loaded once (the report reruns them).

    Each artifact is loaded and compared in a worker thread of its own as soon as it is sent (two at
    a time: the load is the slow part, and the exporter is idle once its last file is written), and
    compared once the parity samples are in."""

    def __init__(self, export_dir: str) -> None:
        from tlapp.base.tfenv import quiet_import

        self.tf, self.keras = quiet_import()
        self.dir = Path(export_dir)
        self.meta = json.loads((self.dir / "meta.json").read_text())
        self.data: Optional[dict] = None  # the parity samples, once written
        self.samples_in = threading.Event()
        self.text = self.meta.get("input") == "text"
        self.artifacts: dict = {}
        self.jobs: dict[str, Future] = {}  # artifact -> its comparisons, in the order sent
        self.pool = ThreadPoolExecutor(2)

    def add(self, names: Optional[list[str]] = None, samples: bool = False) -> None:
        """Start loading the image artifacts ``names`` (None: all present); ``samples``: the parity
        samples are written. Text exports are checked whole at :meth:`end` (their two artifacts
        share the tokenizer's import)."""
        if samples and self.data is None:
            self.data = read_samples(self.dir / SAMPLES_FILE)
            self.samples_in.set()
        if self.text:
            return
        for name in _present(self.dir) if names is None else names:
            if name not in self.jobs:
                self.jobs[name] = self.pool.submit(self._check, name)

    def _check(self, name: str) -> list[dict]:
        from tlapp.deploy.report import load_image_artifacts

        loaded = load_image_artifacts(self.tf, self.keras, self.dir, self.meta["output_key"], [name])
        if name not in loaded:
            return []
        self.artifacts[name] = loaded[name]
        self.samples_in.wait()
        return self._compare(name, loaded[name])

    def _compare(self, name: str, a) -> list[dict]:
        from tlapp.deploy.tflite import FILES

        tf, key = self.tf, self.meta["output_key"]
        images, expected = self.data["images"], self.data["expected"]
        if name == "saved_model":
            sig = a.loaded.signatures
            calls = {
                "serving_default": lambda: a.run(images),
                "serving_uint8": lambda: sig["serving_uint8"](image=tf.constant(images))[key].numpy(),
                "serving_bytes": lambda: sig["serving_bytes"](image_bytes=tf.constant(list(self.data["png"])))[
                    key
                ].numpy(),
            }
            # Concurrently: each first call is mostly grappler optimising that signature's graph, one
            # core each (2.9 s in a row, 2.1 s at once for EfficientNet-Lite0 on 2 cores).
            with ThreadPoolExecutor(len(calls)) as pool:
                outs = dict(zip(calls, pool.map(lambda f: f(), calls.values())))
            return [_compare(f"saved_model:{n}", got, expected) for n, got in outs.items()]
        if name in FILES.values():
            tol = LITE_TOLERANCE.get(name, 1.0)
            return [_compare(name, a.run(images), expected, tol, name not in LITE_TOLERANCE)]
        if a.loaded is not None:  # a Keras model, eagerly: its traced call (for the report) costs more on 8 inputs
            return [_compare(name, np.asarray(a.loaded(images.astype(np.float32), training=False)), expected)]
        return [_compare(name, np.asarray(a.run(images)), expected)]

    def end(self, later: bool = False) -> int:
        """Check what is left, print the JSON line with the report, or (``later``) before it."""
        self.add(None, samples=True)
        if self.text:
            return _text(self.tf, self.keras, self.dir, self.meta, self.data)
        from tlapp.deploy.report import image_report

        results = [r for job in self.jobs.values() for r in job.result()]
        n = len(self.data["images"])
        if not later:
            return _report(results, n, image_report(self.dir, self.meta, self.artifacts))
        _report(results, n, None, report_pending=True)
        return _report_later(self)


def _report_later(check: Check) -> int:
    """The export report after the verdict: this process's output is no longer read, and the run may
    have ended; the report goes where the next input line says, or nowhere at the end of input."""
    from tlapp.deploy.report import deliver, image_report

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)  # nobody reads these pipes any more: nothing may block on them
    os.dup2(devnull, 2)
    try:
        report, error = image_report(check.dir, check.meta, check.artifacts), None
    except Exception as e:  # told through report.pending.json: the verdict is already out
        report, error = None, f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"
    line = sys.stdin.readline()
    if line.strip():
        deliver(Path(json.loads(line)["report_to"]), report, error)
    return 0


def _present(d: Path) -> list[str]:
    from tlapp.deploy.report import artifact_names

    return [n for n in artifact_names() if (d / n).exists()]


def main(export_dir: str) -> int:
    return Check(export_dir).end()


def serve() -> int:
    """``--wait``: see the module's docstring."""
    check: Optional[Check] = None
    for line in sys.stdin:
        msg = json.loads(line)
        if check is None or str(check.dir) != msg["dir"]:
            check = Check(msg["dir"])
        if msg.get("end"):
            return check.end(later=msg.get("report") == "later")
        check.add(msg.get("artifacts", []), samples=bool(msg.get("samples")))
    os._exit(1)  # the exporter is gone: no verdict to give, and a load waiting on the samples must not hold the exit


def _text(tf, keras, d: Path, meta: dict, data) -> int:
    """Text exports: the SavedModel must run with only tensorflow + tensorflow_text imported."""
    import tensorflow_text  # noqa: F401  registers the tokenizer ops the SavedModel uses

    texts, expected, key = [str(t) for t in data["texts"]], data["expected"], meta["output_key"]
    results = []
    if (d / "saved_model").is_dir():
        sm = tf.saved_model.load(str(d / "saved_model"))
        got = sm.signatures["serving_default"](text=tf.constant(texts))[key].numpy()
        results.append(_compare("saved_model:serving_default", got, expected))
    if (d / "model.keras").is_file():
        import tlapp.model.text_model  # noqa: F401  custom pooling layer
        from tlapp.base.tfenv import quiet_keras_hub

        kh = quiet_keras_hub()
        m = keras.saving.load_model(d / "model.keras", compile=False, safe_mode=True)
        pre = kh.models.TextClassifierPreprocessor.from_preset(str(d / "preprocessor"))
        got = np.asarray(m.predict_on_batch(pre(tf.constant(texts))))
        results.append(_compare("model.keras + preprocessor/", got, expected))
    return _report(results, len(texts))


def _report(results: list, n: int, report: dict | None = None, report_pending: bool = False) -> int:
    strict = [r for r in results if not r.get("report_only")]
    ok = all(r["ok"] for r in strict) and bool(results)
    worst = max((r["max_abs_diff"] for r in strict), default=0.0)
    summary = (
        f"{'passed' if ok else 'FAILED'}: {len(strict)} artifact/signature(s) on {n} inputs, "
        f"max abs diff {worst:.2e}, argmax {'identical' if all(r['argmax_match'] for r in strict) else 'DIFFERS'}"
    )
    lossy = [r for r in results if r.get("report_only")]
    if lossy:
        summary += "; " + ", ".join(
            f"{r['artifact']} (quantised) max diff {r['max_abs_diff']:.1e}, argmax "
            f"{'same' if r['argmax_match'] else 'differs'}"
            for r in lossy
        )
    line = {"ok": ok, "summary": summary, "results": results, "n": int(n), "report": report}
    print(json.dumps({**line, "report_pending": True} if report_pending else line), flush=True)
    return 0


def _preload() -> None:
    """Everything a check may need, imported before the export exists (the import is the slow part)."""
    from tlapp.base.tfenv import quiet_import, quiet_keras_hub

    quiet_import()
    quiet_keras_hub()
    import tensorflow_text  # noqa: F401

    import tlapp.model.image_model  # noqa: F401
    import tlapp.model.text_model  # noqa: F401


if __name__ == "__main__":
    if sys.argv[1] == "--wait":
        if len(sys.argv) > 2 and int(sys.argv[2]) and hasattr(os, "nice"):
            os.nice(int(sys.argv[2]))
        _preload()
        sys.exit(serve())
    sys.exit(main(sys.argv[1]))
