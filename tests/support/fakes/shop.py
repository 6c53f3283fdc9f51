"""A fake clothing shop: a real aiohttp server on 127.0.0.1 with a random free port.

Two markup styles:
- ``"jsonld"`` (shop A): schema.org JSON-LD product pages (``offers`` as object, list
  or AggregateOffer, some inside ``@graph``) and an ``ItemList`` search page;
- ``"grid"`` (shop B): plain HTML tiles without structured data and prices without a
  currency sign, so only the CSS selectors of :meth:`FakeShop.shop` find anything.

Pictures are real JPEGs made with PIL, one colour/pattern per product; product
``p-007`` has the same bytes at every shop (only the price differs, by ``price_factor``).

Search results can span pages (``per_page``): the next page is named by ``<link rel=next>``,
``<a rel=next>`` or a plain ``<a class=more>`` that only the shop's ``next`` selector finds
(``next_style``); ``rate_limit_page`` answers that page 429 (Retry-After: 1) once;
``endless_pages`` names a next page forever (a pagination trap).

Hostile extras are listed in the search page when named in ``specials``
(see :data:`SPECIALS`); the fetcher-test routes (``/status/...``, ``/flaky/...``,
``/slow``, ``/huge``, ``/redirect/...``, ``/to``, ``/page/...``) always exist.
Every request is recorded (:attr:`FakeShop.requests`), and the highest number of
requests in flight at once is kept in :attr:`FakeShop.max_in_flight`.

Use from any test::

    async with FakeShop("jsonld", n_products=100) as shop:
        async with Fetcher(fast_config(shop)) as fetcher:
            async for event in crawl_trend("dress", [shop.shop()], fetcher): ...
"""

from __future__ import annotations

import asyncio
import gzip
import html
import io
import ipaddress
import json
import socket
import struct
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from functools import cache, lru_cache
from typing import Any, Literal
from urllib.parse import quote

from aiohttp import web
from PIL import Image, ImageDraw

from scraper.fetch import FetchConfig
from scraper.sources import Shop

Style = Literal["jsonld", "grid"]
NextStyle = Literal["link", "anchor", "selector"]

DEFAULT_ROBOTS = """\
# fake shop robots.txt
User-agent: *
Disallow: /private/
Disallow: /wishlist

User-agent: FashionBot
Disallow: /private/
Disallow: /wishlist
Allow: /private/open-
"""

# name -> path listed on the search page; what the crawl must make of it is in the tests.
SPECIALS: dict[str, str] = {
    "robots-disallowed": "/private/p-hidden",  # robots.txt forbids it: must never be requested
    "broken-image": "/p/broken-image",  # picture is a truncated JPEG
    "bomb": "/p/bomb",  # picture is a PNG declaring 30000x30000 pixels
    "redirect-metadata": "/p/redirect-metadata",  # 302 -> http://169.254.169.254/latest/meta-data/
    "redirect-private": "/p/redirect-private",  # 302 -> http://10.0.0.1/admin
    "rate-limited": "/p/rate-limited",  # 429 Retry-After: 1 once, then a normal product page
    "slow": "/p/slow",  # answers after ``slow_seconds``
    "huge": "/p/huge",  # an endless page, over any cap
    "lying": "/p/lying",  # JSON-LD: price "call us", javascript: image, 5000-char name; og:image is fine
    "lying-noimage": "/p/lying-noimage",  # only javascript:/data: pictures
    "html-image": "/p/html-image",  # the "picture" URL serves HTML
    "offsite": "http://shop.invalid/p/elsewhere",  # a link off the shop's site: dropped, never fetched
}
METADATA_URL = "http://169.254.169.254/latest/meta-data/"
PRIVATE_URL = "http://10.0.0.1/admin"
RATE_LIMITED_TITLE = "Patient green dress"

