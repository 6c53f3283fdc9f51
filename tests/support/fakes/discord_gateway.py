"""The fake's WebSocket gateway: HELLO, heartbeats, IDENTIFY (intents checked), READY,
GUILD_CREATE, then the events a test dispatches; JSON text frames or ``zlib-stream``.
"""

from __future__ import annotations

import json
import zlib
from typing import Any

from aiohttp import WSMsgType, web

from tests.support.fakes.discord_rules import (
    DISPATCH,
    HEARTBEAT,
    HEARTBEAT_ACK,
    HELLO,
    IDENTIFY,
    INVALID_SESSION,
    PRIVILEGED,
    RESUME,
)


class Gateway:
    """The gateway side of :class:`FakeDiscord` (mixed into it)."""

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
