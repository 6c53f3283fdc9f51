"""schema.org JSON-LD: ``Product``/``ProductGroup``, ``ItemList``, ``@graph``, ``offers`` in all their shapes."""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Mapping
from typing import Any

from bs4 import BeautifulSoup

from scraper.extract.fields import MAX_LINKS, PRODUCT_TYPES, as_list
from scraper.extract.price import parse_price

_MAX_JSONLD_NODES = 5000
_MAX_JSONLD_DEPTH = 12
_MAX_JSONLD_CHARS = 1_000_000


def type_names(node: Mapping[str, Any]) -> set[str]:
    names = set()
    for t in as_list(node.get("@type")):
        if isinstance(t, str):
            names.add(re.split(r"[/:#]", t)[-1].lower())
    return names


def loads_lenient(text: str) -> Any:
    text = text.strip()
    for junk in ("<!--", "-->", "//<![CDATA[", "//]]>", "<![CDATA[", "]]>"):
        text = text.replace(junk, "")
    if len(text) > _MAX_JSONLD_CHARS:
        return None
    try:
        return json.loads(text, strict=False)
    except (ValueError, RecursionError):
        # trailing commas are the most common hand-written mistake
        try:
            return json.loads(re.sub(r",\s*([}\]])", r"\1", text), strict=False)
        except (ValueError, RecursionError):
            return None


def jsonld_nodes(soup: BeautifulSoup) -> list[dict[str, Any]]:
    """Every JSON object in the page's JSON-LD blocks, breadth first (top-level first), bounded."""
    nodes: list[dict[str, Any]] = []
    for script in soup.find_all("script"):
        kind = str(script.get("type", "")).lower()
        if not kind.startswith("application/ld+json"):
            continue
        data = loads_lenient(script.string or script.get_text() or "")
        queue: deque[tuple[Any, int]] = deque([(data, 0)])
        while queue and len(nodes) < _MAX_JSONLD_NODES:
            value, depth = queue.popleft()
            if depth > _MAX_JSONLD_DEPTH:
                continue
            if isinstance(value, list):
                queue.extend((v, depth + 1) for v in value[:1000])
            elif isinstance(value, dict):
                nodes.append(value)
                queue.extend((v, depth + 1) for v in value.values() if isinstance(v, (dict, list)))
    return nodes


def offer_fields(offers: Any) -> dict[str, Any]:
    """Lowest valid price (and its currency) of an offer, a list of offers or an AggregateOffer."""
    best: tuple[float, Any] | None = None
    for offer in as_list(offers)[:200]:
        if not isinstance(offer, dict):
            continue
        specs = [s for s in as_list(offer.get("priceSpecification")) if isinstance(s, dict)]
        candidates = [
            (offer.get("price"), offer.get("priceCurrency")),
            (offer.get("lowPrice"), offer.get("priceCurrency")),
            *((s.get("price"), s.get("priceCurrency") or offer.get("priceCurrency")) for s in specs),
        ]
        for raw_price, raw_currency in candidates:
            price = parse_price(raw_price, strict=True)
            if price is not None and (best is None or price < best[0]):
                best = (price, raw_currency)
    if best is None:
        return {}
    return {"price": best[0], "currency": best[1]}


def jsonld_product_fields(node: Mapping[str, Any]) -> dict[str, Any]:
    brand = node.get("brand")
    if isinstance(brand, list):
        brand = brand[0] if brand else None
    if isinstance(brand, dict):
        brand = brand.get("name")
    offers = offer_fields(node.get("offers"))
    if not offers:  # a ProductGroup often prices its variants only
        for variant in as_list(node.get("hasVariant"))[:50]:
            if isinstance(variant, dict) and (offers := offer_fields(variant.get("offers"))):
                break
    sku = node.get("sku") or node.get("mpn") or node.get("productID") or node.get("gtin13") or node.get("gtin")
    return {
        "title": node.get("name"),
        "url": node.get("url") or (node.get("@id") if str(node.get("@id", "")).startswith("http") else None),
        "image_url": image_values(node.get("image")),
        "price": offers.get("price"),
        "currency": offers.get("currency"),
        "brand": brand,
        "color": node.get("color"),
        "description": node.get("description"),
        "sku": sku if isinstance(sku, (str, int)) and not isinstance(sku, bool) else None,
    }


def image_values(value: Any) -> list[Any]:
    out: list[Any] = []
    for item in as_list(value)[:20]:
        if isinstance(item, dict):
            out.append(item.get("url") or item.get("contentUrl") or item.get("@id"))
        else:
            out.append(item)
    return out


def itemlist_entries(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """ItemList elements as raw field dicts (url, maybe a whole Product)."""
    entries: list[tuple[float, int, dict[str, Any]]] = []
    for node in nodes:
        if "itemlist" not in type_names(node):
            continue
        for index, element in enumerate(as_list(node.get("itemListElement"))[:MAX_LINKS]):
            position: float = index
            raw: dict[str, Any] = {}
            if isinstance(element, str):
                raw = {"url": element}
            elif isinstance(element, dict):
                try:
                    position = float(element.get("position", index))
                except (TypeError, ValueError):
                    position = index
                item = element.get("item")
                if PRODUCT_TYPES & type_names(element):
                    raw = jsonld_product_fields(element)
                elif isinstance(item, dict):
                    raw = jsonld_product_fields(item) if PRODUCT_TYPES & type_names(item) or item.get("name") else {}
                    raw["url"] = raw.get("url") or item.get("url") or item.get("@id") or element.get("url")
                else:
                    raw = {"url": item if isinstance(item, str) else element.get("url")}
            if raw:
                entries.append((position if isinstance(position, (int, float)) else index, index, raw))
    entries.sort(key=lambda e: (e[0], e[1]))
    return [raw for _, _, raw in entries]
