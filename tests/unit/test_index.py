"""engine/catalogue/index.py: real hnswlib; persistence, pitfalls, concurrency."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from engine.catalogue.index import IndexMeta, IndexMismatch, VectorIndex, sidecar_path


def unit(n: int, dim: int = 64, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def make(dim: int = 64, capacity: int = 16) -> VectorIndex:
    return VectorIndex(IndexMeta(backbone="test", fingerprint="abc", dim=dim), ef=64, capacity=capacity)


def test_search_finds_itself_and_scores_are_cosines() -> None:
    vecs = unit(500)
    index = make()
    index.add(np.arange(1, 501), vecs)  # grows past the initial capacity of 16
    ids, scores = index.search(vecs[41], k=10)
    assert ids[0] == 42 and scores[0] == pytest.approx(1.0, abs=1e-4)
    expected = vecs @ vecs[41]
    assert scores[1] == pytest.approx(expected[ids[1] - 1], abs=1e-4)
    assert list(scores) == sorted(scores, reverse=True)


def test_k_larger_than_catalogue_returns_what_there_is() -> None:
    index = make()
    assert len(index.search(unit(1)[0], k=10)[0]) == 0  # empty: no error
    index.add([7, 8, 9], unit(3))
    ids, _ = index.search(unit(1, seed=5)[0], k=10)
    assert sorted(ids.tolist()) == [7, 8, 9]


def test_a_filtered_search_finds_the_nearest_kept_items_however_far_they_lie() -> None:
    """3,000 items near the query and 20 far from it: the 10 nearest of the 20 come back,
    exactly those an exact search over the 20 finds (the unfiltered 384 nearest hold none)."""
    rng = np.random.default_rng(4)
    query = unit(1, seed=9)[0]
    near = query + rng.normal(scale=0.05, size=(3000, 64)).astype(np.float32)
    far = -query + rng.normal(scale=0.3, size=(20, 64)).astype(np.float32)
    vecs = np.vstack([near, far])
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    index = make()
    index.add(np.arange(1, 3021), vecs)
    wanted = set(range(3001, 3021))
    assert not wanted & set(index.search(query, k=384)[0].tolist())
    ids, scores = index.search(query, k=10, keep=lambda i: i in wanted)
    exact = 3001 + np.argsort(-(vecs[3000:] @ query))[:10]
    assert ids.tolist() == exact.tolist()
    assert list(scores) == sorted(scores, reverse=True)


def test_deleted_items_are_not_returned() -> None:
    vecs = unit(50)
    index = make()
    index.add(np.arange(1, 51), vecs)
    index.delete(5)
    ids, _ = index.search(vecs[4], k=50)
    assert 5 not in ids.tolist() and len(ids) == 49


def test_save_load_keeps_results_and_restores_ef(tmp_path) -> None:
    vecs = unit(2000, dim=32)
    index = make(dim=32)
    index.add(np.arange(1, 2001), vecs)
    path = tmp_path / "index.hnsw"
    index.save(path)
    meta = json.loads(sidecar_path(path).read_text())
    assert meta["count"] == 2000 and meta["last_item_id"] == 2000 and meta["backbone"] == "test"
    loaded = VectorIndex.load(path, ef=80)
    assert loaded.ef == 80
    for q in range(0, 2000, 250):
        assert loaded.search(vecs[q], 10)[0].tolist() == index.search(vecs[q], 10)[0].tolist()
    assert not list(tmp_path.glob("*.tmp"))  # atomic write leaves no temp files


def test_recall_at_10_against_exact_search() -> None:
    """Clustered vectors, like image embeddings; the shipped ef setting."""
    from engine.config import Settings

    rng = np.random.default_rng(1)
    centres = unit(50, dim=128, seed=9)
    vecs = centres[rng.integers(0, 50, 5100)] + rng.normal(scale=0.08, size=(5100, 128)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    vecs, queries = vecs[:5000], vecs[5000:]
    index = VectorIndex(IndexMeta(backbone="t", fingerprint="x", dim=128), ef=Settings().index_ef)
    index.add(np.arange(5000), vecs)
    exact = np.argsort(-(queries @ vecs.T), axis=1)[:, :10]
    hits = sum(len(set(index.search(q, 10)[0].tolist()) & set(e.tolist())) for q, e in zip(queries, exact))
    assert hits / 1000 >= 0.95


def test_corrupt_or_torn_files_are_detected(tmp_path) -> None:
    index = make()
    index.add(np.arange(1, 101), unit(100))
    path = tmp_path / "index.hnsw"
    index.save(path)
    path.write_bytes(path.read_bytes()[:1000])  # torn write
    with pytest.raises(ValueError):
        VectorIndex.load(path)
    with pytest.raises(FileNotFoundError):
        VectorIndex.load(tmp_path / "missing.hnsw")


def test_other_backbone_is_refused_with_a_reindex_hint() -> None:
    index = make()
    with pytest.raises(IndexMismatch, match="fashionbot reindex"):
        index.check_compatible("resnet50", "abc", 64)


def test_adds_beside_searches_are_safe() -> None:
    """add_items/resize_index next to knn_query corrupts hnswlib without the lock."""
    vecs = unit(3000, dim=32, seed=3)
    index = make(dim=32, capacity=16)
    index.add([0], vecs[:1])
    errors: list[BaseException] = []
    stop = threading.Event()

    def searcher() -> None:
        try:
            while not stop.is_set():
                ids, _ = index.search(vecs[0], 10)
                assert ids[0] == 0
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=searcher) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for start in range(1, 3000, 100):  # many resizes while searching
            end = min(start + 100, 3000)
            index.add(np.arange(start, end), vecs[start:end])
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors and len(index) == 3000


def test_racing_saves_and_a_save_overlapping_adds(tmp_path) -> None:
    """Issue 16 #8: two saves at once shared one temp name (FileNotFoundError); a save beside an
    add wrote a sidecar count one higher than the file (the next start rebuilt the index)."""
    vecs = unit(6000, dim=32, seed=8)
    index = make(dim=32, capacity=16)
    index.add(np.arange(0, 2000), vecs[:2000])
    path = tmp_path / "index.hnsw"
    errors: list[BaseException] = []

    def run(job) -> threading.Thread:
        def body() -> None:
            try:
                job()
            except BaseException as err:
                errors.append(err)

        thread = threading.Thread(target=body)
        thread.start()
        return thread

    def saves() -> None:
        for _ in range(6):
            index.save(path)

    def adds() -> None:
        for start in range(2000, 6000, 50):
            index.add(np.arange(start, start + 50), vecs[start : start + 50])

    for thread in [run(saves), run(saves), run(adds)]:
        thread.join()
    assert errors == []
    index.save(path)  # and once more after the adds, as a trend's end does
    meta = json.loads(sidecar_path(path).read_text())
    loaded = VectorIndex.load(path)  # checks file size and count against the sidecar
    assert meta["count"] == len(loaded) == 6000
    assert not list(tmp_path.glob("*.tmp"))


def test_sidecar_matches_its_file_after_every_overlapping_save(tmp_path) -> None:
    vecs = unit(3000, dim=32, seed=9)
    index = make(dim=32, capacity=16)
    index.add(np.arange(0, 100), vecs[:100])
    path = tmp_path / "index.hnsw"
    stop = threading.Event()

    def adds() -> None:
        for start in range(100, 3000, 10):
            index.add(np.arange(start, start + 10), vecs[start : start + 10])
        stop.set()

    thread = threading.Thread(target=adds)
    thread.start()
    mismatches = 0
    while not stop.is_set():
        index.save(path)
        try:
            VectorIndex.load(path)
        except ValueError:
            mismatches += 1
    thread.join()
    assert mismatches == 0
