"""How soon `fashionbot demo` answers, and how fast it fills its catalogue meanwhile
(issue 19: "a demo that answers at once").

    .venv/bin/python -m bench.bench_demo [--quick] [--set FASHIONBOT_NAME=VALUE …] [--name demo]

`fashionbot demo` runs as a user runs it: the installed command in a real subprocess, on a
fresh data directory in a temp dir (``FASHIONBOT_DATA_DIR``; nothing else of the caller's
``FASHIONBOT_*`` environment, the backbone left to ``auto``), the web chat on a free port
(``--port``). The clock starts when the process is started:

- ``page_s``: the first ``GET /`` answered 200 (polled every 50 ms);
- ``ready_line_s``: the "ready" line on stdout;
- ``first_items_s``: the first photo answered with items (a Fashion-MNIST test sneaker as a
  JPEG, POSTed to ``/api/recommend`` once a second from the moment the page answers; every
  answer's status is kept: a 5xx would be a failure, a 409 is the "still being filled" one);
- ``ingest``: the background ingest's own status at the end (``/api/about``): items added,
  its seconds (reading the dataset included) and so its rate.

Runs, one process at a time:

1. ``first_start``: an empty data dir, the default 5,000-item subset; after the first photo
   with items the page is only polled (``/api/catalogue``, every 0.5 s) until the ingest is
   done, so the rate is the ingest's with nothing else on the model;
2. ``second_start``: the same data dir again (what "a machine that has run it once" sees):
   nothing is embedded again;
3. ``while_ingesting`` (not with ``--quick``): a fresh data dir, photos sent every 2 s
   while the ingest runs, to see what a visitor waits mid-ingest and what the photos cost
   the ingest; then Ctrl-C (SIGINT) mid-ingest, timed until the process has exited.

Each demo is stopped with SIGINT, as Ctrl-C does; the exit code and the seconds to exit
are kept. "The model's own rate" is measured in the same run, before and after the demos,
as ``bench/bench_ingest.py`` does it (``Bench.model_alone``: pre-letterboxed pixels pushed
through the product's ``Encoder.embed`` in chunks of 128, at the batch size start-up
measures); the goal is the 5,000-item ingest at ≥ 0.8× its mean. When the demo's own
start-up chose another batch size, the model alone is also timed at that size. Photos are rate-limited per address, so the runs set
``FASHIONBOT_RATE_LIMIT_PER_MINUTE=1000``. Saved to bench/results/demo.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.bench_ingest import Bench
from bench.common import machine, save

GOAL_SECONDS = 15.0  # page answering and first photo with items, on a second start
GOAL_RATE = 0.8  # the 5,000-item ingest against the model's own rate
DEMO_ITEMS = 5000
PHOTO_EVERY = 1.0  # seconds between photos until the first one with items
TIMEOUT = 900.0  # seconds any one demo may take before the bench gives up on it
EXTRA_ENV: dict[str, str] = {}  # --set NAME=VALUE: for the demos and the model-alone runs alike


def log(msg: str) -> None:
    print(msg, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def demo_command() -> list[str]:
    """The installed ``fashionbot`` script beside this interpreter, as a user runs it."""
    script = Path(sys.executable).with_name("fashionbot")
    return [str(script)] if script.exists() else [sys.executable, "-m", "bot.cli"]


def source_state() -> dict[str, Any]:
    """The commit measured and the tracked files changed beside it (others work in this tree)."""
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=Path(__file__).parent).stdout

    changed = [line[3:] for line in git("status", "--porcelain", "--untracked-files=no").splitlines()]
    return {"commit": git("rev-parse", "--short", "HEAD").strip(), "changed_files": changed}


def sneaker_jpeg() -> bytes:
    from engine.catalogue.ingest import FASHION_MNIST_CLASSES, load_fashion_mnist
    from tests.support.pictures import fmnist_jpeg

    images, labels = load_fashion_mnist("test")
    first = next(i for i, label in enumerate(labels) if label == FASHION_MNIST_CLASSES.index("Sneaker"))
    return fmnist_jpeg(images[first])


@dataclass
class Photo:
    at: float  # seconds after the demo started
    status: int
    seconds: float
    items: int
    text: str = ""


@dataclass
class Demo:
    """One `fashionbot demo` process and what was seen of it."""

    data_dir: Path
    limit: int | None = None
    started: float = 0.0
    port: int = 0
    process: asyncio.subprocess.Process | None = None
    stdout: list[tuple[float, str]] = field(default_factory=list)
    stderr_path: Path | None = None
    page_s: float | None = None
    ready_line_s: float | None = None
    photos: list[Photo] = field(default_factory=list)
    progress: list[tuple[float, int]] = field(default_factory=list)  # (seconds, items ready)

    def now(self) -> float:
        return time.monotonic() - self.started

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FASHIONBOT_")}
        env |= EXTRA_ENV | {"FASHIONBOT_DATA_DIR": str(self.data_dir), "FASHIONBOT_RATE_LIMIT_PER_MINUTE": "1000"}
        self.port = free_port()
        args = [*demo_command(), "demo", "--port", str(self.port)]
        if self.limit is not None:
            args += ["--limit", str(self.limit)]
        self.stderr_path = self.data_dir.with_name(self.data_dir.name + f"-stderr-{time.time_ns()}.txt")
        self.started = time.monotonic()
        err = await asyncio.to_thread(open, self.stderr_path, "wb")  # the child writes to it, not us
        try:
            self.process = await asyncio.create_subprocess_exec(
                *args, stdout=asyncio.subprocess.PIPE, stderr=err, env=env
            )
        finally:
            err.close()
        asyncio.ensure_future(self._read_stdout())

    async def _read_stdout(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        async for raw in self.process.stdout:
            line = raw.decode(errors="replace").rstrip()
            self.stdout.append((self.now(), line))
            if self.ready_line_s is None and "fashionbot demo is ready" in line:
                self.ready_line_s = self.now()

    async def wait_for_page(self, http: aiohttp.ClientSession) -> float:
        while True:
            self._check_alive()
            try:
                async with http.get(self.url + "/") as r:
                    if r.status == 200:
                        self.page_s = self.now()
                        return self.page_s
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)

    async def photo(self, http: aiohttp.ClientSession, jpeg: bytes) -> Photo:
        form = aiohttp.FormData()
        form.add_field("photo", jpeg, filename="sneaker.jpg", content_type="image/jpeg")
        at = self.now()
        t0 = time.perf_counter()
        async with http.post(self.url + "/api/recommend", data=form, headers={"Origin": self.url}) as r:
            body = await r.json(content_type=None)
            status = r.status
        took = time.perf_counter() - t0
        items = len(body.get("items") or []) if status == 200 else 0
        shot = Photo(at=round(at, 2), status=status, seconds=round(took, 3), items=items, text=body.get("error", ""))
        self.photos.append(shot)
        return shot

    async def first_items(self, http: aiohttp.ClientSession, jpeg: bytes) -> float:
        """Photos once a second until one is answered with items; returns when it was sent
        back (seconds after the start)."""
        while True:
            self._check_alive()
            shot = await self.photo(http, jpeg)
            if shot.items:
                return shot.at + shot.seconds
            await asyncio.sleep(PHOTO_EVERY)

    async def catalogue(self, http: aiohttp.ClientSession) -> dict[str, Any]:
        async with http.get(self.url + "/api/catalogue") as r:
            data: dict[str, Any] = await r.json()
        self.progress.append((round(self.now(), 2), int(data["ready"])))
        return data

    async def wait_until_filled(self, http: aiohttp.ClientSession, *, photo: bytes | None = None) -> dict[str, Any]:
        """Polls /api/catalogue until the ingest is no longer running (with ``photo``, also
        sends it every 2 s meanwhile). Returns the ingest's own status (/api/about)."""
        last_photo = 0.0
        while True:
            self._check_alive()
            c = await self.catalogue(http)
            if not c["adding"] and c["state"] != "running":
                break
            if photo is not None and time.monotonic() - last_photo >= 2.0:
                last_photo = time.monotonic()
                await self.photo(http, photo)
            await asyncio.sleep(0.5)
        return await self.about(http)

    async def about(self, http: aiohttp.ClientSession) -> dict[str, Any]:
        async with http.get(self.url + "/api/about") as r:
            data: dict[str, Any] = await r.json()
        return data

    async def stop(self) -> dict[str, Any]:
        """Ctrl-C, as a user stops it: SIGINT, then the exit code and the seconds to exit."""
        assert self.process is not None
        t0 = time.perf_counter()
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGINT)
        try:
            code = await asyncio.wait_for(self.process.wait(), 60)
        except TimeoutError:
            self.process.kill()
            code = await self.process.wait()
        return {"exit_code": code, "exit_s": round(time.perf_counter() - t0, 2)}

    def _check_alive(self) -> None:
        assert self.process is not None
        if self.process.returncode is not None or self.now() > TIMEOUT:
            tail = self.stderr_path.read_text(errors="replace")[-2000:] if self.stderr_path else ""
            raise RuntimeError(f"the demo stopped or hung (code {self.process.returncode}):\n{tail}")

    def report(self) -> dict[str, Any]:
        statuses = [p.status for p in self.photos]
        return {
            "page_s": None if self.page_s is None else round(self.page_s, 2),
            "ready_line_s": None if self.ready_line_s is None else round(self.ready_line_s, 2),
            "photos": [vars(p) for p in self.photos],
            "photo_statuses": {str(s): statuses.count(s) for s in sorted(set(statuses))},
            "server_errors": sum(s >= 500 for s in statuses),
            "stdout": [f"{t:6.1f} s  {line}" for t, line in self.stdout if line.strip()],
        }


