"""Issue 16 campaign, "hostile shops": every case of the fake shop and the adversarial robots.txt
files, each crawled to the end. Each crawl must finish within its budget (pages, time) with 0
crashes; the figures go to bench/results/hostile_shops.json (for docs/reliability.md)."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from engine.vision.images import picture_check
from scraper.crawl import CrawlFinished, ProductSkipped, ShopFailed, crawl_trend
from scraper.fetch import Fetcher
from tests.support.fakes.shop import SPECIALS, ConnectSpy, FakeShop, bomb_png, fast_config, loopback_spy  # noqa: F401

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "hostile_shops.json"
MAX_PAGES = 40
TIME_BOUND = 20.0  # seconds per crawl on a busy 2-core machine; the figures show the real times

WILDCARD_BOMB = "User-agent: *\nDisallow: /*a*a*a*a*a*a*a*a*a*a*a*a*b\n"
FORTY_THOUSAND = "User-agent: *\n" + "".join(f"Disallow: /section-{i}/page\n" for i in range(40_000))
WILDCARD_FLOOD = "User-agent: *\n" + "".join(f"Disallow: /*p*{i}*x$\n" for i in range(20_000))


def _cut_at_cap(cap: int = 512 * 1024) -> str:
    """A file whose 512 KiB cut turns "Disallow: /p/p-001" into "Disallow: /" (which would forbid all)."""
    head = "User-agent: *\nDisallow: /private/\n"
    cut_line = "Disallow: /p/p-001\n"
    filler = cap - len(head) - len("Disallow: /")
    padding = "# pad\n" * ((filler - 80) // 6)
    padding += "#" * (filler - len(padding) - 1) + "\n"
    return head + padding + cut_line + "Allow: /\n"


CUT_AT_CAP = _cut_at_cap()
NO_COLONS = "User-agent *\nDisallow /private/\nDisallow /p/p-002\n"


@dataclass
class Case:
    name: str
    shop: dict[str, Any]
    crawl: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)


CASES = [
    Case(
        "every special page (jsonld)",
        {"style": "jsonld", "n_products": 6, "specials": list(SPECIALS), "slow_seconds": 3},
    ),
    Case("grid shop with selectors", {"style": "grid", "n_products": 6, "page_delay": 0.05}),
    Case("full ItemList (no product pages)", {"style": "jsonld", "n_products": 8, "full_itemlist": True}),
    Case("robots.txt 404 (allow all)", {"style": "jsonld", "n_products": 3, "robots": 404}),
    Case("robots.txt 503 (crawl nothing)", {"style": "jsonld", "n_products": 3, "robots": 503}),
    Case("two result pages (link rel=next)", {"style": "jsonld", "n_products": 31, "per_page": 16}),
    Case(
        "two result pages (next selector)", {"style": "grid", "n_products": 12, "per_page": 6, "next_style": "selector"}
    ),
    Case("429 on page 2", {"style": "jsonld", "n_products": 10, "per_page": 5, "rate_limit_page": 2}),
    Case("endless pagination", {"style": "jsonld", "n_products": 4, "per_page": 2, "endless_pages": True}),
    Case("page budget smaller than the shop", {"style": "jsonld", "n_products": 60}, {"max_pages": 10}),
    Case("robots: wildcard backtracking bomb", {"style": "jsonld", "n_products": 6, "robots": WILDCARD_BOMB}),
    Case("robots: 40,000 plain rules (cut at 512 KiB)", {"style": "jsonld", "n_products": 6, "robots": FORTY_THOUSAND}),
    Case("robots: 20,000 wildcard rules", {"style": "jsonld", "n_products": 6, "robots": WILDCARD_FLOOD}),
    Case("robots: cut at the cap mid-line", {"style": "jsonld", "n_products": 3, "robots": CUT_AT_CAP}),
    Case("robots: lines without colons", {"style": "jsonld", "n_products": 3, "robots": NO_COLONS}),
]


async def _loop_watch(stalls: list[float], stop: asyncio.Event) -> None:
    """The longest time the event loop did not get round to a 5 ms timer."""
    last = time.perf_counter()
    while not stop.is_set():
        await asyncio.sleep(0.005)
        now = time.perf_counter()
        stalls.append(now - last - 0.005)
        last = now


async def _run(case: Case) -> dict[str, Any]:
    check = picture_check(max_bytes=2 * 1024 * 1024)
    await asyncio.to_thread(bomb_png)  # the fake shop builds it on the shared loop: not the crawler's stall
    async with FakeShop(**case.shop) as shop:
        config = fast_config(shop, timeout=0.5, max_retries=1, **case.config)
        crawl_args = {"max_pages": MAX_PAGES, "max_products": 100, "concurrency": 8} | case.crawl
        stalls: list[float] = []
        stop = asyncio.Event()
        watch = asyncio.create_task(_loop_watch(stalls, stop))
        async with Fetcher(config) as fetcher:
            start = time.monotonic()
            events = [e async for e in crawl_trend("dress", [shop.shop()], fetcher, check_picture=check, **crawl_args)]
            seconds = time.monotonic() - start
        stop.set()
        await watch
    finished = events[-1]
    assert isinstance(finished, CrawlFinished), case.name
    reasons = [e.reason for e in events if isinstance(e, ProductSkipped | ShopFailed)]
    crashes = sum("internal error" in r for r in reasons)
    return {
        "case": case.name,
        "pages": finished.pages_fetched,
        "page_budget": crawl_args["max_pages"],
        "found": finished.found,
        "skipped": finished.skipped,
        "shops_failed": finished.shops_failed,
        "stopped": finished.stopped,
        "crashes": crashes,
        "seconds": round(seconds, 2),
        "longest_loop_stall_ms": round(1000 * max(stalls, default=0.0), 1),
        "requests": len(shop.requests),
    }


@pytest.mark.asyncio
async def test_every_hostile_shop_is_crawled_within_budget(loopback_spy: ConnectSpy) -> None:
    rows = []
    for case in CASES:
        row = await _run(case)
        rows.append(row)
        assert row["crashes"] == 0, row
        assert row["pages"] <= row["page_budget"], row
        assert row["seconds"] < TIME_BOUND, row
    assert loopback_spy.refused == []
    by_name = {r["case"]: r for r in rows}
    assert by_name["two result pages (link rel=next)"]["found"] == 31
    assert by_name["two result pages (next selector)"]["found"] == 12
    assert by_name["429 on page 2"]["found"] == 10
    assert by_name["robots.txt 503 (crawl nothing)"]["shops_failed"] == 1
    assert by_name["robots: cut at the cap mid-line"]["found"] == 3  # the partial "Disallow: /" was dropped
    assert by_name["robots: lines without colons"]["found"] == 2  # "Disallow /p/p-002" was obeyed
    assert by_name["page budget smaller than the shop"]["stopped"] == "page budget of 10 spent"
    summary = {
        "cases": len(rows),
        "crashes": sum(r["crashes"] for r in rows),
        "pages": sum(r["pages"] for r in rows),
        "seconds": round(sum(r["seconds"] for r in rows), 2),
        "longest_loop_stall_ms": max(r["longest_loop_stall_ms"] for r in rows),
        "page_budget_per_crawl": MAX_PAGES,
        "time_bound_per_crawl_s": TIME_BOUND,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"summary": summary, "cases": rows}, indent=1) + "\n")
    print(
        "\n"
        + "\n".join(f"{r['case']:45} pages {r['pages']:3} found {r['found']:3} {r['seconds']:6.2f} s" for r in rows)
    )
