"""One JPEG that shows a user's styles: a labelled row of item thumbnails per cluster.

Chat platforms show one picture far better than ten small messages, so
``/style`` sends this collage next to the text summary. Thumbnails are decoded
through :func:`engine.vision.images.open_image` (the one place that opens outside
images, with its byte and pixel caps); a thumbnail that can't be decoded becomes
a grey placeholder tile instead of failing the whole collage.
"""

from __future__ import annotations

import functools
import io
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont, ImageOps

from engine.vision.images import BadImage, open_image

__all__ = ["CollageLayout", "collage_layout", "render_collage"]

BACKGROUND = (247, 245, 242)  # warm off-white: thumbnails shot on white still stand out
TILE = (255, 255, 255)
TILE_BORDER = (224, 220, 214)
PLACEHOLDER = (208, 208, 208)
PLACEHOLDER_MARK = (170, 170, 170)
LABEL_COLOUR = (34, 34, 34)
SHARE_COLOUR = (120, 115, 108)
TITLE_COLOUR = (20, 20, 20)
ELLIPSIS = "…"

# Layout, as fractions of the thumbnail side so every size looks the same.
MARGIN_RATIO = 0.15
GAP_RATIO = 0.0625
ROW_GAP_RATIO = 0.15
LABEL_GAP_RATIO = 0.05
TILE_PAD_RATIO = 0.04
LABEL_FONT_RATIO = 0.14
TITLE_FONT_RATIO = 0.18


