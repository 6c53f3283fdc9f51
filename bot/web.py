"""The local web chat: a third front-end over `FashionService` (aiohttp).

One page (``web_static/``: HTML, CSS and JS, no build step, nothing from a CDN) and a
small JSON API that is a thin adapter over the service:

=========================  ==================================================================
GET  /                      the chat page
GET  /static/{name}         the page's CSS, JS and icon (a fixed list, never a path)
GET  /items/{id}            an item page (what links of items without a shop page point to)
GET  /items/{id}/image      an item's picture, looked up by numeric id
GET  /api/config            limits and shared texts the page needs
POST /api/recommend         multipart, field ``photo``: the most similar items
POST /api/feedback          JSON ``{"item_id": 1, "value": 1 | -1}``
GET  /api/style             the visitor's style (or the cold-start popular items)
GET  /api/style/collage     the visitor's style collage (JPEG), when the engine made one
POST /api/trend             JSON ``{"tag": "dress"}``: live progress as NDJSON lines
GET  /api/trends            recent trends
POST /api/forget            JSON ``{"confirm": true}``: deletes everything kept about the visitor
GET  /api/about             which model and catalogue answer
=========================  ==================================================================

A browser is one anonymous user: a random id in an HttpOnly, SameSite=Lax cookie,
``UserRef("web", id)``. Safety: binds to 127.0.0.1 unless told otherwise; the
``Host`` header must be an IP literal, ``localhost`` or an allowed name (DNS
rebinding); POSTs only from the page's own origin; uploads capped while they are
read; pictures served by id; every catalogue text escaped on the server and set
with ``textContent`` in the page; a strict Content-Security-Policy (no inline
script or style).
"""
from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import html
import inspect
import ipaddress
import json
import logging
import re
import secrets
from collections import OrderedDict
from collections.abc import Iterable
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any, Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import BodyPartReader, web
from yarl import URL

from bot import render
from bot.guards import RateLimiter, declared_size_problem
from engine.errors import BadImage, ServiceError, UnknownItem
from engine.types import Item, ScoredItem, StyleSummary, TrendProgress, UserRef

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("web_static")
STATIC_FILES = {  # name -> content type; nothing else is ever served from disk
    "app.css": "text/css; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
COOKIE = "fb_uid"
COOKIE_MAX_AGE = 365 * 24 * 3600
_UID_RE = re.compile(r"^[A-Za-z0-9_-]{22,64}$")
PLATFORM = "web"
MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers around the photo
CHUNK = 64 * 1024
MAX_TAG_CHARS = 80
COLLAGE_CACHE = 256  # visitors whose latest collage is kept in memory

CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' blob:",  # blob: for the visitor's own photo preview
        "connect-src 'self'",
        "font-src 'self'",
        "manifest-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}

# Texts only the web chat says (the shared ones live in bot/render.py).
TREND_UNAVAILABLE = (
    "Trend search isn't available yet: this version of the engine can't search shops. "
    "You can still send photos, rate results and see your style."
)
TREND_RUNNING = "A trend search of yours is still running. Please wait for it to finish."
FORGET_NEEDS_CONFIRM = "Please confirm that you want me to forget you."
NO_PHOTO = "Please attach a photo (a JPEG, PNG, WebP, GIF or BMP file)."
NOT_MULTIPART = "Please upload the photo as multipart/form-data with a field named “photo”."
CROSS_ORIGIN = "This request came from another site, so I refused it."
WRONG_HOST = "This chat only answers on its own address (127.0.0.1 or localhost)."
BAD_JSON = "I couldn't read that request."
BAD_TAG = "Please name a trend to search for, e.g. “dress” (up to 80 characters)."
STREAM_TOO_LARGE = "That photo is too large; I can take photos up to {limit} MB."

_IMAGE_MAGIC = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
)

