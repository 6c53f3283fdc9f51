"""Pictures the tests (and bench/) send: Fashion-MNIST photos as a chat would deliver
them, and a small corpus of bad files every front-end must refuse kindly."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def fmnist_jpeg(pixels28: np.ndarray, size: int = 280) -> bytes:
    """A Fashion-MNIST image as a chat photo would arrive: a JPEG, upscaled, dark on white."""
    from engine.catalogue.ingest import fashion_mnist_picture

    img = fashion_mnist_picture(pixels28).resize((size, size), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=90)
    return out.getvalue()


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    out = io.BytesIO()
    img.save(out, format=fmt, **kw)
    return out.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width×height pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def sample_rgb(w: int = 64, h: int = 48) -> Image.Image:
    arr = np.zeros((h, w, 3), dtype=np.uint8)
    arr[:, : w // 2] = (200, 30, 30)  # red left half
    arr[:, w // 2 :] = (30, 30, 200)  # blue right half
    return Image.fromarray(arr)


BAD = {
    "empty file": b"",
    "text named .jpg": b"Hello, this is not a picture at all.\n" * 10,
    "truncated JPEG": encode(sample_rgb(256, 256), "JPEG")[:600],
    "PNG declaring 30000x30000": png_declaring(30000, 30000),
}
