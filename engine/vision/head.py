"""The trained fashion head: the paper's "retrained last layer", made real.

A head is the backbone's last few blocks (fine-tuned on labelled fashion images)
plus a linear projection to a small vector (256 dimensions or fewer). It is saved
as one file that names the backbone weights it was trained on and is fingerprinted,
so an index built with one head is never searched with vectors from another, and
``fashionbot reindex`` re-embeds the catalogue when the head changes.

The split into a frozen *trunk* and a trainable *tail* lives here too: training
caches the trunk's feature maps once and then only runs the tail, which is what
makes fine-tuning fit in minutes on two CPU cores.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from engine.vision.backbones import BackboneUnavailable, HeadInfo, LoadedBackbone, file_fingerprint

HEAD_FORMAT = "fashionbot-head/1"
MAX_HEAD_DIM = 256


class HeadMismatch(BackboneUnavailable):
    """The head file was trained on another backbone (or its weights changed)."""


# ---- trunk / tail split --------------------------------------------------------------
class _LiteTrunk(nn.Module):
    """EfficientNet-Lite up to (not including) block ``cut``: image → feature map."""

    def __init__(self, net: Any, cut: int) -> None:
        super().__init__()
        self.stem = nn.Sequential(net._conv_stem, net._bn0, nn.ReLU6(inplace=True))
        self.blocks = nn.Sequential(*list(net._blocks)[:cut])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(self.stem(x))


class _LiteTail(nn.Module):
    """EfficientNet-Lite from block ``cut`` on: feature map → pooled 1280-d features."""

    def __init__(self, net: Any, cut: int) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*list(net._blocks)[cut:])
        self.head = nn.Sequential(net._conv_head, net._bn1, nn.ReLU6(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(x)).mean(dim=(2, 3))


class _ResNetTrunk(nn.Module):
    """ResNet-50 up to the last ``tail_blocks`` bottlenecks of ``layer4``."""

    def __init__(self, net: Any, cut: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, *list(net.layer4)[:cut]
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class _ResNetTail(nn.Module):
    def __init__(self, net: Any, cut: int) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*list(net.layer4)[cut:])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x).mean(dim=(2, 3))


def split_backbone(backbone: LoadedBackbone, tail_blocks: int) -> tuple[nn.Module, nn.Module]:
    """(trunk, tail) sharing the backbone's modules; ``tail(trunk(x))`` equals the
    backbone's pooled features. ``tail_blocks`` counts the residual blocks in the tail
    (EfficientNet-Lite: MBConv blocks before the 1280-d head conv; ResNet-50: layer4's
    bottlenecks)."""
    net: Any = backbone.model  # a torch module whose children we address by name
    if backbone.name.startswith("efficientnet-lite"):
        blocks = len(net._blocks)
        if not 0 <= tail_blocks < blocks:
            raise ValueError(f"tail_blocks must be in 0..{blocks - 1} for {backbone.name}")
        cut = blocks - tail_blocks
        return _LiteTrunk(net, cut).eval(), _LiteTail(net, cut).eval()
    if backbone.name == "resnet50":
        net = backbone.model.net
        if not 0 <= tail_blocks <= len(net.layer4):
            raise ValueError(f"tail_blocks must be in 0..{len(net.layer4)} for resnet50")
        cut = len(net.layer4) - tail_blocks
        return _ResNetTrunk(net, cut).eval(), _ResNetTail(net, cut).eval()
    raise ValueError(f"no trunk/tail split known for {backbone.name}")


# ---- the head ----------------------------------------------------------------------
class HeadedModel(nn.Module):
    """trunk → fine-tuned tail → projection: what the embedder runs once a head is on."""

    def __init__(self, trunk: nn.Module, tail: nn.Module, projection: nn.Linear) -> None:
        super().__init__()
        self.trunk, self.tail, self.projection = trunk, tail, projection

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection(self.tail(self.trunk(x)))


def save_head(
    path: Path,
    *,
    backbone: LoadedBackbone,
    tail: nn.Module,
    projection: nn.Linear,
    tail_blocks: int,
    trained_on: str,
    metrics: dict,
) -> str:
    """Write a head file atomically; returns its fingerprint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": HEAD_FORMAT,
        "backbone": backbone.name,
        "backbone_fingerprint": backbone.fingerprint,
        "input_size": backbone.input_size,
        "tail_blocks": tail_blocks,
        "dim": projection.out_features,
        "tail": {k: v.detach().cpu() for k, v in tail.state_dict().items()},
        "projection": {k: v.detach().cpu() for k, v in projection.state_dict().items()},
        "trained_on": trained_on,
        "metrics": metrics,
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return file_fingerprint(path)


def read_head(path: Path) -> dict:
    if not path.is_file():
        raise BackboneUnavailable(
            f"FASHIONBOT_HEAD points at {path}, which is not a file (run `fashionbot train-head`)."
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise BackboneUnavailable(f"{path} is not a fashionbot head file ({type(err).__name__}).") from None
    if not isinstance(payload, dict) or payload.get("format") != HEAD_FORMAT:
        raise BackboneUnavailable(f"{path} is not a fashionbot head file (format {HEAD_FORMAT} expected).")
    return payload


def with_head(backbone: LoadedBackbone, path: Path) -> LoadedBackbone:
    """The backbone with a trained head on top. Refuses a head trained on other weights."""
    payload = read_head(path)
    if (payload["backbone"], payload["backbone_fingerprint"]) != (backbone.name, backbone.fingerprint):
        raise HeadMismatch(
            f"The head {path} was trained on {payload['backbone']} (weights {payload['backbone_fingerprint']}) "
            f"but the engine runs {backbone.name} (weights {backbone.fingerprint}); "
            "set FASHIONBOT_BACKBONE to match, or train a head for this backbone."
        )
    base = copy.deepcopy(backbone.model)
    trunk, tail = split_backbone(replace(backbone, model=base), int(payload["tail_blocks"]))
    tail.load_state_dict(payload["tail"], strict=True)
    projection = nn.Linear(payload["projection"]["weight"].shape[1], int(payload["dim"]))
    projection.load_state_dict(payload["projection"], strict=True)
    fingerprint = file_fingerprint(path)
    info = HeadInfo(
        path=str(path),
        fingerprint=fingerprint,
        backbone=payload["backbone"],
        backbone_fingerprint=payload["backbone_fingerprint"],
        dim=int(payload["dim"]),
        tail_blocks=int(payload["tail_blocks"]),
        input_size=int(payload["input_size"]),
        trained_on=str(payload.get("trained_on", "")),
        metrics=dict(payload.get("metrics", {})),
    )
    return replace(
        backbone,
        model=HeadedModel(trunk, tail, projection).eval(),
        dim=info.dim,
        input_size=info.input_size,
        head=info,
    )
