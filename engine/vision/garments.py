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
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image
from torch import nn

from engine.vision.garment_boxes import Box, FoundGarment, GarmentScan
from engine.vision.garment_vocabulary import (
    CAM_CLASSES,
    FM_GROUPS,
    FM_WORDS,
    GROUPS,
)
from engine.vision.product_shot import ProductCheck, product_check

if TYPE_CHECKING:
    from engine.vision.efficientnet_lite import EfficientNetLite


log = logging.getLogger(__name__)

HEAD_PATH = Path(__file__).with_name("garment_head.pt")
HEAD_FORMAT = "fashionbot-garment-head/1"
SCAN_SIDE = 256  # long side of the picture the scan runs on (measured in bench/bench_garments.py)
CUT16 = 11  # Lite0 blocks [0, 11) end at stride 16 (112 channels)
# A second, close look at each garment (:meth:`GarmentFinder.refine`): a square around its box,
# REFINE_CONTEXT times the box's long side, scanned at REFINE_SIDE px. Measured on the outfit
# set (bench/bench_garments.py, 3 December): sides 128-224 and contexts 1.15-2.0 tried; 128 px
# at 1.3 boxes as well as 192 px at a third of the cost.
REFINE_SIDE = 128
REFINE_CONTEXT = 1.3
REFINE_MIN_IOU = 0.3  # the close look's garment must overlap the first box this much, else the first box stays


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