SERVICE_KEY: web.AppKey[Any] = web.AppKey("service", object)
# Per-request values: the visitor's id, and a new id to hand out in a cookie.
_RequestKey = getattr(web, "RequestKey", None)  # aiohttp >= 3.12; plain strings before
UID: Any = _RequestKey("uid", str) if _RequestKey else "uid"
SET_UID: Any = _RequestKey("set_uid", str) if _RequestKey else "set_uid"
STATE_KEY: web.AppKey["WebState"] = web.AppKey("web_state", object)


@dataclasses.dataclass
class WebState:
    settings: Any
    limiter: RateLimiter
    allowed_hosts: frozenset[str]
    static: dict[str, bytes]
    index_html: bytes
    collages: OrderedDict[str, bytes] = dataclasses.field(default_factory=OrderedDict)
    trends_running: set[str] = dataclasses.field(default_factory=set)


class TooLarge(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)


# ---- small helpers -----------------------------------------------------------------
def image_type(data: bytes) -> str | None:
    """The content type of a stored picture, from its first bytes (never from a name)."""
    for magic, ctype in _IMAGE_MAGIC:
        if data.startswith(magic):
            return ctype
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def safe_url(url: str | None) -> str | None:
    """A shop link we are willing to put in an href: absolute http(s) only (no
    ``javascript:``, ``data:`` or relative tricks), else None."""
    if not url or not isinstance(url, str) or len(url) > 2048:
        return None
    if any(c in url for c in "\x00\r\n\t") or url != url.strip():
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc or not parts.hostname:
        return None
    return url


def _price_text(price: float | None, currency: str) -> str:
    # Reuse Item.price_text so every front-end formats prices the same way.
    return Item(id=0, title="", url=None, price=price, currency=currency or "EUR", category=None).price_text


def item_json(s: ScoredItem, *, similarity: bool = True) -> dict[str, Any]:
    it = s.item
    shop_url = safe_url(it.url)
    return {
        "id": it.id,
        "rank": s.rank,
        "title": it.title,
        "price": it.price,
        "currency": it.currency,
        "price_text": it.price_text,
        "category": it.category,
        "brand": it.brand,
        "color": it.color,
        "shop": it.shop,
        "score": s.score if similarity else None,
        "similarity": max(0, min(100, round(s.score * 100))) if similarity else None,
        "link": shop_url or f"/items/{it.id}",
        "link_is_shop": shop_url is not None,
        "item_page": f"/items/{it.id}",
        "image": f"/items/{it.id}/image",
        "offers": [
            {"shop": o.shop, "price_text": _price_text(o.price, o.currency), "url": safe_url(o.url)}
            for o in s.offers
        ],
    }


def progress_json(p: TrendProgress) -> dict[str, Any]:
    return {
        "tag": p.tag,
        "shops_searched": p.shops_searched,
        "shops_total": p.shops_total,
        "found": p.found,
        "indexed": p.indexed,
        "skipped": p.skipped,
        "done": p.done,
        "error": p.error,
        "best": [item_json(s) for s in p.best],
        "text": render.trend_progress_text(p),
    }


def json_error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


def user_of(request: web.Request) -> UserRef:
    return UserRef(PLATFORM, request[UID])


def _origin_tuple(url: URL) -> tuple[str, str, int | None]:
    return (url.scheme.lower(), (url.host or "").lower(), url.port)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return False


def _request_hostname(request: web.Request) -> str | None:
    try:
        return (URL(f"http://{request.host}").host or "").lower() or None
    except (ValueError, TypeError):
        return None


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise web.HTTPBadRequest(text=BAD_JSON) from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text=BAD_JSON)
    return data


# ---- middlewares and response hooks --------------------------------------------------
@web.middleware
async def host_guard(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]):
    """Answer only to our own names: an IP literal, localhost or an allowed name. A page
    on attacker.example that rebinds its DNS to 127.0.0.1 is turned away here."""
    state: WebState = request.app[STATE_KEY]
    host = _request_hostname(request)
    if host is None or not (_is_ip(host) or host in state.allowed_hosts):
        return _refuse(request, WRONG_HOST)
    return await handler(request)


