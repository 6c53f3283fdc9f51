"""Observable progress of an ingest: a ``Progress`` (tqdm-like) that also remembers.

The runner reports to it like to a tqdm bar (``total``, ``update(n)``) and, besides,
what it added and how many rows were bad; a front-end reads :meth:`IngestStatus.snapshot`
(a plain frozen dataclass) whenever it likes, e.g. the demo page's "catalogue 40 %
ready". ``forward`` passes every report on to another progress (a console bar).
"""

from __future__ import annotations

import asyncio
import time

from engine.api import Progress
from engine.types import IngestSnapshot

__all__ = ["IngestSnapshot", "IngestStatus"]  # the snapshot lives in the base layer (``About`` carries it)


class IngestStatus:
    """Progress of one ingest (see the module docstring)."""

    def __init__(self, kind: str, *, forward: Progress | None = None, base: int | None = None) -> None:
        self.kind = kind
        self.base = base  # the index's size when the ingest started, when it adds to that index
        self.forward = forward
        self._total: float | None = None
        self.done = 0
        self.added = 0
        self.bad = 0
        self.state = "running"
        self.error: str | None = None
        self.started = time.monotonic()
        self.finished: float | None = None

    # ---- the Progress protocol ----------------------------------------------------
    @property
    def total(self) -> float | None:
        return self._total

    @total.setter
    def total(self, value: float | None) -> None:
        self._total = value
        if self.forward is not None:
            self.forward.total = value
            refresh = getattr(self.forward, "refresh", None)
            if callable(refresh):
                refresh()  # tqdm draws the new total (and so an ETA) at once

    def update(self, n: float | None = 1) -> bool | None:
        self.done += int(n or 0)
        if self.forward is not None:
            self.forward.update(n)
        return None

    # ---- what the runner adds -------------------------------------------------------
    def counted(self, *, added: int = 0, bad: int = 0) -> None:
        self.added += added
        self.bad += bad

    def finish(self, error: BaseException | None = None) -> None:
        self.finished = time.monotonic()
        if error is None:
            self.state = "done"
        elif isinstance(error, asyncio.CancelledError):
            self.state = "cancelled"
        else:
            self.state = "failed"
            self.error = str(error) or type(error).__name__

    def snapshot(self) -> IngestSnapshot:
        elapsed = (self.finished or time.monotonic()) - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        total = None if self._total is None else int(self._total)
        eta = None
        if total is not None and rate > 0 and self.state == "running":
            eta = max(0.0, (total - self.done) / rate)
        return IngestSnapshot(
            kind=self.kind,
            state=self.state,
            total=total,
            done=self.done,
            added=self.added,
            bad=self.bad,
            rate=rate,
            elapsed=elapsed,
            eta=eta,
            error=self.error,
            base=self.base,
        )
