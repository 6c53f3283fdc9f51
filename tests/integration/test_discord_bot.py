"""The Discord bot end to end: the real discord.py client, started by `run_discord`,
against a fake Discord on 127.0.0.1 (tests/fakes/discord_api.py), over the real
FashionService (real SQLite copy, real EfficientNet-Lite0 weights).

Every test ends by checking that the fake saw nothing Discord would have refused
(the `fake` fixture fails the test otherwise).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import re
from datetime import UTC

import discord
import pytest
import pytest_asyncio
from PIL import Image
from pydantic import SecretStr

from bot import render
from bot.discord import FEEDBACK_TEMPLATE, HELP, SWITCH_TEMPLATE, DiscordStartError, run_discord
from bot.urls import public_url as public_http_url
from engine.vision.images import BadImage, open_image
from tests.support.fakes.discord_api import FakeDiscord
from tests.support.fakes.discord_rules import DIRECT_MESSAGES, GUILD_MESSAGES, GUILDS, PRIVILEGED, SentMessage

pytestmark = pytest.mark.slow


# ---- fixtures ------------------------------------------------------------------------------
@pytest.fixture
def discord_globals():
    """run_discord points discord.py's class-level REST base and gateway at the fake:
    put them back afterwards so nothing else in the session talks to a dead port."""
    base = discord.http.Route.BASE
    gateway = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    yield
    discord.http.Route.BASE = base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = gateway


@pytest_asyncio.fixture
async def fake(discord_globals):
    async with FakeDiscord(heartbeat_interval_ms=500) as f:
        yield f
        f.flag_unacknowledged()
        assert f.problems == [], f"the fake Discord refused or flagged: {f.problems}"


class Bot:
    """`run_discord` running as a task, as `fashionbot discord` runs it."""

    def __init__(self, service, settings, fake: FakeDiscord) -> None:
        self.service, self.settings, self.fake = service, settings, fake
        self.task: asyncio.Task | None = None

    async def start(self) -> Bot:
        connections = self.fake.connections
        self.task = asyncio.create_task(run_discord(self.service, self.settings))
        await self.fake.wait_for(
            lambda: self.task.done() or (self.fake.connections > connections and self.fake.connected),
            30,
            "the bot to connect",
        )
        if self.task.done():
            self.task.result()  # raises what run_discord raised
        return self

    async def stop(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        if self.task is not None and self.task.done() and not self.task.cancelled():
            self.task.result()  # a crash is a failure
        await self.fake.wait_for(lambda: not self.fake.connected, 10, "the bot to disconnect")


def bot_settings(service, fake: FakeDiscord, **overrides):
    values = {"discord_api_url": fake.api_url, "discord_bot_token": SecretStr(fake.token)} | overrides
    return service.settings.model_copy(update=values)


@pytest_asyncio.fixture
async def bot(service, fake):
    running = await Bot(service, bot_settings(service, fake), fake).start()
    yield running
    await running.stop()


# ---- helpers -------------------------------------------------------------------------------
async def db_user_id(service, user: dict) -> int | None:
    return await service.store.user_id("discord", user["id"], create=False)


def item_ids_of(message: SentMessage, sign: str = "+") -> list[int]:
    ids = []
    for cid in message.custom_ids():
        m = re.fullmatch(FEEDBACK_TEMPLATE, cid)
        if m and m["v"] == sign:
            ids.append(int(m["id"]))
    return ids


def assert_recommendation(message: SentMessage, category: str) -> None:
    """Ten embeds with uploaded ~280 px JPEG thumbnails, prices, similarities, and
    5 rows of 👍/👎 buttons whose ids name the items shown."""
    assert len(message.embeds) == 10
    for n, embed in enumerate(message.embeds, start=1):
        assert embed["title"].startswith(f"{n}. ")
        assert re.search(r"€[\d,]+\.\d\d · \d+% similar", embed["description"]), embed["description"]
        assert "url" not in embed  # Fashion-MNIST demo items have no shop page
        name = embed["thumbnail"]["url"].removeprefix("attachment://")
        picture = Image.open(io.BytesIO(message.files[name]))
        assert picture.format == "JPEG" and max(picture.size) == 280
    # the query was a photo of `category`: most neighbours are of that category
    same = sum(e["title"].split(". ", 1)[1].startswith(category) for e in message.embeds)
    assert same >= 6, [e["title"] for e in message.embeds]
    rows = message.components
    # the photo's garments: 20 rating buttons in 4 rows of 5, then a row that switches garment
    assert len(rows) == 5 and all(len(r["components"]) == 5 for r in rows[:4])
    switch = [b for b in rows[4]["components"]]
    assert switch and all(re.fullmatch(SWITCH_TEMPLATE, b["custom_id"]) for b in switch)
    # a garment's answer offers the whole photo last; a product shot's (the photo is nearly
    # a catalogue picture) is the whole photo and offers its garment instead
    labels = [b["label"] for b in switch]
    assert labels[-1] == render.WHOLE_PHOTO or (render.WHOLE_PHOTO not in labels and len(labels) >= 1)
    assert message.content.startswith("I see ")
    ids = item_ids_of(message, "+")
    assert len(ids) == 10 and item_ids_of(message, "-") == ids
    thumbs = [e["thumbnail"]["url"] for e in message.embeds]
    assert thumbs == [f"attachment://item-{i}.jpg" for i in ids]


# ---- start-up -------------------------------------------------------------------------------
async def test_startup_syncs_commands_identifies_and_heartbeats(service, fake, caplog):
    caplog.set_level(logging.DEBUG)
    bot = await Bot(service, bot_settings(service, fake), fake).start()
    assert ("GET", "/api/v10/gateway") in fake.requests  # the gateway URL was read from REST
    assert fake.compression == ["zlib-stream"]  # the fake really spoke zlib-stream
    assert set(fake.commands) == {"recommend", "style", "trend", "forget", "about", "help", "Find similar"}
    (photo,) = fake.commands["recommend"]["options"]
    assert photo["type"] == 11 and photo["required"]  # an attachment
    (tag,) = fake.commands["trend"]["options"]
    assert tag["type"] == 3 and tag["required"]
    intents = fake.identifies[-1]["intents"]
    assert intents & GUILDS and intents & GUILD_MESSAGES and intents & DIRECT_MESSAGES
    assert not intents & PRIVILEGED  # works without asking Discord for privileged intents
    # heartbeats flow (the first one is sent on HELLO, the next after 500 ms) and are acked
    await fake.wait_for(lambda: fake.heartbeat_acks >= 2, 10, "two heartbeats")
    await bot.stop()
    assert fake.token not in caplog.text  # the token is never logged, even at DEBUG


async def test_missing_or_rejected_token_is_one_clear_line(service, fake, caplog):
    with pytest.raises(DiscordStartError) as missing:
        await run_discord(service, bot_settings(service, fake, discord_bot_token=None))
    assert "DISCORD_BOT_TOKEN" in str(missing.value) and "\n" not in str(missing.value)

    wrong = "wrong-token-do-not-log-me"
    caplog.set_level(logging.DEBUG)
    with pytest.raises(DiscordStartError) as rejected:
        await run_discord(service, bot_settings(service, fake, discord_bot_token=SecretStr(wrong)))
    text = str(rejected.value)
    assert "rejected" in text and "\n" not in text and wrong not in text
    assert wrong not in caplog.text
    assert not fake.identifies  # it never got as far as the gateway

    with pytest.raises(DiscordStartError, match="Can't reach the Discord API"):
        await run_discord(service, bot_settings(service, fake, discord_api_url="http://127.0.0.1:9/api/v10"))


# ---- /recommend ------------------------------------------------------------------------------
async def test_recommend_slash_command_answers_with_ten_embeds(bot, fake, service, photo_of):
    alice = fake.user("alice")
    ix = await fake.slash("recommend", {"photo": fake.attachment(photo_of("Sneaker"))}, user=alice)
    answer = await fake.wait_answer(ix)
    assert ix.callback_type == 5  # deferred at once ...
    assert ix.callback_at - ix.created < 1.0
    assert answer.via == "deferred" and not answer.ephemeral  # ... and answered with a follow-up
    assert answer.content.endswith("The 10 most similar items I found:")
    assert_recommendation(answer, "Sneaker")
    # the service recorded the photo and what it showed, for this Discord user
    uid = await db_user_id(service, alice)
    assert uid is not None
    vectors, _ = await service.store.photo_embeddings(uid, service.model_key)
    assert len(vectors) == 1


async def test_dm_with_an_image_recommends(bot, fake, photo_of):
    bob = fake.user("bob")
    photo = fake.attachment(photo_of("Trouser"), filename="trousers.jpg")
    sent = await fake.send_dm(bob, "what goes with these?", [photo])
    reply = await fake.wait_reply(sent)
    assert reply.channel_id == fake.dm_channel_id(bob)
    assert_recommendation(reply, "Trouser")
    assert fake.downloads == [photo.id]
    assert fake.dm_channel_id(bob) in fake.typing  # "fashionbot is typing…" while it works


async def test_mention_with_an_image_in_a_server_channel(bot, fake, photo_of):
    carol = fake.user("carol")
    ignored = await fake.send_guild_message(carol, "look", [fake.attachment(photo_of("Bag"))], mention_bot=False)
    mentioned = await fake.send_guild_message(carol, "find me this", [fake.attachment(photo_of("Bag", 1))])
    reply = await fake.wait_reply(mentioned)
    assert reply.data["guild_id"] == fake.guild_id
    assert_recommendation(reply, "Bag")
    assert fake.replies_to(ignored) == []  # not for the bot: no answer, nothing downloaded
    assert len(fake.downloads) == 1


# ---- feedback ----------------------------------------------------------------------------------
async def test_feedback_buttons_store_feedback_even_after_a_restart(bot, fake, service, photo_of):
    dave = fake.user("dave")
    ix = await fake.slash("recommend", {"photo": fake.attachment(photo_of("Dress"))}, user=dave)
    answer = await fake.wait_answer(ix)
    first, second = item_ids_of(answer)[:2]

    click = await fake.click(answer, f"fb:+:{first}", user=dave)
    thanks = await fake.wait_answer(click)
    assert click.callback_at - click.created < 1.0
    assert thanks.ephemeral and thanks.content == render.FEEDBACK_THANKS[1]
    uid = await db_user_id(service, dave)
    assert await service.store.feedback(uid) == {first: 1}

    # The buttons are persistent: a new process still understands the old message's buttons.
    await bot.stop()
    await bot.start()
    click = await fake.click(answer, f"fb:-:{second}", user=dave)
    thanks = await fake.wait_answer(click)
    assert thanks.content == render.FEEDBACK_THANKS[-1]
    assert await service.store.feedback(uid) == {first: 1, second: -1}


# ---- bad input --------------------------------------------------------------------------------
async def test_bad_image_gets_the_shared_message(bot, fake, service):
    erin = fake.user("erin")
    junk = b"\xff\xd8\xff\xe0 this is not really a JPEG" * 10
    with pytest.raises(BadImage) as expected:
        open_image(junk)
    ix = await fake.slash("recommend", {"photo": fake.attachment(junk, "broken.jpg")}, user=erin)
    answer = await fake.wait_answer(ix)
    assert answer.content == str(expected.value)
    assert answer.embeds == [] and answer.components == []
    # a picture that can't be read creates nothing: no user row (so no photo) for erin
    assert await db_user_id(service, erin) is None


async def test_oversized_attachment_is_refused_without_downloading(bot, fake, service):
    frank = fake.user("frank")
    limit = service.settings.max_image_bytes
    big = b"\xff\xd8\xff\xe0" + bytes(limit + 1024)
    ix = await fake.slash("recommend", {"photo": fake.attachment(big, "huge.jpg")}, user=frank)
    answer = await fake.wait_answer(ix)
    assert answer.content == render.too_large(len(big), limit)
    dm = await fake.send_dm(frank, "", [fake.attachment(big, "huge.jpg")])
    reply = await fake.wait_reply(dm)
    assert reply.content == render.too_large(len(big), limit)
    assert fake.downloads == []


async def test_anything_else_gets_a_short_hint(bot, fake):
    gina = fake.user("gina")
    text_only = await fake.send_dm(gina, "hello?")
    assert (await fake.wait_reply(text_only)).content == render.HINT
    pdf = await fake.send_dm(gina, "", [fake.attachment(b"%PDF-1.7 ...", "outfit.pdf", "application/pdf")])
    assert (await fake.wait_reply(pdf)).content == render.HINT
    ix = await fake.slash("recommend", {"photo": fake.attachment(b"hello", "notes.txt", "text/plain")}, user=gina)
    assert (await fake.wait_answer(ix)).content == render.HINT
    assert fake.downloads == []


async def test_rate_limit_is_the_shared_one(service, fake, photo_of):
    bot = await Bot(service, bot_settings(service, fake, rate_limit_per_minute=1), fake).start()
    try:
        hal = fake.user("hal")
        first = await fake.send_dm(hal, "", [fake.attachment(photo_of("Coat"))])
        assert len((await fake.wait_reply(first)).embeds) == 10
        second = await fake.send_dm(hal, "", [fake.attachment(photo_of("Coat", 1))])
        reply = await fake.wait_reply(second)
        assert re.fullmatch(render.RATE_LIMITED.format(seconds=r"\d+"), reply.content), reply.content
        assert len(fake.downloads) == 1  # the refused photo was never fetched
    finally:
        await bot.stop()


async def test_an_error_in_one_handler_does_not_kill_the_bot(bot, fake, photo_of, caplog):
    ivy = fake.user("ivy")
    broken = fake.attachment(photo_of("Shirt"), status=500)  # the CDN fails
    sent = await fake.send_dm(ivy, "", [broken])
    assert (await fake.wait_reply(sent)).content == render.INTERNAL_ERROR
    assert "photo failed (user " in caplog.text
    again = await fake.send_dm(ivy, "", [fake.attachment(photo_of("Shirt", 1))])
    assert len((await fake.wait_reply(again)).embeds) == 10


async def test_a_command_that_raises_gets_the_trees_one_friendly_answer(bot, fake, caplog, monkeypatch):
    """Issue 18: the tree's error handler is FashionTree.on_error (the documented override):
    a bug past every command's own guard still answers, privately, and the bot lives on."""
    from bot.discord.client import FashionBot

    async def broken(self, *args, **kwargs) -> None:
        raise RuntimeError("a bug in the command")

    with monkeypatch.context() as patch:
        patch.setattr(FashionBot, "deferred", broken)
        answer = await fake.wait_answer(await fake.slash("about", user=fake.user("uma")))
    assert answer.content == render.INTERNAL_ERROR and answer.ephemeral
    assert "slash command failed" in caplog.text and "a bug in the command" in caplog.text
    again = await fake.wait_answer(await fake.slash("about", user=fake.user("uma")))
    assert "efficientnet-lite0" in again.content


