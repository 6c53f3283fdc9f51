"""The README's pictures, made by the real thing rather than by hand, so they show what the
product does today: a small Fashion-MNIST catalogue, the real FashionService (with its
real garment finder and the offline EfficientNet-Lite0 weights), the real front-ends and
Debian's headless Chromium (as in tests/integration/test_web_browser.py).

    .venv/bin/python scripts/screenshots.py              # all three pictures below
    .venv/bin/python scripts/screenshots.py web          # docs/img/web-chat-garments.png
    .venv/bin/python scripts/screenshots.py telegram     # docs/img/telegram-album.png
    .venv/bin/python scripts/screenshots.py style        # docs/img/telegram-style.png
    .venv/bin/python scripts/screenshots.py telegram style   # several at once share one catalogue
    .venv/bin/python scripts/screenshots.py web --photo my.jpg --items 3000

* **web**: the real web chat in Chromium after the photo is dropped on it.
* **telegram**: the real python-telegram-bot front-end (``run_telegram``) against the
  project's fake Bot API on 127.0.0.1 (tests/support/fakes/telegram_api.py), sent the same
  photo as a user would. What the bot sent (the text naming the garments, the album's
  picture bytes and captions, the message with its inline keyboard) is laid out in a small
  self-contained HTML page styled like a Telegram chat (pictures as data: URIs, no network)
  and that page is screenshot. Telegram's own app can't run here; everything *in* the
  picture is what the bot sent.
* **style**: the same, for a user who has sent photos of a few garments of three kinds and
  then ``/style``: the collage the bot sent, with its caption.

Without ``--photo`` the photo tried first is an outfit composite (a Fashion-MNIST top above
shoes on a wall), then scikit-image's astronaut photo; the first in which the finder sees
at least two garments is kept (else the last one tried, with a warning). Nothing is
downloaded; the catalogue lives in a temporary directory that is deleted afterwards. The
👍/👎 buttons need a colour emoji font (Debian's ``fonts-noto-color-emoji``, installed by
scripts/install.sh); without one Chromium draws empty boxes, and the script says so.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import html
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import browser as chromium  # noqa: E402
from tests.support.settings import make_settings  # noqa: E402

OUT = ROOT / "docs" / "img"
WEB_PNG = OUT / "web-chat-garments.png"
ALBUM_PNG = OUT / "telegram-album.png"
STYLE_PNG = OUT / "telegram-style.png"
ALBUM_USER, STYLE_USER = 4242, 4343  # two Telegram users: the style one has a history
# What the /style user has sent before asking: two garments each of three kinds, so the
# profile has clusters to show (Fashion-MNIST test pictures, (category, nth)).
STYLE_PHOTOS = [("Dress", 0), ("Dress", 3), ("Sandal", 0), ("Sandal", 2), ("Bag", 0), ("Bag", 4)]
ANSWER_TIMEOUT = 120.0  # s; the first photo also warms the model up on 2 shared cores


# ---- the catalogue and the photo ---------------------------------------------------------------
def fmnist_picture(category: str, nth: int = 0) -> Any:
    """A Fashion-MNIST test-split image (28×28 pixels) of that category."""
    import numpy as np

    from engine.catalogue.ingest import FASHION_MNIST_CLASSES, load_fashion_mnist

    images, labels = load_fashion_mnist("test")
    return images[np.flatnonzero(labels == FASHION_MNIST_CLASSES.index(category))[nth]]


def candidate_photos(work: Path) -> list[Path]:
    """Photos worth showing, best first: an outfit composite, then the astronaut."""
    jpeg, _ = chromium.outfit_photo(fmnist_picture("Pullover"), fmnist_picture("Sneaker"))
    outfit = work / "outfit.jpg"
    outfit.write_bytes(jpeg)
    found = [outfit]
    try:
        import skimage

        astronaut = Path(skimage.__file__).parent / "data" / "astronaut.png"
        if astronaut.exists():
            found.append(astronaut)
    except ImportError:
        pass
    return found


async def build_catalogue(service: Any, items: int) -> None:
    from engine.catalogue import ingest as catalogue

    print(f"building a catalogue of {items} Fashion-MNIST items…", flush=True)
    rows = catalogue.fashion_mnist_rows("train", items, service.encoder.embedder.input_size)
    await catalogue.ingest_rows(service.catalogue, service.encoder, rows, batch_size=128)


async def choose_photo(service: Any, work: Path, photo: str | None) -> Path:
    """The photo to send: ``photo``, or the first candidate with two garments in it (a
    picture with one garment would hide the garment buttons)."""
    photos = [Path(photo)] if photo else candidate_photos(work)
    for path in photos:
        n = len((await service.recommend(path.read_bytes())).garments)
        print(f"{path.name}: the finder sees {n} garment(s)", flush=True)
        if n >= 2:
            return path
    if not photo:
        print("warning: no candidate photo has two garments; using", photos[-1].name, file=sys.stderr)
    return photos[-1]


# ---- the web chat ---------------------------------------------------------------------------------
async def shoot_web(service: Any, settings: Any, photo: Path, args: argparse.Namespace) -> None:
    """The web chat's answer to ``photo``, as the browser shows it."""
    from bot.web import start_web

    server = await start_web(service, settings, port=0)
    b = await chromium.Browser.launch(args.width, args.height)
    try:
        origin = server.url.rstrip("/")
        await b.reset(origin)
        await b.get(origin + "/")
        await b.wait_js("document.body.classList.contains('ready')")
        await b.upload(photo)
        await b.wait_js("document.querySelector('.msg.bot.wide .panel')", 120)
        await b.wait_js("document.querySelector('.stage-photo')?.naturalWidth > 0")
        await b.wait_js("[...document.querySelectorAll('.card img')].every(i => i.complete && i.naturalWidth > 0)")
        if args.garment:
            await b.click(f".gbox[data-key='g{args.garment}']")
            await b.wait_js(
                f"document.querySelector(\".gbox[data-key='g{args.garment}']\").classList.contains('current')"
            )
            await b.wait_js("[...document.querySelectorAll('.card img')].every(i => i.complete && i.naturalWidth > 0)")
        await b.js(
            "document.activeElement && document.activeElement.blur();"
            # the sticky bars would sit across a shot taken beyond the viewport
            " for (const e of document.querySelectorAll('.composer, .topbar')) e.style.visibility = 'hidden';"
        )
        await shoot_element(b, ".msg.bot.wide", WEB_PNG, margin=16)
        print(f"wrote {WEB_PNG.relative_to(ROOT)}", flush=True)
    finally:
        await b.close()
        await server.close()


