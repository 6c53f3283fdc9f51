"""The web chat end to end: a real headless Chromium (Debian's) driving the real page,
served by the real aiohttp app over a real FashionService and SQLite database.

What the garment finder sees is pinned for most scenarios (``tests/support/browser.py``:
every photo a product shot, or fixed garments in an outfit), so that they test the page
and not the finder's calibration; the no-clothing scenario runs the real finder."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import pytest_asyncio
from sqlalchemy import func, select

from bot import render
from bot.web import TREND_UNAVAILABLE, start_web
from db.models import FeedbackRow, PhotoRow, RecommendationRow, UserRow
from engine.types import StyleCluster, TrendProgress, UserRef
from tests.support import browser as chromium
from tests.support.fakes.proxy import Proxy

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
XSS = "<img src=x onerror=alert(1)>"


@pytest_asyncio.fixture
async def open_chat(service, browser, tmp_path):
    """open_chat(svc=None) → the chat's origin, loaded in the browser as a fresh visitor."""
    servers = []

    real_finder = service.finder

    async def open_(svc=None, finder="product shots") -> str:
        """``finder``: "product shots" (every photo one), "real", or a finder object."""
        service.finder = (
            chromium.ProductShots() if finder == "product shots" else real_finder if finder == "real" else finder
        )
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
        line
        for line in await browser.console()
        if line.get("level") == "SEVERE"
        and not ("/api/" in line.get("message", "") and re.search(r"status of (4\d\d|501)", line.get("message", "")))
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


async def chips(browser) -> list[tuple[str, bool]]:
    """The garment chips of the last answer: (text, pressed)."""
    return [
        tuple(c)
        for c in await browser.js(
            """const m = [...document.querySelectorAll('.msg.bot.wide')].pop();
           return [...m.querySelectorAll('.gchip')].map(c => [c.textContent, c.getAttribute('aria-pressed') === 'true'])"""
        )
    ]


async def card_ids(browser) -> list[int]:
    return await browser.js(
        "return [...[...document.querySelectorAll('.msg.bot.wide')].pop().querySelectorAll('.card')].map(c => Number(c.dataset.itemId))"
    )


async def showing(browser) -> str | None:
    return await browser.js(
        "const h = [...document.querySelectorAll('.msg.bot.wide .showing')].pop(); return h ? h.textContent : null"
    )


async def last_results(browser) -> dict:
    """The last results message as the page keeps it (sessionStorage)."""
    return await browser.js(
        "return JSON.parse(sessionStorage.getItem('fashionbot.chat.v1')).messages.filter(m => m.kind === 'results').pop()"
    )


async def drawn_boxes(browser) -> list[dict]:
    """Each box on the photo, where it is drawn relative to the photo as displayed."""
    return await browser.js(
        """const img = [...document.querySelectorAll('.stage-photo')].pop(), r = img.getBoundingClientRect();
           return [...img.parentElement.querySelectorAll('.gbox')].map(b => {
             const q = b.getBoundingClientRect();
             return {key: b.dataset.key, label: b.getAttribute('aria-label'), current: b.classList.contains('current'),
                     x0: (q.left - r.left) / r.width, y0: (q.top - r.top) / r.height,
                     x1: (q.right - r.left) / r.width, y1: (q.bottom - r.top) / r.height, w: r.width, h: r.height};
           })"""
    )


def fmnist_index(fmnist_test, category: str, nth: int = 0) -> np.ndarray:
    from engine.catalogue.ingest import FASHION_MNIST_CLASSES

    images, labels = fmnist_test
    return images[np.flatnonzero(labels == FASHION_MNIST_CLASSES.index(category))[nth]]


@pytest.fixture
def outfit(fmnist_test, tmp_path):
    """A pullover above sneakers in one photo, and a finder that sees exactly those two."""
    jpeg, (top, shoes) = chromium.outfit_photo(
        fmnist_index(fmnist_test, "Pullover"), fmnist_index(fmnist_test, "Sneaker")
    )
    path = tmp_path / "outfit.jpg"
    path.write_bytes(jpeg)
    finder = chromium.FixedGarments([("top", "pullover", top, 0.91), ("shoes", "sneaker", shoes, 0.84)])
    return path, finder, (top, shoes)


