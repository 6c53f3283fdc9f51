"""What every source produces: the product record, and the paranoid cleaning and merging of raw fields."""

from __future__ import annotations

import hashlib
import html as html_lib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

from yarl import URL

from scraper.extract.price import parse_currency, parse_price

MAX_TITLE = 200
MAX_DESCRIPTION = 1000
MAX_SHORT = 64  # brand, colour, sku
MAX_URL = 2048
MAX_LINKS = 500
MAX_PRICE = 1_000_000.0

PRODUCT_TYPES = frozenset({"product", "productgroup", "individualproduct"})
_WS = re.compile(r"\s+")
_TAGS = re.compile(r"<[^>]{0,2000}>")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_C0_AND_SPACE = "".join(chr(i) for i in range(0x21))


@dataclass(frozen=True)
class ProductInfo:
    """One product as a shop describes it. ``url`` and ``image_url`` are absolute http(s)."""

    title: str
    url: str
    image_url: str
    price: float | None = None
    currency: str | None = None  # ISO 4217, upper case
    brand: str | None = None
    color: str | None = None
    description: str | None = None
    shop: str = ""
    sku: str | None = None

    @property
    def external_id(self) -> str:
        """Stable id within the shop (fits the catalogue's 256-character column): the product URL."""
        return self.url if len(self.url) <= 256 else "sha256:" + hashlib.sha256(self.url.encode()).hexdigest()


@dataclass(frozen=True)
class SearchResult:
    """What a search page offers: complete products (no product page needed) and links to follow."""

    products: list[ProductInfo] = field(default_factory=list)
    links: list[str] = field(default_factory=list)
    source: str = "none"  # "selectors" | "json-ld" | "microdata" | "grid" | "none"
    next_url: str | None = None  # the next results page (absolute http(s)), if the page names one


def clean_text(value: Any, limit: int) -> str | None:
    """Whitespace-collapsed text without tags or control characters, truncated; None if empty."""
    if isinstance(value, list):
        value = next((v for v in value if isinstance(v, str) and v.strip()), None)
    if isinstance(value, dict):
        value = value.get("name") or value.get("@value")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return None
    text = value[: limit * 20]
    if "&" in text:
        text = html_lib.unescape(text)
    if "<" in text:
        text = _TAGS.sub(" ", text)
    text = _WS.sub(" ", _CONTROL.sub("", text)).strip()
    if not text:
        return None
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def safe_url(raw: Any, base: str) -> str | None:
    """Absolute http(s) URL or None. ``javascript:``, ``data:``, ``mailto:``, garbage -> None."""
    if isinstance(raw, dict):
        raw = raw.get("url") or raw.get("contentUrl") or raw.get("@id")
    if isinstance(raw, list):
        raw = next((r for r in raw if isinstance(r, str)), None)
    if not isinstance(raw, str):
        return None
    raw = raw.strip(_C0_AND_SPACE).replace("\t", "").replace("\n", "").replace("\r", "")  # as browsers do
    if not raw or len(raw) > MAX_URL:
        return None
    try:
        url = URL(urljoin(base, raw))
    except (ValueError, TypeError):
        return None
    if url.scheme not in ("http", "https") or not url.host:
        return None
    text = str(url.with_fragment(None))
    return text if len(text) <= MAX_URL else None


# ---- field merging --------------------------------------------------------------------------
_FIELDS = ("title", "url", "image_url", "price", "currency", "brand", "color", "description", "sku")


def clean_fields(raw: Mapping[str, Any], base: str, *, strict_price: bool) -> dict[str, Any]:
    """Validate one source's raw fields; invalid ones are dropped so a later source can fill them."""
    out: dict[str, Any] = {}
    if (title := clean_text(raw.get("title"), MAX_TITLE)) is not None:
        out["title"] = title
    if (url := safe_url(raw.get("url"), base)) is not None:
        out["url"] = url
    for candidate in as_list(raw.get("image_url")):
        if (image := safe_url(candidate, base)) is not None:
            out["image_url"] = image
            break
    price_raw = raw.get("price")
    for candidate in as_list(price_raw):
        if (price := parse_price(candidate, strict=strict_price)) is not None:
            out["price"] = price
            currency = parse_currency(raw.get("currency"), candidate if isinstance(candidate, str) else None)
            if currency:
                out["currency"] = currency
            break
    if "currency" not in out and (currency := parse_currency(raw.get("currency"))) is not None:
        out["currency"] = currency
    limits = (("brand", MAX_SHORT), ("color", MAX_SHORT), ("description", MAX_DESCRIPTION), ("sku", MAX_SHORT))
    for key, limit in limits:
        if (text := clean_text(raw.get(key), limit)) is not None:
            out[key] = text
    return out


def merge_fields(*sources: Mapping[str, Any]) -> dict[str, Any]:
    """First source wins per field; a price and its currency travel together."""
    merged: dict[str, Any] = {}
    for source in sources:
        if "price" not in merged and "price" in source:
            merged["price"] = source["price"]
            if "currency" in source:
                merged["currency"] = source["currency"]
        for key in _FIELDS:
            if key not in merged and key in source:
                merged[key] = source[key]
    return merged


def as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def to_info(fields: Mapping[str, Any], shop: str) -> ProductInfo | None:
    if not fields.get("title") or not fields.get("url") or not fields.get("image_url"):
        return None
    return ProductInfo(
        title=fields["title"],
        url=fields["url"],
        image_url=fields["image_url"],
        price=fields.get("price"),
        currency=fields.get("currency"),
        brand=fields.get("brand"),
        color=fields.get("color"),
        description=fields.get("description"),
        shop=shop,
        sku=fields.get("sku"),
    )


def same_page(a: str | None, b: str) -> bool:
    if not a:
        return False
    return a.rstrip("/") == b.rstrip("/")


def unique_links(hrefs: Iterable[str | None] | Iterable[Any], page_url: str) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    for href in hrefs:
        url = safe_url(href, page_url)
        if url and url not in seen and not same_page(url, page_url):
            seen.add(url)
            out.append(url)
        if len(out) >= MAX_LINKS:
            break
    return out
