"""A fake Discord on 127.0.0.1 for testing the real discord.py client.

REST (``/api/v10``) and a WebSocket gateway (``/gateway``) in one aiohttp app:

* the gateway speaks HELLO, answers heartbeats (and checks their sequence number),
  takes IDENTIFY (token, intents: privileged intents the app wasn't granted close the
  connection with 4014, as Discord does), sends READY and a GUILD_CREATE, and then
  delivers INTERACTION_CREATE and MESSAGE_CREATE; plain JSON text frames or
  ``zlib-stream``, as the client asks;
* REST serves what discord.py needs to log in, sync commands, answer interactions,
  send follow-ups and channel messages (JSON or multipart with files) and download
  attachments from a fake CDN (every download is recorded);
* it checks what Discord checks, answers a violation with Discord's error and records
  it in ``problems``: ≤ 10 embeds, title ≤ 256, description ≤ 4096, 6000 characters
  across a message's embeds, content ≤ 2000, ≤ 5 action rows of ≤ 5 buttons,
  ``custom_id`` ≤ 100 and unique, embed links http(s), ``attachment://`` references to
  uploaded files, ≤ 10 files, command names and descriptions, an interaction
  acknowledged once and within 3 seconds, follow-ups only after that.

Tests act as users with `slash`, `click`, `send_dm` and `send_guild_message`, and read
what the bot sent from `messages` (or wait for it with `wait_for` / `wait_answer`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from tests.support.fakes.discord_gateway import Gateway
from tests.support.fakes.discord_rest import Rest
from tests.support.fakes.discord_rules import (
    ANSWER_WITHIN,
    API,
    DISCORD_EPOCH_MS,
    FakeAttachment,
    FakeInteraction,
    MessageRules,
    SentMessage,
    now_iso,
)
from tests.support.fakes.discord_users import ActingAsUsers


class FakeDiscord(ActingAsUsers, Gateway, Rest, MessageRules):
    """The fake Discord: one aiohttp app on 127.0.0.1 with the gateway (``discord_gateway``),
    the REST API (``discord_rest``) and the checks (``discord_rules``); tests act as users
    through ``discord_users``. Use as ``async with FakeDiscord() as fake:``."""

    def __init__(
        self,
        *,
        token: str = "fake-bot-token.not-a-secret",
        heartbeat_interval_ms: int = 1000,
        granted_intents: int = 0,
        answer_within: float = ANSWER_WITHIN,
    ) -> None:
        self.token = token
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.granted_intents = granted_intents  # privileged intents the app may use
        self.answer_within = answer_within
        self._counter = 0
        self.app_id = self.snowflake()
        self.bot_user = self.user_payload("fashionbot", bot=True, id=self.app_id)
        self.owner = self.user_payload("owner")
        self.guild_id = self.snowflake()
        self.channel_id = self.snowflake()  # a text channel in the guild

        self.problems: list[str] = []
        self.requests: list[tuple[str, str]] = []  # (method, path)
        self.commands: dict[str, dict[str, Any]] = {}
        self.messages: list[SentMessage] = []
        self.user_messages: dict[str, dict[str, Any]] = {}
        self.interactions: dict[str, FakeInteraction] = {}
        self.attachments: dict[str, FakeAttachment] = {}
        self.downloads: list[str] = []  # attachment ids, in order
        self.typing: list[str] = []  # channel ids
        self.dm_channels: dict[str, str] = {}  # user id -> DM channel id
        self.identifies: list[dict[str, Any]] = []
        self.heartbeats = 0
        self.heartbeat_acks = 0
        self.connections = 0
        self.compression: list[str | None] = []

        self._ws: web.WebSocketResponse | None = None
        self._ws_lock = asyncio.Lock()
        self._compressor: Any = None
        self._seq = 0
        self._heartbeat_seq = 0  # the sequence the last heartbeat carried
        self._identified = asyncio.Event()
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None
        self._sockets: set[web.WebSocketResponse] = set()
        self.base = ""

    # ---- lifecycle ---------------------------------------------------------------------
    async def start(self) -> FakeDiscord:
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024 * 1024)
        r = app.router
        r.add_get("/gateway", self._gateway)
        r.add_get(f"{API}/gateway", self._get_gateway)
        r.add_get(f"{API}/gateway/bot", self._get_gateway_bot)
        r.add_get(f"{API}/users/@me", self._get_me)
        r.add_get(f"{API}/oauth2/applications/@me", self._get_application)
        r.add_put(f"{API}/applications/{{app}}/commands", self._put_commands)
        r.add_get(f"{API}/applications/{{app}}/commands", self._get_commands)
        r.add_post(f"{API}/interactions/{{iid}}/{{token}}/callback", self._interaction_callback)
        r.add_post(f"{API}/webhooks/{{app}}/{{token}}", self._followup)
        r.add_patch(f"{API}/webhooks/{{app}}/{{token}}/messages/{{mid}}", self._edit_webhook_message)
        r.add_get(f"{API}/webhooks/{{app}}/{{token}}/messages/{{mid}}", self._get_webhook_message)
        r.add_post(f"{API}/channels/{{cid}}/messages", self._create_message)
        r.add_patch(f"{API}/channels/{{cid}}/messages/{{mid}}", self._edit_channel_message)
        r.add_post(f"{API}/channels/{{cid}}/typing", self._typing)
        r.add_get("/cdn/attachments/{cid}/{aid}/{filename}", self._cdn)
        r.add_route("*", "/{tail:.*}", self._unknown)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base = f"http://127.0.0.1:{port}"
        return self

    async def close(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> FakeDiscord:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def api_url(self) -> str:
        return self.base + API

    @property
    def ws_url(self) -> str:
        return self.base.replace("http://", "ws://") + "/gateway"

    # ---- ids and payloads -------------------------------------------------------------
    def snowflake(self) -> str:
        self._counter += 1
        ms = int(time.time() * 1000) - DISCORD_EPOCH_MS
        return str((ms << 22) | (self._counter & 0x3FFFFF))

    def user_payload(self, name: str, *, bot: bool = False, id: str | None = None) -> dict[str, Any]:
        out = {
            "id": id or self.snowflake(),
            "username": name,
            "discriminator": "0",
            "global_name": name,
            "avatar": None,
            "public_flags": 0,
        }
        if bot:
            out["bot"] = True
        return out

    def user(self, name: str = "alice") -> dict[str, Any]:
        """A person who talks to the bot."""
        return self.user_payload(name)

    def _member(self, user: dict[str, Any]) -> dict[str, Any]:
        return {
            "user": user,
            "roles": [],
            "joined_at": now_iso(),
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "permissions": str((1 << 11) | (1 << 10) | (1 << 15)),
        }

    def _text_channel(self) -> dict[str, Any]:
        return {
            "id": self.channel_id,
            "type": 0,
            "guild_id": self.guild_id,
            "name": "outfits",
            "position": 0,
            "permission_overwrites": [],
            "nsfw": False,
            "parent_id": None,
            "topic": None,
            "last_message_id": None,
            "rate_limit_per_user": 0,
        }

    def _guild(self) -> dict[str, Any]:
        return {
            "id": self.guild_id,
            "name": "Fashion test server",
            "icon": None,
            "owner_id": self.owner["id"],
            "roles": [
                {
                    "id": self.guild_id,
                    "name": "@everyone",
                    "permissions": str((1 << 10) | (1 << 11) | (1 << 14) | (1 << 15) | (1 << 16)),
                    "position": 0,
                    "color": 0,
                    "hoist": False,
                    "managed": False,
                    "mentionable": False,
                    "flags": 0,
                }
            ],
            "emojis": [],
            "stickers": [],
            "features": [],
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "system_channel_id": None,
            "system_channel_flags": 0,
            "preferred_locale": "en-US",
            "joined_at": now_iso(),
            "large": False,
            "unavailable": False,
            "member_count": 2,
            "members": [self._member(self.bot_user)],
            "channels": [self._text_channel()],
            "threads": [],
            "voice_states": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
        }

    def dm_channel_id(self, user: dict[str, Any]) -> str:
        return self.dm_channels.setdefault(user["id"], self.snowflake())

    def attachment(
        self,
        data: bytes,
        filename: str = "photo.jpg",
        content_type: str | None = "image/jpeg",
        *,
        size: int | None = None,
        channel_id: str | None = None,
        status: int = 200,
    ) -> FakeAttachment:
        """A file a user uploaded; ``size`` is what Discord declares (defaults to the truth)."""
        att = FakeAttachment(
            id=self.snowflake(),
            channel_id=channel_id or self.channel_id,
            filename=filename,
            data=data,
            content_type=content_type,
            size=len(data) if size is None else size,
            status=status,
        )
        self.attachments[att.id] = att
        return att

    @property
    def connected(self) -> bool:
        """A bot is connected to the gateway and has been sent READY."""
        return self._ws is not None and self._identified.is_set()

    # ---- waiting ------------------------------------------------------------------------
    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(
        self,
        predicate: Callable[[], Any],
        timeout: float = 30.0,
        what: str = "condition",
        fail: Callable[[], str | None] | None = None,
    ) -> Any:
        """Wait until ``predicate()`` is truthy (returns it); ``fail()`` returning text
        stops the wait early with that text."""
        deadline = time.monotonic() + timeout
        async with self._changed:
            while True:
                value = predicate()
                if value:
                    return value
                reason = fail() if fail else None
                if reason:
                    raise AssertionError(f"fake Discord: {reason}; problems: {self.problems}")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"fake Discord: timed out waiting for {what}; problems: {self.problems}")
                try:  # wake up now and then to re-check time-based failures
                    await asyncio.wait_for(self._changed.wait(), min(left, 0.25))
                except TimeoutError:
                    pass

    def unacknowledged(self, ix: FakeInteraction) -> str | None:
        if ix.callback_type is None and time.monotonic() - ix.created > self.answer_within:
            return f"interaction {ix.id} was not acknowledged within {self.answer_within:g} s"
        return None

    def flag_unacknowledged(self) -> None:
        """Record every interaction the bot never acknowledged in time as a problem."""
        for ix in self.interactions.values():
            reason = self.unacknowledged(ix)
            if reason and reason not in self.problems:
                self.problems.append(reason)

    async def wait_identified(self, timeout: float = 30.0) -> dict[str, Any]:
        count = len(self.identifies)
        await self.wait_for(lambda: len(self.identifies) > count or self._identified.is_set(), timeout, "IDENTIFY")
        return self.identifies[-1]

    async def wait_answer(self, ix: FakeInteraction, timeout: float = 60.0) -> SentMessage:
        """The message that answers an interaction (after any "thinking…")."""
        await self.wait_for(
            lambda: ix.answered, timeout, f"an answer to interaction {ix.id}", fail=lambda: self.unacknowledged(ix)
        )
        assert ix.original is not None
        return ix.original

    async def wait_reply(self, to_message: dict[str, Any], timeout: float = 60.0) -> SentMessage:
        """The bot's reply to a user's message (a channel message referencing it)."""

        def found() -> SentMessage | None:
            for m in self.messages:
                ref = m.data.get("message_reference") or {}
                if m.via == "channel" and ref.get("message_id") == to_message["id"]:
                    return m
            return None

        return await self.wait_for(found, timeout, f"a reply to message {to_message['id']}")

    def replies_to(self, to_message: dict[str, Any]) -> list[SentMessage]:
        return [
            m
            for m in self.messages
            if m.via == "channel" and (m.data.get("message_reference") or {}).get("message_id") == to_message["id"]
        ]
