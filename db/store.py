"""`Store`: every query the service needs, async, SQLAlchemy 2.

SQLite runs in WAL mode with foreign keys on, so /forget's cascades really
delete and readers don't block the ingest writer. PostgreSQL (asyncpg) is the
database for several workers: item commits and removals are announced with
NOTIFY (:data:`CHANNEL`) so other workers' followers wake at once, and
:meth:`Store.try_singleton` gives one process a role (e.g. Telegram polling).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
from sqlalchemy import delete, event, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import defer, selectinload

from db.models import (
    FeedbackRow,
    GarmentRow,
    ItemEventRow,
    ItemRow,
    PhotoRow,
    RecommendationRow,
    TrendRow,
    UserRow,
    utcnow,
)
from engine.types import Item

log = logging.getLogger(__name__)

CHANNEL = "fashionbot_items"  # NOTIFY channel: the catalogue changed (payload: "add:<last id>" / "event:<id>")


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


@dataclass(frozen=True)
class NewGarment:
    """A garment of a user's photo as stored: number (1 = best), group, label, relative
    box (x0, y0, x1, y1), confidence and vector."""

    number: int
    group: str
    label: str
    box: tuple[float, float, float, float]
    confidence: float
    vector: np.ndarray


@dataclass(frozen=True)
class StoredPhoto:
    """What is kept of a user's photo: vectors and boxes, enough to switch garments."""

    id: int
    model: str
    vector: np.ndarray
    size: tuple[int, int] | None
    garments: list[NewGarment]


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
        self.url = url
        self._singletons: dict[str, Any] = {}  # name → held lock (a connection or a lock file)
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

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    async def create(self) -> None:
        """Bring the schema up to date (Alembic migrations on a connection of their own,
        see db/migrate.py)."""
        from db.migrate import migrate

        await migrate(self.url)

    async def close(self) -> None:
        for name in list(self._singletons):
            await self.release_singleton(name)
        await self.engine.dispose()

    async def _notify(self, s: AsyncSession, payload: str) -> None:
        """PostgreSQL: tell the other workers after this transaction commits (NOTIFY is
        delivered on commit, and not at all on rollback). SQLite: they poll."""
        if self.dialect == "postgresql":
            await s.execute(text("SELECT pg_notify(:channel, :payload)"), {"channel": CHANNEL, "payload": payload})

    async def listen(self, on_notify: Callable[[str], None]) -> Callable[[], Awaitable[None]] | None:
        """PostgreSQL: call ``on_notify(payload)`` (on the loop) whenever any worker commits
        catalogue changes; returns an async ``stop()``. None where there is no LISTEN (SQLite)."""
        if self.dialect != "postgresql":
            return None
        conn: AsyncConnection = await self.engine.connect()

        def callback(_conn: object, _pid: int, _channel: str, payload: str) -> None:
            on_notify(payload)

        try:
            raw = (await conn.get_raw_connection()).driver_connection
            await raw.add_listener(CHANNEL, callback)  # type: ignore[union-attr]
        except BaseException:  # cancelled (a close during start-up) or failed: give the connection back
            await conn.close()
            raise

        async def stop() -> None:
            with contextlib.suppress(Exception):
                await raw.remove_listener(CHANNEL, callback)  # type: ignore[union-attr]
            await conn.close()

        return stop

    # ---- one process for a role ------------------------------------------------
    async def try_singleton(self, name: str) -> bool:
        """Take the role ``name`` for this process if no other process (on any machine
        sharing the database) holds it; held until :meth:`release_singleton` / close, and
        released by the database or the OS when the process dies.

        PostgreSQL: a session advisory lock on a connection kept for it. SQLite: an
        exclusive ``flock`` on a file beside the database (one machine by nature)."""
        if name in self._singletons:
            return True
        key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        if self.dialect == "postgresql":
            conn = await self.engine.connect()
            try:
                got = (await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key})).scalar_one()
                await conn.commit()
            except BaseException:
                await conn.close()
                raise
            if not got:
                await conn.close()
                return False
            self._singletons[name] = conn
            return True
        path = self.url.split("///", 1)[-1]
        if not path or path == ":memory:":
            self._singletons[name] = None
            return True
        lock_path = Path(f"{path}.{hashlib.sha256(name.encode()).hexdigest()[:12]}.lock")
        handle: IO[str] = open(lock_path, "a+")  # noqa: ASYNC230 - a tiny local file, held until released
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        self._singletons[name] = handle
        return True

    async def release_singleton(self, name: str) -> None:
        held = self._singletons.pop(name, None)
        if isinstance(held, AsyncConnection):
            with contextlib.suppress(Exception):
                # The connection goes back to the pool, so the session (and its lock) lives on: unlock.
                await held.execute(text("SELECT pg_advisory_unlock_all()"))
                await held.commit()
            with contextlib.suppress(Exception):
                await held.close()
        elif held is not None:
            held.close()

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
            ids = [r.id for r in rows]
            if ids:
                await self._notify(s, f"add:{max(ids)}")
            return ids

    # ---- items leaving the catalogue (every worker's index follows) ------------
    async def remove_items(self, ids: Sequence[int]) -> int:
        """Delete items (their offers, feedback and recommendations cascade) and record
        the removals for the other workers' indexes; returns how many were deleted."""
        wanted = sorted(set(ids))
        if not wanted:
            return 0
        async with self.session.begin() as s:
            found = [r[0] for r in (await s.execute(select(ItemRow.id).where(ItemRow.id.in_(wanted)))).all()]
            if not found:
                return 0
            await s.execute(update(ItemRow).where(ItemRow.duplicate_of.in_(found)).values(duplicate_of=None))
            await s.execute(delete(ItemRow).where(ItemRow.id.in_(found)))
            await self._record_events(s, found, "removed")
            return len(found)

    async def mark_duplicates(self, pairs: Sequence[tuple[int, int]]) -> int:
        """``(item, original)``: the item becomes a duplicate of the original (kept, not
        searched) and the other workers drop it from their indexes."""
        pairs = [(a, b) for a, b in pairs if a != b]
        if not pairs:
            return 0
        async with self.session.begin() as s:
            await s.execute(update(ItemRow), [{"id": item_id, "duplicate_of": original} for item_id, original in pairs])
            await self._record_events(s, [a for a, _ in pairs], "duplicate")
            return len(pairs)

    async def _record_events(self, s: AsyncSession, item_ids: Sequence[int], kind: str) -> None:
        rows = [ItemEventRow(item_id=i, kind=kind) for i in item_ids]
        s.add_all(rows)
        await s.flush()
        await self._notify(s, f"event:{max(r.id for r in rows)}")

    async def item_events(self, *, after_id: int = 0, limit: int = 10_000) -> list[tuple[int, int, str]]:
        """(event id, item id, kind) of items that left the catalogue after ``after_id``."""
        async with self.session() as s:
            q = (
                select(ItemEventRow.id, ItemEventRow.item_id, ItemEventRow.kind)
                .where(ItemEventRow.id > after_id)
                .order_by(ItemEventRow.id)
                .limit(limit)
            )
            return [(int(r[0]), int(r[1]), r[2]) for r in (await s.execute(q)).all()]

    async def last_item_id(self) -> int:
        async with self.session() as s:
            return int((await s.execute(select(func.coalesce(func.max(ItemRow.id), 0)))).scalar_one())

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
            vecs = np.stack([np.frombuffer(r[1] or b"", dtype=np.float32) for r in rows])
            last = int(ids[-1])
            yield ids, vecs

    async def item_categories(self, *, after_id: int = 0) -> list[tuple[int, str | None]]:
        """(id, category) of the items after ``after_id`` that are not duplicates."""
        async with self.session() as s:
            q = (
                select(ItemRow.id, ItemRow.category)
                .where(ItemRow.id > after_id, ItemRow.duplicate_of.is_(None))
                .order_by(ItemRow.id)
            )
            return [(int(r[0]), r[1]) for r in (await s.execute(q)).all()]

    async def count_to_embed(self, model: str) -> int:
        async with self.session() as s:
            q = select(func.count(ItemRow.id)).where(
                (ItemRow.embedding_model.is_(None)) | (ItemRow.embedding_model != model)
            )
            return int((await s.execute(q)).scalar_one())

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
        if not values:
            return
        async with self.session.begin() as s:
            # One bulk UPDATE by primary key (executemany), not one statement per row.
            rows = [{"id": item_id, "embedding": emb, "embedding_model": model} for item_id, emb in values]
            await s.execute(update(ItemRow), rows)

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

    async def add_photo(
        self,
        user_id: int,
        embedding: np.ndarray,
        model: str,
        *,
        size: tuple[int, int] | None = None,
        whole: bool = True,
        garments: Sequence[NewGarment] = (),
    ) -> int:
        """Keep a photo's whole-picture vector and its garments' vectors (never pixels)."""
        async with self.session.begin() as s:
            row = PhotoRow(
                user_id=user_id,
                embedding=embedding.astype(np.float32).tobytes(),
                embedding_model=model,
                width=size[0] if size else None,
                height=size[1] if size else None,
                whole=whole,
            )
            row.garments = [
                GarmentRow(
                    number=g.number,
                    garment_group=g.group,
                    label=g.label[:64],
                    x0=g.box[0],
                    y0=g.box[1],
                    x1=g.box[2],
                    y1=g.box[3],
                    confidence=g.confidence,
                    embedding=g.vector.astype(np.float32).tobytes(),
                    embedding_model=model,
                )
                for g in garments
            ]
            s.add(row)
            await s.flush()
            return row.id

    async def photo(self, photo_id: int, user_id: int | None) -> StoredPhoto | None:
        """A photo's vectors and boxes, only for the user who sent it (None otherwise)."""
        async with self.session() as s:
            row = (
                await s.execute(
                    select(PhotoRow).where(PhotoRow.id == photo_id).options(selectinload(PhotoRow.garments))
                )
            ).scalar_one_or_none()
            if row is None or (user_id is not None and row.user_id != user_id):
                return None
            return StoredPhoto(
                id=row.id,
                model=row.embedding_model,
                vector=np.frombuffer(row.embedding, dtype=np.float32),
                size=(row.width, row.height) if row.width and row.height else None,
                garments=[
                    NewGarment(
                        number=g.number,
                        group=g.garment_group,
                        label=g.label,
                        box=(g.x0, g.y0, g.x1, g.y1),
                        confidence=g.confidence,
                        vector=np.frombuffer(g.embedding, dtype=np.float32),
                    )
                    for g in row.garments
                ],
            )

    async def photo_embeddings(self, user_id: int, model: str) -> tuple[np.ndarray, int]:
        """The user's history for ``model``: one vector per garment found in their photos,
        plus photos that count as a whole picture; and the history version (last row id)."""
        async with self.session() as s:
            garments = (
                await s.execute(
                    select(GarmentRow.photo_id, GarmentRow.embedding)
                    .join(PhotoRow, PhotoRow.id == GarmentRow.photo_id)
                    .where(PhotoRow.user_id == user_id, GarmentRow.embedding_model == model)
                    .order_by(GarmentRow.photo_id, GarmentRow.number)
                )
            ).all()
            wholes = (
                await s.execute(
                    select(PhotoRow.id, PhotoRow.embedding)
                    .where(PhotoRow.user_id == user_id, PhotoRow.embedding_model == model, PhotoRow.whole.is_(True))
                    .order_by(PhotoRow.id)
                )
            ).all()
        rows = sorted([*garments, *wholes], key=lambda r: r[0])
        if not rows:
            return np.empty((0, 0), dtype=np.float32), 0
        return np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows]), int(rows[-1][0]) * 1000 + len(rows)

    async def add_recommendations(
        self, user_id: int | None, photo_id: int | None, results: Sequence[tuple[int, int, float]]
    ) -> None:
        async with self.session.begin() as s:
            s.add_all(
                RecommendationRow(user_id=user_id, photo_id=photo_id, item_id=i, rank=r, score=sc)
                for i, r, sc in results
            )

    async def set_feedback(self, user_id: int, item_id: int, value: int) -> None:
        """One upsert (no select-then-insert race when two workers rate at once)."""
        insert = postgresql.insert if self.dialect == "postgresql" else sqlite.insert
        stmt = insert(FeedbackRow).values(user_id=user_id, item_id=item_id, value=value, created_at=utcnow())
        stmt = stmt.on_conflict_do_update(
            index_elements=[FeedbackRow.user_id, FeedbackRow.item_id],
            set_={"value": stmt.excluded.value, "created_at": stmt.excluded.created_at},
        )
        async with self.session.begin() as s:
            await s.execute(stmt)

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
        counts = {"photos": 0, "garments": 0, "recommendations": 0, "feedback": 0, "users": 0}
        async with self.session.begin() as s:
            uid = (
                await s.execute(
                    select(UserRow.id).where(UserRow.platform == platform, UserRow.platform_user_id == platform_user_id)
                )
            ).scalar_one_or_none()
            if uid is None:
                return counts
            photo_ids = select(PhotoRow.id).where(PhotoRow.user_id == uid).scalar_subquery()
            counts["garments"] = _rowcount(
                await s.execute(delete(GarmentRow).where(GarmentRow.photo_id.in_(photo_ids)))
            )
            for key, table, col in (
                ("recommendations", RecommendationRow, RecommendationRow.user_id),
                ("feedback", FeedbackRow, FeedbackRow.user_id),
                ("photos", PhotoRow, PhotoRow.user_id),
            ):
                counts[key] = _rowcount(await s.execute(delete(table).where(col == uid)))
            await s.execute(update(TrendRow).where(TrendRow.started_by == uid).values(started_by=None))
            counts["users"] = _rowcount(await s.execute(delete(UserRow).where(UserRow.id == uid)))
        return counts


def _rowcount(result: object) -> int:
    """Rows a DML statement touched (a CursorResult's rowcount; typed as a plain Result)."""
    return int(getattr(result, "rowcount", 0) or 0)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()
