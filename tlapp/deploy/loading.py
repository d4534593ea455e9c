"""Load an export folder back into :class:`~tlapp.deploy.export.ExportParts`,
for image and text models alike, so re-export runs the same code as the
export at the end of training.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np

from tlapp.base.errors import ExportError
from tlapp.base.tfenv import quiet_import, quiet_keras_hub
from tlapp.base.untrusted import check_keras_file
from tlapp.deploy.export import ExportParts
from tlapp.deploy.samples import FILE as SAMPLES_FILE
from tlapp.deploy.samples import read_samples
from tlapp.model import image_model, text_model  # noqa: F401  register tlapp's custom layers

tf, keras = quiet_import()


def load_parts(export_dir: Path) -> ExportParts:
    """Rebuild the raw-input model (and for text, its token model and tokenizer) from ``model.keras``."""
    meta_file, keras_file = export_dir / "meta.json", export_dir / "model.keras"
    if not keras_file.is_file() or not meta_file.is_file():
        raise ExportError(
            f"{export_dir}: model.keras or meta.json is missing; re-run training with export.formats including keras"
        )
    meta = json.loads(meta_file.read_text())
    check_keras_file(keras_file)  # a run folder may come from elsewhere: check before Keras reads it
    kh = quiet_keras_hub()
    loaded = keras.saving.load_model(keras_file, compile=False, safe_mode=True)
    common = {"task": meta["task"], "classes": meta["classes"], "backbone": meta["backbone"]}
    if meta.get("input") != "text":
        return ExportParts(loaded, size=int(meta["image_size"]), **common)
    pre_dir = export_dir / "preprocessor"
    pre = kh.models.TextClassifierPreprocessor.from_preset(str(pre_dir))
    text = keras.Input(shape=(), dtype="string", name="text")
    model = keras.Model(text, loaded(pre(text)), name="tlapp_text")
    return ExportParts(
        model,
        size=int(meta["sequence_length"]),
        token_model=loaded,
        preprocessor=pre,
        backbone_config=json.loads((pre_dir / "config.json").read_text()),
        **common,
    )


def load_samples(export_dir: Path) -> Optional[np.ndarray]:
    """The parity inputs saved by the last export (images or texts), if any."""
    f = export_dir / SAMPLES_FILE
    if not f.is_file():
        return None
    data = read_samples(f)
    return data["texts"] if "texts" in data else data["images"]  # type: ignore[return-value]
