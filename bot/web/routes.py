"""The web chat's handlers: a thin adapter from HTTP to the shared flows and the service.

=========================  ==================================================================
GET  /                      the chat page
GET  /static/{name}         the page's CSS, JS and icon (a fixed list, never a path)
GET  /items/{id}            an item page (what links of items without a shop page point to)
GET  /items/{id}/image      an item's picture, looked up by numeric id
GET  /api/config            limits and shared texts the page needs
POST /api/recommend         multipart: ``photo`` (+ ``region`` JSON box, or ``whole_photo=1``)
POST /api/switch            JSON ``{"request_id": 1, "garment": 2 | null}``: another garment
POST /api/feedback          JSON ``{"item_id": 1, "value": 1 | -1}``
GET  /api/style             the visitor's style (or the cold-start popular items)
GET  /api/style/collage     the visitor's style collage (JPEG), when the engine made one
POST /api/trend             JSON ``{"tag": "dress"}``: live progress as NDJSON lines
GET  /api/trends            recent trends
POST /api/forget            JSON ``{"confirm": true}``: deletes everything kept about the visitor
GET  /api/about             which model and catalogue answer
GET  /api/catalogue         items ready, and whether an ingest is still adding (the status line)
=========================  ==================================================================
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import secrets
from collections.abc import AsyncGenerator
from typing import Any

from aiohttp import web

from bot import render
from bot.flows import PhotoRequest, Refusal, TrendUnavailable, trend_updates
from bot.web.pages import item_page_html, page
from bot.web.serialise import image_type, json_error, progress_json, recommendation_json, style_json
from bot.web.state import ADDRESS, SET_UID, UID, is_new_visitor, state_of, user_of
from bot.web.upload import NOT_MULTIPART, TooLarge, parse_region, read_photo
from engine.errors import UnknownItem
from engine.types import StyleSummary, TrendProgress

STATIC_FILES = {  # name -> content type; nothing else is ever served from disk
    "app.css": "text/css; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
MAX_TAG_CHARS = 80

# Texts only the web chat says (the shared ones live in bot/render.py).
TREND_UNAVAILABLE = render.TREND_UNAVAILABLE
TREND_RUNNING = "A trend search of yours is still running. Please wait for it to finish."
FORGET_NEEDS_CONFIRM = "Please confirm that you want me to forget you."
BAD_JSON = "I couldn't read that request."
BAD_TAG = "Please name a trend to search for, e.g. “dress” (up to 80 characters)."
BUSY = "Lots of photos are arriving right now. Please try again in a few seconds."
# not_ready: the catalogue is still being filled (the demo's first seconds); 409, the
# catalogue's state, with Retry-After: the request was fine and will work shortly.
STATUS = {"rate_limited": 429, "too_large": 413, "not_accepted": 400, "not_ready": 409, "failed": 500}


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise web.HTTPBadRequest(text=BAD_JSON) from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(text=BAD_JSON)
    return data


def _refusal(r: Refusal) -> web.Response:
    extra: dict[str, Any] = {"retry_after": round(r.retry_after, 1)} if r.retry_after is not None else {}
    if r.reason == "not_ready":
        extra["reason"] = "catalogue_filling"  # the page shows it calmly and watches the catalogue fill
    return json_error(STATUS.get(r.reason, 400), r.text, **extra)


async def index(request: web.Request) -> web.Response:
    return web.Response(
        body=state_of(request).index_html,
        content_type="text/html",
        charset="utf-8",
        headers={"Cache-Control": "no-cache"},
    )


async def static(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    if name not in STATIC_FILES:
        raise web.HTTPNotFound()
    return web.Response(
        body=state_of(request).static[name], headers={"Content-Type": STATIC_FILES[name], "Cache-Control": "no-cache"}
    )


async def item_page(request: web.Request) -> web.Response:
    state = state_of(request)
    item = await state.service.item(int(request.match_info["item_id"]))
    return page(item.title, item_page_html(item, state.settings.telegram_bot_username))


async def item_image(request: web.Request) -> web.Response:
    item_id = int(request.match_info["item_id"])
    try:
        data = await state_of(request).service.item_image(item_id)
    except UnknownItem:
        raise web.HTTPNotFound() from None
    ctype = image_type(data)
    if ctype is None:  # never hand the browser bytes we can't vouch for
        raise web.HTTPNotFound()
    etag = '"' + hashlib.blake2b(data, digest_size=12).hexdigest() + '"'
    if request.headers.get("If-None-Match") == etag:
        return web.Response(status=304, headers={"ETag": etag})
    return web.Response(
        body=data, headers={"Content-Type": ctype, "Cache-Control": "private, max-age=3600", "ETag": etag}
    )


async def config(request: web.Request) -> web.Response:
    state = state_of(request)
    return web.json_response(
        {
            "max_image_bytes": state.settings.max_image_bytes,
            "top_k": state.settings.top_k,
            "trend_available": True,  # the engine says otherwise when asked (TREND_UNAVAILABLE)
            "help": render.HELP,
            "hint": render.HINT,
            "forget_confirm": render.FORGET_CONFIRM,
            "trend_unavailable": TREND_UNAVAILABLE,
            "no_garment": render.NO_GARMENT,
            "no_garment_hint": render.NO_GARMENT_HINT,
            "whole_photo": render.WHOLE_PHOTO,
            "search_whole_photo": render.SEARCH_WHOLE_PHOTO,
            # each card links to t.me/<bot>?start=item_<id> (None: no Telegram bot named)
            "telegram_bot": (state.settings.telegram_bot_username or "").lstrip("@") or None,
        }
    )


async def recommend(request: web.Request) -> web.Response:
    """The shared photo flow; over the global upload cap: 503 at once."""
    state = state_of(request)
    if state.uploads.locked():
        return json_error(503, BUSY, retry_after=5)
    limit = state.flow.limit_bytes

    async def download() -> bytes | Refusal:
        try:
            photo, fields = await read_photo(request, limit)
        except TooLarge as exc:
            return Refusal(str(exc), "too_large")
        except web.HTTPBadRequest as exc:
            return Refusal(exc.text or NOT_MULTIPART)
        photo_request.region = parse_region(fields.get("region"))
        photo_request.whole_photo = fields.get("whole_photo") == "1"
        return photo

    # The declared size (Content-Length) is read_photo's first check, before any byte of
    # the body is read: the flow's order holds (rate limit → declared size → read).
    photo_request = PhotoRequest(user=user_of(request), declared_size=None, download=download)
    result = await state.flow.photo(photo_request, extra_keys=[f"address:{request[ADDRESS]}"], slot=state.uploads)
    if isinstance(result, Refusal):
        return _refusal(result)
    return web.json_response(recommendation_json(result))


async def switch(request: web.Request) -> web.Response:
    """Another garment of an earlier photo (``garment`` null: the whole photo)."""
    data = await _json_body(request)
    request_id, garment = data.get("request_id"), data.get("garment")
    if type(request_id) is not int or request_id < 1 or not (garment is None or type(garment) is int):
        return json_error(400, BAD_JSON)
    if is_new_visitor(request):
        return json_error(404, render.SWITCH_EXPIRED)
    result = await state_of(request).flow.switch(user_of(request), request_id, garment)
    if isinstance(result, str):
        return json_error(404, result)
    return web.json_response(recommendation_json(result))


async def feedback(request: web.Request) -> web.Response:
    data = await _json_body(request)
    item_id, value = data.get("item_id"), data.get("value")
    if type(item_id) is not int or type(value) is not int or value not in (1, -1) or item_id < 1:
        return json_error(400, BAD_JSON)
    await state_of(request).service.feedback(user_of(request), item_id, value)
    return web.json_response({"item_id": item_id, "value": value, "message": render.FEEDBACK_THANKS[value]})


def _command_refusal(request: web.Request) -> web.Response | None:
    refusal = state_of(request).flow.command_refusal(user_of(request), [f"address:{request[ADDRESS]}"])
    return json_error(429, refusal) if refusal else None


async def style(request: web.Request) -> web.Response:
    state = state_of(request)
    refused = _command_refusal(request)
    if refused is not None:
        return refused
    summary: StyleSummary = await state.service.style(user_of(request))
    collage_url = None
    if summary.collage_jpeg:
        state.collages.put(request[UID], summary.collage_jpeg)
        collage_url = "/api/style/collage?v=" + hashlib.blake2b(summary.collage_jpeg, digest_size=8).hexdigest()
    else:
        state.collages.pop(request[UID])
    return web.json_response(style_json(summary, collage_url))


async def style_collage(request: web.Request) -> web.Response:
    jpeg = state_of(request).collages.get(request[UID])
    ctype = image_type(jpeg) if jpeg is not None else None
    if jpeg is None or ctype is None:
        raise web.HTTPNotFound(text="No collage yet: ask for your style first.")
    return web.Response(body=jpeg, headers={"Content-Type": ctype, "Cache-Control": "private, no-store"})


async def trend(request: web.Request) -> web.StreamResponse:
    """Every snapshot of the shared trend flow (no throttling: a stream line is cheap)
    as one NDJSON line; 501 when the engine can't search shops."""
    state = state_of(request)
    data = await _json_body(request)
    tag = data.get("tag")
    tag = " ".join(tag.split()) if isinstance(tag, str) else ""
    if not tag or len(tag) > MAX_TAG_CHARS:
        return json_error(400, BAD_TAG)
    uid = request[UID]
    if uid in state.trends_running:
        return json_error(409, TREND_RUNNING)
    refused = _command_refusal(request)
    if refused is not None:
        return refused
    state.trends_running.add(uid)
    updates: AsyncGenerator[TrendProgress] = trend_updates(state.service, tag, user_of(request), interval=0.0)
    try:
        try:
            first: TrendProgress = await anext(updates)
        except TrendUnavailable:
            return json_error(501, TREND_UNAVAILABLE)
        resp = web.StreamResponse(
            headers={
                "Content-Type": "application/x-ndjson; charset=utf-8",
                "Cache-Control": "no-store",
                "X-Accel-Buffering": "no",
            }
        )
        await resp.prepare(request)

        async def send(p: TrendProgress) -> None:
            await resp.write(json.dumps(progress_json(p), ensure_ascii=False).encode() + b"\n")

        await send(first)
        if not first.done:
            async for p in updates:
                await send(p)
        await resp.write_eof()
        return resp
    finally:
        await updates.aclose()
        state.trends_running.discard(uid)


