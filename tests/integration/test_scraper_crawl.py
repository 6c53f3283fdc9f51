"""crawl_trend end to end against two fake shops: what is found, what is skipped and why."""

from __future__ import annotations

import asyncio
import hashlib
import io
import time

import pytest
from PIL import Image

from engine.vision.images import picture_check
from scraper.crawl import (
    CrawlFinished,
    ProductFound,
    ProductSkipped,
    ShopFailed,
    ShopSearched,
    crawl_trend,
    normalise_tag,
    same_site,
)
from scraper.fetch import Fetcher
from scraper.sources import Shop
from tests.support.fakes.shop import (
    RATE_LIMITED_TITLE,
    SPECIALS,
    ConnectSpy,
    FakeShop,
    fast_config,
    loopback_spy,  # noqa: F401 - fixture
    product_jpeg,
)

CHECK = picture_check(max_bytes=2 * 1024 * 1024)  # what the engine injects (engine.vision.images)


async def collect(*args, **kwargs) -> list:
    kwargs.setdefault("check_picture", CHECK)
    return [event async for event in crawl_trend(*args, **kwargs)]


def of(events: list, kind: type) -> list:
    return [e for e in events if isinstance(e, kind)]


@pytest.mark.asyncio
async def test_two_shops_with_every_hostile_page(loopback_spy: ConnectSpy) -> None:
    async with (
        FakeShop("jsonld", n_products=6, specials=list(SPECIALS), slow_seconds=3) as a,
        FakeShop("grid", n_products=6, price_factor=1.1, page_delay=0.05) as b,
    ):
        config = fast_config(a, b, timeout=0.5, max_retries=1)
        async with Fetcher(config) as fetcher:
            start = time.monotonic()
            events = await collect(
                "dress", [a.shop(), b.shop()], fetcher, max_pages=100, max_products=100, concurrency=8
            )
            elapsed = time.monotonic() - start

    assert set(of(events, ShopSearched)) == {
        ShopSearched("Shop A", 6 + 11, "json-ld"),
        ShopSearched("Shop B", 6, "selectors"),
    }
    assert of(events, ShopFailed) == []

    skipped = {e.url.removeprefix(a.base_url): e.reason for e in of(events, ProductSkipped)}
    assert skipped == {
        "/private/p-hidden": "disallowed by robots.txt",
        "/p/broken-image": "picture rejected: That image seems to be damaged or incomplete.",
        "/p/bomb": "picture rejected: That image is too big to open safely.",
        "/p/redirect-metadata": "blocked link-local address 169.254.169.254",
        "/p/redirect-private": "blocked private address 10.0.0.1",
        "/p/slow": "no answer within 0.5 s",
        "/p/huge": "larger than 256 KiB",
        "/p/lying-noimage": "no product title or usable picture on the page",
        "/p/html-image": "picture: expected a picture, got text/html",
    }
    assert {e.shop for e in of(events, ProductSkipped)} == {"Shop A"}

    found = [e.product for e in of(events, ProductFound)]
    by_shop = {(p.shop, p.info.url.rsplit("/", 1)[-1]): p for p in found}
    expected_a = {f"p-00{i}" for i in range(1, 7)} | {"rate-limited", "lying"}
    assert {k[1] for k in by_shop if k[0] == "Shop A"} == expected_a
    assert {k[1] for k in by_shop if k[0] == "Shop B"} == {f"p-00{i}" for i in range(1, 7)}
    assert len(found) == 14

    for index, fake in enumerate(a.products):
        pa, pb = by_shop[("Shop A", fake.slug)], by_shop[("Shop B", fake.slug)]
        assert pa.info.title == pb.info.title == fake.title
        assert (pa.info.price, pa.info.currency) == (fake.price(1.0), "EUR")
        assert (pb.info.price, pb.info.currency) == (fake.price(1.1), "EUR")
        assert pa.info.price != pb.info.price
        assert pa.image_sha256 == pb.image_sha256 == hashlib.sha256(product_jpeg(index)).hexdigest()
        assert pa.dhash == pb.dhash
        assert pa.info.brand == "Fakewear" and pa.info.sku == fake.slug and pb.info.brand is None
        with Image.open(io.BytesIO(pa.image_jpeg)) as img:
            assert (img.format, img.size) == ("JPEG", (96, 128))
        assert pa.tag == "dress"
    assert len({by_shop[("Shop A", f.slug)].image_sha256 for f in a.products}) == 6  # distinct pictures

    assert by_shop[("Shop A", "rate-limited")].info.title == RATE_LIMITED_TITLE
    liar = by_shop[("Shop A", "lying")].info
    assert (liar.price, liar.currency, len(liar.title), liar.image_url) == (None, None, 200, a.url("/img/p-002.jpg"))

    # what was (not) requested
    assert "/private/p-hidden" not in a.paths()
    assert a.hits("/p/rate-limited") == 2 and a.hits("/p/slow") == 2
    assert a.max_in_flight == 2 and b.max_in_flight == 2
    assert loopback_spy.refused == []
    assert {addr for addr in loopback_spy.addresses} <= {("127.0.0.1", a.port), ("127.0.0.1", b.port)}

    # ordering and the summary
    assert isinstance(events[-1], CrawlFinished) and of(events, CrawlFinished) == [events[-1]]
    assert events[-1] == CrawlFinished(found=14, skipped=9, shops_failed=0, pages_fetched=17 + 7, stopped=None)
    for shop in ("Shop A", "Shop B"):
        first_searched = next(i for i, e in enumerate(events) if isinstance(e, ShopSearched) and e.shop == shop)
        first_product = next(i for i, e in enumerate(events) if isinstance(e, ProductFound) and e.product.shop == shop)
        assert first_searched < first_product
    print(f"\nhostile crawl took {elapsed:.2f} s")
    assert elapsed < 10


