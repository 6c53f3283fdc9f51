"""Remote feed pictures go through the scraper's guarded fetcher (issue 16 #2), and any
failure of one row is reported with its line while the ingest goes on (#5)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from engine.catalogue import ingest
from engine.service import FashionService
from tests.support.fakes.shop import ConnectSpy, FakeDNS, FakeShop, fast_config
from tests.support.settings import make_settings

FEED_HEADER = "id,title,link,image_link,price,brand,color,gender,product_type\n"


@pytest.fixture
async def empty_service(tmp_path, backbone):
    svc = await FashionService.create(make_settings(tmp_path / "data"), backbone=backbone)
    yield svc
    await svc.close()


@pytest.fixture
async def connect_spy(monkeypatch) -> ConnectSpy:
    """Every TCP connect of the test's loop, refusing any that would leave the machine."""
    return ConnectSpy(asyncio.get_running_loop()).install(monkeypatch)


@contextlib.asynccontextmanager
async def broken_http_server() -> AsyncIterator[int]:
    """A server on 127.0.0.1 that speaks broken HTTP: ``/garbage`` answers a status line
    that is not one (BadStatusLine in http.client), ``/long-line`` a 100 kB header line
    (LineTooLong), ``/silent`` nothing at all; ``/robots.txt`` is a plain 404 (so robots
    rules allow everything and the pictures are really requested)."""
    hits: list[str] = []
    stop = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1].decode()
            hits.append(path)
            if path == "/robots.txt":
                writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            elif path.startswith("/garbage"):
                writer.write(b"SPDY/9 banana\r\n\r\n\x00\xff garbage")
            elif path.startswith("/long-line"):
                writer.write(b"HTTP/1.1 200 OK\r\nX-Filler: " + b"a" * 100_000 + b"\r\n\r\n")
            elif path.startswith("/silent"):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 10)
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        port = server.sockets[0].getsockname()[1]
        yield port
    finally:
        stop.set()
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2)


async def test_feed_pictures_are_fetched_through_the_guard(
    tmp_path,
    empty_service,
    connect_spy: ConnectSpy,
) -> None:
    async with FakeShop("jsonld", n_products=4) as shop, broken_http_server() as bad_port:
        base, bad = shop.base_url, f"http://127.0.0.1:{bad_port}"
        feed = tmp_path / "remote.csv"
        feed.write_text(
            FEED_HEADER
            + f"r1,Red dress,{base}/p/p-001,{base}/img/p-001.jpg,49.90 EUR,,,,\n"  # 2: ok
            # 3: a name that resolves to loopback: refused by the guard, never connected to
            + f"r2,Rebound,{base}/p/p-002,http://cdn.evil.test:{shop.port}/img/p-002.jpg,5 EUR,,,,\n"
            + f"r3,Garbage,{base}/p/x,{bad}/garbage.jpg,5 EUR,,,,\n"  # 4: BadStatusLine
            + f"r4,Long line,{base}/p/x,{bad}/long-line.jpg,5 EUR,,,,\n"  # 5: LineTooLong
            + f"r5,Silent,{base}/p/x,{bad}/silent.jpg,5 EUR,,,,\n"  # 6: timeout
            + f"r6,Metadata,{base}/p/x,http://169.254.169.254/latest/meta-data/,5 EUR,,,,\n"  # 7: link-local
            + f"r7,Not a picture,{base}/p/x,{base}/page/1,5 EUR,,,,\n"  # 8: HTML where a picture should be
            + f"r8,Blue dress,{base}/p/p-003,{base}/img/p-003.jpg,CHF 49.90,,,,\n"  # 9: ok
        )
        dns = FakeDNS({"cdn.evil.test": ["127.0.0.1"], "127.0.0.1": ["127.0.0.1"]})
        config = fast_config(shop, allow_hosts=frozenset({shop.allow_entry, f"127.0.0.1:{bad_port}"}), timeout=1.0)
        report = await ingest.ingest_feed(
            empty_service.catalogue, empty_service.encoder, feed, fetch_config=config, getaddrinfo=dns
        )
        served = shop.paths()
    assert report.added == 2 and report.total == 8
    reasons = dict(report.bad_rows)
    assert sorted(reasons) == [3, 4, 5, 6, 7, 8]
    assert "loopback" in reasons[3] and "cdn.evil.test" in reasons[3]
    assert "link-local" in reasons[7]
    assert all(reasons[line].startswith("picture not fetched") for line in (4, 5, 6)), reasons
    assert "no answer within" in reasons[6]
    assert "expected a picture" in reasons[8]
    assert "/img/p-002.jpg" not in served  # the rebound name never reached the shop
    assert connect_spy.refused == []  # nothing left the machine
    items = await empty_service.store.items([1, 2])
    assert {(i.title, i.price, i.currency) for i in items.values()} == {
        ("Red dress", 49.9, "EUR"),
        ("Blue dress", 49.9, "CHF"),
    }
    assert {i.image_url for i in items.values()} == {f"{base}/img/p-001.jpg", f"{base}/img/p-003.jpg"}


async def test_robots_txt_is_obeyed_for_feed_pictures(tmp_path, empty_service) -> None:
    """The fetcher asks robots.txt for pictures too: a feed picture under a disallowed path
    is reported, not fetched (merchants allow their image paths to crawlers)."""
    async with FakeShop("jsonld", n_products=2, robots="User-agent: *\nDisallow: /img/p-002\n") as shop:
        feed = tmp_path / "robots.jsonl"
        feed.write_text(
            f'{{"id": "a", "title": "Allowed", "image_link": "{shop.base_url}/img/p-001.jpg"}}\n'
            f'{{"id": "b", "title": "Disallowed", "image_link": "{shop.base_url}/img/p-002.jpg"}}\n'
        )
        report = await ingest.ingest_feed(
            empty_service.catalogue, empty_service.encoder, feed, fetch_config=fast_config(shop)
        )
        assert "/img/p-002.jpg" not in shop.paths()
    assert report.added == 1
    assert [line for line, _ in report.bad_rows] == [2] and "robots" in report.bad_rows[0][1].lower()


async def test_remote_pictures_without_a_fetcher_are_refused_per_row(tmp_path, empty_service) -> None:
    feed = tmp_path / "f.jsonl"
    feed.write_text('{"id": "a", "title": "A", "image_link": "http://shop.example/a.jpg"}\n')
    report = await ingest.ingest_rows(empty_service.catalogue, empty_service.encoder, ingest.feed_rows(feed))
    assert report.added == 0 and report.bad_rows == [
        (1, "picture not fetched: remote pictures need the guarded fetcher (http://shop.example/a.jpg)")
    ]
