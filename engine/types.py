"""Platform-neutral answers of the service (base layer: imports nothing of ours).

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
    offers: tuple[Offer, ...] = ()  # the same product at other shops, cheapest first


@dataclass(frozen=True)
class Offer:
    """The same product at another shop (price comparison)."""

    shop: str
    price: float | None
    currency: str
    url: str | None


GARMENT_GROUPS = ("top", "outerwear", "dress", "bottoms", "shoes", "bag", "other")


@dataclass(frozen=True)
class Box:
    """A region of a photo in relative coordinates (0..1, origin top left), so it fits
    the photo at whatever size a front-end shows it."""

    x0: float
    y0: float
    x1: float
    y1: float

    def __post_init__(self) -> None:
        if not (0.0 <= self.x0 < self.x1 <= 1.0 and 0.0 <= self.y0 < self.y1 <= 1.0):
            raise ValueError(f"not a box inside the photo: {self}")

    def pixels(self, width: int, height: int) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) in pixels of a ``width`` × ``height`` picture."""
        return (
            round(self.x0 * width),
            round(self.y0 * height),
            max(round(self.x0 * width) + 1, round(self.x1 * width)),
            max(round(self.y0 * height) + 1, round(self.y1 * height)),
        )


@dataclass(frozen=True)
class Garment:
    """One garment found in a photo (or the region the user drew), with its results.

    ``number`` is what the front-ends show on the photo and in buttons (1 = best);
    ``group`` is one of :data:`GARMENT_GROUPS`; ``label`` a plain word ("coat")."""

    number: int
    group: str
    label: str
    box: Box
    confidence: float
    items: list[ScoredItem] = field(default_factory=list)


@dataclass(frozen=True)
class Recommendation:
    """The answer to a photo.

    ``items`` are the results shown first: the first garment's, or the whole photo's
    when ``garment`` is None. ``garments`` lists every garment found, the most prominent
    first (each with its items). ``no_garment`` means nothing wearable was seen: ``items``
    is empty and the front-end says so, offering a whole-photo search (``switch`` with
    ``garment=None``) instead of random items."""

    backbone: str
    items: list[ScoredItem]
    request_id: int | None = None  # id of the stored query photo, when a user sent it
    garments: list[Garment] = field(default_factory=list)
    garment: int | None = None  # number of the garment ``items`` belong to; None: the whole photo
    no_garment: bool = False
    photo_size: tuple[int, int] | None = None  # (width, height) of the decoded photo, to draw boxes

    @property
    def current(self) -> Garment | None:
        """The garment whose items are shown, if any."""
        return next((g for g in self.garments if g.number == self.garment), None)


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
class IngestSnapshot:
    """Where an ingest stands (``engine.catalogue.ingest.IngestStatus`` keeps it); here in
    the base layer so :class:`About` can carry it to the front-ends. ``state``:
    ``"running"``, ``"done"``, ``"failed"`` or ``"cancelled"``."""

    kind: str  # "fashion-mnist", "feed", "reindex"
    state: str
    total: int | None  # rows expected, when known
    done: int  # rows handled (added, skipped or bad)
    added: int
    bad: int
    rate: float  # rows a second since the start
    elapsed: float  # seconds
    eta: float | None  # seconds left, when the total is known
    error: str | None = None
    # The index's size when this ingest started, when it adds to the live index: what the
    # index will hold is then base + added + remaining, counted together on the loop, while
    # the index itself grows a moment before the ingest counts the rows (a page polling in
    # between read "128 of 428" for "128 of 300").
    base: int | None = None

    @property
    def fraction(self) -> float | None:
        return None if not self.total else min(1.0, self.done / self.total)

    @property
    def remaining(self) -> int | None:
        """Rows still to handle, when the total is known."""
        return None if self.total is None else max(0, self.total - self.done)


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
    # This process's latest ingest (the demo fills its catalogue in the background while
    # the chat answers); None when it has run none.
    ingest: IngestSnapshot | None = None

    @property
    def filling(self) -> bool:
        """An ingest of this process is still adding items: photos are answered from the
        ``index_size`` items indexed so far."""
        i = self.ingest
        return i is not None and i.state == "running" and (i.remaining is None or i.remaining > 0)

    @property
    def expected(self) -> int | None:
        """Items the index will hold when the running ingest is done (what is indexed plus
        the rows it has still to handle), when known; None when nothing is being added."""
        i = self.ingest
        if not self.filling or i is None or i.remaining is None:
            return None
        if i.base is not None:  # other workers' items may land too: never below what is there
            return max(self.index_size, i.base + i.added + i.remaining)
        return self.index_size + i.remaining


@dataclass
class IngestReport:
    """What an ingest did: rows added, rows already there, bad rows with their reason."""

    added: int = 0
    skipped_existing: int = 0
    bad_rows: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)
    total: int | None = None  # rows expected, when known up front

    def summary(self) -> str:
        return f"{self.added} added, {self.skipped_existing} already in the catalogue, {len(self.bad_rows)} bad rows"