TOPS = {"T-shirt/top", "Pullover", "Shirt", "Coat"}
SHOES = {"Sneaker", "Sandal", "Ankle boot"}


async def categories(service, ids: list[int]) -> list[str]:
    return [(await service.item(i)).category for i in ids]


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
    # A product shot: one numbered box over the garment, its chip, and "Whole photo".
    assert await browser.js(
        "return [...document.querySelectorAll('.gbox')].map(b => b.getAttribute('aria-label'))"
    ) == ["Garment 1: item"]
    assert await chips(browser) == [("1 · item", True), ("Whole photo", False)]
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
        stored = (
            (
                await s.execute(
                    select(RecommendationRow.item_id)
                    .where(RecommendationRow.user_id == user_id)
                    .order_by(RecommendationRow.rank)
                )
            )
            .scalars()
            .all()
        )
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
    assert await browser.js("return document.documentElement.scrollWidth <= window.innerWidth"), (
        "sideways scroll on a phone"
    )
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


async def test_cards_link_to_the_item_in_the_telegram_bot(service, browser, open_chat, photo_file, monkeypatch):
    """Issue 18: with the bot's name set, every card also opens its item in the Telegram bot
    (the deep link its /start answers), and the extra link still fits a phone-sized card."""
    from bot.telegram.handlers import deep_link

    monkeypatch.setattr(service.settings, "telegram_bot_username", "fashion_test_bot")
    await open_chat()
    await browser.viewport(390, 844, mobile=True)
    await upload_and_wait(browser, photo_file("Sneaker"))
    links = await browser.js(
        """return [...document.querySelectorAll('.msg.bot.wide .card')].map(c => [
            Number(c.dataset.itemId), c.querySelector('a.tg-link') && c.querySelector('a.tg-link').href])"""
    )
    assert len(links) == 10 and all(href == deep_link("fashion_test_bot", item_id) for item_id, href in links)
    overflowing = await browser.js(
        """return [...document.querySelectorAll('.card a.tg-link')].filter(e =>
            e.getBoundingClientRect().right > e.closest('.card').getBoundingClientRect().right + 0.5).length"""
    )
    assert overflowing == 0


async def test_like_and_dislike_are_stored(service, browser, open_chat, photo_file):
    await open_chat()
    await upload_and_wait(browser, photo_file("Trouser"))
    item_id = await browser.js("return Number(document.querySelector('.card').dataset.itemId)")
    await browser.click(".card .rate.like")
    await browser.wait_js("document.querySelector('.card .rate.like').getAttribute('aria-pressed') === 'true'")
    await browser.wait_js(
        "document.getElementById('toast').textContent === arguments[0]", 10, render.FEEDBACK_THANKS[1]
    )
    _, user_id = await visitor(browser, service)
    assert await service.store.feedback(user_id) == {item_id: 1}

    await browser.click(".card .rate.dislike")
    await browser.wait_js("document.querySelector('.card .rate.dislike').getAttribute('aria-pressed') === 'true'")
    assert await browser.js("return document.querySelector('.card .rate.like').getAttribute('aria-pressed')") == "false"
    assert await service.store.feedback(user_id) == {item_id: -1}

    # The rating survives a reload (chat history in sessionStorage).
    await browser.js("location.reload()")
    await browser.wait_js(
        "document.body.classList.contains('ready') && document.querySelectorAll('.card').length == 10"
    )
    assert (
        await browser.js("return document.querySelector('.card .rate.dislike').getAttribute('aria-pressed')") == "true"
    )


async def test_keyboard_alone(service, browser, open_chat, photo_file):
    """Skip link first, then Tab to the first 👍 and press Enter; /style typed and sent with Enter."""
    await open_chat()
    await upload_and_wait(browser, photo_file("Bag"))
    await browser.js("location.reload()")  # start from the top of the page, nothing focused
    await browser.wait_js(
        "document.body.classList.contains('ready') && document.querySelectorAll('.card').length == 10"
    )
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
    assert (
        await browser.js("return [...document.querySelectorAll('.msg.bot.wide .panel-head p')].pop().textContent")
    ).startswith("I need 2 more photos to work out your style (I have 1).")


