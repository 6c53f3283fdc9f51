"""A small offline demo shop, so ``/trend`` can be tried without the internet.

An aiohttp server on 127.0.0.1 selling the products it is given (``DemoProduct``:
title, category, colour, price and the JPEG to serve). The demo builds 30 from
Fashion-MNIST *test* images (``bot/demo.py``: three per category, tinted with a
colour, titled by colour and category, "Navy Dress"); without products the shop
sells drawn placeholders of the same kinds. The scraper does not import the
engine: whoever has the catalogue builds the products (:func:`make_demo_products`).

Pages carry schema.org JSON-LD, as most real shops' pages do: the search page an
``ItemList`` of product links, each product page a ``Product`` with picture, price
and colour. The search page only lists products whose title matches every word of
the query ("dress" -> the dresses, "red" -> the red ones, "dresses" works too).

    url, runner = await start_demo_shop(products=products)   # random free port
    write_demo_shops_toml(data_dir / "shops.toml", url)        # FASHIONBOT_SHOPS_FILE
    ...                                                         # (the file allow-lists the shop for itself)
    await runner.cleanup()

``python -m scraper.demo_shop`` serves the placeholders on 127.0.0.1:8770 and prints the shops file.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import io
import json
import re
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from aiohttp import web
from PIL import Image, ImageDraw, ImageOps
from yarl import URL

SHOP_NAME = "Demo Atelier"
PER_CATEGORY = 3
PICTURE_SIDE = 400
CURRENCY = "EUR"
ROBOTS = "User-agent: *\nDisallow: /cart\nAllow: /\n"
# Display nouns for Fashion-MNIST's classes, by label (the order of engine.catalogue.ingest.FASHION_MNIST_CLASSES).
NOUNS = ["T-shirt", "Trousers", "Pullover", "Dress", "Coat", "Sandals", "Shirt", "Sneakers", "Bag", "Ankle boots"]
COLOURS: list[tuple[str, tuple[int, int, int]]] = [
    ("Red", (180, 25, 40)), ("Navy", (25, 40, 110)), ("Olive", (90, 105, 35)), ("Black", (25, 25, 25)),
    ("Rose", (205, 95, 140)), ("Mustard", (190, 140, 20)), ("Teal", (15, 115, 115)), ("Burgundy", (105, 20, 45)),
    ("Grey", (105, 105, 105)), ("Camel", (165, 115, 60)), ("Forest", (30, 85, 45)),
]  # fmt: skip


@dataclass(frozen=True)
class DemoProduct:
    """One product of the demo shop; ``jpeg`` is the picture it serves."""

    slug: str
    title: str
    category: str
    colour: str
    price: float
    jpeg: bytes = field(repr=False)

    def matches(self, query: str) -> bool:
        """Every word of the query names a word of the title (case and plural insensitive)."""
        words = {_stem(w) for w in _words(self.title)}
        wanted = [_stem(w) for w in _words(query)]
        return bool(wanted) and all(w in words for w in wanted)


def _words(text: str) -> list[str]:
    return [w for w in re.split(r"[\s/,+]+", text.lower()) if w]


def _stem(word: str) -> str:
    if word.endswith("sses"):
        return word[:-2]
    if word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def tinted_jpeg(grey: Image.Image, colour: str) -> bytes:
    """A dark-on-white greyscale picture tinted with ``colour`` (a name of :data:`COLOURS`), 400 px JPEG."""
    rgb = dict(COLOURS)[colour]
    tinted = ImageOps.colorize(grey.convert("L"), black=rgb, white=(255, 255, 255))
    big = tinted.resize((PICTURE_SIDE, PICTURE_SIDE), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    big.save(out, format="JPEG", quality=88)
    return out.getvalue()


def make_demo_products(
    samples: Iterable[tuple[int, Image.Image]],
    *,
    categories: Sequence[str],
    price: Callable[[int, str], float],
) -> tuple[DemoProduct, ...]:
    """Products from ``(label, greyscale picture)`` samples: the k-th sample of a label gets
    slug ``<noun>-<k>``, a colour, the title "<Colour> <Noun>" and ``price(label, "demo-<slug>")``;
    ``categories[label]`` is its category name."""
    out: list[DemoProduct] = []
    counts: dict[int, int] = {}
    for label, grey in samples:
        k = counts.get(label, 0)
        counts[label] = k + 1
        colour = COLOURS[(label * PER_CATEGORY + k) % len(COLOURS)][0]
        noun = NOUNS[label]
        slug = f"{noun.lower().replace(' ', '-')}-{k + 1}"
        out.append(
            DemoProduct(
                slug=slug,
                title=f"{colour} {noun}",
                category=categories[label],
                colour=colour,
                price=price(label, f"demo-{slug}"),
                jpeg=tinted_jpeg(grey, colour),
            )
        )
    return tuple(out)


# Rough silhouettes on a 28-unit grid (like Fashion-MNIST), one per label.
_SHAPES: list[list[tuple[int, int]]] = [
    [(4, 6), (10, 3), (18, 3), (24, 6), (22, 11), (19, 10), (19, 25), (9, 25), (9, 10), (6, 11)],  # T-shirt
    [(8, 3), (20, 3), (22, 25), (16, 25), (14, 10), (12, 25), (6, 25)],  # trousers
    [(3, 8), (10, 3), (18, 3), (25, 8), (25, 24), (20, 24), (19, 11), (19, 25), (9, 25), (9, 11), (8, 24), (3, 24)],
    [(11, 2), (17, 2), (18, 9), (24, 25), (4, 25), (10, 9)],  # dress
    [(4, 7), (10, 2), (18, 2), (24, 7), (25, 25), (3, 25)],  # coat
    [(3, 18), (24, 14), (25, 20), (3, 22)],  # sandals
    [(4, 6), (10, 2), (14, 5), (18, 2), (24, 6), (21, 25), (7, 25)],  # shirt
    [(3, 14), (12, 12), (18, 16), (25, 18), (25, 22), (3, 22)],  # sneakers
    [(5, 10), (9, 10), (10, 5), (18, 5), (19, 10), (23, 10), (24, 24), (4, 24)],  # bag
    [(8, 3), (16, 3), (16, 15), (25, 19), (25, 24), (8, 24)],  # ankle boots
]


def _placeholder_picture(label: int) -> Image.Image:
    img = Image.new("L", (28, 28), 255)
    ImageDraw.Draw(img).polygon(_SHAPES[label], fill=40)
    return img


@lru_cache(maxsize=1)
def placeholder_products() -> tuple[DemoProduct, ...]:
    """30 drawn products (three per kind), for a demo shop started without a catalogue."""
    samples = [(label, _placeholder_picture(label)) for label in range(len(NOUNS)) for _ in range(PER_CATEGORY)]
    return make_demo_products(
        samples, categories=NOUNS, price=lambda label, key: round(15.0 + 7.0 * label + len(key) % 5, 2)
    )


# ---- pages -----------------------------------------------------------------------------
def _ld(data: object) -> str:
    text = json.dumps(data).replace("</", "<\\/")
    return f'<script type="application/ld+json">{text}</script>'


def _page(title: str, head: str, body: str) -> web.Response:
    return web.Response(
        text=f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>{head}</head>"
        f"<body><header><a href='/'>{SHOP_NAME}</a> · <form action='/search'><input name=q></form></header>"
        f"{body}</body></html>",
        content_type="text/html",
        charset="utf-8",
    )


def build_app(products: Iterable[DemoProduct] | None = None) -> web.Application:
    """The shop's aiohttp application, selling ``products`` (default: the placeholders)."""
    by_slug = {p.slug: p for p in (placeholder_products() if products is None else products)}

    async def robots(request: web.Request) -> web.Response:
        return web.Response(text=ROBOTS, content_type="text/plain")

    async def home(request: web.Request) -> web.Response:
        links = "".join(f"<li><a href='/search?q={html.escape(n.lower())}'>{html.escape(n)}</a></li>" for n in NOUNS)
        return _page(SHOP_NAME, "", f"<h1>{SHOP_NAME}</h1><p>An offline demo shop.</p><ul>{links}</ul>")

    async def search(request: web.Request) -> web.Response:
        query = request.query.get("q", "")
        base = str(request.url.origin())
        hits = [p for p in by_slug.values() if p.matches(query)]
        itemlist = {
            "@context": "https://schema.org",
            "@type": "ItemList",
            "name": f"{SHOP_NAME}: {query}",
            "itemListElement": [
                {"@type": "ListItem", "position": n, "url": f"{base}/p/{p.slug}", "name": p.title}
                for n, p in enumerate(hits, start=1)
            ],
        }
        cards = "".join(
            f"<li><a href='/p/{p.slug}'><img src='/img/{p.slug}.jpg' width=160 alt=''>"
            f"{html.escape(p.title)}</a> <b>€{p.price:.2f}</b></li>"
            for p in hits
        )
        body = f"<h1>Results for “{html.escape(query)}”</h1><ul class=results>{cards or '<li>Nothing found.</li>'}</ul>"
        return _page(f"{query} – {SHOP_NAME}", _ld(itemlist), body)

    async def product(request: web.Request) -> web.Response:
        p = by_slug.get(request.match_info["slug"])
        if p is None:
            raise web.HTTPNotFound()
        base = str(request.url.origin())
        data = {
            "@context": "https://schema.org",
            "@type": "Product",
            "name": p.title,
            "image": f"{base}/img/{p.slug}.jpg",
            "url": f"{base}/p/{p.slug}",
            "sku": p.slug,
            "color": p.colour,
            "category": p.category,
            "brand": {"@type": "Brand", "name": SHOP_NAME},
            "offers": {"@type": "Offer", "price": f"{p.price:.2f}", "priceCurrency": CURRENCY,
                       "availability": "https://schema.org/InStock"},
        }  # fmt: skip
        body = (
            f"<h1>{html.escape(p.title)}</h1><img src='/img/{p.slug}.jpg' width=400 alt='{html.escape(p.title)}'>"
            f"<p class=price>€{p.price:.2f}</p>"
        )
        return _page(f"{p.title} – {SHOP_NAME}", _ld(data), body)

    async def image(request: web.Request) -> web.Response:
        slug = request.match_info["name"].removesuffix(".jpg")
        p = by_slug.get(slug)
        if p is None:
            raise web.HTTPNotFound()
        return web.Response(body=p.jpeg, content_type="image/jpeg", headers={"Cache-Control": "max-age=86400"})

    app = web.Application()
    app.router.add_get("/robots.txt", robots)
    app.router.add_get("/", home)
    app.router.add_get("/search", search)
    app.router.add_get("/p/{slug}", product)
    app.router.add_get("/img/{name}", image)
    return app


