"""The web chat end to end: a real headless Chromium (Debian's) driving the real page,
served by the real aiohttp app over a real FashionService and SQLite database."""
from __future__ import annotations

import asyncio
import dataclasses
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from sqlalchemy import func, select

from tests.support import browser as chromium
from tests.support.fakes.proxy import Proxy
from bot import render
from bot.web import TREND_UNAVAILABLE, start_web
from db.models import FeedbackRow, PhotoRow, RecommendationRow, UserRow
from engine.types import ScoredItem, StyleCluster, TrendProgress, UserRef


ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
XSS = "<img src=x onerror=alert(1)>"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def browser():
    problem = chromium.missing()
    if problem:  # an install step is missing: fail loudly, never skip
        pytest.fail(f"browser tests need {problem}; run scripts/install.sh")
    b = await chromium.Browser.launch(1280, 900)
    yield b
    await b.close()


@pytest_asyncio.fixture
async def open_chat(service, browser, tmp_path):
    """open_chat(svc=None) → the chat's origin, loaded in the browser as a fresh visitor."""
    servers = []

    async def open_(svc=None) -> str:
        server = await start_web(svc or service, service.settings, port=0)
        servers.append(server)
        origin = server.url.rstrip("/")
        await browser.viewport(1280, 900)
        await browser.reset(origin)
        await browser.get(origin + "/")
        await browser.wait_js("document.body.classList.contains('ready')")
        return origin

    yield open_
    # Any script error, CSP violation or failed load fails the test, except the API's own
    # 4xx answers that a test provoked on purpose (the page shows those as messages).
    errors = [
        line for line in await browser.console()
        if line.get("level") == "SEVERE" and not ("/api/" in line.get("message", "") and re.search(r"status of (4\d\d|501)", line.get("message", "")))
    ]
    for server in servers:
        await server.close()
    assert not errors, f"browser console errors: {errors}"


@pytest.fixture
def photo_file(photo_of, tmp_path):
    def make(category: str = "Sneaker", nth: int = 0) -> Path:
        path = tmp_path / f"{category}-{nth}.jpg"
        path.write_bytes(photo_of(category, nth))
        return path

    return make


async def upload_and_wait(browser, path: Path, expected: int = 10) -> None:
    before = await browser.count(".msg.bot.wide .card")
    await browser.upload(path)
    await browser.wait_js(f"document.querySelectorAll('.msg.bot.wide .card').length >= {before + expected}")
    await browser.wait_js("[...document.querySelectorAll('.card img')].every(i => i.complete && i.naturalWidth > 0)")


async def visitor(browser, service) -> tuple[str, int | None]:
    uid = (await browser.cookies())["fb_uid"]["value"]
    return uid, await service.store.user_id("web", uid, create=False)


async def rows(service, model, user_id: int) -> int:
    async with service.store.session() as s:
        return (await s.execute(select(func.count(model.id)).where(model.user_id == user_id))).scalar_one()



async def no_trend(tag: str, user: UserRef | None = None) -> AsyncIterator[TrendProgress]:
    """An engine that can't search shops (its trend raises NotImplementedError)."""
    raise NotImplementedError
    yield TrendProgress(tag=tag)  # an async generator, like the real one


