"""The only place that opens user-sent or scraped images.

Everything that arrives from outside (a chat photo, a feed picture, a scraped
product image) is decoded here, so the checks live in one spot: a format
allow-list, a byte cap before decoding, a pixel cap that turns decompression
bombs into errors, EXIF orientation, transparency (alpha or a tRNS colour key)
composited on white.

Memory is bounded per decode (:data:`DECODE_BUDGET`), whatever file got past the caps:

- the picture is made small *while or right after* it is decoded, before any other
  copy: JPEG is decoded at reduced scale (``draft``: libjpeg's DCT scaling); large
  8-bit non-interlaced PNGs (the common big lossless case) are decoded in bands of
  rows, each band reduced before the next is inflated; everything else is decoded
  once and ``reduce()``-d at once;
- the working size is about twice what the caller asked for (``target_size``, the
  short side it needs), and at most :data:`WORK_MAX_SIDE` on the long side when it
  asked for nothing;
- a file whose single full decode would still exceed the budget (a 20-megapixel
  WebP, a huge progressive JPEG, a giant 16-bit PNG) is refused as too big.
"""

from __future__ import annotations

import io
import math
import struct
import warnings
import zlib
from collections.abc import Callable, Iterator

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from engine.errors import BadImage

ALLOWED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "GIF", "BMP", "MPO"})
DEFAULT_MAX_BYTES = 20 * 1024 * 1024  # Telegram's own bot download cap
DEFAULT_MAX_PIXELS = 40_000_000  # ~ 7700 x 5200; a 30000 x 30000 PNG is 900 M
WORK_MAX_SIDE = 2048  # long side of the working picture when the caller names no target size
DECODE_BUDGET = 48 * 1024 * 1024  # bytes one full decode may allocate (plus a small working copy)
_BAND_BYTES = 2 * 1024 * 1024  # raw PNG rows inflated at once in the banded decoder

