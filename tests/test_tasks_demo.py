"""Other tasks end to end, the timm-folder import path, and the demo (quick)."""

import json

import numpy as np
from test_config import run_cli

from tlapp.config import project_from_dict

from conftest import lite0_pth, tiny_project_dict


def test_multi_label_and_regression_train_and_export(color_data, tmp_path):
    from tlapp.training.run import train

    files = sorted(color_data.rglob("*.png"))
    ml = tmp_path / "ml.csv"
    ml.write_text(
        "path,label\n" + "".join(f"{f},{f.parent.name};{'warm' if f.parent.name == 'red' else 'cool'}\n" for f in files)
    )
    d = tiny_project_dict(ml)
    d["data"]["source"] = "csv"
    d["task"] = {"type": "multi_label"}
    d["train"]["phases"] = d["train"]["phases"][:1]
    r = train(project_from_dict(d), tmp_path / "ml")
    assert r.classes == ["blue", "cool", "green", "red", "warm"] and r.export["verified"]
    ev = json.loads((tmp_path / "ml" / "evaluation.json").read_text())
    assert isinstance(ev["predictions"][0]["true"], list)
    assert "mAP" in ev and set(ev["per_label"]["warm"]) >= {"average_precision", "tuned_threshold", "f1"}
    from tlapp.deploy.finished_run import evaluate_run

    again = evaluate_run(tmp_path / "ml")  # the exported model, through `tlapp predict`'s path
    assert again["n"] == ev["n"] and abs(again["macro_f1"] - ev["macro_f1"]) < 1e-6

    reg = tmp_path / "reg.csv"
    reg.write_text("".join(f"{f},{float(i % 7)}\n" for i, f in enumerate(files)))
    d = tiny_project_dict(reg)
    d["data"]["source"] = "csv"
    d["task"] = {"type": "regression"}
    d["data"]["test_fraction"] = 0.2
    d["train"]["phases"] = d["train"]["phases"][:1]
    r = train(project_from_dict(d), tmp_path / "reg")
    assert "mae" in r.metrics["final"] and r.export["verified"]
    assert set(r.metrics["evaluation"]) >= {"mae", "rmse", "r2", "residuals"}
    # The test split: evaluated once at the end, reported apart from validation.
    test = json.loads((tmp_path / "reg" / "evaluation_test.json").read_text())
    assert test["split"] == "test" and test["n"] == r.metrics["n_test"] > 0 and r.metrics["test"]["rmse"] >= 0
    assert (tmp_path / "reg" / "plots" / "test_residuals.png").is_file()
    assert "Test (held out, evaluated once)" in (tmp_path / "reg" / "model_card.md").read_text()
    again = evaluate_run(tmp_path / "reg", split="test")
    assert again["n"] == test["n"] and abs(again["mae"] - test["mae"]) < 1e-4


def test_timm_folder_import_through_keras_hub(tmp_path):
    """A timm/HF-style folder (config.json + model.safetensors) becomes a local preset."""
    from tlapp.backbones import effnet_lite
    from tlapp.backbones.torchfile import load_state_dict
    from tlapp.backbones.weights import available, import_weights

    pth = lite0_pth()
    effnet_lite.write_timm_folder(load_state_dict(pth), tmp_path / "timm_lite0")
    res = import_weights(tmp_path / "timm_lite0", name="my_lite0")
    assert res.kind == "keras-hub preset" and "my_lite0" in available()["presets"]
    from tlapp.backbones.image import build_backbone
    from tlapp.config import Backbone

    b = build_backbone(Backbone(name="efficientnet_lite0", weights=res.destination, image_size=64))
    assert b.weights_source.startswith("preset") and b.model.count_params() > 3_000_000


def test_demo_quick(tmp_path, capsys):
    code, out, err = run_cli(["demo", "--quick", "--out", str(tmp_path / "demo")], capsys)
    assert code == 0, err
    assert "accuracy" in out and "cross-validation" in out and "verified: True" in out
    run = tmp_path / "demo" / "run"
    for f in ("config.yaml", "events.jsonl", "metrics.json", "model_card.md", "export/saved_model"):
        assert (run / f).exists(), f
    acc = json.loads((run / "metrics.json").read_text())["evaluation"]["accuracy"]
    assert acc > 0.5  # ten classes, 30 per class, the fast preset's converged head: far above chance (0.1)


def test_keras_hub_image_backbone_offline_from_imported_folder(tmp_path):
    """A keras-hub catalog entry works offline once its folder is imported under the entry's name,
    with the preset's own preprocessing (never a guessed scaling)."""
    from tlapp.backbones import effnet_lite
    from tlapp.backbones.torchfile import load_state_dict
    from tlapp.backbones.weights import import_weights, offline_status
    from tlapp.model.image_model import build_model

    pth = lite0_pth()
    effnet_lite.write_timm_folder(load_state_dict(pth), tmp_path / "timm")
    import_weights(tmp_path / "timm", name="hub_efficientnet_lite0_ra")
    assert offline_status("hub_efficientnet_lite0_ra")
    p = project_from_dict({"data": {"path": "x"}, "backbone": {"name": "hub_efficientnet_lite0_ra", "image_size": 64}})
    asm = build_model(p, 3)
    assert any("ImageConverter" in type(layer).__name__ for layer in asm.features.layers)
    out = asm.model.predict_on_batch(np.full((1, 80, 80, 3), 128.0, np.float32))
    assert out.shape == (1, 3)
