"""Benchmark of the Telegram front-end: N users send a photo at the same moment.

    .venv/bin/python bench/bench_telegram.py                 # 50 users, 3 rounds, writes docs
    .venv/bin/python bench/bench_telegram.py --users 100 --rounds 1 --no-docs
    .venv/bin/python bench/bench_telegram.py --debug-slow 0.05   # log loop callbacks over 50 ms

What runs: the real ``run_telegram`` (python-telegram-bot Application, long polling,
AIORateLimiter at Telegram's 30 requests/s) over the real engine (EfficientNet-Lite0,
hnswlib, SQLite) with a catalogue of Fashion-MNIST training images, against the fake
Bot API from ``tests/support/fakes/telegram_api.py`` running in its own thread. Latency is
from the moment an update is queued in the fake until the album request arrives
there. Each round uses new users (a first photo each) and, after round 1, pictures
Telegram already has (file_id reuse). A second pass turns the flood limiter off to
show what the engine alone costs.

The loop stall is the worst lateness of a task sleeping 5 ms in a loop; "own" stall
subtracts the time the loop thread was runnable but waiting for a CPU (other
processes on a shared machine), leaving what this process did to its loop.

Results: ``bench/results/telegram.json`` and the "Telegram" section of
``docs/benchmarks.md`` (replaced if present, appended otherwise).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import re
import shutil
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import machine, save  # noqa: E402
from engine.config import Settings  # noqa: E402
from tests.support.fakes.telegram_api import FakeBotAPI, RunningBot, bot_settings  # noqa: E402
from tests.support.loop_monitor import LoopStallMonitor, percentile  # noqa: E402

DOCS = ROOT / "docs" / "benchmarks.md"
SECTION = "## Telegram"


async def build_catalogue(data_dir: Path, size: int) -> None:
    import hashlib

    from engine.catalogue import ingest as catalogue
    from engine.service import FashionService

    schema = hashlib.sha256()  # a new schema or migration means a new catalogue
    for path in sorted((ROOT / "db").rglob("*")):
        if path.suffix in (".py", ".ini") and path.is_file():
            schema.update(path.read_bytes())
    marker = data_dir / f".catalogue-{size}-{schema.hexdigest()[:12]}"
    if marker.exists():
        return
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    settings = Settings(data_dir=data_dir, backbone="efficientnet-lite0", allow_weight_download=False)
    service = await FashionService.create(settings)
    try:
        rows = catalogue.fashion_mnist_rows("train", size, service.encoder.embedder.input_size)
        report = await catalogue.ingest_rows(service.catalogue, service.encoder, rows, batch_size=128)
        print(f"catalogue: {report.summary()}", file=sys.stderr)
    finally:
        await service.close()
    marker.touch()


def photos(count: int, offset: int) -> list[bytes]:
    """Fashion-MNIST *test* images as chat photos (JPEG, 280 px), all classes."""
    import io

    from PIL import Image

    from engine.catalogue.ingest import fashion_mnist_picture, load_fashion_mnist

    images, _ = load_fashion_mnist("test")
    out = []
    for n in range(offset, offset + count):
        img = fashion_mnist_picture(images[n]).resize((280, 280), Image.Resampling.BICUBIC)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


async def one_round(api: FakeBotAPI, users: int, first_user: int, pictures: list[bytes]) -> dict:
    updates = [(first_user + n, api.make_photo_update(first_user + n, pictures[n])) for n in range(users)]
    before = len(api.calls_of("sendMediaGroup"))
    with LoopStallMonitor() as monitor:
        pushed = {user: api.push_update(update) for user, update in updates}
        calls = await api.wait_for("sendMediaGroup", count=before + users, timeout=300)
        await api.wait_for(
            "sendMessage",
            lambda c: c.params.get("reply_markup") is not None and c.chat_id in pushed,
            count=users,
            timeout=60,
        )
    albums = {c.chat_id: c for c in calls if c.chat_id in pushed}
    assert len(albums) == users, f"{len(albums)} albums for {users} users"
    latency = [albums[u].at - api.pushed_at[uid] for u, uid in pushed.items()]
    return {
        "users": users,
        "p50_ms": percentile(latency, 50) * 1000,
        "p95_ms": percentile(latency, 95) * 1000,
        "max_ms": max(latency) * 1000,
        "mean_ms": statistics.mean(latency) * 1000,
        "max_loop_stall_ms": monitor.max_stall * 1000,
        "max_own_loop_stall_ms": monitor.max_own_stall * 1000,
        "max_busy_loop_stall_ms": monitor.max_busy_stall * 1000,
        "uploads": sum(len(albums[u].files) for u in pushed),
        "stalled_in": monitor.top_culprits(3),
    }


async def scenario(data_dir: Path, users: int, rounds: int, flood_limit: bool) -> list[dict]:
    from engine.service import FashionService

    run_dir = data_dir.parent / f"{data_dir.name}-run"
    shutil.rmtree(run_dir, ignore_errors=True)
    shutil.copytree(data_dir, run_dir)
    settings = Settings(data_dir=run_dir, backbone="efficientnet-lite0", allow_weight_download=False)
    service = await FashionService.create(settings)
    results = []
    try:
        with FakeBotAPI() as api:
            options = {} if flood_limit else {"max_messages_per_second": 0}
            async with RunningBot(service, bot_settings(service, api, rate_limit_per_minute=0), **options):
                # warm-up: one photo (model, caches, connections), not counted
                await one_round(api, 1, 1, photos(1, 9000))
                for r in range(rounds):
                    pictures = photos(users, 100 * r)
                    results.append(await one_round(api, users, 10_000 * (r + 1), pictures))
                    print(f"  round {r + 1}: {results[-1]}", file=sys.stderr)
            assert not api.violations, api.violations
    finally:
        await service.close()
        shutil.rmtree(run_dir, ignore_errors=True)
    return results


def summary(rounds: list[dict]) -> dict:
    return {
        "p50_ms": statistics.median(r["p50_ms"] for r in rounds),
        "p95_ms": statistics.median(r["p95_ms"] for r in rounds),
        "max_ms": max(r["max_ms"] for r in rounds),
        "max_loop_stall_ms": max(r["max_loop_stall_ms"] for r in rounds),
        "max_own_loop_stall_ms": max(r["max_own_loop_stall_ms"] for r in rounds),
        "max_busy_loop_stall_ms": max(r["max_busy_loop_stall_ms"] for r in rounds),
    }


def write_docs(payload: dict) -> None:
    m, limited, free = payload["machine"], payload["flood_limited"], payload["no_flood_limit"]
    users, rounds = payload["users"], payload["rounds"]

    def row(label: str, r: dict) -> str:
        return (
            f"| {label} | {r['p50_ms']:.0f} ms | {r['p95_ms']:.0f} ms | {r['max_ms']:.0f} ms | "
            f"{r['max_loop_stall_ms']:.0f} / {r['max_own_loop_stall_ms']:.0f} / {r['max_busy_loop_stall_ms']:.0f} ms |"
        )

    text = f"""{SECTION}

