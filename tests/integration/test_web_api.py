"""The web chat's HTTP side without a browser: real aiohttp server, real FashionService.

Safety properties first (upload cap while reading, same-origin POSTs, escaping,
pictures by id), then the JSON API's answers and failure modes.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from pydantic import ValidationError

from bot import render
from bot.web import CSP, STATIC_DIR, TREND_UNAVAILABLE, build_web_app, run_web, safe_url, start_web
from engine.types import TrendProgress, UserRef
from tests.support.browser import add_item
from tests.support.fakes.proxy import Proxy
from tests.support.settings import make_settings

XSS = "<img src=x onerror=alert(1)>"
MB = 1_000_000


@pytest_asyncio.fixture
async def make_client(service):
    """make_client(svc=None, **settings_overrides) → a started TestClient on 127.0.0.1."""
    clients: list[TestClient] = []

    async def make(svc=None, **overrides) -> TestClient:
        settings = service.settings.model_copy(update=overrides)
        client = TestClient(TestServer(build_web_app(svc or service, settings), host="127.0.0.1"))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


def origin(client: TestClient) -> dict[str, str]:
    return {"Origin": f"http://127.0.0.1:{client.port}"}


def photo_form(data: bytes, name: str = "photo.jpg") -> aiohttp.FormData:
    form = aiohttp.FormData()
    form.add_field("photo", data, filename=name, content_type="image/jpeg")
    return form


async def no_trend(tag: str, user: UserRef | None = None) -> AsyncIterator[TrendProgress]:
    """An engine that can't search shops (its trend raises NotImplementedError)."""
    raise NotImplementedError
    yield TrendProgress(tag=tag)  # an async generator, like the real one


# ---- upload size cap -------------------------------------------------------------------------
async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    status = int((await reader.readline()).split()[1])
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        key, _, value = line.decode().partition(":")
        headers[key.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers, body


async def test_upload_cap_is_enforced_while_reading(make_client):
    """A chunked upload that never ends: the server must answer 413 once the photo passes
    the cap. A server that reads the whole body first would wait forever here."""
    client = await make_client(max_image_bytes=1 * MB)
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    try:
        writer.write(
            (
                f"POST /api/recommend HTTP/1.1\r\nHost: 127.0.0.1:{client.port}\r\n"
                f"Origin: http://127.0.0.1:{client.port}\r\n"
                "Content-Type: multipart/form-data; boundary=BOUNDARY\r\nTransfer-Encoding: chunked\r\n\r\n"
            ).encode()
        )

        def chunk(data: bytes) -> bytes:
            return f"{len(data):x}\r\n".encode() + data + b"\r\n"

        writer.write(
            chunk(
                b'--BOUNDARY\r\nContent-Disposition: form-data; name="photo"; filename="big.jpg"\r\n'
                b"Content-Type: image/jpeg\r\n\r\n\xff\xd8\xff"
            )
        )
        for _ in range(13):  # 1.3 MB of photo, and then the body just stops (no last chunk)
            writer.write(chunk(b"\0" * 100_000))
        await asyncio.wait_for(writer.drain(), 10)
        status, headers, body = await asyncio.wait_for(_read_response(reader), 10)
    finally:
        writer.close()
    assert status == 413
    assert headers["content-type"].startswith("application/json")
    assert json.loads(body)["error"] == "That photo is too large; I can take photos up to 1 MB."


async def test_declared_oversize_is_refused_before_reading(make_client):
    client = await make_client(max_image_bytes=1 * MB)
    reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
    try:
        writer.write(
            (
                f"POST /api/recommend HTTP/1.1\r\nHost: 127.0.0.1:{client.port}\r\n"
                f"Origin: http://127.0.0.1:{client.port}\r\n"
                f"Content-Type: multipart/form-data; boundary=B\r\nContent-Length: {50 * MB}\r\n\r\n"
            ).encode()
        )  # and not a byte of the 50 MB
        await writer.drain()
        status, _, body = await asyncio.wait_for(_read_response(reader), 10)
    finally:
        writer.close()
    assert status == 413
    assert json.loads(body)["error"] == render.too_large(50 * MB, 1 * MB)


async def test_oversized_photo_from_a_client_gets_413(make_client, photo_of):
    client = await make_client(max_image_bytes=1 * MB)
    big = photo_of("Sneaker") + b"\0" * (1 * MB)
    resp = await client.post("/api/recommend", data=photo_form(big), headers=origin(client))
    assert resp.status == 413
    assert "1 MB" in (await resp.json())["error"]
    # and the server still answers afterwards
    ok = await client.post("/api/recommend", data=photo_form(photo_of("Sneaker")), headers=origin(client))
    assert ok.status == 200


# ---- same-origin POSTs and our own host name -----------------------------------------------------
@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://127.0.0.1:1"},  # same host, other port: another origin
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
        {},  # no proof of origin at all
    ],
    ids=["other-site", "null", "other-port", "fetch-cross-site", "fetch-same-site", "no-headers"],
)
async def test_cross_origin_posts_are_refused(make_client, service, headers):
    client = await make_client()
    resp = await client.post("/api/feedback", json={"item_id": 1, "value": 1}, headers=headers)
    assert resp.status == 403
    assert (await resp.json())["error"] == "This request came from another site, so I refused it."
    async with service.store.session() as s:
        from sqlalchemy import func, select

        from db.models import FeedbackRow, UserRow

        assert (await s.execute(select(func.count(FeedbackRow.id)))).scalar_one() == 0
        assert (await s.execute(select(func.count(UserRow.id)))).scalar_one() == 0


