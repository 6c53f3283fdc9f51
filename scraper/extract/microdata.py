"""Microdata: ``itemtype=.../Product`` scopes with ``itemprop`` name, image, price, offers, ..."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bs4 import BeautifulSoup, Tag

from scraper.extract.fields import MAX_LINKS, PRODUCT_TYPES
from scraper.extract.selectors import img_src


def _itemprop_value(el: Tag) -> str | None:
    if el.has_attr("content"):
        return str(el["content"])
    if el.name in ("img", "audio", "embed", "iframe", "source", "video"):
        return img_src(el) if el.name == "img" else (str(el["src"]) if el.has_attr("src") else None)
    if el.name in ("a", "area", "link"):
        return str(el["href"]) if el.has_attr("href") else None
    if el.name in ("data", "meter") and el.has_attr("value"):
        return str(el["value"])
    if el.name == "time" and el.has_attr("datetime"):
        return str(el["datetime"])
    return el.get_text(" ", strip=True)


def _microdata_props(scope: Tag, depth: int = 0) -> dict[str, list[Any]]:
    """itemprop -> values within one itemscope; nested scopes become dicts and are not entered."""
    props: dict[str, list[Any]] = {}
    stack = list(reversed([c for c in scope.children if isinstance(c, Tag)]))
    while stack:
        el = stack.pop()
        names = str(el.get("itemprop", "") or "").split() if el.has_attr("itemprop") else []
        if el.has_attr("itemscope"):
            if names and depth < 4:
                nested = _microdata_props(el, depth + 1)
                for name in names:
                    props.setdefault(name, []).append(nested)
            continue  # a nested item's props are not ours
        for name in names:
            props.setdefault(name, []).append(_itemprop_value(el))
        stack.extend(reversed([c for c in el.children if isinstance(c, Tag)]))
    return props


def _is_product_scope(el: Tag) -> bool:
    types = str(el.get("itemtype", "") or "").split()
    return any(t.rstrip("/").rsplit("/", 1)[-1].lower() in PRODUCT_TYPES for t in types)


def _first(props: Mapping[str, list[Any]], name: str) -> Any:
    values = props.get(name) or []
    return values[0] if values else None


def _microdata_product_fields(scope: Tag) -> dict[str, Any]:
    props = _microdata_props(scope)
    price: Any = _first(props, "price")
    currency: Any = _first(props, "priceCurrency")
    for offer in props.get("offers", []):
        if isinstance(offer, dict) and price is None:
            price = _first(offer, "price") or _first(offer, "lowPrice")
            currency = currency or _first(offer, "priceCurrency")
    brand = _first(props, "brand")
    if isinstance(brand, dict):
        brand = _first(brand, "name")
    return {
        "title": _first(props, "name"),
        "url": _first(props, "url"),
        "image_url": [v for v in props.get("image", []) if isinstance(v, str)],
        "price": price,
        "currency": currency,
        "brand": brand,
        "color": _first(props, "color"),
        "description": _first(props, "description"),
        "sku": _first(props, "sku"),
    }


def microdata_products(soup: BeautifulSoup) -> list[dict[str, Any]]:
    return [_microdata_product_fields(el) for el in soup.find_all(itemscope=True) if _is_product_scope(el)][:MAX_LINKS]
