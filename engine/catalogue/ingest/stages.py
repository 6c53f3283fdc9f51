"""The work between reading and writing: get each row's picture, decode and letterbox it
(the decode stage), then turn a chunk of pixels into vectors (the embed stage).

Decoding runs on the encoder's bounded pool (``engine.vision.images`` checks every
outside picture); remote pictures are fetched through the scraper's guarded
:class:`scraper.Fetcher` (vetted resolver and SSRF guard at every hop, robots.txt,
size caps, timeouts, no proxies). Every failure of one row, whatever its kind, becomes
that row's ``(line, reason)``; the chunk goes on.

The embed stage is any ``Embed``: an async function from a stack of pixels to unit
vectors. The default is the encoder's (the embedder's worker with micro-batching);
a benchmark or another runtime swaps it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from engine.catalogue.ingest.rows import BadRow, Row
from engine.errors import BadImage
from engine.vision.encoder import Encoder, PreparedImage
from scraper import Fetcher, FetchError

log = logging.getLogger(__name__)

Embed = Callable[[np.ndarray], Awaitable[np.ndarray]]
FETCH_CONCURRENCY = 16  # remote pictures in flight per chunk (the fetcher also caps per host)


@dataclass
class Decoded:
    """A chunk after the decode stage: the rows that are ready (their items carry the kept
    picture), their pixels stacked, and the rows that failed."""

    rows: list[Row] = field(default_factory=list)
    pixels: np.ndarray | None = None
    bad: list[BadRow] = field(default_factory=list)


def read_capped(path: Path, max_bytes: int) -> bytes:
    with open(path, "rb") as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise BadImage(f"image over {max_bytes} bytes")
    return data


def describe_failure(err: BaseException) -> str:
    """A row's reason, short and specific: what the operator should fix in the feed."""
    if isinstance(err, BadImage):
        return str(err)
    if isinstance(err, FetchError):
        return f"picture not fetched: {err}"
    if isinstance(err, FileNotFoundError):
        return f"image file not found: {Path(err.filename or '?').name}"
    if isinstance(err, OSError):
        return f"image unavailable: {err.strerror or type(err).__name__}"
    return f"image unavailable: {type(err).__name__}: {err}"


class Decoder:
    """The decode stage: ``await decoder(rows)`` → :class:`Decoded`."""

    def __init__(self, encoder: Encoder, *, fetcher: Fetcher | None = None) -> None:
        self.encoder = encoder
        self.fetcher = fetcher
        self.max_bytes = encoder.settings.max_image_bytes
        self._fetch_slots = asyncio.Semaphore(FETCH_CONCURRENCY)

    async def __call__(self, rows: list[Row]) -> Decoded:
        results = await asyncio.gather(*(self._one(r) for r in rows))
        out = Decoded()
        stacks = []
        for row, result in zip(rows, results):
            if isinstance(result, str):
                out.bad.append((row.line, result))
                log.warning("line %d skipped: %s", row.line, result)
                continue
            out.rows.append(replace(row, item=replace(row.item, image=result.jpeg or b"")) if row.keep else row)
            stacks.append(result.pixels)
        if stacks:
            out.pixels = np.stack(stacks)
        return out

    async def _one(self, row: Row) -> PreparedImage | str:
        """The row's prepared picture, or the reason it has none. Catches everything but
        cancellation: one bad host or file never aborts the ingest."""
        try:
            if row.synth is not None:
                return await self.encoder.run(row.synth, self.encoder.input_size)
            if row.path is not None:
                return await self.encoder.run(self._from_file, row.path, row.keep)
            data = row.data
            if row.url is not None:
                data = await self._fetch(row.url)
            if data is None:
                return "no picture"
            return await self.encoder.prepare(data, keep=row.keep)
        except Exception as err:  # noqa: BLE001 - per-row: reported with its line, the ingest goes on
            return describe_failure(err)

    def _from_file(self, path: Path, keep: bool) -> PreparedImage:
        return self.encoder.prepare_sync(read_capped(path, self.max_bytes), keep)

    async def _fetch(self, url: str) -> bytes:
        if self.fetcher is None:
            raise FetchError("remote pictures need the guarded fetcher", url)
        async with self._fetch_slots:
            return (await self.fetcher.fetch_image(url)).body


def model_embed(encoder: Encoder) -> Embed:
    """The default executor: the embedder's worker thread, micro-batched."""
    return encoder.embed