async def test_same_origin_post_is_accepted(make_client, service):
    client = await make_client()
    for headers in (origin(client), {"Sec-Fetch-Site": "same-origin"}):
        resp = await client.post("/api/feedback", json={"item_id": 1, "value": 1}, headers=headers)
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["message"] == render.FEEDBACK_THANKS[1]


async def test_forged_host_is_refused(make_client):
    """DNS rebinding: a page on attacker.example resolving to 127.0.0.1 sends Host: attacker.example."""
    client = await make_client()
    resp = await client.get("/api/about", headers={"Host": f"attacker.example:{client.port}"})
    assert resp.status == 403
    for host in (f"localhost:{client.port}", f"127.0.0.1:{client.port}"):
        assert (await client.get("/api/about", headers={"Host": host})).status == 200


# ---- bad input gets a friendly answer -------------------------------------------------------------
async def test_bad_image_gets_a_friendly_json_message(make_client):
    client = await make_client()
    resp = await client.post("/api/recommend", data=photo_form(b"this is not a picture"), headers=origin(client))
    assert resp.status == 400
    assert resp.content_type == "application/json"
    assert (await resp.json())[
        "error"
    ] == "That doesn't look like an image I can read. Please send a JPEG or PNG photo."


async def test_upload_without_a_photo(make_client):
    client = await make_client()
    form = aiohttp.FormData(default_to_multipart=True)
    form.add_field("note", "hi")
    resp = await client.post("/api/recommend", data=form, headers=origin(client))
    assert resp.status == 400
    assert "attach a photo" in (await resp.json())["error"]
    resp = await client.post("/api/recommend", data=b"raw", headers={**origin(client), "Content-Type": "image/jpeg"})
    assert resp.status == 400
    assert "multipart/form-data" in (await resp.json())["error"]


async def test_an_engine_crash_is_one_friendly_500(make_client, service, photo_of):
    async def broken(*args, **kwargs):
        raise RuntimeError("boom")

    client = await make_client(Proxy(service, recommend=broken))
    resp = await client.post("/api/recommend", data=photo_form(photo_of("Sneaker")), headers=origin(client))
    assert resp.status == 500
    assert (await resp.json()) == {"error": render.INTERNAL_ERROR}
    assert (await client.get("/api/about")).status == 200  # the server lives on