`bench/bench_telegram.py` ({m["date"]}): {users} users each send a photo at the same moment, {rounds} rounds
(new users each round; p50/p95 are the median over rounds, max and stalls the worst), real `run_telegram`
(python-telegram-bot {payload["ptb"]}, long polling) over the real engine (EfficientNet-Lite0,
{payload["catalogue"]} Fashion-MNIST items, SQLite) against the fake Bot API (`tests/support/fakes/telegram_api.py`,
in its own thread). Latency: update queued → album request received. Machine: {m["cpu"] or "unknown CPU"},
{m["cores"]} cores, load average {m["load_average"][0]:.1f} at the start (shared with other work).

| outgoing requests | p50 | p95 | max | longest loop stall (raw / own / busy) |
|---|---|---|---|---|
{row("flood-limited, 30 requests/s (production)", limited)}
{row("no flood limit", free)}

- One user alone: the album arrives {payload["single_ms"]:.0f} ms after the update (median of 5).
- Each reply is three requests (chat action, album, buttons): {users} simultaneous users make {3 * users}, and at
  Telegram's 30 requests/s (a burst of 30, then 30 a second) the last of them can't leave before
  ~{(3 * users - 30) / 30:.0f} s, whatever the engine does. Here the two rows are close: the engine (embedding
  {users} photos and recording each user's history in SQLite, on {m["cores"]} cores) was the bottleneck, not
  the limiter.
- Loop stall: the worst lateness of a task sleeping 5 ms. *Own* subtracts the time the loop thread waited for a
  CPU held by another process (`/proc/thread-self/schedstat`); *busy* is the part the loop thread spent
  running (its CPU time). Model, index and picture work all run in threads; the test
  (`tests/test_telegram_load.py`) asserts busy < 100 ms always and own < 100 ms when the machine has a core to
  spare. Before `gc.freeze()` after startup, full garbage collections walking the ~300k startup objects (model,
  libraries) held the GIL for 100–250 ms, on the loop thread or another: that was the largest stall.
"""
    current = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(current):
        updated = pattern.sub(lambda _: text + "\n", current)
    else:
        updated = current.rstrip("\n") + "\n\n" + text
    DOCS.parent.mkdir(parents=True, exist_ok=True)
    DOCS.write_text(updated)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--catalogue", type=int, default=2000)
    parser.add_argument("--data-dir", type=Path, default=Path("/tmp/fashionbot-bench-telegram"))
    parser.add_argument("--no-docs", action="store_true")
    parser.add_argument("--docs-only", action="store_true", help="rewrite the docs section from the last results")
    parser.add_argument(
        "--debug-slow", type=float, default=None, help="asyncio debug: report callbacks slower than this (s)"
    )
    args = parser.parse_args()
    if args.debug_slow:
        logging.basicConfig(level=logging.WARNING)
        loop = asyncio.get_running_loop()
        loop.set_debug(True)
        loop.slow_callback_duration = args.debug_slow

    if args.docs_only:
        import json

        from bench.common import RESULTS

        write_docs(json.loads((RESULTS / "telegram.json").read_text()))
        return

    import telegram

    await build_catalogue(args.data_dir, args.catalogue)
    load = os.getloadavg()
    print(f"flood-limited (load {load[0]:.1f}):", file=sys.stderr)
    limited = await scenario(args.data_dir, args.users, args.rounds, flood_limit=True)
    single = await scenario(args.data_dir, 1, 5, flood_limit=True)
    print("no flood limit:", file=sys.stderr)
    free = await scenario(args.data_dir, args.users, args.rounds, flood_limit=False)
    payload = {
        "machine": {**machine(), "load_average": load},
        "ptb": telegram.__version__,
        "users": args.users,
        "rounds": args.rounds,
        "catalogue": args.catalogue,
        "flood_limited": summary(limited),
        "no_flood_limit": summary(free),
        "single_ms": statistics.median(r["p50_ms"] for r in single),
        "rounds_flood_limited": limited,
        "rounds_no_flood_limit": free,
    }
    print(f"results: {save('telegram', payload)}", file=sys.stderr)
    print(payload["flood_limited"], payload["no_flood_limit"], f"single {payload['single_ms']:.0f} ms")
    if not args.no_docs:
        write_docs(payload)
        print(f"updated {DOCS}", file=sys.stderr)


if __name__ == "__main__":
    asyncio.run(main())
