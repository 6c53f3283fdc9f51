"""Per-user style profiles: hierarchical clustering of a user's photo embeddings.

Pure computation (numpy + scipy): no database, no torch, no hnswlib, so it can
be unit-tested with synthetic vectors and run in a worker thread.

Method (after the paper in ``/work/shared/reference``): cluster the user's photos
hierarchically with a *distance threshold* (not a fixed number of styles),
average each cluster into a centroid, and call the cluster whose members are, on
average, most similar to *all* of the user's photos the representative style.

Why average linkage on cosine distance (and not Ward):

* The threshold keeps one meaning whatever the history size: two groups merge
  when the mean cosine distance between their photos is below it. Ward's merge
  height grows with the square root of the cluster sizes, so one fixed Ward
  threshold over-merges a 10-photo history and over-splits a 1,000-photo one.
  Measured on efficientnet-lite0 features of simulated Fashion-MNIST users
  (``bench/bench_styles.py --calibrate``, adjusted Rand index against the true
  categories): Ward's best threshold drifts from 1.4 (3-11 photos per style) to
  2.5 (20-59 per style), and its best *single* threshold (1.6) scores 0.44-0.63
  across those regimes; average linkage at 0.475 scores 0.55-0.56 in every one.
  (Ward re-tuned for each history size peaks higher, 0.67-0.81: all numbers
  are in ``bench/results/styles_calibration.json``.)
* Average linkage also doesn't chain: a slow drift of photos from one style to
  another is not glued into one cluster the way single linkage glues it.
* Cosine is the metric the vector index ranks by, so "close in the profile"
  and "close in search results" mean the same thing. On unit vectors Euclidean
  distance is a monotone function of it (``|a-b|^2 = 2 - 2cos``), which is the
  paper's Euclidean distance in another unit; we measured no difference in
  partition quality between the two under average linkage.
* scipy runs average linkage with the nearest-neighbour-chain algorithm,
  O(n^2) time on a condensed distance matrix we build with one BLAS matrix
  product, so 1,000 photos profile in tens of milliseconds.
"""

from __future__ import annotations

import math
import re
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform

__all__ = [
    "DEFAULT_DISTANCE_THRESHOLD",
    "ClusterProfile",
    "StyleProfile",
    "ProfileCache",
    "build_profile",
    "name_cluster",
    "pluralise",
    "rerank",
]

#: Mean cosine distance below which two groups of photos are one style.
#: Calibrated on efficientnet-lite0 (1280-d) features of Fashion-MNIST: agreement
#: with the true categories plateaus at 0.45-0.50 and falls off a cliff above it
#: (at 0.55 nearly every user becomes one cluster), so we sit inside the plateau,
#: a step away from the cliff. Other backbones have other similarity scales
#: (ResNet-50 could not be measured offline): pass their own value.
DEFAULT_DISTANCE_THRESHOLD = 0.475

#: Two cohesions closer than this are a tie, broken by size. Cohesions are means
#: of float32 dot products, so "equal" configurations differ by ~1e-7.
COHESION_TIE_TOLERANCE = 1e-6


# ---------------------------------------------------------------------------
# Profile data
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ClusterProfile:
    """One style: a group of the user's photos.

    ``share`` and ``cohesion`` are weighted when :func:`build_profile` gets
    weights (without weights ``share == len(members) / n``).
    """

    centroid: np.ndarray  # (d,) float32, unit length: the re-normalised (weighted) mean of members
    members: np.ndarray  # (m,) int, ascending indices into the input rows
    share: float  # fraction of the (weighted) photos in this cluster, 0..1
    cohesion: float  # mean cosine similarity of members to ALL the user's photos

    @property
    def size(self) -> int:
        """Number of photos in the cluster (unweighted)."""
        return int(len(self.members))


@dataclass(frozen=True)
class StyleProfile:
    """A user's styles: the representative cluster first, then by share, descending."""

    clusters: list[ClusterProfile]

    @property
    def representative(self) -> ClusterProfile:
        """The suggested style: the cluster most similar to all of the user's photos."""
        return self.clusters[0]


