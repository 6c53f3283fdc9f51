"""`FashionService`: the one API every front-end calls.

Async methods returning plain dataclasses (engine.types). Model work runs on the
embedder's worker thread (micro-batched); decoding and index searches run on a
small bounded thread pool. The event loop only awaits.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, TypeVar

import numpy as np

from engine.config import Settings
from db import trend_store
from db.store import NewItem, Store
from engine.vision.backbones import LoadedBackbone, load_model
from engine.vision.embedder import Embedder, prepare
from engine.errors import EmptyCatalogue, IndexOutOfDate, UnknownItem
from engine.vision.images import open_image, to_jpeg
from engine.catalogue.index import IndexMeta, IndexMismatch, VectorIndex
from engine.styles import profile as styles
from engine.styles.collage import render_collage
from engine.trends.runner import TrendRunner
from engine.types import About, Item, Recommendation, ScoredItem, StyleCluster, StyleSummary, TrendInfo, UserRef
from engine.types import TrendProgress

log = logging.getLogger(__name__)
T = TypeVar("T")

LIKE_WEIGHT = 2.0  # a liked catalogue item counts as much as two of the user's photos
MAX_STYLES_SHOWN = 4


@dataclass(frozen=True)
class PreparedImage:
    """A decoded image: pixels ready for the backbone and a compact copy to keep."""

    pixels: np.ndarray
    jpeg: bytes | None


EMBED_CHUNK = 128  # rows per database round: progress moves every second or two, and a crash loses at most this


class FashionService:
    def __init__(self, settings: Settings, store: Store, embedder: Embedder) -> None:
        self.settings = settings
        self.store = store
        self.embedder = embedder
        self.backbone: LoadedBackbone = embedder.backbone
        self.model_key = self.backbone.model_key
        self.index: VectorIndex = self._empty_index()
        self.index_state = "not loaded"
        self._index_problem: str | None = None
        # Decoding and index searches: bounded, off the loop.
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="fashion-io")
        self._write_lock = asyncio.Lock()  # one catalogue writer at a time
        self._trends = TrendRunner(self)  # /trend: shop crawls feeding add_items (engine/trends/runner.py)
        self._closed = False
        self._profiles = styles.ProfileCache()

    # ---- lifecycle ----------------------------------------------------------
    @classmethod
    async def create(cls, settings: Settings | None = None, *, backbone: LoadedBackbone | None = None) -> "FashionService":
        settings = settings or Settings()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        store = Store(settings.db_url)
        await store.create()
        if backbone is None:
            backbone = await asyncio.to_thread(load_model, settings)
        embedder = await asyncio.to_thread(
            partial(
                Embedder,
                backbone,
                batch_size=settings.batch_size,
                precision=settings.precision,
                max_wait_ms=settings.micro_batch_wait_ms,
                threads=settings.torch_threads,
                compile=settings.compile,
                batch_rates_file=settings.data_dir / "batch_rates.json",
            )
        )
        service = cls(settings, store, embedder)
        await service.open_index()
        return service

    async def close(self) -> None:
        """Save the index and release everything; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        await self._trends.close()  # stop running trends before the store goes away
        if self._index_problem is None and len(self.index):
            await self.save_index()
        self.embedder.close()
        self._pool.shutdown(wait=True)
        await self.store.close()

    async def __aenter__(self) -> "FashionService":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, partial(fn, *args))

    # ---- index cache ----------------------------------------------------------
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

    async def open_index(self) -> None:
        """Load the saved index; rebuild it when missing or corrupt, top it up when stale,
        refuse it (until `reindex`) when it belongs to another backbone."""
        path = self.settings.index_path
        self._index_problem = None
        try:
            index = await self._run(partial(VectorIndex.load, path, ef=self.settings.index_ef))
            index.check_compatible(
                self.backbone.name, self.backbone.fingerprint, self.backbone.dim, self.backbone.head_fingerprint
            )
        except FileNotFoundError:
            await self.rebuild_index(reason="missing")
            return
        except IndexMismatch as err:
            self.index = self._empty_index()
            self._index_problem = str(err)
            self.index_state = "built with another backbone: run `fashionbot reindex`"
            log.warning("%s", err)
            return
        except (ValueError, KeyError, TypeError) as err:
            log.warning("index unusable (%s): rebuilding from the database", err)
            await self.rebuild_index(reason="corrupt")
            return
        self.index = index
        added = await self._top_up()
        expected = await self.store.count_embedded(self.model_key)
        if len(self.index) != expected:
            log.warning("index holds %d items, database %d: rebuilding", len(self.index), expected)
            await self.rebuild_index(reason="stale")
            return
        self.index_state = f"loaded ({len(self.index)} items{f', {added} added from the database' if added else ''})"
        if added:
            await self.save_index()

    async def _top_up(self) -> int:
        added = 0
        async for ids, vecs in self.store.iter_embeddings(self.model_key, after_id=self.index.meta.last_item_id):
            await self._run(self.index.add, ids, vecs)
            added += len(ids)
        return added

    async def rebuild_index(self, reason: str = "requested") -> int:
        async with self._write_lock:
            self.index = self._empty_index()
            self._index_problem = None
            await self._top_up()
            self.index_state = f"rebuilt from the database ({reason}, {len(self.index)} items)"
            await self.save_index()
            return len(self.index)

    async def save_index(self) -> None:
        await self._run(self.index.save, self.settings.index_path)

    async def reindex(self, progress: Callable[[int], None] | None = None) -> int:
        """Re-embed items that lack an embedding for the current backbone, then rebuild the index."""
        while True:
            todo = await self.store.items_to_embed(self.model_key, limit=EMBED_CHUNK)
            if not todo:
                break
            prepared = await asyncio.gather(*(self.prepare(image, keep=False) for _, image in todo))
            vectors = await self._embed_stack(np.stack([p.pixels for p in prepared]))
            await self.store.set_embeddings(self.model_key, [(i, v.tobytes()) for (i, _), v in zip(todo, vectors)])
            if progress:
                progress(len(todo))
        return await self.rebuild_index(reason="reindex")

    # ---- images and embeddings --------------------------------------------------
    def _prepare_sync(self, data: bytes, keep: bool) -> PreparedImage:
        img = open_image(
            data,
            max_bytes=self.settings.max_image_bytes,
            max_pixels=self.settings.max_image_pixels,
            target_size=self.embedder.input_size,
        )
        return PreparedImage(prepare(img, self.embedder.input_size), to_jpeg(img) if keep else None)

    async def prepare(self, data: bytes, *, keep: bool = False) -> PreparedImage:
        """Decode and resize off the loop; raises BadImage with a friendly message."""
        return await self._run(self._prepare_sync, data, keep)

    async def _embed_stack(self, pixels: np.ndarray) -> np.ndarray:
        return await asyncio.wrap_future(self.embedder.submit(pixels))

    async def embed_image(self, data: bytes) -> np.ndarray:
        prepared = await self.prepare(data)
        return await self.embedder.embed_one(prepared.pixels)

    # ---- catalogue writes ------------------------------------------------------
    async def add_items(
        self, items: Sequence[NewItem], pixels: np.ndarray | None, *, vectors: np.ndarray | None = None
    ) -> list[int]:
        """Embed (unless ``vectors`` are given) and store new items in one transaction,
        then index them: a crash between the two leaves items in the database that the
        next start tops up into the index."""
        if vectors is None:
            vectors = await self._embed_stack(pixels)
        rows = [
            NewItem(**{**vars(it), "embedding": v.tobytes(), "embedding_model": self.model_key})
            for it, v in zip(items, vectors)
        ]
        async with self._write_lock:
            ids = await self.store.add_items(rows)
            await self._run(self.index.add, np.asarray(ids), vectors)
        return ids

    # ---- recommend ---------------------------------------------------------------
    def _check_ready(self) -> None:
        if self._index_problem:
            raise IndexOutOfDate(self._index_problem)
        if not len(self.index):
            raise EmptyCatalogue()

    async def recommend(self, image: bytes, user: UserRef | None = None, k: int | None = None) -> Recommendation:
        """The k most similar catalogue items to a photo (BadImage for unusable input)."""
        k = k or self.settings.top_k
        self._check_ready()
        vector = await self.embed_image(image)
        user_id = photo_id = None
        disliked: set[int] = set()
        if user is not None:
            user_id = await self.store.user_id(user.platform, user.user_id)
            photo_id = await self.store.add_photo(user_id, vector, self.model_key)
            disliked = {i for i, v in (await self.store.feedback(user_id)).items() if v < 0}
        results = await self.search(vector, k, exclude=disliked, user_id=user_id)
        if user_id is not None:
            await self.store.add_recommendations(user_id, photo_id, [(s.item.id, s.rank, s.score) for s in results])
        return Recommendation(backbone=self.backbone.name, items=results, request_id=photo_id)

    async def search(
        self, vector: np.ndarray, k: int, *, exclude: set[int] = frozenset(), user_id: int | None = None
    ) -> list[ScoredItem]:
        self._check_ready()
        fetch = k + len(exclude) + (2 * k if user_id is not None else 0)
        ids, scores = await self._run(self.index.search, vector, fetch)
        keep = [(int(i), float(s)) for i, s in zip(ids, scores) if int(i) not in exclude]
        keep = await self._personalise(keep, user_id)
        keep = keep[:k]
        items = await self.store.items([i for i, _ in keep])
        offers = await trend_store.offers_for(self.store, list(items))
        return [
            ScoredItem(item=items[i], rank=rank, score=round(s, 4), offers=offers.get(i, ()))
            for rank, (i, s) in enumerate(((i, s) for i, s in keep if i in items), start=1)
        ]

    async def _personalise(self, ranked: list[tuple[int, float]], user_id: int | None) -> list[tuple[int, float]]:
        """Lean results gently towards the user's representative style (``style_weight``;
        0 turns it off). The profile comes from the cache, so this costs a dot product."""
        alpha = self.settings.style_weight
        if user_id is None or alpha <= 0 or len(ranked) < 2:
            return ranked
        profile = await self._profile(user_id, for_ranking=True)
        if profile is None:
            return ranked
        ids = [i for i, _ in ranked]
        vectors = await self._run(self.index.vectors, ids)
        order = styles.rerank(vectors, np.array([s for _, s in ranked]), profile.representative.centroid, alpha)
        return [ranked[i] for i in order]

    async def _profile(self, user_id: int, *, for_ranking: bool = False) -> styles.StyleProfile | None:
        """The user's style profile from photos plus liked items (cached per history version).

        For ranking, the version moves in steps of ~10% of the history, so a long
        history is not re-clustered on every photo."""
        photos, last_photo = await self.store.photo_embeddings(user_id, self.model_key)
        if len(photos) < self.settings.style_min_photos:
            return None
        likes = sorted(i for i, v in (await self.store.feedback(user_id)).items() if v > 0)
        count = len(photos)
        if for_ranking and count >= 20:
            step = count // 10
            count -= count % step
            photos = photos[:count]
        version = (count, last_photo if not for_ranking else count, tuple(likes))

        def build() -> styles.StyleProfile | None:
            vectors, weights = photos, np.ones(len(photos), dtype=np.float32)
            liked = [i for i in likes if i in self.index]
            if liked:
                vectors = np.vstack([photos, self.index.vectors(liked)])
                weights = np.concatenate([weights, np.full(len(liked), LIKE_WEIGHT, dtype=np.float32)])
            return styles.build_profile(
                vectors, weights=weights, min_photos=self.settings.style_min_photos,
                distance_threshold=self.settings.style_distance_threshold,
            )

        key = (user_id, self.model_key, "rank" if for_ranking else "full")
        return await self._run(self._profiles.get_or_build, key, version, build)

    # ---- items, feedback, forget, about -------------------------------------------
    async def item(self, item_id: int) -> Item:
        found = (await self.store.items([item_id])).get(item_id)
        if found is None:
            raise UnknownItem(item_id)
        return found

    async def item_image(self, item_id: int) -> bytes:
        data = await self.store.item_image(item_id)
        if data is None:
            raise UnknownItem(item_id)
        return data

    async def feedback(self, user: UserRef, item_id: int, value: int) -> None:
        if value not in (1, -1):
            raise ValueError("feedback is +1 or -1")
        await self.item(item_id)
        user_id = await self.store.user_id(user.platform, user.user_id)
        await self.store.set_feedback(user_id, item_id, value)

    async def forget(self, user: UserRef) -> dict[str, int]:
        user_id = await self.store.user_id(user.platform, user.user_id, create=False)
        counts = await self.store.forget_user(user.platform, user.user_id)
        if user_id is not None:
            for purpose in ("rank", "full"):
                self._profiles.invalidate((user_id, self.model_key, purpose))
        return counts

    async def style(self, user: UserRef) -> StyleSummary:
        """The user's styles (representative first) with top items and a collage, or a
        cold start (popular items) while there are too few photos."""
        user_id = await self.store.user_id(user.platform, user.user_id, create=False)
        count = 0
        profile = None
        if user_id is not None:
            photos, _ = await self.store.photo_embeddings(user_id, self.model_key)
            count = len(photos)
            if count >= self.settings.style_min_photos and len(self.index):
                profile = await self._profile(user_id)
        if profile is None:
            return StyleSummary(
                photo_count=count,
                needed=max(0, self.settings.style_min_photos - count),
                popular=await self.popular(),
            )
        disliked = {i for i, v in (await self.store.feedback(user_id)).items() if v < 0}
        shown = _clusters_to_show(profile)
        clusters: list[StyleCluster] = []
        for n, cluster in enumerate(shown):
            items = await self.search(cluster.centroid, self.settings.top_k if n == 0 else 5, exclude=disliked)
            neighbours = [
                {"category": s.item.category, "color": s.item.color, "brand": s.item.brand, "tags": ",".join(s.item.tags)}
                for s in items
            ]
            clusters.append(
                StyleCluster(name=styles.name_cluster(neighbours), share=cluster.share, size=cluster.size, items=items)
            )
        collage = await self._collage(clusters)
        return StyleSummary(photo_count=count, needed=0, clusters=clusters, collage_jpeg=collage)

    async def _collage(self, clusters: list[StyleCluster]) -> bytes:
        rows = []
        for c in clusters:
            images = [await self.store.item_image(s.item.id) or b"" for s in c.items[:5]]
            rows.append((c.name, images))
        return await self._run(
            partial(render_collage, rows, shares=[c.share for c in clusters], title="Your style")
        )

    async def popular(self, k: int = 10) -> list[ScoredItem]:
        ids = await self.store.popular_item_ids(k)
        items = await self.store.items(ids)
        return [ScoredItem(item=items[i], rank=r, score=0.0) for r, i in enumerate(ids, start=1) if i in items]

    def trend(self, tag: str, user: UserRef | None = None) -> AsyncIterator[TrendProgress]:
        """Search the configured shops for ``tag`` and index what they sell, live: progress
        snapshots, the last with ``done=True`` (joins the tag's trend when it is running)."""
        return self._trends.trend(tag, user)

    async def trends(self) -> list[TrendInfo]:
        """Recent trends, each with the number of catalogue items carrying its tag."""
        return await self._trends.trends()

    async def about(self) -> About:
        return About(
            backbone=self.backbone.name,
            backbone_note=self.backbone.note,
            weights_source=self.backbone.weights_source,
            weights_fingerprint=self.backbone.fingerprint,
            dimension=self.backbone.dim,
            catalogue_size=await self.store.count_items(),
            index_size=len(self.index),
            index_state=self.index_state,
            precision=self.embedder.precision,
            head=_describe_head(self.backbone),
            batch_size=self.embedder.batch_size,
        )


def _describe_head(backbone: LoadedBackbone) -> str:
    h = backbone.head
    if h is None:
        return ""
    p10 = h.metrics.get("head", {}).get("precision_at_10")
    quality = f", precision@10 {p10:.3f} on {h.trained_on}" if isinstance(p10, float) else ""
    return f"{h.path} [{h.fingerprint}]: {h.tail_blocks} fine-tuned blocks + projection to {h.dim}-d{quality}"


def _clusters_to_show(profile: styles.StyleProfile) -> list[styles.ClusterProfile]:
    """The representative style, then the others that hold at least two photos and
    5% of the history (one-off photos are noise, not a style), at most four."""
    rep, *rest = profile.clusters
    keep = [c for c in rest if c.size >= 2 and c.share >= 0.05]
    return [rep, *keep][:MAX_STYLES_SHOWN]
