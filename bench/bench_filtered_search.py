"""What a per-garment search costs when the garment's shelf lies far from its crop.

    .venv/bin/python -m bench.bench_filtered_search [--items 44000] [--queries 50]

``Catalogue.nearest`` first asks the index for the nearest items overall and keeps those on
the garment's shelves. When too few are, it looks further (``_nearest_on_shelves``): the
WIDE_FETCH nearest overall, then, only if those are still too few, hnswlib's filtered search
of the shelves alone. This times each of those steps on the product's own ``VectorIndex``
(its M and ef) over ``--items`` unit vectors in ten clusters of uneven size (shelves of 2 to
15 %), against the plain k = 10 search as the baseline, in one run. Queries lie near a random
cluster, so most shelves searched are not the query's own.
Results go to ``bench/results/filtered_search.json``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import numpy as np

from bench.common import machine, save
from engine.catalogue.catalogue import WIDE_FETCH
from engine.catalogue.index import IndexMeta, VectorIndex
from engine.catalogue.shelves import Shelves

DIM = 1280  # EfficientNet-Lite0's vectors
SHARES = np.array([0.02, 0.05, 0.08, 0.10, 0.10, 0.10, 0.10, 0.15, 0.15, 0.15])


def clustered(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit vectors around ten centres (the shelves), their shelf, and the centres."""
    centres = rng.normal(size=(len(SHARES), DIM)).astype(np.float32)
    labels = rng.choice(len(SHARES), size=n, p=SHARES / SHARES.sum())
    vectors = centres[labels] + 0.9 * rng.normal(size=(n, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors, labels, centres


def per_query_ms(queries: np.ndarray, search: Callable[[np.ndarray], object]) -> float:
    """Median over the queries of one search's wall time, in ms."""
    times = []
    for q in queries:
        start = time.perf_counter()
        search(q)
        times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=44_000)
    parser.add_argument("--queries", type=int, default=50)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    load_before = os.getloadavg()
    vectors, labels, centres = clustered(args.items, rng)
    index = VectorIndex(IndexMeta(backbone="bench", fingerprint="bench", dim=DIM), capacity=args.items)
    index.add(np.arange(1, args.items + 1), vectors)
    shelves = Shelves()
    for item_id, label in enumerate(labels, start=1):
        shelves.put(item_id, f"shelf{label}")
    near = rng.choice(len(SHARES), size=args.queries)
    queries = centres[near] + 0.9 * rng.normal(size=(args.queries, DIM)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)

    results: dict[str, float] = {
        "nearest 10 (baseline)": per_query_ms(queries, lambda q: index.search(q, 10)),
        f"nearest {WIDE_FETCH} (the wide round)": per_query_ms(queries, lambda q: index.search(q, WIDE_FETCH)),
    }
    for shelf in (0, 3, 9):
        name = f"shelf{shelf}"
        keep = shelves.keeper([name])
        label = f"shelf alone, 10 of {shelves.stocked([name])} items ({SHARES[shelf]:.0%} of the catalogue)"
        results[label] = per_query_ms(queries, lambda q, keep=keep: index.search(q, 10, keep=keep))
    baseline = results["nearest 10 (baseline)"]
    payload = {
        "benchmark": "a per-garment search whose shelf is far from the crop: the steps of Catalogue._nearest_on_shelves",
        "items": args.items,
        "queries": args.queries,
        "p50_ms": results,
        "ratio_to_baseline": {k: round(v / baseline, 1) for k, v in results.items()},
        "load_average_before": load_before,
        "machine": machine(),
    }
    path = save("filtered_search", payload)
    for name, ms in results.items():
        print(f"{name:60s} {ms:7.2f} ms  {ms / baseline:5.1f}x")
    print(f"-> {path}")


if __name__ == "__main__":
    main()
