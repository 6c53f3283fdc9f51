"""Several real ``fashionbot`` worker processes on one PostgreSQL server (issue #17).

Three ``fashionbot run --web`` processes (A, B, C), each with its own data dir and hnswlib
index (copies of the shared test catalogue), share one database in the throwaway cluster
(tests/support/postgres.py: a missing server fails, never skips). The test talks to their
web chats over HTTP as one browser would (one ``fb_uid`` cookie, same-origin POSTs) and
reads the database with psql. Fake shops (tests/support/fakes/shop.py) run on 127.0.0.1
in a thread of the test process; the workers' shops file names them.

What is shown, across processes: a trend run on A is recommended by B within seconds
(NOTIFY → Follower); a dislike given on A keeps the item out of B's answer; /forget on A
leaves no row in the database and nothing in B's /style; and C, killed with SIGKILL in the
middle of a trend, leaves its lease to expire (C runs in a UTS namespace of its own, so it
looks like a worker on another machine and B can't judge it by its pid) after which B takes
the trend over and finishes it.

One module-scoped set of processes keeps the run short (the tests run in file order and the
kill comes last).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from db.trend_store import LEASE_SECONDS
from tests.support.fakes.shop import FakeShop, product_jpeg
from tests.support.postgres import PostgresCluster, free_port

ROOT = Path(__file__).resolve().parents[2]
OTHER_HOST = "fb-worker-elsewhere"

pytestmark = pytest.mark.slow


# ---- fake shops on their own loop ------------------------------------------------------------
class ShopThread:
    """Fake shops served by an event loop on a thread, so plain (sync) tests and the worker
    processes can use them while the test waits on HTTP."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fake-shops", daemon=True)
        self.thread.start()
        self.shops: list[FakeShop] = []

    def start(self, shop: FakeShop) -> FakeShop:
        asyncio.run_coroutine_threadsafe(shop.start(), self.loop).result(30)
        self.shops.append(shop)
        return shop

    def close(self) -> None:
        for shop in self.shops:
            asyncio.run_coroutine_threadsafe(shop.close(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


def shops_toml(shop: FakeShop) -> str:
    s = shop.shop()
    return f"[[shops]]\nname = {json.dumps(s.name)}\nsearch_url = {json.dumps(s.search_url)}\n"


# ---- the workers -----------------------------------------------------------------------------
@dataclass
class Worker:
    name: str
    port: int
    data_dir: Path
    process: subprocess.Popen
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def tail(self, n: int = 3000) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-n:]
        return ""


@dataclass
class Fleet:
    cluster: PostgresCluster
    database: str
    workers: dict[str, Worker]
    shops_file: Path
    alpha: FakeShop  # the first trend's shop
    beta: FakeShop  # the killed trend's shop: slow product pages
    uid: str  # one browser, the same cookie on every worker

    def sql(self, query: str) -> str:
        return self.cluster.psql(query, self.database).strip()

    def count(self, query: str) -> int:
        return int(self.sql(query) or 0)

    def client(self, name: str) -> httpx.Client:
        w = self.workers[name]
        return httpx.Client(
            base_url=w.url, headers={"Origin": w.url, "Cookie": f"fb_uid={self.uid}"}, timeout=httpx.Timeout(60.0)
        )


def _other_host_prefix() -> list[str]:
    """A command prefix giving the worker a hostname of its own (a new UTS namespace: as
    root plainly, else inside a user namespace), or [] where neither is allowed."""
    for prefix in (["unshare", "-u"], ["unshare", "-r", "-u"]):
        probe = subprocess.run([*prefix, "hostname", OTHER_HOST], capture_output=True)
        if probe.returncode == 0:
            return prefix
    return []


def start_worker(name: str, root: Path, catalogue_dir: Path, env: dict[str, str], *, elsewhere: bool) -> Worker:
    data_dir = root / name / "data"
    shutil.copytree(catalogue_dir, data_dir)
    port = free_port()
    log = root / f"{name}.log"
    argv = [sys.executable, "-m", "bot.cli", "run", "--web", "--host", "127.0.0.1", "--port", str(port)]
    prefix = _other_host_prefix() if elsewhere else []
    if prefix:  # set the namespace's hostname, then become the worker (same pid: kill -9 hits it)
        argv = [*prefix, "sh", "-c", f'hostname {OTHER_HOST} && exec "$0" "$@"', *argv]
    with open(log, "wb") as out:
        process = subprocess.Popen(
            argv, cwd=ROOT, env=env | {"FASHIONBOT_DATA_DIR": str(data_dir)}, stdout=out, stderr=subprocess.STDOUT
        )
    return Worker(name, port, data_dir, process, log)


def wait_ready(worker: Worker, deadline: float) -> None:
    while True:
        assert worker.process.poll() is None, f"worker {worker.name} exited:\n{worker.tail()}"
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(worker.url + "/api/about", timeout=2).status_code == 200:
                return
        assert time.monotonic() < deadline, f"worker {worker.name} never served:\n{worker.tail()}"
        time.sleep(0.3)


@pytest.fixture(scope="module")
def fleet(postgres, pg_catalogue_template, catalogue_dir, tmp_path_factory) -> Iterator[Fleet]:
    root = tmp_path_factory.mktemp("workers")
    database = postgres.create_database("workers", template=pg_catalogue_template)
    shops = ShopThread()
    workers: dict[str, Worker] = {}
    try:
        alpha = shops.start(FakeShop("jsonld", n_products=6, name="Alpha"))
        beta = shops.start(FakeShop("jsonld", n_products=30, name="Beta", page_delay=0.3))
        shops_file = root / "shops.toml"
        shops_file.write_text(shops_toml(alpha))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("FASHIONBOT_", "TELEGRAM_", "DISCORD_"))}
        env |= {
            "FASHIONBOT_DATABASE_URL": postgres.url(database),
            "FASHIONBOT_BACKBONE": "efficientnet-lite0",
            "FASHIONBOT_ALLOW_WEIGHT_DOWNLOAD": "false",
            "FASHIONBOT_BATCH_SIZE": "8",  # no batch-size measuring at start-up
            "FASHIONBOT_TORCH_THREADS": "1",  # three workers on a small machine
            "FASHIONBOT_RATE_LIMIT_PER_MINUTE": "100000",  # one test client sends everything
            "FASHIONBOT_SHOPS_FILE": str(shops_file),
            "FASHIONBOT_SCRAPER_ALLOW_HOSTS": json.dumps([alpha.allow_entry, beta.allow_entry]),
            "FASHIONBOT_SCRAPER_MIN_DELAY": "0",
            "FASHIONBOT_SCRAPER_TIMEOUT": "5",
        }
        for name in ("a", "b", "c"):
            workers[name] = start_worker(name, root, catalogue_dir, env, elsewhere=name == "c")
        deadline = time.monotonic() + 300
        for w in workers.values():
            wait_ready(w, deadline)
        yield Fleet(postgres, database, workers, shops_file, alpha, beta, secrets.token_urlsafe(24))
    finally:
        for w in workers.values():
            if w.process.poll() is None:
                w.process.send_signal(signal.SIGTERM)
        for w in workers.values():
            try:
                w.process.wait(30)
            except subprocess.TimeoutExpired:
                w.process.kill()
                w.process.wait()
        shops.close()
        postgres.drop_database(database)


