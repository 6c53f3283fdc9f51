"""Is this picture a plain product shot? A pixel check that runs before the garment maps:
a product shot is never refused (issue 15), so it must be recognised on its own terms."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from engine.vision.garment_boxes import Box


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
