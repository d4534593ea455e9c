"""Every metric against a small example checked by hand (issue #9)."""

from __future__ import annotations

import numpy as np
import pytest

from tlapp.deploy import metrics

# Five examples, three classes. Predictions 0, 1, 1, 1, 2 against truth 0, 0, 1, 1, 2.
PROBS = np.array([[0.7, 0.2, 0.1], [0.3, 0.6, 0.1], [0.1, 0.8, 0.1], [0.2, 0.5, 0.3], [0.05, 0.05, 0.9]])
TRUE = np.array([0, 0, 1, 1, 2])


def test_single_label_metrics_match_the_hand_count():
    r = metrics.single_label(PROBS, TRUE, ["a", "b", "c"])
    assert r["accuracy"] == pytest.approx(0.8)
    assert r["per_class"]["a"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    assert r["per_class"]["b"] == pytest.approx({"precision": 2 / 3, "recall": 1.0, "f1": 0.8, "support": 2})
    assert r["per_class"]["c"] == pytest.approx({"precision": 1.0, "recall": 1.0, "f1": 1.0, "support": 1})
    assert r["macro"]["f1"] == pytest.approx((2 / 3 + 0.8 + 1) / 3)
    assert r["weighted"]["f1"] == pytest.approx((2 * 2 / 3 + 2 * 0.8 + 1) / 5)
    assert r["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [0, 0, 1]]
    assert r["confusion_matrix_normalized"] == [[0.5, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
    assert r["top_k_accuracy"] == {"2": 1.0}  # the one miss has its true class second
    assert "roc_auc" not in r  # three classes
    # Each prediction alone in its bin; gaps 0.3, 0.6 (the miss at 0.6), 0.2, 0.5, 0.1.
    assert r["calibration"]["ece"] == pytest.approx(1.7 / 5)
    assert sum(b["count"] for b in r["calibration"]["bins"]) == 5


def test_two_class_roc_auc():
    p1 = np.array([0.1, 0.4, 0.35, 0.8])
    r = metrics.single_label(np.stack([1 - p1, p1], 1), np.array([0, 0, 1, 1]), ["no", "yes"])
    assert r["roc_auc"] == pytest.approx(0.75)  # 3 of the 4 positive/negative pairs ranked right


def test_calibration_of_a_perfectly_calibrated_model_is_zero():
    conf = np.array([0.75] * 4)
    assert metrics.calibration(conf, np.array([1, 1, 1, 0]))["ece"] == pytest.approx(0.0)


def test_multi_label_metrics_and_threshold_tuning():
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    p = np.array([[0.9, 0.2], [0.4, 0.7], [0.6, 0.4], [0.1, 0.1]])
    r = metrics.multi_label(p, y, ["x", "y"])
    assert r["per_label"]["x"]["f1"] == pytest.approx(1.0)
    assert r["per_label"]["y"]["precision"] == pytest.approx(1.0) and r["per_label"]["y"]["recall"] == 0.5
    assert r["per_label"]["y"]["f1"] == pytest.approx(2 / 3)
    assert r["mAP"] == pytest.approx(1.0)  # both labels rank every positive first
    assert r["exact_match"] == pytest.approx(0.75) and r["accuracy"] == pytest.approx(7 / 8)
    # Lowering y's threshold to 0.4 catches its second positive without a false one.
    assert r["per_label"]["y"]["tuned_threshold"] == pytest.approx(0.4)
    assert r["per_label"]["y"]["tuned_f1"] == pytest.approx(1.0)
    at = metrics.multi_label(p, y, ["x", "y"], thresholds=np.array([0.5, 0.4]))
    assert at["per_label"]["y"]["f1"] == pytest.approx(1.0) and at["exact_match"] == 1.0


def test_regression_metrics():
    r = metrics.regression(np.array([1.5, 2, 2.5, 5]), np.array([1, 2, 3, 4]))
    assert r["mae"] == pytest.approx(0.5)
    assert r["rmse"] == pytest.approx(np.sqrt(0.375))
    assert r["r2"] == pytest.approx(0.7)  # 1 - 1.5 / 5
    assert r["residuals"] == pytest.approx({"mean": 0.25, "std": np.std([0.5, 0, -0.5, 1]), "max_abs": 1.0})
    assert metrics.regression(np.array([1.0]), np.array([2.0]))["r2"] is None  # undefined on one value


def test_summary_lines_name_the_split_and_the_numbers():
    r = {**metrics.single_label(PROBS, TRUE, ["a", "b", "c"]), "n": 5, "split": "test"}
    lines = metrics.summary_lines(r)
    assert lines[0].startswith("accuracy 0.8000  top-2 1.0000  macro F1 0.8222  on 5 examples of the test split")
    assert any("ECE 0.3400" in x for x in lines)


def test_grad_cam_maps_have_the_input_size_and_differ_between_classes(trained_run, color_data, tmp_path):
    from PIL import Image

    from tlapp.deploy.explain import ExplainError, GradCam, explain_file
    from tlapp.deploy.loading import load_parts

    result, _, run_dir = trained_run
    parts = load_parts(run_dir / "export")
    img = next((color_data / "red").glob("*.png"))
    rgb = np.asarray(Image.open(img).convert("RGB").resize((45, 37)))  # not the model's size: map follows the input
    cam = GradCam(parts.model, parts.classes)
    maps = {c: cam.explain(rgb, c) for c in parts.classes}
    for c, ex in maps.items():
        assert ex.heat.shape == (37, 45) and ex.heat.dtype == np.float32 and 0 <= ex.heat.min() <= ex.heat.max() <= 1
        assert ex.class_name == c
    a, b = maps["red"].heat, maps["blue"].heat
    assert np.abs(a - b).mean() > 1e-3  # a different class, a different map

    ex, png = explain_file(run_dir, img, out=tmp_path / "heat.png")
    assert png.is_file() and Image.open(png).size == Image.open(img).size and ex.predicted in parts.classes
    with pytest.raises(ExplainError, match="'purple': not one of the model's classes"):
        explain_file(run_dir, img, "purple", tmp_path / "x.png")


def test_grad_cam_refuses_a_backbone_without_a_convolutional_map():
    from tlapp.base.tfenv import quiet_import
    from tlapp.deploy.explain import ExplainError, GradCam

    _, keras = quiet_import()
    image = keras.Input((4, 4, 3), name="image")
    tokens = keras.layers.Reshape((16, 3))(image)  # what a vision transformer hands its pooling
    features = keras.Model(image, keras.layers.GlobalAveragePooling1D(name="pool")(tokens), name="features")
    head = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")], name="head")
    model = keras.Model(image, head(features(image)))
    with pytest.raises(ExplainError, match="not a convolutional feature map"):
        GradCam(model, ["a", "b"])


def test_most_confidently_wrong_per_true_class():
    from tlapp.deploy.evaluate import confidently_wrong

    preds = [
        {"path": "a1", "true": "a", "pred": "b", "score": 0.6},
        {"path": "a2", "true": "a", "pred": "b", "score": 0.9},
        {"path": "a3", "true": "a", "pred": "a", "score": 0.99},
        {"path": "b1", "true": "b", "pred": "a", "score": 0.7},
        {"path": "a4", "true": "a", "pred": "c", "score": 0.8},
    ]
    got = confidently_wrong({"predictions": preds}, per_class=2)
    assert {k: [p["path"] for p in v] for k, v in got.items()} == {"a": ["a2", "a4"], "b": ["b1"]}
