"""Queries for `/trend`: trend bookkeeping, shop listings, offers and tags.

Kept apart from :mod:`db.store` (the engine core's queries) and written as plain
functions over a :class:`~db.store.Store`, so the trend code in ``engine/trends/runner.py``
never writes SQL. Items themselves are inserted by ``FashionService.add_items``
(one transaction, then the index); what this module writes afterwards (tags,
offers, price refreshes) is idempotent, so re-running an interrupted trend repairs it.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, literal, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite

from db.models import ItemRow, OfferRow, TrendLeaseRow, TrendRow, utcnow
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


def _has_tag(tag: str):
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
    store: Store,
    trend_id: int,
    *,
    found: int,
    indexed: int,
    skipped: int,
    status: str | None = None,
    shops_searched: int | None = None,
    shops_total: int | None = None,
) -> None:
    """Counts so far (other workers show them); with ``status`` ("done", "failed",
    "cancelled") the trend is finished."""
    values: dict[str, object] = {"found": found, "indexed": indexed, "skipped": skipped}
    if shops_searched is not None:
        values["shops_searched"] = shops_searched
    if shops_total is not None:
        values["shops_total"] = shops_total
    if status is not None:
        values |= {"status": status, "finished_at": utcnow()}
    async with store.session.begin() as s:
        await s.execute(update(TrendRow).where(TrendRow.id == trend_id).values(**values))


async def latest_trend(store: Store, tag: str) -> TrendRow | None:
    """The tag's newest trend row (running or finished), if any."""
    async with store.session() as s:
        q = select(TrendRow).where(TrendRow.tag == tag).order_by(TrendRow.id.desc()).limit(1)
        return (await s.execute(q)).scalar_one_or_none()


# ---- leases: one run of a tag across workers ---------------------------------------------
LEASE_SECONDS = 15.0  # a lease not renewed for this long is free (its holder died or hung)


@dataclass(frozen=True)
class Lease:
    tag: str
    holder: str
    expires_at: datetime


def lease_holder() -> str:
    """This process's name as a lease holder: ``<host>:<pid>:<random>``."""
    return f"{socket.gethostname()[:80]}:{os.getpid()}:{secrets.token_hex(4)}"


def holder_is_dead(holder: str) -> bool:
    """A holder on this host whose process is gone (killed mid-trend): its lease need not
    wait for expiry. Holders on other hosts are judged by expiry alone."""
    host, _, rest = holder.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname()[:80] or not pid_text.isdigit():
        return False
    pid = int(pid_text)
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


async def lease(store: Store, tag: str) -> Lease | None:
    async with store.session() as s:
        row = (await s.execute(select(TrendLeaseRow).where(TrendLeaseRow.tag == tag))).scalar_one_or_none()
        return Lease(row.tag, row.holder, row.expires_at) if row else None


async def acquire_lease(
    store: Store, tag: str, holder: str, *, seconds: float = LEASE_SECONDS, steal_from: str | None = None
) -> bool:
    """Take (or renew) the tag's lease for ``holder``: succeeds when there is none, it has
    expired, it is ours, or it belongs to ``steal_from`` (a holder known to be dead). One
    upsert, so two workers asking at once cannot both win."""
    now = utcnow()
    insert = postgresql.insert if store.dialect == "postgresql" else sqlite.insert
    stmt = insert(TrendLeaseRow).values(tag=tag, holder=holder, expires_at=now + timedelta(seconds=seconds))
    free = (TrendLeaseRow.expires_at < now) | (TrendLeaseRow.holder == holder)
    if steal_from is not None:
        free = free | (TrendLeaseRow.holder == steal_from)
    stmt = stmt.on_conflict_do_update(
        index_elements=[TrendLeaseRow.tag],
        set_={"holder": stmt.excluded.holder, "expires_at": stmt.excluded.expires_at},
        where=free,
    )
    async with store.session.begin() as s:
        await s.execute(stmt)
        current = (await s.execute(select(TrendLeaseRow.holder).where(TrendLeaseRow.tag == tag))).scalar_one()
    return bool(current == holder)


async def renew_lease(store: Store, tag: str, holder: str, *, seconds: float = LEASE_SECONDS) -> bool:
    """Push the lease's expiry on; False when it is no longer ours (we stalled past expiry
    and another worker took the tag over)."""
    async with store.session.begin() as s:
        result = await s.execute(
            update(TrendLeaseRow)
            .where(TrendLeaseRow.tag == tag, TrendLeaseRow.holder == holder)
            .values(expires_at=utcnow() + timedelta(seconds=seconds))
        )
        return bool(getattr(result, "rowcount", 0))


async def release_lease(store: Store, tag: str, holder: str) -> None:
    async with store.session.begin() as s:
        await s.execute(delete(TrendLeaseRow).where(TrendLeaseRow.tag == tag, TrendLeaseRow.holder == holder))


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
                await s.execute(select(func.count(ItemRow.id)).where(_has_tag(tag), ItemRow.duplicate_of.is_(None)))
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
        return {r[0]: ShopPicture(r[0], r[1] or "", r[2], r[3]) for r in rows}


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
                await s.execute(select(OfferRow).where(OfferRow.item_id == offer.item_id, OfferRow.shop == offer.shop))
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