@dataclass(frozen=True)
class CollageLayout:
    """Pixel geometry of a collage; ``tile_box`` says where each thumbnail goes."""

    rows: int
    cols: int
    thumb: int
    margin: int
    gap: int
    row_gap: int
    label_gap: int
    label_height: int
    title_height: int  # 0 without a title (includes the space below the title)

    @property
    def row_height(self) -> int:
        return self.label_height + self.label_gap + self.thumb

    @property
    def size(self) -> tuple[int, int]:
        width = 2 * self.margin + self.cols * self.thumb + (self.cols - 1) * self.gap
        body = self.rows * self.row_height + (self.rows - 1) * self.row_gap
        return width, 2 * self.margin + self.title_height + body

    def row_top(self, row: int) -> int:
        """Top of a row's label line."""
        return self.margin + self.title_height + row * (self.row_height + self.row_gap)

    def tile_box(self, row: int, col: int) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of a thumbnail tile, right/bottom exclusive."""
        left = self.margin + col * (self.thumb + self.gap)
        top = self.row_top(row) + self.label_height + self.label_gap
        return left, top, left + self.thumb, top + self.thumb


def collage_layout(rows: int, cols: int, *, thumb: int = 160, title: bool = False) -> CollageLayout:
    """Geometry for ``rows`` clusters of at most ``cols`` thumbnails of ``thumb`` pixels."""
    if rows < 1 or cols < 1:
        raise ValueError("a collage needs at least one row and one column")
    if thumb < 32:
        raise ValueError("thumb must be at least 32 pixels")
    label_font, title_font = _fonts(thumb)
    title_height = _line_height(title_font) + round(thumb * ROW_GAP_RATIO) if title else 0
    return CollageLayout(
        rows=rows,
        cols=cols,
        thumb=thumb,
        margin=round(thumb * MARGIN_RATIO),
        gap=round(thumb * GAP_RATIO),
        row_gap=round(thumb * ROW_GAP_RATIO),
        label_gap=round(thumb * LABEL_GAP_RATIO),
        label_height=_line_height(label_font),
        title_height=title_height,
    )


def render_collage(
    rows: Sequence[tuple[str, Sequence[bytes]]],
    *,
    thumb: int = 160,
    max_items: int = 5,
    shares: Sequence[float] | None = None,
    title: str | None = None,
    quality: int = 88,
) -> bytes:
    """Render ``(label, thumbnails)`` rows into one JPEG and return its bytes.

    Each row gets its label above up to ``max_items`` thumbnails (JPEG/PNG/...
    bytes, letterboxed on white tiles). ``shares`` (fractions 0..1, one per row)
    are written right-aligned on the label line ("64% of photos"). A row without
    thumbnails shows one placeholder tile so the label never floats alone.
    """
    if not rows:
        raise ValueError("render_collage needs at least one row")
    if max_items < 1:
        raise ValueError("max_items must be >= 1")
    if shares is not None and len(shares) != len(rows):
        raise ValueError("shares must have one value per row")
    cols = max(1, min(max_items, max(len(thumbs) for _, thumbs in rows)))
    layout = collage_layout(len(rows), cols, thumb=thumb, title=bool(title))
    canvas = Image.new("RGB", layout.size, BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    label_font, title_font = _fonts(thumb)
    width = layout.size[0]
    if title:
        draw.text(
            (layout.margin, layout.margin),
            _fit(title, title_font, width - 2 * layout.margin),
            font=title_font,
            fill=TITLE_COLOUR,
        )
    for r, (label, thumbs) in enumerate(rows):
        share = None if shares is None else shares[r]
        _draw_label(draw, layout, r, label, share, label_font)
        for c, data in enumerate(list(thumbs)[:cols] or [b""]):
            _paste_tile(canvas, draw, layout.tile_box(r, c), data)
    out = io.BytesIO()
    # 4:4:4 chroma keeps the label text crisp; the file stays small (flat background).
    canvas.save(out, format="JPEG", quality=quality, subsampling=0, optimize=True)
    return out.getvalue()


def _draw_label(
    draw: ImageDraw.ImageDraw,
    layout: CollageLayout,
    row: int,
    label: str,
    share: float | None,
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
) -> None:
    """Label on the left, share on the right; the label is shortened, never overlapped."""
    top = layout.row_top(row)
    right = layout.size[0] - layout.margin
    room: float = right - layout.margin
    if share is not None:
        share_text = f"{max(0.0, min(1.0, share)):.0%} of photos"
        share_width = draw.textlength(share_text, font=font)
        draw.text((right - share_width, top), share_text, font=font, fill=SHARE_COLOUR)
        room -= share_width + layout.gap * 2
    draw.text((layout.margin, top), _fit(label, font, room), font=font, fill=LABEL_COLOUR)


def _paste_tile(canvas: Image.Image, draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int], data: bytes) -> None:
    """A white tile with a thin border and the letterboxed thumbnail, or a placeholder."""
    left, top, right, bottom = box
    side = right - left
    image = _decode(data, side)
    if image is None:
        draw.rectangle((left, top, right - 1, bottom - 1), fill=PLACEHOLDER)
        _draw_placeholder_mark(draw, box)
        return
    draw.rectangle((left, top, right - 1, bottom - 1), fill=TILE, outline=TILE_BORDER)
    pad = max(1, round(side * TILE_PAD_RATIO))
    inner = side - 2 * pad
    resample = Image.Resampling.LANCZOS if max(image.size) > inner else Image.Resampling.BICUBIC
    fitted = ImageOps.contain(image, (inner, inner), method=resample)
    canvas.paste(fitted, (left + (side - fitted.width) // 2, top + (side - fitted.height) // 2))


def _draw_placeholder_mark(draw: ImageDraw.ImageDraw, box: tuple[int, int, int, int]) -> None:
    """A simple picture-frame mark so a grey tile reads as "missing picture"."""
    left, top, right, bottom = box
    side = right - left
    inset = side * 3 // 8
    width = max(2, side // 40)
    draw.rectangle((left + inset, top + inset, right - inset, bottom - inset), outline=PLACEHOLDER_MARK, width=width)
    draw.line((left + inset, bottom - inset, right - inset, top + inset), fill=PLACEHOLDER_MARK, width=width)


def _decode(data: bytes, side: int) -> Image.Image | None:
    """Decode a thumbnail through the guarded opener; None when it can't be used."""
    if not isinstance(data, (bytes, bytearray, memoryview)) or not data:
        return None
    try:
        return open_image(bytes(data), target_size=side)
    except (BadImage, OSError, ValueError):
        return None


def _fit(text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont, room: float) -> str:
    """``text`` shortened with an ellipsis to fit ``room`` pixels."""
    text = " ".join(text.split())
    if _width(text, font) <= room:
        return text
    while text and _width(text + ELLIPSIS, font) > room:
        text = text[:-1]
    return (text.rstrip() + ELLIPSIS) if text else ""


def _width(text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont) -> float:
    return font.getlength(text)


def _line_height(font: ImageFont.ImageFont | ImageFont.FreeTypeFont) -> int:
    """Height of a line drawn from its top: ascender to the lowest descender."""
    return int(font.getbbox("ÅgjpyQ|")[3])


@functools.lru_cache(maxsize=8)
def _fonts(thumb: int) -> tuple[ImageFont.ImageFont | ImageFont.FreeTypeFont, ...]:
    """Label and title fonts: Pillow's bundled default font, scaled with the thumbnails.

    ``load_default(size=...)`` needs Pillow >= 10.1 with FreeType; without it we
    fall back to the small bitmap font rather than failing.
    """
    return tuple(_default_font(max(11, round(thumb * ratio))) for ratio in (LABEL_FONT_RATIO, TITLE_FONT_RATIO))


def _default_font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # old Pillow or no FreeType
        return ImageFont.load_default()