def ingest_figures(about: dict[str, Any]) -> dict[str, Any]:
    ingest = about.get("ingest") or {}
    added, elapsed = int(ingest.get("added") or 0), float(ingest.get("elapsed") or 0.0)
    return {
        "state": ingest.get("state"),
        "added": added,
        "seconds": round(elapsed, 2),
        "images_per_s": added / elapsed if elapsed > 0 else None,
        "index_size": about.get("index_size"),
        "backbone": about.get("backbone"),
        "batch_size": about.get("batch_size"),
        "precision": about.get("precision"),
    }


async def first_start(root: Path, jpeg: bytes) -> dict[str, Any]:
    demo = Demo(root / "data")
    await demo.start()
    async with aiohttp.ClientSession() as http:
        page = await demo.wait_for_page(http)
        log(f"first start: page answered after {page:.1f} s")
        first = await demo.first_items(http, jpeg)
        log(f"first start: first photo with items after {first:.1f} s ({len(demo.photos)} photos sent)")
        about = await demo.wait_until_filled(http)
        done_at = demo.now()
    stop = await demo.stop()
    figures = ingest_figures(about)
    log(
        f"first start: {figures['added']} items in {figures['seconds']:.1f} s "
        f"({figures['images_per_s'] or 0:.1f} img/s, {figures['backbone']}); all in after {done_at:.1f} s"
    )
    return demo.report() | {"first_items_s": round(first, 2), "filled_s": round(done_at, 2), "ingest": figures} | stop