async def start_demo_shop(port: int = 0, *, products: Iterable[DemoProduct] | None = None) -> tuple[str, web.AppRunner]:
    """Serve the demo shop on 127.0.0.1 (``port`` 0: a free one). Returns its base URL and the
    runner (``await runner.cleanup()`` stops it)."""
    if products is None:
        products = await asyncio.to_thread(placeholder_products)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    actual = sock.getsockname()[1]
    runner = web.AppRunner(build_app(products), access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    return f"http://127.0.0.1:{actual}", runner


def demo_allow_entry(url: str) -> str:
    """The allow-list entry admitting exactly the demo shop (``host:port``)."""
    parsed = URL(url)
    return f"{parsed.host}:{parsed.port}"


def demo_shops_toml(url: str, name: str = SHOP_NAME) -> str:
    """A shops file listing the demo shop; its own ``allow_hosts`` admits it past the SSRF
    guard (loopback) for this shop only, so the operator's allow-list stays untouched."""
    return (
        "# The offline demo shop (scraper/demo_shop.py)\n[[shops]]\n"
        f"name = {json.dumps(name)}\nsearch_url = {json.dumps(url + '/search?q={query}')}\n"
        f"allow_hosts = [{json.dumps(demo_allow_entry(url))}]\n"
    )


def write_demo_shops_toml(path: str | Path, url: str, name: str = SHOP_NAME) -> Path:
    """Write a shops file (for ``FASHIONBOT_SHOPS_FILE``) listing only the demo shop at ``url``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(demo_shops_toml(url, name), encoding="utf-8")
    return path


async def _serve(port: int) -> None:
    url, runner = await start_demo_shop(port)
    print(f"# demo shop at {url} (placeholder products); a shops file for FASHIONBOT_SHOPS_FILE:")
    print(demo_shops_toml(url))
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Serve the offline demo shop on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=8770)
    args = parser.parse_args()
    try:
        asyncio.run(_serve(args.port))
    except KeyboardInterrupt:
        pass
