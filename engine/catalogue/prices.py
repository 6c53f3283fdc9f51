"""One price parser for every feed: the scraper's (``scraper.extract.price``), strict.

Feeds and shop pages write prices the same ways (``1.299,00 EUR``, ``CHF 49.90``,
``1 299,00 €``, ``$19.99``), so the catalogue reuses the scraper's parser instead of
keeping a second, weaker one. A feed's ``price`` is a structured field, so it is
parsed strictly: a number and a currency (symbol or ISO code, either side) and
nothing else; ``1e12``, ``call us``, ``-5`` and ``0`` are errors, not guesses.
"""

from __future__ import annotations

from typing import Any

from scraper.extract.price import MAX_PRICE, parse_currency, parse_price

DEFAULT_CURRENCY = "EUR"  # a bare number (``19.99``): the Merchant spec wants a code, most feeds here are EUR


class BadPrice(ValueError):
    """A price a feed row cannot be ingested with; the message says why, for the report."""


def feed_price(raw: Any, *, default_currency: str = DEFAULT_CURRENCY) -> tuple[float | None, str]:
    """``(amount, ISO currency)`` of a feed's price field; ``(None, default)`` when empty.

    >>> feed_price("1.299,00 EUR"), feed_price("CHF 49.90"), feed_price("1 299,00 €")
    ((1299.0, 'EUR'), (49.9, 'CHF'), (1299.0, 'EUR'))
    """
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None, default_currency
    if isinstance(raw, bool) or not isinstance(raw, (int, float, str)):
        raise BadPrice(f"price {str(raw)[:40]!r} is not a number")
    amount = parse_price(raw, strict=True)
    if amount is None:
        if isinstance(raw, str) and any(ch.isdigit() for ch in raw):
            raise BadPrice(f"price {raw[:40]!r} is not a plausible amount (positive, below {MAX_PRICE:,.0f})")
        raise BadPrice(f"price {str(raw)[:40]!r} is not a number")
    currency = parse_currency(None, raw) if isinstance(raw, str) else None
    return round(amount, 2), currency or default_currency
