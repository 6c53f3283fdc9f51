"""`Catalogue`: the database's items as a searchable vector index.

The database is the source of truth; the hnswlib index is a cache of it that this
object loads, rebuilds, tops up and saves. Every catalogue write goes through
:meth:`Catalogue.add_items` (database commit first, then the live index), so a crash
between the two leaves items the next start tops up, never an index entry without
its row. Other workers' commits are picked up by :meth:`Catalogue.follow` (by last
item id), so several processes on one database answer from the same catalogue.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from functools import partial
from typing import Any, TypeVar

import numpy as np

from db.store import NewItem, Store
from engine.catalogue.index import IndexMeta, IndexMismatch, VectorIndex
from engine.catalogue.shelves import Shelves
from engine.config import EngineSettings
from engine.errors import EmptyCatalogue, IndexOutOfDate
from engine.vision.backbones import LoadedBackbone
from engine.vision.garment_vocabulary import GROUP_VOTERS, voted_search_groups

log = logging.getLogger(__name__)
T = TypeVar("T")

GroupOf = Callable[[str | None], str | None]  # catalogue category → garment group (or None: unknown)
WIDE_FETCH = 384  # neighbours looked at before a shelf-only search, when the first round has too few


class Catalogue:
    """The index cache over ``store`` for one model (``backbone``'s vectors)."""

    def __init__(
        self,
        settings: EngineSettings,
        store: Store,
        backbone: LoadedBackbone,
        pool: Executor,
        *,
        group_of: GroupOf = lambda _category: None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.backbone = backbone
        self.model_key = backbone.model_key
        self._pool = pool
        self._group_of = group_of
        self.index: VectorIndex = self._empty_index()
        self.state = "not loaded"
        self.problem: str | None = None  # set when the saved index belongs to another model
        self._write_lock = asyncio.Lock()  # one catalogue writer at a time in this process
        self._shelves = Shelves()  # item id → garment group, for per-garment searches

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, partial(fn, *args))

    def __len__(self) -> int:
        return len(self.index)

    def __contains__(self, item_id: int) -> bool:
        return item_id in self.index

    # ---- lifecycle ------------------------------------------------------------
    def _empty_index(self) -> VectorIndex:
        meta = IndexMeta(
            backbone=self.backbone.name,
            fingerprint=self.backbone.fingerprint,
            dim=self.backbone.dim,
            head=self.backbone.head_fingerprint,
            m=self.settings.index_m,
            ef_construction=self.settings.index_ef_construction,
        )
        return VectorIndex(meta, ef=self.settings.index_ef)

    async def open(self) -> None:
        """Load the saved index; rebuild it when missing or corrupt, top it up when stale,
        refuse it (until `reindex`) when it belongs to another backbone."""
        path = self.settings.index_path
        self.problem = None
        try:
            index = await self._run(partial(VectorIndex.load, path, ef=self.settings.index_ef))
            index.check_compatible(
                self.backbone.name, self.backbone.fingerprint, self.backbone.dim, self.backbone.head_fingerprint
            )
        except FileNotFoundError:
            await self.rebuild(reason="missing")
            return
        except IndexMismatch as err:
            self.index = self._empty_index()
            self.problem = str(err)
            self.state = "built with another backbone: run `fashionbot reindex`"
            log.warning("%s", err)
            return
        except (ValueError, KeyError, TypeError) as err:
            log.warning("index unusable (%s): rebuilding from the database", err)
            await self.rebuild(reason="corrupt")
            return
        self.index = index
        added = await self._top_up()
        expected = await self.store.count_embedded(self.model_key)
        if len(self.index) != expected:
            log.warning("index holds %d items, database %d: rebuilding", len(self.index), expected)
            await self.rebuild(reason="stale")
            return
        await self._load_groups()
        self.state = f"loaded ({len(self.index)} items{f', {added} added from the database' if added else ''})"
        if added:
            await self.save()

    async def _top_up(self) -> int:
        added = 0
        async for ids, vecs in self.store.iter_embeddings(self.model_key, after_id=self.index.meta.last_item_id):
            await self._run(self.index.add, ids, vecs)
            added += len(ids)
        return added

    async def _load_groups(self, after_id: int = 0) -> None:
        for item_id, category in await self.store.item_categories(after_id=after_id):
            group = self._group_of(category)
            if group is not None:
                self._shelves.put(item_id, group)

    async def rebuild(self, reason: str = "requested") -> int:
        async with self._write_lock:
            self.index = self._empty_index()
            self.problem = None
            self._shelves.clear()
            await self._top_up()
            await self._load_groups()
            self.state = f"rebuilt from the database ({reason}, {len(self.index)} items)"
            await self.save()
            return len(self.index)

    async def save(self) -> None:
        await self._run(self.index.save, self.settings.index_path)

    async def follow(self) -> int:
        """Catch up with what any worker committed since the last look: new items (by last
        item id) are added, items removed or marked duplicate (by event id) are dropped.
        Returns how many items were added or dropped."""
        if self.problem is not None:
            return 0
        async with self._write_lock:
            before = self.index.meta.last_item_id
            added = await self._top_up()
            if added:
                await self._load_groups(after_id=before)
            dropped = 0
            while True:
                events = await self.store.item_events(after_id=self._last_event)
                if not events:
                    break
                for event_id, item_id, _kind in events:
                    if item_id in self.index:
                        self.remove(item_id)
                        dropped += 1
                    self._last_event = event_id
            return added + dropped

    _last_event = 0  # the newest item event applied to this index (events are idempotent)

    async def remove_items(self, ids: Sequence[int]) -> int:
        """Delete items from the catalogue (database first, then this index); every other
        worker's :meth:`follow` drops them too."""
        removed = await self.store.remove_items(ids)
        for item_id in ids:
            self.remove(item_id)
        return removed

    async def mark_duplicates(self, pairs: Sequence[tuple[int, int]]) -> int:
        """``(item, original)``: keep the item's row as a duplicate, search the original only."""
        marked = await self.store.mark_duplicates(pairs)
        for item_id, _original in pairs:
            self.remove(item_id)
        return marked

    # ---- writes -------------------------------------------------------------------
    async def add_items(self, items: Sequence[NewItem], vectors: np.ndarray) -> list[int]:
        """Store new items with their vectors in one transaction, then index them."""
        rows = [
            NewItem(**{**vars(it), "embedding": v.tobytes(), "embedding_model": self.model_key})
            for it, v in zip(items, vectors)
        ]
        async with self._write_lock:
            ids = await self.store.add_items(rows)
            await self._run(self.index.add, np.asarray(ids), vectors)
        for item_id, item in zip(ids, items):
            group = self._group_of(item.category)
            if group is not None:
                self._shelves.put(item_id, group)
        return ids

    def remove(self, item_id: int) -> None:
        """Drop an item from the live index (its row went, or became a duplicate)."""
        self.index.delete(item_id)
        self._shelves.drop(item_id)

    # ---- reads ---------------------------------------------------------------------
    def check_ready(self) -> None:
        if self.problem:
            raise IndexOutOfDate(self.problem)
        if not len(self.index):
            raise EmptyCatalogue()

    def group(self, item_id: int) -> str | None:
        return self._shelves.group(item_id)

    def has_group(self, group: str) -> bool:
        return self._shelves.holds(group)

    async def nearest(
        self,
        vector: np.ndarray,
        fetch: int,
        *,
        group: str | None = None,
        need: int = 0,
        vote: bool = False,
        shelves: tuple[str, ...] | None = None,
    ) -> list[tuple[int, float]]:
        """(item id, cosine) of the nearest items, best first. With ``group``, only items
        of ``shelves`` when given (the crop shelf's choice, engine/vision/crop_shelf.py),
        else of that garment group's shelves (top <-> outerwear; with ``vote``, widened by
        the shelf most of the nearest items come from: :func:`voted_search_groups`),
        looking further when fewer than ``need`` are left (:meth:`_nearest_on_shelves`)."""
        ids, scores = await self._run(self.index.search, vector, max(fetch, GROUP_VOTERS if vote else 0))
        pairs = [(int(i), float(s)) for i, s in zip(ids, scores)]
        if group is None:
            return pairs
        neighbours = [self._shelves.group(i) for i, _ in pairs] if vote else []
        allowed = set(shelves) if shelves else set(voted_search_groups(group, neighbours))
        kept = [(i, s) for i, s in pairs if self._shelves.group(i) in allowed]
        if len(kept) < need and len(pairs) < len(self.index):  # the first round did not see them all
            kept = await self._run(self._nearest_on_shelves, vector, need, allowed, len(pairs))
        return kept

    def _nearest_on_shelves(
        self, vector: np.ndarray, need: int, allowed: set[str], seen: int
    ) -> list[tuple[int, float]]:
        """Blocking: at least ``need`` nearest items on the ``allowed`` shelves (when they hold
        that many), however far they lie. First the WIDE_FETCH nearest overall (≈ 3 ms at
        44,000 items): usually enough. Then, only if not, a search of those shelves alone
        (a real photo's sweatshirt had 6 tops among its 384 nearest of 5,000 items, and
        showed 6 items, not 10): hnswlib's filtered search calls its Python filter for every
        item it looks at, 30-50 ms at 44,000 items (bench/bench_filtered_search.py). Never more
        asked than the shelves hold: the filtered search would otherwise walk the whole graph."""
        kept: list[tuple[int, float]] = []
        if seen < WIDE_FETCH:
            ids, scores = self.index.search(vector, WIDE_FETCH)
            kept = [(int(i), float(s)) for i, s in zip(ids, scores) if self._shelves.group(int(i)) in allowed]
            if len(kept) >= need or len(ids) >= len(self.index):
                return kept
        stocked = self._shelves.stocked(allowed)
        ids, scores = self.index.search(vector, min(need, stocked), keep=self._shelves.keeper(allowed))
        return [(int(i), float(s)) for i, s in zip(ids, scores)]

    async def vectors(self, ids: list[int]) -> np.ndarray:
        return await self._run(self.index.vectors, ids)
