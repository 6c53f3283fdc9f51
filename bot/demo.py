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

from engine.config import Settings

DEFAULT_LIMIT = 5000
DEMO_SHOP_PORT = 8765


async def fill_catalogue(service, *, full: bool, limit: int | None) -> None:
    """Ingest the demo subset (or everything) that isn't in the catalogue yet."""
    from tqdm import tqdm

    from engine.catalogue import ingest as catalogue
    from engine.service import EMBED_CHUNK

    splits = [("train", None), ("test", None)] if full else [("train", limit or DEFAULT_LIMIT)]
    existing = await service.store.all_external_ids("fashion-mnist")
    for split, count in splits:
        images, _ = await asyncio.to_thread(catalogue.load_fashion_mnist, split)
        total = len(images) if count is None else min(count, len(images))
        todo = total - sum(1 for e in existing if e.startswith(f"{split}-") and int(e.split("-", 1)[1]) < total)
        if todo <= 0:
            continue
        rows = catalogue.fashion_mnist_rows(split, total, service.embedder.input_size, skip=existing)
        with tqdm(total=todo, desc=f"Embedding Fashion-MNIST ({split})", unit="img", file=sys.stderr) as bar:
            await catalogue.ingest_rows(service, rows, batch_size=EMBED_CHUNK, progress=bar.update)


async def run_demo(
    settings: Settings, *, full: bool = False, limit: int | None = None, host: str | None = None, port: int | None = None
) -> int:
    from bot.app import FrontEnd, configured_bots, run_frontends
    from bot.web import run_web
    from engine.service import FashionService
    from scraper.demo_shop import demo_allow_entry, start_demo_shop, write_demo_shops_toml

    started = time.monotonic()
    try:  # a fixed port keeps the links of items found by earlier /trend runs working
        shop_url, shop_runner = await start_demo_shop(DEMO_SHOP_PORT)
    except OSError:
        shop_url, shop_runner = await start_demo_shop()
    if settings.shops_file is None:  # the operator's own shops win; otherwise the demo shop
        settings.shops_file = write_demo_shops_toml(settings.data_dir / "demo-shops.toml", shop_url)
        settings.scraper_min_delay = min(settings.scraper_min_delay, 0.1)  # our own shop: no need to wait
    settings.scraper_allow_hosts = [*settings.scraper_allow_hosts, demo_allow_entry(shop_url)]

    service = await FashionService.create(settings)
    try:
        about = await service.about()
        if about.backbone_note:
            print(f"Note: {about.backbone_note}", file=sys.stderr)
        await fill_catalogue(service, full=full, limit=limit)

        def ready(url: str) -> None:
            took = time.monotonic() - started
            print(
                f"\nfashionbot demo is ready in {took:.0f} s: open {url}\n"
                f"Catalogue: {len(service.index)} items · demo shop for /trend at {shop_url}\n"
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
