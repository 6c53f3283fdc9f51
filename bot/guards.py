"""Checks every front-end applies before doing work for a user: the per-user rate
limit and the declared-size check (refuse big files before downloading them).
Shared, so Telegram, Discord and the web chat behave the same."""
from __future__ import annotations

import time
from collections import deque

from bot import render

TELEGRAM_DOWNLOAD_CAP = 20 * 1024 * 1024  # the Bot API won't let bots download more


class RateLimiter:
    """At most ``limit`` events per ``window`` seconds per key (sliding window)."""

    def __init__(self, limit: int = 10, window: float = 60.0, clock=time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._events: dict[str, deque[float]] = {}

    def check(self, key: str) -> float:
        """Record an event; returns 0 when allowed, else seconds until the next is allowed."""
        if self.limit <= 0:
            return 0.0
        now = self._clock()
        events = self._events.setdefault(key, deque())
        while events and now - events[0] >= self.window:
            events.popleft()
        if len(events) >= self.limit:
            return max(0.1, self.window - (now - events[0]))
        events.append(now)
        if len(self._events) > 10_000:  # forget idle users now and then
            for k in [k for k, v in self._events.items() if not v or now - v[-1] >= self.window]:
                del self._events[k]
        return 0.0

    def message(self, wait: float) -> str:
        return render.RATE_LIMITED.format(seconds=max(1, round(wait)))


def declared_size_problem(size: int | None, limit: int) -> str | None:
    """A friendly refusal when a file's declared size is over the limit, else None."""
    if size is not None and size > limit:
        return render.too_large(size, limit)
    return None
