"""Style profiles through the service: real photos (Fashion-MNIST test images), real
embeddings, real database."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image
from sqlalchemy import func, select

from db.models import FeedbackRow, PhotoRow, RecommendationRow, UserRow
from engine.types import UserRef


async def send(service, user, photo_of, category: str, n: int, start: int = 0) -> list:
    return [await service.recommend(photo_of(category, start + i), user=user) for i in range(n)]


async def test_sneakers_and_bags_history(service, photo_of) -> None:
    user = UserRef("test", "sneakerhead")
    await send(service, user, photo_of, "Sneaker", 8)
    await send(service, user, photo_of, "Bag", 3)
    summary = await service.style(user)
    assert not summary.cold_start and summary.photo_count == 11
    rep = summary.clusters[0]
    assert rep.name.startswith("Sneakers"), [c.name for c in summary.clusters]
    assert any("Bags" in c.name for c in summary.clusters[1:]), [c.name for c in summary.clusters]
    shares = [c.share for c in summary.clusters]
    assert shares[0] == max(shares) and rep.share >= 0.5
    assert len(rep.items) == 10 and sum(s.item.category == "Sneaker" for s in rep.items) >= 7
    img = Image.open(io.BytesIO(summary.collage_jpeg))
    assert img.format == "JPEG" and img.width >= 400 and img.height >= 300
    assert np.asarray(img.convert("L")).std() > 20  # not blank


async def test_dresses_only_history(service, photo_of) -> None:
    user = UserRef("test", "dresses")
    await send(service, user, photo_of, "Dress", 5)
    summary = await service.style(user)
    # Dresses and shirts sit close in Fashion-MNIST: the name may lead with either, but
    # a dress-only history must be named for dresses.
    assert "dresses" in summary.clusters[0].name.lower() and summary.clusters[0].share >= 0.6


async def test_cold_start_says_how_many_more_and_shows_popular(service, photo_of) -> None:
    user = UserRef("test", "newbie")
    fan = UserRef("test", "fan")
    rec = await service.recommend(photo_of("Coat"), user=fan)
    liked = rec.items[3].item.id
    await service.feedback(fan, liked, 1)
    await service.recommend(photo_of("Shirt"), user=user)
    summary = await service.style(user)
    assert summary.cold_start and summary.photo_count == 1 and summary.needed == 2
    assert summary.popular[0].item.id == liked  # most liked first
    assert len(summary.popular) == 10
    recommended = {s.item.id for s in rec.items} | {liked}
    assert {s.item.id for s in summary.popular[1:10]} <= recommended | {s.item.id for s in summary.popular}


async def test_feedback_changes_the_ranking(service, photo_of) -> None:
    """Dislikes are never shown again; likes pull the profile; results lean towards the
    representative style (style_weight), and 0 turns that off."""
    user = UserRef("test", "ranker")
    await send(service, user, photo_of, "Sneaker", 5)
    query = photo_of("Sandal", 3)
    service.settings.style_weight = 0.0
    plain = await service.recommend(query, user=user)
    service.settings.style_weight = 0.5
    leaning = await service.recommend(query, user=user)

    def sneaker_rank_sum(rec) -> int:
        return sum(s.rank for s in rec.items if s.item.category == "Sneaker") + 11 * sum(
            s.item.category != "Sneaker" for s in rec.items
        )

    assert sneaker_rank_sum(leaning) < sneaker_rank_sum(plain)

    # A like moves the representative centroid towards the liked item.
    uid = await service.store.user_id("test", "ranker", create=False)
    before = (await service._profile(uid)).representative.centroid
    liked = plain.items[0].item.id
    liked_vec = service.catalogue.index.vectors([liked])[0]
    await service.feedback(user, liked, 1)
    after = (await service._profile(uid)).representative.centroid
    assert float(after @ liked_vec) > float(before @ liked_vec)

    # A dislike is never recommended to that user again.
    await service.feedback(user, liked, -1)
    again = await service.recommend(query, user=user)
    assert liked not in {s.item.id for s in again.items}


async def test_forget_leaves_nothing_of_the_user(service, photo_of) -> None:
    user = UserRef("test", "leaver")
    recs = await send(service, user, photo_of, "Pullover", 4)
    await service.feedback(user, recs[0].items[0].item.id, 1)
    assert not (await service.style(user)).cold_start
    uid = await service.store.user_id("test", "leaver", create=False)
    await service.forget(user)
    async with service.store.session() as s:
        for table, col in (
            (UserRow, UserRow.id),
            (PhotoRow, PhotoRow.user_id),
            (RecommendationRow, RecommendationRow.user_id),
            (FeedbackRow, FeedbackRow.user_id),
        ):
            assert (await s.execute(select(func.count()).select_from(table).where(col == uid))).scalar_one() == 0
    after = await service.style(user)
    assert after.cold_start and after.photo_count == 0
