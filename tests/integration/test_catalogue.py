"""Catalogue ingest: feeds with bad rows, Kaggle layout, resumable Fashion-MNIST, reindex.

Prices: tests/unit/test_prices.py; remote feed pictures: test_ingest_feed_fetch.py;
the runner's overlap and failure handling: tests/unit/test_ingest_runner.py."""

from __future__ import annotations

import asyncio
import io
import json

import numpy as np
import pytest
from PIL import Image

from engine.catalogue import ingest as catalogue
from engine.service import SAME_PICTURE, FashionService
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
    report = await catalogue.ingest_feed(empty_service.catalogue, empty_service.encoder, feed)
    assert report.added == 2 and report.total == 8
    assert [line for line, _ in sorted(report.bad_rows)] == [3, 4, 5, 6, 7, 8]
    reasons = dict(report.bad_rows)
    assert "price" in reasons[4] and "loopback" in reasons[8] and "http" in reasons[7]
    rec = await empty_service.recommend((tmp_path / "red.jpg").read_bytes(), whole_photo=True)
    top = rec.items[0].item
    assert (top.title, top.price, top.currency, top.category, top.url) == (
        "Red dress",
        49.9,
        "EUR",
        "Dresses",
        "https://shop.example/a1",
    )
    # Running it again embeds nothing new.
    again = await catalogue.ingest_feed(empty_service.catalogue, empty_service.encoder, feed)
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
    report = await catalogue.ingest_feed(empty_service.catalogue, empty_service.encoder, feed)
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
    report = await catalogue.ingest_feed(empty_service.catalogue, empty_service.encoder, root / "styles.csv")
    assert report.added == 2 and [line for line, _ in report.bad_rows] == [4, 5]
    items = await empty_service.store.items([1, 2])
    assert {i.category for i in items.values()} == {"Shirts", "Jeans"}
    assert {i.color for i in items.values()} == {"Navy Blue", "Blue"}


async def test_fashion_mnist_ingest_is_resumable(empty_service) -> None:
    size = empty_service.encoder.embedder.input_size
    first = await catalogue.ingest_rows(
        empty_service.catalogue, empty_service.encoder, catalogue.fashion_mnist_rows("train", 30, size)
    )
    assert first.added == 30
    skip = await empty_service.store.all_external_ids("fashion-mnist")
    rows = catalogue.fashion_mnist_rows("train", 40, size, skip=skip)
    second = await catalogue.ingest_rows(empty_service.catalogue, empty_service.encoder, rows)
    assert second.added == 10  # only the 10 new ones were embedded
    items = await empty_service.store.items(list(range(1, 41)))
    assert {i.category for i in items.values()} <= set(catalogue.FASHION_MNIST_CLASSES)
    assert len({i.title for i in items.values()}) == 40


class Recorder:
    """A Progress that remembers what it was told, in order."""

    def __init__(self) -> None:
        self.total: float | None = None
        self.events: list[tuple[str, float | None]] = []

    def __setattr__(self, name: str, value: object) -> None:
        if name == "total" and "events" in self.__dict__:
            self.events.append(("total", value))  # type: ignore[arg-type]
        object.__setattr__(self, name, value)

    def update(self, n: float | None = 1) -> None:
        self.events.append(("update", n))


async def test_service_fashion_mnist_ingest_reports_total_first_and_status(empty_service) -> None:
    bar = Recorder()
    assert empty_service.ingest_status() is None
    report = await empty_service.ingest_fashion_mnist(limit=300, progress=bar)
    assert report.added == 300 and report.total == 300
    assert bar.events[0] == ("total", 300)
    assert sum(n for kind, n in bar.events if kind == "update") == 300
    status = empty_service.ingest_status()
    assert (status.kind, status.state, status.total, status.done, status.added, status.bad) == (
        "fashion-mnist",
        "done",
        300,
        300,
        300,
        0,
    )
    assert status.fraction == 1.0 and status.rate > 0
    again = await empty_service.ingest_fashion_mnist(limit=300)
    assert again.added == 0 and again.skipped_existing == 300


async def test_background_ingest_is_observable_while_it_runs(empty_service) -> None:
    task = asyncio.create_task(empty_service.ingest_fashion_mnist(limit=512))
    seen: list[int] = []
    while not task.done():
        status = empty_service.ingest_status()
        if status is not None:
            seen.append(status.done)
        await asyncio.sleep(0.05)
    report = await task
    assert report.added == 512
    assert any(0 < d < 512 for d in seen), seen  # progress was visible part-way
    assert empty_service.ingest_status().state == "done"
    assert len(empty_service.catalogue) == 512


