"""`FashionService`: the one API every front-end calls (``engine.api.FashionAPI``,
plus ``AdminAPI`` for the CLI and the demo).

It composes the rooms and owns their lifecycle: the :class:`Encoder` (decode off the
loop, the model on its worker thread), the :class:`Catalogue` (the index cache over the
database, and every catalogue write), the garment finder, the style profiles and the
trend runner. It answers with plain dataclasses (``engine.types``); the event loop
only awaits.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from PIL import Image

from db import trend_store
from db.store import NewGarment, Store
from engine.api import Progress
from engine.catalogue import ingest as pipeline
from engine.catalogue.catalogue import Catalogue
from engine.catalogue.follower import Follower
from engine.config import Settings
from engine.errors import CatalogueFilling, EmptyCatalogue, ServiceError, UnknownItem
from engine.styles import profile as styles
from engine.styles.collage import render_collage
from engine.trends.runner import TrendRunner
from engine.types import (
    About,
    Box,
    Garment,
    IngestReport,
    Item,
    Recommendation,
    ScoredItem,
    StyleCluster,
    StyleSummary,
    TrendInfo,
    TrendProgress,
    UserRef,
)
from engine.vision import crop_adapter, scan_runtime
from engine.vision.backbones import LoadedBackbone
from engine.vision.crop_adapter import CropAdapter
from engine.vision.crop_shelf import TRUST_FINDER_GROUP, ShelfVerdict, shelf_for
from engine.vision.embedder import Embedder
from engine.vision.encoder import Encoder, PreparedImage
from engine.vision.garment_boxes import GARMENT_MARGIN, GarmentScan, crop
from engine.vision.garment_boxes import Box as FinderBox
from engine.vision.garment_vocabulary import group_of_category
from engine.vision.garments import GarmentFinder
from engine.vision.models import load_model

log = logging.getLogger(__name__)

LIKE_WEIGHT = 2.0  # a liked catalogue item counts as much as two of the user's garments
MAX_STYLES_SHOWN = 4
EMBED_CHUNK = 128  # rows per database round: progress moves every second or two, and a crash loses at most this
# A garment the finder names with less confidence is given the crop shelf's group (engine/
# vision/crop_shelf.py) or, for a model without one, also searched on the shelf its crop's
# neighbours vote for (garment_vocabulary.voted_search_groups); a confident one is not: on a
# real photo (the astronaut's sweatshirt, 0.99) the Fashion-MNIST neighbours voted for shoes.
WORKING_SIDE = 640  # photos are decoded at about this size: enough for garment crops, far below camera sizes
REGION_LABEL = "your selection"
SAME_PICTURE = 0.95  # cosine at which a photo is taken for a catalogue picture (re-encodes score ~0.99)

__all__ = ["EMBED_CHUNK", "FashionService", "PreparedImage", "UnknownRequest"]


class UnknownRequest(ServiceError):
    def __init__(self) -> None:
        super().__init__("I no longer have that photo's results (or they were someone else's). Please send it again.")


@dataclass(frozen=True)
class _Query:
    """One search to make for a photo: a garment (number ≥ 1) or the whole picture (0)."""

    number: int
    group: str
    label: str
    box: Box
    confidence: float
    vector: np.ndarray
    filter_group: str | None  # restrict results to this garment group
    shelves: tuple[str, ...] | None = None  # these shelves instead (the crop shelf chose them)


class FashionService:
    def __init__(
        self, settings: Settings, store: Store, encoder: Encoder, catalogue: Catalogue, finder: GarmentFinder | None
    ) -> None:
        self.settings = settings
        self.store = store
        self.encoder = encoder
        self.catalogue = catalogue
        self.finder = finder
        self.backbone: LoadedBackbone = encoder.backbone
        self.model_key = self.backbone.model_key
        self._trends = TrendRunner(settings, store, catalogue, encoder)
        self._profiles = styles.ProfileCache()
        self._closed = False

    # ---- lifecycle ----------------------------------------------------------
    @classmethod
    async def create(
        cls, settings: Settings | None = None, *, backbone: LoadedBackbone | None = None
    ) -> FashionService:
        settings = settings or Settings()
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        store = Store(settings.db_url)
        await store.create()
        # Without a backbone, the embedder loads it on its own thread (one OpenMP team: see
        # Embedder._settle).
        embedder = await asyncio.to_thread(
            partial(
                Embedder,
                backbone if backbone is not None else partial(load_model, settings),
                batch_size=settings.batch_size,
                precision=settings.precision,
                max_wait_ms=settings.micro_batch_wait_ms,
                threads=settings.torch_threads,
                compile=settings.compile,
                batch_rates_file=settings.data_dir / "batch_rates.json",
                runtime=settings.runtime,
                runtime_cache_dir=settings.data_dir / "runtimes",
            )
        )
        # Decoding and index searches: bounded, off the loop.
        pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="fashion-io")
        backbone = embedder.backbone
        encoder = Encoder(settings, embedder, pool)
        finder = None
        if settings.garments:
            finder = await encoder.on_model_thread(partial(GarmentFinder.for_backbone, backbone))
            if embedder.runtime == "openvino":  # the embedder is there: the scan too, if it agrees and is faster
                note = await encoder.on_model_thread(
                    partial(scan_runtime.accelerate, finder, settings.data_dir / "runtimes")
                )
                log.info("garment scan: %s", note)
        catalogue = Catalogue(settings, store, backbone, pool, group_of=group_of_category)
        service = cls(settings, store, encoder, catalogue, finder)
        service.crop_adapter = crop_adapter.for_model(backbone.model_key, backbone.dim)
        service._pool = pool
        await catalogue.open()
        service._follower = Follower.start(catalogue)  # other workers' commits, removals and duplicates
        return service

    _pool: ThreadPoolExecutor | None = None
    _follower: Follower | None = None
    crop_adapter: CropAdapter | None = None  # garment crops moved towards product shots (issue 15)

    async def close(self) -> None:
        """Save the index and release everything; safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._follower is not None:
            await self._follower.stop()
        await self._trends.close()  # stop running trends before the store goes away
        if self.catalogue.problem is None and len(self.catalogue):
            await self.catalogue.save()
        # Both joins wait for threads: off the loop, so other services in the process (and
        # the other users of a shared loop) keep being served while this one closes.
        await asyncio.to_thread(self.encoder.close)
        if self._pool is not None:
            await asyncio.to_thread(self._pool.shutdown, True)
        await self.store.close()

    async def __aenter__(self) -> FashionService:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- the operator's verbs (AdminAPI) ------------------------------------------------
    async def catalogue_size(self) -> int:
        return await self.store.count_items()

    _ingest_status: pipeline.IngestStatus | None = None  # the latest ingest, running or finished

    def _track_ingest(self, kind: str, progress: Progress | None, *, adds: bool = True) -> pipeline.IngestStatus:
        """``adds``: the ingest adds to the live index (not a reindex), so what the index
        will hold is its size now plus what the ingest adds (``About.expected``)."""
        status = pipeline.IngestStatus(kind, forward=progress, base=len(self.catalogue) if adds else None)
        self._ingest_status = status
        return status

    def ingest_status(self) -> pipeline.IngestSnapshot | None:
        """Where the latest ingest or reindex stands (rows done of total, added, bad, rate,
        ETA, state), or None before the first. Cheap: poll it from a page or a bar."""
        return None if self._ingest_status is None else self._ingest_status.snapshot()

    def _check_ready(self) -> None:
        """The catalogue can answer (``Catalogue.check_ready``); an empty one that an ingest
        of ours is filling says "try again in a few seconds" instead of "run an ingest"."""
        try:
            self.catalogue.check_ready()
        except EmptyCatalogue:
            if self._ingest_status is not None and self._ingest_status.state == "running":
                raise CatalogueFilling() from None
            raise

    async def ingest_fashion_mnist(
        self, *, split: str = "train", limit: int | None = None, progress: Progress | None = None
    ) -> IngestReport:
        """Safe to run as a background task while the service answers (``asyncio.create_task``,
        as the demo does): items are recommendable chunk by chunk (the index takes adds beside
        searches), a photo waits behind a few model batches at most (``interleaved_embed``),
        and :meth:`ingest_status` (also in :meth:`about`) shows how far it got."""
        status = self._track_ingest("fashion-mnist", progress)
        return await pipeline.ingest_fashion_mnist(
            self.catalogue,
            self.encoder,
            split=split,
            limit=limit,
            chunk=EMBED_CHUNK,
            progress=status,
            embed=pipeline.interleaved_embed(self.encoder),  # photos get between its model batches
        )

    async def ingest_feed(self, path: Path, *, progress: Progress | None = None) -> IngestReport:
        """Remote pictures go through the scraper's guarded fetcher (robots.txt obeyed)."""
        status = self._track_ingest("feed", progress)
        return await pipeline.ingest_feed(
            self.catalogue,
            self.encoder,
            path,
            fetch_config=pipeline.feed_fetch_config(self.settings),
            progress=status,
            embed=pipeline.interleaved_embed(self.encoder),
        )

    async def reindex(self, progress: Progress | None = None) -> int:
        """Re-embed items that lack an embedding for the current backbone (the progress
        total is set up front), then rebuild the index."""
        status = self._track_ingest("reindex", progress, adds=False)
        await pipeline.reembed(
            self.catalogue,
            self.encoder,
            chunk=EMBED_CHUNK,
            progress=status,
            embed=pipeline.interleaved_embed(self.encoder),
        )
        return await self.catalogue.rebuild(reason="reindex")

    async def rebuild_index(self, reason: str = "requested") -> int:
        return await self.catalogue.rebuild(reason=reason)

    async def follow(self) -> int:
        """Pick up items other workers committed (``Catalogue.follow``)."""
        return await self.catalogue.follow()

    # ---- recommend ---------------------------------------------------------------
    async def recommend(
        self,
        image: bytes,
        user: UserRef | None = None,
        k: int | None = None,
        *,
        whole_photo: bool = False,
        region: Box | None = None,
    ) -> Recommendation:
        """The garments in a photo, each with its k most similar items, best garment first.

        A photo with no clothing gets ``no_garment=True`` and no items (``whole_photo``
        searches it anyway); ``region`` searches a box the user drew. Raises ``BadImage``
        for unusable input. Only vectors and boxes are kept, never the photo."""
        self._check_ready()
        with self.encoder.serving():  # its model calls wait for company only if others are answered
            return await self._recommend(image, user, k or self.settings.top_k, whole_photo, region)

    async def _recommend(
        self, image: bytes, user: UserRef | None, k: int, whole_photo: bool, region: Box | None
    ) -> Recommendation:
        picture = await self.encoder.decode(image, working_size=WORKING_SIDE)
        size = picture.size
        queries, no_garment = await self._queries(picture, whole_photo=whole_photo, region=region)
        whole_query = next(q for q in queries if q.number == 0)
        # Independent steps overlap: the product-shot check (an index search on the pool)
        # with the user's row (a database read); the new photo's row with the user's
        # feedback; each garment's search with the others'. Only what the garments add
        # costs time, not their number (issue 15: garments ≤ 2× the whole-photo path).
        check: asyncio.Future[list[tuple[int, float]]] | None = None
        if region is None and not whole_photo and (queries[0].number != 0 or no_garment):
            check = asyncio.ensure_future(self.catalogue.nearest(whole_query.vector, 1))
        try:
            user_id = await self._user_id(user) if user is not None else None
            if check is not None:
                # A picture that is (nearly) a catalogue picture is a product shot whatever the
                # finder says: answer it as a whole, so an item's own photo finds the item.
                best = await check
                if best and best[0][1] >= SAME_PICTURE:
                    queries = [whole_query, *(q for q in queries if q.number > 0)]
                    no_garment = False
        finally:
            if check is not None and not check.done():
                check.cancel()
        photo_id = None
        disliked: set[int] = set()
        whole = queries[0] if queries[0].number == 0 else None
        if user_id is not None:
            garments = [q for q in queries if q.number > 0]
            photo_id, feedback = await asyncio.gather(
                self.store.add_photo(
                    user_id,
                    whole_query.vector,
                    self.model_key,
                    size=size,
                    whole=not garments and not no_garment,
                    garments=[_new_garment(q) for q in garments],
                ),
                self.store.feedback(user_id),
            )
            disliked = {i for i, v in feedback.items() if v < 0}
        shown = [q for q in queries if q.number > 0]
        current = 0 if whole is not None else (shown[0].number if shown else None)
        # Every garment's items (the front-ends list them all), and the whole photo's only when
        # it is the answer: a later whole-photo switch searches its kept vector then.
        searched = [*shown, whole] if whole is not None and not no_garment else shown
        profile = await self._ranking_profile(user_id)
        ranked = await asyncio.gather(
            *(
                self._rank(
                    q.vector,
                    k,
                    exclude=disliked,
                    profile=profile,
                    group=q.filter_group,
                    vote=q.confidence < TRUST_FINDER_GROUP,
                    shelves=q.shelves,
                )
                for q in searched
            )
        )
        results = dict(zip((q.number for q in searched), await self._hydrate(ranked)))
        items = [] if no_garment or current is None else results[current]
        if user_id is not None and items:
            await self.store.add_recommendations(user_id, photo_id, [(s.item.id, s.rank, s.score) for s in items])
        return Recommendation(
            backbone=self.backbone.name,
            items=items,
            request_id=photo_id,
            garments=[_garment(q, results.get(q.number, [])) for q in shown],
            garment=current or None,
            no_garment=no_garment,
            photo_size=size,
        )

    async def _queries(
        self, picture: Image.Image, *, whole_photo: bool, region: Box | None
    ) -> tuple[list[_Query], bool]:
        """What to search for a photo: the whole picture (number 0, always first, so its
        vector can be kept for a later whole-photo switch) and one query per garment."""
        everything = Box(0.0, 0.0, 1.0, 1.0)
        found: list[tuple[str, str, Box, float]] = []
        verdicts: list[ShelfVerdict | None] = []
        product_shot = False
        if region is not None:
            found = [("other", REGION_LABEL, region, 1.0)]
            crops = await self.encoder.run(lambda: [crop(picture, _finder_box(region))])
            vectors, _ = await self._moved(await self.encoder.embed_pictures([picture, *crops]))
        elif self.finder is not None and not whole_photo:  # the whole photo, as asked: no scan
            # The whole photo's vector is needed whatever the scan finds: it is embedded while
            # the scan runs (its letterbox on the pool beside the scan's input, its forward
            # pass on the model's thread beside the scan's pool steps), the crops after.
            whole = asyncio.ensure_future(self.encoder.embed_pictures([picture]))
            try:
                scan = await self._scan(self.finder, picture)
                product_shot = scan.product_shot
                found = [
                    (g.group, g.label, Box(g.box.x0, g.box.y0, g.box.x1, g.box.y1), float(g.confidence))
                    for g in scan.garments
                ]
                if found:
                    crops = await self.encoder.run(
                        lambda: [crop(picture, _finder_box(b), GARMENT_MARGIN) for _, _, b, _ in found]
                    )
                    cut = await self.encoder.embed_pictures(crops)
                    vectors = np.concatenate([await whole, cut])
                    if not product_shot:  # a product shot is searched as the whole picture (below)
                        vectors, verdicts = await self._moved(vectors)
                else:
                    vectors = await whole
            finally:
                if not whole.done():
                    whole.cancel()
        else:
            vectors = await self.encoder.embed_pictures([picture])
        queries = [_Query(0, "other", "whole photo", everything, 1.0, vectors[0], None)]
        for n, ((group, label, box, conf), vector) in enumerate(zip(found, vectors[1:]), start=1):
            # A product shot is searched as it is: the whole picture is the garment, and the
            # catalogue's own pictures are product shots too.
            query_vector = vectors[0] if product_shot else vector
            choice = shelf_for(group, label, conf, verdicts[n - 1] if verdicts else None)
            group, shelves = choice.group, self._stocked(choice.shelves)
            use_group = group if group != "other" and not product_shot and self.catalogue.has_group(group) else None
            queries.append(_Query(n, group, choice.word or label, box, conf, query_vector, use_group, shelves))
        no_garment = self.finder is not None and region is None and not found and not whole_photo
        if whole_photo or region is None and self.finder is None:
            return queries, False  # whole-photo first (number 0 is current)
        return ([q for q in queries if q.number > 0] + [queries[0]]), no_garment

    @property
    def _has_shelf(self) -> bool:
        return self.crop_adapter is not None and self.crop_adapter.shelf is not None

    def _stocked(self, shelves: tuple[str, ...] | None) -> tuple[str, ...] | None:
        """``shelves`` the catalogue has items on (None when it has none of them)."""
        kept = tuple(g for g in shelves or () if self.catalogue.has_group(g))
        return kept or None

    async def _moved(self, vectors: np.ndarray) -> tuple[np.ndarray, list[ShelfVerdict | None]]:
        """``vectors`` with every row after the first (the whole photo's) moved by the crop
        adapter (engine/vision/crop_adapter.py) towards where their product shots lie, and
        the crop shelf's verdict on each moved row (engine/vision/crop_shelf.py; None
        without one)."""
        adapter = self.crop_adapter
        if adapter is None or len(vectors) < 2:
            return vectors, [None] * (len(vectors) - 1)

        def move() -> tuple[np.ndarray, list[ShelfVerdict | None]]:
            moved = adapter.apply(vectors[1:])
            verdicts = adapter.shelf.verdicts(moved) if adapter.shelf is not None else [None] * len(moved)
            return moved, list(verdicts)

        moved, verdicts = await self.encoder.run(move)
        return np.concatenate([vectors[:1], moved]), verdicts

    async def _scan(self, finder: GarmentFinder, picture: Image.Image) -> GarmentScan:
        """The finder's scan in steps, so that only its forward passes wait for the model's
        thread: the product check and the input on the pool, the maps on the model's thread
        (batched with other photos of the same shape that arrive together), the verdict on
        the pool again; then the same for the close look at each garment."""
        check, x = await self.encoder.run(finder.scan_input, picture)
        maps = await self.encoder.on_model_thread_grouped(("scan", tuple(x.shape)), x, finder.maps_batch)
        scan = await self.encoder.run(finder.decide, check, maps)
        # The close look at each garment (finder.refine): all of a photo's squares in one call
        # on the model's thread (one future, not one per garment), batched with other photos'.
        if not self.settings.garment_close_look:
            return scan
        regions = await self.encoder.run(finder.refine_inputs, picture, scan)
        if not regions:
            return scan
        squares = [t for _, t in regions]
        looks = await self.encoder.on_model_thread_grouped(
            ("refine", tuple(squares[0].shape)), squares, finder.maps_of_regions
        )
        return await self.encoder.run(finder.refined, scan, picture.size, regions, looks)

    async def _user_id(self, user: UserRef) -> int:
        """The user's row id, created on first sight."""
        found = await self.store.user_id(user.platform, user.user_id)
        assert found is not None  # create=True always yields one
        return found

    async def switch(
        self, user: UserRef | None, request_id: int, garment: int | None, k: int | None = None
    ) -> Recommendation:
        """Another garment of an earlier photo (``None``: the whole photo), from the kept
        vectors; only the user who sent the photo may ask."""
        k = k or self.settings.top_k
        self._check_ready()
        user_id = None
        if user is not None:
            user_id = await self.store.user_id(user.platform, user.user_id, create=False)
            if user_id is None:
                raise UnknownRequest()
        photo = await self.store.photo(request_id, user_id) if user_id is not None else None
        if photo is None or photo.model != self.model_key:
            raise UnknownRequest()
        disliked = {i for i, v in (await self.store.feedback(user_id)).items() if v < 0} if user_id else set()
        garments = [_stored_garment(g) for g in photo.garments]
        if garment is None:
            vector, group, shelves = photo.vector, None, None
        else:
            chosen = next((g for g in photo.garments if g.number == garment), None)
            if chosen is None:
                raise UnknownRequest()
            vector = chosen.vector
            group = chosen.group if chosen.group != "other" and self.catalogue.has_group(chosen.group) else None
            # With the crop shelf a garment was searched on the one shelf it is shown as
            # (crop_shelf.shelf_for), and that group is what was kept: the same search.
            shelves = self._stocked((group,)) if group is not None and self._has_shelf else None
        items = await self.search(vector, k, exclude=disliked, user_id=user_id, group=group, shelves=shelves)
        if user_id is not None and items:
            await self.store.add_recommendations(user_id, photo.id, [(s.item.id, s.rank, s.score) for s in items])
        garments = [Garment(**{**vars(g), "items": items}) if g.number == garment else g for g in garments]
        return Recommendation(
            backbone=self.backbone.name,
            items=items,
            request_id=photo.id,
            garments=garments,
            garment=garment,
            photo_size=photo.size,
        )

    async def search(
        self,
        vector: np.ndarray,
        k: int,
        *,
        exclude: set[int] | frozenset[int] = frozenset(),
        user_id: int | None = None,
        group: str | None = None,
        shelves: tuple[str, ...] | None = None,
    ) -> list[ScoredItem]:
        """The k nearest catalogue items (of ``group``'s shelves when given, or of
        ``shelves``), leaning towards the user's style, with other shops' offers."""
        self._check_ready()
        profile = await self._ranking_profile(user_id)
        ranked = await self._rank(vector, k, exclude=exclude, profile=profile, group=group, shelves=shelves)
        return (await self._hydrate([ranked]))[0]

    async def _rank(
        self,
        vector: np.ndarray,
        k: int,
        *,
        exclude: set[int] | frozenset[int],
        profile: styles.StyleProfile | None,
        group: str | None,
        vote: bool = False,
        shelves: tuple[str, ...] | None = None,
    ) -> list[tuple[int, float]]:
        """(item id, cosine) of the k items to show for ``vector``: the index's nearest
        (of ``group``), without ``exclude``, re-ranked towards ``profile``. No database
        read: a photo's garments are ranked one by one and hydrated together."""
        fetch = k + len(exclude) + (2 * k if profile is not None else 0)
        if group is not None:
            fetch = max(fetch, 8 * k)
        pairs = await self.catalogue.nearest(
            vector, fetch, group=group, need=k + len(exclude), vote=vote and shelves is None, shelves=shelves
        )
        keep = [(i, s) for i, s in pairs if i not in exclude]
        if profile is not None and len(keep) >= 2:
            vectors = await self.catalogue.vectors([i for i, _ in keep])
            alpha = self.settings.style_weight
            order = styles.rerank(vectors, np.array([s for _, s in keep]), profile.representative.centroid, alpha)
            keep = [keep[i] for i in order]
        return keep[:k]

    async def _hydrate(self, rankings: list[list[tuple[int, float]]]) -> list[list[ScoredItem]]:
        """The items and their offers for several rankings in two database reads (a photo
        with three garments is three rankings: one read each cost ~2× the search)."""
        ids = sorted({i for ranked in rankings for i, _ in ranked})
        items = await self.store.items(ids) if ids else {}
        offers = await trend_store.offers_for(self.store, list(items)) if items else {}
        return [
            [
                ScoredItem(item=items[i], rank=rank, score=round(s, 4), offers=offers.get(i, ()))
                for rank, (i, s) in enumerate(((i, s) for i, s in ranked if i in items), start=1)
            ]
            for ranked in rankings
        ]

    async def _ranking_profile(self, user_id: int | None) -> styles.StyleProfile | None:
        """The profile results lean towards (``style_weight``; 0 turns it off), or None."""
        if user_id is None or self.settings.style_weight <= 0:
            return None
        return await self._profile(user_id, for_ranking=True)

    async def _profile(self, user_id: int, *, for_ranking: bool = False) -> styles.StyleProfile | None:
        """The user's style profile from their garments plus liked items (cached per
        history version).

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
        liked = [i for i in likes if i in self.catalogue]
        liked_vectors = await self.catalogue.vectors(liked) if liked else None

        def build() -> styles.StyleProfile | None:
            vectors, weights = photos, np.ones(len(photos), dtype=np.float32)
            if liked_vectors is not None:
                vectors = np.vstack([photos, liked_vectors])
                weights = np.concatenate([weights, np.full(len(liked), LIKE_WEIGHT, dtype=np.float32)])
            return styles.build_profile(
                vectors,
                weights=weights,
                min_photos=self.settings.style_min_photos,
                distance_threshold=self.settings.style_distance_threshold,
            )

        key = (user_id, self.model_key, "rank" if for_ranking else "full")
        return await self.encoder.run(self._profiles.get_or_build, key, version, build)

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
        await self.store.set_feedback(await self._user_id(user), item_id, value)

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
            if count >= self.settings.style_min_photos and len(self.catalogue):
                profile = await self._profile(user_id)
        if profile is None or user_id is None:
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
                {
                    "category": s.item.category,
                    "color": s.item.color,
                    "brand": s.item.brand,
                    "tags": ",".join(s.item.tags),
                }
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
        return await self.encoder.run(
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

    async def claim_role(self, name: str) -> bool:
        """Take a role only one process among all workers on this database may play (e.g.
        ``"telegram-polling"``: Telegram hands each update to one ``getUpdates`` caller, so
        two pollers would fight over them). True when this process holds it; it is held until
        :meth:`close`, and freed by the database or the OS when the process dies."""
        return await self.store.try_singleton(name)

    async def about(self) -> About:
        return About(
            backbone=self.backbone.name,
            backbone_note=self.backbone.note,
            weights_source=self.backbone.weights_source,
            weights_fingerprint=self.backbone.fingerprint,
            dimension=self.backbone.dim,
            catalogue_size=await self.store.count_items(),
            index_size=len(self.catalogue),
            index_state=self.catalogue.state,
            precision=self.encoder.embedder.precision,
            head=_describe_head(self.backbone),
            batch_size=self.encoder.embedder.batch_size,
            ingest=self.ingest_status(),
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


def _new_garment(q: _Query) -> NewGarment:
    return NewGarment(
        number=q.number,
        group=q.group,
        label=q.label,
        box=(q.box.x0, q.box.y0, q.box.x1, q.box.y1),
        confidence=q.confidence,
        vector=q.vector,
    )


def _garment(q: _Query, items: list[ScoredItem]) -> Garment:
    return Garment(
        number=q.number, group=q.group, label=q.label, box=q.box, confidence=round(q.confidence, 3), items=items
    )


def _stored_garment(g: NewGarment) -> Garment:
    return Garment(number=g.number, group=g.group, label=g.label, box=Box(*g.box), confidence=g.confidence)


def _finder_box(box: Box) -> FinderBox:
    return FinderBox(box.x0, box.y0, box.x1, box.y1)