# ---- Telegram: what the bot sent -------------------------------------------------------------------
@dataclass
class Picture:
    data: bytes
    caption: str | None = None


@dataclass
class Sent:
    """One message as the bot sent it: text or caption, pictures, inline keyboard rows."""

    text: str | None = None
    pictures: list[Picture] = field(default_factory=list)
    keyboard: list[list[str]] = field(default_factory=list)  # button texts, row by row


def known_uploads(api: Any) -> dict[str, bytes]:
    """file_id -> bytes of every picture the bot has uploaded so far, read from the calls
    the fake recorded (what was sent, and the file ids the fake answered with)."""
    known: dict[str, bytes] = {}
    for call in api.calls_of("sendMediaGroup") + api.calls_of("sendPhoto"):
        refs = [m["media"] for m in call.params["media"]] if call.method == "sendMediaGroup" else ["attach://photo"]
        messages = call.result if isinstance(call.result, list) else [call.result]
        for ref, message in zip(refs, messages):
            name = ref[len("attach://") :] if isinstance(ref, str) and ref.startswith("attach://") else None
            if name in call.files:
                known[message["photo"][-1]["file_id"]] = call.files[name]
    return known


def picture(api: Any, call: Any, ref: Any) -> bytes:
    """The bytes behind a picture the bot sent in ``call``: an upload (``attach://name``,
    or sendPhoto's multipart field), or the file id of an earlier upload (the bot reuses
    them for items it has already sent)."""
    if ref is None:
        ref = "attach://photo"
    if ref.startswith("attach://") and ref[len("attach://") :] in call.files:
        return call.files[ref[len("attach://") :]]
    known = known_uploads(api)
    if ref not in known:
        raise RuntimeError(f"{call.method} sent {ref!r}, which the bot never uploaded: can't show its picture")
    return known[ref]


