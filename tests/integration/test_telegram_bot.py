"""The Telegram front-end end to end: the real python-telegram-bot Application
(started by the real `run_telegram`) against the fake Bot API server, over the
real engine (a real SQLite catalogue of Fashion-MNIST items, real EfficientNet-Lite0).

Every test ends by asserting the fake saw no request Telegram would have refused.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
import socket

import aiohttp
import numpy as np
import pytest
import pytest_asyncio
from PIL import Image
from pydantic import SecretStr
from sqlalchemy import func, select
from telegram.error import InvalidToken

from bot import render
from bot.telegram import (
    BUTTON_EXPIRED,
    CALLBACK_DATA_MAX,
    NOT_AN_IMAGE,
    UNKNOWN_COMMAND,
    WELCOME,
    MissingToken,
    forget_data,
    main_line_error,
    parse_switch,
    run_telegram,
)
from db.models import FeedbackRow, PhotoRow, RecommendationRow
from tests.support.fakes.telegram_api import RunningBot, bot_settings, fake_api_fixture
from tests.support.fakes.telegram_rules import Call, png_header_only

CAPTION_RE = re.compile(r"^(\d+)\. (.+) · (.+) · (\d+)% similar$")


api = pytest.fixture(fake_api_fixture, name="api")


@pytest_asyncio.fixture
async def bot(service, api):
    async with RunningBot(service, bot_settings(service, api)) as running:
        yield running


def is_keyboard_message(chat_id: int):
    return lambda c: c.chat_id == chat_id and c.params.get("reply_markup") is not None


async def send_photo_and_wait(api, user_id: int, jpeg: bytes, *, as_document: bool = False) -> tuple[Call, Call]:
    update = (
        api.make_document_update(user_id, jpeg, file_name="outfit.png", mime_type="image/png")
        if as_document
        else api.make_photo_update(user_id, jpeg)
    )
    albums = len(api.calls_of("sendMediaGroup", user_id))
    keyboards = len([c for c in api.calls_of("sendMessage", user_id) if is_keyboard_message(user_id)(c)])
    api.push_update(update)
    album = (await api.wait_for("sendMediaGroup", lambda c: c.chat_id == user_id, count=albums + 1))[-1]
    keyboard = (await api.wait_for("sendMessage", is_keyboard_message(user_id), count=keyboards + 1))[-1]
    return album, keyboard


async def reply_to(api, user_id: int, update: dict, n: int = 1, timeout: float = 15) -> str:
    """Push an update, wait for the n-th text message to that chat, return it."""
    before = len(api.calls_of("sendMessage", user_id))
    api.push_update(update)
    calls = await api.wait_for("sendMessage", lambda c: c.chat_id == user_id, count=before + n, timeout=timeout)
    return calls[-1].params["text"]


def png_bytes(jpeg: bytes) -> bytes:
    out = io.BytesIO()
    Image.open(io.BytesIO(jpeg)).save(out, format="PNG")
    return out.getvalue()


# ---- a photo in, ten items out ---------------------------------------------------------------------
async def test_photo_gets_album_of_ten_then_buttons(bot, api, service, photo_of, caplog):
    caplog.set_level(logging.DEBUG)
    user = 4242
    update = api.make_photo_update(user, photo_of("Sneaker"))
    user_message_id = update["message"]["message_id"]
    api.push_update(update)
    album = (await api.wait_for("sendMediaGroup", lambda c: c.chat_id == user))[0]
    keyboard = (await api.wait_for("sendMessage", is_keyboard_message(user)))[0]
    action = api.calls_of("sendChatAction", user)[0]

    # "sending photo…" first, then the album, then the buttons
    assert action.params["action"] == "upload_photo"
    assert action.at < album.at < keyboard.at

    media = album.params["media"]
    assert len(media) == 10
    assert all(m["type"] == "photo" and m["media"].startswith("attach://") for m in media)
    assert len(album.files) == 10  # uploaded as files: Telegram can't fetch our pictures
    for n, m in enumerate(media, start=1):
        uploaded = Image.open(io.BytesIO(album.files[m["media"][len("attach://") :]]))
        assert uploaded.format == "JPEG" and min(uploaded.size) >= 280  # 28 px items, upscaled
        match = CAPTION_RE.match(m["caption"])
        assert match, m["caption"]
        assert int(match.group(1)) == n and match.group(3).startswith("€")
    assert album.params["reply_parameters"]["message_id"] == user_message_id
    titles = [CAPTION_RE.match(m["caption"]).group(2) for m in media]
    assert sum("Sneaker" in t for t in titles) >= 6, titles  # a sneaker photo finds sneakers
    scores = [int(CAPTION_RE.match(m["caption"]).group(4)) for m in media]
    assert scores == sorted(scores, reverse=True)

    # the first message names the garments found, before the album
    intro = api.calls_of("sendMessage", user)[0]
    assert intro.at < album.at and intro.params["text"].startswith("I see "), intro.params["text"]
    rows = keyboard.params["reply_markup"]["inline_keyboard"]
    rows, switch = rows[:10], rows[10:]
    assert switch and switch[-1][-1]["text"] == render.WHOLE_PHOTO
    assert all(len(b["callback_data"].encode()) <= CALLBACK_DATA_MAX for row in switch for b in row)
    assert parse_switch(switch[-1][-1]["callback_data"])[1] is None
    for n, row in enumerate(rows, start=1):
        # Fashion-MNIST items have no shop page: no URL button, only 👍 / 👎
        assert [b.get("url") for b in row] == [None, None]
        assert row[0]["callback_data"].startswith("fb:+:") and row[1]["callback_data"].startswith("fb:-:")
        assert row[0]["text"].startswith(f"{n}.")

    # the results were stored for the user in the real database
    uid = await service.store.user_id("telegram", str(user), create=False)
    async with service.store.session() as s:
        query = select(func.count()).select_from(RecommendationRow).where(RecommendationRow.user_id == uid)
        recs = (await s.execute(query)).scalar_one()
    assert recs == 10

    # the token never reaches the log
    assert caplog.records and api.token not in caplog.text
    assert api.token.split(":")[1] not in caplog.text


async def test_repeat_results_reuse_uploaded_pictures(bot, api, photo_of):
    first, _ = await send_photo_and_wait(api, 11, photo_of("Bag"))
    second, _ = await send_photo_and_wait(api, 12, photo_of("Bag"))
    assert len(first.files) == 10
    # same photo, same items: Telegram already has the pictures, send their file_ids
    assert len(second.files) == 0
    assert [m["caption"] for m in second.params["media"]] == [m["caption"] for m in first.params["media"]]


async def test_image_sent_as_a_file(bot, api, photo_of):
    album, keyboard = await send_photo_and_wait(api, 77, png_bytes(photo_of("Trouser")), as_document=True)
    titles = [m["caption"] for m in album.params["media"]]
    assert len(titles) == 10 and sum("Trouser" in t for t in titles) >= 6, titles
    assert api.downloads and api.downloads[-1].startswith("documents/")


async def test_several_photos_at_once_answered_in_order(bot, api, service, photo_of):
    # Telegram delivers an album of photos as separate messages, all at once; a new
    # user's first album must get every answer, one after another, not interleaved.
    user = 44
    updates = [api.make_photo_update(user, photo_of(c)) for c in ("Bag", "Sandal", "Trouser")]
    for update in updates:
        api.push_update(update)
    albums = await api.wait_for("sendMediaGroup", lambda c: c.chat_id == user, count=3)
    await api.wait_for("sendMessage", is_keyboard_message(user), count=3)
    assert [c.params["reply_parameters"]["message_id"] for c in albums] == [u["message"]["message_id"] for u in updates]
    sent = [c.method for c in api.calls_of("sendMediaGroup", user) + api.calls_of("sendMessage", user)]
    order = sorted(api.calls_of("sendMediaGroup", user) + api.calls_of("sendMessage", user), key=lambda c: c.at)
    assert [c.method for c in order] == ["sendMessage", "sendMediaGroup", "sendMessage"] * 3, sent
    texts = [c.params["text"] for c in api.calls_of("sendMessage", user)]
    assert all(t.startswith("I see ") for t in texts[0::2]) and render.INTERNAL_ERROR not in texts


async def test_thumbs_up_stores_feedback(bot, api, service, photo_of):
    user = 500
    album, keyboard = await send_photo_and_wait(api, user, photo_of("Dress"))
    rows = keyboard.params["reply_markup"]["inline_keyboard"]
    like, dislike = rows[0][0]["callback_data"], rows[1][1]["callback_data"]
    liked_id, disliked_id = int(like.split(":")[2]), int(dislike.split(":")[2])

    api.push_update(api.make_callback_update(user, like, keyboard.result))
    answer = (await api.wait_for("answerCallbackQuery"))[0]
    assert answer.params["text"] == render.FEEDBACK_THANKS[1]
    api.push_update(api.make_callback_update(user, dislike, keyboard.result))
    answer = (await api.wait_for("answerCallbackQuery", count=2))[1]
    assert answer.params["text"] == render.FEEDBACK_THANKS[-1]

    uid = await service.store.user_id("telegram", str(user), create=False)
    assert await service.store.feedback(uid) == {liked_id: 1, disliked_id: -1}

    # a forged or stale button is answered, never an error
    api.push_update(api.make_callback_update(user, "fb:+:999999999", keyboard.result))
    answer = (await api.wait_for("answerCallbackQuery", count=3))[2]
    assert "999999999" in answer.params["text"]
    api.push_update(api.make_callback_update(user, "whatever", keyboard.result))
    answer = (await api.wait_for("answerCallbackQuery", count=4))[3]
    assert answer.params["text"] == BUTTON_EXPIRED
    assert await service.store.feedback(uid) == {liked_id: 1, disliked_id: -1}


async def test_switch_button_sends_the_other_album_to_its_owner_only(bot, api, service, photo_of):
    user, stranger = 510, 511
    album, keyboard = await send_photo_and_wait(api, user, photo_of("Coat"))
    whole = keyboard.params["reply_markup"]["inline_keyboard"][-1][-1]["callback_data"]
    request_id, garment = parse_switch(whole)
    assert garment is None and len(whole.encode()) <= CALLBACK_DATA_MAX
    # someone else pressing it (a group): a friendly alert, nothing sent, nothing leaked
    api.push_update(api.make_callback_update(stranger, whole, keyboard.result))
    answer = (await api.wait_for("answerCallbackQuery"))[-1]
    assert answer.params.get("show_alert") and "photo" in answer.params["text"]
    albums = len(api.calls_of("sendMediaGroup", user))
    # the owner: the whole photo's album, then its buttons (which switch back to the garment)
    api.push_update(api.make_callback_update(user, whole, keyboard.result))
    second = (await api.wait_for("sendMediaGroup", lambda c: c.chat_id == user, count=albums + 1))[-1]
    assert len(second.params["media"]) == 10
    buttons = (await api.wait_for("sendMessage", is_keyboard_message(user), count=2))[-1]
    back = [b["callback_data"] for b in buttons.params["reply_markup"]["inline_keyboard"][-1]]
    assert all(parse_switch(b)[0] == request_id and parse_switch(b)[1] is not None for b in back)
    assert not api.calls_of("sendMediaGroup", stranger)


async def test_forget_prompt_is_bound_to_who_asked(bot, api, service, photo_of):
    asker, other = 520, 521
    await send_photo_and_wait(api, asker, photo_of("Shirt", 2))
    await send_photo_and_wait(api, other, photo_of("Shirt", 3))
    await reply_to(api, asker, api.make_text_update(asker, "/forget"))
    prompt = api.calls_of("sendMessage", asker)[-1]
    # in a group another member presses "Yes" on the asker's prompt: refused, nothing deleted
    api.push_update(api.make_callback_update(other, forget_data("yes", asker), prompt.result))
    answer = (await api.wait_for("answerCallbackQuery"))[-1]
    assert answer.params["text"] == render.NOT_YOURS
    await asyncio.sleep(0.3)
    assert not api.calls_of("editMessageText", asker)
    assert await service.store.user_id("telegram", str(other), create=False) is not None
    assert await service.store.user_id("telegram", str(asker), create=False) is not None


async def test_style_and_trend_are_rate_limited(service, api):
    user = 530
    async with RunningBot(service, bot_settings(service, api, rate_limit_per_minute=1)):
        assert "popular" in await reply_to(api, user, api.make_text_update(user, "/style"))
        text = await reply_to(api, user, api.make_text_update(user, "/trend dress"))
        assert re.fullmatch(render.COMMANDS_RATE_LIMITED.format(seconds=r"\d+").replace(".", r"\."), text), text


async def test_error_logs_name_users_by_hash_only(bot, api, service, photo_of, caplog):
    from bot.flows import user_tag
    from engine.types import UserRef

    user = 987654321
    real = service.recommend

    async def broken(image, user=None, k=None, **kwargs):
        raise RuntimeError("the engine fell over")

    service.recommend = broken
    try:
        assert await reply_to(api, user, api.make_photo_update(user, photo_of("Bag"))) == render.INTERNAL_ERROR
    finally:
        service.recommend = real
    assert user_tag(UserRef("telegram", str(user))) in caplog.text and str(user) not in caplog.text.replace(
        f"chat_id': {user}", ""
    ).replace(f"'id': {user}", "")


# ---- bad images -----------------------------------------------------------------------------------------------
def noise_jpeg(side: int, seed: int = 1) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=95)
    return out.getvalue()


async def test_each_bad_image_gets_a_clear_message(service, api, photo_of):
    limit = 2_000_000
    big = noise_jpeg(1400)
    assert len(big) > limit
    dress = photo_of("Dress")
    cases = [
        # (what, document kwargs, expected text, downloaded?)
        ("empty file", dict(data=b"", file_name="empty.jpg"), "That file is empty", True),
        (
            "text named .jpg",
            dict(data=b"just some notes, not a picture\n" * 20, file_name="notes.jpg"),
            "doesn't look like an image",
            True,
        ),
        ("truncated JPEG", dict(data=dress[: len(dress) // 2], file_name="cut.jpg"), "damaged or incomplete", True),
        (
            "30000x30000 PNG",
            dict(data=png_header_only(30000, 30000), file_name="bomb.png", mime_type="image/png"),
            "too big",
            True,
        ),
        ("over the byte cap", dict(data=big, file_name="huge.jpg"), render.too_large(len(big), limit), False),
        (
            "not an image at all",
            dict(data=b"%PDF-1.4 ...", file_name="a.pdf", mime_type="application/pdf"),
            NOT_AN_IMAGE,
            False,
        ),
    ]
    async with RunningBot(service, bot_settings(service, api, max_image_bytes=limit)):
        for n, (what, doc, expected, downloaded) in enumerate(cases):
            user = 900 + n
            downloads = len(api.downloads)
            data = doc.pop("data")
            text = await reply_to(api, user, api.make_document_update(user, data, **doc))
            assert expected in text, (what, text)
            assert (len(api.downloads) > downloads) == downloaded, what
        # a user whose photo was bad can still send a good one
        album, _ = await send_photo_and_wait(api, 900, dress)
        assert len(album.params["media"]) == 10
    assert not api.calls_of("sendMediaGroup", 901)


async def test_oversized_file_refused_without_download(bot, api, service):
    user = 321
    declared = 25 * 1024 * 1024  # over Telegram's 20 MB bot download cap
    text = await reply_to(api, user, api.make_document_update(user, b"\xff\xd8" + b"\0" * 100, declared_size=declared))
    assert text == render.too_large(declared, service.settings.max_image_bytes)
    # a compressed photo whose every version declares too many bytes: refused too
    photo = api.make_photo_update(user, noise_jpeg(300))
    for size in photo["message"]["photo"]:
        size["file_size"] = declared
    text = await reply_to(api, user, photo)
    assert text == render.too_large(declared, service.settings.max_image_bytes)
    assert api.downloads == [] and api.calls_of("getFile", ok=None) == []


async def test_telegram_download_cap_applies_even_when_configured_higher(service, api):
    declared = 25 * 1024 * 1024
    async with RunningBot(service, bot_settings(service, api, max_image_bytes=100_000_000)):
        text = await reply_to(api, 7, api.make_document_update(7, b"\xff\xd8" + b"\0" * 100, declared_size=declared))
    assert text == render.too_large(declared, 20 * 1024 * 1024)
    assert api.downloads == [] and api.calls_of("getFile", ok=None) == []


async def test_undeclared_size_checked_after_download(service, api):
    # No declared size: the bot must download to know, and refuses after the fact.
    limit = 1_000_000
    big = noise_jpeg(1200, seed=3)
    async with RunningBot(service, bot_settings(service, api, max_image_bytes=limit)):
        text = await reply_to(api, 5, api.make_document_update(5, big, declared_size=None))
    assert text == render.too_large(len(big), limit)
    assert len(api.downloads) == 1 and not api.calls_of("sendMediaGroup")


# ---- everything else ---------------------------------------------------------------------------------------------
async def test_other_messages_get_a_hint(bot, api):
    user = 61
    assert await reply_to(api, user, api.make_text_update(user, "hello there")) == render.HINT
    assert await reply_to(api, user, api.make_sticker_update(user)) == render.HINT
    assert await reply_to(api, user, api.make_voice_update(user)) == render.HINT
    assert await reply_to(api, user, api.make_video_update(user)) == render.HINT
    assert await reply_to(api, user, api.make_text_update(user, "/dance now")) == UNKNOWN_COMMAND.format(name="dance")
    assert not api.downloads  # nothing was fetched for any of them


async def test_commands(bot, api, service):
    user = 62
    assert await reply_to(api, user, api.make_text_update(user, "/start")) == WELCOME
    assert await reply_to(api, user, api.make_text_update(user, "/help@fashion_test_bot")) == render.HELP
    about = await reply_to(api, user, api.make_text_update(user, "/about"))
    assert about == render.about_text(await service.about()) and "efficientnet-lite0" in about
    style = await reply_to(api, user, api.make_text_update(user, "/style"))
    assert "popular" in style and style.count("% similar") == 10  # cold start: popular items
    usage = await reply_to(api, user, api.make_text_update(user, "/trend"))
    assert usage.startswith(render.TREND_USAGE)
    assert {c["command"] for c in api.commands} >= {"help", "style", "trend", "forget", "about"}


async def test_trend_progress_is_edited_in_place(bot, api, service):
    # The real service's trend, with no shops configured: it ends at once and says why.
    user = 63
    started = await reply_to(api, user, api.make_text_update(user, "/trend linen dress"))
    assert started == "Trend “linen dress”: searching shops…"
    edit = (await api.wait_for("editMessageText", lambda c: c.chat_id == user))[-1]
    assert edit.params["text"].startswith("Trend “linen dress”: done"), edit.params["text"]
    assert int(edit.params["message_id"]) == api.calls_of("sendMessage", user)[-1].result["message_id"]


async def test_style_collage_after_a_few_photos(bot, api, service, photo_of):
    user = 64
    for nth in range(service.settings.style_min_photos):
        await send_photo_and_wait(api, user, photo_of("Sneaker", nth))
    api.push_update(api.make_text_update(user, "/style"))
    photo = (await api.wait_for("sendPhoto", lambda c: c.chat_id == user))[0]
    assert "photo" in photo.files and Image.open(io.BytesIO(photo.files["photo"])).format == "JPEG"
    assert photo.params["caption"].startswith("Your style")


async def test_rate_limit_answers_politely(service, api, photo_of):
    user = 70
    async with RunningBot(service, bot_settings(service, api, rate_limit_per_minute=2)):
        for nth in range(2):
            await send_photo_and_wait(api, user, photo_of("Coat", nth))
        text = await reply_to(api, user, api.make_photo_update(user, photo_of("Coat", 2)))
        assert re.fullmatch(render.RATE_LIMITED.format(seconds=r"\d+").replace(".", r"\."), text), text
        # other users aren't affected
        album, _ = await send_photo_and_wait(api, 71, photo_of("Coat", 3))
    assert len(api.calls_of("sendMediaGroup", user)) == 2


async def test_forget_after_confirmation(bot, api, service, photo_of):
    user, other = 80, 81
    _, keyboard = await send_photo_and_wait(api, user, photo_of("Shirt"))
    await send_photo_and_wait(api, other, photo_of("Shirt", 1))
    like = keyboard.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"]
    api.push_update(api.make_callback_update(user, like, keyboard.result))
    await api.wait_for("answerCallbackQuery")

    confirm_text = await reply_to(api, user, api.make_text_update(user, "/forget"))
    assert confirm_text == render.FORGET_CONFIRM
    confirm = api.calls_of("sendMessage", user)[-1]
    buttons = [b["callback_data"] for b in confirm.params["reply_markup"]["inline_keyboard"][0]]
    assert buttons == [forget_data("yes", user), forget_data("no", user)]
    uid = await service.store.user_id("telegram", str(user), create=False)
    assert uid is not None  # nothing deleted before the confirmation

    api.push_update(api.make_callback_update(user, forget_data("yes", user), confirm.result))
    edit = (await api.wait_for("editMessageText", lambda c: c.chat_id == user))[0]
    assert edit.params["text"] == render.forgotten({"photos": 1, "feedback": 1, "recommendations": 10})
    assert await service.store.user_id("telegram", str(user), create=False) is None
    async with service.store.session() as s:
        for table in (PhotoRow, RecommendationRow, FeedbackRow):
            query = select(func.count()).select_from(table).where(table.user_id == uid)
            assert (await s.execute(query)).scalar_one() == 0
        other_uid = await service.store.user_id("telegram", str(other), create=False)
        query = select(func.count()).select_from(PhotoRow).where(PhotoRow.user_id == other_uid)
        assert (await s.execute(query)).scalar_one() == 1


async def test_forget_cancelled_keeps_everything(bot, api, service, photo_of):
    user = 82
    await send_photo_and_wait(api, user, photo_of("Sandal"))
    await reply_to(api, user, api.make_text_update(user, "/forget"))
    confirm = api.calls_of("sendMessage", user)[-1]
    api.push_update(api.make_callback_update(user, forget_data("no", user), confirm.result))
    edit = (await api.wait_for("editMessageText", lambda c: c.chat_id == user))[0]
    assert edit.params["text"] == "OK, I've kept everything."
    assert await service.store.user_id("telegram", str(user), create=False) is not None


# ---- flood limits and failures ---------------------------------------------------------------------------------
async def test_retry_after_is_waited_out(bot, api, photo_of):
    user = 90
    api.fail_with_retry_after("sendMediaGroup", 1, chat_id=user)
    api.push_update(api.make_photo_update(user, photo_of("Pullover")))
    album = (await api.wait_for("sendMediaGroup", lambda c: c.chat_id == user, timeout=20))[0]
    refused = api.calls_of("sendMediaGroup", user, ok=False)
    assert len(refused) == 1 and refused[0].status == 429
    assert album.at - refused[0].at >= 1.0  # waited out, then delivered
    await api.wait_for("sendMessage", is_keyboard_message(user))


async def test_survives_engine_failure_and_api_error(bot, api, service, photo_of):
    broken_user, blocked_user, fine_user = 666, 667, 668
    real_recommend = service.recommend

    async def recommend(image, user=None, k=None, **kwargs):
        # The one stand-in in these tests: a failing engine call, for one user only.
        if user is not None and user.user_id == str(broken_user):
            raise RuntimeError("the engine fell over")
        return await real_recommend(image, user=user, k=k, **kwargs)

    service.recommend = recommend
    # And a Bot API error for another user (say they blocked the bot mid-way).
    api.fail("sendMediaGroup", 403, "Forbidden: bot was blocked by the user", chat_id=blocked_user)
    for uid in (broken_user, blocked_user, fine_user):
        api.push_update(api.make_photo_update(uid, photo_of("Ankle boot", uid % 5)))

    error = await api.wait_for("sendMessage", lambda c: c.chat_id == broken_user)
    assert error[0].params["text"] == render.INTERNAL_ERROR
    await api.wait_for("sendMediaGroup", lambda c: c.chat_id == fine_user)
    await api.wait_for("sendMediaGroup", lambda c: c.chat_id == blocked_user, ok=False)

    # ... and the bot keeps serving everyone, the two unlucky ones included
    service.recommend = real_recommend
    for uid in (broken_user, blocked_user):
        album, _ = await send_photo_and_wait(api, uid, photo_of("Ankle boot", 7))
        assert len(album.params["media"]) == 10


# ---- starting up -------------------------------------------------------------------------------------------------
async def test_rejected_token_is_one_clear_line(service, api, caplog):
    settings = bot_settings(service, api, telegram_bot_token=SecretStr("999999:wrong-token-abc"))
    with pytest.raises(InvalidToken) as info:
        await asyncio.wait_for(run_telegram(service, settings), 20)
    line = main_line_error(info.value)
    assert line and "\n" not in line and "TELEGRAM_BOT_TOKEN" in line
    assert "wrong-token-abc" not in caplog.text

    with pytest.raises(MissingToken) as info:
        await run_telegram(service, bot_settings(service, api, telegram_bot_token=None))
    line = main_line_error(info.value)
    assert line and "\n" not in line and "TELEGRAM_BOT_TOKEN" in line


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_webhook_mode(service, api, photo_of):
    port = free_port()
    settings = bot_settings(service, api)
    hook_url = "https://bot.example.com/tg/hook"
    async with RunningBot(service, settings, webhook_url=hook_url, listen="127.0.0.1", port=port):
        assert api.webhook["url"] == "https://bot.example.com/tg/hook"
        secret = api.webhook["secret_token"]
        assert set(api.webhook["allowed_updates"]) == {"message", "callback_query"}
        hook = f"http://127.0.0.1:{port}/tg/hook"
        user = 31
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
            # without Telegram's secret header: refused, nothing happens
            update = {"update_id": 1, **api.make_text_update(user, "/help")}
            async with http.post(hook, json=update) as resp:
                assert resp.status == 403
            update = {"update_id": 2, **api.make_photo_update(user, photo_of("Bag", 3))}
            async with http.post(hook, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": secret}) as resp:
                assert resp.status == 200
            album = (await api.wait_for("sendMediaGroup", lambda c: c.chat_id == user))[0]
            assert len(album.params["media"]) == 10
    assert api.calls_of("sendMessage", user) and all(
        c.params["text"] != render.HELP for c in api.calls_of("sendMessage", user)
    )
    assert not api.calls_of("getUpdates")


# ---- issue 18: what a polished bot does -------------------------------------------------------------------------
async def test_description_and_short_description_alongside_the_menu(service, api, capfd):
    from bot.telegram.handlers import DESCRIPTION, SHORT_DESCRIPTION

    async with RunningBot(service, bot_settings(service, api)):
        await api.wait_for("setMyShortDescription")
    assert api.description == DESCRIPTION and len(DESCRIPTION) <= 512
    assert api.short_description == SHORT_DESCRIPTION and len(SHORT_DESCRIPTION) <= 120
    assert "photo" in DESCRIPTION and "don't keep your photos" in DESCRIPTION
    assert "no photos" in SHORT_DESCRIPTION
    assert {c["command"] for c in api.commands} >= {"help", "style", "trend", "forget", "about"}
    # the startup line reaches the console whatever the log level
    assert "Telegram: polling as @fashion_test_bot" in capfd.readouterr().err


async def test_a_refused_description_is_not_fatal(service, api, photo_of):
    api.fail("setMyDescription", 400, "Bad Request: BOT_DESCRIPTION_INVALID")
    async with RunningBot(service, bot_settings(service, api)):
        album, _ = await send_photo_and_wait(api, 95, photo_of("Dress"))
    assert len(album.params["media"]) == 10 and api.short_description


async def test_start_deep_link_opens_the_item(bot, api, service, photo_of):
    from bot.telegram.handlers import ITEM_LINK, deep_link
    from tests.support.browser import add_item

    item_id = await add_item(
        service,
        "Linen summer dress",
        photo_of("Dress", 4),
        url="https://shop.example.com/d/1",
        price=49.5,
        shop="Example Shop",
        category="Dress",
    )
    assert deep_link("@fashion_test_bot", item_id) == f"https://t.me/fashion_test_bot?start=item_{item_id}"
    user = 96
    api.push_update(api.make_text_update(user, f"/start item_{item_id}"))
    photo = (await api.wait_for("sendPhoto", lambda c: c.chat_id == user))[0]
    assert photo.params["caption"].splitlines() == ["Linen summer dress", "€49.50", "Example Shop"]
    assert Image.open(io.BytesIO(photo.files["photo"])).format == "JPEG"
    [[button]] = photo.params["reply_markup"]["inline_keyboard"]
    assert button == {"text": ITEM_LINK, "url": "https://shop.example.com/d/1"}
    assert not api.calls_of("sendMessage", user)  # no welcome text on top
    # an item without a shop page: picture and caption, no button
    mnist = (await service.popular(1))[0].item
    api.push_update(api.make_text_update(user, f"/start item_{mnist.id}"))
    second = (await api.wait_for("sendPhoto", lambda c: c.chat_id == user, count=2))[1]
    assert second.params["caption"].startswith(mnist.title) and "reply_markup" not in second.params
    # unknown items and other payloads
    assert await reply_to(api, user, api.make_text_update(user, "/start item_987654321")) == (
        "I don't know item 987654321 (it may have been removed)."
    )
    assert await reply_to(api, user, api.make_text_update(user, "/start ref_campaign")) == WELCOME


async def test_in_groups_the_bot_speaks_only_when_addressed(bot, api, photo_of):
    group = api.group(4200)
    member = 97
    # a file that isn't a picture, chatter and a photo nobody addressed to the bot: silence
    api.push_update(
        api.make_document_update(member, b"%PDF-1.4 ...", file_name="menu.pdf", mime_type="application/pdf", chat=group)
    )
    api.push_update(api.make_text_update(member, "nice jacket!", chat=group))
    api.push_update(api.make_photo_update(member, photo_of("Coat"), chat=group))
    # the same file with the bot mentioned: it answers
    text = await reply_to(
        api,
        group["id"],
        api.make_document_update(
            member,
            b"%PDF-1.4 ...",
            file_name="menu.pdf",
            mime_type="application/pdf",
            chat=group,
            caption="@fashion_test_bot what about this?",
        ),
    )
    assert text == NOT_AN_IMAGE
    assert len(api.calls_of("sendMessage", group["id"])) == 1 and not api.calls_of("sendMediaGroup", group["id"])
    assert not api.calls_of("sendChatAction", group["id"])
    assert len(api.downloads) == 0  # the unaddressed photo was never fetched
    # a photo addressed to the bot gets its album
    api.push_update(api.make_photo_update(member, photo_of("Coat", 1), chat=group, caption="@fashion_test_bot"))
    album = (await api.wait_for("sendMediaGroup", lambda c: c.chat_id == group["id"]))[0]
    assert len(album.params["media"]) == 10
    # and so does a photo sent in reply to one of the bot's messages
    bot_message = api.calls_of("sendMessage", group["id"])[0].result
    api.push_update(api.make_photo_update(member, photo_of("Coat", 2), chat=group, reply_to=bot_message))
    await api.wait_for("sendMediaGroup", lambda c: c.chat_id == group["id"], count=2)


async def test_upload_photo_action_is_renewed_while_a_slow_answer_is_prepared(bot, api, service, photo_of, monkeypatch):
    from bot.telegram import handlers

    monkeypatch.setattr(handlers, "CHAT_ACTION_EVERY", 0.3)
    real = service.recommend

    async def slow(image, user=None, k=None, **kwargs):
        await asyncio.sleep(1.6)
        return await real(image, user=user, k=k, **kwargs)

    service.recommend = slow
    try:
        album, _ = await send_photo_and_wait(api, 98, photo_of("Dress", 6))
    finally:
        service.recommend = real
    actions = [c for c in api.calls_of("sendChatAction", 98) if c.at < album.at]
    assert len(actions) >= 4, [c.at for c in actions]  # at 0, 0.3, 0.6, … s while it's slow
    assert all(c.params["action"] == "upload_photo" for c in actions)
    await asyncio.sleep(0.7)
    assert len(api.calls_of("sendChatAction", 98)) == len(actions)  # and it stops with the answer


async def test_webhook_startup_line(service, api, capfd):
    port = free_port()
    async with RunningBot(
        service,
        bot_settings(service, api),
        webhook_url="https://bot.example.com/tg/hook2",
        listen="127.0.0.1",
        port=port,
    ):
        pass
    assert "Telegram: webhook at https://bot.example.com/tg/hook2" in capfd.readouterr().err
