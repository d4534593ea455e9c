"""Model assembly: raw pixels -> resize -> the backbone's own scaling -> backbone -> pool -> head.

Preprocessing lives inside the model, so an exported model takes raw 0-255
pixels and no deployment can feed it the wrong scaling. The model is built
as ``features`` (image -> pooled vector) and ``head`` (vector -> outputs)
sub-models joined into one, so a head trained on cached embeddings is the
very same layer objects the full model uses.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tlapp.backbones.image import BuiltBackbone, build_backbone
from tlapp.base.errors import WeightsError
from tlapp.base.paths import tlapp_home
from tlapp.base.tfenv import quiet_import, quiet_keras_hub
from tlapp.config import Project
from tlapp.model.head import Assembled, build_head

tf, keras = quiet_import()

IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="tlapp")
class CaffePreprocess(keras.layers.Layer):
    """RGB -> BGR and ImageNet mean subtraction. Kept only so exports written before
    :func:`caffe_layer` still load; new models use the built-in layer below."""

    def call(self, x):
        x = tf.reverse(x, axis=[-1])
        return x - tf.constant(CAFFE_MEAN_BGR, dtype=x.dtype)


def caffe_layer() -> Any:
    """RGB -> BGR and ImageNet mean subtraction (ResNet v1 / VGG weights) as a frozen 1x1
    convolution (a channel permutation plus a bias): a built-in layer, so every export
    (.keras, .h5, SavedModel) reloads without tlapp installed. Exact in float32."""
    perm = np.zeros((1, 1, 3, 3), np.float32)
    for i in range(3):
        perm[0, 0, i, 2 - i] = 1.0
    return keras.layers.Conv2D(
        3,
        1,
        use_bias=True,
        trainable=False,
        name="caffe_bgr_mean",
        kernel_initializer=keras.initializers.Constant(perm),
        bias_initializer=keras.initializers.Constant(-np.array(CAFFE_MEAN_BGR, np.float32)),
    )


def preprocessing_layers(mode: str) -> list[Any]:
    if mode == "tf":
        return [keras.layers.Rescaling(1.0 / 127.5, offset=-1.0, name="scale_tf")]
    if mode == "torch":
        return [
            keras.layers.Rescaling(1.0 / 255.0, name="scale_01"),
            keras.layers.Normalization(
                mean=list(IMAGENET_MEAN_RGB), variance=[s * s for s in IMAGENET_STD_RGB], name="normalize_imagenet"
            ),
        ]
    if mode == "caffe":
        return [caffe_layer()]
    return []


def _hub_converter(built: BuiltBackbone) -> list[Any]:
    """The preset's own ImageConverter (its scaling/normalisation). Guessing a scaling would be the
    silent deployment bug this project exists to prevent, so a missing converter is an error."""

    kh = quiet_keras_hub()
    local = tlapp_home() / "presets" / built.entry.name
    source = str(local) if (local / "image_converter.json").is_file() else built.entry.builder
    try:
        return [kh.layers.ImageConverter.from_preset(source, image_size=(built.size, built.size))]
    except Exception as e:
        raise WeightsError(
            f"cannot load the image preprocessing (ImageConverter) of keras-hub preset {source!r} "
            f"({type(e).__name__}); offline, import the whole preset folder with "
            f"`tlapp weights import FOLDER --name {built.entry.name}`"
        ) from None


def build_model(project: Project, n_classes: int, built: BuiltBackbone | None = None) -> Assembled:
    """Assemble the full model; pass ``built`` to reuse an already loaded backbone."""
    built = built or build_backbone(project.backbone)
    size = built.size
    image = keras.Input((None, None, 3), name="image")
    x = keras.layers.Resizing(size, size, name="resize")(image)
    pre = (
        _hub_converter(built)
        if built.entry.source == "hub" and project.backbone.weights == "imagenet"
        else preprocessing_layers(built.entry.preprocessing)
    )
    for layer in pre:
        x = layer(x)
    x = built.model(x, training=False)
    pool = keras.layers.GlobalAveragePooling2D if project.head.pooling == "avg" else keras.layers.GlobalMaxPooling2D
    x = pool(name="pool")(x)
    features = keras.Model(image, x, name="features")
    dim = int(x.shape[-1])
    head = build_head(project, dim, n_classes)
    model = keras.Model(image, head(features(image)), name=f"tlapp_{built.entry.name}")
    return Assembled(model, features, head, built, dim)


MIRROR_AVERAGE = "mirror_average"  # the output layer of a mirror-averaged model: how it is recognised


def mirror_averaged(model: Any, size: int) -> Any:
    """``model`` predicting the mean of its outputs for an image and for its mirror image (test-time flip).

    Stock layers only, so the exported ``.keras`` loads without tlapp: the mirror is a frozen Dense whose
    kernel is the reversed identity, applied across the width (exact: each output is one input times 1).
    Images are resized first, which commutes with the mirror, so the inner model's own resize is a no-op.
    """
    image = keras.Input((None, None, 3), name="image")
    x = keras.layers.Resizing(size, size, name="mirror_resize")(image)
    across = keras.layers.Permute((1, 3, 2), name="width_last")(x)
    flip = keras.layers.Dense(size, use_bias=False, trainable=False, name="mirror")
    mirrored = keras.layers.Permute((1, 3, 2), name="width_back")(flip(across))
    flip.set_weights([np.eye(size, dtype="float32")[::-1]])
    out = keras.layers.Average(name=MIRROR_AVERAGE)([model(x), model(mirrored)])
    return keras.Model(image, out, name=f"{model.name}_mirror_averaged")


def single_pass(model: Any) -> Any:
    """The one-pass model inside a :func:`mirror_averaged` one (the model itself otherwise): what Grad-CAM
    and the suggestions read their ``features`` and ``head`` from."""
    if MIRROR_AVERAGE not in {layer.name for layer in model.layers}:
        return model
    return next(layer for layer in model.layers if isinstance(layer, keras.Model))
