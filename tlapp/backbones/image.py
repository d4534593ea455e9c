"""Build a backbone network from a catalog entry and a weights choice.

``weights`` in the project file is ``imagenet`` (Keras download when online,
the Keras cache / local model store when not), ``none`` (random init), or a
path: a ``.weights.h5``/``.keras`` file or a keras-hub / Hugging Face / timm
preset folder. Offline with nothing cached, the error names the missing file
and the import command.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tlapp.backbones.catalog import BackboneEntry, check_backbone, weights_file
from tlapp.base.errors import WeightsError
from tlapp.base.paths import keras_models_dir, tlapp_home
from tlapp.base.tfenv import quiet_import, quiet_keras_hub
from tlapp.base.untrusted import check_h5, check_keras_file
from tlapp.config import Backbone as BackboneCfg


@dataclass
class BuiltBackbone:
    model: Any
    entry: BackboneEntry
    size: int
    weights_source: str


def _missing(entry: BackboneEntry, fname: str, err: Exception) -> WeightsError:
    return WeightsError(
        f"ImageNet weights for {entry.name!r} are not available offline: {fname} is not in "
        f"{keras_models_dir()} and the download failed ({type(err).__name__}). "
        f"Import the file with `tlapp weights import PATH/{fname}`"
    )


def _build_keras(entry: BackboneEntry, size: int, weights: str, opts: dict[str, Any]) -> tuple[Any, str]:

    _, keras = quiet_import()
    cls = getattr(keras.applications, entry.builder)
    kwargs = dict(include_top=False, input_shape=(size, size, 3), **opts)
    if entry.preprocessing == "raw" and entry.family in ("EfficientNetV2", "MobileNetV3", "ConvNeXt"):
        kwargs["include_preprocessing"] = True
    if weights != "imagenet":
        return cls(weights=None, **kwargs), "random init"
    fname = weights_file(entry, size, opts) or "?"
    cached = keras_models_dir() / fname
    try:
        model = cls(weights="imagenet", **kwargs)
    except ValueError:
        raise
    except Exception as e:  # network errors come in many types (URLError, OSError, HTTPError...)
        if not cached.is_file():
            raise _missing(entry, fname, e) from None
        raise WeightsError(f"{cached}: could not load ImageNet weights for {entry.name!r}: {e}") from None
    return model, f"imagenet ({fname}{', cached' if cached.is_file() else ''})"


def _build_hub(entry: BackboneEntry, weights: str) -> tuple[Any, str]:

    keras_hub = quiet_keras_hub()
    local = tlapp_home() / "presets" / entry.name
    if weights != "imagenet":
        return keras_hub.models.Backbone.from_preset(entry.builder, load_weights=False), "random init"
    if (local / "config.json").is_file():
        return keras_hub.models.Backbone.from_preset(str(local)), f"imagenet (local preset {local})"
    try:
        return keras_hub.models.Backbone.from_preset(entry.builder), f"imagenet (keras-hub preset {entry.builder})"
    except Exception as e:
        raise WeightsError(
            f"keras-hub preset {entry.builder!r} could not be downloaded ({type(e).__name__}); offline, "
            f"import a local copy with `tlapp weights import FOLDER --name {entry.name}`"
        ) from None


def _load_path(model: Any, path: Path) -> None:

    _, keras = quiet_import()
    if path.name.endswith(".keras"):
        check_keras_file(path)
    elif path.suffix == ".h5":
        check_h5(path, str(path))
    try:
        if path.name.endswith(".keras"):
            src = keras.saving.load_model(path, compile=False, safe_mode=True)
            _check_fit(path, model.weights, src.weights)
            model.set_weights(src.get_weights())
        else:
            model.load_weights(path)
    except WeightsError:
        raise
    except Exception as e:
        raise WeightsError(f"{path}: weights do not fit this backbone: {str(e).splitlines()[0]}") from None


def _check_fit(path: Path, want: list[Any], have: list[Any]) -> None:
    """Name the first layer whose weights do not fit, with both shapes (Keras only says "incompatible")."""
    if len(want) != len(have):
        raise WeightsError(
            f"{path}: has {len(have)} weight tensors, this backbone needs {len(want)}; "
            "it was saved from another architecture"
        )
    for w, h in zip(want, have):
        if tuple(w.shape) != tuple(h.shape):
            raise WeightsError(
                f"{path}: layer weight {w.path!r} needs shape {tuple(w.shape)}, the file has "
                f"{tuple(h.shape)} ({h.path!r})"
            )


def build_backbone(cfg: BackboneCfg) -> BuiltBackbone:
    """Build the configured backbone (no top), validating size and options."""
    entry, size, opts = check_backbone(cfg, "image")
    weights = cfg.weights.strip()
    path = None if weights.lower() in ("imagenet", "none") else Path(weights).expanduser()
    if path is not None and not path.exists():
        raise WeightsError(f"backbone.weights: {path} does not exist")
    if path is not None and path.is_dir():
        if not (path / "config.json").is_file():
            raise WeightsError(f"backbone.weights: {path} has no config.json (not a preset folder)")
        return BuiltBackbone(quiet_keras_hub().models.Backbone.from_preset(str(path)), entry, size, f"preset {path}")
    mode = "imagenet" if weights.lower() == "imagenet" else "none"
    if entry.source == "keras":
        model, src = _build_keras(entry, size, mode, opts)
    elif entry.source == "hub":
        model, src = _build_hub(entry, mode)
    else:
        mod, fn = entry.builder.split(":")
        model = getattr(importlib.import_module(mod), fn)(size, mode, opts)
        src = "random init" if mode == "none" else f"imagenet ({entry.weights})"
    if path is not None:
        _load_path(model, path)
        src = f"file {path}"
    return BuiltBackbone(model, entry, size, src)