@web.middleware
async def origin_guard(request: web.Request, handler):
    """State-changing requests only from the page itself (CSRF)."""
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        fetch_site = request.headers.get("Sec-Fetch-Site")
        origin = request.headers.get("Origin")
        if fetch_site is not None and fetch_site != "same-origin":
            return _refuse(request, CROSS_ORIGIN)
        if origin is not None:
            try:
                same = _origin_tuple(URL(origin)) == _origin_tuple(URL(f"{request.scheme}://{request.host}"))
            except (ValueError, TypeError):
                same = False
            if not same:
                return _refuse(request, CROSS_ORIGIN)
        elif fetch_site is None:
            # Browsers send Origin with every POST; with neither header we can't tell.
            return _refuse(request, CROSS_ORIGIN)
    elif request.method == "OPTIONS":
        return _refuse(request, CROSS_ORIGIN)  # no CORS here, so no preflight can pass
    return await handler(request)


def _refuse(request: web.Request, message: str) -> web.Response:
    if request.path.startswith("/api/"):
        return json_error(403, message)
    return web.Response(status=403, text=message, content_type="text/plain")


@web.middleware
async def identity(request: web.Request, handler):
    """One anonymous user per browser: a random id kept in an HttpOnly cookie."""
    uid = request.cookies.get(COOKIE)
    if uid is None or not _UID_RE.match(uid):
        uid = secrets.token_urlsafe(24)
        request[SET_UID] = uid
    request[UID] = uid
    return await handler(request)


@web.middleware
async def errors(request: web.Request, handler):
    """One request's failure is that request's friendly answer, never the server's end."""
    is_api = request.path.startswith("/api/")
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if is_api:
            message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
            return json_error(exc.status, message)
        return _html_error(exc.status, exc.reason)
    except TooLarge as exc:
        # aiohttp then reads and drops the rest of the body for a few seconds ("lingering")
        # so the browser gets to see this answer instead of a reset connection.
        return json_error(413, str(exc))
    except UnknownItem as exc:
        return json_error(404, str(exc)) if is_api else _html_error(404, str(exc))
    except (BadImage, ServiceError) as exc:
        return json_error(400, str(exc)) if is_api else _html_error(400, str(exc))
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("web request %s %s failed", request.method, request.path)
        return json_error(500, render.INTERNAL_ERROR) if is_api else _html_error(500, render.INTERNAL_ERROR)


def visitor_cookie(uid: str) -> str:
    jar: SimpleCookie = SimpleCookie()
    jar[COOKIE] = uid
    morsel = jar[COOKIE]
    morsel["path"] = "/"
    morsel["max-age"] = str(COOKIE_MAX_AGE)
    morsel["httponly"] = True
    morsel["samesite"] = "Lax"
    return morsel.OutputString()


async def on_prepare(request: web.Request, response: web.StreamResponse) -> None:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    new_uid = request.get(SET_UID)
    if new_uid:
        # Headers, not response.set_cookie(): aiohttp has already turned its cookies into
        # headers when this hook runs (and streamed answers are prepared inside handlers).
        response.headers.add("Set-Cookie", visitor_cookie(new_uid))
    if request.path.startswith("/api/"):
        response.headers.setdefault("Cache-Control", "no-store")


# ---- HTML pages rendered on the server ------------------------------------------------
def _page(title: str, body: str, status: int = 200) -> web.Response:
    doc = (
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{html.escape(title)} · fashionbot</title>"
        "<link rel=\"icon\" href=\"/static/favicon.svg\" type=\"image/svg+xml\">"
        "<link rel=\"stylesheet\" href=\"/static/app.css\"></head>"
        "<body class=\"page\"><header class=\"topbar\"><a class=\"brand\" href=\"/\">"
        "<span class=\"brand-mark\" aria-hidden=\"true\">f</span>fashionbot</a></header>"
        f"<main class=\"page-main\">{body}</main></body></html>\n"
    )
    return web.Response(status=status, text=doc, content_type="text/html", charset="utf-8")


