"""scraper/demo_shop.py: the offline demo shop, crawled by the real scraper and service.

The shop takes its products injected; bot/demo.py builds them from Fashion-MNIST (the
scraper does not import the engine)."""

from __future__ import annotations

import shutil
import tomllib

import aiohttp
import pytest

from bot.demo import demo_shop_products
from db import trend_store
from engine.catalogue.ingest import FASHION_MNIST_CLASSES
from scraper import load_shops
from scraper.demo_shop import (
    SHOP_NAME,
    demo_allow_entry,
    placeholder_products,
    start_demo_shop,
    write_demo_shops_toml,
)
from tests.support.fakes.shop import ConnectSpy, loopback_spy  # noqa: F401 - fixture
from tests.support.settings import make_settings


def demo_products():
    return demo_shop_products()


def demo_picture(slug: str) -> bytes:
    return next(p.jpeg for p in demo_shop_products() if p.slug == slug)


def test_products_and_query_matching() -> None:
    products = demo_products()
    assert len(products) == 30
    assert {p.category for p in products} == set(FASHION_MNIST_CLASSES)
    assert len({p.slug for p in products}) == 30 and len({p.jpeg for p in products}) == 30

    def hits(query: str) -> set[str]:
        return {p.title for p in products if p.matches(query)}

    assert hits("dress") == hits("Dresses") == {p.title for p in products if p.category == "Dress"}
    assert len(hits("dress")) == 3
    assert all("T-shirt" not in t for t in hits("shirt")) and len(hits("shirt")) == 3
    assert hits("ankle boots") == hits("boot") and len(hits("boot")) == 3
    red = hits("red")
    assert red and all(t.startswith("Red ") for t in red)
    assert hits("red dress") == red & hits("dress")
    assert hits("nothing") == set() and hits("   ") == set()


async def test_demo_shop_trend(catalogue_dir, tmp_path, backbone, loopback_spy: ConnectSpy) -> None:
    from engine.service import FashionService

    url, runner = await start_demo_shop(products=demo_products())
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(url + "/robots.txt") as r:
                assert r.status == 200 and "Allow: /" in await r.text()
            async with http.get(url + "/img/dress-1.jpg") as r:
                body = await r.read()
                assert r.content_type == "image/jpeg" and body == demo_picture("dress-1")

        shops_file = write_demo_shops_toml(tmp_path / "shops.toml", url)
        entry = tomllib.loads(shops_file.read_text())["shops"][0]
        assert (entry["name"], entry["allow_hosts"]) == (SHOP_NAME, [demo_allow_entry(url)])
        assert [(s.name, s.allow_hosts) for s in load_shops(shops_file)] == [(SHOP_NAME, (demo_allow_entry(url),))]

        data_dir = tmp_path / "data"
        shutil.copytree(catalogue_dir, data_dir)
        # the shop's own allow_hosts admits it; the operator's list stays empty (issue 16 #10)
        settings = make_settings(data_dir, shops_file=shops_file, scraper_allow_hosts=[], scraper_min_delay=0.0)
        svc = await FashionService.create(settings, backbone=backbone)
        try:
            snaps = [p async for p in svc.trend("dresses")]
            final = snaps[-1]
            assert (final.done, final.error, final.found, final.indexed, final.skipped) == (True, None, 3, 3, 0)
            items = await svc.store.items(await trend_store.items_with_tag(svc.store, "dresses"))
            dresses = {p.title: p for p in demo_products() if p.category == "Dress"}
            assert sorted(i.title for i in items.values()) == sorted(dresses)
            for item in items.values():
                product = dresses[item.title]
                assert (item.category, item.shop, item.price, item.currency) == (
                    "Dress",
                    SHOP_NAME,
                    product.price,
                    "EUR",
                )
                assert item.color == product.colour and item.url == f"{url}/p/{product.slug}"
                # a photo of the product finds it first
                rec = await svc.recommend(demo_picture(product.slug))
                assert rec.items[0].item.id == item.id and rec.items[0].score > 0.98
            assert sorted(s.item.id for s in final.best) == sorted(items)
        finally:
            await svc.close()
    finally:
        await runner.cleanup()
    assert loopback_spy.refused == []


@pytest.mark.parametrize("query", ["nothing", "red"])
async def test_search_page_filters(query: str) -> None:
    from scraper.extract import extract_search

    url, runner = await start_demo_shop(products=demo_products())
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(url + "/search", params={"q": query}) as r:
                page = await r.read()
        result = extract_search(page, f"{url}/search?q={query}", shop=SHOP_NAME)
    finally:
        await runner.cleanup()
    expected = [f"{url}/p/{p.slug}" for p in demo_products() if p.matches(query)]
    assert result.links == expected
    assert (len(expected) > 0) == (query == "red")


async def test_without_products_the_shop_sells_placeholders() -> None:
    url, runner = await start_demo_shop()
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(url + "/search", params={"q": "dress"}) as r:
                page = await r.text()
            async with http.get(url + "/img/dress-1.jpg") as r:
                assert r.content_type == "image/jpeg" and await r.read() == placeholder_products()[9].jpeg
    finally:
        await runner.cleanup()
    assert page.count("/p/dress-") >= 3 and len(placeholder_products()) == 30
