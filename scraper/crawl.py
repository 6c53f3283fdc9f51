"""``/trend <tag>``: search each shop, follow product pages, download and validate pictures.

The crawl yields events as it goes so a front-end can show progress and the
service can embed and index products while the crawl is still running. It
does not import engine services or the database: deduplication, embedding and
storage are the caller's job. Every picture goes through the caller's
``check_picture`` (a blocking callable: downloaded bytes in, the compact JPEG to
keep out, any exception to refuse), run off the event loop in a thread or the
executor the caller passes, so a corrupt file or a decompression bomb becomes a
``ProductSkipped`` with a reason, never an exception. The engine passes one built
on ``engine.vision.images``; the scraper itself never imports the engine.

Search results are followed across pages (``rel="next"`` or the shop's ``next``
selector), at most ``max_search_pages`` per shop, within the trend's page budget;
every page goes through the same fetcher (robots.txt, SSRF guard, politeness,
Retry-After), so a 429 on page 2 is waited out and retried like any other.

Event order: per shop, ``ShopSearched`` or ``ShopFailed`` comes before that shop's
``ProductFound``/``ProductSkipped`` events; shops run concurrently, so events of
different shops interleave. ``CrawlFinished`` is always last.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from concurrent.futures import Executor
from dataclasses import dataclass

from PIL import Image
from yarl import URL

from scraper.extract import ProductInfo, SearchResult, extract_product, extract_search
from scraper.fetch import BudgetExhausted, CrawlBudget, Fetcher, FetchError
from scraper.sources import Shop

log = logging.getLogger(__name__)

MAX_TAG_CHARS = 100
MAX_REASON_CHARS = 200
MAX_KEPT_SIDE = 4096  # the picture check returns a compact JPEG; anything bigger is refused

# Blocking: the downloaded bytes -> the compact JPEG to keep; raises to refuse the picture.
PictureCheck = Callable[[bytes], bytes]


@dataclass(frozen=True)
class ScrapedProduct:
    """A product with a picture that passed the caller's ``check_picture``."""

    info: ProductInfo
    image_jpeg: bytes  # what check_picture returned (a compact re-encoded JPEG): safe to store and show
    image_sha256: str  # of the downloaded bytes: the same file at two shops has the same digest
    dhash: int  # 64-bit difference hash of image_jpeg, for cheap near-duplicate checks
    tag: str

    @property
    def shop(self) -> str:
        return self.info.shop


@dataclass(frozen=True)
class ShopSearched:
    """The shop's search pages were read; ``n_links`` products (links or complete entries) on them."""

    shop: str
    n_links: int
    source: str = ""  # how they were found: "json-ld", "selectors", "microdata", "grid", "none"
    pages: int = 1  # search-result pages read
    note: str = ""  # why pagination ended early, e.g. "page 2: HTTP 500" (the links found so far are kept)


@dataclass(frozen=True)
class ProductFound:
    product: ScrapedProduct


@dataclass(frozen=True)
class ProductSkipped:
    """A product we did not take, and why (robots.txt, blocked redirect, broken picture, ...)."""

    url: str
    reason: str
    shop: str = ""


@dataclass(frozen=True)
class ShopFailed:
    """The shop's search page could not be used at all."""

    shop: str
    reason: str


@dataclass(frozen=True)
class CrawlFinished:
    """Always the last event. ``stopped`` says why the crawl ended early, if it did."""

    found: int
    skipped: int
    shops_failed: int
    pages_fetched: int
    stopped: str | None = None


CrawlEvent = ShopSearched | ProductFound | ProductSkipped | ShopFailed | CrawlFinished


@dataclass
class _Crawl:
    tag: str
    fetcher: Fetcher
    budget: CrawlBudget
    max_products: int
    work: asyncio.Semaphore
    queue: asyncio.Queue[CrawlEvent | None]
    check_picture: PictureCheck
    picture_executor: Executor | None
    max_search_pages: int
    pending: int = 0  # shops not yet searched + products not yet finished
    found: int = 0
    skipped: int = 0
    shops_failed: int = 0
    stopped: str | None = None

    @property
    def full(self) -> bool:
        return self.found >= self.max_products

    def emit(self, event: CrawlEvent) -> None:
        if isinstance(event, ProductSkipped):
            self.skipped += 1
        elif isinstance(event, ShopFailed):
            self.shops_failed += 1
        self.queue.put_nowait(event)


def normalise_tag(tag: str) -> str:
    """``"  Summer   Dress "`` -> ``"summer dress"``; refuses empty tags."""
    text = " ".join(str(tag).split()).lower()[:MAX_TAG_CHARS]
    if not text:
        raise ValueError("a trend needs a tag, e.g. /trend dress")
    return text


