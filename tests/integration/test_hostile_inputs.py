"""Hostile input through every front-end (issue 16's campaign): bad pictures sent to the
real Telegram bot (as a photo and as a file), the real Discord bot (a DM attachment and
``/recommend``) and the real web chat, over the real engine.

For every kind of file: no crash, a friendly answer (the photo's results, the "no
clothing" answer, or one sentence saying what is wrong, never the internal-error
text), and the next user, who sends a good photo right after, is served with items.

The corpus: tests/support/pictures.py's ``BAD`` (empty, text named .jpg, truncated
JPEG, PNG bomb) plus huge frames within the byte caps, wrong types (PDF, SVG, HTML,
zip; honestly declared and named .jpg), polyglots (GIF+JS, a JPEG with a zip
appended), transparency kinds (RGBA, LA, P with tRNS, 16-bit) and EXIF oddities (an
impossible orientation, a huge EXIF block). Each test prints its table (kind →
answer) and records it in bench/results/hostile_inputs.json.
"""

from __future__ import annotations

import asyncio
import io
import json
import zipfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import discord
import numpy as np
import pytest
import pytest_asyncio
from aiohttp import web
from PIL import Image
from pydantic import SecretStr

from bot import render
from bot.web import build_web_app
from tests.support.fakes.discord_api import FakeDiscord
from tests.support.fakes.telegram_api import FakeBotAPI, RunningBot, bot_settings
from tests.support.pictures import BAD, encode

pytestmark = pytest.mark.slow

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results" / "hostile_inputs.json"
SERVED, REFUSED = "served", "refused"  # what a kind should get: the photo's answer, or a sentence


# ---- the corpus -------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Hostile:
    kind: str
    data: bytes
    filename: str
    mime: str
    expect: str  # SERVED or REFUSED


def _garment_rgb(photo: bytes) -> Image.Image:
    return Image.open(io.BytesIO(photo)).convert("RGB")


def _rgba_cutout(photo: bytes) -> Image.Image:
    """The garment on a transparent background (white pixels made transparent)."""
    rgb = np.asarray(_garment_rgb(photo))
    alpha = np.where(rgb.min(axis=2) > 240, 0, 255).astype(np.uint8)
    return Image.fromarray(np.dstack([rgb, alpha]), "RGBA")


def _png_p_trns(photo: bytes) -> bytes:
    img = _garment_rgb(photo).quantize(64)
    palette_white = int(np.argmax(np.asarray(img.getpalette()[: 64 * 3]).reshape(-1, 3).sum(axis=1)))
    return encode(img, "PNG", transparency=palette_white)


def _png_16bit(photo: bytes) -> bytes:
    grey = np.asarray(_garment_rgb(photo).convert("L")).astype("<u2") * 257
    return encode(Image.fromarray(grey), "PNG")  # mode I;16


def _jpeg_with_exif(photo: bytes, *, orientation: int | None = None, comment_bytes: int = 0) -> bytes:
    img = _garment_rgb(photo)
    exif = Image.Exif()
    if orientation is not None:
        exif[0x0112] = orientation
    if comment_bytes:
        exif[0x010E] = "x" * comment_bytes  # ImageDescription: a huge EXIF block (APP1 max is 64 KiB)
    return encode(img, "JPEG", quality=90, exif=exif.tobytes())


def _zip(name: str = "readme.txt", text: bytes = b"not a picture\n" * 50) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as z:
        z.writestr(name, text)
    return out.getvalue()


def _gif_js_polyglot() -> bytes:
    """A GIF whose header is also JavaScript: ``GIF89a/*…*/=alert(1)``."""
    gif = bytearray(encode(Image.new("P", (16, 16), 0), "GIF"))
    gif[:6] = b"GIF89a"
    gif[6:8] = b"/*"  # logical screen width 0x2A2F = 10799 px: the JS comment opens
    return bytes(gif) + b"*/=alert(document.domain);//"


def _solid(mode: str, size: tuple[int, int], fmt: str, **kw: object) -> bytes:
    return encode(Image.new(mode, size, "white" if mode != "L" else 255), fmt, **kw)