def _html_error(status: int, message: str) -> web.Response:
    body = (
        f"<section class=\"notice\"><h1>{html.escape(str(status))}</h1><p>{html.escape(message)}</p>"
        "<p><a class=\"button\" href=\"/\">Back to the chat</a></p></section>"
    )
    return _page(message, body, status)


def item_page_html(item: Item) -> str:
    e = html.escape
    facts = [(label, value) for label, value in (
        ("Category", item.category),
        ("Brand", item.brand),
        ("Colour", item.color),
        ("Shop", item.shop),
        ("Tags", ", ".join(item.tags) if item.tags else None),
    ) if value]
    rows = "".join(f"<dt>{e(label)}</dt><dd>{e(str(value))}</dd>" for label, value in facts)
    shop = safe_url(item.url)
    shop_link = (
        f"<a class=\"button primary\" href=\"{e(shop, quote=True)}\" target=\"_blank\" "
        f"rel=\"noopener noreferrer\">View in {e(item.shop or 'the shop')} ↗</a>"
        if shop
        else "<p class=\"muted\">This catalogue item has no shop page of its own.</p>"
    )
    return (
        "<article class=\"item-page\">"
        f"<div class=\"item-figure\"><img src=\"/items/{item.id}/image\" alt=\"{e(item.title, quote=True)}\"></div>"
        "<div class=\"item-info\">"
        f"<p class=\"eyebrow\">Item #{item.id}</p>"
        f"<h1 class=\"item-title\">{e(item.title)}</h1>"
        f"<p class=\"item-price\">{e(item.price_text)}</p>"
        f"<dl class=\"facts\">{rows}</dl>"
        f"{shop_link}"
        "<p><a class=\"button\" href=\"/\">← Back to the chat</a></p>"
        "</div></article>"
    )


# ---- handlers -----------------------------------------------------------------------------
async def index(request: web.Request) -> web.Response:
    state: WebState = request.app[STATE_KEY]
    return web.Response(
        body=state.index_html,
        content_type="text/html",
        charset="utf-8",
        headers={"Cache-Control": "no-cache"},
    )


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    state: WebState = request.app[STATE_KEY]
    if name not in STATIC_FILES:
        raise web.HTTPNotFound()
    return web.Response(
        body=state.static[name],
        headers={"Content-Type": STATIC_FILES[name], "Cache-Control": "no-cache"},
    )


async def item_page(request: web.Request) -> web.Response:
    item_id = int(request.match_info["item_id"])
    item = await request.app[SERVICE_KEY].item(item_id)
    return _page(item.title, item_page_html(item))


async def item_image(request: web.Request) -> web.Response:
    item_id = int(request.match_info["item_id"])
    try:
        data = await request.app[SERVICE_KEY].item_image(item_id)
    except UnknownItem:
        raise web.HTTPNotFound() from None
    ctype = image_type(data)
    if ctype is None:  # never hand the browser bytes we can't vouch for
        raise web.HTTPNotFound()
    etag = '"' + hashlib.blake2b(data, digest_size=12).hexdigest() + '"'
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers={"ETag": etag})
    return web.Response(
        body=data,
        headers={"Content-Type": ctype, "Cache-Control": "private, max-age=3600", "ETag": etag},
    )


async def config(request: web.Request) -> web.Response:
    state: WebState = request.app[STATE_KEY]
    service = request.app[SERVICE_KEY]
    return web.json_response(
        {
            "max_image_bytes": state.settings.max_image_bytes,
            "top_k": state.settings.top_k,
            "trend_available": hasattr(service, "trend"),
            "help": render.HELP,
            "hint": render.HINT,
            "forget_confirm": render.FORGET_CONFIRM,
            "trend_unavailable": TREND_UNAVAILABLE,
        }
    )