async def test_switch_button_answers_its_owner_and_refuses_others(bot, fake, photo_of):
    owner, stranger = fake.user("owen"), fake.user("sam")
    ix = await fake.slash("recommend", {"photo": fake.attachment(photo_of("Trouser"))}, user=owner)
    answer = await fake.wait_answer(ix)
    other = answer.components[-1]["components"][-1]["custom_id"]  # the other view of the photo
    assert re.fullmatch(SWITCH_TEMPLATE, other)
    refused = await fake.wait_answer(await fake.click(answer, other, user=stranger))
    assert refused.ephemeral and not refused.embeds and "photo" in refused.content
    switched = await fake.wait_answer(await fake.click(answer, other, user=owner))
    assert switched.ephemeral and len(switched.embeds) == 10
    assert sum(e["title"].split(". ", 1)[1].startswith("Trouser") for e in switched.embeds) >= 6
    back = [c["custom_id"] for c in switched.components[-1]["components"]]
    # the switched answer offers the way back, never the view it now shows
    assert back and all(re.fullmatch(SWITCH_TEMPLATE, c) and c != other for c in back)


async def test_style_is_rate_limited(service, fake):
    bot = await Bot(service, bot_settings(service, fake, rate_limit_per_minute=1), fake).start()
    try:
        uma = fake.user("uma")
        first = await fake.wait_answer(await fake.slash("style", user=uma))
        assert "popular" in first.content
        second = await fake.wait_answer(await fake.slash("style", user=uma))
        assert re.fullmatch(render.COMMANDS_RATE_LIMITED.format(seconds=r"\d+").replace(".", r"\."), second.content)
    finally:
        await bot.stop()