# Bytes per pixel of Pillow's own storage, by mode (RGB is stored in 4 bytes).
_STORAGE = {"1": 1, "L": 1, "P": 1, "I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2}
_I16 = ("I;16", "I;16B", "I;16L", "I;16N")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type -> samples per pixel


def open_image(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    target_size: int | None = None,
) -> Image.Image:
    """Decode ``data`` into an upright RGB image, or raise :class:`BadImage`.

    ``target_size``: the short side the caller needs (e.g. the model's input); the
    picture comes back with a short side of about twice that (never less than it,
    unless the file is smaller). Without it the picture keeps its size up to
    :data:`WORK_MAX_SIDE` on the long side.
    """
    if not data:
        raise BadImage("That file is empty. Please send a photo.")
    if len(data) > max_bytes:
        raise BadImage(f"That image is too large ({_mb(len(data))}); the limit is {_mb(max_bytes)}.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            source = Image.open(io.BytesIO(data))
            if source.format not in ALLOWED_FORMATS:
                raise BadImage(
                    f"I can't read {source.format or 'that'} files. Please send a JPEG, PNG, WebP, GIF or BMP photo."
                )
            width, height = source.size
            if width <= 0 or height <= 0 or width * height > max_pixels:
                raise BadImage(f"That image is too big ({width}×{height} pixels). Please send a normal photo.")
            factor = reduce_factor(source.size, target_size)
            banded = _png_band_layout(data) if source.format == "PNG" and factor > 1 else None
            if banded is not None:
                img = _decode_png_in_bands(data, banded, factor)
            else:
                img = _decode_whole(source, factor, target_size)
            if img.getexif().get(0x0112, 1) != 1:  # only then: exif_transpose copies even when upright
                img = ImageOps.exif_transpose(img)
            return _to_rgb(img)
    except BadImage:
        raise
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        if isinstance(err, UnidentifiedImageError):
            raise BadImage("That doesn't look like an image I can read. Please send a JPEG or PNG photo.") from None
        raise BadImage("That image is too big to open safely. Please send a normal photo.") from None
    except (OSError, SyntaxError, ValueError, EOFError, zlib.error, struct.error):
        # Truncated or corrupt data surfaces as any of these, depending on the codec.
        raise BadImage("That image seems to be damaged or incomplete. Please send it again.") from None


def reduce_factor(size: tuple[int, int], target_size: int | None) -> int:
    """The integer factor to shrink a ``size`` picture by: short side still ≥ 2 × ``target_size``,
    long side ≤ max(:data:`WORK_MAX_SIDE`, 2 × ``target_size``)."""
    short, long = min(size), max(size)
    want = 2 * target_size if target_size else 0
    by_long = math.ceil(long / max(WORK_MAX_SIDE, want))
    by_short = short // want if want else 1
    return max(1, by_long, by_short)


def _decode_whole(img: Image.Image, factor: int, target_size: int | None) -> Image.Image:
    """One decode (JPEG at reduced scale), then reduce at once; refuse what would not fit the budget."""
    width, height = img.size
    if img.format in ("JPEG", "MPO"):
        if factor > 1:
            img.draft("RGB", (max(1, width // factor), max(1, height // factor)))
        if img.info.get("progressive") or img.info.get("progression"):
            # libjpeg keeps every DCT coefficient of a progressive file, whatever the output scale.
            estimate = _jpeg_coefficient_bytes(img)
        else:
            estimate = img.size[0] * img.size[1] * 4
    else:
        estimate = width * height * _STORAGE.get(img.mode, 4)
        if _needs_conversion_first(img):
            estimate += width * height * 4
    if estimate > DECODE_BUDGET:
        raise BadImage(f"That image is too big to open safely ({width}×{height} pixels). Please send a smaller photo.")
    if getattr(img, "is_animated", False):
        img.seek(0)
    img.load()
    if _needs_conversion_first(img):
        img = _reducible(img)
    residual = reduce_factor(img.size, target_size)
    return img.reduce(residual) if residual > 1 else img


def _jpeg_coefficient_bytes(img: Image.Image) -> int:
    """What libjpeg buffers for a progressive JPEG: 2 bytes per DCT coefficient of every component."""
    width, height = img.size
    layers = getattr(img, "layer", None) or [("", 1, 1, 0)] * 3
    h_max = max(int(layer[1]) for layer in layers) or 1
    v_max = max(int(layer[2]) for layer in layers) or 1
    total = 0
    for layer in layers:
        total += math.ceil(width * int(layer[1]) / h_max) * math.ceil(height * int(layer[2]) / v_max) * 2
    return total


def _needs_conversion_first(img: Image.Image) -> bool:
    """Modes that cannot be averaged as they are: palettes, 1-bit, 16-bit, colour keys."""
    return img.mode in ("P", "1", *_I16) or "transparency" in img.info


def _reducible(img: Image.Image) -> Image.Image:
    """The same picture in a mode ``reduce()`` averages correctly; a tRNS colour key becomes alpha."""
    key = img.info.get("transparency")
    if img.mode in _I16:
        values = np.asarray(img, dtype=np.uint16)
        grey = Image.fromarray((values >> 8).astype(np.uint8), "L")
        if isinstance(key, int):
            alpha = Image.fromarray(np.where(values == key, 0, 255).astype(np.uint8), "L")
            grey = Image.merge("LA", (grey, alpha))
        return grey
    if img.mode == "P":
        has_alpha = key is not None or (img.palette is not None and "A" in img.palette.mode)
        return img.convert("RGBA" if has_alpha else "RGB")
    if img.mode == "1":
        return img.convert("LA" if key is not None else "L")
    if key is not None and img.mode in ("L", "RGB"):
        return img.convert("LA" if img.mode == "L" else "RGBA")  # Pillow turns the key into alpha here
    return img


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f}".removesuffix(".0") + " MB"


def _to_rgb(img: Image.Image) -> Image.Image:
    """RGB on white: transparency becomes white, 16-bit and CMYK become 8-bit RGB."""
    if _needs_conversion_first(img):
        img = _reducible(img)
    img = _on_white(img)
    if img.mode == "I":
        img = img.point(lambda v: v / 256).convert("L")  # 32-bit greyscale (rare): scale, don't clip
    if img.mode != "RGB":
        img = img.convert("RGB")
    return img


def _on_white(img: Image.Image) -> Image.Image:
    """Alpha composited on white (RGB); pictures without alpha as they are."""
    if img.mode not in ("RGBA", "LA", "PA", "La", "RGBa"):
        return img
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    background.alpha_composite(rgba)
    return background.convert("RGB")


# ---- large PNGs, a band of rows at a time -------------------------------------------------
def _png_chunks(data: bytes) -> Iterator[tuple[bytes, memoryview]]:
    view = memoryview(data)
    pos = len(_PNG_SIGNATURE)
    while pos + 8 <= len(data):
        (length,) = struct.unpack_from(">I", data, pos)
        kind = bytes(view[pos + 4 : pos + 8])
        payload = view[pos + 8 : pos + 8 + length]
        if len(payload) < length:
            raise OSError("truncated PNG chunk")
        yield kind, payload
        if kind == b"IEND":
            return
        pos += 12 + length


def _png_band_layout(data: bytes) -> tuple[int, int, int, bytes] | None:
    """(width, height, colour type, PLTE+tRNS chunks) of an 8-bit, non-interlaced PNG, else None."""
    if not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR":
        return None
    width, height, depth, colour, _compression, _filter, interlace = struct.unpack_from(">IIBBBBB", data, 16)
    if depth != 8 or interlace != 0 or colour not in _PNG_CHANNELS:
        return None
    extra = b""
    for kind, payload in _png_chunks(data):
        if kind == b"IDAT":
            break
        if kind in (b"PLTE", b"tRNS"):
            extra += _png_chunk(kind, bytes(payload))
    return width, height, colour, extra


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


class _Inflater:
    """The PNG's filtered rows, inflated only as far as asked (a zlib bomb stops at what we take)."""

    def __init__(self, data: bytes) -> None:
        self._parts = (bytes(p) for kind, p in _png_chunks(data) if kind == b"IDAT")
        self._zlib = zlib.decompressobj()
        self._tail = b""
        self._buffer = bytearray()

    def take(self, n: int) -> bytes:
        while len(self._buffer) < n and not self._zlib.eof:
            chunk = self._tail or next(self._parts, b"")
            if not chunk:
                break
            self._buffer += self._zlib.decompress(chunk, n - len(self._buffer))
            self._tail = self._zlib.unconsumed_tail
        if len(self._buffer) < n:
            raise OSError("PNG image data ends early")
        out = bytes(self._buffer[:n])
        del self._buffer[:n]
        return out


def _decode_png_in_bands(data: bytes, layout: tuple[int, int, int, bytes], factor: int) -> Image.Image:
    """Decode ``factor``-reduced: each band of rows becomes a small PNG of its own (the band's
    filtered rows after the previous band's last row, unfiltered), which Pillow decodes and
    we reduce at once. Peak memory: a few bands and the reduced output."""
    width, height, colour, extra = layout
    stride = width * _PNG_CHANNELS[colour]
    rows_per_band = factor * max(1, _BAND_BYTES // max(1, (stride + 1) * factor))
    inflater = _Inflater(data)
    out: Image.Image | None = None
    previous: bytes | None = None  # last row of the band before, unfiltered
    y = 0
    while y < height:
        rows = min(rows_per_band, height - y)
        filtered = inflater.take(rows * (stride + 1))
        head = b"" if previous is None else b"\x00" + previous  # filter type 0: the row as is
        skip = 0 if previous is None else 1
        ihdr = struct.pack(">IIBBBBB", width, rows + skip, 8, colour, 0, 0, 0)
        mini = (
            _PNG_SIGNATURE
            + _png_chunk(b"IHDR", ihdr)
            + extra
            + _png_chunk(b"IDAT", zlib.compress(head + filtered, 0))
            + _png_chunk(b"IEND", b"")
        )
        with Image.open(io.BytesIO(mini)) as band_file:
            band_file.load()
            band = band_file.crop((0, skip, width, rows + skip)) if skip else band_file.copy()
        previous = band.crop((0, rows - 1, width, rows)).tobytes()
        small = _on_white(_reducible(band).reduce(factor))  # the output never holds alpha
        if out is None:
            out = Image.new(small.mode, (math.ceil(width / factor), math.ceil(height / factor)))
        out.paste(small, (0, y // factor))
        y += rows
    if out is None:
        raise OSError("PNG without rows")
    return out


KEPT_SIDE = 512  # long side of the picture a catalogue item keeps


def shrunk(img: Image.Image, max_side: int = KEPT_SIDE) -> Image.Image:
    """``img`` with its long side at most ``max_side`` (itself when it already fits).

    Bicubic, Pillow's own choice for thumbnails: at an ingest's typical 0.64× it looks the
    same as Lanczos at three quarters of the cost, and this resize was the biggest single
    CPU cost of a feed ingest (issue 19: more than the model's share of the two cores)."""
    w, h = img.size
    scale = max_side / max(w, h)
    if scale >= 1:
        return img
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return img.resize(size, Image.Resampling.BICUBIC, reducing_gap=2.0)


def jpeg_bytes(img: Image.Image, *, quality: int = 88) -> bytes:
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=quality, optimize=True)
    return out.getvalue()


def to_jpeg(img: Image.Image, *, max_side: int = KEPT_SIDE, quality: int = 88) -> bytes:
    """A compact JPEG copy, e.g. the picture we keep for a catalogue item."""
    return jpeg_bytes(shrunk(img, max_side), quality=quality)


def picture_check(
    *, max_bytes: int = DEFAULT_MAX_BYTES, max_pixels: int = DEFAULT_MAX_PIXELS, side: int = 512
) -> Callable[[bytes], bytes]:
    """The scraper's injected picture check: downloaded bytes -> the compact JPEG to keep
    (long side ≤ ``side``), or :class:`BadImage`. Blocking; the crawl runs it off the loop."""

    def check(data: bytes) -> bytes:
        return to_jpeg(open_image(data, max_bytes=max_bytes, max_pixels=max_pixels, target_size=side), max_side=side)

    return check
