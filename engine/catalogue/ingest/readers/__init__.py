"""Readers: each source of products becomes :class:`~engine.catalogue.ingest.rows.Row`\\ s
(or ``(line, reason)`` for rows that can't be used).

- :mod:`.fashion_mnist`: the demo and test catalogue (pictures made in the decode stage);
- :mod:`.merchant_feed`: Merchant CSV / JSON lines (local or remote pictures);
- :mod:`.kaggle`: ``styles.csv`` + ``images/``;
- :mod:`.stored`: the catalogue's stored pictures (reindex).

A new source is one more module here returning rows; the stages, writer and runner
do not change. Scraped products (``/trend``) keep their own flow in ``engine.trends``
(dedup across shops, offers), which embeds through the same ``Encoder``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from engine.catalogue.ingest.readers.kaggle import is_kaggle, kaggle_rows
from engine.catalogue.ingest.readers.merchant_feed import merchant_rows
from engine.catalogue.ingest.rows import RowOrBad


def feed_rows(path: Path, max_bytes: int | None = None) -> Iterator[RowOrBad]:
    """Rows of a Merchant CSV / JSON-lines feed or a Kaggle ``styles.csv`` (or its folder).
    ``max_bytes`` is accepted for older callers; the decode stage applies the cap."""
    return kaggle_rows(path) if is_kaggle(path) else merchant_rows(path)


def count_feed_rows(path: Path) -> int:
    """How many rows (good and bad) a feed holds: a cheap first pass, for the progress total."""
    return sum(1 for _ in feed_rows(path))
