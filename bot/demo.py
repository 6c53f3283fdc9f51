"""`fashionbot demo`: the whole product on one machine, no tokens needed.

Fills an empty catalogue with Fashion-MNIST products (a subset by default, resumable,
so a second run starts in seconds), starts the offline demo shop so `/trend` can be
tried, starts the web chat and, when their tokens are set, the Telegram and Discord
bots, all on one service. Ctrl-C stops everything cleanly.
"""

from __future__ import annotations

import asyncio
import sys
import time
from functools import lru_cache
from typing import TYPE_CHECKING

from engine.config import Settings

if TYPE_CHECKING:
    from engine.api import AdminAPI
    from scraper.demo_shop import DemoProduct

DEFAULT_LIMIT = 5000
DEMO_SHOP_PORT = 8765


async def fill_catalogue(service: AdminAPI, *, full: bool, limit: int | None) -> None:
    """Ingest the demo subset (or everything) that isn't in the catalogue yet."""
    from tqdm import tqdm

    splits = [("train", None), ("test", None)] if full else [("train", limit or DEFAULT_LIMIT)]
    for split, count in splits:
        with tqdm(desc=f"Embedding Fashion-MNIST ({split})", unit="img", file=sys.stderr) as bar:
            await service.ingest_fashion_mnist(split=split, limit=count, progress=bar)


@lru_cache(maxsize=1)
def demo_shop_products() -> tuple[DemoProduct, ...]:
    """The demo shop's 30 products: the last three Fashion-MNIST *test* images of each class
    (the demo catalogue comes from the training images, so these are new items)."""
    import numpy as np

    from engine.catalogue.ingest import FASHION_MNIST_CLASSES, demo_price, fashion_mnist_picture, load_fashion_mnist
    from scraper.demo_shop import PER_CATEGORY, make_demo_products

    images, labels = load_fashion_mnist("test")
    picks = [
        (label, int(index))
        for label in range(len(FASHION_MNIST_CLASSES))
        for index in np.flatnonzero(labels == label)[-PER_CATEGORY:]
    ]
    samples = ((label, fashion_mnist_picture(images[index])) for label, index in picks)
    return make_demo_products(samples, categories=FASHION_MNIST_CLASSES, price=demo_price)


async def run_demo(
    settings: Settings,
    *,
    full: bool = False,
    limit: int | None = None,
    host: str | None = None,
    port: int | None = None,
) -> int:
    from bot.app import FrontEnd, configured_bots, run_frontends
    from bot.web import run_web
    from engine.service import FashionService
    from scraper.demo_shop import start_demo_shop, write_demo_shops_toml

    started = time.monotonic()
    products = await asyncio.to_thread(demo_shop_products)
    try:  # a fixed port keeps the links of items found by earlier /trend runs working
        shop_url, shop_runner = await start_demo_shop(DEMO_SHOP_PORT, products=products)
    except OSError:
        shop_url, shop_runner = await start_demo_shop(products=products)
    if settings.shops_file is None:  # the operator's own shops win; otherwise the demo shop
        # The file allow-lists the demo shop for itself; the operator's allow-list is left alone.
        settings.shops_file = write_demo_shops_toml(settings.data_dir / "demo-shops.toml", shop_url)
        settings.scraper_min_delay = min(settings.scraper_min_delay, 0.1)  # our own shop: no need to wait

    service = await FashionService.create(settings)
    try:
        about = await service.about()
        if about.backbone_note:
            print(f"Note: {about.backbone_note}", file=sys.stderr)
        await fill_catalogue(service, full=full, limit=limit)
        about = await service.about()

        def ready(url: str) -> None:
            took = time.monotonic() - started
            print(
                f"\nfashionbot demo is ready in {took:.0f} s: open {url}\n"
                f"Catalogue: {about.index_size} items · demo shop for /trend at {shop_url}\n"
                "Ctrl-C stops everything.",
                flush=True,
            )

        frontends = [FrontEnd("web", lambda: run_web(service, settings, host=host, port=port, on_ready=ready))]
        frontends += configured_bots(service, settings)
        for fe in frontends[1:]:
            print(f"Starting the {fe.name} bot too (its token is set).", flush=True)
        return await run_frontends(frontends)
    finally:
        await service.close()
        await shop_runner.cleanup()