# ---- /forget and the other commands -------------------------------------------------------
async def test_forget_asks_first_then_deletes_everything(bot, fake, service, photo_of):
    jo = fake.user("jo")
    ix = await fake.slash("recommend", {"photo": fake.attachment(photo_of("Pullover"))}, user=jo)
    answer = await fake.wait_answer(ix)
    click = await fake.click(answer, f"fb:+:{item_ids_of(answer)[0]}", user=jo)
    await fake.wait_answer(click)
    uid = await db_user_id(service, jo)
    assert uid is not None

    ask = await fake.wait_answer(await fake.slash("forget", user=jo))
    assert ask.ephemeral and ask.content == render.FORGET_CONFIRM
    assert sorted(ask.custom_ids()) == ["fb:forget:no", "fb:forget:yes"]
    cancel = await fake.click(ask, "fb:forget:no", user=jo)
    await fake.wait_for(lambda: ask.edits >= 2, 10, "the question to be edited")
    assert cancel.callback_type == 6 and ask.components == []
    assert await db_user_id(service, jo) == uid  # nothing deleted

    ask = await fake.wait_answer(await fake.slash("forget", user=jo))
    yes = await fake.click(ask, "fb:forget:yes", user=jo)
    await fake.wait_for(lambda: ask.edits >= 2, 10, "the question to be edited")
    assert yes.callback_type == 6
    assert ask.content == render.forgotten({"photos": 1, "feedback": 1, "recommendations": 10})
    assert ask.components == []
    assert await db_user_id(service, jo) is None