def corpus(photo: bytes) -> list[Hostile]:
    """Every kind, built around ``photo`` (a good garment shot) where the kind is a picture."""
    bad = [
        Hostile("empty file", BAD["empty file"], "empty.jpg", "image/jpeg", REFUSED),
        Hostile("text named .jpg", BAD["text named .jpg"], "notes.jpg", "image/jpeg", REFUSED),
        Hostile("truncated JPEG", BAD["truncated JPEG"], "cut.jpg", "image/jpeg", REFUSED),
        Hostile("PNG declaring 30000x30000", BAD["PNG declaring 30000x30000"], "bomb.png", "image/png", REFUSED),
    ]
    huge = [
        # within the byte caps (they compress to almost nothing), past / within the pixel cap
        Hostile(
            "PNG 9000x5000 (past the pixel cap)", _solid("L", (9000, 5000), "PNG"), "wide.png", "image/png", REFUSED
        ),
        Hostile(
            "PNG 6000x6000 (within the pixel cap)", _solid("RGB", (6000, 6000), "PNG"), "big.png", "image/png", SERVED
        ),
        Hostile(
            "JPEG 7000x5000 progressive",
            _solid("RGB", (7000, 5000), "JPEG", progressive=True, quality=50),
            "big.jpg",
            "image/jpeg",
            SERVED,
        ),
    ]
    pdf = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
    svg = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><script>alert(1)</script></svg>'
    html = b"<!doctype html><html><body><script>alert(1)</script><img src=x onerror=alert(1)></body></html>"
    wrong = [
        Hostile("PDF", pdf, "outfit.pdf", "application/pdf", REFUSED),
        Hostile("PDF named .jpg", pdf, "outfit.jpg", "image/jpeg", REFUSED),
        Hostile("SVG with a script", svg, "outfit.svg", "image/svg+xml", REFUSED),
        Hostile("HTML named .png", html, "outfit.png", "image/png", REFUSED),
        Hostile("zip", _zip(), "outfits.zip", "application/zip", REFUSED),
        Hostile("zip named .jpg", _zip(), "outfit.jpg", "image/jpeg", REFUSED),
    ]
    poly = [
        Hostile("GIF+JS polyglot", _gif_js_polyglot(), "funny.gif", "image/gif", SERVED),
        Hostile("JPEG with a zip appended", photo + _zip("secret.txt"), "outfit.jpg", "image/jpeg", SERVED),
    ]
    alpha = [
        Hostile("RGBA PNG", encode(_rgba_cutout(photo), "PNG"), "cutout.png", "image/png", SERVED),
        Hostile("LA PNG", encode(_rgba_cutout(photo).convert("LA"), "PNG"), "grey.png", "image/png", SERVED),
        Hostile("P PNG with tRNS", _png_p_trns(photo), "palette.png", "image/png", SERVED),
        Hostile("16-bit greyscale PNG", _png_16bit(photo), "deep.png", "image/png", SERVED),
    ]
    exif = [
        Hostile(
            "EXIF orientation 9 (impossible)", _jpeg_with_exif(photo, orientation=9), "odd.jpg", "image/jpeg", SERVED
        ),
        Hostile("EXIF orientation 0", _jpeg_with_exif(photo, orientation=0), "zero.jpg", "image/jpeg", SERVED),
        Hostile(
            "huge EXIF (60 KB)",
            _jpeg_with_exif(photo, orientation=6, comment_bytes=60_000),
            "exif.jpg",
            "image/jpeg",
            SERVED,
        ),
    ]
    return bad + huge + wrong + poly + alpha + exif


