"""One polite, defensive HTTP client for everything the scraper downloads.

Why it is this strict: shop pages are written by strangers. A page can point us
at the cloud metadata service, redirect forever, stream gigabytes, stall, or
declare a 30000×30000 picture. So every request goes through the same gate:

- SSRF guard (:mod:`scraper.ssrf`) on every hop, with the allow-list entries of the
  shop the fetch is for (``allow_hosts=``) besides the global ones; redirects are followed by hand
  (``allow_redirects=False``), at most ``max_redirects``; the connector's resolver
  only returns vetted addresses; ``trust_env=False`` so no proxy bypasses it.
- robots.txt (:mod:`scraper.robots`) for every page and image, redirects included;
  parsing and matching run in a worker thread (a hostile file cannot stall the loop),
  and a file cut at the size cap loses its partial last line.
- per-request total timeout; size caps enforced while streaming (gzip is counted
  after decompression, so a compression bomb stops at the cap);
  content-type checks (HTML for pages, a raster ``image/*`` for pictures).
- politeness per host (``host:port``): at most ``per_host_concurrency`` requests in
  flight and ``min_delay`` seconds between request starts; 429/503 with
  ``Retry-After`` pause the whole host; other 5xx and timeouts back off
  exponentially with jitter; retries are bounded.
- an honest User-Agent naming us and a contact URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import logging
import random
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache, partial
from typing import Any, Literal

import aiohttp
from yarl import URL

from scraper.robots import RobotsCache
from scraper.ssrf import (
    AddressGuard,
    AllowList,
    BlockedAddress,
    FetchError,
    GetAddrInfo,
    UnresolvableHost,
    VettedResolver,
    parse_allow_list,
)

try:  # the installed distribution's version, when fashionbot is installed as a package
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as _dist_version

    __version__ = _dist_version("fashionbot")
except (ImportError, PackageNotFoundError):  # running from a checkout
    __version__ = "0.1.0"

log = logging.getLogger(__name__)

PRODUCT_TOKEN = "fashionbot"
Kind = Literal["page", "image", "robots"]
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_PAGE_TYPES = ("text/html", "application/xhtml+xml")
_NOT_RASTER = ("image/svg+xml",)

__all__ = [
    "BadContentType",
    "BlockedAddress",
    "BudgetExhausted",
    "ConnectionFailed",
    "CrawlBudget",
    "FetchConfig",
    "FetchError",
    "FetchTimeout",
    "Fetched",
    "Fetcher",
    "HttpStatusError",
    "RateLimited",
    "RobotsDisallowed",
    "TooLarge",
    "TooManyRedirects",
    "UnresolvableHost",
    "parse_retry_after",
]


# ---- errors ---------------------------------------------------------------------------
class TooLarge(FetchError):
    """The response is bigger than the cap for its kind."""


class BadContentType(FetchError):
    """An HTML page where a picture was expected, or the other way round."""


class RobotsDisallowed(FetchError):
    """robots.txt asks us not to fetch this URL."""


class FetchTimeout(FetchError):
    """No complete answer within the per-request timeout (after retries)."""


class HttpStatusError(FetchError):
    """A final non-2xx answer."""

    def __init__(self, status: int, url: str | None = None) -> None:
        super().__init__(f"HTTP {status}", url)
        self.status = status


class RateLimited(HttpStatusError):
    """429/503 that we gave up on: retries used up, or Retry-After beyond our max wait."""

    def __init__(self, status: int, url: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(status, url)
        self.retry_after = retry_after
        if retry_after is not None:
            self.reason = f"HTTP {status}: shop asks to wait {retry_after:.0f} s"
            self.args = (f"{self.reason} ({url})",)


class TooManyRedirects(FetchError):
    """More redirects than ``max_redirects``."""


class ConnectionFailed(FetchError):
    """Connection refused, reset or otherwise broken (after retries)."""


class BudgetExhausted(FetchError):
    """The crawl's page (or image) budget is spent."""


