"""The runner: readers → admit → decode → embed → write, with the stages overlapping.

Each stage is its own task, joined by bounded queues, so while the model embeds
chunk N, chunk N+1 is being fetched/decoded/letterboxed (on the decode pool) and
chunk N−1 is being committed and indexed; the model's queue never runs dry while
there is work, and at most ``depth`` chunks wait between two stages (memory stays
bounded: a chunk of 128 pictures at 224² is 19 MB of pixels).

::

    read+admit ──q──▶ decode ──q──▶ (embed submitted) ──▶ write ──▶ progress
       (DB: known ids)   (pool, fetcher)   (model worker)      (DB, then index)

Progress is reported per chunk, when its last row is written, skipped or found bad.
A failure of one row is that row's ``(line, reason)``; a failure of a stage (the
database, the model) cancels the others and is raised.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass

import numpy as np

from engine.api import Progress
from engine.catalogue.ingest.rows import BadRow, Row, RowOrBad
from engine.catalogue.ingest.stages import Decoded, Decoder, Embed
from engine.catalogue.ingest.status import IngestStatus
from engine.catalogue.ingest.writer import Writer
from engine.types import IngestReport

log = logging.getLogger(__name__)

DEPTH = 2  # chunks in flight between two stages
_END = None


@dataclass
class _Admitted:
    rows: list[Row]
    size: int  # input rows this chunk stands for (for progress)
    bad: list[BadRow]
    skipped: int


@dataclass
class _Embedding:
    admitted: _Admitted
    decoded: Decoded
    vectors: asyncio.Future[np.ndarray] | None


async def chunked(rows: Iterable[RowOrBad], size: int) -> AsyncIterator[list[RowOrBad]]:
    """Chunks of a blocking iterator (files, CSV parsing), each produced off the loop."""
    iterator = iter(rows)
    while True:
        chunk = await asyncio.to_thread(lambda: list(itertools.islice(iterator, size)))
        if not chunk:
            return
        yield chunk


async def run(
    chunks: AsyncIterable[list[Row]] | AsyncIterable[list[RowOrBad]],
    decoder: Decoder,
    embed: Embed,
    writer: Writer,
    *,
    progress: Progress | None = None,
    total: int | None = None,
    depth: int = DEPTH,
) -> IngestReport:
    """Drive ``chunks`` through the stages; returns what happened."""
    report = IngestReport(total=total)
    if progress is not None and total is not None:
        progress.total = total
    status = progress if isinstance(progress, IngestStatus) else None
    to_decode: asyncio.Queue[_Admitted | None] = asyncio.Queue(maxsize=depth)
    to_write: asyncio.Queue[_Embedding | None] = asyncio.Queue(maxsize=depth)

    async def read() -> None:
        async for chunk in chunks:
            rows: list[Row] = []
            bad: list[BadRow] = []
            for row in chunk:
                if isinstance(row, Row):
                    rows.append(row)
                else:
                    bad.append(row)
                    log.warning("line %d skipped: %s", *row)
            fresh, skipped = await writer.admit(rows) if rows else ([], 0)
            await to_decode.put(_Admitted(fresh, len(chunk), bad, skipped))
        await to_decode.put(_END)  # no ``finally``: after a failure the gather cancels everyone

    async def decode() -> None:
        while (admitted := await to_decode.get()) is not _END:
            decoded = await decoder(admitted.rows) if admitted.rows else Decoded()
            # Submitted now, awaited by the writer: the model starts on this chunk while
            # the next one is decoded; the queue's bound caps the chunks submitted.
            vectors = asyncio.ensure_future(embed(decoded.pixels)) if decoded.pixels is not None else None
            await to_write.put(_Embedding(admitted, decoded, vectors))
        await to_write.put(_END)

    async def write() -> None:
        while (job := await to_write.get()) is not _END:
            written = 0
            if job.vectors is not None:
                written = await writer.write(job.decoded.rows, await job.vectors)
            bad = job.admitted.bad + job.decoded.bad
            report.added += written
            report.skipped_existing += job.admitted.skipped
            report.bad_rows.extend(bad)
            if status is not None:
                status.counted(added=written, bad=len(bad))
            if progress is not None:
                progress.update(job.admitted.size)
        await writer.finish()

    tasks = [asyncio.ensure_future(stage()) for stage in (read, decode, write)]
    try:
        await asyncio.gather(*tasks)
    except BaseException as err:
        for task in tasks:
            task.cancel()
        _cancel_pending(to_write)
        await asyncio.gather(*tasks, return_exceptions=True)
        if status is not None:
            status.finish(err)
        raise
    report.bad_rows.sort()
    if status is not None:
        status.finish()
    return report


def _cancel_pending(queue: asyncio.Queue[_Embedding | None]) -> None:
    """Embeddings submitted for chunks nobody will write: cancel them (the embedder skips
    cancelled jobs)."""
    while not queue.empty():
        job = queue.get_nowait()
        if job is not None and job.vectors is not None:
            job.vectors.cancel()
