"""The fake Discord itself: it must refuse what Discord refuses, or the bot tests prove
nothing. Raw HTTP and WebSocket clients here, no discord.py."""

from __future__ import annotations

import json
import zlib

import aiohttp
import pytest
import pytest_asyncio

from tests.support.fakes.discord_api import FakeDiscord
from tests.support.fakes.discord_rules import DIRECT_MESSAGES, GUILD_MESSAGES, GUILDS, LOADING, MESSAGE_CONTENT

INTENTS = GUILDS | GUILD_MESSAGES | DIRECT_MESSAGES


class RawGateway:
    """Just enough of a gateway client: JSON frames, optionally zlib-stream."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, compressed: bool) -> None:
        self.ws = ws
        self.inflate = zlib.decompressobj() if compressed else None
        self.seq: int | None = None

    async def recv(self) -> dict:
        msg = await self.ws.receive(timeout=10)
        if msg.type == aiohttp.WSMsgType.BINARY:
            assert self.inflate is not None, "binary frame on an uncompressed connection"
            assert msg.data.endswith(b"\x00\x00\xff\xff"), "each zlib-stream message ends with a sync flush"
            payload = json.loads(self.inflate.decompress(msg.data))
        elif msg.type == aiohttp.WSMsgType.TEXT:
            assert self.inflate is None, "text frame on a zlib-stream connection"
            payload = json.loads(msg.data)
        else:
            return {"closed": self.ws.close_code}
        if payload.get("s") is not None:
            self.seq = payload["s"]
        return payload

    async def recv_dispatch(self, event: str) -> dict:
        while True:
            payload = await self.recv()
            assert "closed" not in payload, payload
            if payload.get("t") == event:
                return payload["d"]


@pytest_asyncio.fixture
async def fake():
    async with FakeDiscord() as f:
        yield f


@pytest_asyncio.fixture
async def http(fake):
    headers = {"Authorization": f"Bot {fake.token}", "User-Agent": "DiscordBot (https://example.org, 1.0)"}
    async with aiohttp.ClientSession(headers=headers) as session:
        yield session


async def connect(fake, http, *, intents=INTENTS, token=None, compressed=True) -> RawGateway:
    query = "?v=10&encoding=json" + ("&compress=zlib-stream" if compressed else "")
    ws = await http.ws_connect(fake.ws_url + query)
    gw = RawGateway(ws, compressed)
    hello = await gw.recv()
    assert hello["op"] == 10 and hello["d"]["heartbeat_interval"] > 0
    await ws.send_json(
        {
            "op": 2,
            "d": {
                "token": token or fake.token,
                "intents": intents,
                "properties": {"os": "linux", "browser": "raw", "device": "raw"},
            },
        }
    )
    return gw


async def register(fake, http) -> None:
    commands = [
        {
            "name": "recommend",
            "description": "d",
            "type": 1,
            "options": [{"name": "photo", "description": "p", "type": 11, "required": True}],
        },
        {"name": "help", "description": "d", "type": 1},
    ]
    async with http.put(f"{fake.api_url}/applications/{fake.app_id}/commands", json=commands) as resp:
        assert resp.status == 200


async def test_gateway_handshake_zlib_ready_and_heartbeats(fake, http):
    gw = await connect(fake, http)
    ready = await gw.recv_dispatch("READY")
    assert ready["user"]["id"] == fake.app_id and ready["application"]["id"] == fake.app_id
    guild = await gw.recv_dispatch("GUILD_CREATE")
    assert guild["channels"][0]["id"] == fake.channel_id
    await gw.ws.send_json({"op": 1, "d": gw.seq})
    assert (await gw.recv())["op"] == 11
    assert fake.problems == []
    await gw.ws.send_json({"op": 1, "d": 999})  # a heartbeat must carry the last sequence number
    assert (await gw.recv())["op"] == 11
    assert any("heartbeat carried sequence 999" in p for p in fake.problems)
    await gw.ws.close()


async def test_gateway_plain_json_when_not_compressed(fake, http):
    gw = await connect(fake, http, compressed=False)
    await gw.recv_dispatch("READY")
    assert fake.compression == [None]
    await gw.ws.close()


async def test_gateway_refuses_privileged_intents_and_wrong_tokens(fake, http):
    gw = await connect(fake, http, intents=INTENTS | MESSAGE_CONTENT)
    assert (await gw.recv()) == {"closed": 4014}
    gw = await connect(fake, http, token="nope")
    assert (await gw.recv()) == {"closed": 4004}
    fake.problems.clear()


async def test_rest_needs_the_bot_token(fake):
    async with aiohttp.ClientSession() as anon:
        async with anon.get(f"{fake.api_url}/users/@me", headers={"User-Agent": "DiscordBot (x, 1)"}) as resp:
            assert resp.status == 401
            assert resp.headers["Content-Type"] == "application/json"  # exactly, for discord.py
        async with anon.get(f"{fake.api_url}/gateway") as resp:
            assert (await resp.json())["url"] == fake.ws_url


def embed(title="t", description="d", **extra):
    return {"title": title, "description": description} | extra


def row(*custom_ids):
    return {"type": 1, "components": [{"type": 2, "style": 2, "label": "x", "custom_id": c} for c in custom_ids]}


INVALID_MESSAGES = {
    "11 embeds": {"embeds": [embed() for _ in range(11)]},
    "title of 257": {"embeds": [embed(title="x" * 257)]},
    "description of 4097": {"embeds": [embed(description="x" * 4097)]},
    "6001 characters across embeds": {"embeds": [embed(title="", description="x" * 3000)] * 2 + [embed("x", "")]},
    "content of 2001": {"content": "x" * 2001},
    "6 action rows": {"components": [row(f"r{i}") for i in range(6)]},
    "6 buttons in a row": {"components": [row(*[f"b{i}" for i in range(6)])]},
    "custom_id of 101": {"components": [row("x" * 101)]},
    "duplicate custom_id": {"components": [row("same", "same")]},
    "ftp embed link": {"embeds": [embed(url="ftp://shop.example.com/x")]},
    "thumbnail naming no upload": {"embeds": [embed(thumbnail={"url": "attachment://missing.jpg"})]},
    "empty message": {"content": ""},
    "ephemeral channel message": {"content": "hi", "flags": 64},
}


@pytest.mark.parametrize("case", sorted(INVALID_MESSAGES))
async def test_rest_refuses_what_discord_refuses(fake, http, case):
    url = f"{fake.api_url}/channels/{fake.channel_id}/messages"
    async with http.post(url, json=INVALID_MESSAGES[case]) as resp:
        body = await resp.json()
        assert resp.status == 400 and body["code"] == 50035, (case, body)
    assert len(fake.problems) == 1 and fake.messages == []


async def test_rest_accepts_a_full_valid_message_with_files(fake, http):
    payload = {
        "content": "x" * 2000,
        "embeds": [embed("t" * 256, "d" * 300, thumbnail={"url": f"attachment://f{i}.jpg"}) for i in range(10)],
        "components": [row(*[f"b{r}{c}" for c in range(5)]) for r in range(5)],
        "attachments": [{"id": i, "filename": f"f{i}.jpg"} for i in range(10)],
    }
    form = aiohttp.FormData()
    form.add_field("payload_json", json.dumps(payload))
    for i in range(10):
        form.add_field(f"files[{i}]", b"jpeg", filename=f"f{i}.jpg", content_type="application/octet-stream")
    async with http.post(f"{fake.api_url}/channels/{fake.channel_id}/messages", data=form) as resp:
        assert resp.status == 200, await resp.text()
    (msg,) = fake.messages
    assert len(msg.files) == 10 and len(msg.embeds) == 10 and len(msg.custom_ids()) == 25
    assert fake.problems == []


async def test_commands_are_validated(fake, http):
    url = f"{fake.api_url}/applications/{fake.app_id}/commands"
    for bad in (
        {"name": "Recommend", "description": "d"},
        {"name": "ok", "description": "x" * 101},
        {
            "name": "ok",
            "description": "d",
            "options": [
                {"name": "a", "description": "a", "type": 3},
                {"name": "b", "description": "b", "type": 3, "required": True},
            ],
        },
    ):
        async with http.put(url, json=[bad]) as resp:
            assert resp.status == 400, bad
    assert len(fake.problems) == 3 and fake.commands == {}
    fake.problems.clear()


async def test_interaction_rules(fake, http):
    await register(fake, http)
    gw = await connect(fake, http)
    await gw.recv_dispatch("READY")
    user = fake.user()

    ix = await fake.slash("help", user=user)
    d = await gw.recv_dispatch("INTERACTION_CREATE")
    assert d["id"] == ix.id and d["data"]["name"] == "help"
    callback = f"{fake.api_url}/interactions/{ix.id}/{ix.token}/callback"
    followup = f"{fake.api_url}/webhooks/{fake.app_id}/{ix.token}"
    async with http.post(followup, json={"content": "too early"}) as resp:
        assert (await resp.json())["code"] == 10015  # no follow-up before the acknowledgement
    async with http.post(callback, json={"type": 6}) as resp:
        assert resp.status == 400  # "deferred update" is for components only
    async with http.post(callback, json={"type": 5}) as resp:
        body = await resp.json()
        assert resp.status == 200 and body["interaction"]["response_message_loading"]
    assert ix.original.flags & LOADING and not ix.answered
    async with http.post(callback, json={"type": 5}) as resp:
        assert (await resp.json())["code"] == 40060  # acknowledged once only
    async with http.post(followup + "?wait=true", json={"content": "done"}) as resp:
        assert resp.status == 200
    assert ix.answered and ix.original.content == "done" and not ix.original.loading  # replaced "thinking…"
    assert len(fake.problems) == 3

    fake.answer_within = 0.0  # the 3-second rule, with the clock run out
    late = await fake.slash("help", user=user)
    async with http.post(f"{fake.api_url}/interactions/{late.id}/{late.token}/callback", json={"type": 5}) as resp:
        assert (await resp.json())["code"] == 10062
    assert len(fake.problems) == 4
    fake.problems.clear()
    await gw.ws.close()


async def test_events_follow_intents_and_the_message_content_rules(fake, http):
    gw = await connect(fake, http, intents=GUILDS | GUILD_MESSAGES)  # no DIRECT_MESSAGES
    await gw.recv_dispatch("READY")
    user = fake.user()
    att = fake.attachment(b"jpeg")
    await fake.send_dm(user, "dm", [att])
    await fake.send_guild_message(user, "not for you", [att], mention_bot=False)
    await fake.send_guild_message(user, "for you", [att])
    first = await gw.recv_dispatch("MESSAGE_CREATE")  # the DM was never delivered
    assert first["content"] == "" and first["attachments"] == []  # blanked: no message-content intent
    second = await gw.recv_dispatch("MESSAGE_CREATE")
    assert second["content"].endswith("for you") and len(second["attachments"]) == 1
    assert second["mentions"][0]["id"] == fake.app_id
    await gw.ws.close()
