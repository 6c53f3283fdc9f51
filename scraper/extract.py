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

Every page is assumed to lie: fields go missing, prices say "call us" or "-5",
URLs are relative, ``javascript:`` or ``data:``, titles are 10 000 characters
long, JSON-LD is malformed. None of that raises; the worst outcome is ``None``.
"""
from __future__ import annotations

import hashlib
import html as html_lib
import json
import math
import re
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

from bs4 import BeautifulSoup, Tag
from yarl import URL

MAX_TITLE = 200
MAX_DESCRIPTION = 1000
MAX_SHORT = 64  # brand, colour, sku
MAX_URL = 2048
MAX_LINKS = 500
MAX_PRICE = 1_000_000.0
_MAX_JSONLD_NODES = 5000
_MAX_JSONLD_DEPTH = 12
_MAX_JSONLD_CHARS = 1_000_000

PRODUCT_TYPES = frozenset({"product", "productgroup", "individualproduct"})
SELECTOR_KEYS = frozenset({"product_link", "title", "price", "currency", "image", "brand", "color", "description"})

_CURRENCY_SYMBOLS = {"€": "EUR", "£": "GBP", "$": "USD", "¥": "JPY", "₹": "INR", "₽": "RUB", "zł": "PLN", "kr": "SEK"}
_CODES = "EUR|USD|GBP|CHF|SEK|NOK|DKK|PLN|CZK|HUF|JPY|CNY|CAD|AUD|NZD|INR|RUB|TRY|BRL|MXN"
_PRICE_LIKE = re.compile(rf"(?:[€£$¥₹]|\b(?:{_CODES})\b)\s*\d|\d[\d.,]*\s*(?:[€£$¥₹]|\b(?:{_CODES})\b)")
_NUMBER = re.compile(r"\d+(?:[.,\u00a0\u202f\u2009' ’]\d+)*")
_STRICT_PRICE = re.compile(rf"^\s*(?:[€£$¥₹]|{_CODES})?\s*\d[\d.,\u00a0\u202f' ]*\s*(?:[€£$¥₹]|{_CODES})?\s*$", re.I)
_WS = re.compile(r"\s+")
_TAGS = re.compile(r"<[^>]{0,2000}>")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_C0_AND_SPACE = "".join(chr(i) for i in range(0x21))
_NOT_PRODUCT_IMG = re.compile(r"logo|icon|sprite|banner|avatar|pixel|tracking|placeholder|spinner", re.I)


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


# ---- small, paranoid value parsers -----------------------------------------------------------
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


def parse_price(value: Any, *, strict: bool = False) -> float | None:
    """A positive, plausible price or None. Handles ``1.299,00 €``, ``$1,299.00``, ``29,90``,
    numbers; refuses ``call us``, ``-5``, ``0``, NaN, booleans. ``strict`` (for structured
    fields) also refuses text that is more than a number and a currency."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        number = float(value)
        return number if math.isfinite(number) and 0 < number < MAX_PRICE else None
    if not isinstance(value, str):
        return None
    text = value.strip()[:120]
    if strict and not _STRICT_PRICE.match(text):
        return None
    match = _NUMBER.search(text)
    if match is None:
        return None
    before = text[: match.start()].rstrip(" \u00a0€£$¥₹").upper()
    for code in _CODES.split("|"):
        before = before.removesuffix(code).rstrip()
    if before.endswith(("-", "−", "–")):
        return None  # a negative amount
    number = _number_from(match.group(0))
    if number is None or not 0 < number < MAX_PRICE:
        return None
    return number


def _number_from(raw: str) -> float | None:
    """'1.299,00' -> 1299.0; '1,299.00' -> 1299.0; '29,90' -> 29.9; '1 234' -> 1234.0."""
    parts = re.split(r"([.,\u00a0\u202f\u2009' ’])", raw)
    digits, seps = parts[0::2], parts[1::2]
    if digits[0].startswith("0") and len(digits[0]) > 1:
        return None  # '0800 123456' is a phone number
    # Spaces and apostrophes only group thousands; a group that is not 3 digits ends the number.
    for i, sep in enumerate(seps):
        if sep not in ".," and len(digits[i + 1]) != 3:
            digits, seps = digits[: i + 1], seps[:i]
            break
    decimal_sep: str | None = None
    point_seps = [s for s in seps if s in ".,"]
    if point_seps:
        last = point_seps[-1]
        last_index = max(i for i, s in enumerate(seps) if s == last)
        tail = digits[last_index + 1]
        if len(set(point_seps)) > 1 or (point_seps.count(last) == 1 and len(tail) != 3):
            decimal_sep = last
    integer, fraction = "", ""
    for i, d in enumerate(digits):
        if i > 0 and seps[i - 1] == decimal_sep and i - 1 == max(j for j, s in enumerate(seps) if s == decimal_sep):
            fraction = d
            break
        integer += d
    try:
        return float(f"{integer}.{fraction}" if fraction else integer)
    except ValueError:
        return None