# ---- scenarios --------------------------------------------------------------------------------------
async def test_photo_gives_ten_cards_with_links(service, browser, open_chat, photo_file):
    origin = await open_chat()
    await upload_and_wait(browser, photo_file("Sneaker"))
    cards = await browser.js(
        """return [...document.querySelectorAll('.msg.bot.wide .card')].map(c => ({
            id: Number(c.dataset.itemId),
            title: c.querySelector('.card-title').textContent,
            alt: c.querySelector('img').alt,
            img: c.querySelector('img').getAttribute('src'),
            loaded: c.querySelector('img').naturalWidth > 0,
            price: c.querySelector('.price').textContent,
            sim: c.querySelector('.sim-label').textContent,
            bar: c.querySelector('.sim-fill').style.width,
            href: c.querySelector('a.shop-link').getAttribute('href'),
            target: c.querySelector('a.shop-link').target,
            rank: c.querySelector('.rank').textContent,
        }))"""
    )
    assert len(cards) == 10
    assert [c["rank"] for c in cards] == [str(n) for n in range(1, 11)]
    for c in cards:
        assert c["alt"] == c["title"] and c["title"]
        assert c["img"] == f"/items/{c['id']}/image" and c["loaded"]
        assert c["href"] == f"/items/{c['id']}" and c["target"] == "_blank"
        assert c["price"].startswith("€")
        assert c["sim"].endswith("% similar") and c["bar"].endswith("%")

    # What the page shows is what the engine recommended to this visitor.
    _, user_id = await visitor(browser, service)
    assert user_id is not None
    async with service.store.session() as s:
        stored = (await s.execute(
            select(RecommendationRow.item_id).where(RecommendationRow.user_id == user_id).order_by(RecommendationRow.rank)
        )).scalars().all()
    assert stored == [c["id"] for c in cards]
    assert "Sneaker" in cards[0]["title"]

    # The item page the link points to.
    await browser.get(origin + cards[0]["href"])
    assert await browser.text("h1.item-title") == cards[0]["title"]
    await browser.wait_js("document.querySelector('.item-figure img').naturalWidth > 0")

    # Screenshots: desktop (whole page) and a phone-sized screen.
    await browser.get(origin + "/")  # the history comes back from sessionStorage
    await browser.wait_js("document.querySelectorAll('.card').length == 10")
    await browser.wait_js("[...document.querySelectorAll('.card img')].every(i => i.complete && i.naturalWidth > 0)")
    await browser.js("window.scrollTo(0, 0)")
    await browser.screenshot(ARTIFACTS / "web-results.png", full_page=True)
    await browser.viewport(390, 844, mobile=True)
    await browser.js("document.querySelector('.msg.bot.wide').scrollIntoView({block: 'start'})")
    await asyncio.sleep(0.3)
    assert await browser.js("return document.documentElement.scrollWidth <= window.innerWidth"), "sideways scroll on a phone"
    columns = await browser.js(
        "return getComputedStyle(document.querySelector('.cards')).gridTemplateColumns.split(' ').length"
    )
    assert columns == 2
    overflowing = await browser.js(
        """return [...document.querySelectorAll('.card')].flatMap(card => {
            const edge = card.getBoundingClientRect().right + 0.5;
            return [...card.querySelectorAll('button, a')]
                .filter(e => e.getBoundingClientRect().right > edge || e.scrollWidth > e.clientWidth + 1)
                .map(e => e.className);
        })"""
    )
    assert overflowing == [], "controls stick out of their cards, or are clipped, on a phone"
    await browser.screenshot(ARTIFACTS / "web-results-phone.png")


async def test_like_and_dislike_are_stored(service, browser, open_chat, photo_file):
    await open_chat()
    await upload_and_wait(browser, photo_file("Trouser"))
    item_id = await browser.js("return Number(document.querySelector('.card').dataset.itemId)")
    await browser.click(".card .rate.like")
    await browser.wait_js("document.querySelector('.card .rate.like').getAttribute('aria-pressed') === 'true'")
    await browser.wait_js("document.getElementById('toast').textContent === arguments[0]", 10, render.FEEDBACK_THANKS[1])
    _, user_id = await visitor(browser, service)
    assert await service.store.feedback(user_id) == {item_id: 1}

    await browser.click(".card .rate.dislike")
    await browser.wait_js("document.querySelector('.card .rate.dislike').getAttribute('aria-pressed') === 'true'")
    assert await browser.js("return document.querySelector('.card .rate.like').getAttribute('aria-pressed')") == "false"
    assert await service.store.feedback(user_id) == {item_id: -1}

    # The rating survives a reload (chat history in sessionStorage).
    await browser.js("location.reload()")
    await browser.wait_js("document.body.classList.contains('ready') && document.querySelectorAll('.card').length == 10")
    assert await browser.js("return document.querySelector('.card .rate.dislike').getAttribute('aria-pressed')") == "true"