async def read_photo(request: web.Request, limit: int) -> bytes:
    """The ``photo`` field of a multipart body, read in chunks and abandoned as soon as
    it passes ``limit`` bytes: a 2 GB upload costs us ``limit`` bytes of memory, not 2 GB."""
    declared = request.content_length
    if declared is not None and declared_size_problem(declared - MULTIPART_OVERHEAD, limit):
        raise TooLarge(render.too_large(declared, limit))
    if request.content_type != "multipart/form-data":
        raise web.HTTPBadRequest(text=NOT_MULTIPART)
    too_large = STREAM_TOO_LARGE.format(limit=render.megabytes(limit).removesuffix(" MB"))
    try:
        reader = await request.multipart()
        photo: bytes | None = None
        other = 0
        while True:
            part = await reader.next()
            if part is None:
                break
            if not isinstance(part, BodyPartReader):
                raise web.HTTPBadRequest(text=NO_PHOTO)
            if part.name == "photo" and photo is None:
                buf = bytearray()
                while chunk := await part.read_chunk(CHUNK):
                    buf += chunk
                    if len(buf) > limit:
                        raise TooLarge(too_large)
                photo = bytes(buf)
            else:  # other fields: read and dropped, within a small budget
                while chunk := await part.read_chunk(CHUNK):
                    other += len(chunk)
                    if other > MULTIPART_OVERHEAD:
                        raise TooLarge(too_large)
    except (ValueError, AssertionError, RuntimeError):
        raise web.HTTPBadRequest(text=NOT_MULTIPART) from None
    if not photo:
        raise web.HTTPBadRequest(text=NO_PHOTO)
    return photo


async def recommend(request: web.Request) -> web.Response:
    state: WebState = request.app[STATE_KEY]
    wait = state.limiter.check(request[UID])
    if wait:
        return json_error(429, state.limiter.message(wait), retry_after=round(wait, 1))
    photo = await read_photo(request, state.settings.max_image_bytes)
    rec = await request.app[SERVICE_KEY].recommend(photo, user=user_of(request), k=state.settings.top_k)
    return web.json_response(
        {
            "backbone": rec.backbone,
            "request_id": rec.request_id,
            "items": [item_json(s) for s in rec.items],
            "text": render.recommendation_text(rec),
        }
    )


async def feedback(request: web.Request) -> web.Response:
    data = await _json_body(request)
    item_id, value = data.get("item_id"), data.get("value")
    if type(item_id) is not int or type(value) is not int or value not in (1, -1) or item_id < 1:
        return json_error(400, BAD_JSON)
    await request.app[SERVICE_KEY].feedback(user_of(request), item_id, value)
    return web.json_response({"item_id": item_id, "value": value, "message": render.FEEDBACK_THANKS[value]})


def _remember_collage(state: WebState, uid: str, jpeg: bytes) -> str:
    state.collages[uid] = jpeg
    state.collages.move_to_end(uid)
    while len(state.collages) > COLLAGE_CACHE:
        state.collages.popitem(last=False)
    return "/api/style/collage?v=" + hashlib.blake2b(jpeg, digest_size=8).hexdigest()


def style_json(s: StyleSummary, collage_url: str | None) -> dict[str, Any]:
    text = render.style_text(s)
    return {
        "cold_start": s.cold_start,
        "photo_count": s.photo_count,
        "needed": s.needed,
        "headline": text.split("\n", 1)[0] if s.cold_start else "Your style",
        "text": text,
        "clusters": [
            {
                "name": c.name,
                "share": c.share,
                "share_pct": round(c.share * 100),
                "size": c.size,
                "items": [item_json(i) for i in c.items],
            }
            for c in s.clusters
        ],
        "popular": [item_json(i, similarity=False) for i in s.popular],
        "collage": collage_url,
    }


async def style(request: web.Request) -> web.Response:
    state: WebState = request.app[STATE_KEY]
    summary: StyleSummary = await request.app[SERVICE_KEY].style(user_of(request))
    collage_url = None
    if summary.collage_jpeg:
        collage_url = _remember_collage(state, request[UID], summary.collage_jpeg)
    else:
        state.collages.pop(request[UID], None)
    return web.json_response(style_json(summary, collage_url))


