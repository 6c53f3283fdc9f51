"""Putting products into the catalogue: one pipeline for every source.

::

    readers/            rows.py        stages.py                writer.py         runner.py
    fashion_mnist  ─┐
    merchant_feed  ─┼─▶ Row | (line,  ─▶ decode (pool; remote  ─▶ embed (the    ─▶ store, then index
    kaggle         ─┤   reason)         pictures via the        embedder's       (CatalogueWriter),
    stored         ─┘                   scraper's Fetcher)      micro-batching)  or new vectors
                                                                                  (EmbeddingWriter)

The runner (:mod:`.runner`) runs the stages as overlapping tasks joined by bounded
queues and reports progress (:mod:`.status` keeps it observable for a page). Rows
already in the catalogue are skipped before decoding, so a second run embeds
nothing; bad rows are reported with their line numbers and the good rows land.
Service entry points: :func:`ingest_fashion_mnist`, :func:`ingest_feed`, :func:`reembed`
(in :mod:`.jobs`); :func:`ingest_rows` drives any reader's rows.
"""

from __future__ import annotations

from engine.catalogue.ingest.jobs import (
    CHUNK,
    feed_fetch_config,
    ingest_fashion_mnist,
    ingest_feed,
    ingest_rows,
    reembed,
)
from engine.catalogue.ingest.readers import count_feed_rows, feed_rows
from engine.catalogue.ingest.readers.fashion_mnist import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DIR,
    demo_price,
    fashion_mnist_picture,
    fashion_mnist_rows,
    load_fashion_mnist,
)
from engine.catalogue.ingest.readers.merchant_feed import FEED_COLUMNS
from engine.catalogue.ingest.rows import BadRow, Row, RowOrBad
from engine.catalogue.ingest.stages import interleaved_embed, model_embed
from engine.catalogue.ingest.status import IngestSnapshot, IngestStatus

__all__ = [
    "CHUNK",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_DIR",
    "FEED_COLUMNS",
    "BadRow",
    "IngestSnapshot",
    "IngestStatus",
    "Row",
    "RowOrBad",
    "count_feed_rows",
    "demo_price",
    "fashion_mnist_picture",
    "fashion_mnist_rows",
    "feed_fetch_config",
    "feed_rows",
    "ingest_fashion_mnist",
    "ingest_feed",
    "ingest_rows",
    "interleaved_embed",
    "load_fashion_mnist",
    "model_embed",
    "reembed",
]