async def test_keyboard_alone(service, browser, open_chat, photo_file):
    """Skip link first, then Tab to the first 👍 and press Enter; /style typed and sent with Enter."""
    await open_chat()
    await upload_and_wait(browser, photo_file("Bag"))
    await browser.js("location.reload()")  # start from the top of the page, nothing focused
    await browser.wait_js("document.body.classList.contains('ready') && document.querySelectorAll('.card').length == 10")
    await browser.keys(chromium.TAB)  # Tab
    assert await browser.js("return document.activeElement.className") == "skip-link"
    for _ in range(20):
        if await browser.js("return document.activeElement.matches('button.rate.like')"):
            break
        await browser.keys(chromium.TAB)
    else:
        pytest.fail("Tab never reached a 👍 button")
    label = await browser.js("return document.activeElement.getAttribute('aria-label')")
    assert label.startswith("Like “")
    await browser.keys(chromium.ENTER)  # Enter
    await browser.wait_js("document.activeElement.getAttribute('aria-pressed') === 'true'")
    _, user_id = await visitor(browser, service)
    assert list((await service.store.feedback(user_id)).values()) == [1]

    await browser.js("document.getElementById('composer-text').focus()")
    await browser.keys("/style", chromium.ENTER)
    await browser.wait_js("document.querySelector('.msg.bot.wide:last-child h2')?.textContent === 'Your style'")


async def test_style_cold_start(service, browser, open_chat, photo_file):
    await open_chat()
    await browser.click("#btn-style")
    await browser.wait_js("document.querySelectorAll('.msg.bot.wide .card').length == 10")
    head = await browser.text(".msg.bot.wide .panel-head p")
    assert head == "I need 3 more photos to work out your style (I have 0). Meanwhile, here is what's popular:"
    assert await browser.count(".msg.bot.wide img.collage") == 0
    assert await browser.count(".msg.bot.wide .sim") == 0  # popular items have no similarity to show

    await upload_and_wait(browser, photo_file("Dress"))
    await browser.click("#btn-style")
    await browser.wait_js("document.querySelectorAll('.msg.bot.wide').length == 3")
    assert (await browser.js("return [...document.querySelectorAll('.msg.bot.wide .panel-head p')].pop().textContent")
            ).startswith("I need 2 more photos to work out your style (I have 1).")


async def test_style_with_a_collage(service, browser, open_chat, photo_of):
    collage = photo_of("Coat")

    async def style(user: UserRef):
        base = await service.style(user)
        picks = await service.popular(4)
        cluster = StyleCluster(name="dark coats", share=0.75, size=3, items=[dataclasses.replace(p, score=0.9) for p in picks])
        return dataclasses.replace(base, needed=0, clusters=[cluster], collage_jpeg=collage)

    await open_chat(Proxy(service, style=style))
    await browser.click("#btn-style")
    await browser.wait_js("document.querySelector('img.collage')?.naturalWidth > 0")
    assert await browser.js("return document.querySelector('img.collage').alt") != ""
    assert await browser.text(".clusters .cluster-name") == "★ dark coats"
    assert await browser.text(".clusters .cluster-share") == "75% of your photos"
    assert await browser.count(".msg.bot.wide .card") == 4


