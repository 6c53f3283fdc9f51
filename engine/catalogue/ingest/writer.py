"""The end of the pipeline: what is already there (checked before decoding, so a second
run decodes nothing), then store, then index.

:class:`CatalogueWriter` adds new items through ``Catalogue.add_items`` (one database
transaction per chunk, then the live index: a crash between the two leaves rows the
next start indexes, never an index entry without its row) and saves the index once
at the end. :class:`EmbeddingWriter` (reindex) stores new vectors for existing items;
the service rebuilds the index afterwards.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from engine.catalogue.catalogue import Catalogue
from engine.catalogue.ingest.readers.stored import StoredReader
from engine.catalogue.ingest.rows import Row


class Writer(Protocol):
    async def admit(self, rows: list[Row]) -> tuple[list[Row], int]:
        """(rows to decode and write, how many were skipped as already there)."""
        ...

    async def write(self, rows: list[Row], vectors: np.ndarray) -> int:
        """Store (then index) ``rows`` with their vectors; returns how many were written."""
        ...

    async def finish(self) -> None: ...


class CatalogueWriter:
    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue
        self.added = 0
        self._seen: dict[str, set[str]] = {}  # ids of this run by source: a feed naming an id twice adds it once

    async def admit(self, rows: list[Row]) -> tuple[list[Row], int]:
        by_source: dict[str, list[Row]] = {}
        for r in rows:
            by_source.setdefault(r.item.source, []).append(r)
        fresh: list[Row] = []
        skipped = 0
        for source, group in by_source.items():
            seen = self._seen.setdefault(source, set())
            asked = [r.item.external_id for r in group if r.item.external_id not in seen]
            existing = await self.catalogue.store.existing_external_ids(source, asked) if asked else set()
            for r in group:
                if r.item.external_id in existing or r.item.external_id in seen:
                    skipped += 1
                else:
                    seen.add(r.item.external_id)
                    fresh.append(r)
        return fresh, skipped

    async def write(self, rows: list[Row], vectors: np.ndarray) -> int:
        await self.catalogue.add_items([r.item for r in rows], vectors)
        self.added += len(rows)
        return len(rows)

    async def finish(self) -> None:
        if self.added:
            await self.catalogue.save()


class EmbeddingWriter:
    def __init__(self, catalogue: Catalogue, reader: StoredReader) -> None:
        self.catalogue = catalogue
        self.reader = reader

    async def admit(self, rows: list[Row]) -> tuple[list[Row], int]:
        return rows, 0

    async def write(self, rows: list[Row], vectors: np.ndarray) -> int:
        ids = [r.item_id for r in rows if r.item_id is not None]
        await self.catalogue.store.set_embeddings(
            self.catalogue.model_key, [(i, v.tobytes()) for i, v in zip(ids, vectors)]
        )
        self.reader.done(ids)
        return len(ids)

    async def finish(self) -> None:
        return None
