"""Pages without structured data: an ``<h1>``, a product-looking ``<img>``, a "price" element;
on search pages, repeated cards holding a link, a picture and a price."""

from __future__ import annotations

import re
from typing import Any

from bs4 import BeautifulSoup, Tag

from scraper.extract.fields import unique_links
from scraper.extract.price import PRICE_LIKE, parse_currency, parse_price
from scraper.extract.selectors import img_src

_NOT_PRODUCT_IMG = re.compile(r"logo|icon|sprite|banner|avatar|pixel|tracking|placeholder|spinner", re.I)


def heuristic_fields(soup: BeautifulSoup) -> dict[str, Any]:
    h1 = soup.find("h1")
    title = h1.get_text(" ", strip=True) if h1 else (soup.title.get_text(" ", strip=True) if soup.title else None)
    area = soup.find("main") or soup.find("article") or soup.body or soup
    images = []
    for img in area.find_all("img", limit=50):
        src = img_src(img)
        hint = f"{src} {img.get('class', '')} {img.get('alt', '')} {img.get('id', '')}"
        if src and not _NOT_PRODUCT_IMG.search(hint) and not src.lower().split("?")[0].endswith(".svg"):
            images.append(src)
    price_text = None
    for el in area.find_all(class_=re.compile("price", re.I), limit=20):
        text = el.get_text(" ", strip=True)
        if parse_price(text) is not None:
            price_text = text
            break
    return {"title": title, "image_url": images[:5], "price": price_text, "currency": parse_currency(None, price_text)}


def grid_links(soup: BeautifulSoup, page_url: str) -> list[str]:
    """Repeated cards (same tag and class) each holding a link, a picture and a price-like text."""
    cards: dict[int, tuple[Tag, list[Tag]]] = {}
    is_card: dict[int, bool] = {}  # each ancestor is examined once, however many links it holds

    def card_like(node: Tag) -> bool:
        key = id(node)
        if key not in is_card:
            is_card[key] = (node.name == "img" or node.find("img") is not None) and bool(
                PRICE_LIKE.search(node.get_text(" "))
            )
        return is_card[key]

    for a in soup.find_all("a", href=True, limit=2000):
        node: Tag | None = a
        for _ in range(5):
            if node is None or node.name in ("body", "html", "[document]"):
                break
            if card_like(node):
                cards.setdefault(id(node), (node, []))[1].append(a)
                break
            node = node.parent
    groups: dict[tuple[str, tuple[str, ...]], list[tuple[Tag, list[Tag]]]] = {}
    for node, anchors in cards.values():
        signature = (node.name, tuple(sorted(node.get("class") or [])))
        groups.setdefault(signature, []).append((node, anchors))
    repeated = [g for g in groups.values() if len(g) >= 2]
    if not repeated:
        return []
    best = max(repeated, key=len)
    hrefs = []
    for _node, anchors in best:
        with_img = [a for a in anchors if a.find("img") is not None]
        chosen = with_img[0] if with_img else anchors[0]
        hrefs.append(chosen.get("href"))
    return unique_links(iter(hrefs), page_url)