async def test_style_with_a_collage(service, browser, open_chat, photo_of):
    collage = photo_of("Coat")

    async def style(user: UserRef):
        base = await service.style(user)
        picks = await service.popular(4)
        cluster = StyleCluster(
            name="dark coats", share=0.75, size=3, items=[dataclasses.replace(p, score=0.9) for p in picks]
        )
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
    await browser.wait_js(
        "[...document.querySelectorAll('.msg.bot .text')].some(t => t.textContent.startsWith('Done:'))"
    )
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
    assert await browser.js(f'return document.querySelector("{card} img").alt') == XSS
    assert (
        await browser.js(f"return document.querySelector(\"{card} a.shop-link\").getAttribute('href')")
        == f"/items/{item_id}"
    )
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
    await browser.wait_js(
        "[...document.querySelectorAll('.msg.bot .text')].some(t => t.textContent === arguments[0])",
        10,
        TREND_UNAVAILABLE,
    )


async def test_trend_progress_is_live(service, browser, open_chat):
    step = asyncio.Event()
    best = await service.popular(3)

    async def trend(tag: str, user: UserRef) -> AsyncIterator[TrendProgress]:
        yield TrendProgress(tag=tag, shops_total=2)
        yield TrendProgress(tag=tag, shops_searched=1, shops_total=2, found=4, indexed=2)
        await step.wait()  # the page must show the first shop before the second is done
        yield TrendProgress(
            tag=tag,
            shops_searched=2,
            shops_total=2,
            found=7,
            indexed=3,
            skipped=4,
            done=True,
            best=[dataclasses.replace(b, score=0.8) for b in best],
        )

    await open_chat(Proxy(service, trend=trend))
    await browser.js("document.getElementById('composer-text').focus()")
    await browser.keys("/trend linen dress", chromium.ENTER)
    await browser.wait_js("document.querySelector('.progress-label')?.textContent === 'Shops searched: 1/2'")
    assert (
        await browser.js("return document.querySelector('.msg.bot.wide h2').textContent")
        == "Trend “linen dress”: searching…"
    )
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
        cards = await browser.js(
            "return [...document.querySelectorAll('.msg.bot.wide .card h3')].map(h => h.textContent)"
        )
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
    await browser.js(
        f"(async () => {{ const dt = await (async () => {{ {make_file} }})();"
        " document.dispatchEvent(new ClipboardEvent('paste', {clipboardData: dt, bubbles: true})); })()"
    )
    await browser.wait_js("document.querySelectorAll('.msg.bot.wide .card').length == 10")
    assert await browser.count(".msg.user .bubble.photo img") == 1
    await browser.js(
        f"(async () => {{ const dt = await (async () => {{ {make_file} }})();"
        " for (const type of ['dragenter', 'dragover', 'drop'])"
        "   document.body.dispatchEvent(new DragEvent(type, {dataTransfer: dt, bubbles: true, cancelable: true})); })()"
    )
    await browser.wait_js("document.querySelectorAll('.msg.bot.wide .card').length == 20")
    assert await browser.js("return document.getElementById('drop-overlay').hidden")
    first = await browser.js(
        "return [...document.querySelectorAll('.msg.bot.wide')].map(m => m.querySelector('.card').dataset.itemId)"
    )
    assert first == ["7", "7"]  # the catalogue's own picture finds itself first