async def crawl_trend(
    tag: str,
    shops: Iterable[Shop],
    fetcher: Fetcher,
    *,
    check_picture: PictureCheck,
    picture_executor: Executor | None = None,
    max_pages: int = 60,
    max_search_pages: int = 5,
    max_products: int = 30,
    max_images: int | None = None,
    concurrency: int = 4,
) -> AsyncIterator[CrawlEvent]:
    """Crawl every enabled shop for ``tag``; yield :data:`CrawlEvent` s, ``CrawlFinished`` last.

    ``check_picture`` validates each downloaded picture and returns the compact JPEG
    to keep (any exception skips the product, its first sentence is the reason); it
    is blocking and runs in ``picture_executor`` (default: ``asyncio.to_thread``).
    ``max_pages`` caps HTML pages over the whole trend (search + product pages);
    ``max_search_pages`` caps the search-result pages followed per shop;
    ``max_images`` caps picture downloads (default ``2 * max_products``);
    ``concurrency`` caps products in progress at once over all shops (the fetcher
    still keeps each host at ≤ 2 requests in flight). Closing the iterator early
    cancels the crawl.
    """
    tag = normalise_tag(tag)
    active = [s for s in shops if s.enabled]
    crawl = _Crawl(
        tag=tag,
        fetcher=fetcher,
        budget=CrawlBudget(max_pages, max_images if max_images is not None else max(2 * max_products, 4)),
        max_products=max_products,
        work=asyncio.Semaphore(max(1, concurrency)),
        queue=asyncio.Queue(),
        check_picture=check_picture,
        picture_executor=picture_executor,
        max_search_pages=max(1, max_search_pages),
    )
    crawl.pending = len(active)
    tasks = [asyncio.create_task(_crawl_shop(shop, crawl), name=f"crawl:{shop.name}") for shop in active]
    closer = asyncio.create_task(_close_when_done(tasks, crawl.queue))
    try:
        while True:
            event = await crawl.queue.get()
            if event is None:
                break
            yield event
            if crawl.full:
                if crawl.pending > 0:
                    crawl.stopped = crawl.stopped or f"found {crawl.max_products} products"
                break
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        while not crawl.queue.empty():  # events queued before we stopped (never more than max_products found)
            event = crawl.queue.get_nowait()
            if event is not None:
                yield event
        yield CrawlFinished(
            found=crawl.found,
            skipped=crawl.skipped,
            shops_failed=crawl.shops_failed,
            pages_fetched=crawl.budget.pages_used,
            stopped=crawl.stopped,
        )
    finally:
        for task in (*tasks, closer):
            task.cancel()
        await asyncio.gather(*tasks, closer, return_exceptions=True)


async def _close_when_done(tasks: list[asyncio.Task[None]], queue: asyncio.Queue[CrawlEvent | None]) -> None:
    await asyncio.gather(*tasks, return_exceptions=True)
    queue.put_nowait(None)


async def _crawl_shop(shop: Shop, crawl: _Crawl) -> None:
    try:
        candidates = await _search_shop(shop, crawl)
        crawl.pending += len(candidates)
    finally:
        crawl.pending -= 1  # this shop's search is over
    await asyncio.gather(*(_crawl_product(shop, url, info, crawl) for url, info in candidates))


async def _search_shop(shop: Shop, crawl: _Crawl) -> list[tuple[str, ProductInfo | None]]:
    """Read the search pages (following "next"); emit ShopSearched or ShopFailed; return what to visit."""
    url: str | None = shop.search_url_for(crawl.tag)
    visited: set[str] = set()
    site = ""
    source = "none"
    note = ""
    pages = 0
    candidates: dict[str, ProductInfo | None] = {}
    enough = 2 * crawl.max_products  # candidates that fill the trend even if many fail
    while url is not None and pages < crawl.max_search_pages and len(candidates) < enough:
        visited.add(url)
        try:
            final_url, result = await _search_page(shop, url, crawl)
        except BudgetExhausted as err:
            if pages == 0:
                crawl.stopped = err.reason
                crawl.emit(ShopFailed(shop.name, err.reason))
                return []
            note = f"page {pages + 1}: {err.reason}"
            break
        except FetchError as err:
            if pages == 0:
                crawl.emit(ShopFailed(shop.name, err.reason))
                return []
            note = f"page {pages + 1}: {err.reason}"
            break
        except Exception as err:
            log.exception("crawl of %s failed", shop.name)
            reason = f"internal error ({type(err).__name__})"
            if pages == 0:
                crawl.emit(ShopFailed(shop.name, reason))
                return []
            note = f"page {pages + 1}: {reason}"
            break
        pages += 1
        visited.add(final_url)
        site = site or final_url
        if source == "none":
            source = result.source
        for product in result.products:
            if same_site(product.url, site) and candidates.get(product.url) is None:
                candidates[product.url] = product
        for link in result.links:
            if same_site(link, site):
                candidates.setdefault(link, None)
        following = result.next_url
        url = following if following and following not in visited and same_site(following, site) else None
    crawl.emit(ShopSearched(shop.name, len(candidates), source, pages, note))
    return list(candidates.items())


async def _search_page(shop: Shop, url: str, crawl: _Crawl) -> tuple[str, SearchResult]:
    page = await crawl.fetcher.fetch_page(url, budget=crawl.budget, allow_hosts=shop.allow_hosts)
    # Parsing a capped page is pure CPU; a thread keeps the loop (and other shops' timeouts) responsive.
    result = await asyncio.to_thread(
        extract_search, page.body, page.url, shop=shop.name, selectors=shop.selectors, encoding=page.charset
    )
    return page.url, result