async def second_start(root: Path, jpeg: bytes) -> dict[str, Any]:
    demo = Demo(root / "data")
    await demo.start()
    async with aiohttp.ClientSession() as http:
        page = await demo.wait_for_page(http)
        first = await demo.first_items(http, jpeg)
        about = await demo.wait_until_filled(http)
    stop = await demo.stop()
    log(f"second start: page after {page:.1f} s, first photo with items after {first:.1f} s")
    return demo.report() | {"first_items_s": round(first, 2), "ingest": ingest_figures(about)} | stop


async def while_ingesting(root: Path, jpeg: bytes, limit: int) -> dict[str, Any]:
    """Photos every 2 s during a fresh ingest; then Ctrl-C mid-ingest on a second fresh one."""
    demo = Demo(root / "busy", limit=limit)
    await demo.start()
    async with aiohttp.ClientSession() as http:
        await demo.wait_for_page(http)
        about = await demo.wait_until_filled(http, photo=jpeg)
    stop = await demo.stop()
    answered = [p.seconds for p in demo.photos if p.items]
    out = demo.report() | {"limit": limit, "ingest": ingest_figures(about)} | stop
    if answered:
        out["answered_p50_s"] = round(statistics.median(answered), 2)
        out["answered_max_s"] = round(max(answered), 2)
    log(
        f"while ingesting: {len(demo.photos)} photos, answered with items in p50 "
        f"{out.get('answered_p50_s')} s, max {out.get('answered_max_s')} s; "
        f"ingest {out['ingest']['images_per_s'] or 0:.1f} img/s"
    )
    # Ctrl-C in the middle of an ingest: the process must end promptly and cleanly.
    cut = Demo(root / "cut", limit=limit)
    await cut.start()
    async with aiohttp.ClientSession() as http:
        await cut.wait_for_page(http)
        while (await cut.catalogue(http))["ready"] < 256:
            cut._check_alive()
            await asyncio.sleep(0.2)
    interrupted = await cut.stop()
    log(f"Ctrl-C mid-ingest: exit code {interrupted['exit_code']} after {interrupted['exit_s']} s")
    out["ctrl_c_mid_ingest"] = interrupted | {"ready_before": cut.progress[-1][1]}
    return out