# ---- helpers -----------------------------------------------------------------------------------
def recommend(client: httpx.Client, photo: bytes, *, whole: bool = True) -> dict:
    resp = client.post(
        "/api/recommend",
        files={"photo": ("photo.jpg", photo, "image/jpeg")},
        data={"whole_photo": "1"} if whole else {},
    )
    assert resp.status_code == 200, resp.text
    return resp.json()


def trend_lines(client: httpx.Client, tag: str, until: Callable[[dict], bool] | None = None) -> list[dict]:
    """The NDJSON snapshots of ``POST /api/trend``, to the last (or until ``until(snapshot)``)."""
    snaps: list[dict] = []
    with client.stream("POST", "/api/trend", json={"tag": tag}, timeout=httpx.Timeout(120.0)) as resp:
        assert resp.status_code == 200, resp.read().decode()
        for line in resp.iter_lines():
            if line.strip():
                snaps.append(json.loads(line))
                if until is not None and until(snaps[-1]):
                    break
    return snaps


def until(predicate: Callable[[], bool], limit: float) -> float:
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < limit, "not within the time allowed"
        time.sleep(0.1)
    return time.monotonic() - start


# ---- the tests -----------------------------------------------------------------------------------
def test_a_trend_run_on_one_worker_is_recommended_by_another(fleet: Fleet) -> None:
    with fleet.client("a") as a, fleet.client("b") as b:
        snaps = trend_lines(a, "dress")
        done_at = time.monotonic()
        final = snaps[-1]
        assert final["done"] and final["error"] is None and final["indexed"] == 6, final
        source = "shop:Alpha"
        ids = {int(i) for i in fleet.sql(f"SELECT id FROM items WHERE source = '{source}'").split()}
        assert len(ids) == 6

        # B answers an Alpha product's own picture with that product (B never ran the trend)
        def b_finds_all() -> bool:
            return all(recommend(b, product_jpeg(i))["items"][0]["id"] in ids for i in (0, 3, 5))

        until(b_finds_all, 5.0)
        took = time.monotonic() - done_at
        top = recommend(b, product_jpeg(2))["items"][0]
        assert top["shop"] == "Alpha" and top["id"] in ids
    assert took < 5.0
    assert fleet.count("SELECT count(*) FROM trends WHERE tag = 'dress' AND status = 'done'") == 1


