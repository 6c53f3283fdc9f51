"""`fashionbot run`: Telegram and Discord in one process, on one service, each talking
to its fake platform on 127.0.0.1; a photo on each at the same moment, both answered."""

from __future__ import annotations

import asyncio

import discord
import pytest
from pydantic import SecretStr

from bot.app import configured_bots, run_frontends
from tests.support.fakes.discord_api import FakeDiscord
from tests.support.fakes.telegram_api import FakeBotAPI


@pytest.fixture
def discord_globals():
    base, gateway = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    yield
    discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = base, gateway


async def test_both_bots_answer_photos_sent_at_the_same_moment(service, photo_of, discord_globals) -> None:
    with FakeBotAPI() as telegram:
        async with FakeDiscord(heartbeat_interval_ms=500) as fake_discord:
            settings = service.settings.model_copy(
                update={
                    "telegram_bot_token": SecretStr(telegram.token),
                    "telegram_base_url": telegram.base_url,
                    "telegram_base_file_url": telegram.base_file_url,
                    "discord_bot_token": SecretStr(fake_discord.token),
                    "discord_api_url": fake_discord.api_url,
                }
            )
            bots = configured_bots(service, settings)
            assert [b.name for b in bots] == ["telegram", "discord"]
            running = asyncio.create_task(run_frontends(bots))
            try:
                await telegram.wait_for("deleteWebhook")  # polling starts right after
                await fake_discord.wait_for(lambda: fake_discord.connected, 30, "the Discord bot to connect")
                assert not running.done()
                # The same moment: both events are delivered before either is answered.
                telegram.push_update(telegram.make_photo_update(501, photo_of("Sandal")))
                zoe = fake_discord.user("zoe")
                sent = await fake_discord.send_dm(zoe, "", [fake_discord.attachment(photo_of("Coat"))])
                album = (await telegram.wait_for("sendMediaGroup", lambda c: c.chat_id == 501))[-1]
                reply = await fake_discord.wait_reply(sent)
            finally:
                running.cancel()
                await asyncio.gather(running, return_exceptions=True)
            assert len(album.params["media"]) == 10
            assert len(reply.embeds) == 10
            assert not telegram.violations and not fake_discord.problems
    # Both users are in the one database.
    assert await service.store.user_id("telegram", "501", create=False) is not None
    assert await service.store.user_id("discord", zoe["id"], create=False) is not None