async def test_rate_limit(make_client):
    client = await make_client(rate_limit_per_minute=2)
    answers = [await client.post("/api/recommend", data=photo_form(b"x"), headers=origin(client)) for _ in range(3)]
    assert [a.status for a in answers] == [400, 400, 429]
    limited = await answers[2].json()
    assert limited["error"].startswith("You're sending photos faster than I can look at them.")
    # the standard header agrees with the body, in whole seconds (rounded up)
    assert 1 <= int(answers[2].headers["Retry-After"]) == math.ceil(limited["retry_after"]) <= 60


async def test_feedback_validation(make_client):
    client = await make_client()
    for body in ({"item_id": 1, "value": 2}, {"item_id": 1, "value": True}, {"item_id": "1", "value": 1}, [1]):
        resp = await client.post("/api/feedback", json=body, headers=origin(client))
        assert resp.status == 400, body
    resp = await client.post("/api/feedback", json={"item_id": 999_999, "value": 1}, headers=origin(client))
    assert resp.status == 404
    assert (await resp.json())["error"] == "I don't know item 999999 (it may have been removed)."


# ---- item pages and pictures ------------------------------------------------------------------------
async def test_item_page_escapes_catalogue_text(make_client, service, photo_of):
    item_id = await add_item(service, XSS, photo_of("Sneaker"), url="javascript:alert(2)", shop='<b>"Shop"</b>')
    client = await make_client()
    resp = await client.get(f"/items/{item_id}")
    assert resp.status == 200
    page = await resp.text()
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    assert XSS not in page
    assert "<b>" not in page and "&lt;b&gt;&quot;Shop&quot;&lt;/b&gt;" in page
    assert "javascript:" not in page  # an unsafe shop link is never rendered
    assert f'src="/items/{item_id}/image"' in page
    assert resp.headers["Content-Security-Policy"] == CSP


async def test_item_page_for_a_shop_item_links_to_the_shop(make_client, service, photo_of):
    item_id = await add_item(
        service, "Linen dress", photo_of("Dress"), url="https://shop.example.com/p/1?a=1&b=2", shop="Example"
    )
    client = await make_client()
    page = await (await client.get(f"/items/{item_id}")).text()
    assert 'href="https://shop.example.com/p/1?a=1&amp;b=2"' in page
    missing = await client.get("/items/987654")
    assert missing.status == 404
    assert "I don&#x27;t know item 987654" in await missing.text()


async def test_item_image_is_served_by_numeric_id_only(make_client):
    client = await make_client()
    resp = await client.get("/items/1/image")
    assert resp.status == 200
    assert resp.content_type == "image/png"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert (await resp.read()).startswith(b"\x89PNG")
    for path in (
        "/items/abc/image",
        "/items/1a/image",
        "/items/-1/image",
        "/items/0/image",
        "/items/..%2F..%2Fetc%2Fpasswd/image",
        "/items/%2e%2e/image",
        "/items/1/image/../../../etc/passwd",
        "/items/99999999/image",
        "/static/..%2Fweb.py",
        "/static/index.html",
    ):
        resp = await client.get(path)
        assert resp.status == 404, path
        assert b"root:" not in await resp.read()


# ---- page, headers, cookie -------------------------------------------------------------------------
async def test_page_has_csp_and_no_inline_script_or_style(make_client):
    client = await make_client()
    resp = await client.get("/")
    assert resp.status == 200
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "default-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp
    html = await resp.text()
    scripts = re.findall(r"<script\b([^>]*)>(.*?)</script>", html, flags=re.S)
    assert scripts and all('src="/static/' in attrs and not body.strip() for attrs, body in scripts)
    assert not re.search(r"\son[a-z]+\s*=", html), "inline event handler"
    assert not re.search(r"\sstyle\s*=", html), "inline style"
    assert "<style" not in html
    assert not re.search(r"(src|href)=\"(https?:)?//", html), "nothing from another host"
    js = (STATIC_DIR / "app.js").read_text()
    assert "innerHTML" not in js and "insertAdjacentHTML" not in js and "document.write" not in js