def as_sent(api: Any, call: Any) -> Sent:
    """A recorded Bot API call of the fake as the message the user sees."""
    params = call.params
    markup = params.get("reply_markup") or {}
    keyboard = [[button["text"] for button in row] for row in markup.get("inline_keyboard", [])]
    if call.method == "sendMediaGroup":
        pictures = [Picture(picture(api, call, m["media"]), m.get("caption")) for m in params["media"]]
        return Sent(pictures=pictures, keyboard=keyboard)
    if call.method == "sendPhoto":
        photo = params.get("photo")
        shown = picture(api, call, photo if isinstance(photo, str) else None)
        return Sent(text=params.get("caption"), pictures=[Picture(shown)], keyboard=keyboard)
    return Sent(text=params.get("text"), keyboard=keyboard)


def bot_messages(api: Any, chat_id: int, since: float) -> list[Sent]:
    """Everything the bot sent to ``chat_id`` after ``since``, in order."""
    calls = [
        c
        for method in ("sendMessage", "sendMediaGroup", "sendPhoto")
        for c in api.calls_of(method, chat_id)
        if c.at >= since
    ]
    return [as_sent(api, c) for c in sorted(calls, key=lambda c: c.at)]


async def send_photo(api: Any, user: int, jpeg: bytes) -> list[Sent]:
    """Send a photo as ``user`` and wait for the whole answer (it ends with the message
    carrying the buttons, or with a refusal without album)."""
    since = time.monotonic()
    api.push_update(api.make_photo_update(user, jpeg))
    await api.wait_for(
        "sendMessage",
        lambda c: c.chat_id == user and c.at >= since and c.params.get("reply_markup") is not None,
        timeout=ANSWER_TIMEOUT,
    )
    return bot_messages(api, user, since)


async def send_command(api: Any, user: int, text: str, method: str) -> list[Sent]:
    """Send a command as ``user``, wait for its ``method`` answer; a moment more for a
    follow-up text (the /style summary when the caption had to be cut)."""
    since = time.monotonic()
    api.push_update(api.make_text_update(user, text))
    await api.wait_for(method, lambda c: c.chat_id == user and c.at >= since, timeout=ANSWER_TIMEOUT)
    await asyncio.sleep(1.0)
    return bot_messages(api, user, since)


