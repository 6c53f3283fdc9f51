"""Building and serving the web chat (aiohttp): the application, its middlewares in
order, and the server that binds 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import inspect
import ipaddress
import logging
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import web

from bot.flows import PhotoFlow
from bot.web.routes import STATIC_FILES, add_routes
from bot.web.security import _is_ip, errors, host_guard, identity, on_prepare, origin_guard
from bot.web.state import STATE_KEY, STATIC_DIR, UPLOAD_CONCURRENCY, WebState
from engine.api import FashionAPI
from engine.config import Settings

log = logging.getLogger(__name__)


# ---- app ------------------------------------------------------------------------------------
def _allowed_hosts(settings: Settings, extra: Iterable[str]) -> frozenset[str]:
    names = {"localhost"}
    host = (getattr(settings, "web_host", "") or "").strip().lower()
    if host and not _is_ip(host):
        names.add(host)
    names.update(h.strip().lower() for h in extra if h.strip())
    return frozenset(names)


def build_web_app(
    service: FashionAPI, settings: Settings, *, allowed_hosts: Iterable[str] = (), max_uploads: int = UPLOAD_CONCURRENCY
) -> web.Application:
    """The web chat as an aiohttp application over ``service``.

    ``allowed_hosts``: extra host names the page may be reached by (IP literals and
    ``localhost`` always work; other names are refused to stop DNS rebinding).
    ``max_uploads``: photos read and recommended at once; more get a friendly 503."""
    state = WebState(
        service=service,
        settings=settings,
        flow=PhotoFlow(service, settings),
        allowed_hosts=_allowed_hosts(settings, allowed_hosts),
        static={name: (STATIC_DIR / name).read_bytes() for name in STATIC_FILES},
        index_html=(STATIC_DIR / "index.html").read_bytes(),
        uploads=asyncio.Semaphore(max_uploads),
    )
    app = web.Application(
        middlewares=[host_guard, errors, origin_guard, identity],
        client_max_size=1024 * 1024,  # JSON bodies; the photo upload is streamed and capped separately
    )
    app[STATE_KEY] = state
    app.on_response_prepare.append(on_prepare)
    add_routes(app.router)
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
    service: FashionAPI,
    settings: Settings,
    *,
    host: str | None = None,
    port: int | None = None,
    allowed_hosts: Iterable[str] = (),
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
    bound = port
    addresses = runner.addresses  # the port chosen for port 0
    if addresses:
        bound = addresses[0][1]
    shown_host = host if host not in ("0.0.0.0", "::") else "127.0.0.1"
    # Everything alive after start-up (model, catalogue, libraries) leaves the garbage
    # collector's sight: otherwise a full collection walks it all, holding the GIL for
    # ~250 ms on the loop thread (measured as the longest stall under 200 uploads).
    gc.collect()
    gc.freeze()
    return WebServer(url=_url(shown_host, bound), runner=runner)


async def run_web(
    service: FashionAPI,
    settings: Settings,
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
