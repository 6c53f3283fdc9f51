"""Extraction from shop HTML: structured data first, heuristics last, lies dropped, never a crash."""

from __future__ import annotations

import json
import random

import pytest

from scraper.extract import (
    MAX_TITLE,
    ProductInfo,
    extract_product,
    extract_search,
    parse_currency,
    parse_price,
    safe_url,
)

PAGE = "https://shop.test/p/42"


def ld(data: object) -> str:
    return f'<script type="application/ld+json">{json.dumps(data)}</script>'


def page(head: str = "", body: str = "") -> str:
    return f"<!doctype html><html><head>{head}</head><body>{body}</body></html>"


@pytest.mark.parametrize(
    ("text", "price"),
    [
        ("19.99", 19.99),
        (19.99, 19.99),
        (25, 25.0),
        ("1.299,00 €", 1299.0),
        ("$1,299.00", 1299.0),
        ("29,90", 29.9),
        ("€ 39", 39.0),
        ("1 234,50 EUR", 1234.5),
        ("CHF 1'234.50", 1234.5),
        ("call us", None),
        ("-5", None),
        ("EUR -5", None),
        (-5, None),
        (0, None),
        ("0", None),
        (float("nan"), None),
        (float("inf"), None),
        (True, None),
        ("0800 123456", None),
        ("99999999", None),
        ("", None),
        (None, None),
        ({"price": 3}, None),
    ],
)
def test_parse_price(text: object, price: float | None) -> None:
    assert parse_price(text) == price


def test_strict_price_refuses_prose() -> None:
    assert parse_price("from 10 to 20", strict=True) is None
    assert parse_price("from 10 to 20") == 10.0
    assert parse_price(" 12.50 EUR ", strict=True) == 12.5


def test_parse_currency() -> None:
    assert parse_currency("eur") == "EUR"
    assert parse_currency("EURO-ish") is None
    assert parse_currency(None, "£12") == "GBP"
    assert parse_currency(None, "12 usd") == "USD"
    assert parse_currency("€") == "EUR"
    assert parse_currency(None, "12") is None


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("/img/a.jpg", "https://shop.test/img/a.jpg"),
        ("../img/b.jpg", "https://shop.test/img/b.jpg"),
        ("//cdn.test/c.jpg", "https://cdn.test/c.jpg"),
        ("  https://cdn.test/d e.jpg  ", "https://cdn.test/d%20e.jpg"),
        ("https://cdn.test/x.jpg#zoom", "https://cdn.test/x.jpg"),
        ("javascript:alert(1)", None),
        ("JavaScript:alert(1)", None),
        ("java\nscript:alert(1)", None),
        ("data:image/png;base64,AAAA", None),
        ("vbscript:msgbox", None),
        ("mailto:a@b.c", None),
        ("ftp://files.test/a.jpg", None),
        ("http://", None),
        ("https://x.test/" + "a" * 3000, None),
        (42, None),
        ({"url": "/img/e.jpg"}, "https://shop.test/img/e.jpg"),
    ],
)
def test_safe_url(raw: object, expected: str | None) -> None:
    assert safe_url(raw, PAGE) == expected


# ---- product pages ---------------------------------------------------------------------------
def test_jsonld_product_with_offer_object() -> None:
    html = page(
        ld(
            {
                "@context": "https://schema.org",
                "@type": "Product",
                "name": "Linen &amp; silk dress",
                "image": "/img/42.jpg",
                "brand": {"@type": "Brand", "name": "Acme"},
                "color": "Navy",
                "sku": "SKU-42",
                "description": "<p>Light   and airy.</p>",
                "offers": {"@type": "Offer", "price": "89.90", "priceCurrency": "eur"},
            }
        )
    )
    assert extract_product(html, PAGE, shop="Acme shop") == ProductInfo(
        title="Linen & silk dress",
        url=PAGE,
        image_url="https://shop.test/img/42.jpg",
        price=89.9,
        currency="EUR",
        brand="Acme",
        color="Navy",
        description="Light and airy.",
        shop="Acme shop",
        sku="SKU-42",
    )


def test_jsonld_offers_list_takes_the_lowest_valid_price() -> None:
    offers = [
        {"@type": "Offer", "price": "call us", "priceCurrency": "EUR"},
        {"@type": "Offer", "price": 59, "priceCurrency": "USD"},
        {"@type": "Offer", "price": "49.00", "priceCurrency": "GBP"},
        {"@type": "Offer", "price": -1, "priceCurrency": "EUR"},
    ]
    html = page(ld({"@type": "Product", "name": "Coat", "image": ["/a.jpg"], "offers": offers}))
    info = extract_product(html, PAGE)
    assert info is not None and (info.price, info.currency) == (49.0, "GBP")


