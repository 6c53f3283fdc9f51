"""`fashionbot demo`: the whole product on one machine, no tokens needed.

Starts the offline demo shop (so `/trend` can be tried), the service, the web chat and,
when their tokens are set, the Telegram and Discord bots, all on one service, and fills
the catalogue with Fashion-MNIST products (a subset by default) **in the background**:
the page answers within seconds of the command starting, photos are answered from what
is indexed so far, and the page shows how far the catalogue is. The ingest is
resumable, so a second run only adds what is missing. A failed ingest is logged and the
chat goes on with the items it has; Ctrl-C stops everything cleanly.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from functools import lru_cache
from typing import TYPE_CHECKING

from engine.config import Settings

if TYPE_CHECKING:
    from engine.api import AdminAPI
    from engine.types import About
    from scraper.demo_shop import DemoProduct

log = logging.getLogger(__name__)

DEFAULT_LIMIT = 5000
DEMO_SHOP_PORT = 8765


def say(text: str) -> None:
    """A line for the person at the console, above the ingest's progress bar (tqdm's own
    write clears the bar, prints, and draws it again)."""
    from tqdm import tqdm

    tqdm.write(text, file=sys.stdout)
    sys.stdout.flush()


async def fill_catalogue(service: AdminAPI, *, full: bool, limit: int | None) -> int:
    """Ingest the demo subset (or everything) that isn't in the catalogue yet; returns how
    many items were added."""
    from tqdm import tqdm

    splits = [("train", None), ("test", None)] if full else [("train", limit or DEFAULT_LIMIT)]
    added = 0
    for split, count in splits:
        with tqdm(desc=f"Embedding Fashion-MNIST ({split})", unit="img", file=sys.stderr) as bar:
            added += (await service.ingest_fashion_mnist(split=split, limit=count, progress=bar)).added
    return added


def ready_catalogue_line(about: About) -> str:
    """The catalogue's part of the ready line: what answers now, and what is still coming."""
    ingest = about.ingest
    if ingest is None or ingest.state != "running":
        return f"Catalogue: {about.index_size:,} items"
    so_far = f"Catalogue: {about.index_size:,} items indexed so far"
    if ingest.remaining is None:  # still reading the dataset and what is already in
        return f"{so_far}, checking for the rest in the background"
    if about.expected is None:
        return f"Catalogue: {about.index_size:,} items"
    return (
        f"Catalogue: {about.index_size:,} of {about.expected:,} items indexed so far, "
        "the rest is being added in the background (the page shows how far)"
    )


async def fill_in_background(service: AdminAPI, *, full: bool, limit: int | None) -> bool:
    """:func:`fill_catalogue` as the demo's background task: the chat is already serving,
    so a failure is reported (one clear line, the traceback in the log) and the chat goes on
    with what was indexed, instead of taking the page down. True when it completed.
    Cancellation (Ctrl-C) passes through: the ingest is resumable."""
    started = time.monotonic()
    try:
        added = await fill_catalogue(service, full=full, limit=limit)
    except Exception as err:
        log.error("filling the demo catalogue failed", exc_info=err)
        say(
            f"Adding the demo catalogue stopped: {type(err).__name__}: {err}\n"
            f"The chat goes on with the {(await service.about()).index_size:,} items indexed; "
            "run `fashionbot demo` again to add the rest (it resumes)."
        )
        return False
    took = time.monotonic() - started
    say(
        f"Catalogue complete: {(await service.about()).index_size:,} items "
        + (f"({added:,} added in {took:.0f} s)." if added else "(nothing to add).")
    )
    return True


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

    filling: asyncio.Task[bool] | None = None
    service = await FashionService.create(settings)
    try:
        about = await service.about()
        if about.backbone_note:
            print(f"Note: {about.backbone_note}", file=sys.stderr)
        # The ingest shares the service with the chat: the index takes adds beside searches
        # (a reader-writer lock in VectorIndex), items answer photos chunk by chunk.
        filling = asyncio.create_task(fill_in_background(service, full=full, limit=limit), name="demo-ingest")
        await asyncio.sleep(0)  # it registers its status at once, before the page can be asked

        async def ready(url: str) -> None:
            took = time.monotonic() - started
            say(
                f"\nfashionbot demo is ready in {took:.0f} s: open {url}\n"
                f"{ready_catalogue_line(await service.about())} · demo shop for /trend at {shop_url}\n"
                "Ctrl-C stops everything."
            )

        frontends = [FrontEnd("web", lambda: run_web(service, settings, host=host, port=port, on_ready=ready))]
        frontends += configured_bots(service, settings)
        for fe in frontends[1:]:
            print(f"Starting the {fe.name} bot too (its token is set).", flush=True)
        return await run_frontends(frontends)
    finally:
        if filling is not None:  # Ctrl-C or the front-ends ended: stop adding (resumable)
            filling.cancel()
            await asyncio.gather(filling, return_exceptions=True)
        await service.close()
        await shop_runner.cleanup()
