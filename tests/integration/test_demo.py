"""`fashionbot demo` answers at once and fills its catalogue behind the page (issue 19).

The real ``run_demo``: the real service (the session's offline backbone, so no model is
loaded twice), the real background ingest of Fashion-MNIST into SQLite and hnswlib, the
real web chat and demo shop. One small hook: a :class:`Gate` in front of
``Catalogue.add_items`` holds each chunk of the ingest until the test lets it through, so
the test decides how far the catalogue is while it asks the page. Ctrl-C is what
``asyncio.run`` does with it: the main task is cancelled.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
import pytest_asyncio

from bot import demo as demo_module
from bot.web import routes
from engine.catalogue.catalogue import Catalogue
from engine.errors import CatalogueFilling
from engine.service import FashionService
from tests.support.settings import make_settings

LIMIT = 300  # three chunks of the ingest: 128, 128 and 44
FILLING = str(CatalogueFilling())


class Gate:
    """Holds the ingest before each catalogue write until let through (``let``), or makes
    the next write fail (``fail``)."""

    def __init__(self) -> None:
        self._passes = asyncio.Semaphore(0)
        self.failure: BaseException | None = None

    def let(self, chunks: int = 1) -> None:
        for _ in range(chunks):
            self._passes.release()

    def open(self) -> None:
        self.let(100)

    async def wait(self) -> None:
        await self._passes.acquire()
        if self.failure is not None:
            raise self.failure


@dataclass
class Running:
    """One ``run_demo`` task and the console it writes to."""

    task: asyncio.Task[int]
    url: str
    console: Callable[[], str]

    async def stop(self) -> None:
        """Ctrl-C: the main task is cancelled and must end promptly, everything closed."""
        self.task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(self.task, 30)


@dataclass
class Demo:
    settings: Any
    gate: Gate
    capsys: Any
    out: list[str] = field(default_factory=list)
    runs: list[Running] = field(default_factory=list)  # stopped at teardown if a test failed first

    def console(self) -> str:
        self.out.append(self.capsys.readouterr().out)
        return "".join(self.out)

    async def start(self) -> Running:
        """``run_demo`` as a task, returned once its ready line names the page's URL."""
        since = len(self.console())

        def console() -> str:  # what this run wrote
            return self.console()[since:]

        task = asyncio.create_task(demo_module.run_demo(self.settings, limit=LIMIT, port=0))
        self.runs.append(Running(task, "", console))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 60
        while (found := re.search(r"open (http://\S+)/", console())) is None:
            if task.done():
                task.result()  # raises what stopped it
                raise AssertionError(f"run_demo ended before the page was up: {console()!r}")
            assert loop.time() < deadline, f"no ready line: {console()!r}"
            await asyncio.sleep(0.02)
        return Running(task, found.group(1), console)