async def test_reindex_reembeds_with_the_total_up_front(empty_service) -> None:
    size = empty_service.encoder.input_size
    await catalogue.ingest_rows(
        empty_service.catalogue, empty_service.encoder, catalogue.fashion_mnist_rows("train", 300, size)
    )
    store = empty_service.store
    # As if the backbone changed: every item's embedding belongs to another model now.
    ids = list(range(1, 301))
    await store.set_embeddings("old-model", [(i, b"") for i in ids])
    assert await store.count_to_embed(empty_service.model_key) == 300
    bar = Recorder()
    count = await empty_service.reindex(progress=bar)
    assert count == 300 and len(empty_service.catalogue) == 300
    assert bar.events[0] == ("total", 300)
    assert sum(n for kind, n in bar.events if kind == "update") == 300
    assert await store.count_to_embed(empty_service.model_key) == 0
    rec = await empty_service.recommend(await store.item_image(7) or b"", whole_photo=True)
    assert rec.items[0].item.id == 7  # the re-embedded vectors are the ones searched


async def test_a_large_feed_picture_is_kept_small_and_its_vector_is_the_kept_pictures(tmp_path, empty_service) -> None:
    """A shop's 1200×1600 product photo: the item keeps a 384×512 JPEG, the vector is the
    one a reindex of that kept picture computes (the model's pixels come from it), and the
    shop's original file sent as a photo still finds the item first as a product shot."""
    rng = np.random.default_rng(3)
    arr = np.full((1600, 1200, 3), 250, dtype=np.uint8)
    yy, xx = np.mgrid[0:1600, 0:1200]
    dress = ((xx - 600) / (250 + (yy - 300) * 0.25)) ** 2 < 1
    dress &= (yy > 300) & (yy < 1400)
    stripes = (np.sin(yy / 9.0) > 0)[..., None] * np.array([150, 20, 40]) + np.array([60, 10, 30])
    arr[dress] = (stripes[dress] + rng.integers(0, 20, (int(dress.sum()), 3))).astype(np.uint8)
    Image.fromarray(arr).save(tmp_path / "big.jpg", format="JPEG", quality=92)
    write_jpeg(tmp_path / "blue.jpg", (20, 20, 200))
    feed = tmp_path / "shop.csv"
    feed.write_text(
        "id,title,link,image_link,price\n"
        "b1,Striped dress,https://shop.example/b1,big.jpg,59 EUR\n"
        "b2,Blue coat,https://shop.example/b2,blue.jpg,99 EUR\n"
    )
    report = await catalogue.ingest_feed(empty_service.catalogue, empty_service.encoder, feed)
    assert report.added == 2
    kept = await empty_service.store.item_image(1)
    assert kept is not None
    with Image.open(io.BytesIO(kept)) as small:
        assert (small.format, small.size) == ("JPEG", (384, 512))
    stored = (await empty_service.catalogue.vectors([1]))[0]
    again = (await empty_service.encoder.embed_pictures([await empty_service.encoder.decode(kept)]))[0]
    assert float(stored @ again) >= 0.99
    rec = await empty_service.recommend((tmp_path / "big.jpg").read_bytes())
    assert rec.items[0].item.title == "Striped dress"
    assert rec.items[0].score >= SAME_PICTURE


async def test_a_shelf_far_from_the_photo_still_gives_ten_items(empty_service) -> None:
    """500 sandals near the query and 12 pullovers far from it: searched on the top shelf,
    the ten nearest pullovers come back (a real photo's sweatshirt on the demo's 5,000 items
    showed 6 items: only 6 tops were among its 384 nearest)."""
    from db.store import NewItem

    cat = empty_service.catalogue
    dim = empty_service.backbone.dim
    rng = np.random.default_rng(0)
    query = rng.normal(size=dim).astype(np.float32)
    query /= np.linalg.norm(query)
    near = query + rng.normal(scale=0.02, size=(500, dim)).astype(np.float32)
    far = -query + rng.normal(scale=0.05, size=(12, dim)).astype(np.float32)
    vecs = np.vstack([near, far])
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    items = [
        NewItem(
            source="test",
            external_id=f"i{n}",
            title=f"Item {n}",
            image=b"",
            category="Sandal" if n < 500 else "Pullover",
        )
        for n in range(512)
    ]
    ids = await cat.add_items(items, vecs)
    pullovers = ids[500:]
    got = await cat.nearest(query, 80, group="top", need=10, shelves=("top",))
    exact = [pullovers[j] for j in np.argsort(-(vecs[500:] @ query))[:10]]
    assert [i for i, _ in got] == exact