def test_jsonld_aggregate_offer_and_price_specification() -> None:
    agg = {"@type": "AggregateOffer", "lowPrice": "15.5", "highPrice": "30", "priceCurrency": "EUR"}
    html = page(
        ld({"@type": "Product", "name": "Scarf", "image": {"@type": "ImageObject", "url": "/s.jpg"}, "offers": agg})
    )
    info = extract_product(html, PAGE)
    assert info is not None and (info.price, info.currency, info.image_url) == (15.5, "EUR", "https://shop.test/s.jpg")

    spec = {
        "@type": "Offer",
        "priceSpecification": {"@type": "UnitPriceSpecification", "price": 12, "priceCurrency": "SEK"},
    }
    info = extract_product(page(ld({"@type": "Product", "name": "Sock", "image": "/k.jpg", "offers": spec})), PAGE)
    assert info is not None and (info.price, info.currency) == (12.0, "SEK")


def test_jsonld_graph_and_the_product_matching_the_page_wins() -> None:
    graph = {
        "@context": "https://schema.org",
        "@graph": [
            {"@type": "WebPage", "name": "page"},
            {"@type": "Product", "name": "Related bag", "url": "https://shop.test/p/7", "image": "/bag.jpg"},
            {"@type": ["Product", "Thing"], "name": "Main dress", "url": PAGE, "image": "/dress.jpg"},
        ],
    }
    info = extract_product(page(ld(graph)), PAGE)
    assert info is not None and (info.title, info.image_url) == ("Main dress", "https://shop.test/dress.jpg")


def test_product_group_takes_price_from_a_variant() -> None:
    group = {
        "@type": "ProductGroup",
        "name": "Tee",
        "image": "/tee.jpg",
        "hasVariant": [{"@type": "Product", "name": "Tee S", "offers": {"price": "9.99", "priceCurrency": "EUR"}}],
    }
    info = extract_product(page(ld(group)), PAGE)
    assert info is not None and (info.title, info.price) == ("Tee", 9.99)


def test_malformed_jsonld_is_tolerated() -> None:
    head = (
        '<script type="application/ld+json">{not json at all</script>'
        '<script type="application/ld+json">{"@type": "Product", "name": "Trailing", "image": "/t.jpg",}</script>'
    )
    info = extract_product(page(head), PAGE)
    assert info is not None and info.title == "Trailing"


def test_opengraph() -> None:
    head = (
        '<meta property="og:title" content="OG skirt">'
        '<meta property="og:image" content="https://cdn.test/skirt.jpg">'
        '<meta property="product:price:amount" content="35.00">'
        '<meta property="product:price:currency" content="EUR">'
        '<meta name="og:description" content="A skirt.">'
    )
    assert extract_product(page(head), PAGE) == ProductInfo(
        title="OG skirt",
        url=PAGE,
        image_url="https://cdn.test/skirt.jpg",
        price=35.0,
        currency="EUR",
        description="A skirt.",
    )


def test_microdata_with_nested_offer_and_brand() -> None:
    body = """
    <div itemscope itemtype="https://schema.org/Product">
      <h1 itemprop="name">Micro blouse</h1>
      <img itemprop="image" src="/blouse.jpg" alt="">
      <div itemprop="brand" itemscope itemtype="https://schema.org/Brand"><span itemprop="name">Brandy</span></div>
      <div itemprop="offers" itemscope itemtype="https://schema.org/Offer">
        <meta itemprop="priceCurrency" content="EUR"><span itemprop="price" content="24.95">24,95 €</span>
      </div>
      <div itemprop="isRelatedTo" itemscope itemtype="https://schema.org/Product">
        <span itemprop="name">Other thing</span><span itemprop="price">1.00</span>
      </div>
    </div>"""
    info = extract_product(page(body=body), PAGE)
    assert info is not None
    assert (info.title, info.image_url, info.price, info.currency, info.brand) == (
        "Micro blouse",
        "https://shop.test/blouse.jpg",
        24.95,
        "EUR",
        "Brandy",
    )


def test_sources_fill_each_others_gaps_and_lies_fall_through() -> None:
    """JSON-LD lies about the picture and price; OpenGraph supplies both."""
    head = ld(
        {"@type": "Product", "name": "Honest name", "image": "javascript:alert(1)", "offers": {"price": "call us"}}
    )
    head += '<meta property="og:image" content="/og.jpg"><meta property="og:price:amount" content="12">'
    info = extract_product(page(head), PAGE)
    assert info is not None and (info.title, info.image_url, info.price) == (
        "Honest name",
        "https://shop.test/og.jpg",
        12.0,
    )


