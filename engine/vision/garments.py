"""The garment finder: where the garments are in a photo, what group each belongs to,
and when there is no garment at all (issue 15).

One forward pass of EfficientNet-Lite0 (the ImageNet weights the project ships) at a
modest size gives two maps that are read together:

- the **garment head** (``garment_head.pt``, trained by ``engine/training/garment_head.py``
  on synthetic composites of Fashion-MNIST garments cut out and pasted on backgrounds):
  per cell of the stride-16 grid, background-or-which-garment, and the distances from the
  cell to its garment's box edges;
- the **class-activation map** of Lite0's own ImageNet classifier over its clothing
  classes (jersey, suit, trench coat, jean, sandal, purse, …): per cell, the softmax
  mass of clothing classes. It knows real clothes on real people, which the synthetic
  training never showed the head; without the head file it is all the finder has.

Before any of that, a **product-shot check** on the pixels: a plain border and one
compact object on it. A product shot is never refused: it gets one garment covering the
object, ``product_shot=True``.

Thread-safety: ``scan`` only reads the model (``torch.inference_mode``), so it may be
called from any one thread at a time; the service runs it on the embedder's worker
thread, which also keeps torch from oversubscribing the cores.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image
from torch import nn

if TYPE_CHECKING:
    from engine.vision.efficientnet_lite import EfficientNetLite

log = logging.getLogger(__name__)

GROUPS = ("top", "outerwear", "dress", "bottoms", "shoes", "bag", "other")
HEAD_PATH = Path(__file__).with_name("garment_head.pt")
HEAD_FORMAT = "fashionbot-garment-head/1"
SCAN_SIDE = 256  # long side of the picture the scan runs on (measured in bench/bench_garments.py)
CUT16 = 11  # Lite0 blocks [0, 11) end at stride 16 (112 channels)

# Fashion-MNIST's classes, in its order, with their groups and plain words.
FM_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
FM_GROUPS = ("top", "bottoms", "top", "dress", "outerwear", "shoes", "top", "shoes", "bag", "shoes")
FM_WORDS = ("T-shirt", "trousers", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot")

# Lite0's ImageNet clothing classes (index: word, group), checked against the ImageNet
# class list torchvision ships (ResNet50_Weights.IMAGENET1K_V2.meta["categories"]).
CAM_CLASSES: dict[int, tuple[str, str]] = {
    610: ("jersey", "top"),
    841: ("sweatshirt", "top"),
    474: ("cardigan", "top"),
    697: ("pajama", "top"),
    459: ("bra", "top"),
    445: ("bikini", "top"),
    638: ("swimsuit", "top"),
    639: ("swimsuit", "top"),
    834: ("suit", "outerwear"),
    869: ("trench coat", "outerwear"),
    568: ("fur coat", "outerwear"),
    617: ("lab coat", "outerwear"),
    652: ("uniform", "outerwear"),
    735: ("poncho", "outerwear"),
    501: ("cloak", "outerwear"),
    465: ("vest", "outerwear"),
    824: ("stole", "outerwear"),
    400: ("academic gown", "outerwear"),
    887: ("vestment", "outerwear"),
    578: ("gown", "dress"),
    614: ("kimono", "dress"),
    399: ("abaya", "dress"),
    601: ("hoopskirt", "dress"),
    689: ("overskirt", "dress"),
    775: ("sarong", "dress"),
    411: ("apron", "dress"),
    608: ("jeans", "bottoms"),
    655: ("miniskirt", "bottoms"),
    842: ("swimming trunks", "bottoms"),
    774: ("sandal", "shoes"),
    770: ("running shoe", "shoes"),
    514: ("cowboy boot", "shoes"),
    630: ("loafer", "shoes"),
    502: ("clog", "shoes"),
    806: ("sock", "shoes"),
    748: ("purse", "bag"),
    414: ("backpack", "bag"),
    636: ("mailbag", "bag"),
    893: ("wallet", "bag"),
    457: ("bow tie", "other"),
    906: ("tie", "other"),
    451: ("bolo tie", "other"),
    515: ("cowboy hat", "other"),
    808: ("sombrero", "other"),
    452: ("bonnet", "other"),
    658: ("mitten", "other"),
}

# Catalogue category words → group (Fashion-MNIST's ten, Merchant/Kaggle feed words).
CATEGORY_GROUPS: dict[str, str] = {
    **{c.lower(): g for c, g in zip(FM_CLASSES, FM_GROUPS)},
    **{w.lower(): g for w, g in zip(FM_WORDS, FM_GROUPS)},
    "t-shirt": "top",
    "tshirt": "top",
    "tee": "top",
    "top": "top",
    "tops": "top",
    "shirt": "top",
    "shirts": "top",
    "blouse": "top",
    "polo": "top",
    "tank top": "top",
    "camisole": "top",
    "sweater": "top",
    "jumper": "top",
    "pullover": "top",
    "sweatshirt": "top",
    "hoodie": "top",
    "cardigan": "top",
    "jersey": "top",
    "tunic": "top",
    "knitwear": "top",
    "vest top": "top",
    "crop top": "top",
    "bodysuit": "top",
    "tshirts": "top",
    "coat": "outerwear",
    "coats": "outerwear",
    "jacket": "outerwear",
    "jackets": "outerwear",
    "blazer": "outerwear",
    "parka": "outerwear",
    "anorak": "outerwear",
    "trench coat": "outerwear",
    "raincoat": "outerwear",
    "gilet": "outerwear",
    "waistcoat": "outerwear",
    "suit": "outerwear",
    "suits": "outerwear",
    "outerwear": "outerwear",
    "poncho": "outerwear",
    "windbreaker": "outerwear",
    "puffer": "outerwear",
    "dress": "dress",
    "dresses": "dress",
    "gown": "dress",
    "jumpsuit": "dress",
    "playsuit": "dress",
    "romper": "dress",
    "kimono": "dress",
    "sundress": "dress",
    "saree": "dress",
    "sari": "dress",
    "kurta": "dress",
    "kurtas": "dress",
    "abaya": "dress",
    "trouser": "bottoms",
    "trousers": "bottoms",
    "pants": "bottoms",
    "jeans": "bottoms",
    "jean": "bottoms",
    "chinos": "bottoms",
    "leggings": "bottoms",
    "shorts": "bottoms",
    "skirt": "bottoms",
    "skirts": "bottoms",
    "joggers": "bottoms",
    "track pants": "bottoms",
    "capris": "bottoms",
    "bottoms": "bottoms",
    "miniskirt": "bottoms",
    "culottes": "bottoms",
    "shoe": "shoes",
    "shoes": "shoes",
    "sandal": "shoes",
    "sandals": "shoes",
    "sneaker": "shoes",
    "sneakers": "shoes",
    "trainers": "shoes",
    "trainer": "shoes",
    "boot": "shoes",
    "boots": "shoes",
    "ankle boot": "shoes",
    "ankle boots": "shoes",
    "heels": "shoes",
    "pumps": "shoes",
    "loafers": "shoes",
    "loafer": "shoes",
    "flats": "shoes",
    "flip flops": "shoes",
    "slippers": "shoes",
    "casual shoes": "shoes",
    "sports shoes": "shoes",
    "formal shoes": "shoes",
    "footwear": "shoes",
    "clogs": "shoes",
    "mules": "shoes",
    "bag": "bag",
    "bags": "bag",
    "handbag": "bag",
    "handbags": "bag",
    "backpack": "bag",
    "backpacks": "bag",
    "purse": "bag",
    "clutch": "bag",
    "tote": "bag",
    "tote bag": "bag",
    "satchel": "bag",
    "wallet": "bag",
    "wallets": "bag",
    "shoulder bag": "bag",
    "crossbody": "bag",
    "duffel": "bag",
    "messenger bag": "bag",
    "hat": "other",
    "cap": "other",
    "scarf": "other",
    "belt": "other",
    "tie": "other",
    "socks": "other",
    "gloves": "other",
    "sunglasses": "other",
    "watch": "other",
    "watches": "other",
    "jewellery": "other",
    "jewelry": "other",
    "accessories": "other",
}


def group_of_category(text: str | None) -> str | None:
    """The garment group of a catalogue category (``"Ankle boot"``, ``"Apparel > Jackets"``,
    ``"women's skinny jeans"``), or None when no word of it is known."""
    if not text:
        return None
    low = text.strip().lower()
    if low in CATEGORY_GROUPS:
        return CATEGORY_GROUPS[low]
    # Taxonomy paths ("Clothing > Outerwear > Coats"): the most specific known part wins.
    for part in reversed(re.split(r"\s*[>/|,]\s*", low)):
        if part in CATEGORY_GROUPS:
            return CATEGORY_GROUPS[part]
        words = re.findall(r"[a-z][a-z-]*", part)
        for n in (2, 1):  # "ankle boots" before "boots"; the last words name the thing
            for i in range(len(words) - n, -1, -1):
                phrase = " ".join(words[i : i + n])
                if phrase in CATEGORY_GROUPS:
                    return CATEGORY_GROUPS[phrase]
    return None


# Groups a per-garment search also accepts: a pullover the finder takes for a coat (the commonest
# confusion, Fashion-MNIST's own) still finds pullovers. Measured in bench/bench_garments.py.
RELATED_GROUPS: dict[str, tuple[str, ...]] = {"top": ("top", "outerwear"), "outerwear": ("outerwear", "top")}


def search_groups(group: str) -> tuple[str, ...]:
    """The catalogue groups a search for a garment of ``group`` should be restricted to."""
    return RELATED_GROUPS.get(group, (group,))


# ---- results --------------------------------------------------------------------------------
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
    garments: tuple[FoundGarment, ...]  # best first; empty: "no clothing here"
    clothing_score: float  # 0..1: how much clothing the finder sees anywhere in the photo
    product_shot: bool  # a plain product shot (never refused)
    heat: np.ndarray | None = field(default=None, compare=False, repr=False)  # garment map (stride 16), for cutout


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


# ---- helpers shared with training ---------------------------------------------------------
def find_attr(name: str, modules: tuple[str, ...]):
    """``name`` from the first of ``modules`` that has it (rooms move; callers don't care)."""
    for mod in modules:
        try:
            found = getattr(importlib.import_module(mod), name, None)
        except ImportError:
            continue
        if found is not None:
            return found
    raise ImportError(f"{name} not found in any of {modules}")


def load_lite0() -> EfficientNetLite:
    loader = find_attr(
        "load_efficientnet_lite", ("engine.vision.backbones", "engine.vision.models", "engine.backbones")
    )
    return loader("efficientnet-lite0").model


def scan_tensor(img: Image.Image, side: int = SCAN_SIDE) -> torch.Tensor:
    """The photo resized so its long side is ``side`` (both sides multiples of 32, aspect
    kept within rounding), scaled like Lite0's training (mean = std = 0.5): (1, 3, H, W)."""
    w, h = img.size
    s = side / max(w, h)
    tw, th = max(64, round(w * s / 32) * 32), max(64, round(h * s / 32) * 32)
    resample = Image.Resampling.BILINEAR if max(w, h) > side else Image.Resampling.BICUBIC
    arr = np.asarray(img.convert("RGB").resize((tw, th), resample, reducing_gap=2.0), dtype=np.float32)
    return torch.from_numpy(arr / 127.5 - 1.0).permute(2, 0, 1).unsqueeze(0).contiguous()


def trunk_maps(model: Any, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Lite0's stride-16 map (112 channels) and its final 1280-channel stride-32 map.

    ``model`` is Any: Lite0's submodules (``_conv_stem``, ``_blocks``, ...) are attributes
    that ``nn.Module.__getattr__`` resolves at run time, which a type checker can't see."""
    z = model.act(model._bn0(model._conv_stem(x)))
    for i, block in enumerate(model._blocks):
        z = block(z)
        if i == CUT16 - 1:
            f16 = z
    f32 = model.act(model._bn1(model._conv_head(z)))
    return f16, f32


class GarmentHead(nn.Module):
    """A small head on the frozen trunk: stride-16 cells → background / 10 garment classes,
    and the distances (in cells) from each cell to its garment's box edges."""

    def __init__(self, c16: int = 112, c32: int = 1280, mid: int = 64, classes: int = 10) -> None:
        super().__init__()
        self.reduce16 = nn.Sequential(nn.Conv2d(c16, 32, 1), nn.ReLU(inplace=True))
        self.reduce32 = nn.Sequential(nn.Conv2d(c32, 48, 1), nn.ReLU(inplace=True))
        self.body = nn.Sequential(
            nn.Conv2d(80, mid, 3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid, mid, 3, padding=2, dilation=2),
            nn.ReLU(inplace=True),
        )
        self.cls = nn.Conv2d(mid, 1 + classes, 1)
        self.box = nn.Conv2d(mid, 4, 1)
        self.classes = classes

    def forward(self, f16: torch.Tensor, f32: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        up = nn.functional.interpolate(self.reduce32(f32), size=f16.shape[-2:], mode="bilinear", align_corners=False)
        z = self.body(torch.cat([self.reduce16(f16), up], dim=1))
        return self.cls(z), nn.functional.softplus(self.box(z))


def save_head(head: GarmentHead, path: Path, meta: dict) -> str:
    """Save as fp16 with its metadata; returns the fingerprint (sha256 of the weights)."""
    state = {k: v.detach().half() for k, v in head.state_dict().items()}
    buf = io.BytesIO()
    torch.save(state, buf)
    fingerprint = hashlib.sha256(buf.getvalue()).hexdigest()[:16]
    torch.save({"format": HEAD_FORMAT, "state": state, "meta": meta, "fingerprint": fingerprint}, path)
    return fingerprint


def load_head(path: Path) -> tuple[GarmentHead, dict, str]:
    blob = torch.load(path, map_location="cpu", weights_only=True)
    if blob.get("format") != HEAD_FORMAT:
        raise ValueError(f"{path} is not a garment head ({blob.get('format')!r})")
    buf = io.BytesIO()
    torch.save(blob["state"], buf)
    fingerprint = hashlib.sha256(buf.getvalue()).hexdigest()[:16]
    if fingerprint != blob["fingerprint"]:
        raise ValueError(f"{path}: fingerprint mismatch (damaged file)")
    head = GarmentHead(**blob["meta"].get("arch", {}))
    head.load_state_dict({k: v.float() for k, v in blob["state"].items()})
    return head.eval(), blob["meta"], fingerprint


# ---- product shots --------------------------------------------------------------------------
@dataclass(frozen=True)
class ProductCheck:
    is_product: bool
    box: Box | None
    reason: str


PRODUCT_SIDE = 96  # the check runs on a small copy of the picture
BORDER_PLAIN = 0.6  # share of border pixels that must match the background colour
INSIDE_PLAIN = 0.9  # share of non-object pixels that must be smooth background
MAIN_SHARE = 0.7  # share of object pixels in the largest connected part
MIN_OBJECT, MAX_OBJECT = 0.03, 0.95  # object area as a share of the picture
MIN_BOX_SIDE = 0.25  # the object's box spans at least this share of the picture's width or height


def product_check(img: Image.Image) -> ProductCheck:
    """A plain product shot: the border is (mostly) one colour, the rest of the background is
    smooth, and one compact object stands on it. Text screenshots fail on "one object"
    (many letters); photos and textures fail on "plain"."""
    from scipy import ndimage

    small = img.convert("RGB").copy()
    small.thumbnail((PRODUCT_SIDE, PRODUCT_SIDE), Image.Resampling.BILINEAR)
    if small.width < 8 or small.height < 8:
        return ProductCheck(False, None, "too small")
    a = np.asarray(small, dtype=np.float32)
    h, w, _ = a.shape
    if min(h, w) >= 64:  # JPEG noise; a 28-px catalogue picture is left sharp
        a = ndimage.uniform_filter(a, size=(3, 3, 1), mode="nearest")
    r = 1 if min(h, w) < 64 else 2
    ring = np.concatenate(
        [a[:r].reshape(-1, 3), a[-r:].reshape(-1, 3), a[:, :r].reshape(-1, 3), a[:, -r:].reshape(-1, 3)]
    )
    bg = np.median(ring, axis=0)
    dist = np.sqrt(((a - bg) ** 2).sum(axis=2))
    ring_d = np.sqrt(((ring - bg) ** 2).sum(axis=1))
    if float((ring_d < 20).mean()) < BORDER_PLAIN:
        return ProductCheck(False, None, "border not plain")
    obj = dist > (36 if r == 2 else 16)  # small pictures are not JPEG-noisy: faint material counts
    obj = ndimage.binary_opening(obj, iterations=1) if obj.sum() > 50 else obj
    share = float(obj.mean())
    if not MIN_OBJECT <= share <= MAX_OBJECT:
        return ProductCheck(False, None, f"object covers {share:.0%}")
    rest = ~ndimage.binary_dilation(obj, iterations=2)
    if rest.any() and float((dist[rest] < 14).mean()) < INSIDE_PLAIN:
        return ProductCheck(False, None, "background not smooth")
    labels, n = ndimage.label(ndimage.binary_dilation(obj, iterations=2))  # sandal straps are one object
    sizes = np.bincount(labels.ravel())[1:]
    if not len(sizes) or sizes.max() / sizes.sum() < MAIN_SHARE:
        return ProductCheck(False, None, f"{n} separate parts")
    ys, xs = np.nonzero(obj)
    box = Box(xs.min() / w, ys.min() / h, (xs.max() + 1) / w, (ys.max() + 1) / h)
    if max(box.x1 - box.x0, box.y1 - box.y0) < MIN_BOX_SIDE:
        return ProductCheck(False, None, "object too small for a product shot")
    return ProductCheck(True, box, "plain background, one object")


# ---- the finder ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Thresholds:
    """Calibrated in bench/bench_garments.py (figures in bench/results/garments.json)."""

    clothing: float = 0.83  # clothing_score below this: no garment (Youden's J, bench --calibrate)
    product: float = 0.2  # a plain product shot is kept from this (lower) clothing score on
    garment: float = 0.5  # once the photo has clothing, a garment needs this peak probability
    cell: float = 0.35  # a cell belongs to a garment above this garment probability
    cam_clothing: float = 0.35  # CAM: a cell's clothing-class softmax mass to count as clothing
    cam_weight: float = 1.0  # how much the CAM contributes to clothing_score next to the head
    max_garments: int = 4
    nms_iou: float = 0.45


class GarmentFinder:
    """Finds garments in a photo. Loads Lite0 itself when not given one; loaded once."""

    def __init__(
        self,
        model: nn.Module | None = None,
        head_path: Path | None = HEAD_PATH,
        *,
        side: int = SCAN_SIDE,
        thresholds: Thresholds | None = None,
        use_cam: bool = True,
        use_head: bool = True,
    ) -> None:
        self.model: Any = (model if model is not None else load_lite0()).eval()  # see trunk_maps
        self.side = side
        self.head: GarmentHead | None = None
        self.head_fingerprint = ""
        self.head_meta: dict = {}
        if use_head and head_path is not None and Path(head_path).is_file():
            self.head, self.head_meta, self.head_fingerprint = load_head(Path(head_path))
            calibrated = self.head_meta.get("thresholds")
            if thresholds is None and calibrated:
                thresholds = Thresholds(**calibrated)
        elif use_head and head_path is not None:
            log.warning("garment head %s not found: the finder runs on class-activation maps only", head_path)
        self.use_cam = use_cam or self.head is None
        if thresholds is None:
            thresholds = Thresholds() if self.head is not None else CAM_ONLY_THRESHOLDS
        self.thresholds = thresholds
        self._cam_idx = torch.tensor(sorted(CAM_CLASSES))
        self._cam_groups = np.array([GROUPS.index(CAM_CLASSES[i][1]) for i in sorted(CAM_CLASSES)])
        self._cam_words = [CAM_CLASSES[i][0] for i in sorted(CAM_CLASSES)]

    @classmethod
    def for_backbone(cls, backbone, head_path: Path | None = HEAD_PATH, **kw) -> GarmentFinder:
        """Share the serving backbone's Lite0 when it is the plain ImageNet Lite0; otherwise
        (ResNet-50, another Lite, a fine-tuned head) load Lite0 for the finder (+~19 MB)."""
        from engine.vision.efficientnet_lite import EfficientNetLite

        model = (
            backbone.model
            if (
                getattr(backbone, "name", "") == "efficientnet-lite0"
                and getattr(backbone, "head", None) is None
                and isinstance(backbone.model, EfficientNetLite)
            )
            else None
        )
        return cls(model, head_path, **kw)

    @property
    def mode(self) -> str:
        return ("head+cam" if self.use_cam else "head") if self.head is not None else "cam"

    # ---- the maps ----
    @torch.inference_mode()
    def maps(self, img: Image.Image) -> dict:
        """The per-cell maps of one photo (stride 16): ``garment`` probability, ``group``
        probabilities (7), ``boxes`` (cells, 4: x0 y0 x1 y1 relative), ``cam`` clothing mass
        and the best CAM class per cell. For the finder and for looking at."""
        x = scan_tensor(img, self.side)
        f16, f32 = trunk_maps(self.model, x)
        gh, gw = f16.shape[-2:]
        out: dict = {"shape": (gh, gw)}
        if self.head is not None:
            logits, dist = self.head(f16, f32)
            p = torch.softmax(logits[0], dim=0).numpy()  # (11, gh, gw)
            garment = 1.0 - p[0]
            groups = np.zeros((len(GROUPS), gh, gw), np.float32)
            for c, g in enumerate(FM_GROUPS):
                groups[GROUPS.index(g)] += p[1 + c]
            cy, cx = (np.arange(gh)[:, None] + 0.5), (np.arange(gw)[None, :] + 0.5)
            d = dist[0].numpy()
            boxes = np.stack([(cx - d[0]) / gw, (cy - d[1]) / gh, (cx + d[2]) / gw, (cy + d[3]) / gh], axis=-1)
            out.update(garment=garment, groups=groups, classes=p[1:], boxes=np.clip(boxes, 0, 1))
        if self.use_cam:
            logits = torch.einsum("kc,nchw->nkhw", self.model._fc.weight, f32) + self.model._fc.bias.view(1, -1, 1, 1)
            logits = nn.functional.interpolate(logits, size=(gh, gw), mode="bilinear", align_corners=False)
            prob = torch.softmax(logits[0], dim=0)[self._cam_idx].numpy()  # (classes, gh, gw)
            out["cam"] = prob.sum(axis=0)
            out["cam_class"] = prob.argmax(axis=0)
            out["cam_groups"] = np.stack([prob[self._cam_groups == g].sum(axis=0) for g in range(len(GROUPS))])
        return out

    def scan(self, img: Image.Image) -> GarmentScan:
        """The garments in ``img`` (RGB, already decoded and downscaled), best first."""
        img = img.convert("RGB") if img.mode != "RGB" else img
        return self.decide(product_check(img), self.maps(img))

    def decide(self, check: ProductCheck, m: dict) -> GarmentScan:
        """The scan's verdict from the product check and the maps (which a finder with the
        head and the CAM computes for every variant: the benchmark reads them once)."""
        t = self.thresholds
        found: list[FoundGarment] = []
        score = 0.0
        if self.head is not None:
            found += self._from_head(m)
            score = float(_peak(m["garment"]))
        if self.use_cam:
            cam_found = self._from_cam(m)
            found += [g for g in cam_found if all(g.box.iou(f.box) < 0.3 for f in found)]
            score = max(score, min(1.0, t.cam_weight * float(_peak(m["cam"])) / max(1e-6, 2 * t.cam_clothing)))
        found = _nms(sorted(found, key=lambda g: -g.confidence), t.nms_iou)[: t.max_garments]
        heat = m.get("garment")
        # A product shot: one object on a plain background that the maps agree is clothing (a
        # scene on a plain wall with two small garments is not one: its garments don't cover it).
        box = check.box
        if (
            check.is_product
            and box is not None
            and score >= t.product
            and (not found or max(g.box.iou(box) for g in found) >= 0.3)
        ):
            return GarmentScan((self._product_garment(box, m, found),), round(score, 4), True, heat)
        if score < t.clothing or not found:
            return GarmentScan((), round(score, 4), False)
        return GarmentScan(tuple(found), round(score, 4), False, heat)

    def _product_garment(self, box: Box, m: dict, found: list[FoundGarment]) -> FoundGarment:
        """One garment covering the object: its group read from the maps inside the box."""
        gh, gw = m["shape"]
        ys = slice(int(box.y0 * gh), max(int(box.y0 * gh) + 1, int(np.ceil(box.y1 * gh))))
        xs = slice(int(box.x0 * gw), max(int(box.x0 * gw) + 1, int(np.ceil(box.x1 * gw))))
        if self.head is not None:
            classes = m["classes"][:, ys, xs].sum(axis=(1, 2))
            groups = np.zeros(len(GROUPS))
            for c, name in enumerate(FM_GROUPS):
                groups[GROUPS.index(name)] += classes[c]
            g = int(groups.argmax())
            best = max((c for c in range(len(FM_GROUPS)) if GROUPS.index(FM_GROUPS[c]) == g), key=lambda c: classes[c])
            conf = float(groups[g] / max(1e-6, groups.sum()))
            return FoundGarment(box, GROUPS[g], FM_WORDS[best], round(conf, 4))
        if found:
            return FoundGarment(box, found[0].group, found[0].label, found[0].confidence)
        cam = m["cam_groups"][:, ys, xs].sum(axis=(1, 2))
        top = int(cam.argmax())
        return FoundGarment(box, GROUPS[top] if cam[top] > 0 else "other", "item", round(float(_peak(m["cam"])), 4))

    def _from_head(self, m: dict) -> list[FoundGarment]:
        from scipy import ndimage

        t = self.thresholds
        garment, groups, boxes = m["garment"], m["groups"], m["boxes"]
        on = garment >= t.cell
        group_of = groups.argmax(axis=0)
        out = []
        for g in range(len(GROUPS)):
            labels, n = ndimage.label(on & (group_of == g), structure=np.ones((3, 3)))
            for k in range(1, n + 1):
                cells = labels == k
                weight = garment[cells] * groups[g][cells]
                peak = float(garment[cells].max())
                if peak < t.garment:
                    continue
                b = np.array([_weighted_median(boxes[cells][:, j], weight) for j in range(4)])
                if b[2] - b[0] < 0.02 or b[3] - b[1] < 0.02:
                    continue
                cls = m["classes"][:, cells].sum(axis=1)
                members = [c for c in range(len(FM_GROUPS)) if FM_GROUPS[c] == GROUPS[g]]
                word = FM_WORDS[max(members, key=lambda c: cls[c])]
                share = float(groups[g][cells].sum() / max(1e-6, garment[cells].sum()))
                out.append(FoundGarment(Box(*map(float, b)), GROUPS[g], word, round(peak * min(1.0, share), 4)))
        return out

    def _from_cam(self, m: dict) -> list[FoundGarment]:
        from scipy import ndimage

        t = self.thresholds
        cam = m["cam"]
        gh, gw = m["shape"]
        on = cam >= t.cam_clothing
        labels, n = ndimage.label(on, structure=np.ones((3, 3)))
        out = []
        for k in range(1, n + 1):
            cells = labels == k
            peak = float(cam[cells].max())
            # The region: the component's cells at half its peak or more.
            region = cells & (cam >= 0.5 * peak)
            ys, xs = np.nonzero(region)
            box = Box(xs.min() / gw, ys.min() / gh, (xs.max() + 1) / gw, (ys.max() + 1) / gh)
            gsum = m["cam_groups"][:, cells].sum(axis=1)
            g = int(gsum.argmax())
            classes = np.bincount(m["cam_class"][cells], weights=cam[cells], minlength=len(self._cam_words))
            word = self._cam_words[int(classes.argmax())]
            conf = min(1.0, peak / max(1e-6, 2 * t.cam_clothing))
            out.append(FoundGarment(box, GROUPS[g], word, round(conf * float(gsum[g] / gsum.sum()), 4)))
        return out


CAM_ONLY_THRESHOLDS = Thresholds(clothing=0.5, cam_clothing=0.25)  # without the head (bench: the "cam" rows)


def _peak(a: np.ndarray) -> float:
    """The largest 2×2 mean: one stray cell is not a garment."""
    if a.shape[0] < 2 or a.shape[1] < 2:
        return float(a.max())
    pooled = (a[:-1, :-1] + a[1:, :-1] + a[:-1, 1:] + a[1:, 1:]) / 4
    return float(pooled.max())


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values)
    cum = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cum, cum[-1] / 2)])


def _nms(garments: list[FoundGarment], iou: float) -> list[FoundGarment]:
    kept: list[FoundGarment] = []
    for g in garments:
        if all(g.box.iou(k.box) < iou for k in kept):
            kept.append(g)
    return kept
