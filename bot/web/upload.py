"""Reading a photo upload: streamed, capped while it is read, never buffered whole."""

from __future__ import annotations

import json

from aiohttp import BodyPartReader, web

from bot import render
from bot.guards import declared_size_problem
from engine.types import Box

MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers around the photo
CHUNK = 64 * 1024
NO_PHOTO = "Please attach a photo (a JPEG, PNG, WebP, GIF or BMP file)."
NOT_MULTIPART = "Please upload the photo as multipart/form-data with a field named “photo”."
STREAM_TOO_LARGE = "That photo is too large; I can take photos up to {limit} MB."
BAD_REGION = "I couldn't read the box you drew. Please draw it again."


class TooLarge(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)


def parse_region(text: str | None) -> Box | None:
    """The ``region`` field: JSON ``{"x0": …, "y0": …, "x1": …, "y1": …}`` in 0..1."""
    if not text:
        return None
    try:
        data = json.loads(text)
        return Box(float(data["x0"]), float(data["y0"]), float(data["x1"]), float(data["y1"]))
    except (ValueError, TypeError, KeyError):
        raise web.HTTPBadRequest(text=BAD_REGION) from None


async def read_photo(request: web.Request, limit: int) -> tuple[bytes, dict[str, str]]:
    """The ``photo`` field of a multipart body, read in chunks and abandoned as soon as
    it passes ``limit`` bytes: a 2 GB upload costs us ``limit`` bytes of memory, not 2 GB.
    Small text fields (``region``, ``whole_photo``) come back in a dict."""
    declared = request.content_length
    if declared is not None and declared_size_problem(declared - MULTIPART_OVERHEAD, limit):
        raise TooLarge(render.too_large(declared, limit))
    if request.content_type != "multipart/form-data":
        raise web.HTTPBadRequest(text=NOT_MULTIPART)
    too_large = STREAM_TOO_LARGE.format(limit=render.megabytes(limit).removesuffix(" MB"))
    try:
        reader = await request.multipart()
        photo: bytes | None = None
        fields: dict[str, str] = {}
        other = 0
        while True:
            part = await reader.next()
            if part is None:
                break
            if not isinstance(part, BodyPartReader):
                raise web.HTTPBadRequest(text=NO_PHOTO)
            if part.name == "photo" and photo is None:
                buf = bytearray()
                while chunk := await part.read_chunk(CHUNK):
                    buf += chunk
                    if len(buf) > limit:
                        raise TooLarge(too_large)
                photo = bytes(buf)
            elif part.name in ("region", "whole_photo") and part.name not in fields:
                text = bytearray()
                while chunk := await part.read_chunk(CHUNK):
                    text += chunk
                    other += len(chunk)
                    if other > MULTIPART_OVERHEAD:
                        raise TooLarge(too_large)
                fields[part.name] = text.decode("utf-8", "replace")
            else:  # other fields: read and dropped, within a small budget
                while chunk := await part.read_chunk(CHUNK):
                    other += len(chunk)
                    if other > MULTIPART_OVERHEAD:
                        raise TooLarge(too_large)
    except (ValueError, AssertionError, RuntimeError):
        raise web.HTTPBadRequest(text=NOT_MULTIPART) from None
    if not photo:
        raise web.HTTPBadRequest(text=NO_PHOTO)
    return photo, fields
