"""What a test does as Discord users: slash commands, message commands, autocomplete,
button clicks, DMs and server messages (mixed into :class:`FakeDiscord`).
"""

from __future__ import annotations

import time
from typing import Any

from tests.support.fakes.discord_rules import (
    DIRECT_MESSAGES,
    DISPATCH,
    GUILD_MESSAGES,
    MESSAGE_CONTENT,
    FakeAttachment,
    FakeInteraction,
    SentMessage,
    now_iso,
)


class ActingAsUsers:
    """Users' actions, sent to the bot through the gateway (mixed into the fake)."""

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