async def test_help_about_style_and_trend(bot, fake, service):
    kim = fake.user("kim")
    help_ix = await fake.slash("help", user=kim, guild=False)
    help_msg = await fake.wait_answer(help_ix)
    assert help_msg.ephemeral and help_msg.content == HELP

    about = await fake.wait_answer(await fake.slash("about", user=kim))
    assert about.content == render.about_text(await service.about())

    style = await fake.wait_answer(await fake.slash("style", user=kim))
    assert style.ephemeral and style.content == render.style_text(await service.style(service_user(kim)))

    trend = await fake.wait_answer(await fake.slash("trend", {"tag": "dress"}, user=kim))
    assert trend.content.startswith("Trend “dress”")


async def test_style_sends_the_collage_after_a_few_photos(bot, fake, service, photo_of):
    lee = fake.user("lee")
    for nth in range(service.settings.style_min_photos):
        sent = await fake.send_dm(lee, "", [fake.attachment(photo_of("Sneaker", nth))])
        await fake.wait_reply(sent)
    style = await fake.wait_answer(await fake.slash("style", user=lee))
    assert style.content.startswith("Your style:") and "Sneakers" in style.content
    assert style.embeds[0]["image"]["url"] == "attachment://style.jpg"
    collage = Image.open(io.BytesIO(style.files["style.jpg"]))
    assert collage.format == "JPEG" and collage.width >= 400