async def test_visitor_cookie_is_random_httponly_and_lax(make_client):
    client = await make_client()
    ids = set()
    for _ in range(2):
        client.session.cookie_jar.clear()
        resp = await client.get("/")
        cookie = resp.cookies["fb_uid"]
        assert cookie["httponly"] is True
        assert cookie["samesite"] == "Lax"
        assert cookie["path"] == "/"
        assert len(cookie.value) >= 22
        ids.add(cookie.value)
    assert len(ids) == 2
    # A known, well-formed cookie is kept (no new Set-Cookie)
    assert "fb_uid" not in (await client.get("/api/about")).cookies


# ---- the JSON API -----------------------------------------------------------------------------------
async def _uid(client: TestClient) -> str:
    return {c.key: c.value for c in client.session.cookie_jar}["fb_uid"]


async def test_recommend_returns_cards_for_the_visitor(make_client, service, photo_of):
    client = await make_client()
    resp = await client.post("/api/recommend", data=photo_form(photo_of("Sneaker")), headers=origin(client))
    assert resp.status == 200
    data = await resp.json()
    assert len(data["items"]) == 10
    first = data["items"][0]
    assert first["rank"] == 1 and first["link"] == f"/items/{first['id']}" and first["link_is_shop"] is False
    assert first["image"] == f"/items/{first['id']}/image" and 0 <= first["similarity"] <= 100
    assert [i["rank"] for i in data["items"]] == list(range(1, 11))
    user_id = await service.store.user_id("web", await _uid(client), create=False)
    assert user_id is not None
    vectors, _ = await service.store.photo_embeddings(user_id, service.model_key)
    assert len(vectors) == 1


async def test_unsafe_shop_links_fall_back_to_the_item_page(make_client, service, photo_of):
    image = photo_of("Bag", 3)
    bad = await add_item(service, "Bad link", image, url="javascript:alert(1)")
    client = await make_client()
    data = await (await client.post("/api/recommend", data=photo_form(image), headers=origin(client))).json()
    card = next(i for i in data["items"] if i["id"] == bad)
    assert card["link"] == f"/items/{bad}" and card["link_is_shop"] is False
    assert safe_url("https://shop.example.com/x") == "https://shop.example.com/x"
    assert safe_url("https://shop.example/x") is None  # one policy: reserved names are no shops
    for url in (
        "javascript:alert(1)",
        "JaVaScRiPt:alert(1)",
        "data:text/html,x",
        "//evil.example",
        "/relative",
        " https://x.example",
        "https:///nohost",
        "http://x.example/\nSet-Cookie",
    ):
        assert safe_url(url) is None, url


async def test_style_cold_start_and_forget(make_client, service, photo_of):
    client = await make_client()
    await client.post("/api/recommend", data=photo_form(photo_of("Sneaker")), headers=origin(client))
    style = await (await client.get("/api/style")).json()
    assert style["cold_start"] is True and style["photo_count"] == 1 and style["collage"] is None
    assert style["headline"].startswith("I need 2 more photos")
    assert len(style["popular"]) == 10 and style["popular"][0]["similarity"] is None

    uid = await _uid(client)
    resp = await client.post("/api/forget", json={}, headers=origin(client))
    assert resp.status == 400  # must be confirmed
    assert await service.store.user_id("web", uid, create=False) is not None
    resp = await client.post("/api/forget", json={"confirm": True}, headers=origin(client))
    assert resp.status == 200
    body = await resp.json()
    assert body["deleted"]["photos"] == 1 and body["deleted"]["users"] == 1
    assert body["message"] == render.forgotten({"photos": 1, "feedback": 0, "recommendations": 10})
    assert await service.store.user_id("web", uid, create=False) is None
    assert await _uid(client) != uid  # a fresh anonymous identity afterwards


async def test_collage_is_served_to_its_owner_only(make_client, service, photo_of):
    import dataclasses

    jpeg = photo_of("Dress")

    async def style(user):
        return dataclasses.replace(await service.style(user), collage_jpeg=jpeg)

    client = await make_client(Proxy(service, style=style))
    data = await (await client.get("/api/style")).json()
    assert data["collage"].startswith("/api/style/collage?v=")
    resp = await client.get(data["collage"])
    assert resp.status == 200 and resp.content_type == "image/jpeg" and await resp.read() == jpeg
    client.session.cookie_jar.clear()  # another visitor
    assert (await client.get(data["collage"])).status == 404