@pytest.mark.asyncio
async def test_grid_shop_without_selectors_finds_nothing(loopback_spy: ConnectSpy) -> None:
    """Why shop B needs its selectors: prices without a currency sign defeat the grid heuristics."""
    async with FakeShop("grid", n_products=4) as b, Fetcher(fast_config(b)) as fetcher:
        events = await collect("dress", [b.shop(selectors={})], fetcher)
    assert events == [ShopSearched("Shop B", 0, "none"), CrawlFinished(0, 0, 0, 1, None)]
    assert b.paths() == ["/robots.txt", "/search"]


@pytest.mark.asyncio
async def test_full_itemlist_needs_no_product_pages(loopback_spy: ConnectSpy) -> None:
    async with FakeShop("jsonld", n_products=5, full_itemlist=True) as a, Fetcher(fast_config(a)) as fetcher:
        events = await collect("dress", [a.shop()], fetcher)
    found = [e.product.info for e in of(events, ProductFound)]
    assert sorted((i.title, i.price) for i in found) == sorted((p.title, p.price(1.0)) for p in a.products)
    assert not any(p.startswith("/p/") for p in a.paths())
    assert sorted(a.paths()) == sorted(["/robots.txt", "/search"] + [f"/img/{p.slug}.jpg" for p in a.products])
    assert events[-1] == CrawlFinished(5, 0, 0, 1, None)


@pytest.mark.asyncio
async def test_hundred_products_throughput(loopback_spy: ConnectSpy) -> None:
    async with FakeShop("jsonld", n_products=100) as a, Fetcher(fast_config(a)) as fetcher:
        start = time.monotonic()
        events = await collect("dress", [a.shop()], fetcher, max_pages=150, max_products=100, concurrency=8)
        elapsed = time.monotonic() - start
    found = of(events, ProductFound)
    assert len(found) == 100
    assert len({e.product.image_sha256 for e in found}) == 100
    assert events[-1] == CrawlFinished(100, 0, 0, 101, None)
    assert a.max_in_flight <= 2
    print(f"\n100 products (101 pages + 100 pictures) in {elapsed:.2f} s")
    assert elapsed < 20


@pytest.mark.asyncio
async def test_max_products_stops_the_crawl(loopback_spy: ConnectSpy) -> None:
    async with FakeShop("jsonld", n_products=30, page_delay=0.05) as a, Fetcher(fast_config(a)) as fetcher:
        events = await collect("dress", [a.shop()], fetcher, max_products=5, concurrency=3)
        await asyncio.sleep(0.2)
        requests_after = len(a.requests)
        await asyncio.sleep(0.3)
    assert len(of(events, ProductFound)) == 5
    assert events[-1] == CrawlFinished(5, 0, 0, events[-1].pages_fetched, "found 5 products")
    assert events[-1].pages_fetched <= 1 + 5 + 3  # search + found + at most the in-flight ones
    assert len(a.requests) == requests_after  # nothing keeps crawling in the background


