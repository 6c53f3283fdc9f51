"""Unit tests for engine/styles/profile.py and engine/styles/collage.py on synthetic data.

Clusters are built from known directions plus noise, so every expected
partition, share and ordering is known in advance.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from engine.styles import collage
from engine.styles.profile import (
    COHESION_TIE_TOLERANCE,
    DEFAULT_DISTANCE_THRESHOLD,
    ProfileCache,
    StyleProfile,
    build_profile,
    name_cluster,
    pluralise,
    rerank,
)

DIMS = (256, 1280, 2048)


# ---------------------------------------------------------------------------
# Synthetic embeddings
# ---------------------------------------------------------------------------
def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def orthonormal(rng: np.random.Generator, d: int, k: int) -> np.ndarray:
    """k orthonormal directions (rows) in d dimensions."""
    q, _ = np.linalg.qr(rng.standard_normal((d, k)))
    return q.T


def style_directions(rng: np.random.Generator, d: int, k: int) -> np.ndarray:
    """k style directions with pairwise cosine 0.5, like CNN features (which are
    non-negative, so unrelated photos still have cosine ~0.5)."""
    basis = orthonormal(rng, d, k + 1)
    return unit(basis[0] + basis[1:])


def blob(rng: np.random.Generator, direction: np.ndarray, n: int, spread: float = 0.5) -> np.ndarray:
    """n unit vectors around ``direction``; spread 0.5 gives pairwise cosine ~0.8."""
    d = direction.shape[0]
    return unit(direction + rng.standard_normal((n, d)) * spread / np.sqrt(d)).astype(np.float32)


def shuffled(rng: np.random.Generator, *groups: np.ndarray) -> tuple[np.ndarray, list[set[int]]]:
    """Rows of all groups in random order, and each group's row indices."""
    x = np.concatenate(groups)
    perm = rng.permutation(len(x))
    inverse = np.argsort(perm)  # original row -> new position
    bounds = np.cumsum([0, *(len(g) for g in groups)])
    sets = [set(inverse[bounds[i] : bounds[i + 1]].tolist()) for i in range(len(groups))]
    return x[perm], sets


def member_sets(profile: StyleProfile) -> list[set[int]]:
    return [set(c.members.tolist()) for c in profile.clusters]


# ---------------------------------------------------------------------------
# build_profile: partition, representative, shares
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("d", DIMS)
def test_two_styles_big_one_is_representative(d: int) -> None:
    rng = np.random.default_rng(d)
    a, b = style_directions(rng, d, 2)
    x, (big, small) = shuffled(rng, blob(rng, a, 8), blob(rng, b, 3))

    profile = build_profile(x)

    assert profile is not None
    assert len(profile.clusters) == 2
    assert member_sets(profile) == [big, small]
    rep = profile.representative
    assert rep is profile.clusters[0]
    assert rep.share == pytest.approx(8 / 11)
    assert profile.clusters[1].share == pytest.approx(3 / 11)
    assert rep.cohesion > profile.clusters[1].cohesion
    assert float(rep.centroid @ a) > 0.97
    assert np.linalg.norm(rep.centroid) == pytest.approx(1.0, abs=1e-5)
    assert rep.centroid.dtype == np.float32


def test_single_style_is_one_cluster() -> None:
    rng = np.random.default_rng(1)
    (a,) = style_directions(rng, 1280, 1)
    profile = build_profile(blob(rng, a, 5))
    assert profile is not None
    assert len(profile.clusters) == 1
    only = profile.representative
    assert only.share == 1.0
    assert only.members.tolist() == [0, 1, 2, 3, 4]
    # Cohesion is the mean cosine to all photos, self included: (1 + 4 * ~0.8) / 5.
    assert 0.75 < only.cohesion < 0.9


