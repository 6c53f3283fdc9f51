"""Several workers on one database, in one test process (``db_url``: sqlite / postgres): two
FashionServices with their own data dirs and indexes over one database, B following the
catalogue with a :class:`Follower`. The same with real processes: test_workers.py."""

from __future__ import annotations

import asyncio
import shutil
import time

import numpy as np
import pytest_asyncio

from db import trend_store
from db.store import NewItem, Store
from engine.catalogue.follower import Follower
from engine.types import UserRef
from tests.integration.test_trend_service import fake_settings
from tests.support.fakes.shop import FakeShop, loopback_spy  # noqa: F401 - fixture
from tests.support.settings import make_settings

ALICE = UserRef("test", "alice")


@pytest_asyncio.fixture
async def workers(db_url, catalogue_dir, tmp_path, backbone):
    """workers(**settings) → (A, B, B's follower): two services over one database."""
    from engine.service import FashionService

    opened: list = []
    followers: list[Follower] = []

    async def open_(fakes=(), **overrides):
        dirs = [tmp_path / "a" / "data", tmp_path / "b" / "data"]
        for d in dirs:
            shutil.copytree(catalogue_dir, d)
        url = db_url or f"sqlite+aiosqlite:///{dirs[0] / 'fashionbot.sqlite3'}"
        services = []
        for d in dirs:
            settings = (
                fake_settings(d, list(fakes), database_url=url, **overrides)
                if fakes
                else make_settings(d, database_url=url, **overrides)
            )
            services.append(await FashionService.create(settings, backbone=backbone))
        opened.extend(services)
        follower = Follower.start(services[1].catalogue, interval=0.5)
        followers.append(follower)
        return services[0], services[1], follower

    yield open_
    for f in followers:
        await f.stop()
    for svc in opened:
        await svc.close()


async def _until(predicate, limit: float = 10.0) -> float:
    start = time.monotonic()
    while not await predicate():
        assert time.monotonic() - start < limit, "not within the time allowed"
        await asyncio.sleep(0.05)
    return time.monotonic() - start


async def test_an_item_added_on_one_worker_is_recommended_by_the_other(workers, photo_of) -> None:
    a, b, _ = await workers()
    picture = photo_of("Bag", 3)
    vector = (await a.encoder.embed_bytes(picture)).astype(np.float32)
    (item_id,) = await a.catalogue.add_items(
        [NewItem(source="t", external_id="new-bag", title="New bag", image=picture, price=10.0)], vector[None, :]
    )

    async def b_recommends() -> bool:
        return (await b.recommend(picture)).items[0].item.id == item_id

    took = await _until(b_recommends)
    assert took < (1.0 if b.store.dialect == "postgresql" else 3.0)  # NOTIFY: no poll wait

    # removed (or marked a duplicate) on A: gone from B's results too
    await a.catalogue.remove_items([item_id])

    async def b_forgot_it() -> bool:
        return item_id not in b.catalogue and all(s.item.id != item_id for s in (await b.recommend(picture)).items)

    await _until(b_forgot_it)
    top = (await b.recommend(picture)).items[0].item.id
    await a.catalogue.mark_duplicates([(top, 1)])
    await _until(lambda: _absent(b, top))
    assert top not in a.catalogue and await a.store.count_embedded(a.model_key) == len(a.catalogue) == len(b.catalogue)


async def _absent(svc, item_id: int) -> bool:
    return item_id not in svc.catalogue


async def test_feedback_and_forget_reach_every_worker(workers, photo_of) -> None:
    a, b, _ = await workers()
    rec = await a.recommend(photo_of("Dress"), user=ALICE)
    disliked = rec.items[0].item.id
    await a.feedback(ALICE, disliked, -1)
    assert disliked not in [s.item.id for s in (await b.recommend(photo_of("Dress"), user=ALICE)).items]
    for i in range(1, 4):
        await b.recommend(photo_of("Sneaker", i), user=ALICE)
    assert (await b.style(ALICE)).clusters  # B's profile cache now holds ALICE's style
    counts = await a.forget(ALICE)
    assert counts["photos"] == 5 and counts["users"] == 1  # 1 + 1 dress, 3 sneakers
    style = await b.style(ALICE)
    assert style.photo_count == 0 and not style.clusters  # nothing stale from B's cache
    assert await b.store.user_id("test", "alice", create=False) is None
    # a newcomer on B never inherits ALICE's id (ids are not reused), so no cache entry fits
    bob = await b.store.user_id("test", "bob")
    assert bob is not None and (await b.style(UserRef("test", "bob"))).photo_count == 0


async def test_feedback_is_one_upsert_even_when_two_workers_rate_at_once(workers) -> None:
    a, b, _ = await workers()
    uid = await a.store.user_id("test", "carol")
    await asyncio.gather(*(s.store.set_feedback(uid, 5, v) for s, v in [(a, 1), (b, -1)] * 5))
    assert set((await a.store.feedback(uid)).values()) <= {1, -1} and len(await a.store.feedback(uid)) == 1
    await b.store.set_feedback(uid, 5, 1)
    assert await a.store.feedback(uid) == {5: 1}