def test_a_dislike_on_one_worker_shapes_another_workers_answer(fleet: Fleet, photo_of) -> None:
    photo = photo_of("Ankle boot", 4)
    with fleet.client("a") as a, fleet.client("b") as b:
        before = [s["id"] for s in recommend(b, photo)["items"]]
        disliked = recommend(a, photo)["items"][0]["id"]
        assert disliked == before[0]
        resp = a.post("/api/feedback", json={"item_id": disliked, "value": -1})
        assert resp.status_code == 200, resp.text
        after = [s["id"] for s in recommend(b, photo)["items"]]
    assert disliked not in after and len(after) == len(before)
    assert before[1] in after  # only the disliked item left
    uid = fleet.sql(f"SELECT id FROM users WHERE platform = 'web' AND platform_user_id = '{fleet.uid}'")
    assert fleet.sql(f"SELECT item_id, value FROM feedback WHERE user_id = {uid}") == f"{disliked}|-1"


def test_forget_on_one_worker_leaves_nothing_on_any(fleet: Fleet, photo_of) -> None:
    with fleet.client("a") as a, fleet.client("b") as b, fleet.client("c") as c:
        for i in range(4):
            recommend(b, photo_of("Sneaker", i), whole=False)
        style = b.get("/api/style").json()
        assert style["photo_count"] >= 4 and style["clusters"], style  # B has built (and cached) the style
        assert c.get("/api/style").json()["photo_count"] == style["photo_count"]
        user = f"platform = 'web' AND platform_user_id = '{fleet.uid}'"
        uid = int(fleet.sql(f"SELECT id FROM users WHERE {user}"))
        assert fleet.count(f"SELECT count(*) FROM photos WHERE user_id = {uid}") >= 6

        resp = a.post("/api/forget", json={"confirm": True})
        assert resp.status_code == 200, resp.text
        assert resp.json()["deleted"]["photos"] >= 6 and resp.json()["deleted"]["feedback"] == 1

        for table in ("photos", "feedback", "recommendations"):
            assert fleet.count(f"SELECT count(*) FROM {table} WHERE user_id = {uid}") == 0, table
        assert fleet.count(f"SELECT count(*) FROM users WHERE {user}") == 0
        assert fleet.count("SELECT count(*) FROM garments WHERE photo_id NOT IN (SELECT id FROM photos)") == 0
        # the same browser (the old cookie) on the other workers: nothing, not B's cached style
        for other in (b, c):
            after = other.get("/api/style").json()
            assert after["photo_count"] == 0 and not after["clusters"], after
    # asking for a style created no user again
    assert fleet.count(f"SELECT count(*) FROM users WHERE {user}") == 0