# ---------------------------------------------------------------------------
# Building a profile
# ---------------------------------------------------------------------------
def build_profile(
    embeddings: np.ndarray,
    *,
    distance_threshold: float = DEFAULT_DISTANCE_THRESHOLD,
    weights: np.ndarray | None = None,
    min_photos: int = 3,
) -> StyleProfile | None:
    """Cluster a user's photo embeddings into styles; ``None`` below ``min_photos`` rows.

    ``embeddings`` is (n, d); rows are re-normalised here, so slightly-off unit
    vectors (float16 storage, bf16 features) do no harm.

    ``weights`` (n,), all > 0, e.g. liked catalogue items added as pseudo-photos
    with a weight. The partition itself is unweighted (a weight says how much a
    photo counts, not where it is), but weights move each centroid towards heavy
    members and scale shares and cohesions, so heavily liked items can make their
    cluster the representative one.
    """
    if not distance_threshold >= 0:  # also rejects NaN
        raise ValueError(f"distance_threshold must be >= 0, got {distance_threshold}")
    x = _unit_rows(embeddings)
    w = _check_weights(weights, len(x))
    if len(x) < max(1, min_photos):
        return None
    labels = cluster_labels(x, distance_threshold)
    return _profile_from_labels(x, w, labels)


def cluster_labels(unit_rows: np.ndarray, distance_threshold: float) -> np.ndarray:
    """Flat cluster labels (0-based) of average-linkage clustering on cosine distance."""
    n = len(unit_rows)
    if n == 1:
        return np.zeros(1, dtype=np.intp)
    tree = linkage(cosine_condensed(unit_rows), method="average")
    return fcluster(tree, t=distance_threshold, criterion="distance").astype(np.intp) - 1


def cosine_condensed(unit_rows: np.ndarray) -> np.ndarray:
    """Condensed cosine-distance matrix of unit rows, float64 as scipy wants it.

    One BLAS product (numpy runs ``x @ x.T`` as a symmetric rank-k update)
    instead of ``pdist(metric="cosine")``, which loops over pairs without BLAS
    and re-computes norms; the n^2 work stays in float32 and only the condensed
    half is widened to float64.
    """
    dist = unit_rows @ unit_rows.T
    np.subtract(1.0, dist, out=dist)
    np.fill_diagonal(dist, 0.0)
    condensed = squareform(dist, force="tovector", checks=False).astype(np.float64)
    return np.clip(condensed, 0.0, 2.0, out=condensed)  # rounding gives -1e-7 for near-duplicates


def _unit_rows(embeddings: np.ndarray) -> np.ndarray:
    """Validate (n, d) finite embeddings and return them as unit-length float32 rows."""
    x = np.asarray(embeddings, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] == 0:
        raise ValueError(f"embeddings must be a 2-D (n, d) array, got shape {x.shape}")
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))  # NaN/inf anywhere in a row shows up here
    if not np.isfinite(norms).all():
        raise ValueError("embeddings contain NaN, infinite or absurdly large values")
    if not (norms > 0).all():
        raise ValueError("embeddings contain an all-zero row")
    return x / norms[:, None]


def _check_weights(weights: np.ndarray | None, n: int) -> np.ndarray:
    """Per-photo weights as float64 (n,); ones when not given."""
    if weights is None:
        return np.ones(n, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n,):
        raise ValueError(f"weights must have shape ({n},), got {w.shape}")
    if not (np.isfinite(w).all() and (w > 0).all()):
        raise ValueError("weights must be finite and > 0")
    return w


