"""EfficientNet-Lite1/Lite2, converted from their PyPI ``.pth`` like Lite0: every tensor arrives unchanged,
the shapes are the TF release's, an export rebuilds from keras-hub's own config, and the ImageNet head
still sees an elephant. The packages are dependencies of tlapp, so a missing one fails."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import shared

LITES = ("efficientnet_lite1", "efficientnet_lite2")


def _pth(name: str):
    from tlapp.backbones import effnet_lite

    pth = effnet_lite.package_pth(name)
    if pth is None:
        pytest.fail(f"{effnet_lite.VARIANTS[name].package} is a dependency of tlapp and is not installed")
    return pth


def _fingerprints(arrays) -> list[tuple[int, str]]:
    """Layout-free identity of each tensor: its size and the hash of its sorted values (a transposed
    kernel keeps both, a wrong or missing tensor changes them)."""
    out = []
    for a in arrays:
        v = np.sort(np.asarray(a, np.float32).ravel())
        out.append((v.size, hashlib.sha1(v.tobytes()).hexdigest()))
    return sorted(out)


def test_variants_have_the_tf_release_shapes():
    from tlapp.backbones import effnet_lite
    from tlapp.backbones.torchfile import load_state_dict

    for name, blocks, head_in in (("efficientnet_lite1", 21, 320), ("efficientnet_lite2", 21, 352)):
        v = effnet_lite.VARIANTS[name]
        assert (sum(v.repeats), v.head_in) == (blocks, head_in)
        assert effnet_lite.variant_of(load_state_dict(_pth(name))) is v
    assert effnet_lite.variant_of({"_conv_stem.weight": np.zeros(1)}) is None


@pytest.mark.slow
@pytest.mark.parametrize("name", LITES)
def test_conversion_keeps_every_tensor_and_sees_an_elephant(name, tmp_path, monkeypatch):
    from tlapp.backbones import effnet_lite
    from tlapp.backbones.image import build_backbone
    from tlapp.backbones.torchfile import load_state_dict
    from tlapp.config import Backbone
    from tlapp.data.imageio import load_rgb

    monkeypatch.setenv("TLAPP_HOME", str(tmp_path / "store"))
    v = effnet_lite.VARIANTS[name]
    sd = load_state_dict(_pth(name))
    built = build_backbone(Backbone(name=name))
    net = built.model
    pth = [t for k, t in sd.items() if not k.startswith("_fc.") and not k.endswith("num_batches_tracked")]
    assert _fingerprints(net.get_weights()) == _fingerprints(pth)  # every tensor, none lost or changed
    # ... and in its place: BatchNorm's four vectors in order, the first and last blocks, the head
    timm = effnet_lite.to_timm(sd, v)
    for layer, prefix in (("stem_bn", "bn1"), ("top_bn", "bn2")):
        bn = net.get_layer(layer)
        assert bn.epsilon == 1e-3
        for var, key in zip(bn.weights, ("weight", "bias", "running_mean", "running_var")):
            assert np.array_equal(var.numpy(), timm[f"{prefix}.{key}"]), (layer, key)
    assert np.array_equal(net.get_layer("top_conv").kernel.numpy(), timm["conv_head.weight"].transpose(2, 3, 1, 0))
    last = sum(v.repeats) - 1
    dw = [w for w in net.weights if w.path.endswith("dwconv/kernel")]
    assert len(dw) == last + 1 and np.array_equal(
        dw[-1].numpy()[..., 0], timm["blocks.6.0.conv_dw.weight"][:, 0].transpose(1, 2, 0)
    )

    head = np.load(effnet_lite.preset_dir(name) / "imagenet_head.npz")
    labels = json.loads(shared("weights", "imagenet_class_index.json").read_text())
    img = load_rgb(shared("images", "elephant.jpg"), (v.size, v.size)).astype(np.float32)
    feats = np.asarray(net.predict_on_batch(img[None] / 127.5 - 1.0)).mean(axis=(1, 2))
    top = labels[str(int((feats @ head["kernel"] + head["bias"]).argmax()))][1]
    assert top in ("African_elephant", "tusker", "Indian_elephant"), top

    # keras-hub alone, in a process that never imports tlapp, rebuilds the saved preset and gives the same
    # features (what a .keras export relies on)
    np.save(tmp_path / "x.npy", img[None] / 127.5 - 1.0)
    code = (
        "import sys, numpy as np, keras_hub; "
        "b = keras_hub.models.Backbone.from_preset(sys.argv[1]); "
        "assert not [m for m in sys.modules if m.startswith('tlapp')]; "
        "np.save(sys.argv[3], np.asarray(b.predict_on_batch(np.load(sys.argv[2]))))"
    )
    env = {k: val for k, val in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run(
        [sys.executable, "-c", code, str(effnet_lite.preset_dir(name)), str(tmp_path / "x.npy"), str(tmp_path / "y")],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr[-800:]
    mine = np.asarray(net.predict_on_batch(np.load(tmp_path / "x.npy")))
    assert np.allclose(np.load(tmp_path / "y.npy"), mine, atol=1e-5)
