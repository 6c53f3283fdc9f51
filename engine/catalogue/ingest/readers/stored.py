"""The catalogue's own stored pictures, for ``reindex`` (a new backbone or head).

Items without an embedding for the current model are read in id order, a chunk at
a time, while earlier chunks are still being embedded. The store's query returns
"items not embedded yet" from the start, so rows in flight (read, not yet written)
would come back again: the reader keeps their ids (:attr:`StoredReader.pending`,
emptied by the writer) and asks for that many more, taking only ids past the last
one it yielded. Pictures that fail to decode stay pending (they are never
embedded), so they are asked for again but yielded once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from db.store import NewItem, Store
from engine.catalogue.ingest.rows import Row

SOURCE = "stored"


class StoredReader:
    def __init__(self, store: Store, model_key: str, chunk: int) -> None:
        self.store = store
        self.model_key = model_key
        self.chunk = chunk
        self.pending: set[int] = set()  # yielded, not written yet (or never writable)
        self._last_id = 0

    async def total(self) -> int:
        return await self.store.count_to_embed(self.model_key)

    def done(self, item_ids: list[int]) -> None:
        self.pending.difference_update(item_ids)

    async def chunks(self) -> AsyncIterator[list[Row]]:
        while True:
            limit = self.chunk + len(self.pending)
            while True:
                todo = await self.store.items_to_embed(self.model_key, limit=limit)
                fresh = [(i, image) for i, image in todo if i > self._last_id]
                if fresh or len(todo) < limit:
                    break
                limit *= 2  # only rows still in flight came back: look further
            if not fresh:
                return
            fresh = fresh[: self.chunk]
            self._last_id = fresh[-1][0]
            self.pending.update(i for i, _ in fresh)
            yield [
                Row(
                    line=item_id,  # bad rows of a reindex are named by item id
                    item=NewItem(source=SOURCE, external_id=str(item_id), title="", image=b""),
                    data=image,
                    keep=False,
                    item_id=item_id,
                )
                for item_id, image in fresh
            ]
