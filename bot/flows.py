"""The flows every front-end shares, written once.

* :class:`PhotoFlow`: a photo's way through the bot, with its guards in one order:
  rate limit → declared size (and the platform's own pre-download refusal, e.g. "not
  a picture") → download → ``service.recommend(image, user, k=settings.top_k)`` →
  the answer (a :class:`~engine.types.Recommendation`) or one friendly sentence. The
  same object rate-limits the expensive commands (``/style``, ``/trend``) and switches
  garments (``service.switch``).
* :func:`trend_updates`: ``service.trend()`` throttled to at most one snapshot every
  ``interval`` seconds, plus the final one (always ``done=True``, errors folded into
  it); :class:`TrendUnavailable` when the engine can't search shops.
* :func:`error_text`: an exception as the sentence a user reads (a ``ServiceError``'s
  own words; anything else is logged, with the user id hashed, and becomes
  ``render.INTERNAL_ERROR``).

Front-ends only receive, render and send.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from dataclasses import dataclass

from bot import render
from bot.guards import RateLimiter, declared_size_problem
from engine.api import FashionAPI
from engine.config import Settings
from engine.errors import CatalogueFilling, ServiceError
from engine.types import Box, Recommendation, TrendProgress, UserRef

log = logging.getLogger(__name__)

TREND_EDIT_INTERVAL = 1.5  # seconds between edits of a chat message showing a trend's progress
FILLING_RETRY_AFTER = 5.0  # seconds a photo that found the catalogue still empty is asked to wait


def user_tag(user: UserRef | None) -> str:
    """A user as error logs name them: a short sha256 of ``platform:id``, never the id."""
    if user is None:
        return "-"
    return hashlib.sha256(f"{user.platform}:{user.user_id}".encode()).hexdigest()[:12]


def error_text(err: BaseException, *, what: str, user: UserRef | None = None) -> str:
    """The sentence a user reads for ``err``; unexpected errors are logged first."""
    if isinstance(err, ServiceError):
        return str(err)
    log.error("%s failed (user %s)", what, user_tag(user), exc_info=err)
    return render.INTERNAL_ERROR


@dataclass(frozen=True)
class Refusal:
    """Why a photo got no results, as the sentence the user reads. ``reason`` lets a
    front-end pick its status (the web chat's HTTP code): ``rate_limited``,
    ``too_large``, ``not_accepted`` (not a picture, a bad picture), ``not_ready`` (the
    catalogue is still being filled: try again shortly) or ``failed``."""

    text: str
    reason: str = "not_accepted"
    retry_after: float | None = None


@dataclass
class PhotoRequest:
    """A photo as a front-end received it, before anything is downloaded.

    ``download`` returns the bytes, or a :class:`Refusal` found while downloading (e.g.
    the platform says the file is too big); ``refusal`` is the platform's own reason not
    to download at all (not a picture)."""

    user: UserRef
    declared_size: int | None
    download: Callable[[], Awaitable[bytes | Refusal]]
    refusal: str | None = None
    whole_photo: bool = False
    region: Box | None = None


class PhotoFlow:
    """One per front-end: its limiters and the flows over ``service``."""

    def __init__(self, service: FashionAPI, settings: Settings, *, limit_bytes: int | None = None) -> None:
        self.service = service
        self.settings = settings
        self.limit_bytes = settings.max_image_bytes if limit_bytes is None else limit_bytes
        self.k = settings.top_k
        self.photos = RateLimiter(limit=settings.rate_limit_per_minute, window=60.0)
        self.commands = RateLimiter(
            limit=settings.rate_limit_per_minute, window=60.0, text=render.COMMANDS_RATE_LIMITED
        )

    @staticmethod
    def key(user: UserRef) -> str:
        return f"{user.platform}:{user.user_id}"

    def command_refusal(self, user: UserRef, extra_keys: Iterable[str] = ()) -> str | None:
        """The rate limit of ``/style`` and ``/trend``: a refusal, or None to go on."""
        wait = self.commands.check_all([*extra_keys, self.key(user)])
        return self.commands.message(wait) if wait else None

    async def photo(
        self,
        request: PhotoRequest,
        *,
        extra_keys: Iterable[str] = (),
        slot: contextlib.AbstractAsyncContextManager[object] | None = None,
    ) -> Recommendation | Refusal:
        """The photo flow. ``extra_keys`` are rate-limited too (the web chat's client
        address); ``slot`` bounds how many downloads + recommendations run at once."""
        wait = self.photos.check_all([*extra_keys, self.key(request.user)])
        if wait:
            return Refusal(self.photos.message(wait), "rate_limited", retry_after=wait)
        if request.refusal:
            return Refusal(request.refusal)
        problem = declared_size_problem(request.declared_size, self.limit_bytes)
        if problem:
            return Refusal(problem, "too_large")
        async with slot or contextlib.nullcontext():
            try:
                data = await request.download()
                if isinstance(data, Refusal):
                    return data
                problem = declared_size_problem(len(data), self.limit_bytes)
                if problem:
                    return Refusal(problem, "too_large")
                return await self.recommend(data, request)
            except CatalogueFilling as err:  # nothing indexed yet, but it is coming
                return Refusal(str(err), "not_ready", retry_after=FILLING_RETRY_AFTER)
            except Exception as err:  # every failure becomes the user's answer
                text = error_text(err, what="photo", user=request.user)
                return Refusal(text, "not_accepted" if isinstance(err, ServiceError) else "failed")

    async def recommend(self, data: bytes, request: PhotoRequest) -> Recommendation:
        if request.region is not None:
            return await self.service.recommend(data, request.user, k=self.k, region=request.region)
        if request.whole_photo:
            return await self.service.recommend(data, request.user, k=self.k, whole_photo=True)
        return await self.service.recommend(data, user=request.user, k=self.k)

    async def switch(self, user: UserRef, request_id: int, garment: int | None) -> Recommendation | str:
        """Another garment of an earlier photo (None: the whole photo), for the user who
        pressed: a ServiceError (not theirs, expired) is their friendly answer."""
        try:
            return await self.service.switch(user, request_id, garment, k=self.k)
        except Exception as err:  # every failure becomes the user's answer
            return error_text(err, what="switch", user=user)


class TrendUnavailable(Exception):
    """The engine can't search shops (its ``trend`` raises NotImplementedError)."""

    text = render.TREND_UNAVAILABLE


async def trend_updates(
    service: FashionAPI,
    tag: str,
    user: UserRef | None,
    *,
    interval: float = TREND_EDIT_INTERVAL,
    clock: Callable[[], float] = time.monotonic,
) -> AsyncGenerator[TrendProgress]:
    """``service.trend(tag, user)`` throttled: the first snapshot at once, then at most
    one every ``interval`` seconds, and always the final snapshot (``done=True``; an
    error ends the stream as a final snapshot whose ``error`` is the user's sentence).

    Raises :class:`TrendUnavailable` before any snapshot when the engine can't search."""
    last: TrendProgress | None = None
    yielded_at: float | None = None
    final: TrendProgress | None = None
    try:
        stream = service.trend(tag, user)
    except NotImplementedError:
        raise TrendUnavailable() from None
    try:
        async for progress in stream:
            last = progress
            if progress.done:
                final = progress
                break
            now = clock()
            if yielded_at is None or now - yielded_at >= interval:
                yielded_at = now
                yield progress
    except NotImplementedError:
        if last is None:
            raise TrendUnavailable() from None
        final = dataclasses.replace(last, done=True, error=render.TREND_UNAVAILABLE)
    except Exception as err:  # the user reads it in the final snapshot
        final = dataclasses.replace(
            last or TrendProgress(tag=tag), done=True, error=error_text(err, what=f"trend {tag!r}", user=user)
        )
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            try:
                await aclose()
            except Exception:  # closing a broken generator is best effort
                log.debug("closing the trend stream failed", exc_info=True)
    yield final or dataclasses.replace(last or TrendProgress(tag=tag), done=True)