# ---- garments: numbered boxes, switching, refusal, a box of one's own ---------------------------------
async def test_garments_are_boxed_and_switched(service, browser, open_chat, outfit):
    path, finder, true_boxes = outfit
    await open_chat(finder=finder)
    await upload_and_wait(browser, path)
    await browser.wait_js("document.querySelector('.stage-photo')?.naturalWidth > 0")
    assert await browser.text(".msg.bot.wide h2") == "I see a pullover and a sneaker."
    assert await showing(browser) == "Matches for the pullover (1 of 2):"

    # The boxes sit where the garments are: the relative boxes × the photo as displayed.
    boxes = await drawn_boxes(browser)
    assert [b["label"] for b in boxes] == ["Garment 1: pullover", "Garment 2: sneaker"]
    assert [b["current"] for b in boxes] == [True, False]
    for drawn, true in zip(boxes, true_boxes):
        assert drawn["w"] > 200 and drawn["h"] > 260  # a photo one can point at, not a thumbnail
        for got, want in zip((drawn["x0"], drawn["y0"], drawn["x1"], drawn["y1"]), true):
            assert abs(got - want) * max(drawn["w"], drawn["h"]) < 1.5, (drawn, true)
    numbers = await browser.js("return [...document.querySelectorAll('.gbox .gbox-num')].map(n => n.textContent)")
    assert numbers == ["1", "2"]
    assert await chips(browser) == [("1 · pullover", True), ("2 · sneaker", False), ("Whole photo", False)]

    # The cards are garment 1's: what the service answers for that garment, tops only.
    uid, _ = await visitor(browser, service)
    user = UserRef("web", uid)
    request_id = (await last_results(browser))["request_id"]
    first = await card_ids(browser)
    assert first == [s.item.id for s in (await service.switch(user, request_id, 1)).items]
    assert set(await categories(service, first)) <= TOPS

    # Box 2 (a real click on the photo) → the sneaker's items; the focus stays on the box.
    await browser.click(".gbox[data-key='g2']")
    await browser.wait_js(
        "document.querySelector('.msg.bot.wide .showing')?.textContent === 'Matches for the sneaker (2 of 2):'"
    )
    second = await card_ids(browser)
    assert len(second) == 10 and second == [s.item.id for s in (await service.switch(user, request_id, 2)).items]
    assert set(await categories(service, second)) <= SHOES
    assert [b["current"] for b in await drawn_boxes(browser)] == [False, True]
    assert await chips(browser) == [("1 · pullover", False), ("2 · sneaker", True), ("Whole photo", False)]
    assert await browser.js("return document.activeElement.dataset.focus") == "box:g2"
    await browser.screenshot(ARTIFACTS / "web-garments.png", full_page=True)

    # "Whole photo" chip → the whole photo's items.
    await browser.click(".gchip[data-key='whole']")
    await browser.wait_js(
        "document.querySelector('.msg.bot.wide .showing')?.textContent === 'Matches for the whole photo:'"
    )
    assert await card_ids(browser) == [s.item.id for s in (await service.switch(user, request_id, None)).items]
    assert [b["current"] for b in await drawn_boxes(browser)] == [False, False]

    # Keyboard: the chips are buttons; Enter on "1 · pullover" brings garment 1 back.
    await browser.js("document.querySelector(\".gchip[data-key='g1']\").focus()")
    await browser.keys(chromium.ENTER)
    await browser.wait_js(
        "document.querySelector('.msg.bot.wide .showing')?.textContent === 'Matches for the pullover (1 of 2):'"
    )
    assert await card_ids(browser) == first
    assert await browser.js("return document.activeElement.dataset.focus") == "chip:g1"

    # After a reload the answer comes back (boxes on the thumbnail) and switching still works.
    await browser.js("location.reload()")
    await browser.wait_js("document.body.classList.contains('ready') && document.querySelectorAll('.gbox').length == 2")
    await browser.click(".gchip[data-key='g2']")
    await browser.wait_js(
        "document.querySelector('.msg.bot.wide .showing')?.textContent === 'Matches for the sneaker (2 of 2):'"
    )
    assert await card_ids(browser) == second
    assert await browser.count(".draw-toggle") == 0  # the file itself is gone with the old page