def test_a_worker_killed_mid_trend_is_taken_over_after_its_lease_expires(fleet: Fleet) -> None:
    fleet.shops_file.write_text(shops_toml(fleet.beta))  # read at every trend
    c, victim = fleet.workers["c"], fleet.workers["c"].process
    with fleet.client("c") as cc:
        seen = trend_lines(cc, "skirt", until=lambda s: s["indexed"] >= 2)
        victim.send_signal(signal.SIGKILL)  # no goodbye: no lease release, no index save
        killed_at = time.monotonic()
    victim.wait(10)
    assert victim.returncode == -signal.SIGKILL, c.tail()
    assert not seen[-1]["done"] and seen[-1]["indexed"] >= 2
    lease = fleet.sql("SELECT holder FROM trend_leases WHERE tag = 'skirt'")
    elsewhere = lease.startswith(OTHER_HOST + ":")
    assert elsewhere == bool(_other_host_prefix()), lease
    committed = fleet.count("SELECT count(*) FROM items WHERE source = 'shop:Beta'")
    assert 2 <= committed < 30

    with fleet.client("b") as b:
        snaps = trend_lines(b, "skirt")
    took = time.monotonic() - killed_at
    final = snaps[-1]
    assert final["done"] and final["error"] is None and final["found"] == 30, final
    if elsewhere:  # judged by expiry alone: B waited for the lease to run out (renewed every third of it)
        assert LEASE_SECONDS * 2 / 3 <= took < LEASE_SECONDS + 30, took
    else:  # same host: C's pid is gone, so B took over at once
        assert took < 30, took
    assert fleet.sql("SELECT status FROM trends WHERE tag = 'skirt' ORDER BY id").split() == ["interrupted", "done"]
    assert fleet.count("SELECT count(*) FROM trend_leases WHERE tag = 'skirt'") == 0  # released by B
    # every Beta product once: those C committed kept, the rest added by B, no duplicates
    # (Beta's first pictures are Alpha's, product for product: after the first test those
    # are Alpha's items, now tagged "skirt" too and carrying a Beta offer, not new items)
    skirt = "',' || tags || ',' LIKE '%,skirt,%'"
    beta_items = fleet.count("SELECT count(*) FROM items WHERE source = 'shop:Beta'")
    alpha_skirts = fleet.count(f"SELECT count(*) FROM items WHERE source = 'shop:Alpha' AND {skirt}")
    tagged = fleet.count(f"SELECT count(*) FROM items WHERE {skirt}")
    assert alpha_skirts in (0, 6) and tagged == 30 and beta_items == 30 - alpha_skirts, (beta_items, alpha_skirts)
    assert final["indexed"] == beta_items - committed, (final, committed)  # B added only what C hadn't
    assert (
        fleet.count("SELECT count(*) FROM (SELECT 1 FROM items GROUP BY source, external_id HAVING count(*) > 1) d")
        == 0
    )
    assert fleet.count("SELECT count(*) FROM items WHERE embedding IS NULL") == 0
    # and A, which took part in neither run, recommends what B added
    new_id = int(fleet.sql("SELECT max(id) FROM items WHERE source = 'shop:Beta'"))
    picture_of_new = fleet.sql(f"SELECT external_id FROM items WHERE id = {new_id}")
    index = int(picture_of_new.rsplit("/p-", 1)[1]) - 1  # the product page's URL ends in p-NNN
    with fleet.client("a") as a:
        until(lambda: recommend(a, product_jpeg(index))["items"][0]["id"] == new_id, 5.0)