@pytest_asyncio.fixture
async def demo(tmp_path, backbone, monkeypatch, capsys) -> AsyncIterator[Demo]:
    """A demo on an empty data dir in ``tmp_path``, with the session's backbone and the gate."""
    for name in ("TELEGRAM_BOT_TOKEN", "DISCORD_BOT_TOKEN", "FASHIONBOT_TELEGRAM_BOT_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    create = FashionService.create

    async def create_with_the_session_backbone(settings=None, **_: Any) -> FashionService:
        return await create(settings, backbone=backbone)

    monkeypatch.setattr(FashionService, "create", staticmethod(create_with_the_session_backbone))
    gate = Gate()
    add_items = Catalogue.add_items

    async def gated(self: Catalogue, items: Any, vectors: np.ndarray) -> list[int]:
        await gate.wait()
        return await add_items(self, items, vectors)

    monkeypatch.setattr(Catalogue, "add_items", gated)
    # batch size fixed: no start-up measurement of it in a fresh data dir
    settings = make_settings(tmp_path / "data", batch_size=4, web_port=0)
    demo = Demo(settings, gate, capsys)
    yield demo
    # The loop is the session's: a demo left running by a failed test would go on in the
    # next tests, through their gate (one failure became two in a full run).
    for run in demo.runs:
        if not run.task.done():
            run.task.cancel()
            await asyncio.gather(run.task, return_exceptions=True)


async def eventually(probe: Callable[[], Awaitable[Any]], ok: Callable[[Any], bool], timeout: float = 60) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await probe()
        if ok(value):
            return value
        assert loop.time() < deadline, f"still {value!r} after {timeout} s"
        await asyncio.sleep(0.05)


@pytest_asyncio.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def catalogue(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with http.get(url + "/api/catalogue") as r:
        assert r.status == 200
        return await r.json()


async def send_photo(http: aiohttp.ClientSession, url: str, jpeg: bytes) -> tuple[int, dict[str, Any], Any]:
    form = aiohttp.FormData()
    form.add_field("photo", jpeg, filename="sneaker.jpg", content_type="image/jpeg")
    async with http.post(url + "/api/recommend", data=form, headers={"Origin": url}) as r:
        return r.status, await r.json(), r.headers


async def test_the_page_answers_at_once_and_the_catalogue_fills_behind_it(demo, http, photo_of) -> None:
    sneaker = photo_of("Sneaker")
    running = await demo.start()  # nothing may be written yet: the old demo never got here
    async with http.get(running.url + "/") as page:
        assert page.status == 200 and "catalogue-status" in await page.text()
    status = await catalogue(http, running.url)
    assert (status["ready"], status["adding"], status["state"]) == (0, True, "running")
    assert re.search(r"Catalogue: 0 (of 300 )?items indexed so far", running.console())

    code, body, headers = await send_photo(http, running.url, sneaker)  # an empty catalogue, still filling
    assert (code, body["error"], body["reason"]) == (409, FILLING, "catalogue_filling")
    assert headers["Retry-After"] == "5"

    demo.gate.let(1)  # the first chunk of 128 is written and indexed
    status = await eventually(lambda: catalogue(http, running.url), lambda c: c["ready"] == 128)
    assert status["adding"] and status["expected"] == LIMIT
    assert status["text"] == "Catalogue: 128 of 300 items ready — still adding"
    code, body, _ = await send_photo(http, running.url, sneaker)  # answered from what is indexed so far
    assert code == 200 and len(body["items"]) == 10, body

    await running.stop()  # Ctrl-C mid-ingest: the second chunk never got past the gate

    demo.gate.open()
    again = await demo.start()  # resumes: only the 172 missing items are embedded
    assert re.search(r"Catalogue: 128 (of 300 )?items indexed so far", again.console())
    status = await eventually(lambda: catalogue(http, again.url), lambda c: not c["adding"] and c["state"] == "done")
    assert (status["ready"], status["expected"], status["text"]) == (LIMIT, None, "Catalogue: 300 items")
    await eventually(lambda: asyncio.sleep(0.05), lambda _: "Catalogue complete" in again.console(), timeout=10)
    assert "Catalogue complete: 300 items (172 added in" in again.console()
    code, body, _ = await send_photo(http, again.url, sneaker)
    assert code == 200 and len(body["items"]) == 10
    await again.stop()


async def test_a_failed_ingest_is_logged_and_the_chat_goes_on(demo, http, photo_of, caplog) -> None:
    caplog.set_level(logging.ERROR, logger="bot.demo")
    running = await demo.start()
    demo.gate.let(1)
    await eventually(lambda: catalogue(http, running.url), lambda c: c["ready"] == 128)
    demo.gate.failure = OSError(28, "No space left on device")
    demo.gate.let(1)
    status = await eventually(lambda: catalogue(http, running.url), lambda c: c["state"] == "failed")
    assert (status["ready"], status["adding"]) == (128, False)
    assert status["text"] == "Catalogue: 128 items — adding more stopped (see the log)"
    await eventually(lambda: asyncio.sleep(0.05), lambda _: "stopped" in running.console(), timeout=10)
    assert "Adding the demo catalogue stopped: OSError: [Errno 28] No space left on device" in running.console()
    assert "The chat goes on with the 128 items indexed" in running.console()
    failed = [r for r in caplog.records if r.name == "bot.demo" and r.levelno == logging.ERROR]
    assert failed and failed[0].exc_info is not None  # the traceback is in the log
    assert not running.task.done()  # the web chat is still serving
    code, body, _ = await send_photo(http, running.url, photo_of("Trouser"))
    assert code == 200 and len(body["items"]) == 10
    await running.stop()


# ---- the page itself, in a real Chromium ----------------------------------------------------
async def test_the_page_shows_the_catalogue_filling_and_stops_asking(
    demo, browser, photo_of, tmp_path: Path, monkeypatch
) -> None:
    polls = 0
    answer = routes.catalogue

    async def counted(request: Any) -> Any:  # the status endpoint, counting the page's polls
        nonlocal polls
        polls += 1
        return await answer(request)

    monkeypatch.setattr(routes, "catalogue", counted)  # add_routes reads it when the app is built
    photo = tmp_path / "sneaker.jpg"
    photo.write_bytes(photo_of("Sneaker"))
    running = await demo.start()
    line = "document.getElementById('catalogue-text').textContent"
    await browser.reset(running.url)
    await browser.get(running.url + "/")
    await browser.wait_js("document.body.classList.contains('ready')")
    await browser.wait_js(f"!document.getElementById('catalogue-status').hidden && {line}.startsWith('Catalogue: 0')")
    await browser.upload(photo)  # nothing indexed yet: a calm answer, not an error
    await browser.wait_js(
        "[...document.querySelectorAll('.bubble.info .text')].some(t => t.textContent === arguments[0])",
        20,
        FILLING,
    )
    assert await browser.count(".bubble.error") == 0

    demo.gate.let(1)
    await browser.wait_js(f"{line} === 'Catalogue: 128 of 300 items ready — still adding'")
    bar = await browser.js("const p = document.getElementById('catalogue-progress'); return [p.value, p.max, p.hidden]")
    assert bar == [128, 300, False]
    await browser.upload(photo)
    await browser.wait_js("document.querySelectorAll('.msg.bot.wide .card').length >= 10")

    demo.gate.open()
    await browser.wait_js(f"{line} === 'Catalogue: 300 items'", 60)
    assert await browser.js("return document.getElementById('catalogue-progress').hidden") is True
    after_done = polls
    await asyncio.sleep(3.5)  # more than two poll intervals: a done catalogue is not asked again
    assert polls == after_done
    errors = [
        entry
        for entry in await browser.console()
        if entry.get("level") == "SEVERE" and "status of 409" not in entry.get("message", "")
    ]
    assert not errors, errors
    await running.stop()


# ---- the pieces under the demo --------------------------------------------------------------
async def test_photos_get_between_the_model_batches_of_an_ingest(service) -> None:
    """The embedder's queue is first come, first served: with whole chunks a photo waits
    behind 128 pictures; the service's ingest hands the model a batch at a time."""
    from engine.catalogue.ingest import interleaved_embed, model_embed

    encoder = service.encoder
    size = encoder.input_size
    chunk = np.random.default_rng(0).integers(0, 255, (128, size, size, 3), dtype=np.uint8)
    results, seconds = {}, {}
    for name, embed, photo_first in (
        ("whole chunk", model_embed(encoder), False),
        ("interleaved", interleaved_embed(encoder), True),
    ):
        started = time.perf_counter()
        ingest = asyncio.ensure_future(embed(chunk))
        await asyncio.sleep(0.01)  # the chunk is on the model
        photo = asyncio.ensure_future(encoder.embed(chunk[:1]))
        done, _ = await asyncio.wait({ingest, photo}, return_when=asyncio.FIRST_COMPLETED)
        assert (photo in done) == photo_first, name
        results[name] = await ingest
        seconds[name] = time.perf_counter() - started
        await photo
    # the same vectors either way (batches of other sizes may move bf16 in the last digits)
    cosines = np.sum(results["whole chunk"] * results["interleaved"], axis=1)
    assert results["interleaved"].shape == (128, service.backbone.dim) and cosines.min() > 0.999

    # Cancelled (Ctrl-C, a failed stage): the batches not started are dropped, not run, so
    # a photo right after waits for one batch, not for the rest of the chunk.
    ingest = asyncio.ensure_future(interleaved_embed(encoder)(chunk))
    await asyncio.sleep(0.01)
    ingest.cancel()
    await asyncio.gather(ingest, return_exceptions=True)
    started = time.perf_counter()
    await encoder.embed(chunk[:1])
    assert time.perf_counter() - started < seconds["whole chunk"] / 3, seconds


async def test_the_status_endpoint_of_a_chat_without_an_ingest(service) -> None:
    """``fashionbot web`` / ``run``: nothing is being added, and the page is told so once."""
    from aiohttp.test_utils import TestClient, TestServer

    from bot.web import build_web_app

    client = TestClient(TestServer(build_web_app(service, service.settings), host="127.0.0.1"))
    await client.start_server()
    try:
        r = await client.get("/api/catalogue")
        assert r.status == 200 and r.headers["Cache-Control"] == "no-store"
        assert await r.json() == {
            "ready": 2000,
            "expected": None,
            "adding": False,
            "state": None,
            "text": "Catalogue: 2,000 items",
        }
    finally:
        await client.close()
