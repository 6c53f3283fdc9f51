"""The HTML the web chat renders on the server: item pages and error pages (every
catalogue text escaped)."""

from __future__ import annotations

import html

from aiohttp import web

from bot.urls import telegram_item_link
from bot.web.serialise import safe_url
from engine.types import Item


def page(title: str, body: str, status: int = 200) -> web.Response:
    doc = (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)} · fashionbot</title>"
        '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">'
        '<link rel="stylesheet" href="/static/app.css"></head>'
        '<body class="page"><header class="topbar"><a class="brand" href="/">'
        '<span class="brand-mark" aria-hidden="true">f</span>fashionbot</a></header>'
        f'<main class="page-main">{body}</main></body></html>\n'
    )
    return web.Response(status=status, text=doc, content_type="text/html", charset="utf-8")


def html_error(status: int, message: str) -> web.Response:
    body = (
        f'<section class="notice"><h1>{html.escape(str(status))}</h1><p>{html.escape(message)}</p>'
        '<p><a class="button" href="/">Back to the chat</a></p></section>'
    )
    return page(message, body, status)


def item_page_html(item: Item, telegram_bot: str | None = None) -> str:
    """The item's page; with the Telegram bot's name it also links to the item in the bot
    (``t.me/<bot>?start=item_<id>``), so a page shared on the web opens in the chat too."""
    e = html.escape
    facts = [
        (label, value)
        for label, value in (
            ("Category", item.category),
            ("Brand", item.brand),
            ("Colour", item.color),
            ("Shop", item.shop),
            ("Tags", ", ".join(item.tags) if item.tags else None),
        )
        if value
    ]
    rows = "".join(f"<dt>{e(label)}</dt><dd>{e(str(value))}</dd>" for label, value in facts)
    shop = safe_url(item.url)
    shop_link = (
        f'<a class="button primary" href="{e(shop, quote=True)}" target="_blank" '
        f'rel="noopener noreferrer">View in {e(item.shop or "the shop")} ↗</a>'
        if shop
        else '<p class="muted">This catalogue item has no shop page of its own.</p>'
    )
    tg = telegram_item_link(telegram_bot, item.id)
    tg_link = f'<p><a class="button telegram-link" href="{e(tg, quote=True)}">Open in Telegram</a></p>' if tg else ""
    return (
        '<article class="item-page">'
        f'<div class="item-figure"><img src="/items/{item.id}/image" alt="{e(item.title, quote=True)}"></div>'
        '<div class="item-info">'
        f'<p class="eyebrow">Item #{item.id}</p>'
        f'<h1 class="item-title">{e(item.title)}</h1>'
        f'<p class="item-price">{e(item.price_text)}</p>'
        f'<dl class="facts">{rows}</dl>'
        f"{shop_link}{tg_link}"
        '<p><a class="button" href="/">← Back to the chat</a></p>'
        "</div></article>"
    )
