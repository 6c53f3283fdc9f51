"""Seeded scenes with garments in them, for training the garment head and for measuring
the garment finder (issue 15).

Every picture here is made from data the project may use offline: Fashion-MNIST
garments cut out by their own pixel masks (tinted, scaled), pasted onto generated
backgrounds (gradients, plasma, noise, stripes, checks) or onto real photos that ship
in PyPI packages (scikit-learn's ``china.jpg`` / ``flower.jpg``; matplotlib's sample
data; scikit-image's ``skimage/data`` photos when that package is installed), plus
text screenshots rendered with PIL.

Leakage rules:
- training scenes use Fashion-MNIST's *train* split, evaluation scenes its *test* split;
- training backgrounds are generated with their own seeds and the photos in
  :data:`TRAIN_PHOTOS`; evaluation scenes paste onto :data:`EVAL_PHOTOS` (held out)
  where they are installed, else onto the training photos (the report names which).

The four evaluation sets (issue 15, "Measure it"): :func:`garment_scene_set` (one
garment in a real-looking photo at 30–50 % of its height), :func:`outfit_set` (a top
above, shoes or a bag below), :func:`no_garment_set`, :func:`product_shot_set` (the
clean product shots, the control). Each sample carries its true boxes and labels.
"""

from __future__ import annotations

import functools
import importlib.util
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

# Fashion-MNIST class index → garment group (engine.vision.garment_vocabulary.CATEGORY_GROUPS agrees).
FM_GROUPS = ("top", "bottoms", "top", "dress", "outerwear", "shoes", "top", "shoes", "bag", "shoes")
TOPS = (0, 2, 3, 4, 6)  # what goes above in an outfit (T-shirt, pullover, dress, coat, shirt)
BELOW = (5, 7, 9, 8)  # shoes (sandal, sneaker, ankle boot) or a bag
UPPER_BODY = (0, 2, 4, 6)

# Photos that ship with packages. Training may paste onto (and learn "no garment" from) these:
TRAIN_PHOTOS = (
    "sklearn:china.jpg",
    "sklearn:flower.jpg",
    "skimage:brick.png",
    "skimage:grass.png",
    "skimage:gravel.png",
    "skimage:rocket.jpg",
    "skimage:hubble_deep_field.jpg",
    "skimage:coins.png",
    "skimage:retina.jpg",
    "skimage:cell.png",
    "skimage:page.png",
    "skimage:chessboard_RGB.png",
    "skimage:logo.png",
    "skimage:microaneurysms.png",
)
# Held out for evaluation (never seen in training): no people or clothes in them.
EVAL_PHOTOS = (
    "skimage:chelsea.png",
    "skimage:coffee.png",
    "skimage:motorcycle_left.png",
    "skimage:motorcycle_right.png",
    "skimage:horse.png",
    "skimage:color.png",
    "skimage:moon.png",
    "skimage:ihc.png",
    "skimage:clock_motion.png",
    "skimage:phantom.png",
    "skimage:text.png",
    "mpl:Minduka_Present_Blue_Pack.png",
    "mpl:logo2.png",
)
EVAL_SCENE_PHOTOS = EVAL_PHOTOS[:8]  # the photographic ones: backgrounds for the evaluation scenes
# Photos with people in clothes: for looking at by eye and for tests, never for "no garment".
PEOPLE_PHOTOS = (
    "mpl:grace_hopper.jpg",
    "skimage:astronaut.png",
    "skimage:camera.png",
    "opencv:basketball1.png",  # two men playing catch, T-shirt and jeans, a patterned shirt (grey)
    "opencv:messi5.jpg",  # a footballer in a jersey and shorts, mid-kick, a crowd behind him
)
# Debian's opencv-doc (``apt-get install opencv-doc``) ships OpenCV's sample pictures here: the
# only photos of people in ordinary clothes found offline besides the three above.
OPENCV_SAMPLES = Path("/usr/share/doc/opencv-doc/examples/data")


# ---- where the shipped photos are -------------------------------------------------------
def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)  # no import: skimage's import is slow and optional
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def photo_path(ref: str) -> Path | None:
    """``sklearn:china.jpg`` / ``mpl:grace_hopper.jpg`` / ``skimage:coffee.png`` /
    ``opencv:messi5.jpg`` → a file, or None."""
    where, name = ref.split(":", 1)
    if where == "opencv":
        found = OPENCV_SAMPLES / name
        return found if found.is_file() else None
    sub = {
        "sklearn": ("sklearn", "datasets/images"),
        "mpl": ("matplotlib", "mpl-data/sample_data"),
        "skimage": ("skimage", "data"),
    }[where]
    base = _package_dir(sub[0])
    if base is None:
        return None
    path = base / sub[1] / name
    return path if path.is_file() else None


