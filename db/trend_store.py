"""Queries for `/trend`: trend bookkeeping, shop listings, offers and tags.

Kept apart from :mod:`db.store` (the engine core's queries) and written as plain
functions over a :class:`~db.store.Store`, so the trend code in ``engine/trends/runner.py``
never writes SQL. Items themselves are inserted by ``FashionService.add_items``
(one transaction, then the index); what this module writes afterwards (tags,
offers, price refreshes) is idempotent, so re-running an interrupted trend repairs it.
"""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from sqlalchemy import func, literal, select, tuple_, update

from db.models import ItemRow, OfferRow, TrendRow, utcnow
from db.store import Store
from engine.types import Offer, TrendInfo

TAG_SEPARATOR = ","


@dataclass(frozen=True)
class ListingKey:
    """A product page at a shop: how a re-run recognises a product it has seen."""

    source: str  # "shop:<name>"
    external_id: str  # ProductInfo.external_id (URL-derived)
    shop: str
    url: str


@dataclass(frozen=True)
class KnownListing:
    item_id: int
    as_offer: bool  # True: the listing is an offer on another shop's item


@dataclass(frozen=True)
class NewOffer:
    item_id: int
    shop: str
    price: float | None
    currency: str
    url: str | None


@dataclass(frozen=True)
class PriceRefresh:
    """A primary listing seen again: its current price (only applied while the URL matches)."""

    item_id: int
    url: str
    price: float | None
    currency: str


@dataclass(frozen=True)
class ShopPicture:
    item_id: int
    shop: str
    title: str
    image: bytes


def _has_tag(tag: str):  # noqa: ANN202 - a SQL expression
    """``tag`` is one of the item's comma-separated tags (portable: LIKE with escaping)."""
    padded = literal(TAG_SEPARATOR) + func.coalesce(ItemRow.tags, "") + literal(TAG_SEPARATOR)
    return padded.contains(f"{TAG_SEPARATOR}{tag}{TAG_SEPARATOR}", autoescape=True)


def add_tag(tags: str | None, tag: str) -> str:
    present = [t for t in (tags or "").split(TAG_SEPARATOR) if t]
    if tag not in present:
        present.append(tag)
    return TAG_SEPARATOR.join(present)


def _cheaper(price: float | None, than: float | None) -> bool:
    return price is not None and (than is None or price < than)


# ---- trend bookkeeping ----------------------------------------------------------------
async def start_trend(store: Store, tag: str, user_id: int | None) -> int:
    """A new TrendRow (status "running"). Earlier rows of the tag still marked running belong to
    a process that died mid-trend (one trend per tag runs at a time): they become "interrupted"."""
    async with store.session.begin() as s:
        await s.execute(
            update(TrendRow).where(TrendRow.tag == tag, TrendRow.status == "running").values(status="interrupted")
        )
        row = TrendRow(tag=tag, started_by=user_id, status="running")
        s.add(row)
        await s.flush()
        return row.id


async def record_trend(
    store: Store, trend_id: int, *, found: int, indexed: int, skipped: int, status: str | None = None
) -> None:
    """Counts so far; with ``status`` ("done", "failed", "cancelled") the trend is finished."""
    values: dict[str, object] = {"found": found, "indexed": indexed, "skipped": skipped}
    if status is not None:
        values |= {"status": status, "finished_at": utcnow()}
    async with store.session.begin() as s:
        await s.execute(update(TrendRow).where(TrendRow.id == trend_id).values(**values))


async def trend_rows(store: Store, tag: str | None = None) -> list[TrendRow]:
    async with store.session() as s:
        q = select(TrendRow).order_by(TrendRow.id)
        if tag is not None:
            q = q.where(TrendRow.tag == tag)
        return list((await s.execute(q)).scalars())


async def recent_trends(store: Store, limit: int = 10) -> list[TrendInfo]:
    """The most recently started tags, each with the number of catalogue items carrying the tag."""
    async with store.session() as s:
        rows = (
            await s.execute(
                select(TrendRow.tag, func.max(TrendRow.started_at))
                .group_by(TrendRow.tag)
                .order_by(func.max(TrendRow.started_at).desc(), TrendRow.tag)
                .limit(limit)
            )
        ).all()
        out = []
        for tag, last_run in rows:
            count = (
                await s.execute(
                    select(func.count(ItemRow.id)).where(_has_tag(tag), ItemRow.duplicate_of.is_(None))
                )
            ).scalar_one()
            out.append(TrendInfo(tag=tag, item_count=int(count), last_run=last_run))
    return out


async def items_with_tag(store: Store, tag: str) -> list[int]:
    async with store.session() as s:
        q = select(ItemRow.id).where(_has_tag(tag)).order_by(ItemRow.id)
        return [r[0] for r in (await s.execute(q)).all()]


