"""Prices and currencies as shops write them: ``1.299,00 €``, ``$1,299.00``, ``CHF 49.90``, ``1 299,00 €``."""

from __future__ import annotations

import math
import re
from typing import Any

MAX_PRICE = 1_000_000.0
_CURRENCY_SYMBOLS = {"€": "EUR", "£": "GBP", "$": "USD", "¥": "JPY", "₹": "INR", "₽": "RUB", "zł": "PLN", "kr": "SEK"}
_CODES = "EUR|USD|GBP|CHF|SEK|NOK|DKK|PLN|CZK|HUF|JPY|CNY|CAD|AUD|NZD|INR|RUB|TRY|BRL|MXN"
PRICE_LIKE = re.compile(rf"(?:[€£$¥₹]|\b(?:{_CODES})\b)\s*\d|\d[\d.,]*\s*(?:[€£$¥₹]|\b(?:{_CODES})\b)")
_NUMBER = re.compile(r"\d+(?:[.,\u00a0\u202f\u2009' ’]\d+)*")
_STRICT_PRICE = re.compile(rf"^\s*(?:[€£$¥₹]|{_CODES})?\s*\d[\d.,\u00a0\u202f' ]*\s*(?:[€£$¥₹]|{_CODES})?\s*$", re.I)


def parse_price(value: Any, *, strict: bool = False) -> float | None:
    """A positive, plausible price or None. Handles ``1.299,00 €``, ``$1,299.00``, ``29,90``,
    numbers; refuses ``call us``, ``-5``, ``0``, NaN, booleans. ``strict`` (for structured
    fields) also refuses text that is more than a number and a currency."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        plain = float(value)
        return plain if math.isfinite(plain) and 0 < plain < MAX_PRICE else None
    if not isinstance(value, str):
        return None
    text = value.strip()[:120]
    if strict and not _STRICT_PRICE.match(text):
        return None
    match = _NUMBER.search(text)
    if match is None:
        return None
    before = text[: match.start()].rstrip(" \u00a0€£$¥₹").upper()
    for code in _CODES.split("|"):
        before = before.removesuffix(code).rstrip()
    if before.endswith(("-", "−", "–")):
        return None  # a negative amount
    number = _number_from(match.group(0))
    if number is None or not 0 < number < MAX_PRICE:
        return None
    return number


def _number_from(raw: str) -> float | None:
    """'1.299,00' -> 1299.0; '1,299.00' -> 1299.0; '29,90' -> 29.9; '1 234' -> 1234.0."""
    parts = re.split(r"([.,\u00a0\u202f\u2009' ’])", raw)
    digits, seps = parts[0::2], parts[1::2]
    if digits[0].startswith("0") and len(digits[0]) > 1:
        return None  # '0800 123456' is a phone number
    # Spaces and apostrophes only group thousands; a group that is not 3 digits ends the number.
    for i, sep in enumerate(seps):
        if sep not in ".," and len(digits[i + 1]) != 3:
            digits, seps = digits[: i + 1], seps[:i]
            break
    decimal_sep: str | None = None
    point_seps = [s for s in seps if s in ".,"]
    if point_seps:
        last = point_seps[-1]
        last_index = max(i for i, s in enumerate(seps) if s == last)
        tail = digits[last_index + 1]
        if len(set(point_seps)) > 1 or (point_seps.count(last) == 1 and len(tail) != 3):
            decimal_sep = last
    integer, fraction = "", ""
    for i, d in enumerate(digits):
        if i > 0 and seps[i - 1] == decimal_sep and i - 1 == max(j for j, s in enumerate(seps) if s == decimal_sep):
            fraction = d
            break
        integer += d
    try:
        return float(f"{integer}.{fraction}" if fraction else integer)
    except ValueError:
        return None


def parse_currency(value: Any, price_text: Any = None) -> str | None:
    """An ISO 4217 code from a currency field, else from a symbol or code in the price text."""
    if isinstance(value, str) and re.fullmatch(r"\s*[A-Za-z]{3}\s*", value):
        return value.strip().upper()
    if isinstance(value, str) and value.strip() in _CURRENCY_SYMBOLS:
        return _CURRENCY_SYMBOLS[value.strip()]
    if isinstance(price_text, str):
        found = re.search(rf"\b({_CODES})\b", price_text, re.I)
        if found:
            return found.group(1).upper()
        for symbol, code in _CURRENCY_SYMBOLS.items():
            if len(symbol) == 1 and symbol in price_text:
                return code
    return None