async def test_item_page_and_cards_link_to_the_item_in_the_telegram_bot(make_client, service, photo_of):
    """Issue 18: with FASHIONBOT_TELEGRAM_BOT_USERNAME the item page and the web chat's cards
    link to t.me/<bot>?start=item_<id> (the link the Telegram bot's /start opens)."""
    from bot.telegram.handlers import deep_link

    item_id = await add_item(service, "Linen dress", photo_of("Dress"))
    named = await make_client(telegram_bot_username="@fashion_test_bot")
    page = await (await named.get(f"/items/{item_id}")).text()
    assert f'href="{deep_link("fashion_test_bot", item_id)}"' in page and "Open in Telegram" in page
    assert (await (await named.get("/api/config")).json())["telegram_bot"] == "fashion_test_bot"
    plain = await make_client()  # no bot named: no link to a bot that may not exist
    assert "t.me/" not in await (await plain.get(f"/items/{item_id}")).text()
    assert (await (await plain.get("/api/config")).json())["telegram_bot"] is None
    with pytest.raises(ValidationError):  # a name that isn't one can't reach an href
        make_settings(service.settings.data_dir, telegram_bot_username='x"><script>')


async def test_about(make_client, service):
    client = await make_client()
    data = await (await client.get("/api/about")).json()
    assert data["backbone"] == "efficientnet-lite0"
    assert data["text"] == render.about_text(await service.about())


async def test_unknown_api_call_is_json_404(make_client):
    client = await make_client()
    resp = await client.get("/api/nope")
    assert resp.status == 404 and resp.content_type == "application/json"


# ---- trends -------------------------------------------------------------------------------------------
async def test_trend_not_available_yet(make_client, service):
    client = await make_client(Proxy(service, trend=no_trend))
    resp = await client.post("/api/trend", json={"tag": "dress"}, headers=origin(client))
    assert resp.status == 501
    assert (await resp.json())["error"] == TREND_UNAVAILABLE


async def test_trend_streams_progress_lines(make_client, service):
    seen: list[UserRef] = []

    async def trend(tag: str, user: UserRef) -> AsyncIterator[TrendProgress]:
        seen.append(user)
        yield TrendProgress(tag=tag, shops_total=2)
        yield TrendProgress(tag=tag, shops_searched=1, shops_total=2, found=3)
        raise RuntimeError("shop exploded")

    client = await make_client(Proxy(service, trend=trend))
    resp = await client.post("/api/trend", json={"tag": "  linen   dress "}, headers=origin(client))
    assert resp.status == 200
    assert resp.content_type == "application/x-ndjson"
    lines = [json.loads(line) for line in (await resp.text()).splitlines()]
    assert [(p["shops_searched"], p["done"]) for p in lines] == [(0, False), (1, False), (1, True)]
    assert lines[-1]["error"] == render.INTERNAL_ERROR and lines[-1]["found"] == 3
    assert lines[0]["tag"] == "linen dress" and seen == [UserRef("web", await _uid(client))]
    bad = await client.post("/api/trend", json={"tag": "x" * 81}, headers=origin(client))
    assert bad.status == 400


async def test_trend_with_the_real_engine_ends_with_done(make_client, service):
    """Whatever the engine's trend says (here: no shops configured), the stream ends with
    a final snapshot, and the page gets the engine's own words."""
    client = await make_client()
    assert (await (await client.get("/api/config")).json())["trend_available"] is True
    resp = await asyncio.wait_for(client.post("/api/trend", json={"tag": "dress"}, headers=origin(client)), 30)
    assert resp.status == 200
    lines = [json.loads(line) for line in (await asyncio.wait_for(resp.text(), 30)).splitlines()]
    assert lines and lines[-1]["done"] is True and lines[-1]["tag"] == "dress"
    assert all(not line["done"] for line in lines[:-1])
    assert lines[-1]["text"].startswith("Trend “dress”: done")