def test_selectors_override_structured_data() -> None:
    head = ld(
        {"@type": "Product", "name": "JSON name", "image": "/json.jpg", "offers": {"price": 10, "priceCurrency": "EUR"}}
    )
    body = '<h2 class="n">Selected name</h2><span class="p">1.234,50</span><span class="c">CHF</span><img class="big" src="/sel.jpg">'
    selectors = {"title": "h2.n", "price": "span.p", "currency": "span.c", "image": "img.big"}
    info = extract_product(page(head, body), PAGE, selectors=selectors)
    assert info is not None
    assert (info.title, info.price, info.currency, info.image_url) == (
        "Selected name",
        1234.5,
        "CHF",
        "https://shop.test/sel.jpg",
    )


def test_selectors_that_match_nothing_fall_back() -> None:
    head = ld({"@type": "Product", "name": "JSON name", "image": "/json.jpg"})
    info = extract_product(page(head), PAGE, selectors={"title": ".nope", "image": "[[bad selector"})
    assert info is not None and (info.title, info.image_url) == ("JSON name", "https://shop.test/json.jpg")


def test_heuristics_on_a_page_without_any_structured_data() -> None:
    body = (
        '<header><img src="/logo.png" alt="Shop logo"></header><main>'
        '<h1>  Plain   jacket </h1><img src="data:image/gif;base64,R0lG" data-src="/lazy/jacket.jpg">'
        '<div class="product-price">€ 120,00</div></main>'
    )
    info = extract_product(page("<title>Shop</title>", body), PAGE)
    assert info is not None
    assert (info.title, info.image_url, info.price, info.currency) == (
        "Plain jacket",
        "https://shop.test/lazy/jacket.jpg",
        120.0,
        "EUR",
    )


def test_hostile_product_page() -> None:
    head = ld(
        {
            "@type": "Product",
            "name": "Liar " + "very " * 2000,
            "image": ["javascript:alert(1)", "data:image/png;base64,AAAA"],
            "url": "https://evil.test/not-this-page",
            "brand": {"name": "\x00Bad\x07 brand"},
            "offers": [{"price": "-5"}, {"price": "call us"}, {"price": True}],
        }
    )
    head += '<meta property="og:image" content="https://cdn.test/ok.jpg">'
    info = extract_product(page(head), PAGE)
    assert info is not None
    assert len(info.title) == MAX_TITLE and info.title.endswith("…")
    assert info.price is None and info.currency is None
    assert info.url == PAGE  # the page's claim about its own URL is ignored
    assert info.brand == "Bad brand"
    assert info.image_url == "https://cdn.test/ok.jpg"


def test_page_without_a_usable_picture_is_none() -> None:
    head = ld({"@type": "Product", "name": "No pic", "image": "javascript:x"})
    assert extract_product(page(head, '<img src="javascript:void(0)">'), PAGE) is None
    assert extract_product("", PAGE) is None
    assert extract_product(b"\xff\xfe\x00garbage", PAGE) is None


def test_random_garbage_never_crashes() -> None:
    rng = random.Random(1234)
    alphabet = "<>/=\"' abcdefghij{}[]:,itemscopeprop@type application/ld+json script meta og:image 0123456789.€$-"
    for _ in range(300):
        junk = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 400)))
        extract_product(junk, PAGE)
        extract_search(junk, PAGE)


# ---- search pages ----------------------------------------------------------------------------
def test_itemlist_of_urls_and_of_products() -> None:
    elements = [
        {"@type": "ListItem", "position": 2, "url": "/p/2"},
        {"@type": "ListItem", "position": 1, "url": "https://shop.test/p/1"},
        {
            "@type": "ListItem",
            "position": 3,
            "item": {
                "@type": "Product",
                "name": "Full",
                "url": "/p/3",
                "image": "/3.jpg",
                "offers": {"price": "5", "priceCurrency": "EUR"},
            },
        },  # fmt: skip
        {"@type": "ListItem", "position": 4, "item": "/p/4"},
        {"@type": "ListItem", "position": 5, "url": "javascript:alert(1)"},
        {"@type": "ListItem", "position": 6, "url": "/p/1"},  # duplicate
        "/p/5",
    ]
    html = page(ld({"@context": "https://schema.org", "@graph": [{"@type": "ItemList", "itemListElement": elements}]}))
    result = extract_search(html, "https://shop.test/search?q=dress", shop="S")
    assert result.source == "json-ld"
    assert result.links == [
        "https://shop.test/p/1",
        "https://shop.test/p/2",
        "https://shop.test/p/4",
        "https://shop.test/p/5",
    ]
    assert [(p.title, p.url, p.image_url, p.price, p.shop) for p in result.products] == [
        ("Full", "https://shop.test/p/3", "https://shop.test/3.jpg", 5.0, "S")
    ]