async def _crawl_product(shop: Shop, url: str, info: ProductInfo | None, crawl: _Crawl) -> None:
    try:
        await _guarded_product(shop, url, info, crawl)
    finally:
        crawl.pending -= 1


async def _guarded_product(shop: Shop, url: str, info: ProductInfo | None, crawl: _Crawl) -> None:
    async with crawl.work:
        if crawl.full or crawl.stopped:
            return
        try:
            await _product_pipeline(shop, url, info, crawl)
        except BudgetExhausted as err:
            crawl.stopped = err.reason
        except asyncio.CancelledError:
            raise
        except Exception as err:
            log.exception("product %s of %s failed", url, shop.name)
            crawl.emit(ProductSkipped(url, f"internal error ({type(err).__name__})", shop.name))


async def _product_pipeline(shop: Shop, url: str, info: ProductInfo | None, crawl: _Crawl) -> None:
    fetcher = crawl.fetcher
    if info is None:
        try:
            page = await fetcher.fetch_page(url, budget=crawl.budget, allow_hosts=shop.allow_hosts)
        except BudgetExhausted:
            raise
        except FetchError as err:
            crawl.emit(ProductSkipped(url, err.reason, shop.name))
            return
        info = await asyncio.to_thread(
            extract_product, page.body, page.url, shop=shop.name, selectors=shop.selectors, encoding=page.charset
        )
        if info is None:
            crawl.emit(ProductSkipped(url, "no product title or usable picture on the page", shop.name))
            return
    try:
        image = await fetcher.fetch_image(info.image_url, budget=crawl.budget, allow_hosts=shop.allow_hosts)
    except BudgetExhausted:
        raise
    except FetchError as err:
        crawl.emit(ProductSkipped(url, f"picture: {err.reason}", shop.name))
        return
    try:
        jpeg, digest = await _run_check(crawl, image.body)
    except Exception as err:
        crawl.emit(ProductSkipped(url, f"picture rejected: {_reason(err)}", shop.name))
        return
    if crawl.full:
        return
    crawl.found += 1
    product = ScrapedProduct(
        info=info, image_jpeg=jpeg, image_sha256=hashlib.sha256(image.body).hexdigest(), dhash=digest, tag=crawl.tag
    )
    crawl.emit(ProductFound(product))


async def _run_check(crawl: _Crawl, data: bytes) -> tuple[bytes, int]:
    """The caller's picture check and our hash of its JPEG, off the event loop."""
    if crawl.picture_executor is None:
        return await asyncio.to_thread(_checked, crawl.check_picture, data)
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(crawl.picture_executor, _checked, crawl.check_picture, data)


class _NotAJpeg(Exception):
    """The picture check returned something we cannot read back."""


def _checked(check: PictureCheck, data: bytes) -> tuple[bytes, int]:
    """Blocking: run the check, then hash the JPEG it returned (small: we decode it fully)."""
    jpeg = check(data)
    try:
        with Image.open(io.BytesIO(jpeg)) as img:
            if img.format != "JPEG" or max(img.size) > MAX_KEPT_SIDE:
                raise _NotAJpeg("the picture check returned no compact JPEG")
            return jpeg, difference_hash(img.convert("RGB"))
    except _NotAJpeg:
        raise
    except Exception:
        raise _NotAJpeg("the picture check returned no readable JPEG") from None


def _reason(err: BaseException) -> str:
    """BadImage messages end with advice for a chat user ("Please send ..."); a crawl report needs the fact."""
    message = " ".join(str(err).split()) or type(err).__name__
    head, sep, _ = message.partition(". ")
    reason = head + "." if sep else message
    return reason if len(reason) <= MAX_REASON_CHARS else reason[: MAX_REASON_CHARS - 1] + "…"


def difference_hash(img: Image.Image) -> int:
    """64-bit dHash: robust to re-encoding and resizing, cheap to compare (Hamming distance)."""
    small = img.convert("L").resize((9, 8), Image.Resampling.BILINEAR)
    pixels = small.tobytes()  # mode L: one byte per pixel, row by row
    bits = 0
    for row in range(8):
        for col in range(8):
            left, right = pixels[row * 9 + col], pixels[row * 9 + col + 1]
            bits = (bits << 1) | (1 if left > right else 0)
    return bits


def same_site(url: str, site_url: str) -> bool:
    """Product pages must stay on the shop's own site (``www.`` and subdomains included,
    same explicit port); pictures may come from any host (CDNs)."""
    try:
        a, b = URL(url), URL(site_url)
    except ValueError:
        return False
    host_a = (a.host or "").lower().removeprefix("www.")
    host_b = (b.host or "").lower().removeprefix("www.")
    if not host_a or not host_b:
        return False
    if a.explicit_port != b.explicit_port and (a.explicit_port or b.explicit_port):
        return False
    return host_a == host_b or host_a.endswith("." + host_b)