# ---- Telegram: a chat page ----------------------------------------------------------------------------
CHAT_CSS = """
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.35 "DejaVu Sans", sans-serif; color: #000; background: #fff; }
/* a flat wallpaper: a gradient would double the PNG's size */
.chat { width: 100%; background: #a9c994; padding-bottom: 18px; }
.top { display: flex; align-items: center; gap: 12px; padding: 10px 18px; background: #fff;
       border-bottom: 1px solid #dadce0; }
.avatar { width: 40px; height: 40px; border-radius: 50%; background: linear-gradient(#f7a35c, #e0703a);
          color: #fff; font-weight: bold; font-size: 18px; display: flex; align-items: center;
          justify-content: center; }
.top .name { font-weight: bold; } .top .sub { color: #707579; font-size: 13px; }
.feed { display: flex; flex-direction: column; gap: 8px; padding: 16px 22px 0; }
.row { display: flex; } .row.me { justify-content: flex-end; }
.bubble { max-width: 560px; background: #fff; border-radius: 14px 14px 14px 4px; padding: 7px 11px;
          box-shadow: 0 1px 1px rgba(0,0,0,.14); white-space: pre-wrap; overflow-wrap: anywhere; }
.me .bubble { background: #effdde; border-radius: 14px 14px 4px 14px; }
.bubble.media { padding: 3px; }
.bubble.media .text { padding: 5px 8px 4px; }
.single img { display: block; max-width: 100%; border-radius: 11px; }
.grid { display: grid; gap: 3px; border-radius: 11px; overflow: hidden; }
.grid .tile { position: relative; background: #eee; }
.grid img { display: block; width: 100%; aspect-ratio: 1; object-fit: cover; }
.grid .n { position: absolute; left: 5px; top: 5px; min-width: 20px; height: 20px; border-radius: 10px;
           background: rgba(0,0,0,.55); color: #fff; font-size: 12px; font-weight: bold; text-align: center;
           line-height: 20px; padding: 0 5px; }
.captions { margin: 0; padding: 6px 8px 3px; list-style: none; font-size: 13px; color: #222;
            white-space: normal; }
.keyboard-msg { width: 520px; }
.keyboard-msg .bubble { max-width: none; }
.keys { display: flex; flex-direction: column; gap: 4px; margin-top: 4px; }
.keys .krow { display: flex; gap: 4px; }
.keys .key { flex: 1; background: rgba(40,70,40,.32); color: #fff; border-radius: 8px; text-align: center;
             padding: 7px 6px; font-size: 14px; font-weight: bold; white-space: nowrap; overflow: hidden;
             text-overflow: ellipsis; }
.note { align-self: center; background: rgba(40,70,40,.35); color: #fff; border-radius: 12px;
        padding: 3px 12px; font-size: 13px; }
"""


def data_uri(data: bytes) -> str:
    """A picture inlined, so the page needs nothing but itself."""
    from PIL import Image

    with Image.open(io.BytesIO(data)) as img:
        mime = Image.MIME.get(img.format or "", "image/jpeg")
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def text_html(text: str | None) -> str:
    return html.escape(text or "")


def grid_html(pictures: Sequence[Picture], columns: int, numbered: bool) -> str:
    tiles = "".join(
        f'<div class="tile"><img src="{data_uri(p.data)}">'
        + (f'<span class="n">{n}</span>' if numbered else "")
        + "</div>"
        for n, p in enumerate(pictures, start=1)
    )
    return f'<div class="grid" style="grid-template-columns: repeat({columns}, 1fr)">{tiles}</div>'


def keyboard_html(rows: Sequence[Sequence[str]]) -> str:
    body = "".join(
        '<div class="krow">' + "".join(f'<div class="key">{html.escape(b)}</div>' for b in row) + "</div>"
        for row in rows
    )
    return f'<div class="keys">{body}</div>'


def message_html(message: Sent, *, mine: bool = False, width: int = 540) -> str:
    """One message as a chat bubble: text; one picture with its caption; an album (a grid,
    each tile numbered, the captions listed beneath); and its inline keyboard."""
    if len(message.pictures) > 1:
        captions = [p.caption for p in message.pictures if p.caption]
        listed = "".join(f"<li>{html.escape(c)}</li>" for c in captions)
        columns = 5 if len(message.pictures) > 6 else 3
        inner = grid_html(message.pictures, columns, numbered=bool(captions)) + (
            f'<ul class="captions">{listed}</ul>' if listed else ""
        )
        bubble = f'<div class="bubble media" style="width: {width}px">{inner}</div>'
    elif message.pictures:
        caption = f'<div class="text">{text_html(message.text)}</div>' if message.text else ""
        picture = f'<div class="single"><img src="{data_uri(message.pictures[0].data)}"></div>'
        bubble = f'<div class="bubble media" style="max-width: {width}px">{picture}{caption}</div>'
    else:
        bubble = f'<div class="bubble">{text_html(message.text)}</div>'
    if message.keyboard:
        bubble = f'<div class="keyboard-msg">{bubble}{keyboard_html(message.keyboard)}</div>'
    return f'<div class="row{" me" if mine else ""}">{bubble}</div>'