async def test_photo_without_clothing_is_refused(service, browser, open_chat, tmp_path):
    """The real finder on a photo of a building: the refusal, no items, and the whole photo one tap away."""
    from PIL import Image
    from sklearn.datasets import load_sample_image

    path = tmp_path / "china.jpg"
    Image.fromarray(load_sample_image("china.jpg")).save(path, quality=90)
    await open_chat(finder="real")
    await browser.upload(path)
    await browser.wait_js("document.querySelector('.msg.bot.wide h2')", 60)
    assert await browser.text(".msg.bot.wide h2") == render.NO_GARMENT
    assert await browser.text(".msg.bot.wide .panel-head p") == render.NO_GARMENT_HINT
    assert await browser.count(".msg.bot.wide .card") == 0
    assert await browser.count(".gbox") == 0
    assert await browser.text(".refusal button") == render.SEARCH_WHOLE_PHOTO
    _, user_id = await visitor(browser, service)
    assert await rows(service, RecommendationRow, user_id) == 0  # nothing was recommended

    await browser.click(".refusal button")
    await browser.wait_js("document.querySelectorAll('.msg.bot.wide .card').length == 10")
    assert await showing(browser) == "Matches for the whole photo:"
    assert await chips(browser) == [("Whole photo", True)]
    assert await browser.text(".msg.bot.wide h2") == render.NO_GARMENT  # still honest about what it saw


async def drag(browser, selector: str, start: tuple[float, float], end: tuple[float, float], steps: int = 6) -> None:
    """Press, drag and release the mouse over ``selector``, at points relative to its box."""

    def do() -> None:
        from selenium.webdriver.common.action_chains import ActionChains
        from selenium.webdriver.common.by import By

        element = browser.driver.find_element(By.CSS_SELECTOR, selector)
        browser.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", element)
        w, h = element.size["width"], element.size["height"]
        at = lambda p: (round((p[0] - 0.5) * w), round((p[1] - 0.5) * h))  # noqa: E731 (offsets from the centre)
        chain = ActionChains(browser.driver, duration=20)
        chain.move_to_element_with_offset(element, *at(start)).click_and_hold()
        for i in range(1, steps + 1):
            t = i / steps
            chain.move_to_element_with_offset(
                element, *at((start[0] + t * (end[0] - start[0]), start[1] + t * (end[1] - start[1])))
            )
        chain.release().perform()

    await browser.call(do)


async def test_drawing_a_box_searches_that_region(service, browser, open_chat, outfit):
    path, finder, (_, shoes) = outfit
    await open_chat(finder=finder)
    await upload_and_wait(browser, path)
    await browser.wait_js("document.querySelector('.stage-photo')?.naturalWidth > 0")
    first = await card_ids(browser)

    await browser.click(".draw-toggle")
    await browser.wait_js("document.querySelector('.stage').classList.contains('drawing')")
    assert await browser.js("return document.querySelector('.draw-toggle').getAttribute('aria-pressed')") == "true"
    region = (shoes[0] - 0.03, shoes[1] - 0.03, shoes[2] + 0.03, shoes[3] + 0.03)
    await drag(browser, ".stage-photo", (region[0], region[1]), (region[2], region[3]))
    await browser.wait_js("document.querySelector('.gbox.mine')")
    await browser.wait_js(
        "document.querySelector('.msg.bot.wide .showing')?.textContent === 'Matches for your selection:'"
    )
    sent = (await last_results(browser))["selection"]["box"]
    for got, want in zip((sent["x0"], sent["y0"], sent["x1"], sent["y1"]), region):
        assert abs(got - want) < 0.01, (sent, region)
    mine = await card_ids(browser)
    assert len(mine) == 10 and mine != first
    assert sum(c in SHOES for c in await categories(service, mine)) >= 7  # the box holds shoes
    assert await chips(browser) == [
        ("1 · pullover", False),
        ("2 · sneaker", False),
        ("✎ your selection", True),
        ("Whole photo", False),
    ]
    assert not await browser.js("return document.querySelector('.stage').classList.contains('drawing')")
    drawn = [b for b in await drawn_boxes(browser) if b["key"] == "selection"][0]
    assert drawn["current"] and abs(drawn["x0"] - sent["x0"]) * drawn["w"] < 1.5

    # Back to garment 1, then to the selection again (kept server-side under its own request;
    # the ranking may shift a little: the selection is part of the visitor's history now).
    uid, _ = await visitor(browser, service)
    state = await last_results(browser)
    await browser.click(".gbox[data-key='g1']")
    await browser.wait_js(
        "document.querySelector('.msg.bot.wide .showing')?.textContent === 'Matches for the pullover (1 of 2):'"
    )
    again = await card_ids(browser)
    assert again == [s.item.id for s in (await service.switch(UserRef("web", uid), state["request_id"], 1)).items]
    assert set(await categories(service, again)) <= TOPS
    await browser.click(".gchip[data-key='selection']")
    await browser.wait_js(
        "document.querySelector('.msg.bot.wide .showing')?.textContent === 'Matches for your selection:'"
    )
    mine = await card_ids(browser)
    assert mine == [
        s.item.id for s in (await service.switch(UserRef("web", uid), state["selection"]["request_id"], 1)).items
    ]

    # A slip (a click, no drag) searches nothing; Escape leaves drawing mode.
    await browser.click(".draw-toggle")
    await drag(browser, ".stage-photo", (0.5, 0.5), (0.51, 0.505), steps=1)
    await browser.wait_js("document.getElementById('toast')?.textContent === 'Drag a little further to draw a box.'")
    await browser.keys("\ue00c")  # Escape
    await browser.wait_js("!document.querySelector('.stage').classList.contains('drawing')")
    assert await card_ids(browser) == mine