def parse_currency(value: Any, price_text: Any = None) -> str | None:
    """An ISO 4217 code from a currency field, else from a symbol or code in the price text."""
    if isinstance(value, str) and re.fullmatch(r"\s*[A-Za-z]{3}\s*", value):
        return value.strip().upper()
    if isinstance(value, str) and value.strip() in _CURRENCY_SYMBOLS:
        return _CURRENCY_SYMBOLS[value.strip()]
    if isinstance(price_text, str):
        found = re.search(rf"\b({_CODES})\b", price_text, re.I)
        if found:
            return found.group(1).upper()
        for symbol, code in _CURRENCY_SYMBOLS.items():
            if len(symbol) == 1 and symbol in price_text:
                return code
    return None


# ---- field merging --------------------------------------------------------------------------
_FIELDS = ("title", "url", "image_url", "price", "currency", "brand", "color", "description", "sku")


def _clean_fields(raw: Mapping[str, Any], base: str, *, strict_price: bool) -> dict[str, Any]:
    """Validate one source's raw fields; invalid ones are dropped so a later source can fill them."""
    out: dict[str, Any] = {}
    if (title := clean_text(raw.get("title"), MAX_TITLE)) is not None:
        out["title"] = title
    if (url := safe_url(raw.get("url"), base)) is not None:
        out["url"] = url
    for candidate in _as_list(raw.get("image_url")):
        if (image := safe_url(candidate, base)) is not None:
            out["image_url"] = image
            break
    price_raw = raw.get("price")
    for candidate in _as_list(price_raw):
        if (price := parse_price(candidate, strict=strict_price)) is not None:
            out["price"] = price
            currency = parse_currency(raw.get("currency"), candidate if isinstance(candidate, str) else None)
            if currency:
                out["currency"] = currency
            break
    if "currency" not in out and (currency := parse_currency(raw.get("currency"))) is not None:
        out["currency"] = currency
    for key, limit in (("brand", MAX_SHORT), ("color", MAX_SHORT), ("description", MAX_DESCRIPTION), ("sku", MAX_SHORT)):
        if (text := clean_text(raw.get(key), limit)) is not None:
            out[key] = text
    return out


def _merge(*sources: Mapping[str, Any]) -> dict[str, Any]:
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


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _to_info(fields: Mapping[str, Any], shop: str) -> ProductInfo | None:
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


# ---- JSON-LD -------------------------------------------------------------------------------
def _type_names(node: Mapping[str, Any]) -> set[str]:
    names = set()
    for t in _as_list(node.get("@type")):
        if isinstance(t, str):
            names.add(re.split(r"[/:#]", t)[-1].lower())
    return names


def _loads_lenient(text: str) -> Any:
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
        data = _loads_lenient(script.string or script.get_text() or "")
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


def _offer_fields(offers: Any) -> dict[str, Any]:
    """Lowest valid price (and its currency) of an offer, a list of offers or an AggregateOffer."""
    best: tuple[float, Any] | None = None
    for offer in _as_list(offers)[:200]:
        if not isinstance(offer, dict):
            continue
        specs = [s for s in _as_list(offer.get("priceSpecification")) if isinstance(s, dict)]
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


def _jsonld_product_fields(node: Mapping[str, Any]) -> dict[str, Any]:
    brand = node.get("brand")
    if isinstance(brand, list):
        brand = brand[0] if brand else None
    if isinstance(brand, dict):
        brand = brand.get("name")
    offers = _offer_fields(node.get("offers"))
    if not offers:  # a ProductGroup often prices its variants only
        for variant in _as_list(node.get("hasVariant"))[:50]:
            if isinstance(variant, dict) and (offers := _offer_fields(variant.get("offers"))):
                break
    sku = node.get("sku") or node.get("mpn") or node.get("productID") or node.get("gtin13") or node.get("gtin")
    return {
        "title": node.get("name"),
        "url": node.get("url") or (node.get("@id") if str(node.get("@id", "")).startswith("http") else None),
        "image_url": _image_values(node.get("image")),
        "price": offers.get("price"),
        "currency": offers.get("currency"),
        "brand": brand,
        "color": node.get("color"),
        "description": node.get("description"),
        "sku": sku if isinstance(sku, (str, int)) and not isinstance(sku, bool) else None,
    }


def _image_values(value: Any) -> list[Any]:
    out: list[Any] = []
    for item in _as_list(value)[:20]:
        if isinstance(item, dict):
            out.append(item.get("url") or item.get("contentUrl") or item.get("@id"))
        else:
            out.append(item)
    return out


