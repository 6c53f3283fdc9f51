"""Errors whose message is meant for the person using the bot.

Part of the base layer: imports nothing of ours, so every room (vision, catalogue,
db, scraper, front-ends) raises and catches one family.
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base class: ``str(err)`` is a friendly, complete sentence."""


class BadImage(ServiceError, ValueError):
    """An image we cannot use. ``str(err)`` is written for the person who sent it.

    A ``ValueError`` too, so code that validates input generically still catches it."""


class BackboneUnavailable(RuntimeError):
    """The model's weights (or its head file) can't be had here; the message says what to
    do. An operator's error at start-up, not a user's: no ``ServiceError``."""


class EmptyCatalogue(ServiceError):
    def __init__(self) -> None:
        super().__init__(
            "The catalogue is empty, so there is nothing to recommend yet. "
            "Run `fashionbot ingest fashion-mnist` (or `fashionbot demo`) first."
        )


class CatalogueFilling(EmptyCatalogue):
    """Empty, but an ingest is filling it (the demo's first minute): a short wait, not a
    missing step, so the user reads that rather than the operator's instructions."""

    def __init__(self) -> None:
        ServiceError.__init__(self, "The catalogue is still being filled — try again in a few seconds.")


class IndexOutOfDate(ServiceError):
    """The saved index belongs to another backbone; recommending from it would be nonsense."""


class UnknownItem(ServiceError):
    def __init__(self, item_id: int) -> None:
        super().__init__(f"I don't know item {item_id} (it may have been removed).")


__all__ = [
    "BackboneUnavailable",
    "BadImage",
    "CatalogueFilling",
    "EmptyCatalogue",
    "IndexOutOfDate",
    "ServiceError",
    "UnknownItem",
]
