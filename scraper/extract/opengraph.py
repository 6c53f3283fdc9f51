"""OpenGraph and Twitter cards: ``og:title``, ``og:image``, ``product:price:amount``/``currency``."""

from __future__ import annotations

from typing import Any

from bs4 import BeautifulSoup


def _meta(soup: BeautifulSoup) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for tag in soup.find_all("meta"):
        key = tag.get("property") or tag.get("name")
        if isinstance(key, str) and tag.has_attr("content"):
            out.setdefault(key.strip().lower(), []).append(str(tag["content"]))
    return out


def opengraph_fields(soup: BeautifulSoup) -> dict[str, Any]:
    meta = _meta(soup)

    def first(*keys: str) -> str | None:
        for key in keys:
            if meta.get(key):
                return meta[key][0]
        return None

    image_keys = ("og:image", "og:image:url", "og:image:secure_url", "twitter:image")
    images = [v for key in image_keys for v in meta.get(key, [])]
    return {
        "title": first("og:title", "twitter:title"),
        "url": first("og:url"),
        "image_url": images,
        "price": first("product:price:amount", "og:price:amount"),
        "currency": first("product:price:currency", "og:price:currency"),
        "brand": first("product:brand", "og:brand"),
        "color": first("product:color"),
        "description": first("og:description", "description"),
    }
