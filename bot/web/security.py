"""The web chat's safety rules: security headers and a strict CSP, our own host names
only (DNS rebinding), same-origin POSTs (CSRF), one anonymous identity per browser,
the client's address (``X-Forwarded-For`` only behind a trusted proxy), and every
failure as a friendly answer."""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import re
import secrets
from collections.abc import Awaitable, Callable
from http.cookies import SimpleCookie

from aiohttp import web
from yarl import URL

from bot import render
from bot.web.pages import html_error
from bot.web.serialise import json_error
from bot.web.state import ADDRESS, SET_UID, UID, state_of
from bot.web.upload import TooLarge
from engine.errors import ServiceError, UnknownItem

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
COOKIE = "fb_uid"
COOKIE_MAX_AGE = 365 * 24 * 3600
_UID_RE = re.compile(r"^[A-Za-z0-9_-]{22,64}$")
CROSS_ORIGIN = "This request came from another site, so I refused it."
WRONG_HOST = "This chat only answers on its own address (127.0.0.1 or localhost)."

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


def client_address(request: web.Request, trusted_proxy: bool) -> str:
    """Who is asking, by address: the peer, or, behind a trusted reverse proxy, the
    address that proxy appended to ``X-Forwarded-For`` (the last entry)."""
    if trusted_proxy:
        forwarded = request.headers.get("X-Forwarded-For", "")
        last = forwarded.split(",")[-1].strip()
        if last and _is_ip(last):
            return last.strip("[]")
    return request.remote or "?"


@web.middleware
async def host_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer only to our own names: an IP literal, localhost or an allowed name. A page
    on attacker.example that rebinds its DNS to 127.0.0.1 is turned away here."""
    state = state_of(request)
    host = _request_hostname(request)
    if host is None or not (_is_ip(host) or host in state.allowed_hosts):
        return _refuse(request, WRONG_HOST)
    return await handler(request)


@web.middleware
async def origin_guard(request: web.Request, handler: Handler) -> web.StreamResponse:
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
async def identity(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One anonymous user per browser: a random id kept in an HttpOnly cookie (nothing
    is stored for it until the visitor does something that needs it); and the client's
    address, which the limits are keyed on as well (a cookie is the client's choice)."""
    uid = request.cookies.get(COOKIE)
    if uid is None or not _UID_RE.match(uid):
        uid = secrets.token_urlsafe(24)
        request[SET_UID] = uid
    request[UID] = uid
    request[ADDRESS] = client_address(request, state_of(request).settings.web_trusted_proxy)
    return await handler(request)


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
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
        return html_error(exc.status, exc.reason)
    except TooLarge as exc:
        # aiohttp then reads and drops the rest of the body for a few seconds ("lingering")
        # so the browser gets to see this answer instead of a reset connection.
        return json_error(413, str(exc))
    except UnknownItem as exc:
        return json_error(404, str(exc)) if is_api else html_error(404, str(exc))
    except ServiceError as exc:
        return json_error(400, str(exc)) if is_api else html_error(400, str(exc))
    except (asyncio.CancelledError, ConnectionResetError):
        raise
    except Exception:
        log.exception("web request %s %s failed", request.method, request.path)  # no visitor id in the log
        return json_error(500, render.INTERNAL_ERROR) if is_api else html_error(500, render.INTERNAL_ERROR)


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
