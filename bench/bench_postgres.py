"""PostgreSQL beside SQLite, and how fast one worker sees another's new item (issue #17).

    .venv/bin/python -m bench.bench_postgres [--catalogue 2000] [--queries 100] [--products 60]
    .venv/bin/python -m bench postgres

Everything real: a throwaway PostgreSQL cluster (tests/support/postgres.py, fsync off as in
the tests: a throwaway server, so commit costs are below a durable one's), the SQLite file
as shipped (WAL), EfficientNet-Lite0, hnswlib, the real scraper against a fake shop on
127.0.0.1. Both databases hold the same catalogue (``--catalogue`` Fashion-MNIST items,
copied with ``db.copy``), and the two are measured in one run, interleaved, so a shared
machine's load falls on both alike (the load average is in the JSON).

- ``recommend``: one photo → garments → 10 items each through ``FashionService.recommend``
  for a known user (so the photo, its garments and the recommendations are written), one
  query at a time, SQLite and PostgreSQL alternating query by query; p50/p95/mean ms.
- ``trend``: ``FashionService.trend`` over a fake JSON-LD shop of ``--products`` products
  (politeness delay 0, see bench_trend.py), on a fresh copy of each database,
  ``--repeats`` times alternating; the median run's items indexed per minute.
- ``follower``: two FashionServices (own data dirs and indexes) over one database, in one
  process; an item committed on A, the time until B's :class:`Follower` has it in its index
  (``--follows`` times). PostgreSQL wakes B with NOTIFY; SQLite has no NOTIFY, so B polls
  (every 2 s).

Results go to ``bench/results/postgres.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.bench_trend import build_catalogue, settings_for, shops_toml
from bench.common import machine, save
from db.copy import copy_database
from db.store import NewItem, Store
from engine.types import UserRef
from tests.support.fakes.shop import FakeShop, product_jpeg
from tests.support.pictures import fmnist_jpeg
from tests.support.postgres import PostgresCluster, postgres_cluster

DATABASES = ("sqlite", "postgres")


def pct(xs: list[float], q: float) -> float:
    ordered = sorted(xs)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def summary_ms(xs: list[float]) -> dict[str, float]:
    ms = [x * 1000 for x in xs]
    return {
        "p50_ms": round(pct(ms, 50), 1),
        "p95_ms": round(pct(ms, 95), 1),
        "mean_ms": round(statistics.fmean(ms), 1),
        "max_ms": round(max(ms), 1),
        "n": len(ms),
    }


class Databases:
    """Fresh copies of the one catalogue: a data dir per service, and a database URL per copy
    (the data dir's own SQLite file, or a PostgreSQL database made from the template)."""

    def __init__(self, base: Path, cluster: PostgresCluster, template: str) -> None:
        self.base, self.cluster, self.template = base, cluster, template
        self._n = 0

    def data_dir(self) -> Path:
        self._n += 1
        d = self.base / f"copy{self._n}"
        shutil.copytree(self.base / "catalogue", d)
        return d

    def url(self, kind: str, data_dir: Path) -> str:
        if kind == "sqlite":
            return f"sqlite+aiosqlite:///{(data_dir / 'fashionbot.sqlite3').resolve()}"
        return self.cluster.url(self.cluster.create_database("bench", template=self.template))


async def open_service(dbs: Databases, kind: str, backbone: Any, url: str | None = None, **settings: Any):
    from engine.service import FashionService

    data_dir = dbs.data_dir()
    url = url or dbs.url(kind, data_dir)
    return await FashionService.create(settings_for(data_dir, database_url=url, **settings), backbone=backbone), url


# ---- recommend latency --------------------------------------------------------------------------
async def bench_recommend(dbs: Databases, backbone: Any, queries: int) -> dict[str, Any]:
    from engine.catalogue.ingest import load_fashion_mnist

    images, _ = load_fashion_mnist("test")
    photos = [fmnist_jpeg(images[i]) for i in range(queries + 10)]
    services = {kind: (await open_service(dbs, kind, backbone))[0] for kind in DATABASES}
    times: dict[str, list[float]] = {kind: [] for kind in DATABASES}
    try:
        for i, photo in enumerate(photos):
            for kind in DATABASES if i % 2 == 0 else reversed(DATABASES):  # alternate who goes first
                start = time.perf_counter()
                rec = await services[kind].recommend(photo, UserRef("bench", f"user{i % 20}"), k=10)
                took = time.perf_counter() - start
                assert len(rec.items) == 10
                if i >= 10:  # the first 10: warm-up (caches, first inserts, the pool)
                    times[kind].append(took)
    finally:
        for svc in services.values():
            await svc.close()
    return {kind: summary_ms(times[kind]) for kind in DATABASES}


# ---- trend ingest rate ------------------------------------------------------------------------------
async def one_trend(dbs: Databases, kind: str, backbone: Any, products: int) -> dict[str, Any]:
    async with FakeShop("jsonld", n_products=products) as shop:
        shops_file = dbs.base / f"shops-{shop.port}.toml"
        shops_file.write_text(shops_toml([shop]))
        svc, _ = await open_service(
            dbs,
            kind,
            backbone,
            shops_file=shops_file,
            scraper_allow_hosts=[shop.allow_entry],
            scraper_min_delay=0.0,
            scraper_max_products=products,
            scraper_max_pages=products + 10,
        )
        try:
            start = time.perf_counter()
            final = None
            async for progress in svc.trend("dress"):
                final = progress
            elapsed = time.perf_counter() - start
        finally:
            await svc.close()
    assert final is not None and final.error is None and final.indexed == products, final
    return {
        "seconds": round(elapsed, 2),
        "indexed": final.indexed,
        "items_per_minute": round(final.indexed / elapsed * 60),
    }


async def bench_trend(dbs: Databases, backbone: Any, products: int, repeats: int) -> dict[str, Any]:
    runs: dict[str, list[dict[str, Any]]] = {kind: [] for kind in DATABASES}
    for r in range(repeats):
        for kind in DATABASES if r % 2 == 0 else reversed(DATABASES):
            runs[kind].append(await one_trend(dbs, kind, backbone, products))
            print(f"  trend on {kind}: {runs[kind][-1]}", flush=True)
    out = {}
    for kind, rs in runs.items():
        median = sorted(rs, key=lambda x: x["items_per_minute"])[len(rs) // 2]
        out[kind] = median | {"products": products, "items_per_minute_all": [x["items_per_minute"] for x in rs]}
    return out


# ---- a new item reaching another worker ------------------------------------------------------------
async def bench_follower(dbs: Databases, kind: str, backbone: Any, follows: int) -> dict[str, Any]:
    a, url = await open_service(dbs, kind, backbone)
    b, _ = await open_service(dbs, kind, backbone, url=url)
    delays: list[float] = []
    try:
        pictures = [product_jpeg(i) for i in range(follows)]
        vectors = [(await a.encoder.embed_bytes(p)).astype(np.float32) for p in pictures]
        for i, (picture, vector) in enumerate(zip(pictures, vectors, strict=True)):
            await asyncio.sleep(0.3 + (i % 7) * 0.23)  # land at different points of B's poll cycle
            item = NewItem(source="bench", external_id=f"follow-{i}", title=f"Item {i}", image=picture, price=10.0)
            start = time.perf_counter()
            (item_id,) = await a.catalogue.add_items([item], vector[None, :])
            while item_id not in b.catalogue:
                await asyncio.sleep(0.002)
                assert time.perf_counter() - start < 30, "B never saw the new item"
            delays.append(time.perf_counter() - start)
    finally:
        await b.close()
        await a.close()
    return summary_ms(delays) | {"how": "NOTIFY on commit" if kind == "postgres" else "poll every 2 s"}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    from engine.vision.backbones import load_backbone

    load_before = os.getloadavg()
    backbone = await asyncio.to_thread(load_backbone, "efficientnet-lite0")
    results: dict[str, Any] = {}
    with postgres_cluster() as cluster, tempfile.TemporaryDirectory(prefix="bench-postgres-") as tmp:
        base = Path(tmp)
        t0 = time.perf_counter()
        await build_catalogue(base / "catalogue", args.catalogue, backbone)
        template = cluster.create_database("catalogue")
        source = Store(settings_for(base / "catalogue").db_url)
        target = Store(cluster.url(template))
        try:
            await copy_database(source, target)
        finally:
            await source.close()
            await target.close()
        print(f"catalogue of {args.catalogue} items built and copied in {time.perf_counter() - t0:.0f} s", flush=True)
        dbs = Databases(base, cluster, template)

        results["recommend"] = await bench_recommend(dbs, backbone, args.queries)
        print("recommend:", results["recommend"], flush=True)
        results["trend"] = await bench_trend(dbs, backbone, args.products, args.repeats)
        print("trend:", results["trend"], flush=True)
        results["follower"] = {kind: await bench_follower(dbs, kind, backbone, args.follows) for kind in DATABASES}
        print("follower:", results["follower"], flush=True)
    payload = {
        "benchmark": "PostgreSQL beside SQLite: recommend latency, trend ingest rate, a new item reaching another worker",
        "catalogue_items": args.catalogue,
        "backbone": "efficientnet-lite0",
        "postgres": "throwaway cluster, fsync=off, synchronous_commit=off (tests/support/postgres.py)",
        "results": results,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "machine": machine(),
    }
    path = save("postgres", payload)
    r, t, f = results["recommend"], results["trend"], results["follower"]
    print(
        f"\nrecommend p50/p95: SQLite {r['sqlite']['p50_ms']}/{r['sqlite']['p95_ms']} ms, "
        f"PostgreSQL {r['postgres']['p50_ms']}/{r['postgres']['p95_ms']} ms; "
        f"trend: SQLite {t['sqlite']['items_per_minute']}, PostgreSQL {t['postgres']['items_per_minute']} items/min; "
        f"new item on another worker p50/p95: SQLite {f['sqlite']['p50_ms']}/{f['sqlite']['p95_ms']} ms, "
        f"PostgreSQL {f['postgres']['p50_ms']}/{f['postgres']['p95_ms']} ms. Saved to {path}"
    )
    return payload


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--catalogue", type=int, default=2000, help="Fashion-MNIST items in both databases")
    parser.add_argument("--queries", type=int, default=100, help="recommend calls per database (after 10 warm-up)")
    parser.add_argument("--products", type=int, default=60, help="products of the fake shop a trend indexes")
    parser.add_argument("--repeats", type=int, default=3, help="trend runs per database; the median is reported")
    parser.add_argument("--follows", type=int, default=20, help="new items followed per database")
    return parser


def run_cli(argv: list[str] | None = None) -> dict[str, Any]:
    logging.basicConfig(level=logging.WARNING)
    return asyncio.run(main(build_parser().parse_args(argv)))


if __name__ == "__main__":
    run_cli()