def service_user(user: dict):
    from engine.types import UserRef

    return UserRef("discord", user["id"])


def test_only_public_http_urls_become_links():
    assert public_http_url("https://shop.example.com/p/1") == "https://shop.example.com/p/1"
    for bad in (
        None,
        "",
        "/p/1",
        "ftp://shop.example.com/x",
        "javascript:alert(1)",
        "http://localhost/x",
        "http://127.0.0.1/x",
        "http://10.0.0.5/x",
        "http://[::1]/x",
        "http://intranet/x",
    ):
        assert public_http_url(bad) is None, bad


# ---- issue 18: what a polished Discord app does ----------------------------------------------------
def command_puts(fake: FakeDiscord) -> int:
    return sum(1 for method, path in fake.requests if method == "PUT" and path.endswith("/commands"))


async def test_commands_are_synced_only_when_the_tree_changed_or_forced(service, fake, capfd):
    from bot.discord.client import COMMANDS_HASH_FILE

    hash_file = service.settings.data_dir / COMMANDS_HASH_FILE
    bot = await Bot(service, bot_settings(service, fake), fake).start()
    assert command_puts(fake) == 1 and len(hash_file.read_text().strip()) == 64
    await bot.stop()
    assert "Discord: connected as fashionbot" in capfd.readouterr().err  # whatever the log level
    # the same tree, the same application: nothing to sync (the pattern that gets bots rate-limited)
    bot = await Bot(service, bot_settings(service, fake), fake).start()
    await bot.stop()
    assert command_puts(fake) == 1
    # forced (FASHIONBOT_DISCORD_SYNC=true, the CLI's --sync)
    bot = await Bot(service, bot_settings(service, fake, discord_sync=True), fake).start()
    await bot.stop()
    assert command_puts(fake) == 2
    # the tree changed since the last sync (here: the recorded hash is another tree's)
    hash_file.write_text("0" * 64 + "\n")
    bot = await Bot(service, bot_settings(service, fake), fake).start()
    await bot.stop()
    assert command_puts(fake) == 3 and hash_file.read_text().strip() != "0" * 64
    assert set(fake.commands) >= {"recommend", "Find similar"}


