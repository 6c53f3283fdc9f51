"""The local web chat: a third front-end over the service API (aiohttp).

One page (``static/``: HTML, CSS and JS, no build step, nothing from a CDN) and a small
JSON API over the shared flows. A browser is one anonymous user: a random id in an
HttpOnly, SameSite=Lax cookie, ``UserRef("web", id)``; limits are keyed on the client
address as well. Safety: binds to 127.0.0.1 unless told otherwise; the ``Host`` header
must be an IP literal, ``localhost`` or an allowed name (DNS rebinding); POSTs only from
the page's own origin; uploads capped while they are read, and only so many at once;
pictures served by id; every catalogue text escaped on the server and set with
``textContent`` in the page; a strict Content-Security-Policy (no inline script or style).

Rooms: ``security`` (headers, guards, identity, errors), ``serialise`` (JSON),
``pages`` (server-side HTML), ``upload`` (the streamed photo), ``routes`` (handlers),
``server`` (app, start, run), ``state`` (what they share).
"""

from __future__ import annotations

from bot.web.routes import TREND_UNAVAILABLE
from bot.web.security import CSP
from bot.web.serialise import image_type, item_json, recommendation_json, safe_url
from bot.web.server import WebServer, build_web_app, run_web, start_web
from bot.web.state import STATIC_DIR

__all__ = [
    "CSP",
    "STATIC_DIR",
    "TREND_UNAVAILABLE",
    "WebServer",
    "build_web_app",
    "image_type",
    "item_json",
    "recommendation_json",
    "run_web",
    "safe_url",
    "start_web",
]