# ---- run_web ----------------------------------------------------------------------------------------
async def test_run_web_serves_until_cancelled(service):
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(run_web(service, service.settings, port=0, on_ready=ready.set_result))
    url = await asyncio.wait_for(ready, 10)
    assert url.startswith("http://127.0.0.1:")  # loopback unless told otherwise
    async with aiohttp.ClientSession() as session:
        async with session.get(url) as resp:
            assert resp.status == 200 and "fashionbot" in await resp.text()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectionError):
            await session.get(url)


async def test_start_web_binds_loopback_by_default(service):
    server = await start_web(service, service.settings, port=0)
    try:
        sockets = server.runner.addresses
        assert sockets and all(addr[0] == "127.0.0.1" for addr in sockets)
    finally:
        await server.close()


# ---- hardening (issue 16, #3) -------------------------------------------------------------------------
async def test_limits_hold_for_visitors_without_a_cookie(make_client, photo_of):
    """A client that drops its cookie is a new user each time, but the same address."""
    client = await make_client(rate_limit_per_minute=2)
    statuses = []
    for nth in range(3):
        client.session.cookie_jar.clear()
        resp = await client.post("/api/recommend", data=photo_form(photo_of("Coat", nth)), headers=origin(client))
        statuses.append(resp.status)
    assert statuses == [200, 200, 429]
    client.session.cookie_jar.clear()
    assert (await client.get("/api/style")).status == 200
    client.session.cookie_jar.clear()
    assert (await client.get("/api/style")).status == 200
    client.session.cookie_jar.clear()
    assert (await client.get("/api/style")).status == 429  # /style is rate-limited too


async def test_forwarded_for_counts_only_behind_a_trusted_proxy(make_client, photo_of):
    for trusted, expected in ((False, [200, 429]), (True, [200, 200])):
        client = await make_client(rate_limit_per_minute=1, web_trusted_proxy=trusted)
        statuses = []
        for n in range(2):
            client.session.cookie_jar.clear()
            headers = origin(client) | {"X-Forwarded-For": f"203.0.113.{n + 1}"}
            statuses.append((await client.get("/api/style", headers=headers)).status)
        assert statuses == expected, trusted


async def test_browsing_creates_no_rows(make_client, service):
    from sqlalchemy import func, select

    from db.models import UserRow

    async with service.store.session() as s:
        before = (await s.execute(select(func.count(UserRow.id)))).scalar_one()
    client = await make_client()
    for path in ("/", "/api/config", "/api/style", "/api/trends", "/api/about"):
        client.session.cookie_jar.clear()
        assert (await client.get(path)).status == 200, path
    client.session.cookie_jar.clear()
    assert (await client.post("/api/forget", json={"confirm": True}, headers=origin(client))).status == 200
    async with service.store.session() as s:
        assert (await s.execute(select(func.count(UserRow.id)))).scalar_one() == before


async def test_concurrent_uploads_are_capped(service, photo_of):
    client = TestClient(TestServer(build_web_app(service, service.settings, max_uploads=1), host="127.0.0.1"))
    await client.start_server()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", client.port)
        boundary = "xyz"
        writer.write(
            (
                f"POST /api/recommend HTTP/1.1\r\nHost: 127.0.0.1:{client.port}\r\nOrigin: http://127.0.0.1:{client.port}\r\n"
                f"Content-Type: multipart/form-data; boundary={boundary}\r\nTransfer-Encoding: chunked\r\n\r\n"
            ).encode()
        )
        part = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="photo"; filename="a.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode() + b"\xff\xd8\xff"
        writer.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
        await writer.drain()
        await asyncio.sleep(0.3)  # the slow upload holds the only slot
        resp = await client.post("/api/recommend", data=photo_form(photo_of("Bag")), headers=origin(client))
        assert resp.status == 503 and "try again" in (await resp.json())["error"]
        writer.close()
    finally:
        await client.close()