async def test_forget_with_confirmation(service, browser, open_chat, photo_file):
    await open_chat()
    await upload_and_wait(browser, photo_file("Shirt"))
    await browser.click(".card .rate.like")
    await browser.wait_js("document.querySelector('.card .rate.like').getAttribute('aria-pressed') === 'true'")
    uid, user_id = await visitor(browser, service)
    assert await rows(service, PhotoRow, user_id) == 1 and await rows(service, FeedbackRow, user_id) == 1

    # Keyboard: type /forget, Enter; the dialog opens on "Keep my data"; cancel first.
    await browser.js("document.getElementById('composer-text').focus()")
    await browser.keys("/forget", chromium.ENTER)
    await browser.wait_js("document.getElementById('forget-dialog').open")
    assert await browser.js("return document.activeElement.id") == "forget-cancel"
    await browser.keys(chromium.ENTER)
    await browser.wait_js("!document.getElementById('forget-dialog').open")
    assert await service.store.user_id("web", uid, create=False) == user_id  # nothing deleted

    await browser.click("#btn-forget")
    await browser.wait_js("document.getElementById('forget-dialog').open")
    await browser.keys(chromium.TAB, chromium.ENTER)  # Tab to "Delete everything", Enter
    await browser.wait_js("[...document.querySelectorAll('.msg.bot .text')].some(t => t.textContent.startsWith('Done:'))")
    done = await browser.js("return [...document.querySelectorAll('.msg.bot .text')].pop().textContent")
    assert done == render.forgotten({"photos": 1, "feedback": 1, "recommendations": 10})
    assert await service.store.user_id("web", uid, create=False) is None
    async with service.store.session() as s:
        for model in (PhotoRow, FeedbackRow, RecommendationRow):
            assert (await s.execute(select(func.count(model.id)).where(model.user_id == user_id))).scalar_one() == 0
        assert (await s.execute(select(func.count(UserRow.id)).where(UserRow.id == user_id))).scalar_one() == 0
    assert await browser.count(".card") == 0  # the page forgot too
    assert (await browser.cookies())["fb_uid"]["value"] != uid


async def test_hostile_title_stays_text(service, browser, open_chat, photo_of, tmp_path):
    photo = photo_of("Ankle boot", 2)
    item_id = await chromium.add_item(service, XSS, photo, url="javascript:alert(2)")
    path = tmp_path / "boot.jpg"
    path.write_bytes(photo)
    origin = await open_chat()
    await upload_and_wait(browser, path)
    card = f".card[data-item-id='{item_id}']"
    assert await browser.count(card) == 1
    assert await browser.text(f"{card} .card-title") == XSS
    assert await browser.js(f"return document.querySelector(\"{card} img\").alt") == XSS
    assert await browser.js(f"return document.querySelector(\"{card} a.shop-link\").getAttribute('href')") == f"/items/{item_id}"
    assert await browser.count("img[src='x']") == 0
    assert XSS in await browser.js("return document.body.innerText")
    assert await browser.alert_text() is None

    await browser.get(f"{origin}/items/{item_id}")
    assert await browser.text("h1.item-title") == XSS
    assert await browser.count("img[src='x']") == 0
    assert await browser.alert_text() is None


async def test_trend_not_available_yet(service, browser, open_chat):
    await open_chat(Proxy(service, trend=no_trend))
    await browser.click("#btn-trend")
    await browser.wait_js("document.getElementById('trend-dialog').open")
    await browser.keys("dress", chromium.ENTER)
    await browser.wait_js("[...document.querySelectorAll('.msg.bot .text')].some(t => t.textContent === arguments[0])",
                          10, TREND_UNAVAILABLE)


async def test_trend_progress_is_live(service, browser, open_chat):
    step = asyncio.Event()
    best = await service.popular(3)

    async def trend(tag: str, user: UserRef) -> AsyncIterator[TrendProgress]:
        yield TrendProgress(tag=tag, shops_total=2)
        yield TrendProgress(tag=tag, shops_searched=1, shops_total=2, found=4, indexed=2)
        await step.wait()  # the page must show the first shop before the second is done
        yield TrendProgress(tag=tag, shops_searched=2, shops_total=2, found=7, indexed=3, skipped=4, done=True,
                            best=[dataclasses.replace(b, score=0.8) for b in best])

    await open_chat(Proxy(service, trend=trend))
    await browser.js("document.getElementById('composer-text').focus()")
    await browser.keys("/trend linen dress", chromium.ENTER)
    await browser.wait_js("document.querySelector('.progress-label')?.textContent === 'Shops searched: 1/2'")
    assert await browser.js("return document.querySelector('.msg.bot.wide h2').textContent") == "Trend “linen dress”: searching…"
    assert await browser.count(".msg.bot.wide .card") == 0
    step.set()
    await browser.wait_js("document.querySelector('.msg.bot.wide h2').textContent === 'Trend “linen dress”: done'")
    assert await browser.count(".msg.bot.wide .card") == 3
    counts = await browser.js("return [...document.querySelectorAll('.counts dd')].map(d => d.textContent)")
    assert counts == ["7", "3", "4"]


