"""Fresh-process parity check: ``python -m tlapp.deploy.verify EXPORT_DIR``
(or ``--wait``: import everything first, then read what to check from stdin).

Loads each exported artifact the way a deployment would (SavedModel with
plain TensorFlow; ``.keras`` with Keras) and compares its outputs on the saved
samples with what the in-app model produced: same argmax and max abs diff
<= 1e-4. Prints one JSON line.

``--wait`` reads JSON lines: ``{"dir": D, "artifacts": [...]}`` (load and check those now: the exporter sends
each file as soon as it is written, so this process checks the ``.keras`` file
while the other writes the SavedModel) and finally ``{"dir": D, "end": true}``
(the export report over every artifact, and the JSON line).
"""

from __future__ import annotations

import json
import os
import sys
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
    """One export folder's check, artifact by artifact, each loaded once (the report reruns them)."""

    def __init__(self, export_dir: str) -> None:
        from tlapp.base.tfenv import quiet_import

        self.tf, self.keras = quiet_import()
        self.dir = Path(export_dir)
        self.meta = json.loads((self.dir / "meta.json").read_text())
        self.data = read_samples(self.dir / SAMPLES_FILE)
        self.text = self.meta.get("input") == "text"
        self.artifacts: dict = {}
        self.results: list = []

    def add(self, names: Optional[list[str]] = None) -> None:
        """Load and compare the image artifacts ``names`` (None: all present). Text exports are
        checked whole at :meth:`end` (their two artifacts share the tokenizer's import)."""
        if self.text:
            return
        from tlapp.deploy.report import load_image_artifacts
        from tlapp.deploy.tflite import FILES

        tf, key = self.tf, self.meta["output_key"]
        images, expected = self.data["images"], self.data["expected"]
        new = load_image_artifacts(tf, self.keras, self.dir, key, names)
        for name, a in new.items():
            if name == "saved_model":
                self.results.append(_compare("saved_model:serving_default", a.run(images), expected))
                got = a.loaded.signatures["serving_uint8"](image=tf.constant(images))[key].numpy()
                self.results.append(_compare("saved_model:serving_uint8", got, expected))
                got = a.loaded.signatures["serving_bytes"](image_bytes=tf.constant(list(self.data["png"])))[key].numpy()
                self.results.append(_compare("saved_model:serving_bytes", got, expected))
            elif name in FILES.values():
                tol = LITE_TOLERANCE.get(name, 1.0)
                self.results.append(_compare(name, a.run(images), expected, tol, name not in LITE_TOLERANCE))
            else:
                self.results.append(_compare(name, np.asarray(a.run(images)), expected))
        self.artifacts.update(new)

    def end(self) -> int:
        if self.text:
            return _text(self.tf, self.keras, self.dir, self.meta, self.data)
        from tlapp.deploy.report import image_report

        self.add([n for n in _present(self.dir) if n not in self.artifacts])
        n = len(self.data["images"])
        return _report(self.results, n, image_report(self.dir, self.meta, self.artifacts))


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
            return check.end()
        check.add(msg.get("artifacts"))
    return 1


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


def _report(results: list, n: int, report: dict | None = None) -> int:
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
    print(json.dumps({"ok": ok, "summary": summary, "results": results, "n": int(n), "report": report}))
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
