"""The feeds' price parser (engine.catalogue.prices): the scraper's parser, strict."""

from __future__ import annotations

import pytest

from engine.catalogue.ingest.readers.merchant_feed import merchant_row
from engine.catalogue.ingest.rows import Row
from engine.catalogue.prices import BadPrice, feed_price


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1.299,00 EUR", (1299.00, "EUR")),
        ("CHF 49.90", (49.90, "CHF")),
        ("1 299,00 €", (1299.00, "EUR")),
        ("1\u00a0299,00 €", (1299.00, "EUR")),  # a no-break space groups thousands too
        ("19.99 USD", (19.99, "USD")),
        ("$19.99", (19.99, "USD")),
        ("€19,99", (19.99, "EUR")),
        ("19.99", (19.99, "EUR")),  # a bare number: the default currency
        ("1,299.00 GBP", (1299.00, "GBP")),
        ("49.90 eur", (49.90, "EUR")),
        ("15", (15.0, "EUR")),
        (15, (15.0, "EUR")),
        (19.5, (19.5, "EUR")),
    ],
)
def test_feed_prices(raw, expected) -> None:
    assert feed_price(raw) == expected


@pytest.mark.parametrize("raw", [None, "", "   "])
def test_no_price_is_allowed(raw) -> None:
    assert feed_price(raw) == (None, "EUR")


@pytest.mark.parametrize("raw", ["call us", "-5", "0", "1e12", "19.99 EUR or best offer", "2000000 EUR", True, [1]])
def test_garbage_is_a_clear_error(raw) -> None:
    with pytest.raises(BadPrice, match="price"):
        feed_price(raw)


def test_the_feed_reader_uses_it(tmp_path) -> None:
    row = merchant_row(
        2, {"id": "a", "title": "Coat", "image_link": "a.jpg", "price": "1.299,00 EUR"}, "feed:x", tmp_path
    )
    assert isinstance(row, Row) and (row.item.price, row.item.currency) == (1299.0, "EUR")
    bad = merchant_row(3, {"id": "b", "title": "Coat", "image_link": "a.jpg", "price": "call us"}, "feed:x", tmp_path)
    assert bad == (3, "price 'call us' is not a number")