async def test_trend_on_the_demo_shop_indexes_new_items(service, browser, open_chat, tmp_path):
    """The real trend: the real scraper against the offline demo shop on 127.0.0.1."""
    from scraper.demo_shop import demo_allow_entry, start_demo_shop, write_demo_shops_toml

    url, runner = await start_demo_shop()
    settings = service.settings
    settings.shops_file = write_demo_shops_toml(tmp_path / "shops.toml", url)
    settings.scraper_allow_hosts = [demo_allow_entry(url)]
    settings.scraper_min_delay = 0.0
    before = len(service.catalogue.index)
    try:
        await open_chat()
        await browser.js("document.getElementById('composer-text').focus()")
        await browser.keys("/trend dress", chromium.ENTER)
        await browser.wait_js("document.querySelector('.msg.bot.wide h2')?.textContent === 'Trend “dress”: done'", 60)
        cards = await browser.js("return [...document.querySelectorAll('.msg.bot.wide .card h3')].map(h => h.textContent)")
    finally:
        await runner.cleanup()
    assert cards and all("Dress" in title for title in cards), cards
    assert len(service.catalogue.index) == before + 3  # the demo shop sells three dresses
    counts = await browser.js("return [...document.querySelectorAll('.counts dd')].map(d => d.textContent)")
    assert counts[:2] == ["3", "3"], counts


async def test_bad_file_gets_a_friendly_reply(browser, open_chat, tmp_path):
    await open_chat()
    path = tmp_path / "notes.jpg"
    path.write_text("definitely not a photo")
    await browser.upload(path)
    await browser.wait_js("document.querySelector('.bubble.error .text')")
    assert await browser.text(".bubble.error .text") == (
        "That doesn't look like an image I can read. Please send a JPEG or PNG photo."
    )


async def test_paste_and_drop_a_photo(browser, open_chat):
    """A pasted picture and a dropped file take the same road as a picked one."""
    await open_chat()
    make_file = """
        const bytes = await (await fetch('/items/7/image')).blob();
        const dt = new DataTransfer();
        dt.items.add(new File([bytes], 'clip.png', {type: 'image/png'}));
        return dt;
    """
    await browser.js(f"(async () => {{ const dt = await (async () => {{ {make_file} }})();"
                     " document.dispatchEvent(new ClipboardEvent('paste', {clipboardData: dt, bubbles: true})); })()")
    await browser.wait_js("document.querySelectorAll('.msg.bot.wide .card').length == 10")
    assert await browser.count(".msg.user .bubble.photo img") == 1
    await browser.js(f"(async () => {{ const dt = await (async () => {{ {make_file} }})();"
                     " for (const type of ['dragenter', 'dragover', 'drop'])"
                     "   document.body.dispatchEvent(new DragEvent(type, {dataTransfer: dt, bubbles: true, cancelable: true})); })()")
    await browser.wait_js("document.querySelectorAll('.msg.bot.wide .card').length == 20")
    assert await browser.js("return document.getElementById('drop-overlay').hidden")
    first = await browser.js("return [...document.querySelectorAll('.msg.bot.wide')].map(m => m.querySelector('.card').dataset.itemId)")
    assert first == ["7", "7"]  # the catalogue's own picture finds itself first
