"""The fetcher: timeouts, size caps, content types, Retry-After/backoff, redirects, politeness."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import aiohttp
import pytest
import pytest_asyncio

from scraper.fetch import (
    BadContentType,
    BudgetExhausted,
    CrawlBudget,
    FetchConfig,
    Fetcher,
    FetchTimeout,
    HttpStatusError,
    RateLimited,
    TooLarge,
    TooManyRedirects,
    __version__,
    parse_retry_after,
)
from tests.support.fakes.shop import ConnectSpy, FakeShop, fast_config, loopback_spy  # noqa: F401 - fixture


@pytest_asyncio.fixture
async def shop(loopback_spy: ConnectSpy):
    async with FakeShop("jsonld", n_products=3) as s:
        yield s
    assert loopback_spy.refused == []


def test_user_agent_is_honest() -> None:
    config = FetchConfig(contact_url="https://example.org/bot", version="1.2.3")
    assert config.user_agent == "fashionbot/1.2.3 (+https://example.org/bot)"


def test_config_from_settings() -> None:
    class Settings:
        scraper_contact_url = "https://example.org/contact"
        scraper_allow_hosts = ["127.0.0.1:9999"]

    config = FetchConfig.from_settings(Settings(), min_delay=0.5)
    assert config.contact_url == "https://example.org/contact"
    assert config.allow_hosts == frozenset({"127.0.0.1:9999"})
    assert config.min_delay == 0.5


def test_parse_retry_after() -> None:
    now = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("1") == 1.0
    assert parse_retry_after(" 120 ") == 120.0
    assert parse_retry_after(format_datetime(now + timedelta(seconds=30), usegmt=True), now) == 30.0
    assert parse_retry_after(format_datetime(now - timedelta(seconds=30), usegmt=True), now) == 0.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after("-5") is None
    assert parse_retry_after(None) is None


@pytest.mark.asyncio
async def test_page_fetch_sends_user_agent_and_returns_final_url(shop: FakeShop) -> None:
    async with Fetcher(fast_config(shop)) as fetcher:
        page = await fetcher.fetch_page(shop.url("/redirect/3"))
    assert page.url == shop.url("/redirect/0")
    assert "arrived" in page.text()
    assert page.content_type == "text/html"
    assert {r.user_agent for r in shop.requests} == {f"fashionbot/{__version__} (+http://contact.example/fashionbot)"}
    assert shop.paths() == ["/robots.txt", "/redirect/3", "/redirect/2", "/redirect/1", "/redirect/0"]


@pytest.mark.asyncio
async def test_redirects_are_capped(shop: FakeShop) -> None:
    async with Fetcher(fast_config(shop, max_redirects=5)) as fetcher:
        await fetcher.fetch_page(shop.url("/redirect/5"))  # exactly 5 hops is fine
        with pytest.raises(TooManyRedirects):
            await fetcher.fetch_page(shop.url("/redirect/6"))
    assert shop.hits("/redirect/6") == 1 and shop.hits("/redirect/1") == 2 and shop.hits("/redirect/0") == 1


@pytest.mark.asyncio
async def test_timeout(shop: FakeShop) -> None:
    async with Fetcher(fast_config(shop, timeout=0.3, max_retries=1)) as fetcher:
        start = time.monotonic()
        with pytest.raises(FetchTimeout, match="no answer within 0.3 s"):
            await fetcher.fetch_page(shop.url("/slow?s=3"))
        elapsed = time.monotonic() - start
    assert 0.6 <= elapsed < 2.0  # two attempts of 0.3 s plus a tiny backoff, not 3 s
    assert shop.hits("/slow") == 2


@pytest.mark.asyncio
async def test_streamed_page_over_the_cap_is_cut_off(shop: FakeShop) -> None:
    async with Fetcher(fast_config(shop, max_page_bytes=128 * 1024)) as fetcher:
        start = time.monotonic()
        with pytest.raises(TooLarge, match="larger than 128 KiB"):
            await fetcher.fetch_page(shop.url("/huge"))
        assert time.monotonic() - start < 2.0
    await asyncio.sleep(0.2)
    assert shop.huge_bytes_sent < shop.huge_bytes  # we hung up; the server never got to send it all
    assert shop.hits("/huge") == 1  # a size cap is not retried


@pytest.mark.asyncio
async def test_declared_length_over_the_cap_is_refused_before_reading(shop: FakeShop) -> None:
    async with Fetcher(fast_config(shop)) as fetcher:
        start = time.monotonic()
        with pytest.raises(TooLarge, match=r"declared 50.0 MiB"):
            await fetcher.fetch_page(shop.url("/huge-declared"))
        assert time.monotonic() - start < 1.0  # did not wait for the body


@pytest.mark.asyncio
async def test_gzip_bomb_is_capped_after_decompression(shop: FakeShop) -> None:
    async with Fetcher(fast_config(shop, max_page_bytes=1024 * 1024)) as fetcher:
        with pytest.raises(TooLarge, match=r"larger than 1.0 MiB"):
            await fetcher.fetch_page(shop.url("/gzip-bomb"))


@pytest.mark.asyncio
async def test_image_cap_is_separate_from_page_cap(shop: FakeShop) -> None:
    config = fast_config(shop, max_page_bytes=512 * 1024, max_image_bytes=512)
    async with Fetcher(config) as fetcher:
        page = await fetcher.fetch_page(shop.url("/p/p-001"))
        assert len(page.body) > 512  # pages may be bigger than the image cap
        with pytest.raises(TooLarge, match="larger than 512 bytes"):
            await fetcher.fetch_image(shop.url("/img/p-001.jpg"))  # ~1 KB picture
        with pytest.raises(TooLarge, match="larger than 512 bytes"):
            await fetcher.fetch_image(shop.url("/huge?type=image/jpeg"))
    assert page.status == 200


@pytest.mark.asyncio
async def test_content_types_are_checked(shop: FakeShop) -> None:
    async with Fetcher(fast_config(shop)) as fetcher:
        image = await fetcher.fetch_image(shop.url("/img/p-002.jpg"))
        assert image.body[:2] == b"\xff\xd8" and image.content_type == "image/jpeg"
        with pytest.raises(BadContentType, match="expected an HTML page, got image/jpeg"):
            await fetcher.fetch_page(shop.url("/img/p-002.jpg"))
        with pytest.raises(BadContentType, match="expected a picture, got text/html"):
            await fetcher.fetch_image(shop.url("/page/1"))
        with pytest.raises(BadContentType, match="image/svg"):
            await fetcher.fetch_image(shop.url("/huge?type=image/svg%2Bxml"))


@pytest.mark.asyncio
async def test_retry_after_seconds_is_honoured(shop: FakeShop) -> None:
    async with Fetcher(fast_config(shop)) as fetcher:
        start = time.monotonic()
        page = await fetcher.fetch_page(shop.url("/p/rate-limited"))
        elapsed = time.monotonic() - start
    assert "Patient green dress" in page.text()
    first, second = [r for r in shop.requests if r.path == "/p/rate-limited"]
    assert first.status == 429 and second.status == 200
    assert second.started - first.started >= 1.0  # measured at the server
    assert 1.0 <= elapsed < 2.5


@pytest.mark.asyncio
async def test_retry_after_pauses_the_whole_host(shop: FakeShop) -> None:
    """While one request waits out Retry-After, other requests to that host wait too."""
    async with Fetcher(fast_config(shop)) as fetcher:
        await fetcher.fetch_page(shop.url("/page/0"))  # robots.txt out of the way
        limited = asyncio.create_task(fetcher.fetch_page(shop.url("/p/rate-limited")))
        await asyncio.sleep(0.2)
        other_started = time.monotonic()
        await fetcher.fetch_page(shop.url("/page/1"))
        await limited
    first_429 = next(r for r in shop.requests if r.path == "/p/rate-limited")
    page1 = next(r for r in shop.requests if r.path == "/page/1")
    assert page1.started - first_429.started >= 1.0
    assert other_started - first_429.started < 0.9  # it was asked for well within the pause


@pytest.mark.asyncio
async def test_retry_after_http_date_is_honoured(shop: FakeShop) -> None:
    async with Fetcher(fast_config(shop)) as fetcher:
        start = time.monotonic()
        page = await fetcher.fetch_page(shop.url("/retry-after-date/a?s=2"))
        elapsed = time.monotonic() - start
    assert "back" in page.text()
    assert shop.hits("/retry-after-date/a") == 2
    assert elapsed >= 1.0  # HTTP dates have 1 s resolution: 2 s ahead is at least 1 s of waiting


@pytest.mark.asyncio
async def test_retry_after_beyond_max_wait_gives_up_at_once(shop: FakeShop) -> None:
    async with Fetcher(fast_config(shop, max_retry_after=5)) as fetcher:
        start = time.monotonic()
        with pytest.raises(RateLimited, match="shop asks to wait 3600 s") as info:
            await fetcher.fetch_page(shop.url("/status/429?retry_after=3600"))
        assert time.monotonic() - start < 0.5
    assert info.value.retry_after == 3600.0
    assert shop.hits("/status/429") == 1


@pytest.mark.asyncio
async def test_5xx_backs_off_and_recovers(shop: FakeShop) -> None:
    config = fast_config(shop, max_retries=3, backoff_base=0.1, backoff_max=1.0)
    async with Fetcher(config) as fetcher:
        page = await fetcher.fetch_page(shop.url("/flaky/2/k"))
    assert "recovered" in page.text()
    first, second, third = [r.started for r in shop.requests if r.path == "/flaky/2/k"]
    # equal jitter: attempt n waits between base*2^n/2 and base*2^n
    assert 0.05 <= second - first <= 0.5
    assert 0.1 <= third - second <= 0.6


@pytest.mark.asyncio
async def test_retries_are_bounded(shop: FakeShop) -> None:
    async with Fetcher(fast_config(shop, max_retries=2)) as fetcher:
        with pytest.raises(HttpStatusError, match="HTTP 500"):
            await fetcher.fetch_page(shop.url("/status/500"))
        with pytest.raises(RateLimited, match="HTTP 503"):
            await fetcher.fetch_page(shop.url("/flaky/99/x"))
        with pytest.raises(HttpStatusError, match="HTTP 404"):
            await fetcher.fetch_page(shop.url("/status/404"))
    assert shop.hits("/status/500") == 3
    assert shop.hits("/flaky/99/x") == 3
    assert shop.hits("/status/404") == 1  # client errors are not retried


@pytest.mark.asyncio
async def test_at_most_two_requests_in_flight_per_host(shop: FakeShop) -> None:
    async with Fetcher(fast_config(shop, per_host_concurrency=2)) as fetcher:
        await asyncio.gather(*(fetcher.fetch_page(shop.url(f"/page/{i}?delay=0.1")) for i in range(10)))
    assert shop.max_in_flight == 2  # 2 happened (so the test can see overlap) and never more
    assert shop.hits("/robots.txt") == 1


@pytest.mark.asyncio
async def test_hosts_have_separate_limits(loopback_spy: ConnectSpy) -> None:
    async with FakeShop(n_products=1) as a, FakeShop(n_products=1) as b:
        async with Fetcher(fast_config(a, b)) as fetcher:
            urls = [s.url(f"/page/{i}?delay=0.2") for i in range(4) for s in (a, b)]
            await asyncio.gather(*(fetcher.fetch_page(u) for u in urls))
    assert a.max_in_flight == 2 and b.max_in_flight == 2
    pages = [r for r in a.requests + b.requests if r.path.startswith("/page/")]
    overlap = max(sum(1 for o in pages if o.started <= r.started < (o.finished or 0)) for r in pages)
    assert overlap == 4  # both hosts' two slots were busy at the same moment


@pytest.mark.asyncio
async def test_min_delay_between_requests_to_one_host(shop: FakeShop) -> None:
    """Measured where the fetcher sends (an aiohttp trace), not where the server receives:
    network jitter may bunch arrivals, but our send times must be spaced."""
    sent: list[float] = []

    async def on_request_start(session, ctx, params) -> None:
        sent.append(time.monotonic())

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_request_start)
    async with Fetcher(fast_config(shop, min_delay=0.15), trace_configs=[trace]) as fetcher:
        await asyncio.gather(*(fetcher.fetch_page(shop.url(f"/page/{i}")) for i in range(4)))
    gaps = [b - a for a, b in zip(sent, sent[1:])]
    assert len(gaps) == 4  # robots.txt + 4 pages
    assert min(gaps) >= 0.145
    assert len(shop.requests) == 5


@pytest.mark.asyncio
async def test_budget_counts_pages_and_images_separately(shop: FakeShop) -> None:
    budget = CrawlBudget(max_pages=2, max_images=1)
    async with Fetcher(fast_config(shop)) as fetcher:
        await fetcher.fetch_page(shop.url("/redirect/2"), budget=budget)  # redirects count once
        await fetcher.fetch_page(shop.url("/page/1"), budget=budget)
        with pytest.raises(BudgetExhausted, match="page budget of 2 spent"):
            await fetcher.fetch_page(shop.url("/page/2"), budget=budget)
        await fetcher.fetch_image(shop.url("/img/p-001.jpg"), budget=budget)
        with pytest.raises(BudgetExhausted, match="image budget of 1 spent"):
            await fetcher.fetch_image(shop.url("/img/p-002.jpg"), budget=budget)
    assert "/page/2" not in shop.paths() and "/img/p-002.jpg" not in shop.paths()
    assert budget.pages_used == 2 and budget.images_used == 1