async def test_bulk_embeddings_update(workers) -> None:
    a, _, _ = await workers()
    ids = await a.store.add_items([NewItem(source="t", external_id=f"e{i}", title="x", image=b"x") for i in range(300)])
    vectors = {i: np.full(4, i, dtype=np.float32).tobytes() for i in ids}
    await a.store.set_embeddings("m:test", list(vectors.items()))
    assert await a.store.count_embedded("m:test") == 300
    assert await a.store.count_to_embed("m:test") == await a.store.count_items() - 300


async def test_one_process_holds_a_singleton_role(workers) -> None:
    a, b, _ = await workers()
    assert await a.store.try_singleton("telegram-polling")
    assert await a.store.try_singleton("telegram-polling")  # ours already
    assert not await b.store.try_singleton("telegram-polling")
    other = Store(a.store.url)
    assert not await other.try_singleton("telegram-polling")
    await a.store.release_singleton("telegram-polling")
    assert await other.try_singleton("telegram-polling")
    await other.close()  # closing releases it
    assert await b.store.try_singleton("telegram-polling")


async def test_a_trend_runs_once_across_workers_and_the_other_shows_its_progress(workers, loopback_spy) -> None:
    async with FakeShop("jsonld", n_products=8, page_delay=0.4) as shop:
        a, b, _ = await workers([shop])
        first = a.trend("dress", ALICE)
        started = await anext(first)
        assert not started.done
        a_snaps = [started]

        async def rest_of_a() -> None:
            a_snaps.extend([p async for p in first])

        a_task = asyncio.create_task(rest_of_a())
        await asyncio.sleep(0.3)
        b_snaps = [p async for p in b.trend("dress", UserRef("test", "bob"))]
        await a_task
        pages = [p for p in shop.paths() if "/product/" in p or "/p/" in p]
    assert a_snaps[-1].done and b_snaps[-1].done and b_snaps[-1].error is None
    assert b_snaps[-1].indexed == a_snaps[-1].indexed == 8
    assert any(0 < p.found < 8 for p in b_snaps[:-1]) or len(b_snaps) > 1  # B showed A's progress
    assert len(pages) <= 8 + 2  # one crawl, not two
    rows = await trend_store.trend_rows(a.store, "dress")
    assert [r.status for r in rows] == ["done"]
    assert await trend_store.lease(a.store, "dress") is None  # released
    assert {s.item.id for s in b_snaps[-1].best} <= set(await trend_store.items_with_tag(a.store, "dress"))


async def test_a_trend_that_ends_as_the_waiting_worker_polls_is_shown_not_run_again(
    workers, loopback_spy, monkeypatch
) -> None:
    """The holder records "done" and then lets go of the lease. A waiting worker that read
    the row while it was still running and reaches for the lease just after it was let go
    (a loaded machine: the fresh-clone CI once crawled the trend twice) shows that run's
    end instead of crawling the shops again."""
    async with FakeShop("jsonld", n_products=3) as shop:
        a, b, _ = await workers([shop])
        holder = trend_store.lease_holder()  # this process: alive
        assert await trend_store.acquire_lease(a.store, "dress", holder)
        trend_id = await trend_store.start_trend(a.store, "dress", None)
        await trend_store.record_trend(a.store, trend_id, found=3, indexed=2, skipped=1, shops_searched=1)
        read_lease = trend_store.lease

        async def holder_finishes_meanwhile(store, tag):
            current = await read_lease(store, tag)
            await trend_store.record_trend(store, trend_id, found=3, indexed=3, skipped=0, status="done")
            await trend_store.release_lease(store, tag, holder)
            return current  # what B saw: still held

        monkeypatch.setattr(trend_store, "lease", holder_finishes_meanwhile)
        snaps = [p async for p in b.trend("dress")]
        monkeypatch.setattr(trend_store, "lease", read_lease)
        pages = [p for p in shop.paths() if "/product/" in p or "/p/" in p]
    assert snaps[-1].done and snaps[-1].error is None
    assert snaps[-1].indexed == 3  # the holder's count, from its row
    assert pages == []  # no second crawl
    assert [r.status for r in await trend_store.trend_rows(a.store, "dress")] == ["done"]
    assert await trend_store.lease(a.store, "dress") is None


async def test_an_expired_lease_is_taken_over(workers, loopback_spy) -> None:
    """A worker that died mid-trend (on another machine: no pid to check) stops renewing;
    at expiry the next run of the tag takes it over and finishes the trend."""
    async with FakeShop("jsonld", n_products=3) as shop:
        a, b, _ = await workers([shop])
        dead = "elsewhere:4242:dead"
        assert await trend_store.acquire_lease(a.store, "dress", dead, seconds=1.5)
        await trend_store.start_trend(a.store, "dress", None)  # its row, left "running"
        start = time.monotonic()
        snaps = [p async for p in b.trend("dress")]
        took = time.monotonic() - start
    assert snaps[-1].done and snaps[-1].error is None and snaps[-1].indexed == 3
    assert 1.0 <= took < 10
    assert [r.status for r in await trend_store.trend_rows(a.store, "dress")] == ["interrupted", "done"]