async def style_collage(request: web.Request) -> web.Response:
    state: WebState = request.app[STATE_KEY]
    jpeg = state.collages.get(request[UID])
    if jpeg is None or image_type(jpeg) is None:
        raise web.HTTPNotFound(text="No collage yet: ask for your style first.")
    return web.Response(body=jpeg, headers={"Content-Type": image_type(jpeg), "Cache-Control": "private, no-store"})


async def trend(request: web.Request) -> web.StreamResponse:
    service = request.app[SERVICE_KEY]
    state: WebState = request.app[STATE_KEY]
    if not hasattr(service, "trend"):
        return json_error(501, TREND_UNAVAILABLE)
    data = await _json_body(request)
    tag = data.get("tag")
    tag = " ".join(tag.split()) if isinstance(tag, str) else ""
    if not tag or len(tag) > MAX_TAG_CHARS:
        return json_error(400, BAD_TAG)
    uid = request[UID]
    if uid in state.trends_running:
        return json_error(409, TREND_RUNNING)
    state.trends_running.add(uid)
    try:
        resp = web.StreamResponse(
            headers={"Content-Type": "application/x-ndjson; charset=utf-8", "Cache-Control": "no-store",
                     "X-Accel-Buffering": "no"}
        )
        await resp.prepare(request)

        async def send(payload: dict[str, Any]) -> None:
            await resp.write(json.dumps(payload, ensure_ascii=False).encode() + b"\n")

        progress = service.trend(tag, user_of(request))
        if inspect.isawaitable(progress):
            progress = await progress
        last: TrendProgress | None = None
        try:
            async for p in progress:
                last = p
                await send(progress_json(p))
            if last is None or not last.done:
                await send(progress_json(dataclasses.replace(last or TrendProgress(tag=tag), done=True)))
        except (ConnectionResetError, asyncio.CancelledError):
            raise
        except (ServiceError, ValueError) as err:
            await send(progress_json(dataclasses.replace(last or TrendProgress(tag=tag), done=True, error=str(err))))
        except Exception:
            log.exception("trend %r failed", tag)
            await send(progress_json(
                dataclasses.replace(last or TrendProgress(tag=tag), done=True, error=render.INTERNAL_ERROR)
            ))
        finally:
            aclose = getattr(progress, "aclose", None)
            if aclose is not None:
                try:
                    await aclose()
                except Exception:  # noqa: BLE001 - closing a broken generator is best effort
                    log.debug("closing the trend generator failed", exc_info=True)
        await resp.write_eof()
        return resp
    finally:
        state.trends_running.discard(uid)


async def trends(request: web.Request) -> web.Response:
    found = await request.app[SERVICE_KEY].trends()
    return web.json_response(
        {
            "trends": [
                {"tag": t.tag, "item_count": t.item_count, "last_run": t.last_run.isoformat() if t.last_run else None}
                for t in found
            ],
            "text": render.trends_text(found),
        }
    )


async def forget(request: web.Request) -> web.Response:
    data = await _json_body(request)
    if data.get("confirm") is not True:
        return json_error(400, FORGET_NEEDS_CONFIRM)
    state: WebState = request.app[STATE_KEY]
    uid = request[UID]
    counts = await request.app[SERVICE_KEY].forget(user_of(request))
    state.collages.pop(uid, None)
    request[SET_UID] = secrets.token_urlsafe(24)  # a fresh anonymous identity from now on
    return web.json_response({"message": render.forgotten(counts), "deleted": counts})


async def about(request: web.Request) -> web.Response:
    a = await request.app[SERVICE_KEY].about()
    return web.json_response({**dataclasses.asdict(a), "text": render.about_text(a)})


