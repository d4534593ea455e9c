import json
import pickle
import re
import subprocess
import sys

import numpy as np
import pytest
from test_config import run_cli

from tlapp.backbones.catalog import all_entries, check_options, get_entry, weights_file
from tlapp.base.errors import BackboneError, WeightsError

from conftest import lite0_pth, shared


def test_catalog_covers_keras_applications():
    names = {e.name for e in all_entries()}
    for n in [
        "mobilenet",
        "mobilenet_v2",
        "mobilenet_v3_small",
        "mobilenet_v3_large",
        "efficientnet_lite0",
        *[f"efficientnet_b{i}" for i in range(8)],
        "efficientnet_v2_b0",
        "efficientnet_v2_s",
        "efficientnet_v2_m",
        "efficientnet_v2_l",
        "resnet50",
        "resnet101",
        "resnet152",
        "resnet50_v2",
        "resnet152_v2",
        "densenet121",
        "densenet201",
        "xception",
        "inception_v3",
        "inception_resnet_v2",
        "vgg16",
        "vgg19",
        "nasnet_mobile",
        "nasnet_large",
        "convnext_tiny",
        "convnext_xlarge",
    ]:
        assert n in names, n
    assert all(re.fullmatch(r"[a-z0-9_]+", n) for n in names)
    assert get_entry("resnet50").preprocessing == "caffe" and get_entry("densenet121").preprocessing == "torch"
    assert get_entry("mobilenet_v2").preprocessing == "tf" and get_entry("efficientnet_b0").preprocessing == "raw"
    assert any(e.source == "hub" for e in all_entries())


def test_weights_file_names_match_keras():
    e = get_entry("mobilenet_v2")
    assert weights_file(e, 128, {"alpha": 0.35}) == "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_128_no_top.h5"
    assert weights_file(get_entry("mobilenet"), 224, {"alpha": 0.25}) == "mobilenet_2_5_224_tf_no_top.h5"
    assert weights_file(get_entry("efficientnet_b3"), 300, {}) == "efficientnetb3_notop.h5"


def test_unknown_backbone_and_option():
    with pytest.raises(BackboneError, match="Unknown backbone 'mobilnet_v2'"):
        get_entry("mobilnet_v2")
    with pytest.raises(BackboneError, match="'depth' is not an option of 'mobilenet_v2'"):
        check_options(get_entry("mobilenet_v2"), {"depth": 2})


def test_backbones_cli_json(capsys):
    code, out, _ = run_cli(["backbones", "--json"], capsys)
    rows = json.loads(out)
    lite = next(r for r in rows if r["name"] == "efficientnet_lite0")
    assert code == 0 and lite["offline"] is True and lite["licence"] == "Apache-2.0"


def test_help_does_not_import_tensorflow():
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "from tlapp.cli.main import main; main(['--help'])"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and "Usage" in proc.stdout
    assert not re.search(r"\|\s+tensorflow$", proc.stderr, re.M)


def test_restricted_unpickler_refuses_code(tmp_path):
    from tlapp.backbones.torchfile import load_state_dict

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    f = tmp_path / "evil.pth"
    with open(f, "wb") as fh:
        for obj in (0x1950A86A20F9469CFC6C, 1001, {}, {"w": Evil()}, []):
            pickle.dump(obj, fh)
    with pytest.raises(WeightsError, match="refusing to unpickle global builtins.print"):
        load_state_dict(f)


def test_lite0_pth_read_without_torch():
    from tlapp.backbones.torchfile import load_state_dict

    pth = lite0_pth()
    assert "torch" not in sys.modules
    sd = load_state_dict(pth)
    assert sd["_conv_stem.weight"].shape == (32, 3, 3, 3) and sd["_fc.weight"].shape == (1000, 1280)
    assert "torch" not in sys.modules


def test_offline_missing_weights_one_line():
    from tlapp.backbones.image import build_backbone
    from tlapp.config import Backbone

    with pytest.raises(WeightsError) as e:
        build_backbone(Backbone(name="mobilenet_v2", weights="imagenet", image_size=96, options={"alpha": 0.5}))
    msg = str(e.value)
    assert "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.5_96_no_top.h5" in msg
    assert "tlapp weights import" in msg and "\n" not in msg


def test_import_rejects_bad_files(tmp_path):
    from tlapp.backbones.weights import import_weights

    junk = tmp_path / "random.h5"
    junk.write_bytes(b"not hdf5")
    with pytest.raises(WeightsError, match="not an official Keras applications file name"):
        import_weights(junk)
    with pytest.raises(WeightsError, match="no such file"):
        import_weights(tmp_path / "nope.h5")
    (tmp_path / "folder").mkdir()
    with pytest.raises(WeightsError, match="no config.json"):
        import_weights(tmp_path / "folder")


def test_shared_imagenet_weights_import_and_load(capsys):
    """Real weights: import the shared Keras cache files, then load via weights: imagenet."""
    from tlapp.backbones.image import build_backbone
    from tlapp.backbones.weights import available
    from tlapp.config import Backbone

    for name in (
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_128_no_top.h5",
        "mobilenet_2_5_224_tf_no_top.h5",
    ):
        code, _, err = run_cli(["weights", "import", str(shared("weights", name))], capsys)
        assert code == 0, err
    assert "mobilenet_2_5_224_tf_no_top.h5" in available()["keras_cache"]
    b = build_backbone(Backbone(name="mobilenet_v2", image_size=128, options={"alpha": 0.35}))
    assert "imagenet" in b.weights_source and b.model.count_params() > 400_000
    k = [w for w in b.model.weights if "Conv1" in w.path][0].numpy()
    assert abs(float(k.std())) > 0.01  # real weights, not zeros
    # v1 weights exist for 224 only; other non-standard sizes reuse them.
    b1 = build_backbone(Backbone(name="mobilenet", image_size=96, options={"alpha": 0.25}))
    assert "cached" in b1.weights_source


def test_close_matches_follow_the_typed_name(capsys):
    with pytest.raises(BackboneError, match=r"Did you mean: resnet50"):
        get_entry("resnet5")
    code, out, _ = run_cli(["--version"], capsys)
    assert code == 0 and out.strip().startswith("tlapp ")


def test_lite0_weights_equal_the_pth_tensors():
    """The converted default holds the .pth's numbers (stem conv: OIHW -> HWIO)."""
    from tlapp.backbones.image import build_backbone
    from tlapp.backbones.torchfile import load_state_dict
    from tlapp.config import Backbone

    pth = lite0_pth()
    stem = load_state_dict(pth)["_conv_stem.weight"]
    built = build_backbone(Backbone(name="efficientnet_lite0", image_size=64))
    kernels = [w.numpy() for w in built.model.weights if tuple(w.shape) == (3, 3, 3, 32)]
    assert kernels, "no stem kernel found"
    np.testing.assert_allclose(kernels[0], stem.transpose(2, 3, 1, 0), atol=1e-6)
