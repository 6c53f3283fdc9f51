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
import json
import re
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web

DISCORD_EPOCH_MS = 1420070400000
API = "/api/v10"

# Gateway opcodes
DISPATCH, HEARTBEAT, IDENTIFY, RESUME, HELLO, HEARTBEAT_ACK, INVALID_SESSION = 0, 1, 2, 6, 10, 11, 9

# Intents
GUILDS = 1 << 0
GUILD_MEMBERS = 1 << 1
GUILD_PRESENCES = 1 << 8
GUILD_MESSAGES = 1 << 9
DIRECT_MESSAGES = 1 << 12
MESSAGE_CONTENT = 1 << 15
PRIVILEGED = GUILD_MEMBERS | GUILD_PRESENCES | MESSAGE_CONTENT

EPHEMERAL = 1 << 6
LOADING = 1 << 7
ALLOWED_BOT_FLAGS = EPHEMERAL | (1 << 2) | (1 << 12)  # ephemeral, suppress embeds, suppress notifications

# Limits (https://discord.com/developers/docs/resources/message#embed-object-embed-limits, components, ...)
MAX_CONTENT = 2000
MAX_EMBEDS = 10
MAX_EMBED_TITLE = 256
MAX_EMBED_DESCRIPTION = 4096
MAX_EMBED_FIELDS = 25
MAX_EMBED_TOTAL = 6000
MAX_ROWS = 5
MAX_ROW_BUTTONS = 5
MAX_CUSTOM_ID = 100
MAX_BUTTON_LABEL = 80
MAX_FILES = 10
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
ANSWER_WITHIN = 3.0  # seconds to acknowledge an interaction
NAME_RE = re.compile(r"^[-_\w]{1,32}$")

INTERACTION_CALLBACK_TYPES = {
    2: {4, 5, 9},  # application command: message, deferred message, modal
    3: {4, 5, 6, 7, 9},  # component: + deferred update, update
    4: {8},  # autocomplete: the suggestions
}
MAX_CHOICES = 25
INTEGRATION_TYPES = {0, 1}  # guild install, user install
CONTEXTS = {0, 1, 2}  # guild, bot DM, private channel (DMs and group DMs between users)


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