def _itemlist_entries(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """ItemList elements as raw field dicts (url, maybe a whole Product)."""
    entries: list[tuple[float, int, dict[str, Any]]] = []
    for node in nodes:
        if "itemlist" not in _type_names(node):
            continue
        for index, element in enumerate(_as_list(node.get("itemListElement"))[:MAX_LINKS]):
            position = index
            raw: dict[str, Any] = {}
            if isinstance(element, str):
                raw = {"url": element}
            elif isinstance(element, dict):
                try:
                    position = float(element.get("position", index))
                except (TypeError, ValueError):
                    position = index
                item = element.get("item")
                if PRODUCT_TYPES & _type_names(element):
                    raw = _jsonld_product_fields(element)
                elif isinstance(item, dict):
                    raw = _jsonld_product_fields(item) if PRODUCT_TYPES & _type_names(item) or item.get("name") else {}
                    raw["url"] = raw.get("url") or item.get("url") or item.get("@id") or element.get("url")
                else:
                    raw = {"url": item if isinstance(item, str) else element.get("url")}
            if raw:
                entries.append((position if isinstance(position, (int, float)) else index, index, raw))
    entries.sort(key=lambda e: (e[0], e[1]))
    return [raw for _, _, raw in entries]


# ---- microdata -----------------------------------------------------------------------------
def _itemprop_value(el: Tag) -> str | None:
    if el.has_attr("content"):
        return str(el["content"])
    if el.name in ("img", "audio", "embed", "iframe", "source", "video"):
        return _img_src(el) if el.name == "img" else (str(el["src"]) if el.has_attr("src") else None)
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


def _microdata_products(soup: BeautifulSoup) -> list[dict[str, Any]]:
    return [_microdata_product_fields(el) for el in soup.find_all(attrs={"itemscope": True}) if _is_product_scope(el)][
        :MAX_LINKS
    ]


# ---- OpenGraph -----------------------------------------------------------------------------
def _meta(soup: BeautifulSoup) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for tag in soup.find_all("meta"):
        key = tag.get("property") or tag.get("name")
        if isinstance(key, str) and tag.has_attr("content"):
            out.setdefault(key.strip().lower(), []).append(str(tag["content"]))
    return out


def _opengraph_fields(soup: BeautifulSoup) -> dict[str, Any]:
    meta = _meta(soup)

    def first(*keys: str) -> str | None:
        for key in keys:
            if meta.get(key):
                return meta[key][0]
        return None

    images = [v for key in ("og:image", "og:image:url", "og:image:secure_url", "twitter:image") for v in meta.get(key, [])]
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


# ---- selectors and heuristics ----------------------------------------------------------------
def _img_src(el: Tag) -> str | None:
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


def _select_value(soup: BeautifulSoup, selector: str | None, *, image: bool = False) -> str | None:
    if not selector:
        return None
    try:
        el = soup.select_one(selector)
    except Exception:  # noqa: BLE001 - a bad selector from config must not break a crawl
        return None
    if el is None:
        return None
    if image:
        if el.name != "img" and (inner := el.find("img")) is not None and not el.has_attr("content"):
            el = inner
        if el.name == "img":
            return _img_src(el)
        for attr in ("content", "href", "src", "data-src"):
            if el.has_attr(attr):
                return str(el[attr])
        return None
    if el.has_attr("content"):
        return str(el["content"])
    return el.get_text(" ", strip=True)


def _selector_fields(soup: BeautifulSoup, selectors: Mapping[str, str]) -> dict[str, Any]:
    price_text = _select_value(soup, selectors.get("price"))
    return {
        "title": _select_value(soup, selectors.get("title")),
        "image_url": _select_value(soup, selectors.get("image"), image=True),
        "price": price_text,
        "currency": _select_value(soup, selectors.get("currency")) or parse_currency(None, price_text),
        "brand": _select_value(soup, selectors.get("brand")),
        "color": _select_value(soup, selectors.get("color")),
        "description": _select_value(soup, selectors.get("description")),
    }


def _heuristic_fields(soup: BeautifulSoup) -> dict[str, Any]:
    h1 = soup.find("h1")
    title = h1.get_text(" ", strip=True) if h1 else (soup.title.get_text(" ", strip=True) if soup.title else None)
    area = soup.find("main") or soup.find("article") or soup.body or soup
    images = []
    for img in area.find_all("img", limit=50):
        src = _img_src(img)
        hint = f"{src} {img.get('class', '')} {img.get('alt', '')} {img.get('id', '')}"
        if src and not _NOT_PRODUCT_IMG.search(hint) and not src.lower().split("?")[0].endswith(".svg"):
            images.append(src)
    price_text = None
    for el in area.find_all(attrs={"class": re.compile("price", re.I)}, limit=20):
        text = el.get_text(" ", strip=True)
        if parse_price(text) is not None:
            price_text = text
            break
    return {"title": title, "image_url": images[:5], "price": price_text, "currency": parse_currency(None, price_text)}


def _canonical(soup: BeautifulSoup) -> str | None:
    link = soup.find("link", rel=lambda r: r is not None and "canonical" in (r if isinstance(r, list) else [r]))
    return str(link["href"]) if link is not None and link.has_attr("href") else None


def _soup(html: str | bytes, encoding: str | None) -> BeautifulSoup:
    if isinstance(html, bytes):
        return BeautifulSoup(html, "html.parser", from_encoding=encoding)
    return BeautifulSoup(html, "html.parser")


def _same_page(a: str | None, b: str) -> bool:
    if not a:
        return False
    return a.rstrip("/") == b.rstrip("/")


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
    soup = _soup(html, encoding)
    base = page_url
    sources: list[dict[str, Any]] = []
    if selectors:
        sources.append(_clean_fields(_selector_fields(soup, selectors), base, strict_price=False))
    nodes = jsonld_nodes(soup)
    products = [n for n in nodes if PRODUCT_TYPES & _type_names(n)]
    if products:
        products.sort(key=lambda n: not _same_page(safe_url(n.get("url"), base), page_url))  # stable
        sources.append(_clean_fields(_jsonld_product_fields(products[0]), base, strict_price=True))
    micro = _microdata_products(soup)
    if micro:
        sources.append(_clean_fields(micro[0], base, strict_price=True))
    sources.append(_clean_fields(_opengraph_fields(soup), base, strict_price=True))
    sources.append(_clean_fields(_heuristic_fields(soup), base, strict_price=False))
    fields = _merge(*sources)
    fields["url"] = page_url
    return _to_info(fields, shop)


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
    the rest as links to follow.
    """
    soup = _soup(html, encoding)
    if selectors and selectors.get("product_link"):
        links = _selector_links(soup, selectors["product_link"], page_url)
        if links:
            return SearchResult(links=links, source="selectors")

    nodes = jsonld_nodes(soup)
    entries = _itemlist_entries(nodes)
    if not entries:
        entries = [_jsonld_product_fields(n) for n in nodes if PRODUCT_TYPES & _type_names(n)]
    if entries:
        return _split(entries, page_url, shop, strict_price=True, source="json-ld")

    micro = _microdata_products(soup)
    if micro:
        return _split(micro, page_url, shop, strict_price=True, source="microdata")

    links = _grid_links(soup, page_url)
    return SearchResult(links=links, source="grid" if links else "none")


def _split(entries: list[dict[str, Any]], page_url: str, shop: str, *, strict_price: bool, source: str) -> SearchResult:
    products: list[ProductInfo] = []
    links: list[str] = []
    seen: set[str] = set()
    for raw in entries:
        fields = _clean_fields(raw, page_url, strict_price=strict_price)
        url = fields.get("url")
        if not url or url in seen or _same_page(url, page_url):
            continue
        seen.add(url)
        info = _to_info(fields, shop)
        if info is not None:
            products.append(info)
        else:
            links.append(url)
    return SearchResult(products=products[:MAX_LINKS], links=links[:MAX_LINKS], source=source)


def _selector_links(soup: BeautifulSoup, selector: str, page_url: str) -> list[str]:
    try:
        elements = soup.select(selector, limit=MAX_LINKS * 2)
    except Exception:  # noqa: BLE001 - a bad selector from config must not break a crawl
        return []
    return _unique((_href_of(el) for el in elements), page_url)


def _href_of(el: Tag) -> str | None:
    if el.name != "a":
        el = el.find("a", href=True) or el.find_parent("a", href=True) or el
    href = el.get("href")
    return href if isinstance(href, str) else None


def _unique(hrefs: Iterator[str | None] | Any, page_url: str) -> list[str]:
    out: list[str] = []
    seen: set[str] = set()
    for href in hrefs:
        url = safe_url(href, page_url)
        if url and url not in seen and not _same_page(url, page_url):
            seen.add(url)
            out.append(url)
        if len(out) >= MAX_LINKS:
            break
    return out


def _grid_links(soup: BeautifulSoup, page_url: str) -> list[str]:
    """Repeated cards (same tag and class) each holding a link, a picture and a price-like text."""
    cards: dict[int, tuple[Tag, list[Tag]]] = {}
    is_card: dict[int, bool] = {}  # each ancestor is examined once, however many links it holds

    def card_like(node: Tag) -> bool:
        key = id(node)
        if key not in is_card:
            is_card[key] = (node.name == "img" or node.find("img") is not None) and bool(
                _PRICE_LIKE.search(node.get_text(" "))
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
    for node, anchors in best:
        with_img = [a for a in anchors if a.find("img") is not None]
        chosen = with_img[0] if with_img else anchors[0]
        hrefs.append(chosen.get("href"))
    return _unique(iter(hrefs), page_url)
