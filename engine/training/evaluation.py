"""Retrieval quality on a labelled catalogue: the numbers behind "how good is it".

Queries come from one split, the catalogue from another, and a result counts as
relevant when it has the query's category. Search here is exact (a matrix product),
so the figures measure the vectors, not the index; the index's recall against exact
search is measured separately (``bench/bench_perf.py``).

Robustness variants turn a clean product shot into what a chat photo looks like
(rotated, smaller in the frame, mirrored, tinted, on a busy background) and measure
the same queries again.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

K = 10


# ---- splits ------------------------------------------------------------------------
@dataclass(frozen=True)
class Splits:
    """Which Fashion-MNIST images play which part. The head trains on ``head_train``
    only; it is judged with ``queries`` (test split) against ``catalogue`` (the first
    training images, which is also what `fashionbot demo` ingests)."""

    head_train: np.ndarray  # indices into the training split
    catalogue: np.ndarray  # indices into the training split
    queries: np.ndarray  # indices into the test split

    def check_disjoint(self) -> None:
        """Raise when the head could have seen what it is judged on."""
        overlap = np.intersect1d(self.head_train, self.catalogue)
        if len(overlap):
            raise ValueError(f"{len(overlap)} catalogue images are also head-training images")
        for name, part in (("head_train", self.head_train), ("catalogue", self.catalogue), ("queries", self.queries)):
            if len(np.unique(part)) != len(part):
                raise ValueError(f"{name} repeats images")


def fashion_mnist_splits(
    *,
    catalogue: int = 10_000,
    queries: int | None = None,
    head_train: int | None = None,
    train_size: int = 60_000,
    test_labels: np.ndarray | None = None,
    seed: int = 0,
) -> Splits:
    """Catalogue = the first ``catalogue`` training images; head training = the rest (or
    ``head_train`` of them); queries = the test split, or a class-balanced sample of it."""
    if not 0 < catalogue < train_size:
        raise ValueError("the catalogue must leave training images for the head")
    rest = np.arange(catalogue, train_size)
    if head_train is not None:
        rest = np.sort(np.random.default_rng(seed).choice(rest, min(head_train, len(rest)), replace=False))
    if queries is None or test_labels is None or queries >= len(test_labels):
        q = np.arange(len(test_labels) if test_labels is not None else 10_000)
    else:
        q = balanced_sample(test_labels, queries, seed)
    splits = Splits(head_train=rest, catalogue=np.arange(catalogue), queries=q)
    splits.check_disjoint()
    return splits


def balanced_sample(labels: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` indices with the classes as equally represented as the labels allow."""
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    per = -(-n // len(classes))
    picks = [rng.permutation(np.flatnonzero(labels == c))[:per] for c in classes]
    out = np.concatenate(picks)
    return np.sort(rng.permutation(out)[:n])


# ---- metrics -----------------------------------------------------------------------
def top_k(queries: np.ndarray, catalogue: np.ndarray, k: int = K, chunk: int = 2048) -> np.ndarray:
    """Exact top-k by cosine (rows are unit vectors): (n_queries, k) catalogue rows."""
    k = min(k, len(catalogue))
    out = np.empty((len(queries), k), dtype=np.int64)
    for s in range(0, len(queries), chunk):
        sims = queries[s : s + chunk] @ catalogue.T
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        order = np.take_along_axis(sims, part, axis=1).argsort(axis=1)[:, ::-1]
        out[s : s + chunk] = np.take_along_axis(part, order, axis=1)
    return out


def retrieval_metrics(
    hits: np.ndarray, query_labels: np.ndarray, catalogue_labels: np.ndarray, class_names: Sequence[str], k: int = K
) -> dict:
    """precision@1, precision@k and mAP@k, overall and per category.

    ``hits``: (n, k) catalogue rows per query, best first. AP@k divides by
    min(k, relevant items in the catalogue), so a perfect list scores 1."""
    relevant = catalogue_labels[hits] == query_labels[:, None]  # (n, k) bool
    precision_at = np.cumsum(relevant, axis=1) / np.arange(1, hits.shape[1] + 1)
    available = np.array([np.sum(catalogue_labels == q) for q in query_labels])
    ap = (precision_at * relevant).sum(axis=1) / np.maximum(1, np.minimum(k, available))

    def summarise(mask: np.ndarray) -> dict:
        return {
            "queries": int(mask.sum()),
            "precision_at_1": round(float(relevant[mask, 0].mean()), 4),
            f"precision_at_{k}": round(float(relevant[mask].mean()), 4),
            f"map_at_{k}": round(float(ap[mask].mean()), 4),
        }

    result = summarise(np.ones(len(query_labels), dtype=bool))
    result["by_category"] = {class_names[c]: summarise(query_labels == c) for c in np.unique(query_labels)}
    return result


# ---- robustness: what a chat photo does to a product shot ----------------------------
def _on_canvas(img: Image.Image, scale: float, background: Image.Image | None = None) -> Image.Image:
    w, h = img.size
    small = img.resize((max(1, int(w * scale)), max(1, int(h * scale))), Image.Resampling.BICUBIC)
    canvas = background.copy() if background is not None else Image.new("RGB", (w, h), (255, 255, 255))
    canvas.paste(small, ((w - small.width) // 2, (h - small.height) // 2))
    return canvas


def rotate(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    angle = float(rng.choice([-1, 1]) * rng.uniform(10, 25))
    return img.rotate(angle, resample=Image.Resampling.BICUBIC, fillcolor=(255, 255, 255))


def rescale(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    return _on_canvas(img, float(rng.uniform(0.45, 0.65)))


def flip(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    return ImageOps.mirror(img)


def colour_shift(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Dye the garment and warm the white balance, as a phone under indoor light would."""
    grey = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    dye = rng.uniform(0.15, 0.9, size=3)
    paper = np.array([1.0, rng.uniform(0.88, 0.97), rng.uniform(0.75, 0.9)])
    out = grey[..., None] * paper + (1 - grey[..., None]) * dye * 0.6
    return Image.fromarray(np.clip(out * 255, 0, 255).astype(np.uint8))


def clutter(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """The garment, cut out, on a busy background (blotches and stripes) filling the frame."""
    w, h = img.size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    bg = np.zeros((h, w, 3), dtype=np.float32)
    for c in range(3):
        fx, fy, ph = rng.uniform(0.02, 0.12), rng.uniform(0.02, 0.12), rng.uniform(0, 6.3)
        bg[..., c] = 150 + 60 * np.sin(xx * fx + ph) * np.cos(yy * fy)
    bg += rng.normal(0, 12, size=bg.shape)
    background = Image.fromarray(np.clip(bg, 0, 255).astype(np.uint8))
    grey = np.asarray(img.convert("L"), dtype=np.float32)
    mask = Image.fromarray(((grey < 245) * 255).astype(np.uint8))  # the garment: not white
    out = background.copy()
    out.paste(img, (0, 0), mask)
    return out


ROBUSTNESS: dict[str, Callable[[Image.Image, np.random.Generator], Image.Image]] = {
    "rotated": rotate,
    "rescaled": rescale,
    "flipped": flip,
    "colour-shifted": colour_shift,
    "cluttered": clutter,
}


# ---- the evaluation run ------------------------------------------------------------
@dataclass
class EvalData:
    """A labelled catalogue: pictures by index for each split, and their labels."""

    train_picture: Callable[[int], Image.Image]
    train_labels: np.ndarray
    test_picture: Callable[[int], Image.Image]
    test_labels: np.ndarray
    class_names: list[str]
    name: str
    train_pixels: Callable[[int], np.ndarray] | None = None  # raw 28×28 garments, for in-scene crops


def fashion_mnist_data() -> EvalData:
    from engine.catalogue.ingest import FASHION_MNIST_CLASSES, fashion_mnist_picture, load_fashion_mnist

    train_x, train_y = load_fashion_mnist("train")
    test_x, test_y = load_fashion_mnist("test")
    return EvalData(
        train_picture=lambda i: fashion_mnist_picture(train_x[i]),
        train_labels=train_y.astype(np.int64),
        test_picture=lambda i: fashion_mnist_picture(test_x[i]),
        test_labels=test_y.astype(np.int64),
        class_names=list(FASHION_MNIST_CLASSES),
        name="Fashion-MNIST",
        train_pixels=lambda i: train_x[i],
    )


def _embed(
    embedder,
    pictures: Callable[[int], Image.Image],
    indices: np.ndarray,
    advance: Callable[[int], None],
    transform=None,
    seed: int = 0,
    chunk: int = 256,
) -> np.ndarray:
    from engine.vision.embedder import prepare

    size = embedder.input_size
    rng = np.random.default_rng(seed)
    out = []
    for s in range(0, len(indices), chunk):
        batch = []
        for i in indices[s : s + chunk]:
            pic = pictures(int(i))
            if transform is not None:  # transform at photo resolution, then prepare as usual
                pic = transform(pic.resize((224, 224), Image.Resampling.BICUBIC), rng)
            batch.append(prepare(pic, size))
        out.append(embedder.embed_pixels(np.stack(batch)))
        advance(len(batch))
    return np.concatenate(out)


def evaluate_model(
    backbone,
    data: EvalData,
    splits: Splits,
    *,
    robustness_queries: int,
    progress: Callable[[str, int], Callable[[int], None]],
    batch_size: int | None = None,
) -> dict:
    """Quality of one model through the production embedder (folded batch norms,
    channels-last, the precision it would serve with)."""
    import time

    from engine.vision.embedder import Embedder

    started = time.monotonic()
    embedder = Embedder(backbone, batch_size=batch_size, precision="auto", max_wait_ms=0)
    label = backbone.name + (" + head" if backbone.head else "")
    try:
        cat = _embed(
            embedder, data.train_picture, splits.catalogue, progress(f"{label}: catalogue", len(splits.catalogue))
        )
        q = _embed(embedder, data.test_picture, splits.queries, progress(f"{label}: queries", len(splits.queries)))
        cat_labels, q_labels = data.train_labels[splits.catalogue], data.test_labels[splits.queries]
        metrics = retrieval_metrics(top_k(q, cat), q_labels, cat_labels, data.class_names)
        robust_idx = balanced_sample(q_labels, robustness_queries, seed=1) if robustness_queries else np.array([], int)
        robustness = {}
        if len(robust_idx):
            clean = retrieval_metrics(top_k(q[robust_idx], cat), q_labels[robust_idx], cat_labels, data.class_names)
            robustness["clean"] = {k: v for k, v in clean.items() if k != "by_category"}
            for name, fn in ROBUSTNESS.items():
                vec = _embed(
                    embedder,
                    data.test_picture,
                    splits.queries[robust_idx],
                    progress(f"{label}: {name}", len(robust_idx)),
                    transform=fn,
                    seed=2,
                )
                m = retrieval_metrics(top_k(vec, cat), q_labels[robust_idx], cat_labels, data.class_names)
                robustness[name] = {k: v for k, v in m.items() if k != "by_category"}
        return {
            "model": label,
            "backbone": backbone.name,
            "weights": backbone.weights_source,
            "fingerprint": backbone.fingerprint,
            "head": backbone.head.fingerprint if backbone.head else None,
            "dim": backbone.dim,
            "input_size": backbone.input_size,
            "precision": embedder.precision,
            "metrics": metrics,
            "robustness": robustness,
            "seconds": round(time.monotonic() - started, 1),
        }
    finally:
        embedder.close()
