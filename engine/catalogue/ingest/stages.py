"""The work between reading and writing: get each row's picture, decode and letterbox it
(the decode stage), then turn a chunk of pixels into vectors (the embed stage).

Decoding runs on the encoder's bounded pool (``engine.vision.images`` checks every
outside picture); remote pictures are fetched through the scraper's guarded
:class:`scraper.Fetcher` (vetted resolver and SSRF guard at every hop, robots.txt,
size caps, timeouts, no proxies). Every failure of one row, whatever its kind, becomes
that row's ``(line, reason)``; the chunk goes on.

The embed stage is any ``Embed``: an async function from a stack of pixels to unit
vectors. The default is the encoder's (the embedder's worker with micro-batching); the
service uses :func:`interleaved_embed` (the same worker, a batch at a time, so chat
photos get between an ingest's batches); a benchmark or another runtime swaps it.
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
DECODE_SLICES = 2  # pool tasks per chunk: the encoder's pool has two workers


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
        # Remote pictures first (concurrently, on the loop), then one pool task per slice of
        # the chunk: a few hand-offs per chunk instead of one per picture.
        fetched = await asyncio.gather(*(self._bytes(r) for r in rows))
        slices = [list(range(k, len(rows), DECODE_SLICES)) for k in range(min(DECODE_SLICES, len(rows)))]
        done = await asyncio.gather(
            *(self.encoder.run(self._decode_slice, [rows[i] for i in idx], [fetched[i] for i in idx]) for idx in slices)
        )
        results: list[PreparedImage | str] = [""] * len(rows)
        for idx, out in zip(slices, done):
            for i, result in zip(idx, out):
                results[i] = result
        decoded = Decoded()
        stacks = []
        for row, result in zip(rows, results):
            if isinstance(result, str):
                decoded.bad.append((row.line, result))
                log.warning("line %d skipped: %s", row.line, result)
                continue
            decoded.rows.append(replace(row, item=replace(row.item, image=result.jpeg or b"")) if row.keep else row)
            stacks.append(result.pixels)
        if stacks:
            decoded.pixels = np.stack(stacks)
        return decoded

    async def _bytes(self, row: Row) -> bytes | str | None:
        """A remote row's picture bytes (or the reason there are none); None for other rows.
        Catches everything but cancellation: one bad host never aborts the ingest."""
        if row.url is None:
            return None
        try:
            return await self._fetch(row.url)
        except Exception as err:
            return describe_failure(err)

    def _decode_slice(self, rows: list[Row], fetched: list[bytes | str | None]) -> list[PreparedImage | str]:
        """Blocking, on the pool: each row's prepared picture, or the reason it has none."""
        out: list[PreparedImage | str] = []
        for row, data in zip(rows, fetched):
            if isinstance(data, str):
                out.append(data)
                continue
            try:
                out.append(self._prepare(row, data))
            except Exception as err:
                out.append(describe_failure(err))
        return out

    def _prepare(self, row: Row, fetched: bytes | None) -> PreparedImage:
        if row.synth is not None:
            return row.synth(self.encoder.input_size)
        data = fetched if fetched is not None else row.data
        if row.path is not None:
            data = read_capped(row.path, self.max_bytes)
        if data is None:
            raise BadImage("no picture")
        return self.encoder.prepare_sync(data, row.keep)

    async def _fetch(self, url: str) -> bytes:
        if self.fetcher is None:
            raise FetchError("remote pictures need the guarded fetcher", url)
        async with self._fetch_slots:
            return (await self.fetcher.fetch_image(url)).body


def model_embed(encoder: Encoder) -> Embed:
    """The default executor: the embedder's worker thread, micro-batched."""
    return encoder.embed


INTERLEAVE_WINDOW = 3  # hand-overs queued at the model at once: the model never waits for the loop
INTERLEAVE_IMAGES = 16  # pictures per hand-over, at least (a whole number of model batches)


def interleaved_embed(encoder: Encoder, *, window: int = INTERLEAVE_WINDOW, images: int = INTERLEAVE_IMAGES) -> Embed:
    """The embedder's worker too, but the ingest's pictures go to it a few model batches
    at a time (``images`` or more, a whole number of batches), at most ``window`` of those
    queued at once over all the chunks in flight, and the chunks in order (the first
    chunk's items are indexed first). The worker's queue is first come, first served: with
    whole chunks, a chat photo arriving mid-ingest waited behind the 3-4 chunks of 128 the
    pipeline keeps in flight (3-7 s in the demo); now it waits behind at most
    ``window × images`` pictures (~0.1-0.3 s). Measured on 2 cores (EfficientNet-Lite0,
    5,000 Fashion-MNIST items): the rate is the whole chunks' within noise; hand-overs of
    one batch each cost 2-6 % (each is a round trip through the loop and the GIL).
    One per ingest: the window is shared by that ingest's chunks."""
    batch = max(1, encoder.embedder.batch_size)
    size = batch * max(1, -(-images // batch))
    slots = asyncio.Semaphore(window)
    turn = asyncio.Lock()  # FIFO: a chunk hands all its pictures over before the next one starts

    def free_slot(_: asyncio.Future[np.ndarray]) -> None:
        slots.release()

    async def embed(pixels: np.ndarray) -> np.ndarray:
        parts: list[asyncio.Future[np.ndarray]] = []
        try:
            async with turn:
                for start in range(0, len(pixels), size):
                    await slots.acquire()
                    handed = asyncio.ensure_future(encoder.embed(pixels[start : start + size]))
                    handed.add_done_callback(free_slot)  # done, failed or cancelled alike
                    parts.append(handed)
            out = [await part for part in parts]
        except BaseException:
            for part in parts:  # cancelled or failed: the worker skips what it hasn't started
                part.cancel()
            raise
        return np.concatenate(out) if out else np.empty((0, encoder.backbone.dim), dtype=np.float32)

    return embed