def note_html(text: str) -> str:
    """A centred grey pill, like Telegram's service messages: says what was left out."""
    return f'<div class="note">{html.escape(text)}</div>'


def chat_page(parts: Sequence[str], bot_name: str = "FashionBot") -> str:
    header = (
        f'<div class="top"><div class="avatar">{html.escape(bot_name[:1])}</div>'
        f'<div><div class="name">{html.escape(bot_name)}</div><div class="sub">bot</div></div></div>'
    )
    return (
        '<!doctype html><html><head><meta charset="utf-8"><title>Telegram chat</title>'
        f"<style>{CHAT_CSS}</style></head><body>"
        f'<div class="chat">{header}<div class="feed">{"".join(parts)}</div></div></body></html>'
    )


async def shoot_page(page: str, target: Path, work: Path, width: int) -> None:
    """Open ``page`` (self-contained HTML) in headless Chromium and keep the chat's PNG."""
    source = work / (target.stem + ".html")
    source.write_text(page, encoding="utf-8")
    b = await chromium.Browser.launch(width, 900)
    try:
        await b.get(source.as_uri())
        await b.wait_js("[...document.images].every(i => i.complete && i.naturalWidth > 0)")
        await b.js("return document.fonts.ready.then(() => true)")
        await shoot_element(b, ".chat", target)
    finally:
        await b.close()
    print(f"wrote {target.relative_to(ROOT)} ({target.stat().st_size // 1024} KB)", flush=True)


# ---- Telegram: the two pictures ------------------------------------------------------------------------
async def shoot_album(api: Any, photo: Path, work: Path, width: int) -> None:
    """A user sends ``photo``; the picture shows it and the bot's whole answer."""
    answer = await send_photo(api, ALBUM_USER, photo.read_bytes())
    parts = [message_html(Sent(pictures=[Picture(photo.read_bytes())]), mine=True, width=240)]
    parts += [message_html(m) for m in answer]
    await shoot_page(chat_page(parts), ALBUM_PNG, work, width)


async def shoot_style(api: Any, work: Path, width: int) -> None:
    """A user sends a few photos, then /style; the picture shows the photos, the command and
    the collage with its caption (the answers to the photos are left out, and say so)."""
    from tests.support.pictures import fmnist_jpeg

    photos = [fmnist_jpeg(fmnist_picture(category, nth)) for category, nth in STYLE_PHOTOS]
    for n, jpeg in enumerate(photos, start=1):
        print(f"/style user: photo {n} of {len(photos)}…", flush=True)
        await send_photo(api, STYLE_USER, jpeg)
    answer = await send_command(api, STYLE_USER, "/style", "sendPhoto")
    parts = [
        message_html(Sent(pictures=[Picture(p) for p in photos]), mine=True, width=300),
        note_html(f"the bot's {len(photos)} answers with matches are left out here"),
        message_html(Sent(text="/style"), mine=True),
        *(message_html(m, width=560) for m in answer),
    ]
    await shoot_page(chat_page(parts), STYLE_PNG, work, width)


async def shoot_telegram(service: Any, photo: Path | None, work: Path, which: set[str], width: int) -> None:
    """The real Telegram front-end against the local fake Bot API, for the pictures asked."""
    from tests.support.fakes.telegram_api import FakeBotAPI, RunningBot, bot_settings

    with FakeBotAPI() as api:
        async with RunningBot(service, bot_settings(service, api)):
            if "telegram" in which and photo is not None:
                await shoot_album(api, photo, work, width)
            if "style" in which:
                await shoot_style(api, work, width)
        if api.violations:  # the picture would show something Telegram refuses
            raise RuntimeError(f"the bot sent requests Telegram would refuse: {api.violations}")