@functools.lru_cache(maxsize=64)
def load_photo(ref: str) -> Image.Image | None:
    path = photo_path(ref)
    if path is None:
        return None
    with Image.open(path) as opened:
        opened.load()
        if opened.mode in ("RGBA", "LA", "P"):
            rgba = opened.convert("RGBA")
            canvas = Image.new("RGB", rgba.size, (255, 255, 255))
            canvas.paste(rgba, mask=rgba.getchannel("A"))
            return canvas
        return opened.convert("RGB")


def available(refs: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(r for r in refs if photo_path(r) is not None)


# ---- samples ------------------------------------------------------------------------------
@dataclass(frozen=True)
class TrueGarment:
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 relative to the picture
    label: int  # Fashion-MNIST class
    group: str
    index: int = -1  # index into the Fashion-MNIST split it came from


@dataclass
class Sample:
    image: Image.Image
    garments: tuple[TrueGarment, ...]
    kind: str  # scene / outfit / none / product
    source: str  # background or picture the sample was built from
    mask: np.ndarray | None = field(default=None, repr=False)  # (H, W) int8 garment slot (-1 none), training only


# ---- backgrounds --------------------------------------------------------------------------
def _smooth_noise(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    small = rng.random((cells, max(2, round(cells * w / h)))).astype(np.float32)
    img = Image.fromarray((small * 255).astype(np.uint8)).resize((w, h), Image.Resampling.BICUBIC)
    return np.asarray(img, dtype=np.float32) / 255.0


def generated_background(rng: np.random.Generator, w: int, h: int, kind: str | None = None) -> tuple[Image.Image, str]:
    kinds = ("gradient", "plasma", "noise", "stripes", "checks", "blobs", "wall")
    kind = kind or str(rng.choice(kinds))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    c1, c2 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    if kind == "gradient":
        angle = rng.uniform(0, 2 * math.pi)
        t = xx * math.cos(angle) + yy * math.sin(angle)
        t = (t - t.min()) / max(1e-6, float(t.max() - t.min()))
        out = c1 * (1 - t[..., None]) + c2 * t[..., None]
    elif kind == "plasma":
        t = np.sum([_smooth_noise(rng, h, w, c) * wgt for c, wgt in ((3, 0.5), (7, 0.3), (17, 0.2))], axis=0)
        out = c1 * (1 - t[..., None]) + c2 * t[..., None]
    elif kind == "noise":
        base = c1 * 0.7 + 40
        out = base + rng.normal(0, rng.uniform(10, 45), (h, w, 3))
    elif kind == "stripes":
        period = rng.uniform(8, 60)
        angle = rng.uniform(0, math.pi)
        t = (np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * 2 * math.pi / period) > 0).astype(np.float32)
        out = c1 * (1 - t[..., None]) + c2 * t[..., None]
    elif kind == "checks":
        cell = rng.uniform(12, 70)
        t = ((xx // cell + yy // cell) % 2).astype(np.float32)
        out = c1 * (1 - t[..., None]) + c2 * t[..., None]
    elif kind == "blobs":
        out = np.empty((h, w, 3), np.float32)
        out[:] = c1
        for _ in range(int(rng.integers(5, 25))):
            cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(10, max(w, h) / 4)
            inside = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
            out[inside] = rng.uniform(0, 255, 3)
    else:  # wall: a flat colour with a faint texture and vignette, like a room
        t = _smooth_noise(rng, h, w, 40)
        vignette = 1 - 0.35 * (((xx / w - 0.5) ** 2 + (yy / h - 0.5) ** 2) * 2)
        out = (c1 * 0.6 + 90)[None, None] * vignette[..., None] * (0.9 + 0.2 * t[..., None])
    out = out + rng.normal(0, 3, out.shape)
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8)), f"generated:{kind}"


def photo_background(rng: np.random.Generator, w: int, h: int, refs: tuple[str, ...]) -> tuple[Image.Image, str]:
    ref = str(rng.choice(refs))
    photo = load_photo(ref)
    if photo is None:
        raise FileNotFoundError(f"background photo {ref!r} is not installed")
    pw, ph = photo.size
    scale = rng.uniform(0.25, 1.0)  # a random crop of 25–100 % of the photo's fitting window
    fit = min(pw / w, ph / h)
    cw, ch = max(8, int(w * fit * scale)), max(8, int(h * fit * scale))
    x0, y0 = int(rng.integers(0, pw - cw + 1)), int(rng.integers(0, ph - ch + 1))
    img = photo.crop((x0, y0, x0 + cw, y0 + ch)).resize((w, h), Image.Resampling.BILINEAR)
    if rng.random() < 0.5:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    arr = np.asarray(img, dtype=np.float32) * rng.uniform(0.75, 1.2, 3) + rng.uniform(-20, 20)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)), f"photo:{ref}"


