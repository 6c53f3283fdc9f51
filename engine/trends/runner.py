"""``/trend <tag>``: search the configured shops and grow the catalogue while the crawl runs.

:class:`TrendRunner` is what ``FashionService.trend`` / ``.trends`` delegate to:

- one trend per tag at a time; a second request for a running tag *joins* it (same
  snapshots, no second crawl); a user runs at most one trend at once; at most
  ``settings.trend_max_running`` trends run in the process;
- the crawl (``scraper.crawl_trend``, one shared :class:`scraper.Fetcher`) runs in a
  background task that belongs to the runner, not to whoever asked: a reader that stops
  listening does not stop the trend (``FashionService.close`` does);
- products arrive in small batches (whatever the crawl produced while the previous batch
  was being embedded, at most :data:`MAX_BATCH`): each picture goes through
  ``Encoder.prepare`` (``engine.vision.images`` again) and is embedded, then, under one lock for
  all trends, matched against the catalogue and the batch, and the new items go through
  ``Catalogue.add_items`` (database commit first, then the live index), so they are
  recommendable at once and a crash leaves nothing half-written;
- a product already in the catalogue (same shop listing, or a near-identical picture at
  another shop) is kept once: the tag is added to the existing item and another shop's
  listing becomes an :class:`db.models.OfferRow` (price comparison).

When are two pictures the same product (:func:`same_picture`)? The same stored picture
(SHA-256 of the JPEG ``prepare`` keeps, which is a deterministic function of the downloaded
bytes: the scraper's ``image_sha256`` criterion, but persistent), or, across shops only,
embedding cosine >= :data:`NEAR_COSINE` *and* difference-hash distance <= :data:`NEAR_DHASH_BITS`.
Either perceptual test alone merges different products: dHash works on greyscale, so colour
variants of one garment hash alike (0-4 of 64 bits apart on tinted Fashion-MNIST) and
352 of 44,850 pairs of *different* Fashion-MNIST test images are <= 4 bits apart, while a
JPEG re-encode at another size and quality keeps cosine ~0.988; colour variants stay <= 0.93.
Within one shop, two product pages with merely similar pictures are two products (the shop
says so); the same picture twice at one shop is one product.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from db import trend_store
from db.store import NewItem
from db.trend_store import ListingKey, NewOffer, PriceRefresh
from engine.types import ScoredItem, TrendInfo, TrendProgress, UserRef
from engine.vision.images import BadImage, open_image, picture_check
from scraper import (
    CrawlFinished,
    FetchConfig,
    Fetcher,
    ProductFound,
    ProductSkipped,
    ScrapedProduct,
    ShopConfigError,
    ShopFailed,
    ShopSearched,
    crawl_trend,
    load_shops,
)
from scraper.crawl import difference_hash, normalise_tag

if TYPE_CHECKING:
    from db.store import Store
    from engine.catalogue.catalogue import Catalogue
    from engine.config import Settings
    from engine.vision.encoder import Encoder, PreparedImage
    from scraper import Shop

log = logging.getLogger(__name__)

NEAR_COSINE = 0.98  # embedding cosine for "near-identical picture" (with the dHash test)
NEAR_DHASH_BITS = 6  # of 64
NEIGHBOURS = 8  # index neighbours checked per new product
MAX_BATCH = 16  # products embedded and committed together
BEST = 10  # items in the final snapshot's ``best``
_FINGERPRINT_CACHE = 8192
LEASE_POLL_SECONDS = 0.5  # how often a worker waiting on another's trend reads its progress
_END = object()  # the crawl's event stream ended

NO_SHOPS = (
    "No shops are configured, so there is nowhere to look for trends. Set FASHIONBOT_SHOPS_FILE to a "
    "TOML file listing the shops to search (see shops.example.toml and docs/scraping.md)."
)
USER_BUSY = "You already have a trend running (“{tag}”). Please wait until it has finished before starting another."
TOO_MANY = "I'm already running as many trends as I can at once ({n}). Please try again in a few minutes."
SHUTTING_DOWN = "I'm shutting down, so I can't search shops right now. Please try again in a moment."
STOPPED = "The trend was stopped because I'm shutting down; the items found so far are kept. Run it again to finish it."
FAILED = (
    "Something went wrong on my side while searching shops; the items found so far are kept. Please try again later."
)

# Fashion-MNIST's classes (the demo catalogue's categories) and words that name them in product titles.
_CATEGORY_WORDS: dict[str, tuple[str, ...]] = {
    "T-shirt/top": ("t-shirt", "tshirt", "tee", "top", "tank top"),
    "Trouser": ("trouser", "pants", "jeans", "chinos", "leggings"),
    "Pullover": ("pullover", "sweater", "jumper", "hoodie", "cardigan", "sweatshirt"),
    "Dress": ("dress", "gown"),
    "Coat": ("coat", "jacket", "parka", "blazer", "anorak"),
    "Sandal": ("sandal", "flip-flop", "slide"),
    "Shirt": ("shirt", "blouse"),
    "Sneaker": ("sneaker", "trainer"),
    "Bag": ("bag", "handbag", "backpack", "tote", "purse"),
    "Ankle boot": ("ankle boot", "boot", "bootie"),
}
_CATEGORY_PATTERNS = [
    (category, re.compile(rf"(?<![\w-]){re.escape(word)}(?:e?s)?(?![\w-])", re.I))
    for category, words in _CATEGORY_WORDS.items()
    for word in words
]


def trend_tag(tag: str) -> str:
    """The tag as stored (``"  Summer DRESS "`` -> ``"summer dress"``); commas separate tags in
    ``items.tags``, so they become spaces. Raises ``ValueError`` for an empty tag."""
    return normalise_tag(normalise_tag(tag).replace(",", " "))


def shop_source(shop: str) -> str:
    """``items.source`` of a shop's products: ``shop:<name>``, within the column's 64 characters."""
    source = f"shop:{shop}"
    if len(source) <= 64:
        return source
    return f"shop:{shop[:46]}~{hashlib.sha256(shop.encode()).hexdigest()[:12]}"


def guess_category(title: str) -> str | None:
    """The catalogue category a product title names; the last one named wins
    ("shirt dress" is a dress). None when the title names none."""
    best: tuple[int, str] | None = None
    for category, pattern in _CATEGORY_PATTERNS:
        for match in pattern.finditer(title):
            if best is None or match.start() > best[0]:
                best = (match.start(), category)
    return best[1] if best else None


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def same_picture(sha_a: str, dhash_a: int, sha_b: str, dhash_b: int, cosine: float, *, same_shop: bool) -> bool:
    """Whether two listings show the same product (see the module docstring)."""
    if sha_a == sha_b:
        return True
    return not same_shop and cosine >= NEAR_COSINE and hamming(dhash_a, dhash_b) <= NEAR_DHASH_BITS


def fingerprint(jpeg: bytes) -> tuple[str, int]:
    """(SHA-256, dHash) of a stored picture. Blocking: decodes through ``engine.vision.images``."""
    return hashlib.sha256(jpeg).hexdigest(), difference_hash(open_image(jpeg))


class _Refused(Exception):
    """A trend that cannot start; the message is for the user."""


# ---- one running trend -----------------------------------------------------------------
@dataclass
class _Run:
    tag: str
    user: UserRef | None
    shops_total: int
    shops_searched: int = 0
    found: int = 0
    indexed: int = 0
    skipped: int = 0
    trend_id: int | None = None
    failures: list[str] = field(default_factory=list)
    new_ids: list[int] = field(default_factory=list)
    new_vectors: list[np.ndarray] = field(default_factory=list)
    touched_ids: set[int] = field(default_factory=set)  # known items this run found again
    task: asyncio.Task[None] | None = None
    latest: TrendProgress | None = None
    version: int = 0
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    def snapshot(
        self, *, done: bool = False, error: str | None = None, best: list[ScoredItem] | None = None
    ) -> TrendProgress:
        return TrendProgress(
            tag=self.tag,
            shops_searched=self.shops_searched,
            shops_total=self.shops_total,
            found=self.found,
            indexed=self.indexed,
            skipped=self.skipped,
            done=done,
            error=error,
            best=best or [],
        )

    def publish(self, snap: TrendProgress | None = None) -> None:
        snap = snap or self.snapshot()
        if self.latest is not None and (self.latest.done or (snap == self.latest)):
            return  # nothing new; and nothing ever follows the final snapshot
        self.latest = snap
        self.version += 1
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def follow(self) -> AsyncIterator[TrendProgress]:
        """Snapshots from the current one on, ending with ``done``. A reader slower than the
        trend skips to the newest snapshot instead of falling behind (a chat message edited in
        place only needs the latest)."""
        seen = self.version - 1
        while True:
            if self.version > seen and self.latest is not None:
                seen = self.version
                snap = self.latest
                yield snap
                if snap.done:
                    return
            else:
                await self._changed.wait()


@dataclass
class _Candidate:
    """A catalogue item (or an earlier product of the same batch) a product may duplicate."""

    shop: str
    sha: str
    dhash: int
    cosine: float
    item_id: int | None = None  # stored item
    pending: int | None = None  # position in the batch's new items


@dataclass
class _Fresh:
    position: int  # in the batch
    product: ScrapedProduct
    key: ListingKey
    prepared: PreparedImage
    vector: np.ndarray
    sha: str
    dhash: int


class TrendRunner:
    """Runs trends over one catalogue (see the module docstring). It is handed the parts it
    uses (the store, the catalogue, the encoder) rather than the service, so data flows one
    way: service → trends → catalogue / scraper."""

    def __init__(self, settings: Settings, store: Store, catalogue: Catalogue, encoder: Encoder) -> None:
        self.settings = settings
        self.store = store
        self.catalogue = catalogue
        self.encoder = encoder
        self._runs: dict[str, _Run] = {}
        self._lock = asyncio.Lock()  # matching + inserting, across all trends
        self._fetcher: Fetcher | None = None
        self._fetcher_lock = asyncio.Lock()
        self._fingerprints: OrderedDict[int, tuple[str, int]] = OrderedDict()
        self._closed = False
        self._holder = trend_store.lease_holder()  # this process, as a holder of trend leases

    # ---- public ------------------------------------------------------------------
    async def trend(self, tag: str, user: UserRef | None = None) -> AsyncIterator[TrendProgress]:
        """Progress snapshots of the trend for ``tag`` (started, or joined when running);
        the last one has ``done=True`` (and ``error`` when it could not run or failed)."""
        try:
            tag = trend_tag(tag)
        except ValueError as err:
            yield TrendProgress(tag=" ".join(str(tag).split()), done=True, error=str(err))
            return
        run = self._runs.get(tag)
        if run is None:
            try:
                run = self._start(tag, user)  # no await between the lookup and registering the run
            except _Refused as err:
                yield TrendProgress(tag=tag, done=True, error=str(err))
                return
        async for snap in run.follow():
            yield snap

    async def trends(self, limit: int = 10) -> list[TrendInfo]:
        """Recently run tags (running ones included) with how many catalogue items carry each."""
        return await trend_store.recent_trends(self.store, limit)

    def running(self) -> list[str]:
        return sorted(self._runs)

    async def close(self) -> None:
        """Stop running trends (their final snapshot says so) and close the shared fetcher."""
        self._closed = True
        tasks = [run.task for run in self._runs.values() if run.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._fetcher is not None:
            await self._fetcher.close()
            self._fetcher = None

    # ---- starting ----------------------------------------------------------------------
    def _start(self, tag: str, user: UserRef | None) -> _Run:
        if self._closed:
            raise _Refused(SHUTTING_DOWN)
        if user is not None:
            mine = next((r.tag for r in self._runs.values() if r.user == user), None)
            if mine is not None:
                raise _Refused(USER_BUSY.format(tag=mine))
        limit = self.settings.trend_max_running
        if len(self._runs) >= limit:
            raise _Refused(TOO_MANY.format(n=len(self._runs)))
        problem = self.catalogue.problem
        if problem:
            raise _Refused(problem)
        shops = self._shops()
        run = _Run(tag=tag, user=user, shops_total=len(shops))
        run.publish()
        self._runs[tag] = run
        run.task = asyncio.create_task(self._drive(run, shops), name=f"trend:{tag}")
        return run

    def _shops(self) -> list[Shop]:
        path = self.settings.shops_file
        if path is None:
            raise _Refused(NO_SHOPS)
        try:
            shops = [s for s in load_shops(path) if s.enabled]
        except ShopConfigError as err:
            raise _Refused(f"The shop list can't be used: {err}") from None
        if not shops:
            raise _Refused(f"{path} lists no enabled shops. " + NO_SHOPS.split(". ", 1)[1])
        return shops

    async def _get_fetcher(self) -> Fetcher:
        """The fetcher all trends share (one session, one robots.txt cache, one politeness
        gate per host), rebuilt when the scraper settings changed and no other trend uses it."""
        settings = self.settings
        config = FetchConfig.from_settings(
            settings, min_delay=settings.scraper_min_delay, timeout=settings.scraper_timeout
        )
        async with self._fetcher_lock:
            if self._fetcher is not None and self._fetcher.config != config and len(self._runs) <= 1:
                await self._fetcher.close()
                self._fetcher = None
            if self._fetcher is None:
                fetcher = Fetcher(config)
                await fetcher.open()
                self._fetcher = fetcher
            return self._fetcher

    # ---- the trend task --------------------------------------------------------------
    async def _drive(self, run: _Run, shops: list[Shop]) -> None:
        settings = self.settings
        status: str = "failed"
        error: str | None = FAILED
        queue: asyncio.Queue[Any] = asyncio.Queue()
        pump: asyncio.Task[None] | None = None
        renewing: asyncio.Task[None] | None = None
        try:
            if not await self._await_lease(run):
                # Another worker ran this tag to its end while we showed its progress.
                status, error = "done", None
                run.touched_ids.update(await trend_store.items_with_tag(self.store, run.tag))
                await self.catalogue.follow()  # its items, in this worker's index too
                return
            # Taken over from a worker that died: the progress shown from its row is not this
            # run's (it would add up to more than the shops have), so this run counts from zero.
            run.shops_searched = run.found = run.indexed = run.skipped = 0
            renewing = asyncio.create_task(self._renew_lease(run), name=f"trend-lease:{run.tag}")
            user_id = None
            if run.user is not None:
                user_id = await self.store.user_id(run.user.platform, run.user.user_id)
            run.trend_id = await trend_store.start_trend(self.store, run.tag, user_id)
            fetcher = await self._get_fetcher()
            stream = crawl_trend(
                run.tag,
                shops,
                fetcher,
                check_picture=picture_check(
                    max_bytes=fetcher.config.max_image_bytes, max_pixels=settings.max_image_pixels, side=512
                ),
                max_pages=settings.scraper_max_pages,
                max_products=settings.scraper_max_products,
            )
            pump = asyncio.create_task(_pump(stream, queue), name=f"trend-crawl:{run.tag}")
            finished = False
            while not finished:
                events = [await queue.get()]
                while not queue.empty() and sum(isinstance(e, ProductFound) for e in events) < MAX_BATCH:
                    events.append(queue.get_nowait())
                batch: list[ScrapedProduct] = []
                for event in events:
                    if isinstance(event, ShopSearched):
                        run.shops_searched += 1
                    elif isinstance(event, ShopFailed):
                        run.shops_searched += 1
                        run.failures.append(f"{event.shop} ({event.reason})")
                    elif isinstance(event, ProductSkipped):
                        run.skipped += 1
                    elif isinstance(event, ProductFound):
                        run.found += 1
                        batch.append(event.product)
                    elif isinstance(event, CrawlFinished) or event is _END:
                        finished = True
                    elif isinstance(event, BaseException):
                        raise event
                run.publish()
                if batch:
                    await self._ingest(run, batch)
                    run.publish()
                    await self._record(run)
            status = "done"
            error = f"Couldn't search {', '.join(run.failures)}." if run.failures else None
        except asyncio.CancelledError:
            status, error = "cancelled", STOPPED
            raise
        except Exception:
            log.exception("trend %r failed", run.tag)
        finally:
            best: list[ScoredItem] = []
            try:
                if pump is not None:
                    pump.cancel()
                    await asyncio.gather(pump, return_exceptions=True)
                await self._record(run, status)
                if renewing is not None:
                    renewing.cancel()
                    await asyncio.gather(renewing, return_exceptions=True)
                    await trend_store.release_lease(self.store, run.tag, self._holder)
                if run.indexed:
                    await self.catalogue.save()
                if status == "done":
                    best = await self._best(run)
            except Exception:
                log.exception("finishing trend %r", run.tag)
            finally:
                if self._runs.get(run.tag) is run:
                    del self._runs[run.tag]
                run.publish(run.snapshot(done=True, error=error, best=best))

    async def _record(self, run: _Run, status: str | None = None) -> None:
        if run.trend_id is not None:
            await trend_store.record_trend(
                self.store,
                run.trend_id,
                found=run.found,
                indexed=run.indexed,
                skipped=run.skipped,
                status=status,
                shops_searched=run.shops_searched,
                shops_total=run.shops_total,
            )

    # ---- one run per tag across workers (the lease) ----------------------------------------
    async def _await_lease(self, run: _Run) -> bool:
        """Take the tag's lease (True: this worker runs the trend). While another worker
        holds it, show that run's progress from its trend row; False once it has finished
        ("done"). A holder that stops renewing (killed) loses the lease at expiry, and one
        on this host whose process is gone loses it at once: then this worker takes over."""
        store, tag = self.store, run.tag
        baseline: int | None = None  # the newest finished row when we started waiting: not ours to show
        first = True

        def ended(row: Any) -> bool:  # the run we waited on has finished
            return row is not None and row.id != baseline and row.status == "done"

        while True:
            row = await trend_store.latest_trend(store, tag)
            if first:
                baseline = row.id if row is not None and row.status != "running" else None
                first = False
            elif ended(row):
                self._show(run, row)
                return False
            if row is not None and row.id != baseline and row.status == "running":
                self._show(run, row)
            current = await trend_store.lease(store, tag)
            dead = current.holder if current is not None and trend_store.holder_is_dead(current.holder) else None
            if await trend_store.acquire_lease(store, tag, self._holder, steal_from=dead):
                # The holder records "done" before it lets go: a run that finished between
                # the row read above and this acquire is shown, not crawled a second time.
                row = await trend_store.latest_trend(store, tag)
                if ended(row):
                    await trend_store.release_lease(store, tag, self._holder)
                    self._show(run, row)
                    return False
                return True
            await asyncio.sleep(LEASE_POLL_SECONDS)

    @staticmethod
    def _show(run: _Run, row: Any) -> None:
        """Another worker's progress (its trend row) as this run's snapshot."""
        run.found, run.indexed, run.skipped = row.found, row.indexed, row.skipped
        run.shops_searched = row.shops_searched
        run.shops_total = row.shops_total or run.shops_total
        run.publish()

    async def _renew_lease(self, run: _Run) -> None:
        while True:
            await asyncio.sleep(trend_store.LEASE_SECONDS / 3)
            try:
                if not await trend_store.renew_lease(self.store, run.tag, self._holder):
                    log.warning("trend %r: lost its lease to another worker (this one stalled)", run.tag)
                    return
            except Exception:
                log.warning("trend %r: renewing the lease failed", run.tag, exc_info=True)

    # ---- one batch -----------------------------------------------------------------------
    async def _ingest(self, run: _Run, products: list[ScrapedProduct]) -> None:
        store = self.store
        keys = [ListingKey(shop_source(p.shop), p.info.external_id, p.shop, p.info.url) for p in products]
        # Listings we already have need no picture work (a re-run only adds the tag).
        known = await trend_store.find_listings(store, keys)
        todo = [i for i in range(len(products)) if i not in known]
        prepared = await asyncio.gather(*(self._prepare(products[i]) for i in todo))
        usable = [(i, p) for i, p in zip(todo, prepared) if p is not None]
        run.skipped += len(todo) - len(usable)
        fresh: list[_Fresh] = []
        if usable:
            pixels = np.stack([p.pixels for _, p in usable])
            vectors = await self.encoder.embed(pixels)
            prints = await asyncio.to_thread(lambda: [fingerprint(p.jpeg or b"") for _, p in usable])
            fresh = [
                _Fresh(i, products[i], keys[i], p, v, sha, dh) for (i, p), v, (sha, dh) in zip(usable, vectors, prints)
            ]
        async with self._lock:
            await self._commit(run, products, keys, fresh)

    async def _prepare(self, product: ScrapedProduct) -> PreparedImage | None:
        try:
            return await self.encoder.prepare(product.image_jpeg, keep=True)
        except BadImage as err:
            log.info("trend picture of %s refused: %s", product.info.url, err)
            return None

    async def _commit(
        self, run: _Run, products: list[ScrapedProduct], keys: list[ListingKey], fresh: list[_Fresh]
    ) -> None:
        """Under the lock: match, insert what is new, then tags/offers/prices in one transaction."""
        store, tag = self.store, run.tag
        known = await trend_store.find_listings(store, keys)  # again: another trend may have added some meanwhile
        tagged: set[int] = set()
        offers: list[NewOffer] = []
        prices: list[PriceRefresh] = []
        for position, listing in known.items():
            info = products[position].info
            price, currency = _price(products[position])
            tagged.add(listing.item_id)
            if listing.as_offer:
                offers.append(NewOffer(listing.item_id, info.shop, price, currency, info.url))
            else:
                prices.append(PriceRefresh(listing.item_id, info.url, price, currency))
        fresh = [f for f in fresh if f.position not in known]

        neighbours = await self._neighbours([f.vector for f in fresh])
        pictures = await trend_store.shop_pictures(store, {i for found in neighbours for i, _ in found})
        await self._fingerprint(pictures)

        new: list[_Fresh] = []
        same_listing: dict[tuple[str, str], int] = {}  # a page listed twice in one batch
        links: list[tuple[_Fresh, _Candidate]] = []
        for f, found in zip(fresh, neighbours):
            page = (f.key.source, f.key.external_id)
            if page in same_listing:
                continue
            candidates = [
                _Candidate(pictures[i].shop, *self._fingerprints[i], cosine=c, item_id=i)
                for i, c in found
                if i in pictures and i in self._fingerprints
            ]
            for position, other in enumerate(new):
                cosine = float(np.dot(f.vector, other.vector))
                candidates.append(_Candidate(other.product.shop, other.sha, other.dhash, cosine, pending=position))
            match = _best_match(f, candidates)
            if match is None:
                same_listing[page] = len(new)
                new.append(f)
            else:
                links.append((f, match))

        ids: list[int] = []
        if new:
            items = [_new_item(f, tag) for f in new]
            ids = await self.catalogue.add_items(items, np.stack([f.vector for f in new]))
            run.indexed += len(ids)
            run.new_ids.extend(ids)
            run.new_vectors.extend(f.vector for f in new)
        for f, match in links:
            item_id = match.item_id if match.item_id is not None else ids[int(match.pending or 0)]
            tagged.add(item_id)
            run.touched_ids.add(item_id)
            if match.shop != f.product.shop:
                price, currency = _price(f.product)
                offers.append(NewOffer(item_id, f.product.shop, price, currency, f.product.info.url))
        run.touched_ids.update(tagged - set(ids))
        if tagged or offers or prices:
            await trend_store.record_listings(store, tag, tagged=tagged, offers=offers, prices=prices)

    async def _neighbours(self, vectors: Sequence[np.ndarray]) -> list[list[tuple[int, float]]]:
        index = self.catalogue.index

        def search() -> list[list[tuple[int, float]]]:
            out = []
            for v in vectors:
                ids, scores = index.search(v, NEIGHBOURS)
                out.append([(int(i), float(s)) for i, s in zip(ids, scores) if s >= NEAR_COSINE])
            return out

        return await asyncio.to_thread(search) if vectors else []

    async def _fingerprint(self, pictures: dict[int, trend_store.ShopPicture]) -> None:
        missing = [p for i, p in pictures.items() if i not in self._fingerprints]

        def compute() -> list[tuple[int, tuple[str, int] | None]]:
            out: list[tuple[int, tuple[str, int] | None]] = []
            for p in missing:
                try:
                    out.append((p.item_id, fingerprint(p.image)))
                except BadImage:
                    out.append((p.item_id, None))
            return out

        for item_id, value in await asyncio.to_thread(compute) if missing else []:
            if value is not None:
                self._fingerprints[item_id] = value
        for item_id in pictures:
            if item_id in self._fingerprints:
                self._fingerprints.move_to_end(item_id)
        while len(self._fingerprints) > _FINGERPRINT_CACHE:
            self._fingerprints.popitem(last=False)

    # ---- the summary -------------------------------------------------------------------
    async def _best(self, run: _Run) -> list[ScoredItem]:
        """The new items closest to the trend's centroid (on a re-run with nothing new: the
        items this run found again)."""
        ids, vectors = list(run.new_ids), list(run.new_vectors)
        if not ids and run.touched_ids:
            ids = sorted(run.touched_ids)
            try:
                vectors = list(await self.catalogue.vectors(ids))
            except RuntimeError:
                return []
        if not ids:
            return []
        matrix = np.stack(vectors).astype(np.float32)
        centroid = matrix.mean(axis=0)
        centroid /= np.linalg.norm(centroid) or 1.0
        scores = matrix @ centroid
        order = np.argsort(-scores, kind="stable")[: min(BEST, self.settings.top_k)]
        chosen = [ids[i] for i in order]
        items = await self.store.items(chosen)
        offers = await trend_store.offers_for(self.store, chosen)
        ranked = [(ids[i], float(scores[i])) for i in order if ids[i] in items]
        return [
            ScoredItem(item=items[i], rank=rank, score=round(s, 4), offers=offers.get(i, ()))
            for rank, (i, s) in enumerate(ranked, start=1)
        ]


def _best_match(f: _Fresh, candidates: list[_Candidate]) -> _Candidate | None:
    """The item this product duplicates: an identical picture first, then the closest
    near-identical picture at another shop; stored items before this batch's."""
    same = [
        c
        for c in candidates
        if same_picture(f.sha, f.dhash, c.sha, c.dhash, c.cosine, same_shop=c.shop == f.product.shop)
    ]
    if not same:
        return None
    return max(same, key=lambda c: (c.sha == f.sha, c.cosine, c.item_id is not None, -(c.item_id or c.pending or 0)))


