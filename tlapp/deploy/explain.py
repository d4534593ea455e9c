"""Grad-CAM: which parts of an image moved the model towards a class.

The map is computed on the backbone's last convolutional feature map (the input of the model's
``pool`` layer, for every catalog family whose backbone ends in one), weighted by the gradient
of the class score, kept where positive, and resized to the input image's own size. Backbones
whose output is a token sequence (vision transformers) have no such map: they get a clear error
rather than a picture that only looks like an explanation.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from tlapp.base.errors import ExportError, TlappError
from tlapp.base.fsutil import atomic_path
from tlapp.base.tfenv import quiet_import
from tlapp.data.imageio import load_rgb


class ExplainError(TlappError):
    """A model or image Grad-CAM cannot explain (the message says why)."""


@dataclass
class Explanation:
    heat: np.ndarray  # float32 [H, W] in 0..1, the input image's size
    class_name: str
    class_index: int
    score: float  # the model's output for that class
    predicted: str
    feature_map: tuple[int, int, int]  # (h, w, channels) of the map the heat came from


class GradCam:
    """Grad-CAM for a tlapp image model (the full raw-pixel model, as exported or in training)."""

    def __init__(self, model: Any, classes: list[str]) -> None:
        tf, keras = quiet_import()
        self.tf, self.classes = tf, list(classes)
        from tlapp.model.image_model import single_pass

        model = single_pass(model)  # a mirror-averaged model is explained by its one-pass self
        try:
            features = model.get_layer("features")
            pool = features.get_layer("pool")
        except ValueError:
            raise ExplainError(
                f"model {model.name!r} is not a tlapp image model (no 'features'/'pool' layers); "
                "Grad-CAM explains image classifiers trained by tlapp"
            ) from None
        fmap = pool.input
        if len(fmap.shape) != 4:
            raise ExplainError(
                f"the backbone's output is not a convolutional feature map (shape {tuple(fmap.shape)}, "
                "e.g. a vision transformer's tokens): Grad-CAM needs one, so this model cannot be "
                "explained with it"
            )
        head_layers = [
            layer
            for layer in model.layers
            if layer is not features and layer.name != "image" and not isinstance(layer, keras.layers.InputLayer)
        ]
        if len(head_layers) != 1:
            raise ExplainError(
                f"model {model.name!r}: expected one head after 'features', found "
                f"{[layer.name for layer in head_layers]}"
            )
        self.head = head_layers[0]
        self.inner = keras.Model(features.inputs, [fmap, features.output], name="gradcam_features")
        self.fmap_shape = tuple(int(d) for d in fmap.shape[1:])

    def explain(self, rgb: np.ndarray, class_name: Optional[str] = None) -> Explanation:
        """Heat map of ``rgb`` (uint8 [H, W, 3]) for ``class_name`` (default: the predicted class)."""
        tf = self.tf
        x = tf.constant(rgb[None].astype(np.float32))
        with tf.GradientTape() as tape:
            fmap, pooled = self.inner(x, training=False)
            tape.watch(fmap)
            out = self.head(pooled, training=False)
            probs = out.numpy()[0]
            predicted = int(np.argmax(probs))
            if class_name is None:
                index = predicted
            elif class_name in self.classes:
                index = self.classes.index(class_name)
            else:
                raise ExplainError(
                    f"--class {class_name!r}: not one of the model's classes ({', '.join(self.classes)})"
                )
            score = out[:, index]
        grads = tape.gradient(score, fmap)
        if grads is None:
            raise ExplainError("no gradient reached the feature map (a head that ignores it?)")
        weights = tf.reduce_mean(grads, axis=(1, 2))  # one weight per channel
        cam = tf.nn.relu(tf.reduce_sum(fmap * weights[:, None, None, :], axis=-1))[0]
        cam = tf.image.resize(cam[..., None], rgb.shape[:2], method="bilinear")[..., 0].numpy()
        top = float(cam.max())
        heat = (cam / top if top > 0 else np.zeros_like(cam)).astype(np.float32)
        return Explanation(
            heat, self.classes[index], index, float(probs[index]), self.classes[predicted], self.fmap_shape
        )  # type: ignore[arg-type]


def overlay(rgb: np.ndarray, heat: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """The heat map (jet colours) blended over the image, uint8 [H, W, 3]."""
    import matplotlib

    colours = matplotlib.colormaps["jet"](heat)[..., :3]
    return np.clip((1 - alpha) * rgb.astype(np.float32) + alpha * 255 * colours, 0, 255).astype(np.uint8)


def explain_file(
    run_or_export: Path, image: Path, class_name: Optional[str] = None, out: Optional[Path] = None
) -> tuple[Explanation, Path]:
    """``tlapp explain``: Grad-CAM of one image file with a finished run's exported model; writes
    the overlay as a PNG (default: ``<image name>.gradcam.png`` beside the run's export)."""
    from PIL import Image

    from tlapp.data.imageio import ImageProblem
    from tlapp.deploy.loading import load_parts
    from tlapp.deploy.predict import find_export

    export = find_export(Path(run_or_export))
    parts = load_parts(export)
    if parts.task not in ("image_classification", "multi_label"):
        raise ExplainError(f"{run_or_export}: Grad-CAM explains image classifiers; this model's task is {parts.task}")
    try:
        rgb = load_rgb(image)
    except ImageProblem as e:
        raise ExplainError(f"{image}: {e}") from None
    except OSError as e:
        raise ExplainError(f"{image}: {e.strerror or e}") from None
    ex = GradCam(parts.model, parts.classes).explain(rgb, class_name)
    target = Path(out) if out else export.parent / f"{Path(image).stem}.gradcam.png"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target, suffix=".png") as tmp:
            Image.fromarray(overlay(rgb, ex.heat)).save(tmp, format="PNG")
    except OSError as e:
        raise ExportError(f"{target}: cannot write the heat map ({e.strerror or e})") from None
    return ex, target
