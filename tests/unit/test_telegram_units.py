"""The Telegram front-end's small pure pieces: Telegram's limits, link checks, buttons."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from telegram import PhotoSize
from telegram.error import BadRequest, InvalidToken, NetworkError

from bot.pictures import chat_jpeg
from bot.telegram import MissingToken, main_line_error
from bot.telegram.keyboards import CALLBACK_DATA_MAX, feedback_data, parse_feedback, results_keyboard, results_text
from bot.telegram.media import DISPLAY_MAX_SIDE, DISPLAY_SIDE, pick_photo
from bot.telegram.text import fit, split_message, tg_len
from bot.urls import is_public_url
from engine.errors import BadImage
from engine.types import Item, ScoredItem
from tests.support.fakes.telegram_rules import public_url_problem


def display_jpeg(data: bytes) -> bytes:
    return chat_jpeg(data, min_side=DISPLAY_SIDE, max_side=DISPLAY_MAX_SIDE)


@pytest.mark.parametrize(
    "url",
    [
        "https://shop.example.com/p/1",
        "http://www.zalando.de/a-b.html?x=1",
        "https://8.8.8.8/item",
        "https://[2001:4860:4860::8888]/x",
        "https://bücher.de/p",
    ],
)
def test_public_urls_become_buttons(url):
    assert is_public_url(url)
    assert public_url_problem(url) is None  # and the fake agrees with us


@pytest.mark.parametrize(
    "url",
    [
        None,
        "",
        "/relative/path",
        "ftp://shop.example.com/x",
        "javascript:alert(1)",
        "http://localhost:8080/item/1",
        "http://127.0.0.1/item",
        "http://127.1/item",
        "http://0x7f.0.0.1/item",
        "http://10.1.2.3/x",
        "http://192.168.1.20/x",
        "http://169.254.169.254/latest",
        "http://[::1]/x",
        "http://[fd00::1]/x",
        "http://[::ffff:10.0.0.1]/x",
        "http://printer.local/x",
        "http://shop.internal/x",
        "http://intranet/x",
        "http://user:pw@shop.example.com/x",
        "http://shop.example.com:99999/x",
        "https://shop.example.com/a b",
    ],
)
def test_local_or_odd_urls_get_no_button(url):
    assert not is_public_url(url)


def test_telegram_counts_utf16_units():
    assert tg_len("abc") == 3
    assert tg_len("👍") == 2
    text = "👗" * 600  # 1200 units
    cut = fit(text, 1024)
    assert tg_len(cut) <= 1024 and cut.endswith("…")
    assert fit("short", 1024) == "short"


def test_long_texts_split_at_lines_within_the_limit():
    lines = [f"{n}. " + "x" * 90 for n in range(200)]
    parts = split_message("\n".join(lines))
    assert len(parts) > 1 and all(tg_len(p) <= 4096 for p in parts)
    assert "\n".join(parts) == "\n".join(lines)
    one_huge_line = "y" * 10_000
    parts = split_message(one_huge_line)
    assert all(tg_len(p) <= 4096 for p in parts) and "".join(parts) == one_huge_line


def item(n: int, url: str | None = None, title: str | None = None) -> ScoredItem:
    return ScoredItem(
        item=Item(id=10**11 + n, title=title or f"Item {n}", url=url, price=19.99, currency="EUR", category="Dress"),
        rank=n,
        score=0.9,
    )


def test_results_keyboard_respects_telegram_limits():
    items = [
        item(1, "https://shop.example.com/1", title="A very long product name " * 10),
        item(2, "http://localhost/2"),
        item(3),
    ]
    markup = results_keyboard(items).to_dict()["inline_keyboard"]
    assert [len(row) for row in markup] == [3, 2, 2]
    assert markup[0][0]["url"] == "https://shop.example.com/1" and tg_len(markup[0][0]["text"]) <= 42
    for row in markup:
        for button in row:
            if "callback_data" in button:
                assert len(button["callback_data"].encode()) <= CALLBACK_DATA_MAX
                assert parse_feedback(button["callback_data"]) is not None
    assert "Tap a name" in results_text(items)
    assert "no shop pages" in results_text(items[1:])


def test_feedback_callback_data_round_trip():
    assert parse_feedback(feedback_data(1, 42)) == (1, 42)
    assert parse_feedback(feedback_data(-1, 7)) == (-1, 7)
    for forged in ("fb:+:", "fb:x:1", "fb:+:1:2", "fb:+:-3", "fb:+:" + "9" * 40, None, "forget:yes"):
        assert parse_feedback(forged) is None


def size(w: int, h: int, nbytes: int | None) -> PhotoSize:
    return PhotoSize(file_id=f"f{w}", file_unique_id=f"u{w}", width=w, height=h, file_size=nbytes)


def test_pick_photo_takes_enough_pixels_within_the_cap():
    sizes = [
        size(90, 60, 2_000),
        size(320, 213, 20_000),
        size(800, 533, 90_000),
        size(1280, 853, 200_000),
        size(2560, 1706, 900_000),
    ]
    assert pick_photo(sizes, 20_000_000).width == 1280  # smallest with a short side >= 640
    assert pick_photo(sizes, 100_000).width == 800  # largest under the cap
    assert pick_photo(sizes[:2], 20_000_000).width == 320
    assert pick_photo(sizes, 1_000) is None
    assert pick_photo([size(1000, 1000, None)], 10).width == 1000  # undeclared: checked after download


def test_display_pictures_are_upscaled_jpegs():
    png = io.BytesIO()
    Image.new("L", (28, 28), 128).save(png, format="PNG")
    out = Image.open(io.BytesIO(display_jpeg(png.getvalue())))
    assert out.format == "JPEG" and out.size == (280, 280)
    big = io.BytesIO()
    Image.new("RGB", (3000, 1500), "white").save(big, format="JPEG")
    assert Image.open(io.BytesIO(display_jpeg(big.getvalue()))).size == (1280, 640)
    with pytest.raises(BadImage):
        display_jpeg(b"not a picture")


def test_startup_errors_are_one_line():
    assert "TELEGRAM_BOT_TOKEN" in main_line_error(MissingToken())
    assert "TELEGRAM_BOT_TOKEN" in main_line_error(InvalidToken("Unauthorized"))
    assert main_line_error(NetworkError("Connection refused")).startswith("Can't reach the Telegram Bot API")
    assert "HTTPS url" in main_line_error(BadRequest("bad webhook: HTTPS url must be provided for webhook"))
    assert "Address already in use" in main_line_error(OSError(98, "Address already in use"))
    assert main_line_error(ValueError("something else")) is None
    assert main_line_error(OSError(2, "No such file")) is None


def test_token_never_reaches_the_log(caplog, tmp_path):
    import logging

    from pydantic import SecretStr

    from bot.telegram import build_application
    from engine.config import Settings

    token = "424242:AAsecret-token-for-the-log-test"
    caplog.set_level(logging.DEBUG)
    settings = Settings(data_dir=tmp_path).model_copy(update={"telegram_bot_token": SecretStr(token)})
    app = build_application(None, settings, base_url="http://127.0.0.1:9/bot")
    assert app.bot.token == token
    logging.getLogger("telegram.Bot").debug("Set Bot API URL: %s", app.bot.base_url)  # what PTB logs at start
    logging.getLogger("httpx").warning('HTTP Request: POST %s/getMe "HTTP/1.1 401"', app.bot.base_url)
    assert "secret-token" not in caplog.text and "<token>" in caplog.text
    assert logging.getLogger("httpx").getEffectiveLevel() >= logging.WARNING  # no per-request URL lines


def test_the_bots_connection_pool_is_one_connection_per_update_in_flight(tmp_path):
    """Not PTB's 256: httpcore's pool bookkeeping runs on the loop and grows with it."""
    from pydantic import SecretStr

    from bot.telegram import build_application
    from engine.config import Settings

    settings = Settings(data_dir=tmp_path).model_copy(update={"telegram_bot_token": SecretStr("1:x")})
    app = build_application(None, settings, base_url="http://127.0.0.1:9/bot", concurrency=12)
    pool = app.bot.request._client._transport._pool  # type: ignore[attr-defined]
    assert pool._max_connections == 12