async def test_installable_by_users_and_usable_in_dms_and_any_server(bot, fake):
    for name, command in fake.commands.items():
        assert sorted(command["integration_types"]) == [0, 1], name  # guild install and user install
        assert sorted(command["contexts"]) == [0, 1, 2], name  # servers, the bot's DMs, other DMs
    menu = fake.commands["Find similar"]
    assert menu["type"] == 3 and not menu.get("description")  # a message context menu


async def test_find_similar_on_any_message_with_a_picture(bot, fake, service, photo_of):
    from bot.discord.client import NO_PICTURE

    poster, asker = fake.user("poster"), fake.user("asker")
    # someone posts a photo in the server without addressing the bot; another member asks
    photo = photo_of("Dress", 5)
    posted = await fake.send_guild_message(poster, "new dress!", [fake.attachment(photo)], mention_bot=False)
    ix = await fake.message_command("Find similar", posted, user=asker)
    answer = await fake.wait_answer(ix)
    expected = await service.recommend(photo, k=10)
    assert answer.ephemeral and len(answer.embeds) == len(expected.items[:10]) > 0, answer.content
    titles = [e["title"].split(". ", 1)[1] for e in answer.embeds]
    assert titles[:3] == [s.item.title for s in expected.items[:3]]  # the posted photo's results
    assert fake.replies_to(posted) == []  # nothing said in the channel
    # a message without a picture (or only a PDF): a friendly sentence, nothing downloaded
    downloads = len(fake.downloads)
    plain = await fake.send_guild_message(poster, "hello", mention_bot=False)
    assert (await fake.wait_answer(await fake.message_command("Find similar", plain, user=asker))).content == NO_PICTURE
    pdf = await fake.send_dm(poster, "", [fake.attachment(b"%PDF-1.4", "menu.pdf", "application/pdf")])
    ix = await fake.message_command("Find similar", pdf, user=poster)
    assert (await fake.wait_answer(ix)).content == NO_PICTURE
    assert len(fake.downloads) == downloads


async def test_trend_autocompletes_from_known_trends(bot, fake, service, monkeypatch):
    from datetime import datetime

    from engine.types import TrendInfo

    now = datetime.now(UTC)
    known = [TrendInfo("linen dress", 12, now), TrendInfo("denim jacket", 8, now), TrendInfo("dress shirt", 3, now)]
    known += [TrendInfo(f"trend {n}", 1, now) for n in range(40)]

    async def trends():
        return known

    monkeypatch.setattr(service, "trends", trends)
    assert fake.commands["trend"]["options"][0]["autocomplete"] is True
    lena = fake.user("lena")
    choices = await fake.autocomplete("trend", "tag", "dress", user=lena)
    assert [c["name"] for c in choices] == ["dress shirt", "linen dress"]  # starting with it first
    assert all(c["value"] == c["name"] for c in choices)
    assert len(await fake.autocomplete("trend", "tag", "", user=lena)) == 25  # Discord's maximum

    async def broken():
        raise RuntimeError("database down")

    monkeypatch.setattr(service, "trends", broken)
    assert await fake.autocomplete("trend", "tag", "d", user=lena) == []  # no suggestions, no error