def _price(product: ScrapedProduct) -> tuple[float | None, str]:
    """A price without a currency is not shown (an honest dash beats a wrong symbol)."""
    info = product.info
    if info.price is None or not info.currency:
        return None, (info.currency or "EUR")[:8]
    return info.price, info.currency[:8]


def _new_item(f: _Fresh, tag: str) -> NewItem:
    info = f.product.info
    price, currency = _price(f.product)
    return NewItem(
        source=f.key.source,
        external_id=info.external_id,
        title=info.title[:512],
        image=f.prepared.jpeg or b"",
        url=info.url[:2048],
        image_url=info.image_url[:2048],
        price=price,
        currency=currency,
        category=guess_category(info.title),
        brand=info.brand,
        color=info.color,
        shop=info.shop[:128],
        tags=tag,
    )


async def _pump(stream: AsyncIterator[Any], queue: asyncio.Queue[Any]) -> None:
    """Crawl events into the queue, so the trend can batch whatever arrived meanwhile."""
    try:
        async for event in stream:
            queue.put_nowait(event)
    except asyncio.CancelledError:
        raise
    except Exception as err:
        queue.put_nowait(err)
    finally:
        queue.put_nowait(_END)
        with contextlib.suppress(Exception):
            await stream.aclose()  # type: ignore[attr-defined]