# ---- listings, pictures, offers ---------------------------------------------------------
async def find_listings(store: Store, keys: Sequence[ListingKey]) -> dict[int, KnownListing]:
    """Which of ``keys`` (by position) are already in the catalogue: as an item's own listing
    (source + external_id) or as an offer (shop + URL)."""
    found: dict[int, KnownListing] = {}
    if not keys:
        return found
    async with store.session() as s:
        for start in range(0, len(keys), 400):
            chunk = list(enumerate(keys))[start : start + 400]
            pairs = {(k.source, k.external_id) for _, k in chunk}
            rows = await s.execute(
                select(ItemRow.id, ItemRow.source, ItemRow.external_id).where(
                    tuple_(ItemRow.source, ItemRow.external_id).in_(list(pairs))
                )
            )
            items = {(r[1], r[2]): r[0] for r in rows}
            offer_pairs = {(k.shop, k.url) for _, k in chunk}
            rows = await s.execute(
                select(OfferRow.item_id, OfferRow.shop, OfferRow.url).where(
                    tuple_(OfferRow.shop, OfferRow.url).in_(list(offer_pairs))
                )
            )
            offers = {(r[1], r[2]): r[0] for r in rows}
            for position, key in chunk:
                if (key.source, key.external_id) in items:
                    found[position] = KnownListing(items[(key.source, key.external_id)], as_offer=False)
                elif (key.shop, key.url) in offers:
                    found[position] = KnownListing(offers[(key.shop, key.url)], as_offer=True)
    return found


async def shop_pictures(store: Store, ids: Iterable[int]) -> dict[int, ShopPicture]:
    """Stored pictures of the given items that came from a shop (others are not price-comparable)."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    async with store.session() as s:
        rows = await s.execute(
            select(ItemRow.id, ItemRow.shop, ItemRow.title, ItemRow.image).where(
                ItemRow.id.in_(wanted), ItemRow.source.like("shop:%"), ItemRow.shop.is_not(None)
            )
        )
        return {r[0]: ShopPicture(r[0], r[1], r[2], r[3]) for r in rows}


async def record_listings(
    store: Store,
    tag: str,
    *,
    tagged: Iterable[int] = (),
    offers: Sequence[NewOffer] = (),
    prices: Sequence[PriceRefresh] = (),
) -> None:
    """One transaction: add ``tag`` to items, upsert offers, refresh primary prices.

    An item has at most one offer per shop; when a shop lists the same picture twice, the
    offer keeps the listing seen again (same URL) or else the cheaper one.
    """
    tagged = sorted(set(tagged))
    async with store.session.begin() as s:
        if tagged:
            rows = (await s.execute(select(ItemRow.id, ItemRow.tags).where(ItemRow.id.in_(tagged)))).all()
            for item_id, tags in rows:
                new = add_tag(tags, tag)
                if new != (tags or ""):
                    await s.execute(update(ItemRow).where(ItemRow.id == item_id).values(tags=new))
        for offer in offers:
            existing = (
                await s.execute(
                    select(OfferRow).where(OfferRow.item_id == offer.item_id, OfferRow.shop == offer.shop)
                )
            ).scalar_one_or_none()
            if existing is None:
                s.add(
                    OfferRow(
                        item_id=offer.item_id,
                        shop=offer.shop,
                        price=offer.price,
                        currency=offer.currency,
                        url=offer.url,
                    )
                )
                await s.flush()  # a second offer for the same (item, shop) in this batch sees this one
            elif existing.url == offer.url or _cheaper(offer.price, existing.price):
                existing.price, existing.currency, existing.url = offer.price, offer.currency, offer.url
                existing.updated_at = utcnow()
        for refresh in prices:
            await s.execute(
                update(ItemRow)
                .where(ItemRow.id == refresh.item_id, ItemRow.url == refresh.url)
                .values(price=refresh.price, currency=refresh.currency)
            )


async def offers_for(store: Store, item_ids: Sequence[int]) -> dict[int, tuple[Offer, ...]]:
    """Offers per item, cheapest first (offers without a price last)."""
    if not item_ids:
        return {}
    async with store.session() as s:
        rows = (
            await s.execute(
                select(OfferRow.item_id, OfferRow.shop, OfferRow.price, OfferRow.currency, OfferRow.url).where(
                    OfferRow.item_id.in_(list(set(item_ids)))
                )
            )
        ).all()
    grouped: dict[int, list[Offer]] = {}
    for item_id, shop, price, currency, url in rows:
        grouped.setdefault(item_id, []).append(Offer(shop=shop, price=price, currency=currency or "EUR", url=url))
    return {
        item_id: tuple(sorted(offers, key=lambda o: (o.price is None, o.price or 0.0, o.shop)))
        for item_id, offers in grouped.items()
    }


async def offer_rows(store: Store) -> list[OfferRow]:
    async with store.session() as s:
        return list((await s.execute(select(OfferRow).order_by(OfferRow.id))).scalars())