@pytest.mark.asyncio
async def test_page_budget_caps_the_trend(loopback_spy: ConnectSpy) -> None:
    async with FakeShop("jsonld", n_products=10) as a, FakeShop("jsonld", n_products=10, name="Shop C") as c:
        async with Fetcher(fast_config(a, c)) as fetcher:
            events = await collect("dress", [a.shop(), c.shop()], fetcher, max_pages=6, max_products=50)
    assert events[-1] == CrawlFinished(4, 0, 0, 6, "page budget of 6 spent")
    product_pages = [p for s in (a, c) for p in s.paths() if p.startswith("/p/")]
    assert len(product_pages) == 4


@pytest.mark.asyncio
async def test_failing_shops_do_not_stop_the_others(loopback_spy: ConnectSpy) -> None:
    async with (
        FakeShop("jsonld", n_products=2) as good,
        FakeShop("jsonld", n_products=2, robots=503, name="Down") as down,
    ):
        shops = [
            good.shop(),
            down.shop(),
            Shop("Internal", "http://10.0.0.1/search?q={query}"),
            Shop("Missing", good.base_url + "/status/404?q={query}"),
            Shop("Disabled", good.base_url + "/never?q={query}", enabled=False),
        ]
        async with Fetcher(fast_config(good, down, max_retries=0)) as fetcher:
            events = await collect("dress", shops, fetcher)
    assert set(of(events, ShopFailed)) == {
        ShopFailed("Down", "robots.txt answered HTTP 503: crawling nothing there"),
        ShopFailed("Internal", "blocked private address 10.0.0.1"),
        ShopFailed("Missing", "HTTP 404"),
    }
    assert len(of(events, ProductFound)) == 2
    assert events[-1] == CrawlFinished(2, 0, 3, 4, None)  # Missing's 404 page was fetched; the others never
    assert down.paths() == ["/robots.txt"]
    assert "/never" not in good.paths()
    assert loopback_spy.refused == []


@pytest.mark.asyncio
async def test_closing_the_iterator_cancels_the_crawl(loopback_spy: ConnectSpy) -> None:
    async with FakeShop("jsonld", n_products=40, page_delay=0.05) as a, Fetcher(fast_config(a)) as fetcher:
        stream = crawl_trend("dress", [a.shop()], fetcher, check_picture=CHECK, max_products=40)
        async for event in stream:
            if isinstance(event, ProductFound):
                break
        await stream.aclose()
        await asyncio.sleep(0.2)
        seen = len(a.requests)
        await asyncio.sleep(0.3)
        assert len(a.requests) == seen
        assert seen < 20
    crawl_tasks = [t for t in asyncio.all_tasks() if t.get_name().startswith("crawl:")]
    assert crawl_tasks == []


@pytest.mark.asyncio
async def test_tag_is_normalised_and_encoded(loopback_spy: ConnectSpy) -> None:
    async with FakeShop("jsonld", n_products=1) as a, Fetcher(fast_config(a)) as fetcher:
        events = await collect("  Summer   DRESS&more ", [a.shop()], fetcher)
    search = next(r for r in a.requests if r.path == "/search")
    assert search.query == "q=summer%20dress%26more"
    assert of(events, ProductFound)[0].product.tag == "summer dress&more"
    with pytest.raises(ValueError, match="needs a tag"):
        normalise_tag("   ")


def test_same_site() -> None:
    assert same_site("https://www.shop.test/p/1", "https://shop.test/search")
    assert same_site("https://m.shop.test/p/1", "https://www.shop.test/search")
    assert same_site("http://shop.test/p/1", "https://shop.test/search")
    assert not same_site("https://othershop.test/p/1", "https://shop.test/")
    assert not same_site("https://shop.test.evil/p/1", "https://shop.test/")
    assert not same_site("http://127.0.0.1:2/p", "http://127.0.0.1:1/search")