def _profile_from_labels(x: np.ndarray, w: np.ndarray, labels: np.ndarray) -> StyleProfile:
    """Centroids, shares and cohesions of every cluster, in the documented order.

    Weighted sums per cluster come from one sparse (k, n) one-hot matrix product:
    O(n d) whatever the number of clusters, and ~50x faster than ``reduceat``
    over rows. Cohesion of cluster c is the weighted mean over members i and all
    photos j of cos(x_i, x_j) = (S_c / W_c) . (S / W), with S_c the weighted sum
    of the members: O(k d) instead of averaging an n x n similarity matrix.
    """
    n = len(x)
    k = int(labels.max()) + 1
    onehot = sparse.csr_matrix((w.astype(np.float32), (labels, np.arange(n))), shape=(k, n))
    sums = np.asarray(onehot @ x, dtype=np.float64)  # (k, d) weighted member sums
    mass = np.bincount(labels, weights=w, minlength=k)
    total = mass.sum()
    cohesion = (sums / mass[:, None]) @ (sums.sum(axis=0) / total)
    share = mass / total
    order = np.argsort(labels, kind="stable")
    members = np.split(order, np.cumsum(np.bincount(labels, minlength=k))[:-1])

    clusters = [
        ClusterProfile(
            centroid=_frozen(_direction(s, x[m[0]])),
            members=_frozen(m),  # ascending: a stable sort keeps row order within a label
            share=float(sh),
            cohesion=float(c),
        )
        for s, m, sh, c in zip(sums, members, share, cohesion)
    ]
    return StyleProfile(clusters=order_clusters(clusters))


def _direction(total: np.ndarray, first_member: np.ndarray) -> np.ndarray:
    """Unit-length centroid; members that cancel out (only possible with a
    threshold near 2) fall back to the first member's direction."""
    norm = float(np.linalg.norm(total))
    vec = total / norm if norm > 1e-12 else first_member
    return np.asarray(vec, dtype=np.float32)


def order_clusters(clusters: Sequence[ClusterProfile]) -> list[ClusterProfile]:
    """Representative first (highest cohesion; within the tie tolerance the larger
    share, then more photos wins), then the others by share descending.

    Ties elsewhere fall back to the lowest member index so the order is
    deterministic for the same history.
    """
    if not clusters:
        return []
    best = max(c.cohesion for c in clusters)
    tied = [c for c in clusters if c.cohesion >= best - COHESION_TIE_TOLERANCE]
    rep = min(tied, key=lambda c: (-c.share, -c.size, -c.cohesion, int(c.members[0])))
    rest = sorted(
        (c for c in clusters if c is not rep),
        key=lambda c: (-c.share, -c.cohesion, int(c.members[0])),
    )
    return [rep, *rest]


def _frozen(a: np.ndarray) -> np.ndarray:
    """Read-only array: profiles are cached and shared between threads."""
    a.flags.writeable = False
    return a