# ---- garments -----------------------------------------------------------------------------
def garment_rgba(pixels28: np.ndarray, rng: np.random.Generator, height: int, style: str | None = None) -> Image.Image:
    """A Fashion-MNIST garment cut out by its pixel mask, tinted and scaled to ``height`` px.

    ``style``: ``product`` (dark on white, as the catalogue shows it), ``dyed`` (a
    fabric colour shaded by the garment's own texture) or ``light`` (a pale garment)."""
    style = style or str(rng.choice(["product", "dyed", "dyed", "light"]))
    g = pixels28.astype(np.float32) / 255.0  # light-on-black: 1 = material
    alpha = np.clip(g * 6.0, 0, 1)  # soft edge; anything above ~0.17 is fully opaque
    shade = 1.0 - g  # what the catalogue shows: dark where there is material
    if style == "product":
        rgb = np.repeat(shade[..., None], 3, axis=2)
    elif style == "dyed":
        dye = rng.uniform(0.05, 0.95, 3)
        rgb = dye[None, None] * (0.45 + 0.55 * shade[..., None]) + 0.15 * shade[..., None]
    else:
        dye = rng.uniform(0.6, 1.0, 3)
        rgb = dye[None, None] * (0.55 + 0.45 * g[..., None])
    rgba = np.dstack([np.clip(rgb, 0, 1) * 255, alpha * 255]).astype(np.uint8)
    img = Image.fromarray(rgba, mode="RGBA")
    aspect = rng.uniform(0.85, 1.15)
    return img.resize((max(4, round(height * aspect)), max(4, height)), Image.Resampling.BICUBIC)


def _paste(
    canvas: Image.Image, garment: Image.Image, x: int, y: int, slot: int, mask: np.ndarray | None
) -> tuple[float, float, float, float] | None:
    """Paste and return the true box (relative) of what stayed visible; None when off-canvas."""
    canvas.paste(garment, (x, y), garment.getchannel("A"))
    a = np.asarray(garment.getchannel("A")) > 127
    ys, xs = np.nonzero(a)
    if not len(xs):
        return None
    w, h = canvas.size
    x0, x1 = max(0, x + xs.min()), min(w, x + xs.max() + 1)
    y0, y1 = max(0, y + ys.min()), min(h, y + ys.max() + 1)
    if x1 - x0 < 4 or y1 - y0 < 4:
        return None
    if mask is not None:
        gy, gx = np.nonzero(a)
        gy, gx = gy + y, gx + x
        keep = (gy >= 0) & (gy < h) & (gx >= 0) & (gx < w)
        mask[gy[keep], gx[keep]] = slot
    return (x0 / w, y0 / h, x1 / w, y1 / h)


def _canvas_size(rng: np.random.Generator) -> tuple[int, int]:
    long_side = int(rng.integers(400, 641))
    ratio = float(rng.choice([0.75, 1.0, 4 / 3, 0.66, 1.5]))  # w/h: portrait, square, landscape
    if ratio >= 1:
        return long_side, max(200, round(long_side / ratio))
    return max(200, round(long_side * ratio)), long_side


def _background(rng: np.random.Generator, w: int, h: int, photos: tuple[str, ...], photo_share: float):
    if photos and rng.random() < photo_share:
        return photo_background(rng, w, h, photos)
    return generated_background(rng, w, h)


