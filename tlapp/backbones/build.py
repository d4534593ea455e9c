"""One dispatch from a backbone section to a built network, image or text."""
from __future__ import annotations

from typing import Union

from tlapp.backbones.catalog import get_entry
from tlapp.backbones.image import BuiltBackbone, build_backbone
from tlapp.backbones.text import TextBackbone, build_text_backbone
from tlapp.config import Backbone


def build_any_backbone(cfg: Backbone) -> Union[BuiltBackbone, TextBackbone]:
    """Build the configured backbone, whatever its modality (``tlapp layers``, the GUI's Layers step)."""
    return build_text_backbone(cfg) if get_entry(cfg.name).modality == "text" else build_backbone(cfg)
