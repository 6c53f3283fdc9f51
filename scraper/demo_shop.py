"""A small offline demo shop, so ``/trend`` can be tried without the internet.

An aiohttp server on 127.0.0.1 selling 30 products made from Fashion-MNIST *test*
images (the demo catalogue is built from the training images, so these are new
items): three per category, each tinted with a colour and upscaled to a 400 px
JPEG, titled by colour and category ("Navy Dress"). Pages carry schema.org JSON-LD,
as most real shops' pages do: the search page an ``ItemList`` of product links, each
product page a ``Product`` with picture, price and colour. The search page only lists
products whose title matches every word of the query ("dress" -> the dresses,
"red" -> the red ones, "dresses" works too).

    url, runner = await start_demo_shop()                 # random free port
    write_demo_shops_toml(data_dir / "shops.toml", url)   # FASHIONBOT_SHOPS_FILE
    settings.scraper_allow_hosts = [demo_allow_entry(url)]  # the SSRF guard refuses loopback otherwise
    ...
    await runner.cleanup()

``python -m scraper.demo_shop`` serves it on 127.0.0.1:8770 and prints the settings.
"""
from __future__ import annotations

import argparse
import asyncio
import html
import io
import json
import re
import socket
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from aiohttp import web
from PIL import Image, ImageOps
from yarl import URL

SHOP_NAME = "Demo Atelier"
PER_CATEGORY = 3
PICTURE_SIDE = 400
CURRENCY = "EUR"
ROBOTS = "User-agent: *\nDisallow: /cart\nAllow: /\n"
# Display nouns for Fashion-MNIST's classes (same order as engine.catalogue.ingest.FASHION_MNIST_CLASSES).
NOUNS = ["T-shirt", "Trousers", "Pullover", "Dress", "Coat", "Sandals", "Shirt", "Sneakers", "Bag", "Ankle boots"]
COLOURS: list[tuple[str, tuple[int, int, int]]] = [
    ("Red", (180, 25, 40)), ("Navy", (25, 40, 110)), ("Olive", (90, 105, 35)), ("Black", (25, 25, 25)),
    ("Rose", (205, 95, 140)), ("Mustard", (190, 140, 20)), ("Teal", (15, 115, 115)), ("Burgundy", (105, 20, 45)),
    ("Grey", (105, 105, 105)), ("Camel", (165, 115, 60)), ("Forest", (30, 85, 45)),
]  # fmt: skip


@dataclass(frozen=True)
class DemoProduct:
    slug: str
    title: str
    category: str  # Fashion-MNIST class name
    colour: str
    price: float
    test_index: int  # index into the Fashion-MNIST test split

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


@lru_cache(maxsize=1)
def demo_products() -> tuple[DemoProduct, ...]:
    """30 products: the last three test images of each class, each in its own colour."""
    import numpy as np

    from engine.catalogue.ingest import FASHION_MNIST_CLASSES, demo_price

    _, labels = _test_images()
    out = []
    for label, category in enumerate(FASHION_MNIST_CLASSES):
        indices = np.flatnonzero(labels == label)[-PER_CATEGORY:]
        for k, index in enumerate(indices):
            colour = COLOURS[(label * PER_CATEGORY + k) % len(COLOURS)][0]
            slug = f"{NOUNS[label].lower().replace(' ', '-')}-{k + 1}"
            out.append(
                DemoProduct(
                    slug=slug,
                    title=f"{colour} {NOUNS[label]}",
                    category=category,
                    colour=colour,
                    price=demo_price(label, f"demo-{slug}"),
                    test_index=int(index),
                )
            )
    return tuple(out)


@lru_cache(maxsize=64)
def demo_picture(slug: str) -> bytes:
    """The product's JPEG: the Fashion-MNIST picture (dark on white) tinted and upscaled."""
    from engine.catalogue.ingest import fashion_mnist_picture

    product = next(p for p in demo_products() if p.slug == slug)
    images, _ = _test_images()
    grey = fashion_mnist_picture(images[product.test_index]).convert("L")
    rgb = dict(COLOURS)[product.colour]
    tinted = ImageOps.colorize(grey, black=rgb, white=(255, 255, 255))
    big = tinted.resize((PICTURE_SIDE, PICTURE_SIDE), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    big.save(out, format="JPEG", quality=88)
    return out.getvalue()


@lru_cache(maxsize=1)
def _test_images():  # noqa: ANN202 - (images, labels)
    from engine.catalogue.ingest import load_fashion_mnist

    return load_fashion_mnist("test")


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


def build_app() -> web.Application:
    products = {p.slug: p for p in demo_products()}

    async def robots(request: web.Request) -> web.Response:
        return web.Response(text=ROBOTS, content_type="text/plain")

    async def home(request: web.Request) -> web.Response:
        links = "".join(f"<li><a href='/search?q={html.escape(n.lower())}'>{html.escape(n)}</a></li>" for n in NOUNS)
        return _page(SHOP_NAME, "", f"<h1>{SHOP_NAME}</h1><p>An offline demo shop.</p><ul>{links}</ul>")

    async def search(request: web.Request) -> web.Response:
        query = request.query.get("q", "")
        base = str(request.url.origin())
        hits = [p for p in products.values() if p.matches(query)]
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
        p = products.get(request.match_info["slug"])
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
        if slug not in products:
            raise web.HTTPNotFound()
        data = await asyncio.to_thread(demo_picture, slug)
        return web.Response(body=data, content_type="image/jpeg", headers={"Cache-Control": "max-age=86400"})

    app = web.Application()
    app.router.add_get("/robots.txt", robots)
    app.router.add_get("/", home)
    app.router.add_get("/search", search)
    app.router.add_get("/p/{slug}", product)
    app.router.add_get("/img/{name}", image)
    return app


async def start_demo_shop(port: int = 0) -> tuple[str, web.AppRunner]:
    """Serve the demo shop on 127.0.0.1 (``port`` 0: a free one). Returns its base URL and the
    runner (``await runner.cleanup()`` stops it)."""
    await asyncio.to_thread(demo_products)  # load the dataset before the first request
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    actual = sock.getsockname()[1]
    runner = web.AppRunner(build_app(), access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    return f"http://127.0.0.1:{actual}", runner


def demo_allow_entry(url: str) -> str:
    """The ``scraper_allow_hosts`` entry admitting exactly the demo shop (``host:port``)."""
    parsed = URL(url)
    return f"{parsed.host}:{parsed.port}"


def demo_shops_toml(url: str, name: str = SHOP_NAME) -> str:
    return f'# The offline demo shop (scraper/demo_shop.py)\n[[shops]]\nname = "{name}"\nsearch_url = "{url}/search?q={{query}}"\n'


def write_demo_shops_toml(path: str | Path, url: str, name: str = SHOP_NAME) -> Path:
    """Write a shops file (for ``FASHIONBOT_SHOPS_FILE``) listing only the demo shop at ``url``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(demo_shops_toml(url, name), encoding="utf-8")
    return path


async def _serve(port: int) -> None:
    url, runner = await start_demo_shop(port)
    print(f"# demo shop at {url}")
    print(f"# FASHIONBOT_SCRAPER_ALLOW_HOSTS='{json.dumps([demo_allow_entry(url)])}'")
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
