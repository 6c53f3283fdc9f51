"""What the garment finder returns (boxes relative to the photo, garments, a scan) and how a
garment is cut out of its photo for embedding."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Box:
    """Relative to the photo (0..1, origin top left)."""

    x0: float
    y0: float
    x1: float
    y1: float

    @property
    def area(self) -> float:
        return max(0.0, self.x1 - self.x0) * max(0.0, self.y1 - self.y0)

    def iou(self, other: Box) -> float:
        ix = max(0.0, min(self.x1, other.x1) - max(self.x0, other.x0))
        iy = max(0.0, min(self.y1, other.y1) - max(self.y0, other.y0))
        inter = ix * iy
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.x0, self.y0, self.x1, self.y1)


@dataclass(frozen=True)
class FoundGarment:
    box: Box
    group: str  # one of GROUPS
    label: str  # a plain word: "coat", "sneaker", "suit"
    confidence: float  # 0..1


@dataclass(frozen=True)
class GarmentScan:
    garments: tuple[FoundGarment, ...]  # the most prominent first (garments.shown_order); empty: none
    clothing_score: float  # 0..1: how much clothing the finder sees anywhere in the photo
    product_shot: bool  # a plain product shot (never refused)
    heat: np.ndarray | None = field(default=None, compare=False, repr=False)  # garment map (stride 16), for cutout


# The margin a found garment is cut with for its search: the close look's boxes are tight, and a
# little of what surrounds a garment helps it meet the catalogue's shots (which have room around
# the item). Measured on the scene sets (bench/bench_garments.py, 3 December): margins 0, 0.08,
# 0.16, 0.25, 0.35 of the box; 0.16 best in scenes and outfits.
GARMENT_MARGIN = 0.16


def _crop_rect(size: tuple[int, int], box: Box, margin: float) -> tuple[int, int, int, int]:
    w, h = size
    bw, bh = (box.x1 - box.x0) * w, (box.y1 - box.y0) * h
    x0 = int(np.clip(np.floor(box.x0 * w - margin * bw), 0, w - 1))
    y0 = int(np.clip(np.floor(box.y0 * h - margin * bh), 0, h - 1))
    x1 = int(np.clip(np.ceil(box.x1 * w + margin * bw), x0 + 1, w))
    y1 = int(np.clip(np.ceil(box.y1 * h + margin * bh), y0 + 1, h))
    return x0, y0, x1, y1


def crop(img: Image.Image, box: Box, margin: float = 0.08) -> Image.Image:
    """The garment's region with ``margin`` (share of the box's size) around it, clamped to
    the picture; never empty."""
    return img.crop(_crop_rect(img.size, box, margin))


def cutout(
    img: Image.Image, box: Box, heat: np.ndarray | None, margin: float = 0.08, threshold: float = 0.35
) -> Image.Image:
    """Like :func:`crop`, with the background whitened where the scan's garment map
    (``GarmentScan.heat``, stride 16, upsampled) says there is no garment: the crop then
    looks more like a catalogue shot on white. Falls back to the plain crop without a map."""
    rect = _crop_rect(img.size, box, margin)
    piece = img.crop(rect).convert("RGB")
    if heat is None:
        return piece
    full = Image.fromarray(heat.astype(np.float32), mode="F").resize(img.size, Image.Resampling.BILINEAR)
    a = np.asarray(full.crop(rect), dtype=np.float32)
    alpha = np.clip((a - threshold) / 0.3 + 0.5, 0, 1)[..., None]
    out = np.asarray(piece, dtype=np.float32) * alpha + 255.0 * (1 - alpha)
    return Image.fromarray(out.astype(np.uint8))
