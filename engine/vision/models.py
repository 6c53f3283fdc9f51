"""The model the settings ask for: a backbone, with the trained head on top when one
is set. Kept apart from ``backbones`` so the head (which splits a backbone) and the
backbone registry don't import each other."""

from __future__ import annotations

from engine.config import EngineSettings
from engine.vision.backbones import LoadedBackbone, load_backbone
from engine.vision.head import with_head


def load_model(settings: EngineSettings) -> LoadedBackbone:
    """The backbone the settings name, with the trained head on top when one is set."""
    backbone = load_backbone(settings.backbone, settings.weights, settings.allow_weight_download)
    if settings.head is not None:
        backbone = with_head(backbone, settings.head)
    return backbone