# ---- configuration ------------------------------------------------------------------
@dataclass(frozen=True)
class FetchConfig:
    """Every knob of the fetcher. Defaults are polite for real shops; tests shrink them."""

    contact_url: str = "https://github.com/fashionbot/fashionbot"
    version: str = __version__
    timeout: float = 20.0  # seconds per request attempt, connect to last byte
    max_page_bytes: int = 3 * 1024 * 1024
    max_image_bytes: int = 10 * 1024 * 1024
    max_robots_bytes: int = 512 * 1024  # RFC 9309 asks for at least 500 KiB
    per_host_concurrency: int = 2
    min_delay: float = 1.0  # seconds between request starts to one host
    max_retries: int = 2  # retries after the first attempt
    backoff_base: float = 0.5
    backoff_max: float = 10.0
    max_retry_after: float = 30.0  # a longer Retry-After makes us give up, not wait
    max_redirects: int = 5
    allow_hosts: frozenset[str] = frozenset()  # "host:port" entries exempt from the SSRF guard for every shop
    robots_ttl: float = 3600.0
    robots_error_ttl: float = 300.0
    dns_cache_ttl: float = 60.0

    def __post_init__(self) -> None:
        parse_allow_list(self.allow_hosts)  # ValueError now, not at the first fetch: "host:port" only

    @property
    def user_agent(self) -> str:
        return f"{PRODUCT_TOKEN}/{self.version} (+{self.contact_url})"

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> FetchConfig:
        """Build from ``engine.config.Settings`` (duck-typed: the scraper does not import bot/)."""
        values: dict[str, Any] = {
            "contact_url": settings.scraper_contact_url,
            "allow_hosts": frozenset(settings.scraper_allow_hosts or ()),
        }
        values.update(overrides)
        return cls(**values)


@dataclass
class CrawlBudget:
    """Caps one trend's fetches: HTML pages and (separately) pictures. Robots.txt,
    retries and redirect hops do not count; each logical fetch counts once."""

    max_pages: int
    max_images: int | None = None
    pages_used: int = 0
    images_used: int = 0

    def spend(self, kind: Kind) -> None:
        if kind == "page":
            if self.pages_used >= self.max_pages:
                raise BudgetExhausted(f"page budget of {self.max_pages} spent")
            self.pages_used += 1
        elif kind == "image":
            if self.max_images is not None and self.images_used >= self.max_images:
                raise BudgetExhausted(f"image budget of {self.max_images} spent")
            self.images_used += 1

    @property
    def pages_left(self) -> int:
        return self.max_pages - self.pages_used


@dataclass(frozen=True)
class Fetched:
    """A successful download. ``url`` is the final URL after redirects."""

    url: str
    status: int
    content_type: str
    charset: str | None
    body: bytes

    def text(self) -> str:
        try:
            return self.body.decode(self.charset or "utf-8", errors="replace")
        except LookupError:  # a charset Python does not know
            return self.body.decode("utf-8", errors="replace")


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or HTTP-date); None if absent or garbage."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(int(value))
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return max(0.0, (when - now).total_seconds())


# ---- per-host politeness --------------------------------------------------------------
@dataclass
class _HostGate:
    """Concurrency slots and spacing of request starts for one ``host:port``."""

    concurrency: int
    min_delay: float
    sem: asyncio.Semaphore = field(init=False)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    next_start: float = 0.0
    in_flight: int = 0

    def __post_init__(self) -> None:
        self.sem = asyncio.Semaphore(self.concurrency)

    def defer(self, seconds: float) -> None:
        """Nobody starts a request to this host for ``seconds`` (Retry-After)."""
        self.next_start = max(self.next_start, time.monotonic() + seconds)

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        async with self.sem:
            async with self.lock:
                while True:  # a Retry-After (defer) may move next_start while we sleep
                    wait = self.next_start - time.monotonic()
                    if wait <= 0:
                        break
                    await asyncio.sleep(wait)
                self.next_start = time.monotonic() + self.min_delay
            self.in_flight += 1
            try:
                yield
            finally:
                self.in_flight -= 1