def scan_model(model: Any) -> Any:
    """A copy of Lite0 for the scan with each batch norm folded into its convolution and the
    weights channels-last: the same maps (max difference < 1e-4, decisions identical on the
    benchmark's scenes) about a quarter faster on 2 cores (bench/bench_served_garments.py).
    A copy, because the serving backbone may share this model (+~19 MB)."""
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    m = copy.deepcopy(model).eval()
    pairs = [(m, "_conv_stem", "_bn0"), (m, "_conv_head", "_bn1")]
    for block in m._blocks:
        if hasattr(block, "_expand_conv"):
            pairs.append((block, "_expand_conv", "_bn0"))
        pairs += [(block, "_depthwise_conv", "_bn1"), (block, "_project_conv", "_bn2")]
    for owner, conv, bn in pairs:
        if isinstance(getattr(owner, bn, None), nn.BatchNorm2d):
            setattr(owner, conv, fuse_conv_bn_eval(getattr(owner, conv), getattr(owner, bn)))
            setattr(owner, bn, nn.Identity())
    return m.to(memory_format=torch.channels_last)


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
        self.model: Any = scan_model(model if model is not None else load_lite0())  # see trunk_maps
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
        # The forward pass on another runtime (engine/vision/scan_runtime.accelerate), or None: torch.
        self.runtime: Callable[[torch.Tensor], tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None

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
    def maps(self, img: Image.Image) -> dict:
        """The per-cell maps of one photo (stride 16): ``garment`` probability, ``group``
        probabilities (7), ``boxes`` (cells, 4: x0 y0 x1 y1 relative), ``cam`` clothing mass
        and the best CAM class per cell. For the finder and for looking at."""
        return self.maps_batch([scan_tensor(img.convert("RGB") if img.mode != "RGB" else img, self.side)])[0]

    def maps_batch(self, inputs: list[torch.Tensor]) -> list[dict]:
        """:meth:`maps` for several scan inputs of one shape (from :func:`scan_tensor`) in
        one forward pass: a burst of photos costs a batch, not a pass each. Runs on the
        model's thread (on OpenVINO when ``runtime`` is set: engine/vision/scan_runtime.py)."""
        x = torch.cat(inputs) if len(inputs) > 1 else inputs[0]
        classes: np.ndarray | None
        dists: np.ndarray | None
        cams: np.ndarray | None
        if self.runtime is not None:
            classes, dists, cams = self.runtime(x)
            gh, gw = classes.shape[-2:]
        else:
            classes, dists, cams, (gh, gw) = self._network(x)
        outs: list[dict] = [{"shape": (gh, gw)} for _ in inputs]
        if self.head is not None and classes is not None and dists is not None:
            cy, cx = (np.arange(gh)[:, None] + 0.5), (np.arange(gw)[None, :] + 0.5)
            for out, p, d in zip(outs, classes, dists):
                groups = np.zeros((len(GROUPS), gh, gw), np.float32)
                for c, g in enumerate(FM_GROUPS):
                    groups[GROUPS.index(g)] += p[1 + c]
                boxes = np.stack([(cx - d[0]) / gw, (cy - d[1]) / gh, (cx + d[2]) / gw, (cy + d[3]) / gh], axis=-1)
                out.update(garment=1.0 - p[0], groups=groups, classes=p[1:], boxes=np.clip(boxes, 0, 1))
        if self.use_cam and cams is not None:
            for out, prob in zip(outs, cams):
                out["cam"] = prob.sum(axis=0)
                out["cam_class"] = prob.argmax(axis=0)
                out["cam_groups"] = np.stack([prob[self._cam_groups == g].sum(axis=0) for g in range(len(GROUPS))])
        return outs

    @torch.inference_mode()
    def _network(
        self, x: torch.Tensor
    ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None, tuple[int, int]]:
        """torch's forward pass: the head's class probabilities and box distances, and the
        CAM's clothing-class probabilities, per stride-16 cell (None where not used)."""
        f16, f32 = trunk_maps(self.model, x)
        gh, gw = f16.shape[-2:]
        classes = dists = cams = None
        if self.head is not None:
            logits, dist = self.head(f16, f32)
            classes, dists = torch.softmax(logits, dim=1).numpy(), dist.numpy()
        if self.use_cam:
            logits = torch.einsum("kc,nchw->nkhw", self.model._fc.weight, f32) + self.model._fc.bias.view(1, -1, 1, 1)
            logits = nn.functional.interpolate(logits, size=(gh, gw), mode="bilinear", align_corners=False)
            cams = torch.softmax(logits, dim=1)[:, self._cam_idx].numpy()
        return classes, dists, cams, (int(gh), int(gw))

    def scan_input(self, img: Image.Image) -> tuple[ProductCheck, torch.Tensor]:
        """The CPU half before the model (any thread): the product-shot check and the scan's
        input tensor. With :meth:`maps_batch` and :meth:`decide` it is :meth:`scan` in three
        steps, so only the forward pass waits for the model's thread."""
        img = img.convert("RGB") if img.mode != "RGB" else img
        return product_check(img), scan_tensor(img, self.side)

    def scan(self, img: Image.Image) -> GarmentScan:
        """The garments in ``img`` (RGB, already decoded and downscaled), the most prominent
        first (:func:`shown_order`), each box from a second, close look (:meth:`refine`)."""
        img = img.convert("RGB") if img.mode != "RGB" else img
        check, x = self.scan_input(img)
        return self.refine(img, self.decide(check, self.maps_batch([x])[0]))

    # ---- the close look ----
    def refine(self, img: Image.Image, scan: GarmentScan) -> GarmentScan:
        """:meth:`refine_inputs`, their maps in one forward pass, :meth:`refined`."""
        regions = self.refine_inputs(img, scan)
        if not regions:
            return scan
        return self.refined(scan, img.size, regions, self.maps_batch([x for _, x in regions]))

    def refine_inputs(
        self, img: Image.Image, scan: GarmentScan
    ) -> list[tuple[tuple[float, float, float, float], torch.Tensor]]:
        """Why: at the scan's stride (16 px of a 256 px picture) a shoe below a top is a cell
        or two tall, and its box comes out about twice its size (half the outfits' shoes
        missed IoU 0.5). Seen again in a square around it at :data:`REFINE_SIDE` px, it spans
        several cells. One (region in pixels, input tensor) per garment; none for a product
        shot (its box is the object's) or without the head (the CAM boxes nothing finer)."""
        if self.head is None or scan.product_shot or not scan.garments:
            return []
        img = img.convert("RGB") if img.mode != "RGB" else img
        w, h = img.size
        out = []
        for g in scan.garments:
            cx, cy = (g.box.x0 + g.box.x1) / 2 * w, (g.box.y0 + g.box.y1) / 2 * h
            side = min(max(w, h), max((g.box.x1 - g.box.x0) * w, (g.box.y1 - g.box.y0) * h) * REFINE_CONTEXT)
            region = (cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2)
            x0, y0, x1, y1 = (round(v) for v in region)
            piece = img.crop((x0, y0, max(x0 + 1, x1), max(y0 + 1, y1)))  # black beyond the photo's edge
            piece = piece.resize((REFINE_SIDE, REFINE_SIDE), Image.Resampling.BILINEAR)
            arr = np.asarray(piece, dtype=np.float32)
            out.append((region, torch.from_numpy(arr / 127.5 - 1.0).permute(2, 0, 1).unsqueeze(0).contiguous()))
        return out

    def maps_of_regions(self, photos: list[list[torch.Tensor]]) -> list[list[dict]]:
        """:meth:`maps_batch` over the close-look squares of several photos at once (each
        photo's list of squares in, its list of maps out): one call per photo on the model's
        thread, however many garments it has, so a burst of photos costs the event loop one
        future each, and all their squares run as one batch."""
        flat = self.maps_batch([x for squares in photos for x in squares])
        out, k = [], 0
        for squares in photos:
            out.append(flat[k : k + len(squares)])
            k += len(squares)
        return out

    def refined(
        self,
        scan: GarmentScan,
        size: tuple[int, int],
        regions: list[tuple[tuple[float, float, float, float], torch.Tensor]],
        maps: list[dict],
    ) -> GarmentScan:
        """Each garment as its close look sees it: the head's garment there that overlaps the
        first box most (at least :data:`REFINE_MIN_IOU`) gives the box, the group, the word
        and the confidence (seen larger, the group is right more often: 73 -> 79 % in the
        scene set). A garment the close look does not confirm stays as the first look saw it.
        Garments that end up on one another are one garment (:func:`_nms`)."""
        w, h = size
        garments = []
        for g, ((rx0, ry0, rx1, _), _), m in zip(scan.garments, regions, maps):
            side = rx1 - rx0
            first = Box(
                (g.box.x0 * w - rx0) / side,
                (g.box.y0 * h - ry0) / side,
                (g.box.x1 * w - rx0) / side,
                (g.box.y1 * h - ry0) / side,
            )
            best = max(self._from_head(m), key=lambda c: c.box.iou(first), default=None)
            if best is None or best.box.iou(first) < REFINE_MIN_IOU:
                garments.append(g)
                continue
            b = best.box
            box = Box(
                max(0.0, (rx0 + b.x0 * side) / w),
                max(0.0, (ry0 + b.y0 * side) / h),
                min(1.0, (rx0 + b.x1 * side) / w),
                min(1.0, (ry0 + b.y1 * side) / h),
            )
            garments.append(
                replace(g, box=box, group=best.group, label=best.label, confidence=best.confidence)
                if box.area > 0
                else g
            )
        # Two first-look boxes on one garment can both move onto it: keep the surer one (on
        # OpenCV's basketball photo one man's shirt came out twice, at IoU 0.52).
        kept = _nms(garments, self.thresholds.nms_iou)
        return replace(scan, garments=shown_order(kept))

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
        found = _nms(found, t.nms_iou)[: t.max_garments]
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
        return GarmentScan(shown_order(found), round(score, 4), False, heat)

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
            if cells.sum() < MIN_CAM_CELLS:
                continue
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


def prominence(g: FoundGarment) -> float:
    """How much a garment is what the photo shows: its confidence times the square root of
    its box's area (the share of the photo it covers, so a box four times larger counts twice)."""
    return g.confidence * g.box.area**0.5


def shown_order(garments: list[FoundGarment] | tuple[FoundGarment, ...]) -> tuple[FoundGarment, ...]:
    """The garments in the order they are shown, the first being the one answered first: the
    most prominent first (:func:`prominence`), not the most confident. Why: on Grace Hopper's
    portrait (matplotlib's sample photo) the surest box was her cap, taken for a bag (0.81),
    and her jacket (a suit, 0.59, two thirds of the photo) came second, so the chat answered
    the cap. Which garments are kept (the :attr:`Thresholds.max_garments` most confident)
    does not change; ties keep the confidence order."""
    return tuple(sorted(garments, key=lambda g: -prominence(g)))


# A class-activation component must span this many cells: one stray cell is not a garment (on
# Grace Hopper's portrait a single cell at her collar became a 'uniform' the size of a button).
MIN_CAM_CELLS = 2

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
    """The garments surest first, each dropped that overlaps a surer kept one by ``iou`` or more."""
    kept: list[FoundGarment] = []
    for g in sorted(garments, key=lambda g: -g.confidence):
        if all(g.box.iou(k.box) < iou for k in kept):
            kept.append(g)
    return kept
