"""Fresh-process parity check: ``python -m tlapp.deploy.verify EXPORT_DIR``
(or ``--wait``: import everything first, then read the folder from stdin).

Loads each exported artifact the way a deployment would (SavedModel with
plain TensorFlow; ``.keras`` with Keras) and compares its outputs on the saved
samples with what the in-app model produced: same argmax and max abs diff
<= 1e-4. Prints one JSON line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

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


def main(export_dir: str) -> int:
    from tlapp.base.tfenv import quiet_import

    tf, keras = quiet_import()
    d = Path(export_dir)
    meta = json.loads((d / "meta.json").read_text())
    data = read_samples(d / SAMPLES_FILE)
    if meta.get("input") == "text":
        return _text(tf, keras, d, meta, data)
    images, expected, pngs = data["images"], data["expected"], list(data["png"])
    key = meta["output_key"]
    results = []
    if (d / "saved_model").is_dir():
        sm = tf.saved_model.load(str(d / "saved_model"))
        got = sm.signatures["serving_default"](image=tf.constant(images.astype(np.float32)))[key].numpy()
        results.append(_compare("saved_model:serving_default", got, expected))
        got = sm.signatures["serving_uint8"](image=tf.constant(images))[key].numpy()
        results.append(_compare("saved_model:serving_uint8", got, expected))
        got = sm.signatures["serving_bytes"](image_bytes=tf.constant(pngs))[key].numpy()
        results.append(_compare("saved_model:serving_bytes", got, expected))
    if (d / "model.keras").is_file():
        import tlapp.model.image_model  # noqa: F401  registers tlapp's custom layers
        from tlapp.base.tfenv import quiet_keras_hub

        quiet_keras_hub()
        m = keras.saving.load_model(d / "model.keras", compile=False, safe_mode=True)
        results.append(_compare("model.keras", np.asarray(m.predict_on_batch(images.astype(np.float32))), expected))
    if (d / "model.h5").is_file():
        import tlapp.model.image_model  # noqa: F401  registers tlapp's custom layers

        h5 = keras.saving.load_model(d / "model.h5", compile=False)
        results.append(_compare("model.h5", np.asarray(h5.predict_on_batch(images.astype(np.float32))), expected))
    from tlapp.deploy import onnx_export
    from tlapp.deploy.tflite import FILES, Runner

    if (d / onnx_export.FILE).is_file():
        got = onnx_export.runner(d / onnx_export.FILE)(images.astype(np.float32))
        results.append(_compare(onnx_export.FILE, np.asarray(got), expected))

    for name in FILES.values():
        if (d / name).is_file():
            run = Runner(d / name)
            got = np.stack([run(img) for img in images])
            results.append(_compare(name, got, expected, LITE_TOLERANCE.get(name, 1.0), name not in LITE_TOLERANCE))
    from tlapp.deploy.report import image_report

    return _report(results, len(images), image_report(tf, keras, d, meta))


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
        _preload()
        sys.exit(main(sys.stdin.readline().strip()))
    sys.exit(main(sys.argv[1]))
