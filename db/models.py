"""The schema. The database is the source of truth: items keep their embedding
(and a compact picture), so the vector index can always be rebuilt from here.
Users' photos are kept only as embeddings, never as pictures."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    SmallInteger,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    true,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(UTC)


# Constraint names follow one convention, so a later migration can drop or alter a
# constraint by name on every database (SQLite's batch mode needs the names too).
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Price(TypeDecorator[float]):
    """Money: NUMERIC(12, 2) in the database (exact to the cent, rounded on the way in on
    every database: SQLite keeps what it is given), a float for the app (``Item.price``)."""

    impl = Numeric(12, 2, asdecimal=False)
    cache_ok = True

    def process_bind_param(self, value: float | None, dialect: Dialect) -> float | None:
        return None if value is None else round(float(value), 2)

    def process_result_value(self, value: float | None, dialect: Dialect) -> float | None:
        return None if value is None else float(value)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class ItemRow(Base):
    __tablename__ = "items"
    # sqlite_autoincrement: ids are never reused, so a removal event or a cached id can't
    # later name another item (PostgreSQL sequences never reuse ids anyway).
    __table_args__ = (
        UniqueConstraint("source", "external_id", name="uq_item_source_external"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(64))  # "fashion-mnist", "feed:<name>", "shop:<name>"
    external_id: Mapped[str] = mapped_column(String(256))
    title: Mapped[str] = mapped_column(String(512))
    url: Mapped[str | None] = mapped_column(String(2048))
    image_url: Mapped[str | None] = mapped_column(String(2048))
    price: Mapped[float | None] = mapped_column(Price())
    currency: Mapped[str] = mapped_column(String(8), default="EUR")
    category: Mapped[str | None] = mapped_column(String(128), index=True)
    brand: Mapped[str | None] = mapped_column(String(128))
    color: Mapped[str | None] = mapped_column(String(64))
    gender: Mapped[str | None] = mapped_column(String(32))
    shop: Mapped[str | None] = mapped_column(String(128))
    tags: Mapped[str] = mapped_column(Text, default="")  # comma-separated trend tags
    image: Mapped[bytes] = mapped_column(LargeBinary)  # compact JPEG/PNG we can show and re-embed
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary)  # float32, unit length
    embedding_model: Mapped[str | None] = mapped_column(String(96), index=True)  # "<backbone>:<fingerprint>"
    duplicate_of: Mapped[int | None] = mapped_column(ForeignKey("items.id", ondelete="SET NULL"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class UserRow(Base):
    __tablename__ = "users"
    __table_args__ = (
        UniqueConstraint("platform", "platform_user_id", name="uq_user_platform"),
        {"sqlite_autoincrement": True},  # a forgotten user's id never comes back (style caches key on it)
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    platform: Mapped[str] = mapped_column(String(32))
    platform_user_id: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    photos: Mapped[list[PhotoRow]] = relationship(cascade="all, delete-orphan", passive_deletes=True)


class PhotoRow(Base):
    """The whole-picture embedding of a photo a user sent. Never the photo itself.

    ``whole``: the photo counts in the user's style as a whole picture (it was searched
    as one, or it predates garments); a photo whose garments were found counts through
    its :class:`GarmentRow` s instead, and a photo with no clothing not at all."""

    __tablename__ = "photos"
    __table_args__ = ({"sqlite_autoincrement": True},)  # photo ids version a user's history
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)
    embedding_model: Mapped[str] = mapped_column(String(96))
    width: Mapped[int | None] = mapped_column(Integer)
    height: Mapped[int | None] = mapped_column(Integer)
    whole: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    garments: Mapped[list[GarmentRow]] = relationship(
        cascade="all, delete-orphan", passive_deletes=True, order_by="GarmentRow.number"
    )


class GarmentRow(Base):
    """One garment found in a user's photo: its box, group and vector (never pixels)."""

    __tablename__ = "garments"
    __table_args__ = (UniqueConstraint("photo_id", "number", name="uq_garment_photo_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    photo_id: Mapped[int] = mapped_column(ForeignKey("photos.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(SmallInteger)  # 1 = best, as shown to the user
    garment_group: Mapped[str] = mapped_column(String(16))  # top, outerwear, dress, bottoms, shoes, bag, other
    label: Mapped[str] = mapped_column(String(64))
    x0: Mapped[float] = mapped_column(Float)
    y0: Mapped[float] = mapped_column(Float)
    x1: Mapped[float] = mapped_column(Float)
    y1: Mapped[float] = mapped_column(Float)
    confidence: Mapped[float] = mapped_column(Float)
    embedding: Mapped[bytes] = mapped_column(LargeBinary)
    embedding_model: Mapped[str] = mapped_column(String(96))


class RecommendationRow(Base):
    __tablename__ = "recommendations"
    __table_args__ = (Index("ix_rec_user_item", "user_id", "item_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    photo_id: Mapped[int | None] = mapped_column(ForeignKey("photos.id", ondelete="CASCADE"), index=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    rank: Mapped[int] = mapped_column(SmallInteger)
    score: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class FeedbackRow(Base):
    __tablename__ = "feedback"
    __table_args__ = (UniqueConstraint("user_id", "item_id", name="uq_feedback_user_item"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    value: Mapped[int] = mapped_column(SmallInteger)  # +1 like, -1 dislike
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class TrendRow(Base):
    __tablename__ = "trends"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tag: Mapped[str] = mapped_column(String(128), index=True)
    started_by: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    found: Mapped[int] = mapped_column(Integer, default=0)
    indexed: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    shops_searched: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    shops_total: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    status: Mapped[str] = mapped_column(String(16), default="running")


class OfferRow(Base):
    """The same product (near-identical picture) at another shop: price comparison.
    The item itself keeps its first shop's listing; each further shop adds one offer."""

    __tablename__ = "offers"
    __table_args__ = (UniqueConstraint("item_id", "shop", name="uq_offer_item_shop"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    shop: Mapped[str] = mapped_column(String(128))
    price: Mapped[float | None] = mapped_column(Price())
    currency: Mapped[str] = mapped_column(String(8), default="EUR")
    url: Mapped[str | None] = mapped_column(String(2048))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class TrendLeaseRow(Base):
    """Who runs the trend for a tag right now, when several workers share the database.

    The holder renews ``expires_at`` while the trend runs; a worker killed mid-trend
    leaves a lease that expires, and the next run of the tag takes it over."""

    __tablename__ = "trend_leases"

    tag: Mapped[str] = mapped_column(String(128), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))  # "<host>:<pid>:<random>"
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ItemEventRow(Base):
    """An item left the searchable catalogue (removed, or marked a duplicate): every worker
    follows these by id and drops the item from its index. No foreign key: the item's row
    may be gone."""

    __tablename__ = "item_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))  # "removed", "duplicate"
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
