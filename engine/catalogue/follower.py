"""Following the catalogue other workers write: a background task that calls
:meth:`Catalogue.follow` every few seconds, so items any worker commits (a `/trend`, an
ingest) become recommendable here, and removed items stop being recommended.

On PostgreSQL it also LISTENs (``db.store.CHANNEL``): writers NOTIFY on commit, so a new
item usually reaches every worker in well under a second; the poll stays as the safety
net (a dropped listening connection, a missed notification). On SQLite it polls.

    follower = Follower.start(catalogue)     # after catalogue.open()
    ...
    await follower.stop()                    # before the store closes
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from engine.catalogue.catalogue import Catalogue

log = logging.getLogger(__name__)

POLL_SECONDS = 2.0  # the longest a change waits without a notification
NOTIFY_BATCH_SECONDS = 0.05  # notifications this close together are one follow


class Follower:
    def __init__(self, catalogue: Catalogue, *, interval: float = POLL_SECONDS) -> None:
        self.catalogue = catalogue
        self.interval = interval
        self.rounds = 0  # follow() calls made (for tests and `about`)
        self.followed = 0  # items added or dropped
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._unlisten: Callable[[], Awaitable[None]] | None = None

    @classmethod
    def start(cls, catalogue: Catalogue, *, interval: float = POLL_SECONDS) -> Follower:
        follower = cls(catalogue, interval=interval)
        follower._task = asyncio.create_task(follower._run(), name="catalogue-follower")
        return follower

    def poke(self, _payload: str = "") -> None:
        """Follow now (a notification, or a test)."""
        self._wake.set()

    async def _run(self) -> None:
        try:
            self._unlisten = await self.catalogue.store.listen(self.poke)
        except Exception as err:
            log.warning("catalogue follower: LISTEN failed (%s); polling every %.1f s", err, self.interval)
        while not self._stopping:
            await self._wait_for_wake()
            if self._stopping:
                return
            if self._wake.is_set():
                await asyncio.sleep(NOTIFY_BATCH_SECONDS)
                self._wake.clear()
            try:
                changed = await self.catalogue.follow()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("catalogue follower: follow() failed; retrying")
                continue
            self.rounds += 1
            if changed:
                self.followed += changed
                log.info("catalogue follower: %d items from other workers (index: %d)", changed, len(self.catalogue))

    async def _wait_for_wake(self) -> None:
        """Until a poke or ``interval`` seconds. Not ``asyncio.wait_for``: on Python 3.11 it
        returns normally when a cancel lands in the same loop turn as the event (a NOTIFY
        arriving as the service closes), the cancel is lost, and ``stop()`` waited forever
        (CI hung this way). ``asyncio.timeout`` passes the cancel on."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.interval):
                await self._wake.wait()

    async def stop(self) -> None:
        """End the task: the flag ends the loop at its next turn even if a library swallows
        the cancel; the cancel ends a follow() in flight."""
        self._stopping = True
        self._wake.set()
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        unlisten, self._unlisten = self._unlisten, None
        if unlisten is not None:
            with contextlib.suppress(Exception):
                await unlisten()