def compose(
    rng: np.random.Generator,
    images: np.ndarray,
    labels: np.ndarray,
    picks: list[int],
    heights: list[float],
    layout: str,
    photos: tuple[str, ...],
    photo_share: float = 0.6,
    with_mask: bool = False,
    kind: str = "scene",
    distractors: float = 0.0,
) -> Sample:
    """Paste the Fashion-MNIST garments ``picks`` (their heights as shares of the picture's)
    onto one background; ``layout`` is ``free`` (anywhere) or ``outfit`` (the first above
    the second, roughly one figure)."""
    w, h = _canvas_size(rng)
    canvas, source = _background(rng, w, h, photos, photo_share)
    mask = np.full((h, w), -1, np.int8) if with_mask else None
    found: list[TrueGarment] = []
    if layout == "outfit":
        top_h = int(heights[0] * h)
        low_h = int(heights[1] * h)
        gap = int(rng.uniform(0.0, 0.08) * h)
        total = top_h + gap + low_h
        y_top = int(rng.integers(0, max(1, h - total + 1)))
        cx = rng.uniform(0.3, 0.7) * w
        positions = [(cx, y_top), (cx + rng.uniform(-0.15, 0.15) * w, y_top + top_h + gap)]
    else:
        positions = []
    if distractors and rng.random() < distractors:  # things that are not garments: photo cut-outs, text
        for _ in range(int(rng.integers(1, 3))):
            _paste_distractor(rng, canvas, photos)
    for slot, (i, frac) in enumerate(zip(picks, heights)):
        gh = max(8, int(frac * h))
        garment = garment_rgba(images[i], rng, gh)
        if layout == "outfit":
            cx, y = positions[slot]
            x = int(np.clip(cx - garment.width / 2, 0, max(0, w - garment.width)))
            y = int(np.clip(y, 0, max(0, h - garment.height)))
        else:
            x = int(rng.integers(0, max(1, w - garment.width + 1)))
            y = int(rng.integers(0, max(1, h - garment.height + 1)))
        box = _paste(canvas, garment, x, y, slot, mask)
        if box is not None:
            found.append(TrueGarment(box=box, label=int(labels[i]), group=FM_GROUPS[int(labels[i])], index=int(i)))
    if rng.random() < 0.3:  # a phone photo: a little blur or noise
        canvas = canvas.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    return Sample(image=canvas, garments=tuple(found), kind=kind, source=source, mask=mask)