def test_clusters_after_the_representative_are_ordered_by_share() -> None:
    rng = np.random.default_rng(2)
    dirs = style_directions(rng, 1280, 4)
    groups = [blob(rng, dirs[0], 9), blob(rng, dirs[1], 2), blob(rng, dirs[2], 5), blob(rng, dirs[3], 3)]
    x, sets = shuffled(rng, *groups)

    profile = build_profile(x)

    assert profile is not None
    assert member_sets(profile) == [sets[0], sets[2], sets[3], sets[1]]
    shares = [c.share for c in profile.clusters]
    assert shares == sorted(shares, reverse=True)
    assert sum(shares) == pytest.approx(1.0)
    assert sorted(i for c in profile.clusters for i in c.members.tolist()) == list(range(len(x)))


def test_too_few_photos_gives_none() -> None:
    rng = np.random.default_rng(3)
    (a,) = style_directions(rng, 256, 1)
    x = blob(rng, a, 4)
    assert build_profile(x[:2]) is None
    assert build_profile(x[:3]) is not None
    assert build_profile(x, min_photos=5) is None
    assert build_profile(np.empty((0, 256), np.float32)) is None
    one = build_profile(x[:1], min_photos=1)
    assert one is not None and one.representative.members.tolist() == [0]


def test_threshold_controls_granularity() -> None:
    rng = np.random.default_rng(4)
    a, b = style_directions(rng, 1280, 2)
    x = np.concatenate([blob(rng, a, 6), blob(rng, b, 6)])
    assert len(build_profile(x, distance_threshold=DEFAULT_DISTANCE_THRESHOLD).clusters) == 2
    assert len(build_profile(x, distance_threshold=0.9).clusters) == 1  # A-B distance is ~0.6
    assert len(build_profile(x, distance_threshold=0.0).clusters) == 12  # no two photos identical


def test_threshold_bounds_the_mean_distance_between_groups() -> None:
    # Two pairs of identical photos whose cosine distance is exactly 0.5.
    e = np.eye(16, dtype=np.float32)
    b = unit(e[0] + np.sqrt(3) * e[1])  # cos(e0, b) = 0.5
    x = np.stack([e[0], e[0], b, b])
    assert len(build_profile(x, distance_threshold=0.49).clusters) == 2
    assert len(build_profile(x, distance_threshold=0.51).clusters) == 1


def test_a_gradual_chain_of_photos_is_not_one_style() -> None:
    """Average linkage doesn't chain: 13 photos on a 120-degree arc, 10 degrees
    apart (neighbour distance 0.015), are split although every step is tiny.
    Single linkage would call the whole arc one style."""
    e = np.eye(64)
    angles = np.radians(np.linspace(0, 120, 13))
    x = (np.cos(angles)[:, None] * e[0] + np.sin(angles)[:, None] * e[1]).astype(np.float32)
    profile = build_profile(x)
    assert len(profile.clusters) == 2
    for cluster in profile.clusters:  # each style is a contiguous stretch of the arc
        m = cluster.members.tolist()
        assert m == list(range(m[0], m[-1] + 1))


def test_other_clusters_are_ordered_by_share_not_cohesion() -> None:
    """A small cluster close to the main style is more cohesive than a bigger,
    unrelated one, but the summary lists the bigger one first."""
    rng = np.random.default_rng(10)
    e = orthonormal(rng, 1280, 3)
    near_main = unit(0.45 * e[0] + np.sqrt(1 - 0.45**2) * e[1])
    x, (main, far, near) = shuffled(
        rng, blob(rng, e[0], 10, 0.3), blob(rng, e[2], 4, 0.3), blob(rng, near_main, 2, 0.3)
    )
    profile = build_profile(x)
    assert member_sets(profile) == [main, far, near]
    assert profile.clusters[2].cohesion > profile.clusters[1].cohesion  # the case this test is about


def test_the_same_photo_sent_several_times() -> None:
    """Duplicates give float32 cosine distances of about -2e-7; unclipped, scipy
    rejects the tree ("negative distances")."""
    rng = np.random.default_rng(3)
    x = np.repeat(rng.standard_normal((6, 1280)).astype(np.float32), 3, axis=0)
    profile = build_profile(x, distance_threshold=0.1)
    assert sorted(c.members.tolist() for c in profile.clusters) == [[i, i + 1, i + 2] for i in range(0, 18, 3)]