async def main_async(quick: bool) -> dict[str, Any]:
    model_images = 512 if quick else 1024
    out: dict[str, Any] = {
        "machine": machine(),
        "source": source_state(),
        "goals": {"seconds": GOAL_SECONDS, "rate_vs_model": GOAL_RATE},
    }
    jpeg = await asyncio.to_thread(sneaker_jpeg)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
        root = Path(tmp)
        models = root / "model"
        models.mkdir()
        bench = Bench(models)
        model = await bench.model_alone(model_images)
        log(f"model alone: {model['images_per_s']:.1f} img/s (batch {model['batch_size']}, {model['precision']})")
        first = await first_start(root, jpeg)
        second = await second_start(root, jpeg)
        busy = None if quick else await while_ingesting(root, jpeg, 2000)
        model_end = await bench.model_alone(model_images)
        log(f"model alone again: {model_end['images_per_s']:.1f} img/s")
        demo_batch = first["ingest"]["batch_size"]
        at_demo_batch = None
        if demo_batch and demo_batch != model["batch_size"]:
            # The demo measured its own batch size at its first start; the model alone at that
            # size too, to tell the batch choice from the pipeline's cost.
            fixed = root / "model-fixed"
            fixed.mkdir()
            at_demo_batch = await Bench(fixed, batch_size=demo_batch).model_alone(model_images)
            log(f"model alone at the demo's batch {demo_batch}: {at_demo_batch['images_per_s']:.1f} img/s")
    model_rate = (model["images_per_s"] + model_end["images_per_s"]) / 2
    demo_rate = first["ingest"]["images_per_s"] or 0.0
    out |= {
        "command": " ".join([Path(demo_command()[0]).name, *demo_command()[1:], "demo"]),
        "model_alone": model,
        "model_alone_end": model_end,
        "model_images_per_s": model_rate,
        "model_alone_at_demo_batch": at_demo_batch,
        "first_start": first,
        "second_start": second,
        "while_ingesting": busy,
        "summary": {
            "second_start_page_s": second["page_s"],
            "second_start_first_items_s": second["first_items_s"],
            "second_start_goal_met": max(second["page_s"], second["first_items_s"]) <= GOAL_SECONDS,
            "first_start_page_s": first["page_s"],
            "first_start_first_items_s": first["first_items_s"],
            "first_start_filled_s": first["filled_s"],
            "demo_items_per_s": demo_rate,
            "demo_vs_model": demo_rate / model_rate,
            "demo_vs_model_at_its_batch": demo_rate / at_demo_batch["images_per_s"] if at_demo_batch else None,
            "rate_goal_met": demo_rate / model_rate >= GOAL_RATE,
            "server_errors": first["server_errors"] + second["server_errors"] + (busy["server_errors"] if busy else 0),
        },
        "seconds": time.perf_counter() - started,
    }
    out["machine"]["load_average_end"] = os.getloadavg()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="no while-ingesting run, a shorter model measurement")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a FASHIONBOT_ setting for the demos and the model-alone runs (repeatable)",
    )
    parser.add_argument("--name", default="demo", help="results file name in bench/results (default: demo)")
    args = parser.parse_args()
    for item in args.set:
        name, _, value = item.partition("=")
        EXTRA_ENV[name] = value
        os.environ[name] = value  # the model-alone service reads its settings from the environment too
    result = asyncio.run(main_async(args.quick))
    result["settings"] = dict(EXTRA_ENV)
    path = save(args.name, result)
    s = result["summary"]
    log(
        f"second start: page {s['second_start_page_s']:.1f} s, first items {s['second_start_first_items_s']:.1f} s "
        f"(goal ≤ {GOAL_SECONDS:.0f} s: {'met' if s['second_start_goal_met'] else 'NOT met'}); first start: page "
        f"{s['first_start_page_s']:.1f} s, first items {s['first_start_first_items_s']:.1f} s, all "
        f"{DEMO_ITEMS:,} in {s['first_start_filled_s']:.0f} s; ingest {s['demo_items_per_s']:.1f} img/s = "
        f"{s['demo_vs_model']:.2f}x the model's rate (goal {GOAL_RATE}: {'met' if s['rate_goal_met'] else 'NOT met'}); "
        f"5xx answers: {s['server_errors']}. Saved {path}"
    )


if __name__ == "__main__":
    main()
