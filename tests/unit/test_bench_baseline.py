"""The benchmark's baseline searches as the usual recommender does: exact top-10 by
euclidean distance over L2-normalised features (= cosine ranking)."""

from __future__ import annotations

import numpy as np

from bench.baseline import BaselineRecommender


def test_baseline_search_is_exact_cosine_top10() -> None:
    rng = np.random.default_rng(0)
    catalogue = rng.normal(size=(500, 64)).astype(np.float32)
    catalogue /= np.linalg.norm(catalogue, axis=1, keepdims=True)
    for q in catalogue[:20] + rng.normal(scale=0.3, size=(20, 64)).astype(np.float32):
        q = q / np.linalg.norm(q)
        ids, dists = BaselineRecommender.search(q, catalogue)
        expected = np.argsort(-(catalogue @ q))[:10]
        assert ids.tolist() == expected.tolist()
        assert np.allclose(dists, np.sqrt(np.maximum(0, 2 - 2 * (catalogue[ids] @ q))), atol=1e-4)
