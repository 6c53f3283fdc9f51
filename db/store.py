"""`Store`: every query the service needs, async, SQLAlchemy 2.

SQLite runs in WAL mode with foreign keys on, so /forget's cascades really
delete and readers don't block the ingest writer.
"""
from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import delete, event, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import defer
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine

from db.models import FeedbackRow, ItemRow, PhotoRow, RecommendationRow, TrendRow, UserRow
from engine.types import Item


@dataclass(frozen=True)
class NewItem:
    """An item about to enter the catalogue (with its embedding when already computed)."""

    source: str
    external_id: str
    title: str
    image: bytes
    url: str | None = None
    image_url: str | None = None
    price: float | None = None
    currency: str = "EUR"
    category: str | None = None
    brand: str | None = None
    color: str | None = None
    gender: str | None = None
    shop: str | None = None
    tags: str = ""
    embedding: bytes | None = None
    embedding_model: str | None = None


def to_item(row: ItemRow) -> Item:
    return Item(
        id=row.id,
        title=row.title,
        url=row.url,
        price=row.price,
        currency=row.currency or "EUR",
        category=row.category,
        brand=row.brand,
        color=row.color,
        shop=row.shop,
        image_url=row.image_url,
        tags=tuple(t for t in (row.tags or "").split(",") if t),
    )


