"""The typed boundary between the front-ends and the engine.

Front-ends (``bot/telegram``, ``bot/discord``, ``bot/web``, the shared flows) are typed
against :class:`FashionAPI` and nothing else of the engine, so a new front-end needs
only this file, ``engine.types`` and ``engine.errors``. :class:`AdminAPI` adds what the
operator's CLI and the demo need (ingest, reindex). ``engine.service.FashionService``
implements both.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Protocol, runtime_checkable

from engine.types import (
    About,
    Box,
    IngestReport,
    Item,
    Recommendation,
    ScoredItem,
    StyleSummary,
    TrendInfo,
    TrendProgress,
    UserRef,
)


class Progress(Protocol):
    """What long operations report to: a tqdm bar fits. ``total`` is set once known
    (so a bar can show an ETA), ``update(n)`` after every ``n`` rows handled."""

    total: float | None

    def update(self, n: float | None = 1) -> bool | None: ...


@runtime_checkable
class FashionAPI(Protocol):
    """What a chat front-end may ask. Every method is safe to call from the event loop:
    model, index and parsing work run off it. Errors a user should read are
    ``engine.errors.ServiceError`` (``BadImage`` among them)."""

    async def recommend(
        self,
        image: bytes,
        user: UserRef | None = None,
        k: int | None = None,
        *,
        whole_photo: bool = False,
        region: Box | None = None,
    ) -> Recommendation:
        """Garments in the photo, each with its k items (best garment first). ``whole_photo``
        searches the whole picture; ``region`` searches a box the user drew."""
        ...

    async def switch(
        self, user: UserRef | None, request_id: int, garment: int | None, k: int | None = None
    ) -> Recommendation:
        """The results of another garment of an earlier photo (``None``: the whole photo),
        from what the service kept of it (vectors and boxes, never the photo)."""
        ...

    async def style(self, user: UserRef) -> StyleSummary: ...

    def trend(self, tag: str, user: UserRef | None = None) -> AsyncIterator[TrendProgress]:
        """Live progress of a shop search for ``tag``; the last snapshot has ``done=True``."""
        ...

    async def trends(self) -> list[TrendInfo]: ...

    async def feedback(self, user: UserRef, item_id: int, value: int) -> None: ...

    async def forget(self, user: UserRef) -> dict[str, int]: ...

    async def about(self) -> About: ...

    async def item(self, item_id: int) -> Item: ...

    async def item_image(self, item_id: int) -> bytes: ...

    async def popular(self, k: int = 10) -> list[ScoredItem]: ...

    async def claim_role(self, name: str) -> bool:
        """Take a role one process of all the workers sharing the database may play (e.g.
        Telegram long polling); False when another process holds it. Held until close."""
        ...


@runtime_checkable
class AdminAPI(FashionAPI, Protocol):
    """The operator's extra verbs (CLI, demo): fill and rebuild the catalogue."""

    async def ingest_fashion_mnist(
        self, *, split: str = "train", limit: int | None = None, progress: Progress | None = None
    ) -> IngestReport:
        """Add Fashion-MNIST products not in the catalogue yet."""
        ...

    async def ingest_feed(self, path: Path, *, progress: Progress | None = None) -> IngestReport:
        """Add a product feed (Merchant CSV / JSON lines, Kaggle layout); bad rows are reported."""
        ...

    async def reindex(self, progress: Progress | None = None) -> int: ...

    async def catalogue_size(self) -> int: ...

    async def close(self) -> None: ...
