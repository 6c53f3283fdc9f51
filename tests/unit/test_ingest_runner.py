"""The ingest runner without a model: stages overlap, stay bounded, fail cleanly; the
stored-pictures reader yields each item once while writes lag; progress is observable."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from db.store import NewItem
from engine.catalogue.ingest import runner
from engine.catalogue.ingest.readers.stored import StoredReader
from engine.catalogue.ingest.rows import Row
from engine.catalogue.ingest.stages import Decoded
from engine.catalogue.ingest.status import IngestStatus

STEP = 0.08  # seconds each stage takes per chunk


def rows(n: int, start: int = 0) -> list[Row]:
    return [
        Row(line=i, item=NewItem(source="t", external_id=str(i), title="t", image=b"")) for i in range(start, start + n)
    ]


async def chunks(n_chunks: int, size: int = 4):
    for c in range(n_chunks):
        yield rows(size, c * size)


class Stages:
    """Fake decode / embed / write stages that take STEP each and log when they run."""

    def __init__(self, fail_write_at: int | None = None) -> None:
        self.log: list[tuple[str, int, str, float]] = []
        self.fail_write_at = fail_write_at
        self.written: list[int] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.embeds_cancelled = 0
        self.t0 = time.monotonic()

    def mark(self, stage: str, chunk: int, edge: str) -> None:
        self.log.append((stage, chunk, edge, time.monotonic() - self.t0))

    async def decode(self, batch: list[Row]) -> Decoded:
        c = batch[0].line // 4
        self.mark("decode", c, "start")
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        await asyncio.sleep(STEP)
        self.mark("decode", c, "end")
        bad = [(batch[-1].line, "broken picture")]
        return Decoded(rows=batch[:-1], pixels=np.full((len(batch) - 1, 2), c, dtype=np.float32), bad=bad)

    async def embed(self, pixels: np.ndarray) -> np.ndarray:
        c = int(pixels[0, 0])
        self.mark("embed", c, "start")
        try:
            await asyncio.sleep(STEP)
        except asyncio.CancelledError:
            self.embeds_cancelled += 1
            raise
        self.mark("embed", c, "end")
        return pixels

    async def admit(self, batch: list[Row]) -> tuple[list[Row], int]:
        return batch[1:], 1  # the first row of every chunk is "already there"

    async def write(self, batch: list[Row], vectors: np.ndarray) -> int:
        c = int(vectors[0, 0])
        if c == self.fail_write_at:
            raise RuntimeError("disk full")
        self.mark("write", c, "start")
        await asyncio.sleep(STEP)
        self.mark("write", c, "end")
        self.written.extend(r.line for r in batch)
        self.in_flight -= 1
        return len(batch)

    async def finish(self) -> None:
        self.mark("finish", -1, "end")

    def when(self, stage: str, chunk: int, edge: str) -> float:
        return next(t for s, c, e, t in self.log if (s, c, e) == (stage, chunk, edge))


async def test_stages_overlap_and_the_report_adds_up() -> None:
    stages = Stages()
    status = IngestStatus("test")
    started = time.monotonic()
    report = await runner.run(chunks(6), stages.decode, stages.embed, stages, progress=status, total=24)  # type: ignore[arg-type]
    took = time.monotonic() - started
    # Sequential: 6 chunks x 3 stages x STEP = 1.44 s; overlapped: about (6 + 2) x STEP.
    assert took < 6 * 3 * STEP * 0.7, took
    # While chunk 1 is embedded, chunk 2 is decoded and chunk 0 is written.
    assert stages.when("decode", 2, "start") < stages.when("embed", 1, "end")
    assert stages.when("write", 0, "start") < stages.when("embed", 1, "end")
    assert stages.max_in_flight <= 2 * runner.DEPTH + 1  # bounded queues: a few chunks, not the feed
    assert (report.added, report.skipped_existing, len(report.bad_rows), report.total) == (12, 6, 6, 24)
    assert report.bad_rows == sorted(report.bad_rows)
    assert stages.written == [line for c in range(6) for line in (4 * c + 1, 4 * c + 2)]  # in order
    snap = status.snapshot()
    assert (snap.state, snap.done, snap.total, snap.added, snap.bad, snap.eta) == ("done", 24, 24, 12, 6, None)
    assert stages.log[-1][0] == "finish"


async def test_a_failing_stage_stops_everything_and_raises() -> None:
    stages = Stages(fail_write_at=2)
    status = IngestStatus("test")
    with pytest.raises(RuntimeError, match="disk full"):
        await asyncio.wait_for(runner.run(chunks(8), stages.decode, stages.embed, stages, progress=status), 5)  # type: ignore[arg-type]
    await asyncio.sleep(2 * STEP)  # nothing keeps running behind our back
    assert not [entry for entry in stages.log if entry[1] > 5]
    assert "finish" not in {s for s, *_ in stages.log}
    assert status.snapshot().state == "failed" and status.snapshot().error == "disk full"


async def test_progress_is_forwarded_to_a_console_bar() -> None:
    class Bar:
        def __init__(self) -> None:
            self.total: float | None = None
            self.n = 0
            self.refreshed = 0

        def update(self, n: float | None = 1) -> None:
            self.n += int(n or 0)

        def refresh(self) -> None:
            self.refreshed += 1

    bar = Bar()
    stages = Stages()
    status = IngestStatus("test", forward=bar)
    await runner.run(chunks(3), stages.decode, stages.embed, stages, progress=status, total=12)  # type: ignore[arg-type]
    assert (bar.total, bar.n, bar.refreshed) == (12, 12, 1)


def test_status_eta_while_running() -> None:
    status = IngestStatus("fashion-mnist")
    status.total = 1000
    status.started -= 10  # ten seconds in
    status.update(250)
    snap = status.snapshot()
    assert snap.state == "running" and snap.fraction == 0.25
    assert snap.rate == pytest.approx(25, rel=0.05) and snap.eta == pytest.approx(30, rel=0.05)


class FakeStore:
    """items_to_embed as the real store has it: unembedded items from the start, in id order."""

    def __init__(self, n: int, broken: set[int]) -> None:
        self.embedded: set[int] = set()
        self.n = n
        self.broken = broken
        self.limits: list[int] = []

    async def count_to_embed(self, model: str) -> int:
        return self.n - len(self.embedded)

    async def items_to_embed(self, model: str, *, limit: int = 256) -> list[tuple[int, bytes]]:
        self.limits.append(limit)
        return [(i, b"x") for i in range(1, self.n + 1) if i not in self.embedded][:limit]


async def test_stored_reader_yields_each_item_once_while_writes_lag() -> None:
    store = FakeStore(50, broken={3, 17})
    reader = StoredReader(store, "m", chunk=8)  # type: ignore[arg-type]
    assert await reader.total() == 50
    yielded: list[int] = []
    lagging: list[list[int]] = []
    async for chunk in reader.chunks():
        yielded.extend(r.item_id or 0 for r in chunk)
        lagging.append([r.item_id or 0 for r in chunk if r.item_id not in store.broken])
        if len(lagging) > 2:  # the writer is two chunks behind the reader
            done = lagging.pop(0)
            store.embedded.update(done)
            reader.done(done)
    assert yielded == list(range(1, 51))
    assert max(store.limits) <= 8 * 4 + 2  # asks for its chunk plus what is in flight, not everything
