"""Real weights on real data (``--run-slow``)."""

from __future__ import annotations

import json

import pytest

from tlapp.config import project_from_dict

from conftest import shared


@pytest.mark.slow
def test_mobilenet_v2_035_sign_language_digits(tmp_path, capsys):
    from test_config import run_cli

    from tlapp.training.run import train

    data = shared("data", "sign_language_digits", "Dataset")
    w = shared("weights", "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_128_no_top.h5")
    code, _, err = run_cli(["weights", "import", str(w)], capsys)
    assert code == 0, err
    p = project_from_dict(
        {
            "name": "sign-digits",
            "data": {"path": str(data), "val_fraction": 0.2, "seed": 3, "max_per_class": 80},
            "backbone": {"name": "mobilenet_v2", "image_size": 128, "options": {"alpha": 0.35}},
        }
    )  # the default recipe
    result = train(p, tmp_path / "run")
    acc = result.metrics["evaluation"]["accuracy"]
    print(
        f"\nsign-language digits, MobileNetV2-0.35@128: accuracy {acc:.4f} "
        f"({result.metrics['evaluation'].get('method', 'validation')}); {result.metrics['recipe']['summary']}"
    )
    (tmp_path.parent / "slow_result.json").write_text(json.dumps({"val_accuracy": acc}))
    assert acc > 0.85
    assert result.export["verified"] is True


@pytest.mark.slow
def test_demo_end_to_end(tmp_path, capsys):
    from test_config import run_cli

    code, out, err = run_cli(["demo", "--out", str(tmp_path / "demo")], capsys)
    assert code == 0, err
    acc = json.loads((tmp_path / "demo" / "run" / "metrics.json").read_text())["evaluation"]["accuracy"]
    assert acc > 0.9  # ten classes: chance is 0.1
