"""Checks every front-end applies before doing work for a user: per-user rate limits
and the declared-size check (refuse big files before downloading them). Used through
:mod:`bot.flows`, so Telegram, Discord and the web chat behave the same."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable

from bot import render

TELEGRAM_DOWNLOAD_CAP = 20 * 1024 * 1024  # the Bot API won't let bots download more


class RateLimiter:
    """At most ``limit`` events per ``window`` seconds per key (sliding window)."""

    def __init__(
        self,
        limit: int = 10,
        window: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        text: str = render.RATE_LIMITED,
    ) -> None:
        self.limit = limit
        self.window = window
        self.text = text
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

    def check_all(self, keys: Iterable[str]) -> float:
        """:meth:`check` for each key (a user, their address …); the first refusal wins."""
        for key in keys:
            wait = self.check(key)
            if wait:
                return wait
        return 0.0

    def message(self, wait: float) -> str:
        return self.text.format(seconds=max(1, round(wait)))


def declared_size_problem(size: int | None, limit: int) -> str | None:
    """A friendly refusal when a file's declared size is over the limit, else None."""
    if size is not None and size > limit:
        return render.too_large(size, limit)
    return None
