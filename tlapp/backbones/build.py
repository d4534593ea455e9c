"""One dispatch from a backbone section to a built network, image or text."""

from __future__ import annotations

from typing import Any, Union

from tlapp.backbones.catalog import get_entry
from tlapp.backbones.image import BuiltBackbone, build_backbone
from tlapp.backbones.text import TextBackbone, build_text_backbone
from tlapp.config import Backbone


def build_any_backbone(cfg: Backbone) -> Union[BuiltBackbone, TextBackbone, Any]:
    """Build the configured backbone, whatever its modality (``tlapp layers``, the GUI's Layers step).

    A language model comes back as a :class:`~tlapp.backbones.causal_lm.LanguageModel` (``.model`` is
    its keras-hub backbone); with ``weights: none`` only its structure is built, from the config."""
    modality = get_entry(cfg.name).modality
    if modality == "lm":
        from tlapp.backbones.causal_lm import build_language_model

        return build_language_model(cfg)
    return build_text_backbone(cfg) if modality == "text" else build_backbone(cfg)
