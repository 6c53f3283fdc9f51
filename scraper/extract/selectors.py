"""Per-shop CSS selectors: the explicit override of whoever configured the shop."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bs4 import BeautifulSoup, Tag

from scraper.extract.fields import MAX_LINKS, unique_links
from scraper.extract.price import parse_currency

SELECTOR_KEYS = frozenset(
    {"product_link", "next", "title", "price", "currency", "image", "brand", "color", "description"}
)


def img_src(el: Tag) -> str | None:
    """The real picture of an <img>: src unless it is a lazy-loading placeholder, else data-* or srcset."""
    src = el.get("src")
    if isinstance(src, str) and src.strip() and not src.strip().lower().startswith("data:"):
        return src
    for attr in ("data-src", "data-original", "data-lazy-src", "data-zoom-image"):
        value = el.get(attr)
        if isinstance(value, str) and value.strip():
            return value
    srcset = el.get("srcset") or el.get("data-srcset")
    if isinstance(srcset, str) and srcset.strip():
        return _best_from_srcset(srcset)
    return src if isinstance(src, str) else None


def _best_from_srcset(srcset: str) -> str | None:
    best: tuple[float, str] | None = None
    for candidate in srcset.split(","):
        bits = candidate.strip().split()
        if not bits:
            continue
        size = 1.0
        if len(bits) > 1:
            try:
                size = float(bits[1].rstrip("wxWX"))
            except ValueError:
                size = 1.0
        if best is None or size > best[0]:
            best = (size, bits[0])
    return best[1] if best else None


def select_value(soup: BeautifulSoup, selector: str | None, *, image: bool = False) -> str | None:
    if not selector:
        return None
    try:
        el = soup.select_one(selector)
    except Exception:
        return None
    if el is None:
        return None
    if image:
        if el.name != "img" and (inner := el.find("img")) is not None and not el.has_attr("content"):
            el = inner
        if el.name == "img":
            return img_src(el)
        for attr in ("content", "href", "src", "data-src"):
            if el.has_attr(attr):
                return str(el[attr])
        return None
    if el.has_attr("content"):
        return str(el["content"])
    return el.get_text(" ", strip=True)


def selector_fields(soup: BeautifulSoup, selectors: Mapping[str, str]) -> dict[str, Any]:
    price_text = select_value(soup, selectors.get("price"))
    return {
        "title": select_value(soup, selectors.get("title")),
        "image_url": select_value(soup, selectors.get("image"), image=True),
        "price": price_text,
        "currency": select_value(soup, selectors.get("currency")) or parse_currency(None, price_text),
        "brand": select_value(soup, selectors.get("brand")),
        "color": select_value(soup, selectors.get("color")),
        "description": select_value(soup, selectors.get("description")),
    }


def selector_links(soup: BeautifulSoup, selector: str, page_url: str) -> list[str]:
    try:
        elements = soup.select(selector, limit=MAX_LINKS * 2)
    except Exception:
        return []
    return unique_links((_href_of(el) for el in elements), page_url)


def _href_of(el: Tag) -> str | None:
    if el.name != "a":
        el = el.find("a", href=True) or el.find_parent("a", href=True) or el
    href = el.get("href")
    return href if isinstance(href, str) else None