def _paste_distractor(rng: np.random.Generator, canvas: Image.Image, photos: tuple[str, ...]) -> None:
    """An object that is not a garment: a blob or polygon cut from a photo or a texture, or a
    word, pasted like a garment would be (training only: the head must not call every
    pasted thing a garment)."""
    w, h = canvas.size
    dh = max(12, int(h * rng.uniform(0.15, 0.5)))
    dw = max(12, int(dh * rng.uniform(0.5, 1.8)))
    if rng.random() < 0.2:
        piece = Image.new("RGB", (dw, dh), tuple(int(v) for v in rng.uniform(0, 255, 3)))
        alpha = Image.new("L", (dw, dh), 0)
        d = ImageDraw.Draw(alpha)
        font = _font(max(10, dh // 3), rng)
        d.text((2, dh // 4), " ".join(rng.choice(_WORDS, 2)), fill=255, font=font)
    else:
        piece, _ = _background(rng, dw, dh, photos, 0.6)
        alpha = Image.new("L", (dw, dh), 0)
        d = ImageDraw.Draw(alpha)
        if rng.random() < 0.5:
            d.ellipse((0, 0, dw - 1, dh - 1), fill=255)
        else:
            pts = [(float(rng.uniform(0, dw)), float(rng.uniform(0, dh))) for _ in range(int(rng.integers(3, 8)))]
            d.polygon(pts, fill=255)
    canvas.paste(piece, (int(rng.integers(0, max(1, w - dw))), int(rng.integers(0, max(1, h - dh)))), alpha)


def product_shot(
    pixels28: np.ndarray, label: int, rng: np.random.Generator, index: int = -1, studio: bool | None = None
) -> Sample:
    """A product shot: the clean Fashion-MNIST picture as the catalogue has it (28 px, dark on
    white) or, for ``studio``, a tinted garment filling most of a plain light background."""
    if not studio:
        img = fm_picture(pixels28)
        drawn = _alpha_box(pixels28 > 30)
        assert drawn is not None  # a Fashion-MNIST picture always has ink
        return Sample(
            image=img,
            garments=(TrueGarment(drawn, int(label), FM_GROUPS[int(label)], index),),
            kind="product",
            source="fashion-mnist",
        )
    side = int(rng.integers(240, 521))
    paper = np.clip(rng.uniform(215, 255) + rng.normal(0, 6, 3), 0, 255)
    canvas = Image.new("RGB", (side, side), tuple(int(v) for v in paper))
    height = int(side * rng.uniform(0.6, 0.92))
    garment = garment_rgba(pixels28, rng, height, style=str(rng.choice(["product", "dyed"])))
    x = (side - garment.width) // 2 + int(rng.integers(-side // 20, side // 20 + 1))
    y = (side - garment.height) // 2 + int(rng.integers(-side // 20, side // 20 + 1))
    box = _paste(canvas, garment, max(0, x), max(0, y), 0, None)
    assert box is not None  # centred on the canvas by construction
    return Sample(
        image=canvas,
        garments=(TrueGarment(box, int(label), FM_GROUPS[int(label)], index),),
        kind="product",
        source="studio",
    )


def _alpha_box(on: np.ndarray) -> tuple[float, float, float, float]:
    ys, xs = np.nonzero(on)
    h, w = on.shape
    return (xs.min() / w, ys.min() / h, (xs.max() + 1) / w, (ys.max() + 1) / h)


# ---- pictures without any garment ---------------------------------------------------------
_WORDS = (
    "the quick brown fox jumps over a lazy dog meeting at noon please reply invoice total "
    "delivery tomorrow thanks order number password reset your account was updated hello "
    "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor"
).split()


def _font(size: int, rng: np.random.Generator):
    fonts = sorted(Path("/usr/share/fonts/truetype/dejavu").glob("DejaVu*.ttf"))
    if fonts:
        return ImageFont.truetype(str(fonts[int(rng.integers(len(fonts)))]), size)
    return ImageFont.load_default(size)


def text_screenshot(rng: np.random.Generator) -> Image.Image:
    """A chat or document screenshot: lines of text (sometimes in bubbles) on a plain page."""
    w, h = (
        (int(rng.integers(300, 500)), int(rng.integers(500, 900)))
        if rng.random() < 0.6
        else (int(rng.integers(600, 1000)), int(rng.integers(400, 700)))
    )
    dark = rng.random() < 0.25
    page = (30, 32, 36) if dark else tuple(int(v) for v in rng.uniform(235, 255, 3))
    ink = (225, 225, 225) if dark else tuple(int(v) for v in rng.uniform(0, 70, 3))
    img = Image.new("RGB", (w, h), page)
    draw = ImageDraw.Draw(img)
    size = int(rng.integers(12, 30))
    font = _font(size, rng)
    bubbles = rng.random() < 0.4
    y = int(rng.integers(5, 30))
    while y < h - size:
        words = " ".join(rng.choice(_WORDS, int(rng.integers(2, 9))))
        x = int(rng.integers(8, 40)) if not bubbles or rng.random() < 0.5 else int(w * rng.uniform(0.3, 0.5))
        if bubbles:
            bw = min(w - x - 5, int(draw.textlength(words, font=font)) + 16)
            colour = tuple(int(v) for v in rng.uniform(150, 240, 3))
            draw.rounded_rectangle((x - 8, y - 4, x + bw, y + size + 6), radius=10, fill=colour)
        draw.text((x, y), words, fill=ink, font=font)
        y += int(size * rng.uniform(1.3, 2.6))
    return img


def rendered_figure(rng: np.random.Generator, kind: str) -> Image.Image | None:
    """A chart or a terrain map rendered with matplotlib (dev extra), as a screenshot would show."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib import cbook
    except ImportError:
        return None
    fig = plt.figure(figsize=(rng.uniform(4, 7), rng.uniform(3, 5)), dpi=80)
    ax = fig.add_subplot()
    if kind == "chart":
        for _ in range(int(rng.integers(1, 4))):
            ax.plot(np.cumsum(rng.normal(0, 1, 200)))
        ax.set_title("weekly figures")
    elif kind == "bars":
        ax.bar(range(8), rng.uniform(1, 10, 8), color=plt.cm.tab10(rng.integers(0, 10)))
    else:
        with np.load(cbook.get_sample_data("topobathy.npz", asfileobj=False)) as dem:
            z = dem["topo"]
        y0, x0 = int(rng.integers(0, z.shape[0] // 2)), int(rng.integers(0, z.shape[1] // 2))
        ax.imshow(
            z[y0 : y0 + z.shape[0] // 2, x0 : x0 + z.shape[1] // 2],
            cmap=str(rng.choice(["terrain", "gist_earth", "viridis", "ocean"])),
        )
        ax.axis("off")
    fig.canvas.draw()
    img = Image.fromarray(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())  # type: ignore[attr-defined]  # Agg canvas
    plt.close(fig)
    return img


# ---- the four evaluation sets (test split) ----------------------------------------------
_FM_MODULES = ("engine.catalogue.ingest.readers.fashion_mnist", "engine.catalogue.ingest", "engine.catalogue")


def _fm_function(name: str):
    """The Fashion-MNIST reader's function, wherever the catalogue room keeps it."""
    from engine.vision.garments import find_attr

    return find_attr(name, _FM_MODULES)


def fm_picture(pixels28: np.ndarray) -> Image.Image:
    """The catalogue's picture of a Fashion-MNIST item (dark on white, 28 px)."""
    return _fm_function("fashion_mnist_picture")(pixels28)


@functools.lru_cache(maxsize=2)
def _fm(split: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = _fm_function("load_fashion_mnist")(split)
    return x, y.astype(np.int64)


def eval_photos() -> tuple[tuple[str, ...], bool]:
    """(photos for evaluation scenes, held_out): the held-out photos when installed."""
    held = available(EVAL_SCENE_PHOTOS)
    if len(held) >= 4:
        return held, True
    return available(TRAIN_PHOTOS), False


def garment_scene_set(n: int = 300, seed: int = 1) -> list[Sample]:
    """(1) One garment (test split) inside a real-looking photo at 30–50 % of its height."""
    x, y = _fm("test")
    rng = np.random.default_rng(seed)
    photos, _ = eval_photos()
    picks = _balanced(y, n, rng)
    return [compose(rng, x, y, [int(i)], [rng.uniform(0.3, 0.5)], "free", photos, photo_share=0.7) for i in picks]


def outfit_set(n: int = 200, seed: int = 2) -> list[Sample]:
    """(2) An outfit in one photo: a top (or dress, or coat) above, shoes or a bag below."""
    x, y = _fm("test")
    rng = np.random.default_rng(seed)
    photos, _ = eval_photos()
    tops = np.flatnonzero(np.isin(y, TOPS))
    below = np.flatnonzero(np.isin(y, BELOW))
    out = []
    for _ in range(n):
        t, b = int(rng.choice(tops)), int(rng.choice(below))
        out.append(
            compose(
                rng,
                x,
                y,
                [t, b],
                [rng.uniform(0.32, 0.45), rng.uniform(0.22, 0.32)],
                "outfit",
                photos,
                photo_share=0.7,
                kind="outfit",
            )
        )
    return out


def no_garment_set(
    seed: int = 3, generated: int = 60, texts: int = 40, figures: int = 15, photo_crops: int = 2
) -> list[Sample]:
    """(3) Pictures without any garment: the held-out photos (whole, and random crops),
    generated textures, text screenshots, charts and maps."""
    rng = np.random.default_rng(seed)
    out = []
    for ref in available(EVAL_PHOTOS) + available(TRAIN_PHOTOS):
        photo = load_photo(ref)
        if photo is None:  # available() listed it, but it could not be read
            continue
        out.append(Sample(photo, (), "none", f"photo:{ref}"))
        for _ in range(photo_crops):
            w, h = _canvas_size(rng)
            img, _src = photo_background(rng, w, h, (ref,))
            out.append(Sample(img, (), "none", f"photo-crop:{ref}"))
    for _ in range(generated):
        w, h = _canvas_size(rng)
        img, src = generated_background(rng, w, h)
        out.append(Sample(img, (), "none", src))
    for _ in range(texts):
        out.append(Sample(text_screenshot(rng), (), "none", "text"))
    for i in range(figures):
        figure = rendered_figure(rng, ("chart", "bars", "map")[i % 3])
        if figure is not None:
            out.append(Sample(figure, (), "none", f"figure:{('chart', 'bars', 'map')[i % 3]}"))
    return out


def product_shot_set(n: int = 300, seed: int = 4, studio_share: float = 0.25) -> list[Sample]:
    """(4) Product shots (test split): the clean catalogue-style pictures, the control, and a
    share of studio shots (tinted, on a plain light background)."""
    x, y = _fm("test")
    rng = np.random.default_rng(seed)
    return [
        product_shot(x[i], y[i], rng, int(i), studio=bool(rng.random() < studio_share)) for i in _balanced(y, n, rng)
    ]


def _balanced(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    classes = np.unique(labels)
    per = -(-n // len(classes))
    picks = np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:per] for c in classes])
    return rng.permutation(picks)[:n]


# ---- in-scene crops (for train-head) ---------------------------------------------------------
def scene_crop(pixels28: np.ndarray, rng: np.random.Generator, photos: tuple[str, ...] | None = None) -> Image.Image:
    """A garment as the served search sees it after the finder: pasted (tinted, scaled) into a
    scene at 30–50 % of its height on a training background, then cropped around a box that is
    slightly off (shifted and scaled by up to about a tenth) with the served crop's margin. For
    ``fashionbot train-head``: a garment cut from a photo should land near the product shot of
    its kind. Training photos only (:data:`TRAIN_PHOTOS`), never the held-out ones."""
    from engine.vision.garment_boxes import crop

    refs = available(TRAIN_PHOTOS) if photos is None else photos
    labels = np.zeros(1, np.int64)  # the label is the caller's; compose only needs a slot
    sample = compose(rng, pixels28[None], labels, [0], [float(rng.uniform(0.3, 0.5))], "free", refs)
    if not sample.garments:  # pasted off the canvas: the garment on its own background
        return sample.image
    return crop(sample.image, _off_box(sample.garments[0].box, rng))


def _off_box(box: tuple[float, float, float, float], rng: np.random.Generator):
    """``box`` as a finder might give it: shifted and scaled by up to about a tenth, clamped."""
    from engine.vision.garment_boxes import Box

    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    dx, dy = rng.uniform(-0.1, 0.1, 2) * (w, h)
    s = rng.uniform(0.9, 1.15)
    cx, cy = (x0 + x1) / 2 + dx, (y0 + y1) / 2 + dy
    return Box(max(0.0, cx - w * s / 2), max(0.0, cy - h * s / 2), min(1.0, cx + w * s / 2), min(1.0, cy + h * s / 2))


def crop_and_studio(
    pixels28: np.ndarray, rng: np.random.Generator, photos: tuple[str, ...] | None = None
) -> tuple[Image.Image, Image.Image]:
    """One garment twice, for ``fashionbot train-crop-adapter``: (1) pasted (tinted, scaled to
    30–50 % of the picture) into a scene on a training background and cut around a box
    slightly off its own (shifted and scaled by up to about a tenth, the served crop's
    margin), as the finder's crop shows it; (2) the same tinted garment on a plain light
    studio background, as a shop's product shot shows it, colour kept. Training photos only."""
    from engine.vision.garment_boxes import GARMENT_MARGIN, crop

    refs = available(TRAIN_PHOTOS) if photos is None else photos
    w, h = _canvas_size(rng)
    canvas, _ = _background(rng, w, h, refs, 0.6)
    garment = garment_rgba(pixels28, rng, max(8, int(rng.uniform(0.3, 0.5) * h)))
    x = int(rng.integers(0, max(1, w - garment.width + 1)))
    y = int(rng.integers(0, max(1, h - garment.height + 1)))
    box = _paste(canvas, garment, x, y, 0, None)
    if rng.random() < 0.3:  # a phone photo: a little blur
        canvas = canvas.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    if box is None:
        scene = canvas
    else:
        scene = crop(canvas, _off_box(box, rng), GARMENT_MARGIN)
    side = int(rng.integers(240, 400))
    paper = tuple(int(v) for v in np.clip(rng.uniform(225, 255) + rng.normal(0, 4, 3), 0, 255))
    studio = Image.new("RGB", (side, side), paper)
    tall = int(side * rng.uniform(0.7, 0.9))
    shot = garment.resize((max(4, round(garment.width * tall / garment.height)), tall), Image.Resampling.BICUBIC)
    studio.paste(shot, ((side - shot.width) // 2, (side - shot.height) // 2), shot.getchannel("A"))
    return scene, studio


# ---- training scenes (train split) --------------------------------------------------------
def training_scenes(n: int, seed: int = 0, exclude: np.ndarray | None = None) -> Iterator[Sample]:
    """Scenes for the garment head, with pixel masks: single garments at 25–60 % of the height,
    outfits, two garments anywhere, empty backgrounds and product shots. Train split only;
    ``exclude`` holds train indices to leave out (e.g. the benchmark's catalogue)."""
    x, y = _fm("train")
    rng = np.random.default_rng(seed)
    pool = np.arange(len(y)) if exclude is None else np.setdiff1d(np.arange(len(y)), exclude)
    photos = available(TRAIN_PHOTOS)
    tops = pool[np.isin(y[pool], TOPS)]
    below = pool[np.isin(y[pool], BELOW)]
    makers: list[tuple[float, Callable[[], Sample]]] = [
        (
            0.36,
            lambda: compose(
                rng,
                x,
                y,
                [int(rng.choice(pool))],
                [rng.uniform(0.25, 0.6)],
                "free",
                photos,
                with_mask=True,
                distractors=0.4,
            ),
        ),
        (
            0.25,
            lambda: compose(
                rng,
                x,
                y,
                [int(rng.choice(tops)), int(rng.choice(below))],
                [rng.uniform(0.3, 0.48), rng.uniform(0.2, 0.34)],
                "outfit",
                photos,
                with_mask=True,
                kind="outfit",
                distractors=0.3,
            ),
        ),
        (
            0.10,
            lambda: compose(
                rng,
                x,
                y,
                [int(rng.choice(pool)), int(rng.choice(pool))],
                [rng.uniform(0.25, 0.45), rng.uniform(0.25, 0.45)],
                "free",
                photos,
                with_mask=True,
            ),
        ),
        (0.22, lambda: _empty(rng, photos)),
        (0.10, lambda: _product_with_mask(rng, x, y, pool)),
    ]
    weights = np.array([m[0] for m in makers])
    for _ in range(n):
        yield makers[int(rng.choice(len(makers), p=weights / weights.sum()))][1]()


def close_look_sample(sample: Sample, rng: np.random.Generator, side: int = 128, context: float = 1.3) -> Sample | None:
    """A training scene as the finder's close look sees it (``GarmentFinder.refine``): a
    square around one of its garments, ``context`` times the long side of a box that is off
    the way the first look's boxes are (shifted, and up to about twice too large), resized to
    ``side`` px, black beyond the picture's edge; the mask and true boxes cut the same way.
    None for a scene without garments or a mask."""
    if not sample.garments or sample.mask is None:
        return None
    w, h = sample.image.size
    g = sample.garments[int(rng.integers(len(sample.garments)))]
    x0, y0, x1, y1 = g.box
    bw, bh = (x1 - x0) * w, (y1 - y0) * h
    grow = rng.uniform(0.9, 2.2)
    cx = (x0 + x1) / 2 * w + rng.uniform(-0.15, 0.15) * bw
    cy = (y0 + y1) / 2 * h + rng.uniform(-0.15, 0.15) * bh
    span = min(max(w, h), max(bw, bh) * context * float(np.sqrt(grow)))
    rx0, ry0 = int(round(cx - span / 2)), int(round(cy - span / 2))
    rs = max(2, int(round(span)))
    image = sample.image.crop((rx0, ry0, rx0 + rs, ry0 + rs)).resize((side, side), Image.Resampling.BILINEAR)
    padded = np.full((rs, rs), -1, np.int8)
    sx0, sy0 = max(0, rx0), max(0, ry0)
    sx1, sy1 = min(w, rx0 + rs), min(h, ry0 + rs)
    if sx1 > sx0 and sy1 > sy0:
        padded[sy0 - ry0 : sy1 - ry0, sx0 - rx0 : sx1 - rx0] = sample.mask[sy0:sy1, sx0:sx1]
    mask = np.asarray(Image.fromarray(padded.astype(np.int16) + 1).resize((side, side), Image.Resampling.NEAREST))
    mask = (mask.astype(np.int16) - 1).astype(np.int8)
    garments: list[TrueGarment] = []
    renumbered = np.full_like(mask, -1)  # the garments still in view, renumbered in order (as targets() reads them)
    for slot, t in enumerate(sample.garments):
        ys, xs = np.nonzero(mask == slot)
        if len(xs) < 4:
            continue
        renumbered[ys, xs] = len(garments)
        box = (xs.min() / side, ys.min() / side, (xs.max() + 1) / side, (ys.max() + 1) / side)
        garments.append(TrueGarment(box, t.label, t.group, t.index))
    return Sample(image.convert("RGB"), tuple(garments), sample.kind, sample.source + " (close look)", mask=renumbered)


def _empty(rng: np.random.Generator, photos: tuple[str, ...]) -> Sample:
    if rng.random() < 0.25:
        img = text_screenshot(rng)
        return Sample(img, (), "none", "text", mask=np.full((img.height, img.width), -1, np.int8))
    w, h = _canvas_size(rng)
    img, src = _background(rng, w, h, photos, 0.6)
    if rng.random() < 0.5:
        for _ in range(int(rng.integers(1, 4))):
            _paste_distractor(rng, img, photos)
    return Sample(img, (), "none", src, mask=np.full((h, w), -1, np.int8))


def _product_with_mask(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, pool: np.ndarray) -> Sample:
    i = int(rng.choice(pool))
    side = int(rng.integers(224, 400))
    paper = np.clip(rng.uniform(220, 255) + rng.normal(0, 5, 3), 0, 255)
    canvas = Image.new("RGB", (side, side), tuple(int(v) for v in paper))
    mask = np.full((side, side), -1, np.int8)
    garment = garment_rgba(x[i], rng, int(side * rng.uniform(0.7, 1.0)), style=str(rng.choice(["product", "dyed"])))
    box = _paste(canvas, garment, max(0, (side - garment.width) // 2), max(0, (side - garment.height) // 2), 0, mask)
    garments = (TrueGarment(box, int(y[i]), FM_GROUPS[int(y[i])], i),) if box else ()
    return Sample(canvas, garments, "product", "studio", mask=mask)