# ---- shared --------------------------------------------------------------------------------------------
async def shoot_element(b: chromium.Browser, css: str, path: Path, margin: int = 0) -> None:
    """A PNG of one element (and ``margin`` px around it), wherever it is on the page."""

    def shoot() -> bytes:
        r = b.driver.execute_script(
            "const e = [...document.querySelectorAll(arguments[0])].pop(); e.scrollIntoView({block: 'start'});"
            " const r = e.getBoundingClientRect();"
            " return [r.left + window.scrollX, r.top + window.scrollY, r.width, r.height]",
            css,
        )
        clip = {
            "x": max(0, r[0] - margin),
            "y": max(0, r[1] - margin),
            "width": r[2] + 2 * margin,
            "height": r[3] + 2 * margin,
            "scale": 1,
        }
        data = b.driver.execute_cdp_cmd(
            "Page.captureScreenshot", {"format": "png", "clip": clip, "captureBeyondViewport": True}
        )
        return base64.b64decode(data["data"])

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(await b.call(shoot))


def emoji_font_missing() -> bool:
    """Whether no installed font draws 👍 (Chromium would show empty boxes on the buttons)."""
    if shutil.which("fc-list") is None:
        return False  # can't tell; let Chromium try
    found = subprocess.run(["fc-list", ":charset=1f44d", "family"], capture_output=True, text=True, check=False)
    return not found.stdout.strip()


async def main(args: argparse.Namespace) -> int:
    from engine.service import FashionService

    problem = chromium.missing()
    if problem:
        print(f"screenshots need {problem}", file=sys.stderr)
        return 2
    which = set(args.what)
    if "all" in which:
        which = {"web", "telegram", "style"}
    if which - {"web"} and emoji_font_missing():
        print("warning: no emoji font (apt-get install fonts-noto-color-emoji): 👍/👎 will be boxes", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="fashionbot-shots-") as tmp:
        work = Path(tmp)
        settings = make_settings(work / "data", database_url=None)
        service = await FashionService.create(settings)
        try:
            await build_catalogue(service, args.items)
            photo = await choose_photo(service, work, args.photo) if which & {"web", "telegram"} else None
            if "web" in which and photo is not None:
                await shoot_web(service, settings, photo, args)
            if which & {"telegram", "style"}:
                await shoot_telegram(service, photo, work, which, args.chat_width)
        finally:
            await service.close()
    return 0


PICTURES = ("all", "web", "telegram", "style")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Make the README's screenshots (web chat, Telegram album, /style).")
    # no choices=: Python 3.11's argparse checks a list default against them and fails
    parser.add_argument(
        "what", nargs="*", default=["all"], help=f"which pictures: {', '.join(PICTURES)} (default: all)"
    )
    parser.add_argument("--photo", help="the photo to send (default: an outfit composite, else the astronaut)")
    parser.add_argument("--items", type=int, default=2000, help="Fashion-MNIST items in the catalogue (default 2000)")
    parser.add_argument("--garment", type=int, default=0, help="web: tap this garment's box before the shot")
    parser.add_argument("--width", type=int, default=1440, help="web: browser window width (default 1440)")
    parser.add_argument("--height", type=int, default=900, help="web: browser window height (default 900)")
    parser.add_argument("--chat-width", type=int, default=900, help="Telegram pages' width (default 900)")
    args = parser.parse_args(argv)
    unknown = set(args.what) - set(PICTURES)
    if unknown:
        parser.error(f"unknown picture(s) {', '.join(sorted(unknown))}; choose from {', '.join(PICTURES)}")
    return args


if __name__ == "__main__":
    os.environ.setdefault("TQDM_DISABLE", "1")
    sys.exit(asyncio.run(main(parse_args())))