class Problem(Exception):
    """Something Discord would refuse: (HTTP status, Discord error code, message)."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class FakeAttachment:
    id: str
    channel_id: str
    filename: str
    data: bytes
    content_type: str | None
    size: int  # declared (what Discord tells the bot)
    status: int = 200  # what the CDN answers

    def payload(self, base: str) -> dict[str, Any]:
        url = f"{base}/cdn/attachments/{self.channel_id}/{self.id}/{self.filename}"
        out: dict[str, Any] = {
            "id": self.id,
            "filename": self.filename,
            "size": self.size,
            "url": url,
            "proxy_url": url,
        }
        if self.content_type is not None:
            out["content_type"] = self.content_type
        return out


@dataclass
class SentMessage:
    """A message the bot made, as Discord stores it."""

    data: dict[str, Any]
    files: dict[str, bytes]
    via: str  # "channel", "callback", "followup", "deferred"
    interaction: FakeInteraction | None = None
    edits: int = 0

    @property
    def id(self) -> str:
        return self.data["id"]

    @property
    def channel_id(self) -> str:
        return self.data["channel_id"]

    @property
    def content(self) -> str:
        return self.data.get("content") or ""

    @property
    def embeds(self) -> list[dict[str, Any]]:
        return self.data.get("embeds") or []

    @property
    def components(self) -> list[dict[str, Any]]:
        return self.data.get("components") or []

    @property
    def flags(self) -> int:
        return int(self.data.get("flags") or 0)

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & EPHEMERAL)

    @property
    def loading(self) -> bool:
        return bool(self.flags & LOADING)

    def buttons(self) -> list[dict[str, Any]]:
        return [c for row in self.components for c in row.get("components", []) if c.get("type") == 2]

    def custom_ids(self) -> list[str]:
        return [b["custom_id"] for b in self.buttons() if "custom_id" in b]


@dataclass
class FakeInteraction:
    id: str
    token: str
    type: int
    payload: dict[str, Any]
    created: float
    user_id: str
    callback_type: int | None = None
    callback_at: float | None = None
    original: SentMessage | None = None  # the message the response created / the component's message
    followups: list[SentMessage] = field(default_factory=list)
    answered: bool = False  # a message with the answer exists (not just "thinking…")
    choices: list[dict[str, Any]] = field(default_factory=list)  # autocomplete suggestions sent

    @property
    def channel_id(self) -> str:
        return self.payload["channel_id"]


class FakeDiscord:
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

    # ---- acting as users ------------------------------------------------------------------
    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        await self.wait_for(lambda: self.connected, 30, "a gateway session")
        self._seq += 1
        await self._send({"op": DISPATCH, "t": event, "s": self._seq, "d": data})

    def _interaction_base(self, type_: int, user: dict[str, Any], guild: bool) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.snowflake(),
            "application_id": self.app_id,
            "type": type_,
            "token": "ix-" + self.snowflake() + "-secret",
            "version": 1,
            "locale": "en-US",
            "entitlements": [],
            "attachment_size_limit": 10 * 1024 * 1024,
            "app_permissions": str((1 << 11) | (1 << 14) | (1 << 15)),
        }
        if guild:
            d |= {
                "guild_id": self.guild_id,
                "guild_locale": "en-US",
                "guild": {"id": self.guild_id, "locale": "en-US", "features": []},
                "channel": self._text_channel(),
                "channel_id": self.channel_id,
                "member": self._member(user),
                "authorizing_integration_owners": {"0": self.guild_id},
                "context": 0,
            }
        else:
            dm = self.dm_channel_id(user)
            d |= {
                "channel": {"id": dm, "type": 1, "recipients": [user], "last_message_id": None, "flags": 0},
                "channel_id": dm,
                "user": user,
                "authorizing_integration_owners": {"0": "0"},
                "context": 1,
            }
        return d

    def _record_interaction(self, d: dict[str, Any], user: dict[str, Any]) -> FakeInteraction:
        ix = FakeInteraction(
            id=d["id"], token=d["token"], type=d["type"], payload=d, created=time.monotonic(), user_id=user["id"]
        )
        self.interactions[ix.token] = ix
        return ix

    async def slash(
        self,
        name: str,
        options: dict[str, Any] | None = None,
        *,
        user: dict[str, Any],
        guild: bool = True,
    ) -> FakeInteraction:
        """A user runs a slash command. Attachment options take a FakeAttachment."""
        command = self.commands.get(name)
        assert command is not None, f"/{name} was never registered; registered: {sorted(self.commands)}"
        options = options or {}
        declared = {o["name"]: o for o in command.get("options", [])}
        unknown = set(options) - set(declared)
        assert not unknown, f"/{name} has no options {unknown}"
        missing = {n for n, o in declared.items() if o.get("required") and n not in options}
        assert not missing, f"/{name} requires {missing}"
        d = self._interaction_base(2, user, guild)
        opts, resolved = [], {}
        for key, value in options.items():
            otype = declared[key]["type"]
            if otype == 11:
                assert isinstance(value, FakeAttachment), f"option {key} takes an attachment"
                resolved.setdefault("attachments", {})[value.id] = value.payload(self.base)
                opts.append({"name": key, "type": 11, "value": value.id})
            else:
                opts.append({"name": key, "type": otype, "value": value})
        d["data"] = {"id": command["id"], "name": name, "type": 1, "options": opts}
        if resolved:
            d["data"]["resolved"] = resolved
        ix = self._record_interaction(d, user)
        await self.dispatch("INTERACTION_CREATE", d)
        return ix

    async def message_command(
        self, name: str, message: dict[str, Any] | SentMessage, *, user: dict[str, Any], guild: bool | None = None
    ) -> FakeInteraction:
        """A user runs a message context-menu command ("Apps → name") on ``message``: a
        user's message (as ``send_dm`` / ``send_guild_message`` return) or the bot's."""
        command = self.commands.get(name)
        assert command is not None and command.get("type") == 3, f"no message command {name!r}: {sorted(self.commands)}"
        data = message.data if isinstance(message, SentMessage) else message
        in_guild = ("guild_id" in data) if guild is None else guild
        d = self._interaction_base(2, user, in_guild)
        if not in_guild:
            d["channel_id"] = data["channel_id"]
            d["channel"]["id"] = data["channel_id"]
        d["data"] = {
            "id": command["id"],
            "name": name,
            "type": 3,
            "target_id": data["id"],
            "resolved": {"messages": {data["id"]: data}},
        }
        ix = self._record_interaction(d, user)
        await self.dispatch("INTERACTION_CREATE", d)
        return ix

    async def autocomplete(
        self, name: str, option: str, typed: str, *, user: dict[str, Any], guild: bool = True
    ) -> list[dict[str, Any]]:
        """A user types ``typed`` into ``option`` of ``/name``: the suggestions the bot sent."""
        command = self.commands.get(name)
        assert command is not None, f"/{name} was never registered"
        declared = {o["name"]: o for o in command.get("options", [])}
        assert declared.get(option, {}).get("autocomplete"), f"/{name} {option} has no autocomplete"
        d = self._interaction_base(4, user, guild)
        d["data"] = {
            "id": command["id"],
            "name": name,
            "type": 1,
            "options": [{"name": option, "type": declared[option]["type"], "value": typed, "focused": True}],
        }
        ix = self._record_interaction(d, user)
        await self.dispatch("INTERACTION_CREATE", d)
        await self.wait_for(
            lambda: ix.callback_type is not None, 10, "autocomplete suggestions", fail=lambda: self.unacknowledged(ix)
        )
        return ix.choices

    async def click(self, message: SentMessage, custom_id: str, *, user: dict[str, Any]) -> FakeInteraction:
        """A user clicks a button on a message the bot sent."""
        current = next((m for m in self.messages if m.id == message.id), message)
        assert custom_id in current.custom_ids(), f"no button {custom_id!r} on message {message.id}"
        guild = "guild_id" in current.data
        d = self._interaction_base(3, user, guild)
        if not guild:
            d["channel_id"] = current.channel_id
            d["channel"]["id"] = current.channel_id
        d["data"] = {"custom_id": custom_id, "component_type": 2}
        d["message"] = current.data
        ix = self._record_interaction(d, user)
        ix.original = current
        await self.dispatch("INTERACTION_CREATE", d)
        return ix

    def _user_message(
        self,
        user: dict[str, Any],
        channel_id: str,
        content: str,
        attachments: list[FakeAttachment],
        guild: bool,
        mentions: list[dict[str, Any]],
    ) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.snowflake(),
            "channel_id": channel_id,
            "author": user,
            "content": content,
            "timestamp": now_iso(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": mentions,
            "mention_roles": [],
            "attachments": [a.payload(self.base) for a in attachments],
            "embeds": [],
            "components": [],
            "pinned": False,
            "type": 0,
            "flags": 0,
        }
        if guild:
            d["guild_id"] = self.guild_id
            d["member"] = {k: v for k, v in self._member(user).items() if k != "user"}
        self.user_messages[d["id"]] = d
        return d

    def _intents(self) -> int:
        return int(self.identifies[-1].get("intents", 0)) if self.identifies else 0

    async def send_dm(
        self,
        user: dict[str, Any],
        content: str = "",
        attachments: list[FakeAttachment] = (),  # type: ignore[assignment]
    ) -> dict[str, Any]:
        channel = self.dm_channel_id(user)
        for a in attachments:
            a.channel_id = channel
        d = self._user_message(user, channel, content, list(attachments), False, [])
        if self._intents() & DIRECT_MESSAGES:  # Discord only sends what the bot subscribed to
            await self.dispatch("MESSAGE_CREATE", d)
        return d

    async def send_guild_message(
        self,
        user: dict[str, Any],
        content: str = "",
        attachments: list[FakeAttachment] = (),  # type: ignore[assignment]
        *,
        mention_bot: bool = True,
    ) -> dict[str, Any]:
        mentions = [self.bot_user] if mention_bot else []
        if mention_bot:
            content = f"<@{self.app_id}> {content}".strip()
        d = self._user_message(user, self.channel_id, content, list(attachments), True, mentions)
        intents = self._intents()
        if intents & GUILD_MESSAGES:
            event = dict(d)
            if not intents & MESSAGE_CONTENT and not mention_bot:
                # Without the message-content intent, Discord blanks what isn't for the bot.
                event |= {"content": "", "attachments": [], "embeds": [], "components": []}
            await self.dispatch("MESSAGE_CREATE", event)
        return d

    # ---- gateway -----------------------------------------------------------------------------
    async def _send(self, payload: dict[str, Any]) -> None:
        ws = self._ws
        if ws is None:
            raise AssertionError("no gateway connection")
        text = json.dumps(payload)
        async with self._ws_lock:
            if self._compressor is not None:
                data = self._compressor.compress(text.encode()) + self._compressor.flush(zlib.Z_SYNC_FLUSH)
                await ws.send_bytes(data)
            else:
                await ws.send_str(text)

    def problem(self, text: str) -> None:
        self.problems.append(text)

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        if q.get("v") != "10" or q.get("encoding") != "json":
            self.problem(f"gateway URL without v=10&encoding=json: {request.query_string}")
        compress = q.get("compress")
        if compress not in (None, "zlib-stream"):
            self.problem(f"gateway compression {compress!r} is not supported by the fake")
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self._sockets.add(ws)
        # a new connection replaces the old session
        self._ws = ws
        self._identified.clear()
        self._seq = self._heartbeat_seq = 0
        self._compressor = zlib.compressobj() if compress == "zlib-stream" else None
        self.compression.append(compress)
        self.connections += 1
        try:
            hello = {"heartbeat_interval": self.heartbeat_interval_ms}
            await self._send({"op": HELLO, "d": hello, "s": None, "t": None})
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    if msg.type == WSMsgType.BINARY:
                        self.problem("client sent a binary gateway frame (we asked for json)")
                    continue
                try:
                    payload = json.loads(msg.data)
                except ValueError:
                    self.problem("client sent invalid JSON on the gateway")
                    await ws.close(code=4002, message=b"Decode error")
                    break
                await self._on_gateway_message(ws, payload)
        finally:
            self._sockets.discard(ws)
            if self._ws is ws:
                self._ws = None
                self._identified.clear()
            await self._notify()
        return ws

    async def _on_gateway_message(self, ws: web.WebSocketResponse, payload: dict[str, Any]) -> None:
        op = payload.get("op")
        d = payload.get("d")
        if op == HEARTBEAT:
            self.heartbeats += 1
            # The last sequence the client has *processed*: dispatches still in flight (sent
            # by us, not yet read by a busy client) may make it lag behind ours, never lead.
            expected = self._seq if self._seq else None
            in_flight_ok = isinstance(d, int) and self._heartbeat_seq <= d <= self._seq
            if d != expected and not in_flight_ok:
                self.problem(f"heartbeat carried sequence {d!r}, expected {expected!r}")
            if isinstance(d, int):
                self._heartbeat_seq = d
            await self._send({"op": HEARTBEAT_ACK, "d": None, "s": None, "t": None})
            self.heartbeat_acks += 1
            await self._notify()
        elif op == IDENTIFY:
            if not isinstance(d, dict) or d.get("token") != self.token:
                self.problem("IDENTIFY with a wrong token")
                await ws.close(code=4004, message=b"Authentication failed.")
                return
            intents = d.get("intents")
            if not isinstance(intents, int):
                self.problem("IDENTIFY without intents")
                await ws.close(code=4013, message=b"Invalid intent(s).")
                return
            if intents & PRIVILEGED & ~self.granted_intents:
                await ws.close(code=4014, message=b"Disallowed intent(s).")
                self.identifies.append(d)
                await self._notify()
                return
            props = d.get("properties") or {}
            if not all(k in props for k in ("os", "browser", "device")):
                self.problem("IDENTIFY without connection properties")
            self.identifies.append(d)
            self._seq += 1
            await self._send(
                {
                    "op": DISPATCH,
                    "t": "READY",
                    "s": self._seq,
                    "d": {
                        "v": 10,
                        "user": self.bot_user,
                        "guilds": [{"id": self.guild_id, "unavailable": True}],
                        "session_id": "session-" + self.snowflake(),
                        "resume_gateway_url": self.ws_url,
                        "application": {"id": self.app_id, "flags": 0},
                        "private_channels": [],
                        "relationships": [],
                    },
                }
            )
            self._seq += 1
            await self._send({"op": DISPATCH, "t": "GUILD_CREATE", "s": self._seq, "d": self._guild()})
            self._identified.set()
            await self._notify()
        elif op == RESUME:
            self.problem("client tried to RESUME (the fake never drops sessions)")
            await self._send({"op": INVALID_SESSION, "d": False, "s": None, "t": None})
        elif op in (3, 4, 8):  # presence, voice, request guild members: allowed, ignored
            pass
        else:
            self.problem(f"unexpected gateway opcode {op}")

    # ---- REST plumbing ------------------------------------------------------------------------
    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable[..., Any]) -> web.StreamResponse:
        self.requests.append((request.method, request.path))
        if request.path.startswith(API):
            # Interaction callbacks and webhooks are authorised by their token in the URL.
            needs_auth = not (
                request.path.startswith(f"{API}/interactions/")
                or request.path.startswith(f"{API}/webhooks/")
                or request.path == f"{API}/gateway"
            )
            if needs_auth and not request.headers.get("User-Agent", "").startswith("DiscordBot ("):
                self.problem(f"{request.method} {request.path}: User-Agent is not 'DiscordBot (url, version)'")
            if needs_auth and request.headers.get("Authorization") != f"Bot {self.token}":
                return self._error(401, 0, "401: Unauthorized", record=False)
        try:
            return await handler(request)
        except Problem as p:
            return self._error(p.status, p.code, p.message)
        finally:
            await self._notify()

    def _error(self, status: int, code: int, message: str, *, record: bool = True) -> web.Response:
        if record:
            self.problem(f"{status} {code}: {message}")
        return self._json({"message": message, "code": code}, status=status)

    @staticmethod
    def _json(data: Any, status: int = 200) -> web.Response:
        # discord.py parses a body only when the Content-Type is exactly application/json
        return web.Response(status=status, body=json.dumps(data).encode(), headers={"Content-Type": "application/json"})

    async def _unknown(self, request: web.Request) -> web.Response:
        raise Problem(404, 0, f"404: Not Found ({request.method} {request.path})")

    async def _read_body(self, request: web.Request) -> tuple[dict[str, Any], dict[int, tuple[str, bytes]]]:
        """JSON or multipart (payload_json + files[n]) → (payload, {index: (filename, bytes)})."""
        files: dict[int, tuple[str, bytes]] = {}
        if request.content_type == "multipart/form-data":
            payload: dict[str, Any] = {}
            reader = await request.multipart()
            async for part in reader:
                name = part.name or ""
                if name == "payload_json":
                    payload = json.loads(await part.text())
                elif m := re.fullmatch(r"files\[(\d+)\]", name):
                    files[int(m[1])] = (part.filename or "", bytes(await part.read()))
                else:
                    raise Problem(400, 50035, f"Invalid Form Body: unexpected multipart field {name!r}")
            return payload, files
        if request.can_read_body:
            try:
                return await request.json(), files
            except ValueError:
                raise Problem(400, 50109, "The request body contains invalid JSON.") from None
        return {}, files

    # ---- validation ------------------------------------------------------------------------------
    def check_message(
        self, payload: dict[str, Any], files: dict[int, tuple[str, bytes]], *, interaction: bool, edit: bool = False
    ) -> list[str]:
        errors: list[str] = []
        content = payload.get("content")
        if content is not None and len(str(content)) > MAX_CONTENT:
            errors.append(f"content is {len(str(content))} characters (max {MAX_CONTENT})")
        embeds = payload.get("embeds") or []
        if len(embeds) > MAX_EMBEDS:
            errors.append(f"{len(embeds)} embeds (max {MAX_EMBEDS})")
        uploaded = {name for name, _ in files.values()}
        for a in payload.get("attachments") or []:
            if "id" in a and isinstance(a["id"], int) and a["id"] not in files:
                errors.append(f"attachments[] names file index {a['id']} that wasn't uploaded")
        total = 0
        for n, e in enumerate(embeds):
            title, desc = e.get("title") or "", e.get("description") or ""
            if len(title) > MAX_EMBED_TITLE:
                errors.append(f"embed {n}: title is {len(title)} characters (max {MAX_EMBED_TITLE})")
            if len(desc) > MAX_EMBED_DESCRIPTION:
                errors.append(f"embed {n}: description is {len(desc)} characters (max {MAX_EMBED_DESCRIPTION})")
            fields = e.get("fields") or []
            if len(fields) > MAX_EMBED_FIELDS:
                errors.append(f"embed {n}: {len(fields)} fields (max {MAX_EMBED_FIELDS})")
            for f in fields:
                if len(f.get("name") or "") > 256 or len(f.get("value") or "") > 1024:
                    errors.append(f"embed {n}: a field is too long")
            footer = (e.get("footer") or {}).get("text") or ""
            author = (e.get("author") or {}).get("name") or ""
            if len(footer) > 2048 or len(author) > 256:
                errors.append(f"embed {n}: footer or author too long")
            total += len(title) + len(desc) + len(footer) + len(author)
            total += sum(len(f.get("name") or "") + len(f.get("value") or "") for f in fields)
            if e.get("url") is not None and not _is_http_url(e["url"]):
                errors.append(f"embed {n}: url {e['url']!r} is not an http(s) URL")
            for key in ("thumbnail", "image"):
                url = (e.get(key) or {}).get("url")
                if url is None:
                    continue
                if url.startswith("attachment://"):
                    if not edit and url[len("attachment://") :] not in uploaded:
                        errors.append(f"embed {n}: {key} {url!r} names no uploaded file (got {sorted(uploaded)})")
                elif not _is_http_url(url):
                    errors.append(f"embed {n}: {key} url {url!r} is neither http(s) nor attachment://")
        if total > MAX_EMBED_TOTAL:
            errors.append(f"embeds hold {total} characters together (max {MAX_EMBED_TOTAL})")
        errors += self._check_components(payload.get("components") or [])
        if len(files) > MAX_FILES:
            errors.append(f"{len(files)} files (max {MAX_FILES})")
        size = sum(len(b) for _, b in files.values())
        if size > MAX_UPLOAD_BYTES:
            errors.append(f"files total {size} bytes (max {MAX_UPLOAD_BYTES})")
        flags = int(payload.get("flags") or 0)
        if flags & ~ALLOWED_BOT_FLAGS:
            errors.append(f"flags {flags} not allowed")
        if flags & EPHEMERAL and not interaction:
            errors.append("ephemeral flag on a channel message")
        if not edit and not (content or embeds or files or payload.get("components") or payload.get("sticker_ids")):
            errors.append("Cannot send an empty message")
        return errors

    def _check_components(self, rows: list[dict[str, Any]]) -> list[str]:
        errors: list[str] = []
        if len(rows) > MAX_ROWS:
            errors.append(f"{len(rows)} action rows (max {MAX_ROWS})")
        seen: set[str] = set()
        for r, row in enumerate(rows):
            if row.get("type") != 1:
                errors.append(f"component {r} at top level is type {row.get('type')}, not an action row")
                continue
            items = row.get("components") or []
            if not 1 <= len(items) <= MAX_ROW_BUTTONS:
                errors.append(f"row {r} has {len(items)} components (1..{MAX_ROW_BUTTONS})")
            for b in items:
                if b.get("type") != 2:
                    continue
                style, cid, label = b.get("style"), b.get("custom_id"), b.get("label")
                if style not in (1, 2, 3, 4, 5, 6):
                    errors.append(f"row {r}: button style {style!r}")
                if label is not None and len(label) > MAX_BUTTON_LABEL:
                    errors.append(f"row {r}: button label longer than {MAX_BUTTON_LABEL}")
                if not label and not b.get("emoji"):
                    errors.append(f"row {r}: a button needs a label or an emoji")
                if style == 5:
                    if not b.get("url") or cid is not None:
                        errors.append(f"row {r}: a link button needs a url and no custom_id")
                    continue
                if not cid:
                    errors.append(f"row {r}: a button without a custom_id")
                    continue
                if len(cid) > MAX_CUSTOM_ID:
                    errors.append(f"row {r}: custom_id {cid!r} is longer than {MAX_CUSTOM_ID}")
                if cid in seen:
                    errors.append(f"custom_id {cid!r} appears twice")
                seen.add(cid)
        return errors

    def _check_command(self, c: dict[str, Any]) -> list[str]:
        errors: list[str] = []
        name = c.get("name") or ""
        ctype = c.get("type", 1)
        if ctype == 1 and (not NAME_RE.fullmatch(name) or name != name.lower()):
            errors.append(f"command name {name!r} is invalid")
        if ctype == 1 and not 1 <= len(c.get("description") or "") <= 100:
            errors.append(f"/{name}: description must be 1-100 characters")
        if ctype in (2, 3):  # user / message context menus: any 1-32 characters, no description
            if not 1 <= len(name) <= 32:
                errors.append(f"context menu name {name!r} must be 1-32 characters")
            if c.get("description"):
                errors.append(f"context menu {name!r} can't have a description")
            if c.get("options"):
                errors.append(f"context menu {name!r} can't have options")
        elif ctype != 1:
            errors.append(f"command {name!r}: type {ctype!r}")
        for key, allowed in (("integration_types", INTEGRATION_TYPES), ("contexts", CONTEXTS)):
            value = c.get(key)
            if value is not None and (not isinstance(value, list) or not set(value) <= allowed or not value):
                errors.append(f"{name!r}: {key} {value!r} (allowed: {sorted(allowed)})")
        options = c.get("options") or []
        if len(options) > 25:
            errors.append(f"/{name}: more than 25 options")
        optional_seen = False
        names: set[str] = set()
        for o in options:
            oname = o.get("name") or ""
            if not NAME_RE.fullmatch(oname) or oname != oname.lower():
                errors.append(f"/{name}: option name {oname!r} is invalid")
            if oname in names:
                errors.append(f"/{name}: option {oname!r} twice")
            names.add(oname)
            if not 1 <= len(o.get("description") or "") <= 100:
                errors.append(f"/{name} {oname}: description must be 1-100 characters")
            if o.get("type") not in range(1, 12):
                errors.append(f"/{name} {oname}: option type {o.get('type')!r}")
            if o.get("required"):
                if optional_seen:
                    errors.append(f"/{name}: required option {oname!r} after an optional one")
            else:
                optional_seen = True
            if len(o.get("choices") or []) > 25:
                errors.append(f"/{name} {oname}: more than 25 choices")
            if o.get("autocomplete") and o.get("choices"):
                errors.append(f"/{name} {oname}: autocomplete and choices together")
        return errors

    # ---- REST: login, gateway, commands ------------------------------------------------------------
    async def _get_gateway(self, request: web.Request) -> web.Response:
        return self._json({"url": self.ws_url})

    async def _get_gateway_bot(self, request: web.Request) -> web.Response:
        return self._json(
            {
                "url": self.ws_url,
                "shards": 1,
                "session_start_limit": {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1},
            }
        )

    async def _get_me(self, request: web.Request) -> web.Response:
        return self._json(self.bot_user | {"verified": True, "mfa_enabled": False, "flags": 0, "email": None})

    async def _get_application(self, request: web.Request) -> web.Response:
        return self._json(
            {
                "id": self.app_id,
                "name": "fashionbot",
                "description": "",
                "icon": None,
                "rpc_origins": [],
                "bot_public": True,
                "bot_require_code_grant": False,
                "owner": self.owner,
                "team": None,
                "verify_key": "0" * 64,
                "flags": 0,
                "bot": self.bot_user,
                "interactions_endpoint_url": None,
                "redirect_uris": [],
                "tags": [],
            }
        )

    async def _put_commands(self, request: web.Request) -> web.Response:
        if request.match_info["app"] != self.app_id:
            raise Problem(403, 50001, "Missing Access (wrong application id)")
        payload, _ = await self._read_body(request)
        if not isinstance(payload, list):
            raise Problem(400, 50035, "Invalid Form Body: expected a list of commands")
        if len(payload) > 100:
            raise Problem(400, 30032, "Maximum number of application commands reached (100)")
        errors = [e for c in payload for e in self._check_command(c)]
        names = [c.get("name") for c in payload]
        if len(set(names)) != len(names):
            errors.append("two commands share a name")
        if errors:
            raise Problem(400, 50035, "Invalid Form Body: " + "; ".join(errors))
        out = []
        self.commands = {}
        for c in payload:
            registered = c | {"id": self.snowflake(), "application_id": self.app_id, "version": self.snowflake()}
            registered.setdefault("type", 1)
            registered.setdefault("description", "")  # Discord sends "" for context menus
            self.commands[c["name"]] = registered
            out.append(registered)
        return self._json(out)

    async def _get_commands(self, request: web.Request) -> web.Response:
        return self._json(list(self.commands.values()))

    # ---- REST: interactions -------------------------------------------------------------------------
    def _new_message(
        self,
        payload: dict[str, Any],
        files: dict[int, tuple[str, bytes]],
        *,
        channel_id: str,
        via: str,
        interaction: FakeInteraction | None,
        flags: int = 0,
    ) -> SentMessage:
        mid = self.snowflake()
        stored_files = {name: data for name, data in files.values()}
        data: dict[str, Any] = {
            "id": mid,
            "channel_id": channel_id,
            "author": self.bot_user,
            "content": payload.get("content") or "",
            "timestamp": now_iso(),
            "edited_timestamp": None,
            "tts": bool(payload.get("tts")),
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": self._attachment_payloads(channel_id, files),
            "embeds": payload.get("embeds") or [],
            "components": payload.get("components") or [],
            "pinned": False,
            "type": 0,
            "flags": flags | int(payload.get("flags") or 0),
        }
        if interaction is not None:
            data["webhook_id"] = self.app_id
            data["application_id"] = self.app_id
            data["type"] = 20 if interaction.type == 2 else 0
            data["interaction_metadata"] = {
                "id": interaction.id,
                "type": interaction.type,
                "user": self._interaction_user(interaction),
                "authorizing_integration_owners": interaction.payload.get("authorizing_integration_owners", {}),
            }
            if "guild_id" in interaction.payload:
                data["guild_id"] = interaction.payload["guild_id"]
        elif channel_id == self.channel_id:
            data["guild_id"] = self.guild_id
        if payload.get("message_reference"):
            ref = payload["message_reference"]
            data["message_reference"] = {
                "type": ref.get("type", 0),
                "message_id": str(ref.get("message_id")),
                "channel_id": channel_id,
            }
            data["type"] = 19
        msg = SentMessage(data=data, files=stored_files, via=via, interaction=interaction)
        self.messages.append(msg)
        return msg

    def _interaction_user(self, ix: FakeInteraction) -> dict[str, Any]:
        p = ix.payload
        return p["member"]["user"] if "member" in p else p["user"]

    def _attachment_payloads(self, channel_id: str, files: dict[int, tuple[str, bytes]]) -> list[dict[str, Any]]:
        out = []
        for _, (name, data) in sorted(files.items()):
            aid = self.snowflake()
            url = f"{self.base}/cdn/attachments/{channel_id}/{aid}/{name}"
            out.append({"id": aid, "filename": name, "size": len(data), "url": url, "proxy_url": url})
        return out

    def _apply_edit(self, msg: SentMessage, payload: dict[str, Any], files: dict[int, tuple[str, bytes]]) -> None:
        for key in ("content", "embeds", "components"):
            if key in payload:
                msg.data[key] = payload[key] if payload[key] is not None else ([] if key != "content" else "")
        if files:
            msg.files.update({name: data for name, data in files.values()})
            msg.data["attachments"] = self._attachment_payloads(msg.channel_id, files)
        msg.data["flags"] = msg.flags & ~LOADING
        msg.data["edited_timestamp"] = now_iso()
        msg.edits += 1

    def _interaction_by_token(self, token: str, app: str | None = None) -> FakeInteraction:
        ix = self.interactions.get(token)
        if ix is None or (app is not None and app != self.app_id):
            raise Problem(404, 10015, "Unknown Webhook")
        if time.monotonic() - ix.created > 15 * 60:
            raise Problem(401, 50027, "Invalid Webhook Token")
        return ix

    async def _interaction_callback(self, request: web.Request) -> web.Response:
        token = request.match_info["token"]
        ix = self.interactions.get(token)
        if ix is None or ix.id != request.match_info["iid"]:
            raise Problem(404, 10062, "Unknown interaction")
        elapsed = time.monotonic() - ix.created
        if elapsed > self.answer_within:
            raise Problem(404, 10062, f"Unknown interaction (answered after {elapsed:.2f} s)")
        if ix.callback_type is not None:
            raise Problem(400, 40060, "Interaction has already been acknowledged.")
        body, files = await self._read_body(request)
        rtype = body.get("type")
        if rtype not in INTERACTION_CALLBACK_TYPES.get(ix.type, set()):
            raise Problem(400, 50035, f"Invalid Form Body: callback type {rtype!r} for interaction type {ix.type}")
        data = body.get("data") or {}
        if rtype == 8:
            choices = data.get("choices")
            if (
                not isinstance(choices, list)
                or len(choices) > MAX_CHOICES
                or not all(
                    isinstance(c, dict) and 1 <= len(str(c.get("name", ""))) <= 100 and "value" in c for c in choices
                )
            ):
                raise Problem(400, 50035, f"Invalid Form Body: autocomplete choices {choices!r}")
            ix.callback_type, ix.callback_at, ix.choices, ix.answered = rtype, time.monotonic(), choices, True
            await self._notify()
            return self._json({"interaction": {"id": ix.id, "type": ix.type}, "resource": {"type": 8}})
        if rtype in (4, 7):
            errors = self.check_message(data, files, interaction=True, edit=rtype == 7)
            if errors:
                raise Problem(400, 50035, "Invalid Form Body: " + "; ".join(errors))
        ix.callback_type, ix.callback_at = rtype, time.monotonic()
        channel = ix.channel_id
        if rtype == 4:
            ix.original = self._new_message(data, files, channel_id=channel, via="callback", interaction=ix)
            ix.answered = True
        elif rtype == 5:
            flags = LOADING | (int(data.get("flags") or 0) & EPHEMERAL)
            ix.original = self._new_message({}, {}, channel_id=channel, via="deferred", interaction=ix, flags=flags)
        elif rtype == 7:
            assert ix.original is not None
            self._apply_edit(ix.original, data, files)
            ix.answered = True
        # rtype 6: deferred update; the original stays the component's message
        result: dict[str, Any] = {
            "interaction": {
                "id": ix.id,
                "type": ix.type,
                "response_message_loading": rtype == 5,
                "response_message_ephemeral": bool(ix.original and ix.original.ephemeral),
            }
        }
        if ix.original is not None and rtype in (4, 5, 7):
            result["interaction"]["response_message_id"] = ix.original.id
            result["resource"] = {"type": rtype, "message": ix.original.data}
        elif rtype == 6:
            result["resource"] = {"type": 6}
        return self._json(result)

    async def _followup(self, request: web.Request) -> web.StreamResponse:
        ix = self._interaction_by_token(request.match_info["token"], request.match_info["app"])
        if ix.callback_type is None:
            raise Problem(404, 10015, "Unknown Webhook (follow-up before the interaction was acknowledged)")
        payload, files = await self._read_body(request)
        errors = self.check_message(payload, files, interaction=True)
        if errors:
            raise Problem(400, 50035, "Invalid Form Body: " + "; ".join(errors))
        if ix.callback_type == 5 and ix.original is not None and ix.original.loading:
            # The first follow-up after a deferral replaces the "thinking…" message.
            self._apply_edit(ix.original, payload, files)
            msg = ix.original
        else:
            msg = self._new_message(payload, files, channel_id=ix.channel_id, via="followup", interaction=ix)
        ix.followups.append(msg)
        ix.answered = True
        if request.query.get("wait") in ("true", "1", "True"):
            return self._json(msg.data)
        return web.Response(status=204)

    def _webhook_message(self, ix: FakeInteraction, mid: str) -> SentMessage:
        if mid == "@original":
            if ix.original is None:
                raise Problem(404, 10008, "Unknown Message")
            return ix.original
        for m in ix.followups:
            if m.id == mid:
                return m
        raise Problem(404, 10008, "Unknown Message")

    async def _edit_webhook_message(self, request: web.Request) -> web.Response:
        ix = self._interaction_by_token(request.match_info["token"], request.match_info["app"])
        if ix.callback_type is None:
            raise Problem(404, 10015, "Unknown Webhook (edit before the interaction was acknowledged)")
        msg = self._webhook_message(ix, request.match_info["mid"])
        payload, files = await self._read_body(request)
        errors = self.check_message(payload, files, interaction=True, edit=True)
        if errors:
            raise Problem(400, 50035, "Invalid Form Body: " + "; ".join(errors))
        self._apply_edit(msg, payload, files)
        ix.answered = True
        return self._json(msg.data)

    async def _get_webhook_message(self, request: web.Request) -> web.Response:
        ix = self._interaction_by_token(request.match_info["token"], request.match_info["app"])
        return self._json(self._webhook_message(ix, request.match_info["mid"]).data)

    # ---- REST: channels ------------------------------------------------------------------------------
    def _known_channel(self, cid: str) -> bool:
        return cid == self.channel_id or cid in self.dm_channels.values()

    async def _create_message(self, request: web.Request) -> web.Response:
        cid = request.match_info["cid"]
        if not self._known_channel(cid):
            raise Problem(404, 10003, "Unknown Channel")
        payload, files = await self._read_body(request)
        errors = self.check_message(payload, files, interaction=False)
        ref = payload.get("message_reference")
        if ref:
            target = self.user_messages.get(str(ref.get("message_id")))
            if target is None or target["channel_id"] != cid:
                errors.append("message_reference names no message in this channel")
        if errors:
            raise Problem(400, 50035, "Invalid Form Body: " + "; ".join(errors))
        msg = self._new_message(payload, files, channel_id=cid, via="channel", interaction=None)
        return self._json(msg.data)

    async def _edit_channel_message(self, request: web.Request) -> web.Response:
        msg = next((m for m in self.messages if m.id == request.match_info["mid"]), None)
        if msg is None or msg.channel_id != request.match_info["cid"]:
            raise Problem(404, 10008, "Unknown Message")
        if msg.interaction is not None and msg.ephemeral:
            raise Problem(404, 10008, "Unknown Message (ephemeral messages are edited through the webhook)")
        payload, files = await self._read_body(request)
        errors = self.check_message(payload, files, interaction=False, edit=True)
        if errors:
            raise Problem(400, 50035, "Invalid Form Body: " + "; ".join(errors))
        self._apply_edit(msg, payload, files)
        return self._json(msg.data)

    async def _typing(self, request: web.Request) -> web.Response:
        cid = request.match_info["cid"]
        if not self._known_channel(cid):
            raise Problem(404, 10003, "Unknown Channel")
        self.typing.append(cid)
        return web.Response(status=204)

    # ---- CDN --------------------------------------------------------------------------------------------
    async def _cdn(self, request: web.Request) -> web.Response:
        att = self.attachments.get(request.match_info["aid"])
        if att is None or att.filename != request.match_info["filename"]:
            return web.Response(status=404, text="Not Found")
        self.downloads.append(att.id)
        if att.status != 200:
            return web.Response(status=att.status, text="CDN error")
        return web.Response(body=att.data, content_type=att.content_type or "application/octet-stream")


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.netloc)
