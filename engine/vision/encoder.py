"""The vision room's one door for the rest of the engine: bytes → decoded picture →
unit vector, off the event loop.

Decoding runs on a small bounded pool (parsing untrusted input never runs on the
loop, and never more than ``workers`` at once); model work runs on the embedder's
worker thread, which micro-batches requests that arrive together. The catalogue,
the trends and the service all embed through here, so there is one place that
says how a picture becomes a vector.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

import numpy as np
from PIL import Image

from engine.config import EngineSettings
from engine.vision.backbones import LoadedBackbone
from engine.vision.embedder import Embedder, prepare
from engine.vision.images import jpeg_bytes, open_image, shrunk

T = TypeVar("T")


@dataclass(frozen=True)
class PreparedImage:
    """A decoded picture: pixels ready for the backbone and, when asked, a compact JPEG
    to keep (catalogue items keep one; users' photos never do)."""

    pixels: np.ndarray
    jpeg: bytes | None


class Encoder:
    """Decode and embed pictures for one loaded model."""

    def __init__(self, settings: EngineSettings, embedder: Embedder, pool: Executor) -> None:
        self.settings = settings
        self.embedder = embedder
        self.backbone: LoadedBackbone = embedder.backbone
        self._pool = pool

    @property
    def input_size(self) -> int:
        return self.embedder.input_size

    @property
    def model_key(self) -> str:
        return self.backbone.model_key

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn`` on the bounded decode pool (not the model's thread)."""
        return await asyncio.get_running_loop().run_in_executor(self._pool, partial(fn, *args))

    def decode_sync(self, data: bytes, *, working_size: int | None = None) -> Image.Image:
        """Blocking: open outside bytes with the settings' caps (raises ``BadImage``)."""
        return open_image(
            data,
            max_bytes=self.settings.max_image_bytes,
            max_pixels=self.settings.max_image_pixels,
            target_size=working_size or self.input_size,
        )

    def prepare_sync(self, data: bytes, keep: bool = False) -> PreparedImage:
        """Blocking: the model's pixels and, with ``keep``, the JPEG the item keeps. The
        pixels come from the kept picture (≥ 2× the model's side): one resize of the
        full picture instead of two, and the vector is the one a reindex of the kept
        picture computes again."""
        img = self.decode_sync(data)
        if not keep:
            return PreparedImage(prepare(img, self.input_size), None)
        kept = shrunk(img)
        source = kept if max(kept.size) >= 2 * self.input_size else img
        return PreparedImage(prepare(source, self.input_size), jpeg_bytes(kept))

    async def decode(self, data: bytes, *, working_size: int | None = None) -> Image.Image:
        """Decode off the loop; raises ``BadImage`` with a friendly message."""
        return await self.run(partial(self.decode_sync, working_size=working_size), data)

    async def prepare(self, data: bytes, *, keep: bool = False) -> PreparedImage:
        """Decode and letterbox off the loop; raises ``BadImage`` with a friendly message."""
        return await self.run(self.prepare_sync, data, keep)

    async def embed(self, pixels: np.ndarray) -> np.ndarray:
        """Unit vectors for a stack of prepared pictures (N, H, W, 3) uint8."""
        return await asyncio.wrap_future(self.embedder.submit(pixels))

    async def embed_pictures(self, pictures: list[Image.Image]) -> np.ndarray:
        """Unit vectors for decoded pictures (letterboxed off the loop, one model batch)."""
        size = self.input_size
        stack = await self.run(lambda: np.stack([prepare(p, size) for p in pictures]))
        return await self.embed(stack)

    async def embed_bytes(self, data: bytes) -> np.ndarray:
        prepared = await self.prepare(data)
        return await self.embedder.embed_one(prepared.pixels)

    def serving(self) -> AbstractContextManager[None]:
        """One request being answered while inside (``Embedder.serving``: its model
        calls wait for company only when another request is being answered too)."""
        return self.embedder.serving()

    async def on_model_thread(self, fn: Callable[[], T]) -> T:
        """Other torch work (the garment finder) runs on the model's thread, between
        batches: a second OpenMP team on two cores slows both."""
        return await asyncio.wrap_future(self.embedder.call_on_worker(fn))

    async def on_model_thread_grouped(self, key: object, item: Any, fn: Callable[[list[Any]], list[T]]) -> T:
        """``fn`` over this ``item`` and those of other requests with the same ``key`` that
        arrive together, as one call on the model's thread (a burst of scans is one batch)."""
        return await asyncio.wrap_future(self.embedder.call_grouped(key, item, fn))

    def close(self) -> None:
        self.embedder.close()
