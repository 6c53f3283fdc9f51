"""The next page of search results: the shop's ``next`` selector, else ``rel="next"``
(``<link rel=next>`` in the head, then ``<a rel=next>``)."""

from __future__ import annotations

from bs4 import BeautifulSoup, Tag

from scraper.extract.fields import safe_url, same_page


def next_page_url(soup: BeautifulSoup, page_url: str, selector: str | None = None) -> str | None:
    """Absolute http(s) URL of the next results page, or None (none named, or it is this page)."""
    candidates: list[str] = []
    if selector:
        try:
            element = soup.select_one(selector)
        except Exception:
            element = None
        if element is not None:
            href = _href(element)
            if href:
                candidates.append(href)
    for name in ("link", "a"):
        for element in soup.find_all(name, href=True, limit=200):
            if isinstance(element, Tag) and "next" in _rels(element):
                link = element.get("href")
                if isinstance(link, str):
                    candidates.append(link)
    for href in candidates:
        url = safe_url(href, page_url)
        if url and not same_page(url, page_url):
            return url
    return None


def _rels(element: Tag) -> list[str]:
    rel = element.get("rel")
    values = rel if isinstance(rel, list) else str(rel or "").split()
    return [v.lower() for v in values]


def _href(element: Tag) -> str | None:
    if element.name != "a" and not element.has_attr("href"):
        inner = element.find("a", href=True)
        element = inner if isinstance(inner, Tag) else element
    href = element.get("href")
    return href if isinstance(href, str) else None