# ---- pagination (issue 18) -----------------------------------------------------------------
@pytest.mark.asyncio
@pytest.mark.parametrize(("style", "next_style"), [("jsonld", "link"), ("jsonld", "anchor"), ("grid", "selector")])
async def test_results_over_two_pages_are_all_found(loopback_spy: ConnectSpy, style: str, next_style: str) -> None:
    """31 listings, 16 per page: the first page alone gave 16 (the issue saw 14 of 31)."""
    async with FakeShop(style, n_products=31, per_page=16, next_style=next_style) as shop:
        async with Fetcher(fast_config(shop)) as fetcher:
            events = await collect("dress", [shop.shop()], fetcher, max_pages=40, max_products=40, concurrency=8)
    found = {e.product.info.url for e in of(events, ProductFound)}
    assert found == {shop.product_url(p) for p in shop.products}
    searched = of(events, ShopSearched)
    assert [(s.n_links, s.pages, s.note) for s in searched] == [(31, 2, "")]
    assert [r.query for r in shop.requests if r.path == "/search"] == ["q=dress", "q=dress&page=2"]
    assert events[-1] == CrawlFinished(31, 0, 0, 2 + 31, None)


@pytest.mark.asyncio
async def test_a_429_on_page_two_is_waited_out_and_retried(loopback_spy: ConnectSpy) -> None:
    async with FakeShop("jsonld", n_products=20, per_page=10, rate_limit_page=2) as shop:
        async with Fetcher(fast_config(shop)) as fetcher:
            start = time.monotonic()
            events = await collect("dress", [shop.shop()], fetcher, max_pages=40, max_products=40)
            elapsed = time.monotonic() - start
    assert len(of(events, ProductFound)) == 20
    page_two = [r for r in shop.requests if r.path == "/search" and r.query.endswith("page=2")]
    assert [r.status for r in page_two] == [429, 200]
    assert page_two[1].started - page_two[0].started >= 0.9  # Retry-After: 1 was honoured
    assert elapsed >= 0.9


@pytest.mark.asyncio
async def test_endless_pagination_stops_at_the_per_shop_cap(loopback_spy: ConnectSpy) -> None:
    async with FakeShop("jsonld", n_products=4, per_page=2, endless_pages=True) as shop:
        async with Fetcher(fast_config(shop)) as fetcher:
            events = await collect("dress", [shop.shop()], fetcher, max_pages=40, max_search_pages=5)
    assert [(s.n_links, s.pages) for s in of(events, ShopSearched)] == [(4, 5)]
    assert shop.hits("/search") == 5
    assert len(of(events, ProductFound)) == 4


@pytest.mark.asyncio
async def test_a_failing_later_page_keeps_what_the_first_gave(loopback_spy: ConnectSpy) -> None:
    async with FakeShop("jsonld", n_products=6, per_page=3, rate_limit_page=2) as shop:
        async with Fetcher(fast_config(shop, max_retries=0)) as fetcher:
            events = await collect("dress", [shop.shop()], fetcher, max_pages=40)
    assert [(s.n_links, s.pages, s.note) for s in of(events, ShopSearched)] == [
        (3, 1, "page 2: HTTP 429: shop asks to wait 1 s")
    ]
    assert len(of(events, ProductFound)) == 3 and of(events, ShopFailed) == []


@pytest.mark.asyncio
async def test_pages_count_against_the_trend_budget(loopback_spy: ConnectSpy) -> None:
    async with FakeShop("jsonld", n_products=30, per_page=5) as shop:
        async with Fetcher(fast_config(shop)) as fetcher:
            events = await collect("dress", [shop.shop()], fetcher, max_pages=4, max_search_pages=10)
    searched = of(events, ShopSearched)[0]
    assert (searched.pages, searched.note) == (4, "page 5: page budget of 4 spent")
    assert events[-1].pages_fetched == 4


@pytest.mark.asyncio
async def test_picture_check_runs_in_the_given_executor_and_any_error_skips(loopback_spy: ConnectSpy) -> None:
    from concurrent.futures import ThreadPoolExecutor

    seen: list[str] = []

    def check(data: bytes) -> bytes:
        import threading

        seen.append(threading.current_thread().name)
        if len(seen) == 1:
            raise RuntimeError("checker exploded")
        return CHECK(data)

    async with FakeShop("jsonld", n_products=3) as shop, Fetcher(fast_config(shop)) as fetcher:
        with ThreadPoolExecutor(1, thread_name_prefix="pictures") as pool:
            events = await collect("dress", [shop.shop()], fetcher, check_picture=check, picture_executor=pool)
    assert len(of(events, ProductFound)) == 2
    assert [e.reason for e in of(events, ProductSkipped)] == ["picture rejected: checker exploded"]
    assert seen and all(name.startswith("pictures") for name in seen)
