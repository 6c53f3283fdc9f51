"""Pictures on Telegram: which version of a user's photo to download, and the
catalogue pictures of an album (uploaded once, then sent by Telegram's file_id)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Sequence

from telegram import PhotoSize

from bot.lru import Lru
from bot.pictures import chat_jpeg_async, placeholder_jpeg
from engine.api import FashionAPI
from engine.errors import ServiceError
from engine.types import ScoredItem

log = logging.getLogger(__name__)

DISPLAY_SIDE = 280  # tiny catalogue pictures (Fashion-MNIST is 28 px) are upscaled to this
DISPLAY_MAX_SIDE = 1280  # and big ones scaled down: Telegram recompresses anyway
PHOTO_MIN_SIDE = 640  # enough pixels for the backbone; no need to fetch the 2560 px version
PICTURE_FETCH_CONCURRENCY = 4  # catalogue pictures read from the database at once


def pick_photo(sizes: Sequence[PhotoSize], limit: int) -> PhotoSize | None:
    """The version of a photo to download: among those whose declared size is within
    ``limit``, the smallest with at least PHOTO_MIN_SIDE pixels on its short side (the
    backbone needs no more), else the largest. None when every version is too big."""
    fitting = [p for p in sizes if p.file_size is None or p.file_size <= limit]
    if not fitting:
        return None
    fitting.sort(key=lambda p: p.width * p.height)
    for p in fitting:
        if min(p.width, p.height) >= PHOTO_MIN_SIDE:
            return p
    return fitting[-1]


class AlbumPictures:
    """Display JPEGs of catalogue items and the file_ids Telegram gave them."""

    def __init__(self, service: FashionAPI) -> None:
        self.service = service
        self.slots = asyncio.Semaphore(PICTURE_FETCH_CONCURRENCY)
        self.pictures: Lru[int, bytes] = Lru(1024)  # item id -> display JPEG
        self.file_ids: Lru[int, str] = Lru(8192)  # item id -> file_id of its uploaded picture
        self._fetching: dict[int, asyncio.Future[bytes]] = {}  # item id -> picture being prepared
        self._placeholder: bytes | None = None

    async def for_items(self, items: Iterable[ScoredItem], *, reuse: bool) -> list[str | bytes]:
        """Per item: a file_id Telegram already has, else display JPEG bytes to upload."""

        async def one(item_id: int) -> str | bytes:
            known = self.file_ids.get(item_id) if reuse else None
            return known or self.pictures.get(item_id) or await self.picture(item_id)

        return list(await asyncio.gather(*(one(s.item.id) for s in items)))

    def forget_file_ids(self, items: Iterable[ScoredItem]) -> bool:
        """Drop the file_ids of ``items`` (stale after a BadRequest); True when any was known."""
        return any([self.file_ids.pop(s.item.id) is not None for s in items])

    async def picture(self, item_id: int) -> bytes:
        """An item's display JPEG (the placeholder when it has no usable picture); one
        database read and conversion per item even when many users want it at once."""
        pending = self._fetching.get(item_id)
        if pending is not None:
            try:
                return await asyncio.shield(pending)
            except Exception:  # the first asker was cancelled: fetch it ourselves
                return await self.picture(item_id)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._fetching[item_id] = future
        try:
            jpeg = None
            try:
                async with self.slots:
                    raw = await self.service.item_image(item_id)
                jpeg = await chat_jpeg_async(raw, min_side=DISPLAY_SIDE, max_side=DISPLAY_MAX_SIDE) if raw else None
            except ServiceError:
                pass
            except Exception as err:  # one picture never sinks a reply
                log.warning("item %d: picture unavailable: %r", item_id, err)
            if jpeg is not None:
                self.pictures.put(item_id, jpeg)
            result = jpeg or self.placeholder
            future.set_result(result)
            return result
        except BaseException:  # cancelled: waiters fetch it themselves
            if not future.done():
                future.set_exception(RuntimeError("picture fetch cancelled"))
                future.exception()  # retrieved: no "never retrieved" warning
            raise
        finally:
            self._fetching.pop(item_id, None)

    @property
    def placeholder(self) -> bytes:
        if self._placeholder is None:
            self._placeholder = placeholder_jpeg(DISPLAY_SIDE)
        return self._placeholder
