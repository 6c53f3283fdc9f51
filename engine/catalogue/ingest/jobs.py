"""The ingests the service runs, each one reader → stages → writer through the runner."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from engine.api import Progress
from engine.catalogue.catalogue import Catalogue
from engine.catalogue.ingest import runner
from engine.catalogue.ingest.readers import count_feed_rows, feed_rows
from engine.catalogue.ingest.readers.fashion_mnist import SOURCE as FASHION_MNIST
from engine.catalogue.ingest.readers.fashion_mnist import fashion_mnist_rows, load_fashion_mnist
from engine.catalogue.ingest.readers.stored import StoredReader
from engine.catalogue.ingest.rows import RowOrBad
from engine.catalogue.ingest.stages import Decoder, Embed, model_embed
from engine.catalogue.ingest.writer import CatalogueWriter, EmbeddingWriter
from engine.types import IngestReport
from engine.vision.encoder import Encoder
from scraper import FetchConfig, Fetcher
from scraper.ssrf import GetAddrInfo

log = logging.getLogger(__name__)

CHUNK = 128  # rows per database round (the service passes its EMBED_CHUNK)
# Feed pictures come from the merchant's own CDN, named in the operator's own feed: a few
# at a time and no pause between them (a shop's pages get scraper_min_delay; 10,000
# pictures one second apart would take three hours). robots.txt is still obeyed.
FEED_HOST_CONCURRENCY = 4
FEED_MIN_DELAY = 0.0


def feed_fetch_config(settings: Any, **overrides: Any) -> FetchConfig:
    """The guarded fetcher's settings for feed pictures (``engine.config.Settings``)."""
    values: dict[str, Any] = {
        "timeout": settings.scraper_timeout,
        "min_delay": FEED_MIN_DELAY,
        "per_host_concurrency": FEED_HOST_CONCURRENCY,
        "max_image_bytes": settings.max_image_bytes,
    }
    return FetchConfig.from_settings(settings, **(values | overrides))


async def ingest_rows(
    catalogue: Catalogue,
    encoder: Encoder,
    rows: Iterable[RowOrBad],
    *,
    batch_size: int = CHUNK,
    progress: Progress | None = None,
    total: int | None = None,
    fetcher: Fetcher | None = None,
    embed: Embed | None = None,
) -> IngestReport:
    """Embed, store and index ``rows`` (from any reader); rows already in the catalogue are
    skipped before decoding. ``total``: rows expected, when known (progress bars)."""
    return await runner.run(
        runner.chunked(rows, batch_size),
        Decoder(encoder, fetcher=fetcher),
        embed or model_embed(encoder),
        CatalogueWriter(catalogue),
        progress=progress,
        total=total,
    )


async def ingest_fashion_mnist(
    catalogue: Catalogue,
    encoder: Encoder,
    *,
    split: str = "train",
    limit: int | None = None,
    chunk: int = CHUNK,
    progress: Progress | None = None,
    embed: Embed | None = None,
) -> IngestReport:
    """The first ``limit`` Fashion-MNIST products of ``split`` not in the catalogue yet
    (resumable: ids already ingested are not even decoded). The total is known up front."""
    skip = await catalogue.store.all_external_ids(FASHION_MNIST)
    data = await asyncio.to_thread(load_fashion_mnist, split)
    total = len(data[0]) if limit is None else min(limit, len(data[0]))
    prefix = f"{split}-"
    done = sum(1 for e in skip if e.startswith(prefix) and e[len(prefix) :].isdigit() and int(e[len(prefix) :]) < total)
    rows = fashion_mnist_rows(split, total, skip=skip, data=data)
    report = await ingest_rows(
        catalogue, encoder, rows, batch_size=chunk, progress=progress, total=total - done, embed=embed
    )
    report.skipped_existing += done
    return report


async def ingest_feed(
    catalogue: Catalogue,
    encoder: Encoder,
    path: Path,
    *,
    fetch_config: FetchConfig | None = None,
    getaddrinfo: GetAddrInfo | None = None,
    chunk: int = 64,
    progress: Progress | None = None,
    embed: Embed | None = None,
) -> IngestReport:
    """A Merchant CSV / JSON-lines feed or a Kaggle layout. Remote pictures go through one
    guarded :class:`scraper.Fetcher` for the whole ingest (``fetch_config``: see
    :func:`feed_fetch_config`; ``getaddrinfo``: tests' DNS), closed at the end."""
    total = await asyncio.to_thread(count_feed_rows, path)
    config = fetch_config or FetchConfig(
        max_image_bytes=encoder.settings.max_image_bytes,
        per_host_concurrency=FEED_HOST_CONCURRENCY,
        min_delay=FEED_MIN_DELAY,
    )
    async with Fetcher(config, getaddrinfo=getaddrinfo) as fetcher:
        return await ingest_rows(
            catalogue,
            encoder,
            feed_rows(path),
            batch_size=chunk,
            progress=progress,
            total=total,
            fetcher=fetcher,
            embed=embed,
        )


async def reembed(
    catalogue: Catalogue,
    encoder: Encoder,
    *,
    chunk: int = CHUNK,
    progress: Progress | None = None,
    embed: Embed | None = None,
) -> int:
    """Embed every item that has no embedding for the current model (after a backbone or
    head change) from its stored picture; returns how many. The total is set up front.
    Items whose stored picture no longer decodes are logged and left as they are."""
    reader = StoredReader(catalogue.store, catalogue.model_key, chunk)
    total = await reader.total()
    report = await runner.run(
        reader.chunks(),
        Decoder(encoder),
        embed or model_embed(encoder),
        EmbeddingWriter(catalogue, reader),
        progress=progress,
        total=total,
    )
    for item_id, reason in report.bad_rows:
        log.warning("item %d not re-embedded: %s", item_id, reason)
    return report.added