@dataclass
class _Answer:
    status: int
    headers: Any  # CIMultiDictProxy
    content_type: str
    charset: str | None
    body: bytes


class Fetcher:
    """One ``aiohttp.ClientSession`` with all the scraper's rules. Use as ``async with``.

    ``getaddrinfo`` replaces DNS (tests map names to addresses without a network);
    ``trace_configs`` are passed to aiohttp (tests record what was actually sent).
    """

    def __init__(
        self,
        config: FetchConfig | None = None,
        *,
        getaddrinfo: GetAddrInfo | None = None,
        trace_configs: Iterable[aiohttp.TraceConfig] = (),
    ) -> None:
        self.config = config or FetchConfig()
        self.guard = AddressGuard(self.config.allow_hosts, getaddrinfo=getaddrinfo, cache_ttl=self.config.dns_cache_ttl)
        self.robots = RobotsCache(
            self._fetch_robots,
            product_token=PRODUCT_TOKEN,
            ttl=self.config.robots_ttl,
            error_ttl=self.config.robots_error_ttl,
        )
        self._trace_configs = list(trace_configs)
        self._session: aiohttp.ClientSession | None = None
        self._gates: dict[str, _HostGate] = {}
        self._rng = random.Random()

    async def __aenter__(self) -> Fetcher:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def open(self) -> None:
        if self._session is not None:
            return
        connector = aiohttp.TCPConnector(
            resolver=VettedResolver(self.guard),
            use_dns_cache=False,  # every connection asks the vetted resolver
            limit=100,
            limit_per_host=self.config.per_host_concurrency,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers={"User-Agent": self.config.user_agent, "Accept-Language": "en;q=0.9, *;q=0.5"},
            timeout=aiohttp.ClientTimeout(total=self.config.timeout),
            trust_env=False,  # an environment proxy would connect on our behalf, past the guard
            cookie_jar=aiohttp.DummyCookieJar(),
            trace_configs=self._trace_configs or None,
            auto_decompress=True,
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # ---- public API -----------------------------------------------------------------
    async def fetch_page(
        self, url: str, *, budget: CrawlBudget | None = None, allow_hosts: Iterable[str] = ()
    ) -> Fetched:
        """An HTML page (capped at ``max_page_bytes``), robots permitting.

        ``allow_hosts``: ``host:port`` entries of the shop this fetch is for, exempt from
        the SSRF guard for this fetch (and its redirects) only."""
        return await self._get(url, "page", budget, _scope(tuple(allow_hosts)))

    async def fetch_image(
        self, url: str, *, budget: CrawlBudget | None = None, allow_hosts: Iterable[str] = ()
    ) -> Fetched:
        """Raw bytes of a raster ``image/*`` (capped at ``max_image_bytes``); decoding is the caller's job."""
        return await self._get(url, "image", budget, _scope(tuple(allow_hosts)))

    async def allowed_by_robots(self, url: str) -> bool:
        """Whether robots.txt of the URL's origin lets us fetch it (fetches robots.txt once per TTL)."""
        return await self.robots.is_allowed(url)

    def in_flight(self, url: str) -> int:
        """Requests in flight to the URL's host (for tests and diagnostics)."""
        gate = self._gates.get(_host_key(URL(url)))
        return gate.in_flight if gate else 0

    # ---- internals ------------------------------------------------------------------
    async def _get(self, url: str, kind: Kind, budget: CrawlBudget | None, scope: AllowList = frozenset()) -> Fetched:
        current = _parse_url(url)
        for hop in range(self.config.max_redirects + 1):
            await self.guard.check_url(current, scope)
            if kind != "robots":
                robots = await self.robots.get(str(current), fetch=partial(self._fetch_robots, scope=scope))
                # Matching is linear-time, but a 500 KiB file of rules is still CPU: off the loop.
                if not await asyncio.to_thread(robots.is_allowed, PRODUCT_TOKEN, str(current)):
                    raise RobotsDisallowed(robots.why_disallowed(), str(current))
            if hop == 0 and budget is not None:
                budget.spend(kind)  # only fetches we are actually about to make count
            answer = await self._request(current, kind)
            if answer.status in _REDIRECTS:
                location = answer.headers.get("Location")
                if not location:
                    raise HttpStatusError(answer.status, str(current))
                try:
                    target = str(current.join(URL(location.strip())))
                except (ValueError, TypeError):
                    raise FetchError("malformed redirect", str(current)) from None
                current = _parse_url(target)
                continue
            if kind == "robots":
                return Fetched(str(current), answer.status, answer.content_type, answer.charset, answer.body)
            if not 200 <= answer.status < 300:
                raise HttpStatusError(answer.status, str(current))
            return Fetched(str(current), answer.status, answer.content_type, answer.charset, answer.body)
        raise TooManyRedirects(f"more than {self.config.max_redirects} redirects", url)

    async def _request(self, url: URL, kind: Kind) -> _Answer:
        """One hop, with retries for 429/5xx/timeouts/broken connections."""
        cfg = self.config
        gate = self._gate(url)
        attempt = 0
        while True:
            delay: float
            try:
                async with gate.slot():
                    answer = await self._attempt(url, kind)
            except (FetchTimeout, ConnectionFailed):
                if attempt >= cfg.max_retries:
                    raise
                delay = self._backoff(attempt)
            else:
                if answer.status not in _RETRY_STATUSES:
                    return answer
                retry_after = (
                    parse_retry_after(answer.headers.get("Retry-After")) if answer.status in (429, 503) else None
                )
                if retry_after is not None and retry_after > cfg.max_retry_after:
                    raise RateLimited(answer.status, str(url), retry_after)
                if attempt >= cfg.max_retries:
                    if kind == "robots":
                        return answer  # the robots cache decides what a 5xx means
                    if answer.status in (429, 503):
                        raise RateLimited(answer.status, str(url), retry_after)
                    raise HttpStatusError(answer.status, str(url))
                if retry_after is not None:
                    gate.defer(retry_after)  # the whole host waits, then the slot opens
                    delay = 0.0
                else:
                    delay = self._backoff(attempt)
                log.debug("HTTP %s from %s; retry %d in %.2f s", answer.status, url, attempt + 1, retry_after or delay)
            attempt += 1
            if delay > 0:
                await asyncio.sleep(delay)

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with 'equal jitter': half fixed, half random."""
        base = min(self.config.backoff_max, self.config.backoff_base * (2**attempt))
        return base / 2 + self._rng.uniform(0, base / 2)

    async def _attempt(self, url: URL, kind: Kind) -> _Answer:
        if self._session is None:
            raise RuntimeError("use the fetcher as 'async with Fetcher(...)' (or call open())")
        cap = {
            "page": self.config.max_page_bytes,
            "image": self.config.max_image_bytes,
            "robots": self.config.max_robots_bytes,
        }[kind]
        accept = {"page": "text/html,application/xhtml+xml;q=0.9", "image": "image/*", "robots": "text/plain"}[kind]
        try:
            async with asyncio.timeout(self.config.timeout):
                async with self._session.get(url, allow_redirects=False, headers={"Accept": accept}) as resp:
                    content_type = resp.content_type.lower()
                    charset = resp.charset
                    if resp.status in _REDIRECTS or not 200 <= resp.status < 300:
                        resp.close()  # we never read error or redirect bodies
                        return _Answer(resp.status, resp.headers, content_type, charset, b"")
                    if kind != "robots":
                        _check_content_type(kind, content_type, str(url))
                    body = await _read_capped(resp, cap, truncate=kind == "robots", url=str(url))
                    return _Answer(resp.status, resp.headers, content_type, charset, body)
        except FetchError:
            raise
        except TimeoutError:  # asyncio.timeout and aiohttp's own timeouts are both TimeoutError
            raise FetchTimeout(f"no answer within {self.config.timeout:g} s", str(url)) from None
        except aiohttp.ClientConnectorError as err:
            raise ConnectionFailed(f"cannot connect: {err.os_error.strerror or err.os_error}", str(url)) from None
        except (aiohttp.ClientError, OSError) as err:
            raise ConnectionFailed(f"connection failed: {type(err).__name__}", str(url)) from None

    def _gate(self, url: URL) -> _HostGate:
        key = _host_key(url)
        gate = self._gates.get(key)
        if gate is None:
            gate = self._gates[key] = _HostGate(self.config.per_host_concurrency, self.config.min_delay)
        return gate

    async def _fetch_robots(self, robots_url: str, scope: AllowList = frozenset()) -> tuple[int | None, bytes]:
        """For :class:`RobotsCache`: (status, body); status None when unreachable."""
        try:
            fetched = await self._get(robots_url, "robots", None, scope)
        except HttpStatusError as err:
            return err.status, b""
        except FetchError:  # timeout, refused, blocked redirect, redirect loop: unreachable
            return None, b""
        return fetched.status, fetched.body


@lru_cache(maxsize=256)
def _scope(entries: tuple[str, ...]) -> AllowList:
    """A shop's allow-list entries, parsed once (ValueError for an entry without a port)."""
    return parse_allow_list(entries)


def _host_key(url: URL) -> str:
    return f"{(url.host or '').lower()}:{url.port}"


def _parse_url(raw: str) -> URL:
    try:
        url = URL(raw)
    except (ValueError, TypeError):
        raise BlockedAddress("malformed URL", raw[:200]) from None
    if url.scheme not in ("http", "https"):
        raise BlockedAddress(f"scheme {url.scheme or '(none)'} not allowed", raw[:200])
    if not url.host:
        raise BlockedAddress("URL has no host", raw[:200])
    if url.user is not None or url.password is not None:
        raise BlockedAddress("credentials in URL not allowed", raw[:200])
    return url.with_fragment(None)


def _check_content_type(kind: Kind, content_type: str, url: str) -> None:
    if kind == "page" and content_type not in _PAGE_TYPES:
        raise BadContentType(f"expected an HTML page, got {content_type or 'no content type'}", url)
    if kind == "image" and (not content_type.startswith("image/") or content_type in _NOT_RASTER):
        raise BadContentType(f"expected a picture, got {content_type or 'no content type'}", url)


async def _read_capped(resp: aiohttp.ClientResponse, cap: int, *, truncate: bool, url: str) -> bytes:
    """Read at most ``cap`` bytes, counting while streaming: a lying or absent
    Content-Length cannot make us buffer more."""
    declared = resp.content_length
    if declared is not None and declared > cap and not truncate and "Content-Encoding" not in resp.headers:
        resp.close()
        raise TooLarge(f"larger than {_size(cap)} (declared {_size(declared)})", url)
    chunks: list[bytes] = []
    size = 0
    async for chunk in resp.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > cap:
            if truncate:
                chunks.append(chunk[: len(chunk) - (size - cap)])
                resp.close()
                return _whole_lines(b"".join(chunks))
            resp.close()  # drop the connection instead of draining the rest
            raise TooLarge(f"larger than {_size(cap)}", url)
        chunks.append(chunk)
    return b"".join(chunks)


def _whole_lines(data: bytes) -> bytes:
    """A text cut at the cap, without its partial last line (``Allow: /public/only`` cut to
    ``Allow: /`` would allow everything)."""
    end = max(data.rfind(b"\n"), data.rfind(b"\r"))
    return data[: end + 1]


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    if n < 1024 * 1024:
        return f"{n // 1024} KiB"
    return f"{n / (1024 * 1024):.1f} MiB"
