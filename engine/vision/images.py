"""The only place that opens user-sent or scraped images.

Everything that arrives from outside (a chat photo, a feed picture, a scraped
product image) is decoded here, so the checks live in one spot: a format
allow-list, a byte cap before decoding, a pixel cap that turns decompression
bombs into errors, EXIF orientation, alpha composited on white, and JPEG
``draft()`` so a 12-megapixel photo is decoded at the size we need, not at full size.
"""
from __future__ import annotations

import io
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

from engine.errors import BadImage

ALLOWED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "MPO"})
DEFAULT_MAX_BYTES = 20 * 1024 * 1024  # Telegram's own bot download cap
DEFAULT_MAX_PIXELS = 40_000_000  # ~ 7700 x 5200; a 30000 x 30000 PNG is 900 M


def open_image(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    target_size: int | None = None,
) -> Image.Image:
    """Decode ``data`` into an upright RGB image, or raise :class:`BadImage`.

    ``target_size`` lets a JPEG be decoded at reduced scale (``draft``) when the
    caller only needs about that many pixels on the short side.
    """
    if not data:
        raise BadImage("That file is empty. Please send a photo.")
    if len(data) > max_bytes:
        raise BadImage(
            f"That image is too large ({_mb(len(data))}); the limit is {_mb(max_bytes)}."
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            if img.format not in ALLOWED_FORMATS:
                raise BadImage(
                    f"I can't read {img.format or 'that'} files. Please send a JPEG, PNG, WebP, GIF or BMP photo."
                )
            width, height = img.size
            if width <= 0 or height <= 0 or width * height > max_pixels:
                raise BadImage(
                    f"That image is too big ({width}×{height} pixels). Please send a normal photo."
                )
            if img.format in ("JPEG", "MPO") and target_size:
                img.draft("RGB", (target_size, target_size))
            if getattr(img, "is_animated", False):
                img.seek(0)
            img.load()
            img = ImageOps.exif_transpose(img)
            return _to_rgb(img)
    except BadImage:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        if isinstance(err, UnidentifiedImageError):
            raise BadImage("That doesn't look like an image I can read. Please send a JPEG or PNG photo.") from None
        raise BadImage("That image is too big to open safely. Please send a normal photo.") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        # Truncated or corrupt data surfaces as any of these, depending on the codec.
        raise BadImage("That image seems to be damaged or incomplete. Please send it again.") from None


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f}".removesuffix(".0") + " MB"


def _to_rgb(img: Image.Image) -> Image.Image:
    """RGB on white: transparency becomes white, 16-bit and CMYK become 8-bit RGB."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale: scale into 8 bits instead of clipping to white.
        img = img.point(lambda v: v / 256).convert("L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "RGB" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        background.alpha_composite(rgba)
        return background.convert("RGB")
    if img.mode != "RGB":
        img = img.convert("RGB")
    return img


def to_jpeg(img: Image.Image, *, max_side: int = 512, quality: int = 88) -> bytes:
    """A compact JPEG copy, e.g. the picture we keep for a catalogue item."""
    copy = img.copy()
    copy.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    copy.save(out, format="JPEG", quality=quality, optimize=True)
    return out.getvalue()
