"""The web chat's JSON: items, recommendations with their garments and boxes, trend
progress, styles."""

from __future__ import annotations

import math
from typing import Any

from aiohttp import web

from bot import render
from bot.urls import public_url
from engine.types import Garment, Item, Recommendation, ScoredItem, StyleSummary, TrendProgress

_IMAGE_MAGIC = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
)


def image_type(data: bytes) -> str | None:
    """The content type of a stored picture, from its first bytes (never from a name)."""
    for magic, ctype in _IMAGE_MAGIC:
        if data.startswith(magic):
            return ctype
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def safe_url(url: str | None) -> str | None:
    """A shop link we are willing to put in an href: the one public-URL policy of every
    front-end (:mod:`bot.urls`), else None."""
    return public_url(url)


def _price_text(price: float | None, currency: str) -> str:
    # Reuse Item.price_text so every front-end formats prices the same way.
    return Item(id=0, title="", url=None, price=price, currency=currency or "EUR", category=None).price_text


def item_json(s: ScoredItem, *, similarity: bool = True) -> dict[str, Any]:
    it = s.item
    shop_url = safe_url(it.url)
    return {
        "id": it.id,
        "rank": s.rank,
        "title": it.title,
        "price": it.price,
        "currency": it.currency,
        "price_text": it.price_text,
        "category": it.category,
        "brand": it.brand,
        "color": it.color,
        "shop": it.shop,
        "score": s.score if similarity else None,
        "similarity": max(0, min(100, round(s.score * 100))) if similarity else None,
        "link": shop_url or f"/items/{it.id}",
        "link_is_shop": shop_url is not None,
        "item_page": f"/items/{it.id}",
        "image": f"/items/{it.id}/image",
        "offers": [
            {"shop": o.shop, "price_text": _price_text(o.price, o.currency), "url": safe_url(o.url)} for o in s.offers
        ],
    }


def progress_json(p: TrendProgress) -> dict[str, Any]:
    return {
        "tag": p.tag,
        "shops_searched": p.shops_searched,
        "shops_total": p.shops_total,
        "found": p.found,
        "indexed": p.indexed,
        "skipped": p.skipped,
        "done": p.done,
        "error": p.error,
        "best": [item_json(s) for s in p.best],
        "text": render.trend_progress_text(p),
    }


def json_error(status: int, message: str, **extra: Any) -> web.Response:
    """An error as JSON; with ``retry_after`` (a 429 or 503) also the standard ``Retry-After``
    header in whole seconds, so outside clients and proxies back off without reading the body."""
    headers = {}
    wait = extra.get("retry_after")
    if isinstance(wait, int | float):
        headers["Retry-After"] = str(max(1, math.ceil(wait)))
    return web.json_response({"error": message, **extra}, status=status, headers=headers)


def style_json(s: StyleSummary, collage_url: str | None) -> dict[str, Any]:
    text = render.style_text(s)
    return {
        "cold_start": s.cold_start,
        "photo_count": s.photo_count,
        "needed": s.needed,
        "headline": text.split("\n", 1)[0] if s.cold_start else "Your style",
        "text": text,
        "clusters": [
            {
                "name": c.name,
                "share": c.share,
                "share_pct": round(c.share * 100),
                "size": c.size,
                "items": [item_json(i) for i in c.items],
            }
            for c in s.clusters
        ],
        "popular": [item_json(i, similarity=False) for i in s.popular],
        "collage": collage_url,
    }


def garment_json(g: Garment) -> dict[str, Any]:
    return {
        "number": g.number,
        "group": g.group,
        "label": g.label,
        "name": render.garment_name(g),
        "box": {"x0": g.box.x0, "y0": g.box.y0, "x1": g.box.x1, "y1": g.box.y1},
        "confidence": g.confidence,
    }


def recommendation_json(rec: Recommendation) -> dict[str, Any]:
    """A photo's answer: the items shown, which garment they belong to (None: the whole
    photo), every garment with its relative box, and the photo's size to draw them."""
    return {
        "backbone": rec.backbone,
        "request_id": rec.request_id,
        "items": [item_json(s) for s in rec.items],
        "garments": [garment_json(g) for g in rec.garments],
        "garment": rec.garment,
        "no_garment": rec.no_garment,
        "photo_size": list(rec.photo_size) if rec.photo_size else None,
        "intro": render.recommendation_intro(rec),
        "showing": render.showing_text(rec) if rec.garments else "",
        "text": render.recommendation_text(rec),
    }