class Store:
    def __init__(self, url: str) -> None:
        if url.startswith("sqlite"):
            path = url.split("///", 1)[-1]
            if path and path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
        # A fixed pool: opening an aiosqlite connection starts a thread, which stalls the
        # event loop, so bursts must reuse connections rather than open and close them.
        self.engine: AsyncEngine = create_async_engine(url, pool_pre_ping=True, pool_size=16, max_overflow=0)
        if url.startswith("sqlite"):
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        self.session = async_sessionmaker(self.engine, expire_on_commit=False)

    async def create(self) -> None:
        """Bring the schema up to date (Alembic migrations, see db/migrate.py)."""
        from db.migrate import upgrade

        async with self.engine.begin() as conn:
            await conn.run_sync(upgrade)

    async def close(self) -> None:
        await self.engine.dispose()

    # ---- items ------------------------------------------------------------
    async def existing_external_ids(self, source: str, external_ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        async with self.session() as s:
            for start in range(0, len(external_ids), 500):
                chunk = list(external_ids[start : start + 500])
                rows = await s.execute(
                    select(ItemRow.external_id).where(ItemRow.source == source, ItemRow.external_id.in_(chunk))
                )
                found.update(r[0] for r in rows)
        return found

    async def all_external_ids(self, source: str) -> set[str]:
        async with self.session() as s:
            rows = await s.execute(select(ItemRow.external_id).where(ItemRow.source == source))
            return {r[0] for r in rows}

    async def add_items(self, items: Iterable[NewItem]) -> list[int]:
        """Insert items in one transaction (all or nothing); returns their ids."""
        rows = [ItemRow(**vars(it)) for it in items]
        async with self.session.begin() as s:
            s.add_all(rows)
            await s.flush()
            return [r.id for r in rows]

    async def items(self, ids: Sequence[int]) -> dict[int, Item]:
        if not ids:
            return {}
        async with self.session() as s:
            q = select(ItemRow).options(defer(ItemRow.image), defer(ItemRow.embedding)).where(ItemRow.id.in_(list(ids)))
            rows = (await s.execute(q)).scalars()
            return {r.id: to_item(r) for r in rows}

    async def item_image(self, item_id: int) -> bytes | None:
        async with self.session() as s:
            return (await s.execute(select(ItemRow.image).where(ItemRow.id == item_id))).scalar_one_or_none()

    async def count_items(self) -> int:
        async with self.session() as s:
            return int((await s.execute(select(func.count(ItemRow.id)))).scalar_one())

    async def count_embedded(self, model: str) -> int:
        async with self.session() as s:
            q = select(func.count(ItemRow.id)).where(ItemRow.embedding_model == model, ItemRow.duplicate_of.is_(None))
            return int((await s.execute(q)).scalar_one())

    async def iter_embeddings(
        self, model: str, *, after_id: int = 0, batch: int = 5000
    ) -> AsyncIterator[tuple[np.ndarray, np.ndarray]]:
        """(ids, vectors) of items embedded with ``model``, in id order, in batches."""
        last = after_id
        while True:
            async with self.session() as s:
                rows = (
                    await s.execute(
                        select(ItemRow.id, ItemRow.embedding)
                        .where(ItemRow.embedding_model == model, ItemRow.id > last, ItemRow.duplicate_of.is_(None))
                        .order_by(ItemRow.id)
                        .limit(batch)
                    )
                ).all()
            if not rows:
                return
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            vecs = np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows])
            last = int(ids[-1])
            yield ids, vecs

    async def items_to_embed(self, model: str, *, limit: int = 256) -> list[tuple[int, bytes]]:
        """Items with no embedding for ``model`` (new backbone, or never embedded)."""
        async with self.session() as s:
            q = (
                select(ItemRow.id, ItemRow.image)
                .where((ItemRow.embedding_model.is_(None)) | (ItemRow.embedding_model != model))
                .order_by(ItemRow.id)
                .limit(limit)
            )
            return [(r[0], r[1]) for r in (await s.execute(q)).all()]

    async def set_embeddings(self, model: str, values: Sequence[tuple[int, bytes]]) -> None:
        async with self.session.begin() as s:
            for item_id, emb in values:
                await s.execute(
                    update(ItemRow).where(ItemRow.id == item_id).values(embedding=emb, embedding_model=model)
                )

    # ---- users, photos, recommendations, feedback -------------------------
    async def user_id(self, platform: str, platform_user_id: str, *, create: bool = True) -> int | None:
        """The user's row id (created on first sight). Two first requests of a new user
        can race here: the loser's insert hits the unique constraint and re-reads."""
        q = select(UserRow.id).where(UserRow.platform == platform, UserRow.platform_user_id == platform_user_id)
        async with self.session() as s:
            found = (await s.execute(q)).scalar_one_or_none()
        if found is not None or not create:
            return found
        try:
            async with self.session.begin() as s:
                row = UserRow(platform=platform, platform_user_id=platform_user_id)
                s.add(row)
                await s.flush()
                return row.id
        except IntegrityError:
            async with self.session() as s:
                return (await s.execute(q)).scalar_one()

    async def add_photo(self, user_id: int, embedding: np.ndarray, model: str) -> int:
        async with self.session.begin() as s:
            row = PhotoRow(user_id=user_id, embedding=embedding.astype(np.float32).tobytes(), embedding_model=model)
            s.add(row)
            await s.flush()
            return row.id

    async def photo_embeddings(self, user_id: int, model: str) -> tuple[np.ndarray, int]:
        """The user's photo vectors for ``model`` and the history version (last photo id)."""
        async with self.session() as s:
            rows = (
                await s.execute(
                    select(PhotoRow.id, PhotoRow.embedding)
                    .where(PhotoRow.user_id == user_id, PhotoRow.embedding_model == model)
                    .order_by(PhotoRow.id)
                )
            ).all()
        if not rows:
            return np.empty((0, 0), dtype=np.float32), 0
        return np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows]), int(rows[-1][0])

    async def add_recommendations(
        self, user_id: int | None, photo_id: int | None, results: Sequence[tuple[int, int, float]]
    ) -> None:
        async with self.session.begin() as s:
            s.add_all(
                RecommendationRow(user_id=user_id, photo_id=photo_id, item_id=i, rank=r, score=sc)
                for i, r, sc in results
            )

    async def set_feedback(self, user_id: int, item_id: int, value: int) -> None:
        async with self.session.begin() as s:
            existing = (
                await s.execute(select(FeedbackRow).where(FeedbackRow.user_id == user_id, FeedbackRow.item_id == item_id))
            ).scalar_one_or_none()
            if existing is None:
                s.add(FeedbackRow(user_id=user_id, item_id=item_id, value=value))
            else:
                existing.value = value

    async def feedback(self, user_id: int) -> dict[int, int]:
        async with self.session() as s:
            rows = await s.execute(select(FeedbackRow.item_id, FeedbackRow.value).where(FeedbackRow.user_id == user_id))
            return {r[0]: r[1] for r in rows}

    async def popular_item_ids(self, limit: int = 10) -> list[int]:
        """Most liked, then most recommended: the cold-start suggestion."""
        async with self.session() as s:
            likes = (
                select(FeedbackRow.item_id.label("item_id"), func.sum(FeedbackRow.value).label("likes"))
                .group_by(FeedbackRow.item_id)
                .subquery()
            )
            recs = (
                select(RecommendationRow.item_id.label("item_id"), func.count().label("recs"))
                .group_by(RecommendationRow.item_id)
                .subquery()
            )
            q = (
                select(ItemRow.id)
                .outerjoin(likes, likes.c.item_id == ItemRow.id)
                .outerjoin(recs, recs.c.item_id == ItemRow.id)
                .where(ItemRow.duplicate_of.is_(None))
                .order_by(func.coalesce(likes.c.likes, 0).desc(), func.coalesce(recs.c.recs, 0).desc(), ItemRow.id)
                .limit(limit)
            )
            return [r[0] for r in (await s.execute(q)).all()]

    async def forget_user(self, platform: str, platform_user_id: str) -> dict[str, int]:
        """Delete everything held about a user, in one transaction; returns row counts."""
        counts = {"photos": 0, "recommendations": 0, "feedback": 0, "users": 0}
        async with self.session.begin() as s:
            uid = (
                await s.execute(
                    select(UserRow.id).where(UserRow.platform == platform, UserRow.platform_user_id == platform_user_id)
                )
            ).scalar_one_or_none()
            if uid is None:
                return counts
            for key, table, col in (
                ("recommendations", RecommendationRow, RecommendationRow.user_id),
                ("feedback", FeedbackRow, FeedbackRow.user_id),
                ("photos", PhotoRow, PhotoRow.user_id),
            ):
                counts[key] = (await s.execute(delete(table).where(col == uid))).rowcount or 0
            await s.execute(update(TrendRow).where(TrendRow.started_by == uid).values(started_by=None))
            counts["users"] = (await s.execute(delete(UserRow).where(UserRow.id == uid))).rowcount or 0
        return counts


def _sqlite_pragmas(dbapi_conn, _record) -> None:  # noqa: ANN001 - DBAPI types
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()
