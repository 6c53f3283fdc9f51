"""The pieces of engine/trends/runner.py that need no shop: tags, categories, when two pictures
are the same product (on real Lite0 features), snapshot fan-out, and offers in search()."""

from __future__ import annotations

import asyncio
import io

import numpy as np
import pytest
from PIL import Image, ImageOps

from db import trend_store
from db.trend_store import NewOffer, add_tag
from engine.trends.runner import (
    NEAR_COSINE,
    NEAR_DHASH_BITS,
    _Run,
    fingerprint,
    guess_category,
    hamming,
    same_picture,
    shop_source,
    trend_tag,
)
from engine.types import Offer


def test_trend_tag_normalises_and_refuses_empty() -> None:
    assert trend_tag("  Summer   DRESS ") == "summer dress"
    assert trend_tag("red,dress") == "red dress"  # commas separate tags in items.tags
    with pytest.raises(ValueError, match="needs a tag"):
        trend_tag(" , ")


def test_add_tag_keeps_order_and_is_idempotent() -> None:
    assert add_tag("", "dress") == "dress"
    assert add_tag("dress", "summer dress") == "dress,summer dress"
    assert add_tag("dress,summer dress", "dress") == "dress,summer dress"


@pytest.mark.parametrize(
    ("title", "category"),
    [
        ("Red striped dress no. 1", "Dress"),
        ("Navy T-shirt", "T-shirt/top"),
        ("Grey Shirt", "Shirt"),
        ("Shirt dress in linen", "Dress"),  # the last category named wins
        ("Mustard Ankle boots", "Ankle boot"),
        ("Forest Sneakers", "Sneaker"),
        ("Black Trousers", "Trouser"),
        ("Rose Sandals", "Sandal"),
        ("Leather tote bag", "Bag"),
        ("Laptop stand", None),  # "top" inside a word is not a top
        ("Gift card", None),
    ],
)
def test_guess_category(title: str, category: str | None) -> None:
    assert guess_category(title) == category


def test_shop_source_fits_the_column() -> None:
    assert shop_source("Shop A") == "shop:Shop A"
    long_a, long_b = shop_source("x" * 80 + "a"), shop_source("x" * 80 + "b")
    assert len(long_a) <= 64 and len(long_b) <= 64 and long_a != long_b


def _tinted(pixels28: np.ndarray, rgb: tuple[int, int, int], side: int = 400, quality: int = 90) -> bytes:
    from engine.catalogue.ingest import fashion_mnist_picture

    grey = fashion_mnist_picture(pixels28).convert("L")
    img = ImageOps.colorize(grey, black=rgb, white=(255, 255, 255)).resize((side, side), Image.Resampling.BICUBIC)
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=quality)
    return out.getvalue()


async def test_same_picture_on_real_features(service, fmnist_test) -> None:
    """Why both perceptual tests must agree: dHash is colour-blind, the embedding is not; a
    re-encoded copy passes both."""
    images, _ = fmnist_test
    garment = images[0]
    red, blue = _tinted(garment, (180, 25, 40)), _tinted(garment, (25, 40, 160))
    red_copy = _tinted(garment, (180, 25, 40), side=300, quality=60)  # another shop's re-encode
    other = _tinted(images[1], (180, 25, 40))

    async def describe(data: bytes) -> tuple[str, int, np.ndarray]:
        prepared = await service.encoder.prepare(data, keep=True)
        sha, dhash = await asyncio.to_thread(fingerprint, prepared.jpeg)
        return sha, dhash, await service.encoder.embedder.embed_one(prepared.pixels)

    (r_sha, r_dh, r_vec), (b_sha, b_dh, b_vec), (c_sha, c_dh, c_vec), (o_sha, o_dh, o_vec) = [
        await describe(d) for d in (red, blue, red_copy, other)
    ]
    # colour variants: dHash says "same", the embedding says "different" -> different products
    assert hamming(r_dh, b_dh) <= NEAR_DHASH_BITS
    assert float(r_vec @ b_vec) < NEAR_COSINE
    assert not same_picture(r_sha, r_dh, b_sha, b_dh, float(r_vec @ b_vec), same_shop=False)
    # a re-encoded copy at another shop: same product
    assert r_sha != c_sha and float(r_vec @ c_vec) >= NEAR_COSINE and hamming(r_dh, c_dh) <= NEAR_DHASH_BITS
    assert same_picture(r_sha, r_dh, c_sha, c_dh, float(r_vec @ c_vec), same_shop=False)
    # ... but at the same shop two pages with merely similar pictures are two products
    assert not same_picture(r_sha, r_dh, c_sha, c_dh, float(r_vec @ c_vec), same_shop=True)
    # the identical picture is the same product anywhere (the stored JPEG is deterministic)
    again = await describe(red)
    assert again[0] == r_sha and same_picture(r_sha, r_dh, again[0], again[1], 0.0, same_shop=True)
    # a different garment in the same colour is not
    assert not same_picture(r_sha, r_dh, o_sha, o_dh, float(r_vec @ o_vec), same_shop=False)


async def test_snapshots_fan_out_and_coalesce() -> None:
    run = _Run(tag="dress", user=None, shops_total=2)
    run.publish()
    fast, slow = run.follow(), run.follow()
    assert (await anext(fast)).found == 0 and (await anext(slow)).found == 0
    run.found = 1
    run.publish()
    run.publish()  # unchanged: not a new snapshot
    assert (await anext(fast)).found == 1
    run.found = 2
    run.publish()
    assert (await anext(fast)).found == 2
    # the slow reader skips to the newest snapshot instead of replaying every one
    assert (await anext(slow)).found == 2
    waiting = asyncio.ensure_future(anext(fast))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    run.publish(run.snapshot(done=True))
    assert (await waiting).done
    run.found = 3
    run.publish()  # nothing follows the final snapshot
    assert [p.found async for p in slow] == [2]
    with pytest.raises(StopAsyncIteration):
        await anext(fast)


async def test_search_results_carry_offers_cheapest_first(service, photo_of) -> None:
    rec = await service.recommend(photo_of("Bag"))
    target = rec.items[0].item.id
    assert rec.items[0].offers == ()
    await trend_store.record_listings(
        service.store,
        "bag",
        tagged=[target],
        offers=[
            NewOffer(target, "Shop C", 30.0, "EUR", "http://c.example/p/1"),
            NewOffer(target, "Shop B", None, "EUR", "http://b.example/p/1"),
            NewOffer(target, "Shop D", 12.5, "EUR", "http://d.example/p/1"),
            NewOffer(target, "Shop C", 35.0, "EUR", "http://c.example/p/2"),  # dearer listing: ignored
            NewOffer(target, "Shop D", 11.0, "EUR", "http://d.example/p/1"),  # same page, new price
        ],
    )
    again = await service.recommend(photo_of("Bag"))
    assert again.items[0].item.id == target
    assert again.items[0].offers == (
        Offer("Shop D", 11.0, "EUR", "http://d.example/p/1"),
        Offer("Shop C", 30.0, "EUR", "http://c.example/p/1"),
        Offer("Shop B", None, "EUR", "http://b.example/p/1"),
    )
    assert all(s.offers == () for s in again.items[1:])
    assert "bag" in (await service.item(target)).tags
