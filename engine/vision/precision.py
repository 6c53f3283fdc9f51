"""Mixed precision by stage: fp32 where bf16 would change the answer, bf16 where it's free.

bf16 keeps 8 bits of mantissa. Measured on EfficientNet-Lite0's real weights over
Fashion-MNIST pictures, almost all of the bf16-vs-fp32 disagreement comes from the
stem and first blocks, which see raw pixels at full resolution: the whole network in
bf16 gives a minimum cosine of 0.9966, the stem alone in bf16 0.9985, while bf16 from
block 8 on gives 0.99987. So the model is cut into stages, the first ones run in
fp32 and the rest in bf16 (weights cast once, activations cast once at the cut), and
pooling plus any projection always run in fp32.

Where the cut goes is measured, not assumed: at start-up the embedder tries cuts from
"all bf16" towards "all fp32" on calibration pictures and keeps the first one whose
features agree with fp32 (minimum cosine >= the gate), or stays fp32.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)


class GlobalPool(nn.Module):
    """Global average pooling, in fp32 whatever comes in."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.float().mean(dim=(2, 3))


def _lite_stages(net: Any) -> list[nn.Module]:
    return [
        nn.Sequential(net._conv_stem, net._bn0, nn.ReLU6(inplace=True)),
        *net._blocks,
        nn.Sequential(net._conv_head, net._bn1, nn.ReLU6(inplace=True)),
    ]


def model_stages(model: nn.Module) -> tuple[list[nn.Module], list[nn.Module]] | None:
    """(stages that may run in bf16, the fp32 end: pooling and projection), sharing the
    model's modules, such that running them in order equals ``model``; None when the
    model's layout is unknown (it then runs in one precision)."""
    from engine.vision.backbones import _Pooled
    from engine.vision.efficientnet_lite import EfficientNetLite
    from engine.vision.head import HeadedModel, _LiteTail, _LiteTrunk, _ResNetTail, _ResNetTrunk

    if isinstance(model, EfficientNetLite):
        return _lite_stages(model), [GlobalPool()]
    if isinstance(model, _Pooled):
        n: Any = model.net
        return [nn.Sequential(n.conv1, n.bn1, n.relu, n.maxpool), *n.layer1, *n.layer2, *n.layer3, *n.layer4], [
            GlobalPool()
        ]
    if isinstance(model, _LiteTrunk):  # head training caches the trunk's maps
        return [model.stem, *model.blocks], []
    if isinstance(model, HeadedModel):
        body: list[nn.Module] = []
        trunk, tail = model.trunk, model.tail
        if isinstance(trunk, _LiteTrunk) and isinstance(tail, _LiteTail):
            body = [trunk.stem, *trunk.blocks, *tail.blocks, tail.head]
        elif isinstance(trunk, _ResNetTrunk) and isinstance(tail, _ResNetTail):
            first = list(trunk.body)
            stem, layers = nn.Sequential(*first[:4]), first[4:]
            body = [stem]
            for layer in layers:
                body.extend(layer if isinstance(layer, nn.Sequential) else [layer])
            body.extend(tail.blocks)
        else:
            return None
        return body, [GlobalPool(), model.projection]
    return None


class StagedModel(nn.Module):
    """Stages ``[0, bf16_from)`` in fp32, the rest of the body in bf16, then the fp32 end."""

    def __init__(self, fp32_stages: list[nn.Module], bf16_stages: list[nn.Module], end: list[nn.Module]) -> None:
        super().__init__()
        self.fp32 = nn.Sequential(*fp32_stages)
        self.bf16 = nn.Sequential(*bf16_stages)
        self.end = nn.Sequential(*end)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.fp32(x)
        if len(self.bf16):
            x = self.bf16(x.to(torch.bfloat16))
        return self.end(x).float()


class PrecisionPlans:
    """Builds the fp32 model once and any mixed variant from it; the folded fp32 stages
    are shared, only the bf16 part is a copy."""

    def __init__(self, model: nn.Module, fold) -> None:
        split = model_stages(model)
        if split is None:
            self.body: list[nn.Module] = [fold(model)]
            self.end: list[nn.Module] = []
        else:
            body, end = split
            self.body = [fold(s) for s in body]
            self.end = end
        self.body = [s.to(memory_format=torch.channels_last) for s in self.body]

    @property
    def stages(self) -> int:
        return len(self.body)

    def model(self, bf16_from: int | None) -> StagedModel:
        """``None``: all fp32. ``k``: stages k.. in bf16."""
        k = self.stages if bf16_from is None else bf16_from
        bf16 = [copy.deepcopy(s).to(torch.bfloat16) for s in self.body[k:]]
        return StagedModel(self.body[:k], bf16, self.end).eval()

    def candidates(self) -> list[int]:
        """Cuts to try, most bf16 first; none past 3/4 of the body (too little left to gain)."""
        n = self.stages
        return sorted({0, *(round(n * f) for f in (0.125, 0.25, 0.375, 0.5, 0.625, 0.75))})


def describe(bf16_from: int | None, stages: int) -> str:
    if bf16_from is None:
        return "fp32"
    if bf16_from == 0:
        return "bf16"
    return f"fp32+bf16 (bf16 from stage {bf16_from} of {stages})"
