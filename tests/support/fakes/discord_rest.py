"""The fake's REST API (``/api/v10``): login, command sync, interaction callbacks and
follow-ups, channel messages, typing, and the CDN attachments are downloaded from.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from tests.support.fakes.discord_rules import (
    API,
    EPHEMERAL,
    INTERACTION_CALLBACK_TYPES,
    LOADING,
    MAX_CHOICES,
    FakeInteraction,
    Problem,
    SentMessage,
    now_iso,
)


class Rest:
    """The REST side of :class:`FakeDiscord` (mixed into it)."""

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
