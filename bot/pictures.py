"""The one picture resizer of the front-ends: a catalogue picture as a chat-sized JPEG.

Pictures come from our own catalogue, but they were scraped or ingested from outside,
so they are opened with the same care as a user's photo: a format allow-list, a pixel
cap checked before decoding, JPEG draft decoding, EXIF orientation and transparency on
white. CPU work: call :func:`chat_jpeg_async` from the event loop (it runs in a thread).
"""

from __future__ import annotations

import asyncio
import io
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

from engine.errors import BadImage

ALLOWED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "MPO"})
MAX_PIXELS = 40_000_000
PLACEHOLDER_SIDE = 280
UNREADABLE = "That picture can't be shown."


def _open(data: bytes, want: int, max_pixels: int) -> Image.Image:
    if not data:
        raise BadImage(UNREADABLE)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            opened = Image.open(io.BytesIO(data))
            if opened.format not in ALLOWED_FORMATS:
                raise BadImage(UNREADABLE)
            w, h = opened.size
            if w <= 0 or h <= 0 or w * h > max_pixels:
                raise BadImage(UNREADABLE)
            if opened.format in ("JPEG", "MPO"):
                opened.draft("RGB", (want, want))
            opened.load()
            img: Image.Image = ImageOps.exif_transpose(opened)
    except BadImage:
        raise
    except (
        UnidentifiedImageError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
        OSError,
        SyntaxError,
        ValueError,
        EOFError,
    ):
        raise BadImage(UNREADABLE) from None
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        background.alpha_composite(rgba)
        return background.convert("RGB")
    return img if img.mode == "RGB" else img.convert("RGB")


def chat_jpeg(
    data: bytes, *, min_side: int = 280, max_side: int = 1280, quality: int = 88, max_pixels: int = MAX_PIXELS
) -> bytes:
    """``data`` as a JPEG whose longer side is within ``min_side``..``max_side``
    (tiny pictures such as Fashion-MNIST's 28 px are upscaled, big ones scaled down).
    Raises :class:`BadImage` for anything unreadable. Blocking: run it in a thread."""
    img = _open(data, max_side, max_pixels)
    side = max(img.size)
    target = min_side if side < min_side else max_side if side > max_side else side
    if target != side:
        scale = target / side
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        img = img.resize(size, Image.Resampling.BICUBIC if scale > 1 else Image.Resampling.LANCZOS)
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=quality, optimize=True)
    return out.getvalue()


async def chat_jpeg_async(data: bytes, **kwargs: int) -> bytes:
    """:func:`chat_jpeg` off the event loop."""
    return await asyncio.to_thread(chat_jpeg, data, **kwargs)


def placeholder_jpeg(side: int = PLACEHOLDER_SIDE) -> bytes:
    """A plain light-grey square for an item whose picture is missing or unreadable."""
    out = io.BytesIO()
    Image.new("RGB", (side, side), (236, 236, 236)).save(out, format="JPEG", quality=80)
    return out.getvalue()