async def trends(request: web.Request) -> web.Response:
    found = await state_of(request).service.trends()
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
    state = state_of(request)
    if is_new_visitor(request):  # nothing was ever kept for a visitor without a cookie
        counts = {"photos": 0, "feedback": 0, "recommendations": 0}
    else:
        counts = await state.service.forget(user_of(request))
    state.collages.pop(request[UID])
    request[SET_UID] = secrets.token_urlsafe(24)  # a fresh anonymous identity from now on
    return web.json_response({"message": render.forgotten(counts), "deleted": counts})


async def about(request: web.Request) -> web.Response:
    a = await state_of(request).service.about()
    return web.json_response({**dataclasses.asdict(a), "text": render.about_text(a)})


async def catalogue(request: web.Request) -> web.Response:
    """How much of the catalogue answers photos and whether this process is still adding
    (the service's own ingest status, via ``about``): the page's status line polls it
    while ``adding`` is true."""
    a = await state_of(request).service.about()
    ingest = a.ingest
    return web.json_response(
        {
            "ready": a.index_size,
            "expected": a.expected,
            "adding": a.filling,
            "state": ingest.state if ingest is not None else None,
            "text": render.catalogue_text(a),
        }
    )


def add_routes(r: web.UrlDispatcher) -> None:
    r.add_get("/", index)
    r.add_get("/static/{name}", static)
    r.add_get(r"/items/{item_id:[1-9][0-9]{0,17}}", item_page)
    r.add_get(r"/items/{item_id:[1-9][0-9]{0,17}}/image", item_image)
    r.add_get("/api/config", config)
    r.add_post("/api/recommend", recommend)
    r.add_post("/api/switch", switch)
    r.add_post("/api/feedback", feedback)
    r.add_get("/api/style", style)
    r.add_get("/api/style/collage", style_collage)
    r.add_post("/api/trend", trend)
    r.add_get("/api/trends", trends)
    r.add_post("/api/forget", forget)
    r.add_get("/api/about", about)
    r.add_get("/api/catalogue", catalogue)