_COLOURS = [
    ("red", (200, 30, 40)), ("blue", (30, 60, 200)), ("green", (30, 150, 60)), ("yellow", (230, 210, 40)),
    ("black", (20, 20, 20)), ("white", (245, 245, 245)), ("pink", (240, 130, 180)), ("orange", (240, 140, 30)),
    ("purple", (120, 40, 160)), ("brown", (120, 80, 40)), ("grey", (128, 128, 128)), ("teal", (20, 140, 140)),
]  # fmt: skip
_PATTERNS = ["plain", "striped", "checked", "dotted", "diagonal", "banded"]


@dataclass(frozen=True)
class FakeProduct:
    index: int
    slug: str
    title: str
    colour: str
    pattern: str
    base_price: float

    def price(self, factor: float) -> float:
        return round(self.base_price * factor, 2)


@cache
def catalogue(n: int) -> tuple[FakeProduct, ...]:
    out = []
    for i in range(n):
        colour = _COLOURS[i % len(_COLOURS)][0]
        pattern = _PATTERNS[(i // len(_COLOURS)) % len(_PATTERNS)]
        title = f"{colour.title()} {pattern} dress no. {i + 1}"
        out.append(FakeProduct(i, f"p-{i + 1:03d}", title, colour, pattern, round(19.0 + (i * 7.5) % 180, 2)))
    return tuple(out)


@cache
def product_jpeg(index: int) -> bytes:
    """A distinct 96x128 picture per product index: a colour and a pattern (stripes scale with index)."""
    name, rgb = _COLOURS[index % len(_COLOURS)]
    pattern = _PATTERNS[(index // len(_COLOURS)) % len(_PATTERNS)]
    step = 8 + 4 * (index // (len(_COLOURS) * len(_PATTERNS)))
    bg = tuple(255 - c for c in rgb)
    img = Image.new("RGB", (96, 128), rgb)
    draw = ImageDraw.Draw(img)
    if pattern == "striped":
        for x in range(0, 96, step):
            draw.rectangle([x, 0, x + step // 2, 127], fill=bg)
    elif pattern == "checked":
        for x in range(0, 96, step):
            for y in range(0, 128, step):
                if (x // step + y // step) % 2:
                    draw.rectangle([x, y, x + step - 1, y + step - 1], fill=bg)
    elif pattern == "dotted":
        for x in range(step // 2, 96, step):
            for y in range(step // 2, 128, step):
                draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=bg)
    elif pattern == "diagonal":
        for k in range(-128, 96, step):
            draw.line([(k, 0), (k + 128, 128)], fill=bg, width=3)
    elif pattern == "banded":
        for y in range(0, 128, step):
            draw.rectangle([0, y, 95, y + step // 2], fill=bg)
    draw.rectangle([40, 10, 56, 30], fill=bg)  # a "neckline", so even plain ones are not flat
    for bit in range(8):  # the index in binary along the hem: every picture is unique
        if index >> bit & 1:
            draw.rectangle([2 + bit * 12, 116, 10 + bit * 12, 124], fill=bg)
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=85)
    return out.getvalue()


def broken_jpeg() -> bytes:
    """The first half of a real JPEG: headers parse, pixels are missing."""
    data = product_jpeg(0)
    return data[: len(data) // 2]


@lru_cache(maxsize=1)
def bomb_png(side: int = 30000) -> bytes:
    """A valid 1-bit PNG of side x side pixels (900 M for 30000): ~110 KB on the wire."""
    raw_row = b"\x00" + b"\x00" * ((side + 7) // 8)
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(raw_row) for _ in range(side)) + comp.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: str  # raw, percent-encoded
    user_agent: str
    started: float  # time.monotonic()
    finished: float | None = None
    status: int | None = None


@dataclass
class FakeShop:
    style: Style = "jsonld"
    n_products: int = 6
    name: str | None = None
    price_factor: float = 1.0
    currency: str = "EUR"
    specials: Iterable[str] = ()
    robots: str | int | None = DEFAULT_ROBOTS  # text (200), a status code, or None (404)
    full_itemlist: bool = False  # ItemList entries carry whole Products: no product pages needed
    page_delay: float = 0.0  # seconds every product page takes
    slow_seconds: float = 5.0
    huge_bytes: int = 20 * 1024 * 1024
    bind_port: int = 0  # 0: a random free port
    per_page: int | None = None  # search results per page (None: all on one page)
    next_style: NextStyle = "link"
    rate_limit_page: int | None = None  # this search page answers 429 (Retry-After: 1) the first time
    endless_pages: bool = False  # every search page names a next one

    requests: list[RecordedRequest] = field(default_factory=list, init=False)
    max_in_flight: int = field(default=0, init=False)
    in_flight: int = field(default=0, init=False)
    huge_bytes_sent: int = field(default=0, init=False)
    port: int = field(default=0, init=False)
    _hits: dict[str, int] = field(default_factory=dict, init=False)
    _runner: web.AppRunner | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.specials = tuple(self.specials)
        unknown = set(self.specials) - set(SPECIALS)
        if unknown:
            raise ValueError(f"unknown specials {unknown}")
        if self.name is None:
            self.name = "Shop A" if self.style == "jsonld" else "Shop B"

    # ---- lifecycle ------------------------------------------------------------------
    async def __aenter__(self) -> FakeShop:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        app = web.Application(middlewares=[self._record])
        app.router.add_get("/robots.txt", self._robots)
        app.router.add_get("/search", self._search)
        app.router.add_get("/p/{slug}", self._product)
        app.router.add_get("/item/{slug}", self._product)
        app.router.add_get("/private/{slug}", self._product)
        app.router.add_get("/img/{name}", self._image)
        app.router.add_get("/page/{n}", self._plain_page)
        app.router.add_get("/status/{code}", self._status)
        app.router.add_get("/flaky/{fails}/{key}", self._flaky)
        app.router.add_get("/retry-after-date/{key}", self._retry_after_date)
        app.router.add_get("/slow", self._slow)
        app.router.add_get("/huge", self._huge)
        app.router.add_get("/huge-declared", self._huge_declared)
        app.router.add_get("/gzip-bomb", self._gzip_bomb)
        app.router.add_get("/redirect/{n}", self._redirect_chain)
        app.router.add_get("/to", self._redirect_to)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.bind_port))
        self.port = sock.getsockname()[1]
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        await web.SockSite(self._runner, sock).start()

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ---- what tests use --------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def allow_entry(self) -> str:
        """The allow-list entry admitting exactly this shop (host and port)."""
        return f"127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return path if path.startswith("http") else self.base_url + path

    @property
    def products(self) -> tuple[FakeProduct, ...]:
        return catalogue(self.n_products)

    def product_url(self, product: FakeProduct) -> str:
        return self.url(self._product_path(product))

    def _product_path(self, product: FakeProduct) -> str:
        return f"/p/{product.slug}" if self.style == "jsonld" else f"/item/{product.slug}"

    def shop(self, **overrides: Any) -> Shop:
        """A :class:`scraper.sources.Shop` for this fake (with the selectors the grid style needs)."""
        selectors: dict[str, str] = (
            {
                "product_link": "div.tile a.go",
                "title": ".pname",
                "price": ".cost",
                "currency": ".cur",
                "image": "img.main",
            }
            if self.style == "grid"
            else {}
        )
        if self.next_style == "selector":
            selectors["next"] = "nav.pages a.more"
        values: dict[str, Any] = {
            "name": self.name,
            "search_url": self.base_url + "/search?q={query}",
            "selectors": selectors,
        }
        values.update(overrides)
        return Shop(**values)

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]

    def hits(self, path: str) -> int:
        return sum(1 for r in self.requests if r.path == path)

    # ---- recording --------------------------------------------------------------------
    @web.middleware
    async def _record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        raw_query = request.raw_path.partition("?")[2]  # as sent, still percent-encoded
        rec = RecordedRequest(
            request.method, request.path, raw_query, request.headers.get("User-Agent", ""), time.monotonic()
        )
        self.requests.append(rec)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            response = await handler(request)
            rec.status = response.status
            return response
        except web.HTTPException as exc:
            rec.status = exc.status
            raise
        finally:
            self.in_flight -= 1
            rec.finished = time.monotonic()

    def _hit(self, key: str) -> int:
        self._hits[key] = self._hits.get(key, 0) + 1
        return self._hits[key]

    # ---- shop pages -----------------------------------------------------------------
    async def _robots(self, request: web.Request) -> web.Response:
        if self.robots is None:
            return web.Response(status=404, text="not found")
        if isinstance(self.robots, int):
            return web.Response(status=self.robots, text="robots unavailable")
        return web.Response(text=self.robots, content_type="text/plain")

    async def _search(self, request: web.Request) -> web.Response:
        query = request.query.get("q", "")
        try:
            page = max(1, int(request.query.get("page", "1")))
        except ValueError:
            page = 1
        if page == self.rate_limit_page and self._hit(f"search-429:{page}") == 1:
            return web.Response(status=429, text="slow down", headers={"Retry-After": "1"})
        products = [] if query == "nothing" else list(self.products)
        entries = [(p.title, self._product_path(p), f"/img/{p.slug}.jpg", p.price(self.price_factor)) for p in products]
        for special in self.specials:
            entries.append((f"Special {special}", SPECIALS[special], "/img/p-001.jpg", 10.0))
        next_href = None
        if self.per_page:
            more = page * self.per_page < len(entries)
            entries = entries[(page - 1) * self.per_page : page * self.per_page]
            if more or self.endless_pages:
                next_href = f"/search?q={quote(query)}&page={page + 1}"
        nav = _next_markup(next_href, self.next_style)
        if self.style == "grid":
            return _html(_grid_search_page(self.name or "", query, entries, nav))
        return _html(
            _jsonld_search_page(self.name or "", query, entries, self.base_url, self.currency, self.full_itemlist, nav)
        )

    async def _product(self, request: web.Request) -> web.StreamResponse:
        slug = request.match_info["slug"]
        if request.path.startswith("/private/"):
            return _html("<html><body><h1>Private</h1></body></html>")
        special = await self._special_product(request, slug)
        if special is not None:
            return special
        product = next((p for p in self.products if p.slug == slug), None)
        if product is None:
            raise web.HTTPNotFound()
        if self.page_delay:
            await asyncio.sleep(self.page_delay)
        price = product.price(self.price_factor)
        if self.style == "grid":
            return _html(_grid_product_page(self.name or "", product.title, f"/img/{slug}.jpg", price, self.currency))
        return _html(
            _jsonld_product_page(
                product, f"{self.base_url}/img/{slug}.jpg", price, self.currency, self.base_url + request.path
            )
        )

    async def _special_product(self, request: web.Request, slug: str) -> web.StreamResponse | None:
        page_url = self.base_url + request.path
        if slug == "broken-image":
            return _html(_simple_jsonld_page("Broken picture dress", "/img/broken.jpg", 20.0, page_url))
        if slug == "bomb":
            return _html(_simple_jsonld_page("Bomb dress", "/img/bomb.png", 20.0, page_url))
        if slug == "html-image":
            return _html(_simple_jsonld_page("Picture-is-a-page dress", "/page/1", 20.0, page_url))
        if slug == "redirect-metadata":
            raise web.HTTPFound(METADATA_URL)
        if slug == "redirect-private":
            raise web.HTTPFound(PRIVATE_URL)
        if slug == "rate-limited":
            if self._hit("rate-limited") == 1:
                return web.Response(status=429, text="slow down", headers={"Retry-After": "1"})
            return _html(_simple_jsonld_page(RATE_LIMITED_TITLE, "/img/p-003.jpg", 33.0, page_url))
        if slug == "slow":
            await asyncio.sleep(self.slow_seconds)
            return _html(_simple_jsonld_page("Slow dress", "/img/p-002.jpg", 20.0, page_url))
        if slug == "huge":
            return await self._huge(request)
        if slug == "lying":
            return _html(_lying_page(page_url, self.base_url))
        if slug == "lying-noimage":
            return _html(_lying_noimage_page())
        return None

    async def _image(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name == "broken.jpg":
            return web.Response(body=broken_jpeg(), content_type="image/jpeg")
        if name == "bomb.png":
            return web.Response(body=bomb_png(), content_type="image/png")
        slug = name.rsplit(".", 1)[0]
        product = next((p for p in self.products if p.slug == slug), None)
        if product is None:
            raise web.HTTPNotFound()
        return web.Response(body=product_jpeg(product.index), content_type="image/jpeg")

    # ---- fetcher-test routes ----------------------------------------------------------
    async def _plain_page(self, request: web.Request) -> web.Response:
        delay = float(request.query.get("delay", "0"))
        if delay:
            await asyncio.sleep(delay)
        n = request.match_info["n"]
        return _html(f"<html><head><title>Page {n}</title></head><body><p>page {n}</p></body></html>")

    async def _status(self, request: web.Request) -> web.Response:
        headers = {}
        if "retry_after" in request.query:
            headers["Retry-After"] = request.query["retry_after"]
        return web.Response(status=int(request.match_info["code"]), text="status", headers=headers)

    async def _flaky(self, request: web.Request) -> web.Response:
        """The first ``fails`` requests (per key) answer 503 without Retry-After."""
        key = request.match_info["key"]
        if self._hit(f"flaky:{key}") <= int(request.match_info["fails"]):
            return web.Response(status=int(request.query.get("code", "503")), text="try again")
        return _html("<html><body>recovered</body></html>")

    async def _retry_after_date(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        if self._hit(f"date:{key}") == 1:
            when = datetime.now(UTC) + timedelta(seconds=float(request.query.get("s", "2")))
            return web.Response(
                status=503, text="maintenance", headers={"Retry-After": format_datetime(when, usegmt=True)}
            )
        return _html("<html><body>back</body></html>")

    async def _slow(self, request: web.Request) -> web.Response:
        await asyncio.sleep(float(request.query.get("s", self.slow_seconds)))
        return _html("<html><body>finally</body></html>")

    async def _huge(self, request: web.Request) -> web.StreamResponse:
        """Streams ``huge_bytes`` of HTML without a Content-Length; counts what got out."""
        content_type = request.query.get("type", "text/html")
        response = web.StreamResponse(headers={"Content-Type": content_type})
        await response.prepare(request)
        chunk = b"<p>" + b"x" * (64 * 1024 - 7) + b"</p>\n"
        try:
            while self.huge_bytes_sent < self.huge_bytes:
                await response.write(chunk)
                self.huge_bytes_sent += len(chunk)
            await response.write_eof()
        except (ConnectionResetError, ConnectionError, asyncio.CancelledError):
            pass
        return response

    async def _huge_declared(self, request: web.Request) -> web.Response:
        """Declares 50 MB in Content-Length (a well-behaved client refuses before reading)."""
        response = web.StreamResponse(headers={"Content-Type": "text/html", "Content-Length": str(50 * 1024 * 1024)})
        await response.prepare(request)
        try:
            await response.write(b"<html>" + b"x" * 1024)
            await asyncio.sleep(2)
        except (ConnectionResetError, ConnectionError, asyncio.CancelledError):
            pass
        return response

    async def _gzip_bomb(self, request: web.Request) -> web.Response:
        """~50 KB on the wire, 50 MB after gzip decompression."""
        body = _gzip_bomb_bytes()
        return web.Response(body=body, headers={"Content-Type": "text/html", "Content-Encoding": "gzip"})

    async def _redirect_chain(self, request: web.Request) -> web.Response:
        n = int(request.match_info["n"])
        if n <= 0:
            return _html("<html><body>arrived</body></html>")
        raise web.HTTPFound(f"/redirect/{n - 1}")

    async def _redirect_to(self, request: web.Request) -> web.Response:
        raise web.HTTPFound(request.query["url"])


@lru_cache(maxsize=1)
def _gzip_bomb_bytes() -> bytes:
    return gzip.compress(b"<html>" + b" " * (50 * 1024 * 1024), compresslevel=9)


# ---- markup ----------------------------------------------------------------------------
def _html(text: str) -> web.Response:
    return web.Response(text=text, content_type="text/html", charset="utf-8")


def _ld(data: Any) -> str:
    return f'<script type="application/ld+json">{json.dumps(data)}</script>'


def _next_markup(href: str | None, style: NextStyle) -> tuple[str, str]:
    """(head, body) markup naming the next results page."""
    if href is None:
        return "", ""
    link = html.escape(href)
    if style == "link":
        return f'<link rel="next" href="{link}">', ""
    if style == "anchor":
        return "", f'<nav class="pages"><a rel="next" href="{link}">Next</a></nav>'
    return "", f'<nav class="pages"><a class="more" href="{link}">More results</a></nav>'


def _jsonld_search_page(
    name: str,
    query: str,
    entries: list[tuple[str, str, str, float]],
    base: str,
    currency: str,
    full: bool,
    nav: tuple[str, str] = ("", ""),
) -> str:
    elements = []
    for pos, (title, path, image, price) in enumerate(entries, start=1):
        url = path if path.startswith("http") else base + path
        if full:
            item = {
                "@type": "Product",
                "name": title,
                "url": url,
                "image": base + image,
                "offers": {"@type": "Offer", "price": f"{price:.2f}", "priceCurrency": currency},
            }
            elements.append({"@type": "ListItem", "position": pos, "item": item})
        else:
            elements.append({"@type": "ListItem", "position": pos, "url": url, "name": title})
    graph = {
        "@context": "https://schema.org",
        "@graph": [
            {"@type": "WebPage", "name": f"{name}: {query}"},
            {"@type": "ItemList", "name": f"Results for {query}", "itemListElement": elements},
        ],
    }
    cards = "".join(
        f'<li class="card"><a href="{html.escape(path)}"><img src="{html.escape(image)}" alt=""></a>'
        f"<span>{html.escape(title)}</span> <b>{price:.2f} {currency}</b></li>"
        for title, path, image, price in entries
    )
    return (
        f"<!doctype html><html><head><title>{html.escape(name)}</title>{_ld(graph)}{nav[0]}</head>"
        f'<body><header><img src="/static/logo.png" alt="logo"></header><ul class="results">{cards}</ul>'
        f"{nav[1]}</body></html>"
    )


def _jsonld_product_page(product: FakeProduct, image_url: str, price: float, currency: str, page_url: str) -> str:
    """Varies the JSON-LD shape by product index, as real shops do."""
    variant = product.index % 3
    if variant == 0:
        offers: Any = {"@type": "Offer", "price": f"{price:.2f}", "priceCurrency": currency}
    elif variant == 1:
        offers = [
            {"@type": "Offer", "price": price + 10, "priceCurrency": currency},
            {"@type": "Offer", "price": price, "priceCurrency": currency},
        ]
    else:
        offers = {"@type": "AggregateOffer", "lowPrice": price, "highPrice": price + 25, "priceCurrency": currency}
    data: dict[str, Any] = {
        "@type": "Product",
        "name": product.title,
        "image": [image_url] if product.index % 2 else {"@type": "ImageObject", "url": image_url},
        "url": page_url,
        "sku": product.slug,
        "brand": {"@type": "Brand", "name": "Fakewear"},
        "color": product.colour,
        "description": f"A {product.pattern} {product.colour} dress.",
        "offers": offers,
    }
    ld = (
        {"@context": "https://schema.org", "@graph": [{"@type": "WebPage"}, data]}
        if product.index % 2
        else {
            "@context": "https://schema.org",
            **data,
        }
    )
    return (
        f"<!doctype html><html><head><title>{html.escape(product.title)}</title>"
        f'<meta property="og:title" content="{html.escape(product.title)}">'
        f'<meta property="og:image" content="{html.escape(image_url)}">'
        f"{_ld(ld)}</head><body><h1>{html.escape(product.title)}</h1>"
        f'<img src="{html.escape(image_url)}" alt=""></body></html>'
    )


def _simple_jsonld_page(title: str, image: str, price: float, url: str) -> str:
    data = {"@context": "https://schema.org", "@type": "Product", "name": title, "image": image, "url": url,
            "offers": {"@type": "Offer", "price": price, "priceCurrency": "EUR"}}  # fmt: skip
    return f"<html><head>{_ld(data)}</head><body><h1>{html.escape(title)}</h1></body></html>"


def _lying_page(page_url: str, base: str) -> str:
    data = {
        "@context": "https://schema.org",
        "@type": "Product",
        "name": "Liar dress " + "very " * 1000 + "long",
        "image": "javascript:alert(1)",
        "url": "javascript:alert(2)",
        "brand": {"@type": "Brand", "name": "<b>Fake</b>   Brand"},
        "offers": {"@type": "Offer", "price": "call us", "priceCurrency": "EURO-ish"},
    }
    return (
        f'<html><head>{_ld(data)}<meta property="og:image" content="{base}/img/p-002.jpg">'
        f'<meta property="product:price:amount" content="-5"></head>'
        f'<body><h1>Liar</h1><img src="data:image/png;base64,AAAA"></body></html>'
    )


def _lying_noimage_page() -> str:
    data = {"@type": "Product", "name": "No picture dress", "image": ["javascript:alert(1)", "data:image/gif;base64,R0lG"],
            "offers": {"price": "-5", "priceCurrency": "EUR"}}  # fmt: skip
    return f'<html><head>{_ld(data)}</head><body><h1>No picture</h1><img src="javascript:void(0)"></body></html>'


def _grid_search_page(
    name: str, query: str, entries: list[tuple[str, str, str, float]], nav: tuple[str, str] = ("", "")
) -> str:
    tiles = "".join(
        f'<div class="tile"><a class="wish" href="/wishlist?add={html.escape(path)}">&#9825;</a>'
        f'<a class="go" href="{html.escape(path)}"><img src="{html.escape(image)}" alt=""></a>'
        f'<div class="pname">{html.escape(title)}</div><span class="cost">{_comma_price(price)}</span></div>'
        for title, path, image, price in entries
    )
    return (
        f"<html><head><title>{html.escape(name)}</title>{nav[0]}</head>"
        f"<body><div class=grid>{tiles}</div>{nav[1]}</body></html>"
    )


def _comma_price(price: float) -> str:
    """'29,90': no currency sign, so product-grid heuristics do not recognise it as a price."""
    return f"{price:.2f}".replace(".", ",")


def _grid_product_page(name: str, title: str, image: str, price: float, currency: str) -> str:
    price_text = _comma_price(price)
    return (
        f"<html><head><title>{html.escape(name)}</title></head><body>"
        f'<div class="top"><img src="/static/brand.png" alt="{html.escape(name)}"></div>'
        f'<div class="pname">{html.escape(title)}</div>'
        f'<div class="buy"><span class="cost">{price_text}</span> <span class="cur">{currency}</span></div>'
        f'<img class="main" src="{html.escape(image)}" alt="{html.escape(title)}"></body></html>'
    )


def fast_config(*shops: FakeShop, **overrides: Any) -> FetchConfig:
    """A FetchConfig for tests: the given fake shops allow-listed, no politeness delay,
    tiny backoff, short timeout. Override anything by keyword."""
    values: dict[str, Any] = {
        "contact_url": "http://contact.example/fashionbot",
        "allow_hosts": frozenset(s.allow_entry for s in shops),
        "timeout": 2.0,
        "min_delay": 0.0,
        "backoff_base": 0.02,
        "backoff_max": 0.1,
        "max_retries": 2,
        "max_page_bytes": 256 * 1024,
        "max_image_bytes": 2 * 1024 * 1024,
    }
    values.update(overrides)
    return FetchConfig(**values)


# ---- network spies for SSRF tests -----------------------------------------------------
class FakeDNS:
    """A getaddrinfo stand-in: name -> list of addresses (or a list of answers, one per call,
    to simulate DNS rebinding). Records every lookup; never touches real DNS."""

    def __init__(self, table: dict[str, list[str] | list[list[str]]]) -> None:
        self.table = table
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> list[tuple[Any, ...]]:
        self.lookups.append(host)
        answers = self.table.get(host)
        if answers is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        if answers and isinstance(answers[0], list):  # one answer per call, last one repeats
            calls = self.lookups.count(host)
            answers = answers[min(calls, len(answers)) - 1]  # type: ignore[assignment]
        infos = []
        for addr in answers:
            family = socket.AF_INET6 if ":" in addr else socket.AF_INET
            sockaddr = (addr, port, 0, 0) if family == socket.AF_INET6 else (addr, port)
            infos.append((family, socket.SOCK_STREAM, 6, "", sockaddr))
        return infos


class ConnectSpy:
    """Records every TCP connect the event loop makes (aiohttp connects through
    ``loop.sock_connect`` via aiohappyeyeballs, or ``loop.create_connection``) and
    refuses any that would leave the machine, so even a broken guard under test
    cannot send a packet to a non-loopback address."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.addresses: list[tuple[str, int]] = []
        self.refused: list[tuple[str, int]] = []
        self._loop = loop
        self._sock_connect = loop.sock_connect
        self._create_connection = loop.create_connection

    def _check(self, host: str, port: int) -> None:
        self.addresses.append((host, port))
        try:
            loopback = ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            self.refused.append((host, port))
            raise ConnectionRefusedError(f"test network: refusing to connect to {host}:{port}")

    def install(self, monkeypatch: Any) -> ConnectSpy:
        async def sock_connect(sock: socket.socket, address: Any) -> None:
            self._check(str(address[0]), int(address[1]))
            return await self._sock_connect(sock, address)

        async def create_connection(*args: Any, **kwargs: Any) -> Any:
            host = kwargs.get("host", args[1] if len(args) > 1 else None)
            if host is not None:
                self._check(str(host), int(kwargs.get("port", args[2] if len(args) > 2 else 0) or 0))
            return await self._create_connection(*args, **kwargs)

        monkeypatch.setattr(self._loop, "sock_connect", sock_connect)
        monkeypatch.setattr(self._loop, "create_connection", create_connection)
        return self


try:
    import pytest_asyncio
except ImportError:  # used outside pytest (python -m tests.support.fakes.shop)
    pass
else:

    @pytest_asyncio.fixture
    async def loopback_spy(monkeypatch: Any) -> ConnectSpy:
        """Fixture: a :class:`ConnectSpy` on the test's loop (import it into a test module to use it)."""
        return ConnectSpy(asyncio.get_running_loop()).install(monkeypatch)


async def _serve_forever(port_a: int, port_b: int, n_products: int) -> None:
    """Both fake shops on fixed ports, for trying ``/trend`` by hand."""
    async with (
        FakeShop("jsonld", n_products=n_products, bind_port=port_a) as a,
        FakeShop("grid", n_products=n_products, price_factor=1.1, bind_port=port_b) as b,
    ):
        allow = json.dumps([a.allow_entry, b.allow_entry])
        print(f"# FASHIONBOT_SCRAPER_ALLOW_HOSTS='{allow}'")
        print("# shops.toml:")
        for shop in (a.shop(), b.shop()):
            print(f'[[shops]]\nname = "{shop.name}"\nsearch_url = "{shop.search_url}"')
            if shop.selectors:
                print("[shops.selectors]")
                print("\n".join(f'{k} = "{v}"' for k, v in shop.selectors.items()))
        await asyncio.Event().wait()


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description="Run the two fake shops on 127.0.0.1.")
    parser.add_argument("--port-a", type=int, default=8765)
    parser.add_argument("--port-b", type=int, default=8766)
    parser.add_argument("--products", type=int, default=24)
    args = parser.parse_args()
    try:
        asyncio.run(_serve_forever(args.port_a, args.port_b, args.products))
    except KeyboardInterrupt:
        pass