async def test_drawing_with_a_finger(service, browser, open_chat, outfit):
    """On a phone: touch events (as Chromium's touch emulation sends them) draw the box too."""
    path, finder, (top, _) = outfit
    await open_chat(finder=finder)
    await browser.viewport(390, 844, mobile=True)
    await upload_and_wait(browser, path)
    await browser.wait_js("document.querySelector('.stage-photo')?.naturalWidth > 0")
    await browser.click(".draw-toggle")
    rect = await browser.js(
        "const e = document.querySelector('.stage-photo'); e.scrollIntoView({block: 'center'});"
        " const r = e.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]"
    )
    region = (top[0], top[1], top[2], top[3])
    points = [
        (
            rect[0] + (region[0] + t * (region[2] - region[0])) * rect[2],
            rect[1] + (region[1] + t * (region[3] - region[1])) * rect[3],
        )
        for t in (0, 0.25, 0.5, 0.75, 1)
    ]

    def touch() -> None:
        send = browser.driver.execute_cdp_cmd
        send(
            "Input.dispatchTouchEvent", {"type": "touchStart", "touchPoints": [{"x": points[0][0], "y": points[0][1]}]}
        )
        for x, y in points[1:]:
            send("Input.dispatchTouchEvent", {"type": "touchMove", "touchPoints": [{"x": x, "y": y}]})
        send("Input.dispatchTouchEvent", {"type": "touchEnd", "touchPoints": []})

    scroll = await browser.js("return window.scrollY")
    await browser.call(touch)
    await browser.wait_js(
        "document.querySelector('.msg.bot.wide .showing')?.textContent === 'Matches for your selection:'"
    )
    assert await browser.js("return window.scrollY") == scroll  # the finger drew, it did not scroll the page
    sent = (await last_results(browser))["selection"]["box"]
    for got, want in zip((sent["x0"], sent["y0"], sent["x1"], sent["y1"]), region):
        assert abs(got - want) < 0.015, (sent, region)
    assert await browser.js("return document.documentElement.scrollWidth <= window.innerWidth"), (
        "sideways scroll on a phone"
    )
    await browser.screenshot(ARTIFACTS / "web-garments-phone.png")


async def test_a_real_photo_of_a_person_is_boxed_and_answered_for_her_suit(service, browser, open_chat, tmp_path):
    """The real finder on a real photo a user would send (scikit-image's astronaut, a JPEG):
    numbered boxes on the photo, the suit first as a top (named in its chip), ten matches."""
    from engine.training import garment_scenes as gs

    photo = gs.load_photo("skimage:astronaut.png")
    assert photo is not None, "scikit-image is a dev extra: scripts/install.sh installs it"
    path = tmp_path / "astronaut.jpg"
    photo.convert("RGB").save(path, quality=90)
    await open_chat(finder="real")
    await browser.upload(path)
    await browser.wait_js("document.querySelectorAll('.msg.bot.wide .card').length == 10", 60)
    assert await browser.count(".gbox") >= 1
    first = (await chips(browser))[0]
    assert first[1] and "sweatshirt" in first[0].lower(), await chips(browser)
