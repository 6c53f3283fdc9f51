"""Platform-neutral answers of `FashionService`.

Front-ends render these; they never see ORM rows, tensors or index labels.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class UserRef:
    """Who is asking: a platform name ("telegram", "discord", "web", "cli") and the
    platform's own user id, kept as text so every platform fits."""

    platform: str
    user_id: str


@dataclass(frozen=True)
class Item:
    """A catalogue item as front-ends show it."""

    id: int
    title: str
    url: str | None  # the shop's product page, when the item has one
    price: float | None
    currency: str
    category: str | None
    brand: str | None = None
    color: str | None = None
    shop: str | None = None
    image_url: str | None = None  # where the picture came from (informational only)
    tags: tuple[str, ...] = ()

    @property
    def price_text(self) -> str:
        """Price as people read it, or an honest dash when unknown."""
        if self.price is None:
            return "—"
        symbol = {"EUR": "€", "USD": "$", "GBP": "£"}.get(self.currency.upper())
        return f"{symbol}{self.price:,.2f}" if symbol else f"{self.price:,.2f} {self.currency}"


@dataclass(frozen=True)
class ScoredItem:
    """One result: the item, its 1-based rank and cosine similarity (1 = identical)."""

    item: Item
    rank: int
    score: float
    offers: tuple["Offer", ...] = ()  # the same product at other shops, cheapest first


@dataclass(frozen=True)
class Offer:
    """The same product at another shop (price comparison)."""

    shop: str
    price: float | None
    currency: str
    url: str | None


@dataclass(frozen=True)
class Recommendation:
    """The answer to a photo: up to k items, most similar first."""

    backbone: str
    items: list[ScoredItem]
    request_id: int | None = None  # id of the stored query photo, when a user sent it


@dataclass(frozen=True)
class StyleCluster:
    name: str
    share: float  # fraction of the user's photos in this cluster, 0..1
    size: int
    items: list[ScoredItem]  # nearest catalogue items to the centroid


@dataclass(frozen=True)
class StyleSummary:
    """A user's style: clusters (representative first) or a cold start."""

    photo_count: int
    needed: int  # photos still needed before a profile can be built (0 when built)
    clusters: list[StyleCluster] = field(default_factory=list)
    popular: list[ScoredItem] = field(default_factory=list)  # cold-start suggestions
    collage_jpeg: bytes | None = None

    @property
    def cold_start(self) -> bool:
        return not self.clusters


@dataclass(frozen=True)
class TrendProgress:
    """A snapshot of a running (or finished) trend, for a message edited in place."""

    tag: str
    shops_searched: int = 0
    shops_total: int = 0
    found: int = 0
    indexed: int = 0
    skipped: int = 0
    done: bool = False
    error: str | None = None
    best: list[ScoredItem] = field(default_factory=list)


@dataclass(frozen=True)
class TrendInfo:
    tag: str
    item_count: int
    last_run: datetime | None


@dataclass(frozen=True)
class About:
    backbone: str
    backbone_note: str  # e.g. why auto fell back
    weights_source: str
    weights_fingerprint: str
    dimension: int
    catalogue_size: int
    index_size: int
    index_state: str
    precision: str  # e.g. "fp32", or "fp32+bf16 (bf16 from stage 7 of 18)"
    head: str = ""  # the trained head, described; "" when the frozen backbone's features are used
    batch_size: int = 0  # images per model batch (measured at start-up unless set); 0: unknown