# ---- app ------------------------------------------------------------------------------------
def _allowed_hosts(settings: Any, extra: Iterable[str]) -> frozenset[str]:
    names = {"localhost"}
    host = (getattr(settings, "web_host", "") or "").strip().lower()
    if host and not _is_ip(host):
        names.add(host)
    names.update(h.strip().lower() for h in extra if h.strip())
    return frozenset(names)


def build_web_app(service: Any, settings: Any, *, allowed_hosts: Iterable[str] = ()) -> web.Application:
    """The web chat as an aiohttp application over ``service``.

    ``allowed_hosts``: extra host names the page may be reached by (IP literals and
    ``localhost`` always work; other names are refused to stop DNS rebinding)."""
    static_files = {name: (STATIC_DIR / name).read_bytes() for name in STATIC_FILES}
    state = WebState(
        settings=settings,
        limiter=RateLimiter(limit=settings.rate_limit_per_minute, window=60.0),
        allowed_hosts=_allowed_hosts(settings, allowed_hosts),
        static=static_files,
        index_html=(STATIC_DIR / "index.html").read_bytes(),
    )
    app = web.Application(
        middlewares=[host_guard, errors, origin_guard, identity],
        client_max_size=1024 * 1024,  # JSON bodies; the photo upload is streamed and capped separately
    )
    app[SERVICE_KEY] = service
    app[STATE_KEY] = state
    app.on_response_prepare.append(on_prepare)
    r = app.router
    r.add_get("/", index)
    r.add_get("/static/{name}", static)
    r.add_get(r"/items/{item_id:[1-9][0-9]{0,17}}", item_page)
    r.add_get(r"/items/{item_id:[1-9][0-9]{0,17}}/image", item_image)
    r.add_get("/api/config", config)
    r.add_post("/api/recommend", recommend)
    r.add_post("/api/feedback", feedback)
    r.add_get("/api/style", style)
    r.add_get("/api/style/collage", style_collage)
    r.add_post("/api/trend", trend)
    r.add_get("/api/trends", trends)
    r.add_post("/api/forget", forget)
    r.add_get("/api/about", about)
    return app


@dataclasses.dataclass
class WebServer:
    """A running web chat: its URL and how to stop it."""

    url: str
    runner: web.AppRunner

    async def close(self) -> None:
        await self.runner.cleanup()


def _url(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


async def start_web(
    service: Any, settings: Any, *, host: str | None = None, port: int | None = None, allowed_hosts: Iterable[str] = ()
) -> WebServer:
    """Start the web chat and return once it listens (port 0 picks a free port)."""
    host = host or settings.web_host or "127.0.0.1"
    port = settings.web_port if port is None else port
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if not loopback:
        log.warning("The web chat listens on %s: other machines on the network can reach it.", host)
    app = build_web_app(service, settings, allowed_hosts=allowed_hosts)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=2.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    server = site._server  # noqa: SLF001 - the only way to learn the port chosen for port 0
    bound = port
    if server is not None and getattr(server, "sockets", None):
        bound = server.sockets[0].getsockname()[1]
    shown_host = host if host not in ("0.0.0.0", "::") else "127.0.0.1"
    return WebServer(url=_url(shown_host, bound), runner=runner)


async def run_web(
    service: Any,
    settings: Any,
    *,
    host: str | None = None,
    port: int | None = None,
    on_ready: Callable[[str], Any] | None = None,
    allowed_hosts: Iterable[str] = (),
) -> str:
    """Serve the web chat until cancelled. Once it listens, the URL is logged and passed
    to ``on_ready`` (if given); the URL is also the return value if serving ever ends
    without cancellation. Cleans up on cancellation and re-raises it."""
    server = await start_web(service, settings, host=host, port=port, allowed_hosts=allowed_hosts)
    log.info("fashionbot web chat: %s", server.url)
    try:
        if on_ready is not None:
            result = on_ready(server.url)
            if inspect.isawaitable(result):
                await result
        await asyncio.Event().wait()
    finally:
        await server.close()
    return server.url


__all__ = ["build_web_app", "run_web", "start_web", "WebServer", "item_json", "safe_url", "image_type"]
