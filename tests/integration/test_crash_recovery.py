"""kill -9 a real `fashionbot` process in the middle of `ingest feed` and of `reindex`,
restart and rerun: no duplicate items, no item without its embedding, the index agrees
with the database, and the rerun completes. (`/trend` is killed the same way in
test_trend_service.py::test_killed_trend_leaves_nothing_half_written.)"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.integration.test_cli import run
from tests.support.settings import CATALOGUE_SIZE

ROOT = Path(__file__).resolve().parents[2]


def count(db: Path, sql: str) -> int:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
            return int(conn.execute(sql).fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0


def kill_when(args: list[str], data_dir: Path, ready, env: dict[str, str] | None = None, timeout: float = 300) -> None:
    """Start `fashionbot ARGS`, SIGKILL it as soon as ``ready()`` holds (polled)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("FASHIONBOT_")}
    environ |= {"FASHIONBOT_DATA_DIR": str(data_dir), "FASHIONBOT_ALLOW_WEIGHT_DOWNLOAD": "false"} | (env or {})
    child = subprocess.Popen(
        [sys.executable, "-m", "bot.cli", *args], cwd=ROOT, env=environ,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert child.poll() is None, "finished before it could be killed: " + child.stderr.read().decode()[-1500:]
            assert time.monotonic() < deadline, "never reached the point to kill it"
            time.sleep(0.05)
        child.send_signal(signal.SIGKILL)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        child.stderr.close()
    assert child.returncode == -signal.SIGKILL


def check_consistent(data_dir: Path, expected_items: int, model_like: str) -> None:
    db = data_dir / "fashionbot.sqlite3"
    assert count(db, "SELECT count(*) FROM items") == expected_items
    assert (
        count(db, "SELECT count(*) FROM (SELECT source, external_id FROM items GROUP BY 1, 2 HAVING count(*) > 1)") == 0
    )
    assert (
        count(db, f"SELECT count(*) FROM items WHERE embedding IS NULL OR embedding_model NOT LIKE '{model_like}'") == 0
    )
    about = run(["about"], data_dir)
    assert about.returncode == 0, about.stderr
    assert f"Catalogue: {expected_items} items; index: {expected_items} items" in about.stdout, about.stdout


def write_feed(tmp_path: Path, fmnist_test, n: int) -> Path:
    from engine.catalogue.ingest import FASHION_MNIST_CLASSES, fashion_mnist_picture

    images, labels = fmnist_test
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    feed = tmp_path / "feed.csv"
    with open(feed, "w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["id", "title", "link", "image_link", "price", "product_type"])
        for i in range(n):
            path = pictures / f"{i}.png"
            fashion_mnist_picture(images[i]).resize((224, 224)).save(path)
            category = FASHION_MNIST_CLASSES[int(labels[i])]
            out.writerow(
                [f"sku-{i}", f"{category} {i}", f"https://shop.example/p/{i}", str(path), "19.99 EUR", category]
            )
    return feed


@pytest.mark.slow
def test_killed_feed_ingest_resumes_without_duplicates(tmp_path, fmnist_test) -> None:
    n = 400
    feed = write_feed(tmp_path, fmnist_test, n)
    data_dir = tmp_path / "data"
    db = data_dir / "fashionbot.sqlite3"
    kill_when(["ingest", "feed", str(feed)], data_dir, lambda: 0 < count(db, "SELECT count(*) FROM items") < n)
    committed = count(db, "SELECT count(*) FROM items")
    assert 0 < committed < n
    again = run(["ingest", "feed", str(feed)], data_dir)
    assert again.returncode == 0, again.stderr
    assert f"{n - committed} added, {committed} already in the catalogue" in again.stdout, again.stdout
    check_consistent(data_dir, n, "efficientnet-lite0:%")


@pytest.mark.slow
def test_killed_reindex_resumes_and_the_index_agrees(catalogue_dir, tmp_path) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(catalogue_dir, data_dir)
    db = data_dir / "fashionbot.sqlite3"
    lite1 = "SELECT count(*) FROM items WHERE embedding_model LIKE 'efficientnet-lite1:%'"
    env = {"FASHIONBOT_BACKBONE": "efficientnet-lite1"}
    kill_when(["reindex"], data_dir, lambda: 0 < count(db, lite1) < CATALOGUE_SIZE, env=env)
    assert 0 < count(db, lite1) < CATALOGUE_SIZE
    again = run(["reindex"], data_dir, **env)
    assert again.returncode == 0, again.stderr
    assert f"{CATALOGUE_SIZE} items" in again.stdout
    assert count(db, lite1) == CATALOGUE_SIZE
    about = run(["about"], data_dir, **env)
    assert f"Catalogue: {CATALOGUE_SIZE} items; index: {CATALOGUE_SIZE} items" in about.stdout, about.stdout