def test_the_corpus_is_what_it_says() -> None:
    photo = encode(Image.new("RGB", (280, 280), "white"), "JPEG")
    kinds = {h.kind: h for h in corpus(photo)}
    assert len(kinds) == len(corpus(photo)) >= 20
    assert Image.open(io.BytesIO(kinds["P PNG with tRNS"].data)).info.get("transparency") is not None
    assert Image.open(io.BytesIO(kinds["16-bit greyscale PNG"].data)).mode.startswith("I")
    assert Image.open(io.BytesIO(kinds["LA PNG"].data)).mode == "LA"
    assert Image.open(io.BytesIO(kinds["GIF+JS polyglot"].data)).format == "GIF"
    assert kinds["GIF+JS polyglot"].data.startswith(b"GIF89a/*")
    assert zipfile.is_zipfile(io.BytesIO(kinds["JPEG with a zip appended"].data))
    assert Image.open(io.BytesIO(kinds["huge EXIF (60 KB)"].data)).getexif()[0x0112] == 6
    assert len(kinds["huge EXIF (60 KB)"].data) > 60_000
    assert all(len(h.data) < 2 * 1024 * 1024 for h in kinds.values())  # within every byte cap


# ---- checking and recording answers ----------------------------------------------------------------------------
@dataclass
class Answer:
    outcome: str  # "items", "no clothing" or "refused"
    text: str

    @property
    def cell(self) -> str:
        return self.outcome if self.outcome != "refused" else f"refused: {self.text}"


def check(h: Hostile, answer: Answer) -> str | None:
    """What is wrong with ``answer`` for ``h``, or None."""
    if render.INTERNAL_ERROR in answer.text:
        return "the internal-error text"
    if not answer.text.strip():
        return "an empty answer"
    if h.expect == SERVED and answer.outcome == "refused":
        return f"refused a picture that should be served: {answer.text!r}"
    if h.expect == REFUSED and answer.outcome != "refused":
        return f"served something that isn't a usable picture ({answer.outcome})"
    if answer.outcome == "refused" and ("Traceback" in answer.text or "Error" in answer.text):
        return f"a technical answer: {answer.text!r}"
    return None


def record(front_end: str, table: dict[str, str]) -> None:
    try:
        current = json.loads(RESULTS.read_text())
    except (OSError, ValueError):
        current = {}
    current[front_end] = table
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(current, indent=2, ensure_ascii=False) + "\n")


async def run_corpus(
    front_end: str,
    photo_of: Callable[..., bytes],
    send_bad: Callable[[int, Hostile], Awaitable[Answer]],
    send_good: Callable[[int, bytes], Awaitable[Answer]],
) -> None:
    """Every kind from a new user, then a good photo from the next user; all checked at the end."""
    kinds = corpus(photo_of("Dress"))
    table: dict[str, str] = {}
    problems: list[str] = []
    for n, h in enumerate(kinds):
        try:
            answer = await asyncio.wait_for(send_bad(2 * n, h), 90)
        except Exception as err:  # no answer at all is the worst outcome: record it, go on
            answer = Answer("no answer", f"{type(err).__name__}: {err}")
            problems.append(f"{h.kind}: no answer ({answer.text[:200]})")
        else:
            problem = check(h, answer)
            if problem:
                problems.append(f"{h.kind}: {problem}")
        table[h.kind] = answer.cell
        good = await asyncio.wait_for(send_good(2 * n + 1, photo_of("Dress", n % 20)), 90)
        if good.outcome != "items":
            problems.append(f"{h.kind}: the next user got {good.cell!r} for a good photo")
    record(front_end, table)
    width = max(map(len, table))
    print(f"\n{front_end}:\n" + "\n".join(f"  {kind:<{width}}  {cell}" for kind, cell in table.items()))
    assert not problems, "\n".join(problems)


# ---- Telegram ------------------------------------------------------------------------------------------------
async def telegram_answer(api: FakeBotAPI, chat_id: int, update: dict) -> Answer:
    """Push ``update``; the answer is the album (items), or the first message that isn't
    the garments' intro."""
    api.push_update(update)

    def final(c) -> bool:
        intro = c.params.get("reply_markup") is None and c.params["text"].startswith("I see ")
        return c.chat_id == chat_id and not intro

    message = (await api.wait_for("sendMessage", final, timeout=90, ok=None))[0]
    text = message.params["text"]
    if api.calls_of("sendMediaGroup", chat_id, ok=None):
        return Answer("items", text)
    if text == render.no_garment_text():
        return Answer("no clothing", text)
    return Answer("refused", text)