def test_product_grid_heuristics() -> None:
    cards = "".join(
        f'<div class="card"><a href="/wish/{i}">♡</a><a href="/p/{i}"><img src="/{i}.jpg"></a><span>€{i}9,00</span></div>'
        for i in range(1, 5)
    )
    nav = '<nav><a href="/about"><img src="/logo.png"></a><a href="/sale">Sale</a></nav>'
    result = extract_search(page(body=nav + f'<div class="grid">{cards}</div>'), "https://shop.test/search?q=x")
    assert result.source == "grid"
    assert result.links == [f"https://shop.test/p/{i}" for i in range(1, 5)]


def test_grid_needs_repetition_and_prices() -> None:
    one_card = '<div class="card"><a href="/p/1"><img src="/1.jpg"></a><span>€19</span></div>'
    no_prices = "".join(
        f'<div class="card"><a href="/p/{i}"><img src="/{i}.jpg"></a><span>19,00</span></div>' for i in range(3)
    )
    assert extract_search(page(body=one_card), PAGE).links == []
    assert extract_search(page(body=no_prices), PAGE).source == "none"


def test_product_link_selector_overrides_everything() -> None:
    body = (
        '<div class="tile"><a class="wish" href="/w/1">♡</a><a class="go" href="/item/1"><img src="/1.jpg"></a></div>'
        * 2
    )
    body += '<div class="tile"><span class="go-wrap"><a href="/item/2">x</a></span></div>'
    html = page(ld({"@type": "ItemList", "itemListElement": ["/p/99"]}), body)
    result = extract_search(html, "https://shop.test/search", selectors={"product_link": "a.go, span.go-wrap"})
    assert result.source == "selectors"
    assert result.links == ["https://shop.test/item/1", "https://shop.test/item/2"]


def test_microdata_search_page() -> None:
    body = "".join(
        f'<li itemscope itemtype="http://schema.org/Product"><a itemprop="url" href="/p/{i}">'
        f'<span itemprop="name">Item {i}</span></a>{"<img itemprop=image src=/%d.jpg>" % i if i % 2 else ""}</li>'
        for i in range(1, 4)
    )
    result = extract_search(page(body=body), "https://shop.test/list")
    assert result.source == "microdata"
    assert [p.url for p in result.products] == ["https://shop.test/p/1", "https://shop.test/p/3"]
    assert result.links == ["https://shop.test/p/2"]


def test_encoding_from_the_http_header_is_used() -> None:
    data = json.dumps({"@type": "Product", "name": "Kjole blå", "image": "/k.jpg"}, ensure_ascii=False)
    html = page(f'<script type="application/ld+json">{data}</script>', "<p>" + "æøå " * 50 + "</p>").encode("latin-1")
    info = extract_product(html, PAGE, encoding="latin-1")
    assert info is not None and info.title == "Kjole blå"
    assert "\ufffd" not in extract_product(html.decode("latin-1"), PAGE).title  # str input works too


# ---- pagination ------------------------------------------------------------------------------
SEARCH = "https://shop.test/search?q=dress"


@pytest.mark.parametrize(
    ("markup", "selectors", "expected"),
    [
        ('<link rel="next" href="/search?q=dress&page=2">', None, "https://shop.test/search?q=dress&page=2"),
        ('<a rel="nofollow next" href="?q=dress&page=3">Next</a>', None, "https://shop.test/search?q=dress&page=3"),
        ('<a class="more" href="/s/2">More</a>', {"next": "a.more"}, "https://shop.test/s/2"),
        ('<li class="more"><a href="/s/4">More</a></li>', {"next": "li.more"}, "https://shop.test/s/4"),
        ('<a class="more" href="/s/2">More</a>', None, None),  # not rel=next and no selector
        ('<link rel="next" href="javascript:go()">', None, None),
        ('<link rel="next" href="/search?q=dress">', None, None),  # this very page
        ('<a rel="next" href="/search?q=dress#top">x</a>', None, None),
        ('<a class="more" href="/s/2">More</a>', {"next": "a[["}, None),  # a bad selector never raises
    ],
)
def test_next_page_is_found(markup: str, selectors: dict | None, expected: str | None) -> None:
    result = extract_search(f"<html><head></head><body>{markup}</body></html>", SEARCH, selectors=selectors)
    assert result.next_url == expected