def test_rows_need_not_be_unit_length() -> None:
    rng = np.random.default_rng(5)
    a, b = style_directions(rng, 1280, 2)
    x = np.concatenate([blob(rng, a, 6), blob(rng, b, 3)])
    scaled = x * rng.uniform(0.5, 3.0, size=(len(x), 1)).astype(np.float32)
    assert member_sets(build_profile(scaled)) == member_sets(build_profile(x))


@pytest.mark.parametrize(
    "bad",
    [np.zeros((4, 8), np.float32), np.full((4, 8), np.nan, np.float32), np.ones(8, np.float32)],
    ids=["zero-rows", "nan", "1-d"],
)
def test_bad_embeddings_are_rejected(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        build_profile(bad)


def _tie_geometry(spread_degrees: float) -> np.ndarray:
    """3 identical photos at e0 (cohesion 3/7) and 4 photos around e1 at the given
    angle (cohesion 4 cos^2(angle) / 7): a tie at exactly 30 degrees."""
    e = np.eye(256, dtype=np.float64)[:4]
    c, s = np.cos(np.radians(spread_degrees)), np.sin(np.radians(spread_degrees))
    spread = [e[1] * c + e[2] * s, e[1] * c - e[2] * s, e[1] * c + e[3] * s, e[1] * c - e[3] * s]
    return np.stack([e[0], e[0], e[0], *spread]).astype(np.float32)


def test_equal_cohesion_is_broken_by_size() -> None:
    profile = build_profile(_tie_geometry(30.0), distance_threshold=0.6)
    assert profile is not None
    small, big = sorted(profile.clusters, key=lambda c: c.size)
    assert (small.size, big.size) == (3, 4)
    assert abs(small.cohesion - big.cohesion) < COHESION_TIE_TOLERANCE  # really a tie
    assert profile.representative is big


def test_cohesion_beats_size() -> None:
    # Spread the big cluster a little more: the small, tight one is now more central.
    profile = build_profile(_tie_geometry(35.0), distance_threshold=0.6)
    assert profile is not None
    assert [c.size for c in profile.clusters] == [3, 4]
    assert profile.representative.cohesion > profile.clusters[1].cohesion + 0.01


# ---------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------
def test_weights_pull_the_centroid_towards_a_liked_item() -> None:
    rng = np.random.default_rng(6)
    a, u = orthonormal(rng, 1280, 2)
    liked = unit(a + 0.6 * u).astype(np.float32)  # same style, off-centre
    x = np.concatenate([blob(rng, a, 6), liked[None]])
    plain = build_profile(x)
    heavy = build_profile(x, weights=np.r_[np.ones(6), 10.0])
    assert len(plain.clusters) == len(heavy.clusters) == 1  # same partition
    assert float(heavy.representative.centroid @ liked) > float(plain.representative.centroid @ liked) + 0.05


def test_weights_can_make_liked_items_the_representative_style() -> None:
    rng = np.random.default_rng(7)
    a, b = style_directions(rng, 1280, 2)
    x, (photos, liked) = shuffled(rng, blob(rng, a, 8), blob(rng, b, 3))
    assert set(build_profile(x).representative.members.tolist()) == photos

    w = np.ones(len(x))
    w[list(liked)] = 10.0
    profile = build_profile(x, weights=w)

    assert set(profile.representative.members.tolist()) == liked
    assert profile.representative.share == pytest.approx(30 / 38)
    assert sum(c.share for c in profile.clusters) == pytest.approx(1.0)


@pytest.mark.parametrize("weights", [np.ones(3), -np.ones(4), np.r_[1.0, 1.0, 0.0, 1.0], np.r_[1, 1, np.inf, 1]])
def test_bad_weights_are_rejected(weights: np.ndarray) -> None:
    x = unit(np.random.default_rng(8).standard_normal((4, 16))).astype(np.float32)
    with pytest.raises(ValueError):
        build_profile(x, weights=weights)


def test_profile_arrays_are_read_only() -> None:
    rng = np.random.default_rng(9)
    profile = build_profile(blob(rng, style_directions(rng, 256, 1)[0], 4))
    with pytest.raises(ValueError):
        profile.representative.centroid[0] = 0.0
    with pytest.raises(ValueError):
        profile.representative.members[0] = 99


# ---------------------------------------------------------------------------
# rerank
# ---------------------------------------------------------------------------
def _rerank_case() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate 0 is the best match but off-style; candidate 2 is on-style."""
    e = np.eye(8, dtype=np.float32)
    style = e[0]
    cands = np.stack([e[1], unit(e[0] + e[1]), e[0], e[2]])  # cos to style: 0, .71, 1, 0
    scores = np.array([0.90, 0.86, 0.80, 0.95 - 0.3])
    return cands, scores, style


def test_rerank_alpha_zero_is_identity() -> None:
    cands, scores, style = _rerank_case()
    unsorted = scores[::-1].copy()  # even unsorted or tied scores keep their order
    assert rerank(cands, scores, style, 0.0).tolist() == [0, 1, 2, 3]
    assert rerank(cands, unsorted, style, 0.0).tolist() == [0, 1, 2, 3]
    assert rerank(cands, np.zeros(4), style, 0.0).tolist() == [0, 1, 2, 3]
    assert rerank(cands, scores, None, 0.7).tolist() == [0, 1, 2, 3]


def test_rerank_moves_style_close_candidates_up() -> None:
    cands, scores, style = _rerank_case()
    # alpha 0.3: blended = 0.63, 0.81, 0.86, 0.455
    assert rerank(cands, scores, style, 0.3).tolist() == [2, 1, 0, 3]
    assert rerank(cands, scores, style, 1.0).tolist()[0] == 2
    # A tiny alpha changes nothing when scores are well separated.
    assert rerank(cands, scores, style, 0.01).tolist() == [0, 1, 2, 3]


def test_rerank_blends_score_and_style_with_the_given_weights() -> None:
    e = np.eye(4, dtype=np.float32)
    cands = np.stack([e[1], unit(0.9 * e[0] + np.sqrt(1 - 0.81) * e[1])])  # style cos 0 and 0.9
    scores = np.array([1.0, 0.4])
    # alpha 0.5: 0.5 vs 0.5 * 0.4 + 0.5 * 0.9 = 0.65, so the on-style item wins.
    assert rerank(cands, scores, e[0], 0.5).tolist() == [1, 0]
    # alpha 0.2: 0.8 vs 0.8 * 0.4 + 0.2 * 0.9 = 0.5, the better match stays first.
    assert rerank(cands, scores, e[0], 0.2).tolist() == [0, 1]


def test_rerank_validates_input() -> None:
    cands, scores, style = _rerank_case()
    with pytest.raises(ValueError):
        rerank(cands, scores, style, 1.5)
    with pytest.raises(ValueError):
        rerank(cands, scores[:2], style, 0.5)
    with pytest.raises(ValueError):
        rerank(cands, scores, style[:4], 0.5)
    assert rerank(np.empty((0, 8)), np.empty(0), style, 0.5).tolist() == []


# ---------------------------------------------------------------------------
# name_cluster
# ---------------------------------------------------------------------------
def items(*specs: tuple[int, dict]) -> list[dict]:
    return [dict(meta) for count, meta in specs for _ in range(count)]


@pytest.mark.parametrize(
    ("category", "plural"),
    [
        ("T-shirt/top", "T-shirts & tops"),
        ("Trouser", "Trousers"),
        ("Pullover", "Pullovers"),
        ("Dress", "Dresses"),
        ("Coat", "Coats"),
        ("Sandal", "Sandals"),
        ("Shirt", "Shirts"),
        ("Sneaker", "Sneakers"),
        ("Bag", "Bags"),
        ("Ankle boot", "Ankle boots"),
        ("Jeans", "Jeans"),
        ("Watch", "Watches"),
        ("Hoodie", "Hoodies"),
        ("Body", "Bodies"),
        ("Swimwear", "Swimwear"),
        ("Apparel & Accessories > Shoes > Loafer", "Loafers"),
    ],
)
def test_pluralise(category: str, plural: str) -> None:
    assert pluralise(category) == plural


def test_name_two_majority_categories() -> None:
    neighbours = items((6, {"category": "Sneaker"}), (3, {"category": "Sandal"}), (1, {"category": "Bag"}))
    assert name_cluster(neighbours) == "Sneakers & sandals"
    assert name_cluster(neighbours, max_parts=1) == "Sneakers"


def test_name_colour_prefix_only_with_a_majority() -> None:
    black = items((7, {"category": "Dress", "color": "Black"}), (3, {"category": "Dress", "color": "Red"}))
    assert name_cluster(black) == "Black dresses"
    split = items((5, {"category": "Dress", "color": "black"}), (5, {"category": "Dress", "color": None}))
    assert name_cluster(split) == "Dresses"


def test_name_keeps_meaningful_case_inside_the_name() -> None:
    neighbours = items((6, {"category": "Ankle boot", "color": "black"}), (4, {"category": "T-shirt/top"}))
    assert name_cluster(neighbours) == "Black ankle boots and T-shirts & tops"


def test_name_ignores_stray_categories_and_breaks_ties_by_nearness() -> None:
    one_bag = items((9, {"category": "Coat"}), (1, {"category": "Bag"}))
    assert name_cluster(one_bag) == "Coats"
    tie = items(
        (1, {"category": "Shirt"}), (1, {"category": "Coat"}), (2, {"category": "Coat"}), (2, {"category": "Shirt"})
    )
    assert name_cluster(tie) == "Shirts & coats"  # 3 each; the nearest neighbour is a shirt
    singular_and_plural = items((3, {"category": "Sandal"}), (3, {"category": "sandals"}))
    assert name_cluster(singular_and_plural) == "Sandals"


def test_name_falls_back_to_tags_brand_and_a_default() -> None:
    tagged = items((6, {"tags": "boho, summer"}), (4, {"tags": ("preppy",)}))
    assert name_cluster(tagged) == "Boho & summer style"
    branded = items((6, {"category": "Sneaker", "brand": "Nike"}), (2, {"category": "Sneaker", "brand": "Puma"}))
    assert name_cluster(branded) == "Sneakers by Nike"
    assert name_cluster([]) == "Mixed style"
    assert name_cluster(items((3, {"category": None, "color": None}))) == "Mixed style"


# ---------------------------------------------------------------------------
# ProfileCache
# ---------------------------------------------------------------------------
def test_cache_rebuilds_only_when_the_version_changes() -> None:
    cache = ProfileCache(maxsize=2)
    built: list[str] = []

    def builder(tag: str):
        def build() -> StyleProfile:
            built.append(tag)
            return StyleProfile(clusters=[])

        return build

    first = cache.get_or_build("alice", 1, builder("a1"))
    assert cache.get_or_build("alice", 1, builder("again")) is first
    cache.get_or_build("alice", 2, builder("a2"))
    assert built == ["a1", "a2"]
    assert ("alice", 2) in cache and ("alice", 1) not in cache
    assert len(cache) == 1  # one slot per user, whatever the version
    assert (cache.hits, cache.misses) == (1, 2)


def test_cache_evicts_least_recently_used_and_invalidates() -> None:
    cache = ProfileCache(maxsize=2)
    for user in ("a", "b"):
        cache.put(user, 1, None)
    assert cache.get_or_build("a", 1, lambda: pytest.fail("cached None must not rebuild")) is None
    cache.put("c", 1, None)  # evicts b, the least recently used
    assert ("a", 1) in cache and ("c", 1) in cache and ("b", 1) not in cache
    cache.invalidate("a")
    assert ("a", 1) not in cache and len(cache) == 1


# ---------------------------------------------------------------------------
# Collage
# ---------------------------------------------------------------------------
def solid(colour: tuple[int, int, int], size: tuple[int, int] = (60, 120), fmt: str = "JPEG") -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, format=fmt)
    return out.getvalue()


def open_jpeg(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    assert img.format == "JPEG"
    img.load()
    return img


def near(pixel: tuple[int, ...], colour: tuple[int, int, int], tol: int = 12) -> bool:
    return all(abs(p - c) <= tol for p, c in zip(pixel, colour))


def test_collage_is_a_real_non_blank_jpeg_of_the_expected_size() -> None:
    red, blue = (200, 30, 40), (30, 60, 200)
    rows = [
        ("Sneakers & sandals", [solid(red)] * 7),  # more than max_items: truncated to 5
        ("Black dresses", [solid(blue, (200, 100), "PNG")]),
    ]
    data = collage.render_collage(rows, thumb=160, shares=[0.7, 0.3], title="Your style")
    img = open_jpeg(data)

    layout = collage.collage_layout(2, 5, thumb=160, title=True)
    assert img.size == layout.size
    assert img.width == 2 * 24 + 5 * 160 + 4 * 10  # margins, 5 tiles, 4 gaps
    assert img.height > 2 * 160 + 4 * 24  # two rows of tiles, labels and margins
    assert np.asarray(img.convert("L"), dtype=np.float64).std() > 25
    # The thumbnails landed in their tiles, the background is light.
    for row, col, colour in [(0, 0, red), (0, 4, red), (1, 0, blue)]:
        left, top, right, bottom = layout.tile_box(row, col)
        assert near(img.getpixel(((left + right) // 2, (top + bottom) // 2)), colour)
    assert near(img.getpixel((3, 3)), collage.BACKGROUND, tol=4)
    left, top, right, _ = layout.tile_box(1, 1)  # row 2 has one item: no second tile
    assert near(img.getpixel(((left + right) // 2, top + 20)), collage.BACKGROUND, tol=4)


def test_collage_labels_are_drawn() -> None:
    with_label = open_jpeg(collage.render_collage([("Sneakers & sandals", [solid((200, 30, 40))])]))
    without = open_jpeg(collage.render_collage([("", [solid((200, 30, 40))])]))
    layout = collage.collage_layout(1, 1)
    band = (layout.margin, layout.margin, with_label.width - layout.margin, layout.margin + layout.label_height)
    assert np.asarray(with_label.crop(band).convert("L")).min() < 100  # dark text pixels
    assert np.asarray(without.crop(band).convert("L")).min() > 200


@pytest.mark.parametrize("bad", [b"not an image", b"", solid((0, 0, 0))[:60]], ids=["garbage", "empty", "truncated"])
def test_collage_tolerates_undecodable_thumbnails(bad: bytes) -> None:
    data = collage.render_collage([("Coats", [bad, solid((30, 60, 200))])], thumb=96)
    img = open_jpeg(data)
    layout = collage.collage_layout(1, 2, thumb=96)
    assert img.size == layout.size
    left, top, _, _ = layout.tile_box(0, 0)
    assert near(img.getpixel((left + 6, top + 6)), collage.PLACEHOLDER)  # grey placeholder
    left, top, right, bottom = layout.tile_box(0, 1)
    assert near(img.getpixel(((left + right) // 2, (top + bottom) // 2)), (30, 60, 200))


def forged_png(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb)."""
    import struct
    import zlib

    data = bytearray(solid((0, 0, 0), (1, 1), "PNG"))
    ihdr = data.index(b"IHDR")
    data[ihdr + 4 : ihdr + 12] = struct.pack(">II", width, height)
    data[ihdr + 17 : ihdr + 21] = struct.pack(">I", zlib.crc32(bytes(data[ihdr : ihdr + 17])))
    return bytes(data)


def test_collage_refuses_decompression_bombs() -> None:
    """Thumbnails go through engine.vision.images' pixel cap: a 30000 x 30000 claim is a
    placeholder, not a 2.7 GB allocation or a crash."""
    img = open_jpeg(collage.render_collage([("Bags", [forged_png(30000, 30000)])], thumb=64))
    left, top, _, _ = collage.collage_layout(1, 1, thumb=64).tile_box(0, 0)
    assert near(img.getpixel((left + 4, top + 4)), collage.PLACEHOLDER)


def test_collage_rejects_nothing_to_draw() -> None:
    with pytest.raises(ValueError):
        collage.render_collage([])
    with pytest.raises(ValueError):
        collage.render_collage([("Coats", [])], shares=[0.5, 0.5])