@pytest.mark.parametrize("sent_as", ["photo", "document"])
async def test_telegram_hostile_inputs(service, photo_of, sent_as):
    with FakeBotAPI() as api:
        async with RunningBot(service, bot_settings(service, api)):

            async def bad(n: int, h: Hostile) -> Answer:
                user = 7000 + n
                if sent_as == "photo":
                    update = api.make_photo_update(user, h.data)
                else:
                    update = api.make_document_update(user, h.data, file_name=h.filename, mime_type=h.mime)
                return await telegram_answer(api, user, update)

            async def good(n: int, photo: bytes) -> Answer:
                return await telegram_answer(api, 7000 + n, api.make_photo_update(7000 + n, photo))

            await run_corpus(f"telegram ({sent_as})", photo_of, bad, good)
        assert not api.violations, api.violations


# ---- Discord -------------------------------------------------------------------------------------------------
@pytest.fixture
def discord_globals():
    base, gateway = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    yield
    discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = base, gateway


def discord_answer(message) -> Answer:
    if len(message.embeds) == 10:
        return Answer("items", message.content)
    if message.content == render.no_garment_text():
        return Answer("no clothing", message.content)
    return Answer("refused", message.content)


@pytest_asyncio.fixture
async def discord_bot(service, discord_globals):
    from bot.discord import run_discord

    async with FakeDiscord(heartbeat_interval_ms=500) as fake:
        settings = service.settings.model_copy(
            update={"discord_api_url": fake.api_url, "discord_bot_token": SecretStr(fake.token)}
        )
        task = asyncio.create_task(run_discord(service, settings))
        await fake.wait_for(lambda: task.done() or fake.connected, 30, "the bot to connect")
        if task.done():
            task.result()
        yield fake
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        fake.flag_unacknowledged()
        assert fake.problems == [], fake.problems


@pytest.mark.parametrize("path", ["message", "slash"])
async def test_discord_hostile_inputs(discord_bot, photo_of, path):
    fake = discord_bot

    async def send(n: int, data: bytes, filename: str, mime: str) -> Answer:
        user = fake.user(f"user{n}")
        attachment = fake.attachment(data, filename, mime)
        if path == "message":
            sent = await fake.send_dm(user, "", [attachment])
            return discord_answer(await fake.wait_reply(sent, timeout=90))
        ix = await fake.slash("recommend", {"photo": attachment}, user=user)
        return discord_answer(await fake.wait_answer(ix, timeout=90))

    async def bad(n: int, h: Hostile) -> Answer:
        return await send(n, h.data, h.filename, h.mime)

    async def good(n: int, photo: bytes) -> Answer:
        return await send(n, photo, "outfit.jpg", "image/jpeg")

    await run_corpus(f"discord ({path})", photo_of, bad, good)


# ---- the web chat --------------------------------------------------------------------------------------------
async def test_web_hostile_inputs(service, photo_of):
    # behind a trusted proxy, each request from its own address: every kind is a new visitor
    settings = service.settings.model_copy(update={"web_trusted_proxy": True})
    runner = web.AppRunner(build_web_app(service, settings), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    base = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    try:
        async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as browser:

            async def send(n: int, data: bytes, filename: str, mime: str) -> Answer:
                form = aiohttp.FormData()
                form.add_field("photo", data, filename=filename, content_type=mime)
                headers = {"Origin": base, "X-Forwarded-For": f"198.51.100.{n % 250 + 1}"}
                async with browser.post(f"{base}/api/recommend", data=form, headers=headers) as resp:
                    body = await resp.json()
                if resp.status == 200:
                    if body.get("no_garment"):
                        return Answer("no clothing", body["text"])
                    return Answer("items" if len(body["items"]) == 10 else "refused", body["text"])
                return Answer("refused", f"{body.get('error', '')} (HTTP {resp.status})")

            async def bad(n: int, h: Hostile) -> Answer:
                return await send(n, h.data, h.filename, h.mime)

            async def good(n: int, photo: bytes) -> Answer:
                return await send(n, photo, "outfit.jpg", "image/jpeg")

            await run_corpus("web", photo_of, bad, good)
            # the chat still serves pages afterwards
            async with browser.get(f"{base}/") as resp:
                assert resp.status == 200
    finally:
        await runner.cleanup()
