"""Product data out of shop HTML, trusting nothing.

Sources, best first, merged field by field (a field a source lies about is
dropped, so the next source can fill it):

1. per-shop CSS selectors (an explicit override by whoever configured the shop);
2. schema.org JSON-LD (``Product``/``ProductGroup``, ``ItemList``, ``@graph``,
   ``offers`` as object, list or ``AggregateOffer``);
3. microdata (``itemtype=.../Product`` with ``itemprop`` name/image/price/...);
4. OpenGraph (``og:title``, ``og:image``, ``product:price:amount``/``currency``);
5. heuristics (``<h1>``, a product-looking ``<img>``, an element classed "price";
   on search pages: repeated cards holding a link, a picture and a price).

Search pages also name their next page (``rel="next"`` links and anchors, or the
shop's ``next`` selector): :attr:`SearchResult.next_url`.

One module per source: :mod:`.jsonld`, :mod:`.microdata`, :mod:`.opengraph`,
:mod:`.selectors`, :mod:`.heuristics` (grids), :mod:`.pagination`, :mod:`.price`;
:mod:`.fields` holds the record and the cleaning every source goes through.

Every page is assumed to lie: fields go missing, prices say "call us" or "-5",
URLs are relative, ``javascript:`` or ``data:``, titles are 10 000 characters
long, JSON-LD is malformed. None of that raises; the worst outcome is ``None``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from bs4 import BeautifulSoup

from scraper.extract.fields import (
    MAX_DESCRIPTION,
    MAX_LINKS,
    MAX_SHORT,
    MAX_TITLE,
    MAX_URL,
    PRODUCT_TYPES,
    ProductInfo,
    SearchResult,
    clean_fields,
    clean_text,
    merge_fields,
    safe_url,
    same_page,
    to_info,
)
from scraper.extract.heuristics import grid_links, heuristic_fields
from scraper.extract.jsonld import itemlist_entries, jsonld_nodes, jsonld_product_fields, type_names
from scraper.extract.microdata import microdata_products
from scraper.extract.opengraph import opengraph_fields
from scraper.extract.pagination import next_page_url
from scraper.extract.price import MAX_PRICE, parse_currency, parse_price
from scraper.extract.selectors import SELECTOR_KEYS, selector_fields, selector_links

__all__ = [
    "MAX_DESCRIPTION",
    "MAX_LINKS",
    "MAX_PRICE",
    "MAX_SHORT",
    "MAX_TITLE",
    "MAX_URL",
    "SELECTOR_KEYS",
    "ProductInfo",
    "SearchResult",
    "clean_text",
    "extract_product",
    "extract_search",
    "jsonld_nodes",
    "next_page_url",
    "parse_currency",
    "parse_price",
    "safe_url",
]


def make_soup(html: str | bytes, encoding: str | None) -> BeautifulSoup:
    if isinstance(html, bytes):
        return BeautifulSoup(html, "html.parser", from_encoding=encoding)
    return BeautifulSoup(html, "html.parser")


# ---- public API ----------------------------------------------------------------------------
def extract_product(
    html: str | bytes,
    page_url: str,
    *,
    shop: str = "",
    selectors: Mapping[str, str] | None = None,
    encoding: str | None = None,
) -> ProductInfo | None:
    """The product a product page shows, or None when it has no usable title and picture.

    ``url`` is always ``page_url`` (the page we actually fetched, after redirects): a
    page's claim about its own URL is not trusted.
    """
    soup = make_soup(html, encoding)
    base = page_url
    sources: list[dict[str, Any]] = []
    if selectors:
        sources.append(clean_fields(selector_fields(soup, selectors), base, strict_price=False))
    nodes = jsonld_nodes(soup)
    products = [n for n in nodes if PRODUCT_TYPES & type_names(n)]
    if products:
        products.sort(key=lambda n: not same_page(safe_url(n.get("url"), base), page_url))  # stable
        sources.append(clean_fields(jsonld_product_fields(products[0]), base, strict_price=True))
    micro = microdata_products(soup)
    if micro:
        sources.append(clean_fields(micro[0], base, strict_price=True))
    sources.append(clean_fields(opengraph_fields(soup), base, strict_price=True))
    sources.append(clean_fields(heuristic_fields(soup), base, strict_price=False))
    fields = merge_fields(*sources)
    fields["url"] = page_url
    return to_info(fields, shop)


def extract_search(
    html: str | bytes,
    page_url: str,
    *,
    shop: str = "",
    selectors: Mapping[str, str] | None = None,
    encoding: str | None = None,
) -> SearchResult:
    """Products and product links on a search/listing page.

    With a ``product_link`` selector that matches, only it is used. Otherwise
    JSON-LD ItemList/Product entries, then microdata Products, then repeated
    product cards. Entries with title, picture and URL come back as products;
    the rest as links to follow. ``next_url`` is the next results page, if the
    page names one (the ``next`` selector, else ``rel="next"``).
    """
    soup = make_soup(html, encoding)
    next_url = next_page_url(soup, page_url, selectors.get("next") if selectors else None)
    result = _search_entries(soup, page_url, shop, selectors)
    return replace(result, next_url=next_url) if next_url else result


def _search_entries(soup: BeautifulSoup, page_url: str, shop: str, selectors: Mapping[str, str] | None) -> SearchResult:
    if selectors and selectors.get("product_link"):
        links = selector_links(soup, selectors["product_link"], page_url)
        if links:
            return SearchResult(links=links, source="selectors")

    nodes = jsonld_nodes(soup)
    entries = itemlist_entries(nodes)
    if not entries:
        entries = [jsonld_product_fields(n) for n in nodes if PRODUCT_TYPES & type_names(n)]
    if entries:
        return split_entries(entries, page_url, shop, strict_price=True, source="json-ld")

    micro = microdata_products(soup)
    if micro:
        return split_entries(micro, page_url, shop, strict_price=True, source="microdata")

    links = grid_links(soup, page_url)
    return SearchResult(links=links, source="grid" if links else "none")


def split_entries(
    entries: list[dict[str, Any]], page_url: str, shop: str, *, strict_price: bool, source: str
) -> SearchResult:
    products: list[ProductInfo] = []
    links: list[str] = []
    seen: set[str] = set()
    for raw in entries:
        fields = clean_fields(raw, page_url, strict_price=strict_price)
        url = fields.get("url")
        if not url or url in seen or same_page(url, page_url):
            continue
        seen.add(url)
        info = to_info(fields, shop)
        if info is not None:
            products.append(info)
        else:
            links.append(url)
    return SearchResult(products=products[:MAX_LINKS], links=links[:MAX_LINKS], source=source)
