"""Catalogue ingest: feeds with bad rows, Kaggle layout, resumable Fashion-MNIST."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from engine.catalogue import ingest as catalogue
from engine.service import FashionService
from tests.support.settings import make_settings


def write_jpeg(path, colour) -> None:
    arr = np.full((120, 90, 3), 255, dtype=np.uint8)
    arr[20:100, 15:75] = colour
    Image.fromarray(arr).save(path, format="JPEG")


@pytest.fixture
async def empty_service(tmp_path, backbone):
    svc = await FashionService.create(make_settings(tmp_path / "data"), backbone=backbone)
    yield svc
    await svc.close()


def test_price_parsing() -> None:
    assert catalogue._parse_price("19.99 EUR") == (19.99, "EUR")
    assert catalogue._parse_price("$25") == (25.0, "USD")
    assert catalogue._parse_price("19,99") == (19.99, "EUR")
    assert catalogue._parse_price("1,299.00 GBP") == (1299.0, "GBP")
    for bad in ("call us", "-5", "1e12"):
        with pytest.raises(ValueError):
            catalogue._parse_price(bad)


async def test_merchant_csv_feed_reports_bad_rows_and_keeps_good_ones(tmp_path, empty_service) -> None:
    write_jpeg(tmp_path / "red.jpg", (200, 20, 20))
    write_jpeg(tmp_path / "blue.jpg", (20, 20, 200))
    (tmp_path / "broken.jpg").write_text("not an image")
    feed = tmp_path / "shop.csv"
    feed.write_text(
        "id,title,link,image_link,price,brand,color,gender,product_type\n"
        "a1,Red dress,https://shop.example/a1,red.jpg,49.90 EUR,Acme,red,female,Apparel > Dresses\n"  # line 2 ok
        "a2,,https://shop.example/a2,red.jpg,10 EUR,,,,\n"  # 3: no title
        "a3,Mystery,https://shop.example/a3,red.jpg,call us,,,,\n"  # 4: bad price
        "a4,Ghost,https://shop.example/a4,missing.jpg,5 EUR,,,,\n"  # 5: no image file
        "a5,Broken,https://shop.example/a5,broken.jpg,5 EUR,,,,\n"  # 6: not an image
        "a6,Sneaky,javascript:alert(1),red.jpg,5 EUR,,,,\n"  # 7: bad link
        "a7,Local,https://shop.example/a7,http://127.0.0.1:9/x.jpg,5 EUR,,,,\n"  # 8: SSRF refused
        "a8,Blue coat,https://shop.example/a8,blue.jpg,$120,Acme,blue,,Apparel > Coats\n"  # 9 ok
    )
    report = await catalogue.ingest_rows(empty_service, catalogue.feed_rows(feed, 10_000_000))
    assert report.added == 2
    assert [line for line, _ in sorted(report.bad_rows)] == [3, 4, 5, 6, 7, 8]
    reasons = dict(report.bad_rows)
    assert "price" in reasons[4] and "loopback" in reasons[8] and "http" in reasons[7]
    rec = await empty_service.recommend((tmp_path / "red.jpg").read_bytes())
    top = rec.items[0].item
    assert (top.title, top.price, top.currency, top.category, top.url) == (
        "Red dress", 49.9, "EUR", "Dresses", "https://shop.example/a1"
    )
    # Running it again embeds nothing new.
    again = await catalogue.ingest_rows(empty_service, catalogue.feed_rows(feed, 10_000_000))
    assert again.added == 0 and again.skipped_existing == 2


async def test_jsonl_feed(tmp_path, empty_service) -> None:
    write_jpeg(tmp_path / "g.jpg", (20, 160, 20))
    lines = [
        json.dumps({"id": "j1", "title": "Green top", "image_link": "g.jpg", "price": 15}),
        "{not json",
        json.dumps(["a", "list"]),
    ]
    feed = tmp_path / "feed.jsonl"
    feed.write_text("\n".join(lines) + "\n")
    report = await catalogue.ingest_rows(empty_service, catalogue.feed_rows(feed, 10_000_000))
    assert report.added == 1 and [line for line, _ in report.bad_rows] == [2, 3]


async def test_kaggle_layout(tmp_path, empty_service) -> None:
    root = tmp_path / "kaggle"
    (root / "images").mkdir(parents=True)
    write_jpeg(root / "images" / "15970.jpg", (30, 30, 90))
    write_jpeg(root / "images" / "39386.jpg", (10, 10, 10))
    (root / "styles.csv").write_text(
        "id,gender,masterCategory,subCategory,articleType,baseColour,season,year,usage,productDisplayName\n"
        "15970,Men,Apparel,Topwear,Shirts,Navy Blue,Fall,2011,Casual,Turtle Check Men Navy Blue Shirt\n"
        "39386,Men,Apparel,Bottomwear,Jeans,Blue,Summer,2012,Casual,Peter England Men Party Blue Jeans\n"
        "59263,Women,Accessories,Watches,Watches,Silver,Winter,2016,Casual,Titan Women Silver Watch\n"
        "21379,Men,Apparel,Bottomwear,Track Pants,Black,Fall,2011,Casual,Manchester United Men,Solid Black\n"
    )
    report = await catalogue.ingest_rows(empty_service, catalogue.feed_rows(root / "styles.csv", 10_000_000))
    assert report.added == 2 and [line for line, _ in report.bad_rows] == [4, 5]
    items = await empty_service.store.items([1, 2])
    assert {i.category for i in items.values()} == {"Shirts", "Jeans"}
    assert {i.color for i in items.values()} == {"Navy Blue", "Blue"}


async def test_fashion_mnist_ingest_is_resumable(empty_service) -> None:
    size = empty_service.embedder.input_size
    first = await catalogue.ingest_rows(empty_service, catalogue.fashion_mnist_rows("train", 30, size))
    assert first.added == 30
    skip = await empty_service.store.all_external_ids("fashion-mnist")
    second = await catalogue.ingest_rows(empty_service, catalogue.fashion_mnist_rows("train", 40, size, skip=skip))
    assert second.added == 10  # only the 10 new ones were embedded
    items = await empty_service.store.items(list(range(1, 41)))
    assert {i.category for i in items.values()} <= set(catalogue.FASHION_MNIST_CLASSES)
    assert len({i.title for i in items.values()}) == 40
