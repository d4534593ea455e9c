"""EfficientNet-Lite1/Lite2, converted from their PyPI ``.pth`` like Lite0: every tensor arrives unchanged,
the shapes are the TF release's, an export rebuilds from keras-hub's own config, and the ImageNet head
still sees an elephant. The packages are dependencies of tlapp, so a missing one fails."""

from __future__ import annotations

import hashlib
import json

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
    assert _fingerprints(net.get_weights()) == _fingerprints(pth)
    assert net.get_layer("top_conv").kernel.shape == (1, 1, v.head_in, 1280)

    head = np.load(effnet_lite.preset_dir(name) / "imagenet_head.npz")
    labels = json.loads(shared("weights", "imagenet_class_index.json").read_text())
    img = load_rgb(shared("images", "elephant.jpg"), (v.size, v.size)).astype(np.float32)
    feats = np.asarray(net.predict_on_batch(img[None] / 127.5 - 1.0)).mean(axis=(1, 2))
    top = labels[str(int((feats @ head["kernel"] + head["bias"]).argmax()))][1]
    assert top in ("African_elephant", "tusker", "Indian_elephant"), top

    # keras-hub alone rebuilds it from its saved config (what a .keras export relies on)
    import keras

    again = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(net))
    again.set_weights(net.get_weights())
    assert np.allclose(again.predict_on_batch(img[None] / 127.5 - 1.0), net.predict_on_batch(img[None] / 127.5 - 1.0))
