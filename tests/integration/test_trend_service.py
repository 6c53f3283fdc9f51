"""FashionService.trend end to end: real service (SQLite, hnswlib, Lite0 weights), real
scraper, fake shops on 127.0.0.1 (tests/fakes/shop.py).

Politeness delay (``scraper_min_delay``) is 0 for the fake shops: they are ours.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import sys
from pathlib import Path

import pytest_asyncio

from db import trend_store
from engine.trends.runner import NO_SHOPS, SHUTTING_DOWN, STOPPED
from engine.types import TrendProgress, UserRef
from scraper import Shop
from tests.support.fakes.shop import (
    SPECIALS,
    ConnectSpy,
    FakeShop,
    loopback_spy,  # noqa: F401 - fixture
    product_jpeg,
)
from tests.support.settings import CATALOGUE_SIZE, make_settings

ROOT = Path(trend_store.__file__).resolve().parents[1]  # the checkout (the child process runs from it)
ALICE = UserRef("test", "alice")
BOB = UserRef("test", "bob")
# Specials the crawl refuses (see tests/test_scraper_crawl.py for the reasons); "rate-limited"
# and "lying" are found: they reuse the pictures of p-003 and p-002 at the same shop.
REFUSED = {s: p for s, p in SPECIALS.items() if s not in ("rate-limited", "lying", "offsite")}


def shops_toml(shops: list[Shop]) -> str:
    out = []
    for shop in shops:
        out.append(f"[[shops]]\nname = {json.dumps(shop.name)}\nsearch_url = {json.dumps(shop.search_url)}\n")
        if shop.selectors:
            out.append("[shops.selectors]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in shop.selectors.items()))
    return "".join(out)


def fake_settings(data_dir: Path, fakes: list[FakeShop], **overrides):
    shops_file = data_dir.parent / "shops.toml"
    shops_file.write_text(shops_toml([f.shop() for f in fakes]))
    values = {
        "shops_file": shops_file,
        "scraper_allow_hosts": [f.allow_entry for f in fakes],
        "scraper_min_delay": 0.0,  # fake shops: no politeness delay needed
        "scraper_timeout": 2.0,
    } | overrides
    return make_settings(data_dir, **values)


@pytest_asyncio.fixture
async def open_service(catalogue_dir, tmp_path, backbone):
    """open_service(fakes, **settings) → a FashionService over a private copy of the catalogue
    whose shops file lists the fake shops."""
    from engine.service import FashionService

    opened = []

    async def open_(fakes: list[FakeShop], **overrides):
        data_dir = tmp_path / "data"
        if not data_dir.exists():
            shutil.copytree(catalogue_dir, data_dir)
        svc = await FashionService.create(fake_settings(data_dir, fakes, **overrides), backbone=backbone)
        opened.append(svc)
        return svc

    yield open_
    for svc in opened:
        await svc.close()


async def collect(stream) -> list[TrendProgress]:
    return [p async for p in stream]


def counts(p: TrendProgress) -> tuple[int, int, int, int, int]:
    return (p.shops_searched, p.shops_total, p.found, p.indexed, p.skipped)


def assert_monotonic(snaps: list[TrendProgress]) -> None:
    assert snaps and snaps[-1].done and not any(p.done for p in snaps[:-1])
    for before, after in zip(snaps, snaps[1:]):
        assert all(x <= y for x, y in zip(counts(before), counts(after))), (before, after)


async def shop_items(svc, tag: str):
    ids = await trend_store.items_with_tag(svc.store, tag)
    return await svc.store.items(ids)


# ---- two shops, hostile pages, price comparison ----------------------------------------
async def test_two_shops_with_hostile_pages(open_service, loopback_spy: ConnectSpy) -> None:
    async with (
        FakeShop("jsonld", n_products=6, specials=list(SPECIALS), slow_seconds=3) as a,
        FakeShop("grid", n_products=6, price_factor=1.1) as b,
    ):
        svc = await open_service([a, b], scraper_timeout=0.5)
        before = len(svc.catalogue.index)
        snaps = [p async for p in svc.trend("  Dress ", ALICE)]

    # progress: monotonic snapshots, then the summary
    assert_monotonic(snaps)
    final = snaps[-1]
    assert counts(snaps[0]) == (0, 2, 0, 0, 0)
    assert counts(final) == (2, 2, 14, 6, 9)  # 8 + 6 found; 9 refused; 6 distinct products
    assert final.tag == "dress" and final.error is None

    # exactly six new items, one per distinct picture, live in the index
    assert len(svc.catalogue.index) == before + 6
    assert await svc.store.count_items() == CATALOGUE_SIZE + 6
    items = await shop_items(svc, "dress")
    assert len(items) == 6
    assert all(
        i.shop in ("Shop A", "Shop B") and i.tags == ("dress",) and i.category == "Dress" for i in items.values()
    )

    # what was refused left no trace; what was found is an item or an offer, once
    offers = await trend_store.offer_rows(svc.store)
    stored_urls = [i.url for i in items.values()] + [o.url for o in offers]
    assert len(stored_urls) == len(set(stored_urls)) == 12
    for path in REFUSED.values():
        assert not any(u.endswith(path) for u in stored_urls), path
    assert "/private/p-hidden" not in a.paths()
    assert loopback_spy.refused == []

    # each product: kept once, with an offer from the other shop; a photo of it comes back first
    specials_with_picture = {1: a.url(SPECIALS["lying"]), 2: a.url(SPECIALS["rate-limited"])}
    for index, fake in enumerate(a.products):
        rec = await svc.recommend(product_jpeg(index))
        top = rec.items[0]
        assert top.score > 0.99
        assert top.item.id in items
        listings = {a.product_url(fake), b.product_url(fake), specials_with_picture.get(index)}
        assert top.item.url in listings
        other = "Shop B" if top.item.shop == "Shop A" else "Shop A"
        assert [o.shop for o in top.offers] == [other]
        offer = top.offers[0]
        assert offer.url in listings and offer.currency == "EUR"
        if other == "Shop B":
            assert (offer.price, offer.url) == (fake.price(1.1), b.product_url(fake))
        else:  # Shop A lists p-003's picture twice: the cheaper listing is the offer
            assert offer.price == (33.0 if index == 2 else fake.price(1.0))
        if index == 0:  # a picture no special reuses: the item is the product itself
            assert top.item.title == fake.title
            assert top.item.price in (fake.price(1.0), fake.price(1.1))
        assert rec.items[1].score < 0.99  # nothing else looks like it

    # bookkeeping
    infos = await svc.trends()
    assert [(t.tag, t.item_count) for t in infos] == [("dress", 6)]
    (row,) = await trend_store.trend_rows(svc.store, "dress")
    assert (row.status, row.found, row.indexed, row.skipped) == ("done", 14, 6, 9)
    assert row.finished_at is not None
    assert row.started_by == await svc.store.user_id("test", "alice", create=False)
    # the summary's best items are the new ones, with their offers
    assert sorted(s.item.id for s in final.best) == sorted(items)
    assert all(len(s.offers) == 1 for s in final.best)

    # /forget: the trend's items stay in the catalogue, but nothing ties the tag to alice
    await svc.forget(ALICE)
    (row,) = await trend_store.trend_rows(svc.store, "dress")
    assert row.started_by is None and await svc.store.user_id("test", "alice", create=False) is None
    assert [(t.tag, t.item_count) for t in await svc.trends()] == [("dress", 6)]


# ---- joining, limits, live indexing, re-runs -----------------------------------------------
async def test_join_limits_live_index_and_rerun(open_service, loopback_spy: ConnectSpy) -> None:
    async with FakeShop("jsonld", n_products=12, page_delay=0.15) as a:
        svc = await open_service([a], trend_max_running=1)
        first = svc.trend("dress", ALICE)
        start = await anext(first)
        assert start == TrendProgress(tag="dress", shops_total=1)

        second = svc.trend("DRESS", BOB)  # the same tag: joins, whoever asks
        alice_again = [p async for p in svc.trend("skirt", ALICE)]
        assert len(alice_again) == 1 and alice_again[0].done and alice_again[0].found == 0
        assert alice_again[0].error.startswith("You already have a trend running (“dress”)")
        bob_new = [p async for p in svc.trend("skirt", BOB)]
        assert bob_new[0].done and "as many trends as I can at once (1)" in bob_new[0].error

        seen_live: list[int] = []

        async def follow(stream, out: list[TrendProgress], check_live: bool) -> None:
            async for p in stream:
                out.append(p)
                if check_live and p.indexed and not p.done and not seen_live:
                    # recommendable as soon as indexed, while the trend still runs
                    (item_id, *_) = await trend_store.items_with_tag(svc.store, "dress")
                    rec = await svc.recommend(await svc.item_image(item_id))
                    assert rec.items[0].item.id == item_id
                    seen_live.append(item_id)

        alice, bob = [start], []
        await asyncio.wait_for(asyncio.gather(follow(first, alice, True), follow(second, bob, False)), 60)

        assert seen_live, "no snapshot showed indexed items before the end"
        assert_monotonic(alice)
        assert_monotonic(bob)
        assert alice[-1] == bob[-1]
        assert counts(alice[-1]) == (1, 1, 12, 12, 0)
        assert a.hits("/search") == 1  # one crawl for both readers
        assert all(a.hits(f"/p/{p.slug}") == 1 and a.hits(f"/img/{p.slug}.jpg") == 1 for p in a.products)
        assert svc._trends.running() == []

        # after it finished, Alice may run again: the same tag adds nothing new
        rerun = [p async for p in svc.trend("dress", ALICE)]
        assert counts(rerun[-1]) == (1, 1, 12, 0, 0) and rerun[-1].error is None
        assert len(rerun[-1].best) == 10  # the items it found again
        # another tag over the same products tags them instead of duplicating them
        other = [p async for p in svc.trend("summer dress", BOB)]
        assert counts(other[-1]) == (1, 1, 12, 0, 0)

    assert await svc.store.count_items() == CATALOGUE_SIZE + 12
    items = await shop_items(svc, "summer dress")
    assert len(items) == 12 and all(i.tags == ("dress", "summer dress") for i in items.values())
    assert [(t.tag, t.item_count) for t in await svc.trends()] == [("summer dress", 12), ("dress", 12)]
    rows = await trend_store.trend_rows(svc.store, "dress")
    assert [(r.status, r.indexed) for r in rows] == [("done", 12), ("done", 0)]
    assert loopback_spy.refused == []


async def test_two_tags_at_once_share_the_catalogue(open_service, loopback_spy: ConnectSpy) -> None:
    """Two trends over the same products at the same time: each product is stored once
    (matching and inserting are serialised across trends) and carries both tags."""
    async with FakeShop("jsonld", n_products=8, page_delay=0.05) as a:
        svc = await open_service([a])
        runs = await asyncio.gather(collect(svc.trend("dress", ALICE)), collect(svc.trend("red dress", BOB)))
    finals = [r[-1] for r in runs]
    assert [f.error for f in finals] == [None, None]
    assert [counts(f)[:3] for f in finals] == [(1, 1, 8), (1, 1, 8)]
    assert sum(f.indexed for f in finals) == 8  # whoever came first indexed it; the other tagged it
    assert await svc.store.count_items() == CATALOGUE_SIZE + 8 == len(svc.catalogue.index)
    items = await shop_items(svc, "dress")
    assert len(items) == 8 and all(set(i.tags) == {"dress", "red dress"} for i in items.values())
    assert {(t.tag, t.item_count) for t in await svc.trends()} == {("dress", 8), ("red dress", 8)}


# ---- what cannot run -------------------------------------------------------------------------
async def test_refusals_and_failing_shops(open_service, tmp_path, loopback_spy: ConnectSpy) -> None:
    async with (
        FakeShop("jsonld", n_products=2) as good,
        FakeShop("jsonld", n_products=2, robots=503, name="Down") as down,
    ):
        svc = await open_service([good, down])
        settings = svc.settings

        results = [p async for p in svc.trend("   ", ALICE)]
        assert len(results) == 1 and results[0].done and "needs a tag" in results[0].error

        shops_file = settings.shops_file
        settings.shops_file = None
        (none,) = [p async for p in svc.trend("dress", ALICE)]
        assert none.done and none.error == NO_SHOPS and "FASHIONBOT_SHOPS_FILE" in none.error

        forbidden = tmp_path / "forbidden.toml"
        forbidden.write_text(
            '[[shops]]\nname = "Insta"\nsearch_url = "https://www.instagram.com/explore/tags/{query}/"\n'
        )
        settings.shops_file = forbidden
        (refused,) = [p async for p in svc.trend("dress", ALICE)]
        assert refused.done and refused.error.startswith("The shop list can't be used") and "instagram" in refused.error

        settings.shops_file = shops_file
        nothing = [p async for p in svc.trend("nothing", ALICE)]  # the fake shops have nothing for "nothing"
        assert counts(nothing[-1]) == (2, 2, 0, 0, 0) and nothing[-1].best == []
        assert "Down (robots.txt answered HTTP 503" in nothing[-1].error

        partial = [p async for p in svc.trend("dress", ALICE)]
        assert counts(partial[-1]) == (2, 2, 2, 2, 0)
        assert partial[-1].error.startswith("Couldn't search Down (")
    assert [(t.tag, t.item_count) for t in await svc.trends()] == [("dress", 2), ("nothing", 0)]
    rows = await trend_store.trend_rows(svc.store)  # refused trends leave no row
    assert [(r.tag, r.status, r.found, r.indexed) for r in rows] == [("nothing", "done", 0, 0), ("dress", "done", 2, 2)]


async def test_closing_the_service_stops_a_running_trend(open_service, loopback_spy: ConnectSpy) -> None:
    async with FakeShop("jsonld", n_products=30, page_delay=0.3) as a:
        svc = await open_service([a])
        stream = svc.trend("dress", ALICE)
        snaps = [await anext(stream)]
        async for p in stream:
            snaps.append(p)
            if p.shops_searched:
                break
        closing = asyncio.create_task(svc.close())
        rest = await asyncio.wait_for(collect(stream), 10)
        await closing
        requests = len(a.requests)
        await asyncio.sleep(0.5)
        assert len(a.requests) == requests  # nothing keeps crawling
    final = rest[-1]
    assert final.done and final.found < 30 and final.error == STOPPED
    assert [p async for p in svc.trend("dress", BOB)][-1].error == SHUTTING_DOWN
    # the bookkeeping was written before the database closed
    from db.store import Store

    store = Store(svc.settings.db_url)
    try:
        (row,) = await trend_store.trend_rows(store, "dress")
        assert (row.status, row.found, row.indexed) == ("cancelled", final.found, final.indexed)
    finally:
        await store.close()


def fake_env(monkeypatch, data_dir: Path, settings) -> None:
    for key in [k for k in os.environ if k.startswith("FASHIONBOT_")]:
        monkeypatch.delenv(key)
    for key, value in {
        "FASHIONBOT_DATA_DIR": str(data_dir),
        "FASHIONBOT_BACKBONE": "efficientnet-lite0",
        "FASHIONBOT_ALLOW_WEIGHT_DOWNLOAD": "false",
        "FASHIONBOT_SCRAPER_ALLOW_HOSTS": json.dumps(settings.scraper_allow_hosts),
        "FASHIONBOT_SCRAPER_MIN_DELAY": "0",
    }.items():
        monkeypatch.setenv(key, value)


async def test_cli_trend(catalogue_dir, tmp_path, monkeypatch, capsys, loopback_spy) -> None:
    """`fashionbot trend TAG` shows a progress bar and one summary; `fashionbot trend` lists trends."""
    from bot.cli import main

    data_dir = tmp_path / "data"
    shutil.copytree(catalogue_dir, data_dir)
    async with FakeShop("jsonld", n_products=3) as a:
        settings = fake_settings(data_dir, [a])
        fake_env(monkeypatch, data_dir, settings)
        assert await asyncio.to_thread(main, ["trend", "dress"]) == 1  # no shops file yet
        assert NO_SHOPS in capsys.readouterr().out
        monkeypatch.setenv("FASHIONBOT_SHOPS_FILE", str(settings.shops_file))
        assert await asyncio.to_thread(main, ["trend", "Red", "dress"]) == 0
    from bot.render import trend_progress_text

    captured = capsys.readouterr()
    out = captured.out.splitlines()
    header = trend_progress_text(TrendProgress("red dress", done=True)).splitlines()[0]
    assert out[0] == header  # progress went to the bar (stderr): stdout is the summary alone
    assert "trend red dress" in captured.err and "indexed 3" in captured.err  # the bar's last state
    summary = out
    assert summary[1] == trend_progress_text(TrendProgress("red dress", 1, 1, 3, 3, 0, done=True)).splitlines()[1]
    assert len(summary) == 6  # header, counts, "Best new items:", three items
    assert all(any(p.title in line for line in summary[3:]) for p in a.products)
    assert await asyncio.to_thread(main, ["trend"]) == 0
    assert capsys.readouterr().out == "Recent trends:\n• red dress: 3 items\n"


# ---- killed halfway --------------------------------------------------------------------------
async def test_killed_trend_leaves_nothing_half_written(catalogue_dir, tmp_path, backbone, loopback_spy) -> None:
    """`fashionbot trend dress` in a child process, SIGKILLed once some items are indexed:
    the restart indexes exactly what was committed, and running the trend again completes it."""
    from engine.service import FashionService

    data_dir = tmp_path / "data"
    shutil.copytree(catalogue_dir, data_dir)
    async with FakeShop("jsonld", n_products=24, page_delay=0.25) as a:
        settings = fake_settings(data_dir, [a])
        env = {k: v for k, v in os.environ.items() if not k.startswith("FASHIONBOT_")}
        env |= {
            "PYTHONPATH": str(ROOT),
            "FASHIONBOT_DATA_DIR": str(data_dir),
            "FASHIONBOT_BACKBONE": "efficientnet-lite0",
            "FASHIONBOT_ALLOW_WEIGHT_DOWNLOAD": "false",
            "FASHIONBOT_SHOPS_FILE": str(settings.shops_file),
            "FASHIONBOT_SCRAPER_ALLOW_HOSTS": json.dumps(settings.scraper_allow_hosts),
            "FASHIONBOT_SCRAPER_MIN_DELAY": "0",
        }
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", "trend", "dress",
            cwd=ROOT, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        seen = ""
        indexed_at_kill = 0
        try:
            while True:  # the progress bar (stderr) says "indexed N" as items are committed
                chunk = (await asyncio.wait_for(child.stderr.read(4096), 120)).decode(errors="replace")
                assert chunk, "the child ended before indexing anything: " + seen[-2000:]
                seen += chunk
                found = [int(n) for n in re.findall(r"indexed (\d+)", seen)]
                if found and found[-1] > 0:
                    indexed_at_kill = found[-1]
                    child.send_signal(signal.SIGKILL)  # no close(), no index save, no goodbye
                    break
        finally:
            if child.returncode is None:
                child.kill()
            await child.wait()
        assert child.returncode == -signal.SIGKILL
        assert b"done" not in await child.stdout.read()

        # restart from the same data dir: what was committed is indexed (top-up), nothing more
        svc = await FashionService.create(settings, backbone=backbone)
        try:
            committed = await shop_items(svc, "dress")
            assert indexed_at_kill <= len(committed) < 24
            assert len(svc.catalogue.index) == CATALOGUE_SIZE + len(committed)
            assert all(item_id in svc.catalogue.index for item_id in committed)
            assert await svc.store.count_embedded(svc.model_key) == await svc.store.count_items()
            assert f"{len(committed)} added from the database" in svc.catalogue.state
            for item_id, item in list(committed.items())[:3]:
                rec = await svc.recommend(await svc.item_image(item_id))
                assert rec.items[0].item.id == item_id

            # running it again completes the trend without duplicates
            again = [p async for p in svc.trend("dress", ALICE)]
            assert counts(again[-1]) == (1, 1, 24, 24 - len(committed), 0)
            items = await shop_items(svc, "dress")
            assert len(items) == 24 and set(committed) <= set(items)
            assert sorted(i.url for i in items.values()) == sorted(a.product_url(p) for p in a.products)
            assert await svc.store.count_items() == CATALOGUE_SIZE + 24 == len(svc.catalogue.index)
            rows = await trend_store.trend_rows(svc.store, "dress")
            assert [r.status for r in rows] == ["interrupted", "done"]
        finally:
            await svc.close()
    assert loopback_spy.refused == []