# ---------------------------------------------------------------------------
# Re-ranking search results towards a style
# ---------------------------------------------------------------------------
def rerank(
    candidates: np.ndarray,
    scores: np.ndarray,
    style_centroid: np.ndarray | None,
    alpha: float,
) -> np.ndarray:
    """New order (indices into ``candidates``) by ``(1-alpha)*score + alpha*cos(candidate, centroid)``.

    ``candidates`` (k, d) are the search hits in their current (ranked) order and
    ``scores`` (k,) their similarities to the query. ``alpha`` = 0 or no centroid
    returns ``arange(k)``: the original order exactly, ties included. For alpha > 0
    the sort is stable, so equal blended scores keep their search order.
    """
    cand = np.asarray(candidates, dtype=np.float32)
    s = np.asarray(scores, dtype=np.float64)
    if cand.ndim != 2 or s.shape != (len(cand),):
        raise ValueError(f"need candidates (k, d) and scores (k,), got {cand.shape} and {s.shape}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    identity = np.arange(len(cand))
    if alpha == 0.0 or style_centroid is None or len(cand) == 0:
        return identity
    centroid = np.asarray(style_centroid, dtype=np.float32).reshape(-1)
    if centroid.shape != (cand.shape[1],):
        raise ValueError(f"centroid has dimension {centroid.shape}, candidates {cand.shape[1]}")
    style = _cosines(cand, centroid)
    blended = (1.0 - alpha) * s + alpha * style
    return np.argsort(-blended, kind="stable")


def _cosines(rows: np.ndarray, vector: np.ndarray) -> np.ndarray:
    """cos(row, vector) for every row; zero rows get 0 instead of NaN."""
    norms = np.linalg.norm(rows, axis=1) * np.linalg.norm(vector)
    dots = (rows @ vector).astype(np.float64)
    return np.divide(dots, norms, out=np.zeros_like(dots), where=norms > 0)


# ---------------------------------------------------------------------------
# Naming a cluster from its nearest catalogue items
# ---------------------------------------------------------------------------
_UNCOUNTABLE = {
    "apparel", "clothing", "denim", "footwear", "jewellery", "jewelry", "knitwear",
    "lingerie", "nightwear", "outerwear", "sleepwear", "sportswear", "swimwear",
    "underwear", "eyewear", "loungewear", "beachwear", "activewear", "merchandise",
}  # fmt: skip
_IRREGULAR = {"scarf": "scarves"}  # the one -f plural that turns up in fashion catalogues
_PLURAL_SUFFIXES = ("ss", "sh", "ch", "x", "z")


def pluralise(category: str) -> str:
    """Display plural of a catalogue category, keeping its case.

    "Dress" -> "Dresses", "Ankle boot" -> "Ankle boots", "T-shirt/top" ->
    "T-shirts & tops", "Jeans" -> "Jeans". Google-style paths
    ("Apparel > Shoes > Sneakers") are named by their last segment.
    """
    leaf = category.split(">")[-1].strip()
    parts = [" ".join(p.split()) for p in leaf.split("/") if p.strip()]
    return " & ".join(_plural_phrase(p) for p in parts)


def _plural_phrase(phrase: str) -> str:
    """Pluralise the last word of a phrase ("Ankle boot" -> "Ankle boots")."""
    head, _, last = phrase.rpartition(" ")
    return f"{head} {_plural_word(last)}" if head else _plural_word(last)


def _plural_word(word: str) -> str:
    low = word.lower()
    if low in _IRREGULAR:
        plural = _IRREGULAR[low]
        return plural.capitalize() if word[:1].isupper() else plural
    if low in _UNCOUNTABLE or low.endswith("wear"):
        return word
    if low.endswith(_PLURAL_SUFFIXES):
        return word + "es"
    if low.endswith("s"):
        return word  # "jeans", "shorts", "trousers": already plural
    if len(low) > 1 and low.endswith("y") and low[-2] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


def _display_word(word: str) -> str:
    """Lower-case a word unless case carries meaning: acronyms ("UGG") and
    letter-hyphen words ("T-shirt", "V-neck") keep theirs."""
    if re.match(r"^[A-Z]-", word) or (len(word) > 1 and word.isupper()):
        return word
    return word.lower()


def name_cluster(
    neighbours: Sequence[Mapping[str, str | None]],
    *,
    max_parts: int = 2,
    min_part_share: float = 0.2,
) -> str:
    """A short human name for a cluster from its nearest catalogue items.

    ``neighbours`` (nearest first) have keys "category", "color", "brand",
    "tags" (any may be missing or None; tags is a comma-separated string or a
    sequence). The name is up to ``max_parts`` majority categories, pluralised
    ("Sneakers & sandals"); a further category needs ``min_part_share`` of the
    neighbours and at least 2 of them, so one stray bag doesn't rename a shoe
    cluster. A colour shared by more than half of the neighbours is a prefix
    ("Black dresses"); so is a brand, as a suffix ("... by Nike"). Without
    categories the majority tags name it ("Boho style"). Equal counts go to the
    nearer item.
    """
    n = len(neighbours)
    if n == 0:
        return "Mixed style"
    floor = max(2, math.ceil(min_part_share * n - 1e-9))  # 0.2 * 15 is 3.0000000000000004
    parts = _top_values((_category_key(nb.get("category")) for nb in neighbours), max_parts, floor)
    suffix = ""
    if not parts:
        tag_lists = (_tags(nb.get("tags")) for nb in neighbours)
        parts = _top_values((t for tags in tag_lists for t in tags), max_parts, floor)
        suffix = " style" if parts else ""
    colour = _majority((_clean(nb.get("color")) for nb in neighbours), n)
    brand = _majority((_clean(nb.get("brand"), lower=False) for nb in neighbours), n)

    body = _join_parts(parts) if parts else ("pieces" if colour else "mixed style")
    name = f"{colour.lower()} {body}" if colour else body
    name = name + suffix + (f" by {brand}" if brand and parts else "")
    return name[:1].upper() + name[1:]


def _category_key(category: str | None) -> str | None:
    """Pluralised category in sentence-inner case ("Ankle boot" -> "ankle boots")."""
    cleaned = _clean(category, lower=False)
    return " ".join(_display_word(w) for w in pluralise(cleaned).split()) if cleaned else None


def _clean(value: object, *, lower: bool = True) -> str | None:
    """Stripped text, or None for missing/blank/non-text values."""
    if not isinstance(value, str) or not value.strip():
        return None
    text = " ".join(value.split())
    return text.lower() if lower else text


def _tags(value: object) -> list[str]:
    """Tags as a de-duplicated list: "boho, summer" or ("boho", "summer")."""
    if isinstance(value, str):
        raw: Iterable[object] = value.split(",")
    elif isinstance(value, Iterable):
        raw = value
    else:
        return []
    return list(dict.fromkeys(t for t in (_clean(v) for v in raw) if t))


def _top_values(values: Iterable[str | None], max_parts: int, floor: int) -> list[str]:
    """Most common values (first-seen wins ties); the first always, the rest
    only with at least ``floor`` occurrences. Grouped case-insensitively."""
    counts: Counter[str] = Counter()
    shown: dict[str, str] = {}
    for v in values:
        if v:
            counts[v.lower()] += 1
            shown.setdefault(v.lower(), v)
    ranked = [k for k, _ in counts.most_common()]  # stable: insertion order on ties
    chosen = ranked[:1] + [k for k in ranked[1:] if counts[k] >= floor]
    return [shown[k] for k in chosen[: max(1, max_parts)]]


def _majority(values: Iterable[str | None], n: int) -> str | None:
    """The value held by more than half of all ``n`` neighbours, if any."""
    counts = Counter(v for v in values if v)
    if not counts:
        return None
    value, count = counts.most_common(1)[0]
    return value if count * 2 > n else None


def _join_parts(parts: Sequence[str]) -> str:
    """ "a & b"; "a, b & c"; with "and" when a part already holds "&"
    ("T-shirts & tops and dresses")."""
    if len(parts) == 1:
        return parts[0]
    last = " and " if any("&" in p for p in parts) else " & "
    return ", ".join(parts[:-1]) + last + parts[-1]


# ---------------------------------------------------------------------------
# Cache
# ---------------------------------------------------------------------------
class ProfileCache:
    """Profiles of recently active users, rebuilt only when their history changes.

    Keyed by (user key, history version): the version is anything that changes
    whenever the user's photos or likes change (a counter, the last photo id and
    count, ...). One slot per user: a new version replaces the old one, so stale
    versions never crowd out other users. Least recently used users are evicted
    beyond ``maxsize``. Include the backbone in the user key if it can change.

    Thread-safe; the profile is built outside the lock, so two threads asking for
    the same new version at once may both build it (harmless, and cheaper than
    making every user wait on one lock).
    """

    def __init__(self, maxsize: int = 1024) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.maxsize = maxsize
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[Hashable, tuple[Hashable, StyleProfile | None]] = OrderedDict()
        self._lock = threading.Lock()

    def get_or_build(
        self,
        user_key: Hashable,
        version: Hashable,
        build: Callable[[], StyleProfile | None],
    ) -> StyleProfile | None:
        """The cached profile for this version, or ``build()`` it and keep it."""
        with self._lock:
            entry = self._entries.get(user_key)
            if entry is not None and entry[0] == version:
                self._entries.move_to_end(user_key)
                self.hits += 1
                return entry[1]
            self.misses += 1
        profile = build()
        self.put(user_key, version, profile)
        return profile

    def put(self, user_key: Hashable, version: Hashable, profile: StyleProfile | None) -> None:
        """Store a profile for a version, replacing any other version of that user."""
        with self._lock:
            self._entries[user_key] = (version, profile)
            self._entries.move_to_end(user_key)
            while len(self._entries) > self.maxsize:
                self._entries.popitem(last=False)

    def invalidate(self, user_key: Hashable) -> None:
        """Forget a user's profile (e.g. after /forget)."""
        with self._lock:
            self._entries.pop(user_key, None)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __contains__(self, key: tuple[Hashable, Hashable]) -> bool:
        user_key, version = key
        with self._lock:
            entry = self._entries.get(user_key)
            return entry is not None and entry[0] == version

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)
