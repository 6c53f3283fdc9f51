"""A fake Telegram Bot API server for tests: aiohttp on 127.0.0.1, in its own thread.

It speaks the real wire protocol, so the real python-telegram-bot ``Application``
talks to it unmodified (``base_url`` / ``base_file_url``):

* ``/bot<token>/<method>``: getMe, getUpdates (long poll with offsets), deleteWebhook,
  setWebhook, setMyCommands, setMyDescription, setMyShortDescription, sendMessage,
  sendChatAction, sendMediaGroup, sendPhoto,
  editMessageText, answerCallbackQuery, getFile; form, multipart (``attach://``
  uploads) and JSON bodies.
* ``/file/bot<token>/<path>``: file downloads (counted in ``downloads``).

Requests are checked the way Telegram checks them, answering 400 with a description
(and recording a *violation*, so a test can assert none happened): albums of 2 to
10 photos, captions ≤ 1024 and texts ≤ 4096 (UTF-16 units), ``callback_data`` ≤ 64
bytes, URL buttons only with absolute public http(s) URLs (no localhost, private
addresses or single-label hosts), replies to messages that exist, uploaded photos
that decode, callback queries answered at most once, edits that change something.
A wrong token gets 401 ``Unauthorized``.

It runs in a thread with its own event loop, like the real Telegram is on another
machine: its own work (parsing uploads, checking pictures) never shows up as a
stall in the loop under test. Test helpers (``push_update``, ``make_*_update``,
``wait_for``, ``calls``) are safe to call from the test's loop.
"""

from __future__ import annotations

import asyncio
import io
import ipaddress
import itertools
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from PIL import Image

TOKEN = "123456789:AAFakeTokenForTests_0123456789abcdefXYZ"
DOWNLOAD_CAP = 20 * 1024 * 1024
CHAT_ACTIONS = {
    "typing",
    "upload_photo",
    "record_video",
    "upload_video",
    "record_voice",
    "upload_voice",
    "upload_document",
    "choose_sticker",
    "find_location",
    "record_video_note",
    "upload_video_note",
}
JSON_FIELDS = {
    "reply_markup",
    "media",
    "allowed_updates",
    "commands",
    "reply_parameters",
    "scope",
    "entities",
    "caption_entities",
    "link_preview_options",
}


def tg_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


class ApiError(Exception):
    def __init__(self, code: int, description: str, *, violation: bool = True, retry_after: int | None = None):
        super().__init__(description)
        self.code = code
        self.description = description
        self.violation = violation
        self.retry_after = retry_after


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    files: dict[str, bytes]
    at: float  # time.monotonic() when the request arrived
    status: int = 200
    result: Any = None
    error: str | None = None

    @property
    def chat_id(self) -> int | None:
        value = self.params.get("chat_id")
        try:
            return int(value)
        except (TypeError, ValueError):
            return None


@dataclass
class StoredFile:
    file_id: str
    unique_id: str
    data: bytes
    declared_size: int | None
    path: str


@dataclass
class Fault:
    """An injected failure: answer ``method`` (for ``chat_id``, when set) with an error."""

    method: str
    code: int
    description: str
    chat_id: int | None = None
    times: int = 1
    retry_after: int | None = None


@dataclass
class Violation:
    method: str
    description: str
    params: dict[str, Any] = field(default_factory=dict)


def public_url_problem(url: Any) -> str | None:
    """Why Telegram would refuse ``url`` in a URL button, or None."""
    if not isinstance(url, str) or not url:
        return "empty URL"
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").rstrip(".").lower()
        parts.port  # noqa: B018
    except ValueError:
        return "unparsable URL"
    if parts.scheme not in ("http", "https", "tg"):
        return f"unsupported URL protocol {parts.scheme!r}"
    if parts.scheme == "tg":
        return None
    if not host:
        return "URL without a host"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        if host == "localhost" or host.endswith((".local", ".localhost", ".internal")) or "." not in host:
            return f"host {host!r} is not public"
        if all(re.fullmatch(r"0x[0-9a-f]*|[0-9]+", label) for label in host.split(".")):
            return f"host {host!r} is a numeric address"
        return None
    if not ip.is_global:
        return f"address {ip} is not public"
    return None


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that *declares* width×height pixels but carries almost no data."""
    import struct
    import zlib

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


class FakeBotAPI:
    """The fake server. Use as ``with FakeBotAPI() as api:`` or ``start()`` / ``stop()``."""

    def __init__(self, token: str = TOKEN, *, bot_username: str = "fashion_test_bot") -> None:
        self.token = token
        self.bot_id = int(token.split(":", 1)[0])
        self.bot_username = bot_username
        self.calls: list[Call] = []
        self.violations: list[Violation] = []
        self.downloads: list[str] = []
        self.faults: list[Fault] = []
        self.pushed_at: dict[int, float] = {}  # update_id -> time.monotonic() when pushed
        self.webhook: dict[str, Any] | None = None
        self.commands: list[dict[str, Any]] = []
        self.description: str | None = None  # setMyDescription
        self.short_description: str | None = None  # setMyShortDescription
        self._lock = threading.RLock()
        self._updates: list[dict[str, Any]] = []
        self._update_ids = itertools.count(1000)
        self._file_ids = itertools.count(1)
        self._query_ids = itertools.count(1)
        self._message_ids: dict[int, itertools.count] = {}
        self._messages: dict[tuple[int, int], dict[str, Any]] = {}
        self._files: dict[str, StoredFile] = {}
        self._files_by_path: dict[str, StoredFile] = {}
        self._open_queries: dict[str, int] = {}  # callback query id -> user id, until answered
        self._chats: dict[int, dict[str, Any]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._new_update: asyncio.Event | None = None
        self._closing = False
        self.port = 0

    # ---- lifecycle -------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    @property
    def base_file_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/file/bot"

    def start(self) -> FakeBotAPI:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._serve())
            except BaseException as err:
                failure.append(err)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.close()

        self._thread = threading.Thread(target=run, name="fake-telegram", daemon=True)
        self._thread.start()
        ready.wait(10)
        if failure:
            raise failure[0]
        return self

    async def _serve(self) -> None:
        self._new_update = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._download)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            done = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
            done.result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop = self._thread = None

    async def _shutdown(self) -> None:
        self._closing = True
        self._new_update.set()  # long polls return now
        await self._runner.cleanup()

    def __enter__(self) -> FakeBotAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ---- test helpers: updates -------------------------------------------------------------
    def push_update(self, update: dict[str, Any]) -> int:
        """Queue an update for getUpdates; returns its update_id."""
        with self._lock:
            update_id = next(self._update_ids)
            update = {"update_id": update_id, **update}
            self._updates.append(update)
            self.pushed_at[update_id] = time.monotonic()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._new_update.set)
        return update_id

    def user(self, user_id: int, first_name: str = "Test") -> dict[str, Any]:
        return {"id": user_id, "is_bot": False, "first_name": f"{first_name}{user_id}", "language_code": "en"}

    def chat(self, user_id: int) -> dict[str, Any]:
        chat = {"id": user_id, "type": "private", "first_name": f"Test{user_id}"}
        with self._lock:
            self._chats[user_id] = chat
        return chat

    def group(self, chat_id: int, title: str = "Outfits") -> dict[str, Any]:
        """A group chat (negative id, as Telegram's are); pass it as ``chat=`` to make_*_update."""
        chat = {"id": -abs(chat_id), "type": "supergroup", "title": title}
        with self._lock:
            self._chats[chat["id"]] = chat
        return chat

    def _message(self, user_id: int, *, chat: dict[str, Any] | None = None, **content: Any) -> dict[str, Any]:
        chat = chat or self.chat(user_id)
        msg = {
            "message_id": self._next_message_id(chat["id"]),
            "date": int(time.time()),
            "chat": chat,
            "from": self.user(user_id),
            **content,
        }
        with self._lock:
            self._messages[(chat["id"], msg["message_id"])] = msg
        return msg

    def add_file(
        self, data: bytes, *, declared_size: int | None = -1, suffix: str = "jpg", kind: str = "photos"
    ) -> StoredFile:
        """Store a file the bot may fetch with getFile; ``declared_size`` -1 = the real size,
        None = not declared."""
        n = next(self._file_ids)
        stored = StoredFile(
            file_id=f"AgAC-fake-{n}-{'x' * 20}",
            unique_id=f"AQAD{n}",
            data=data,
            declared_size=len(data) if declared_size == -1 else declared_size,
            path=f"{kind}/file_{n}.{suffix}",
        )
        with self._lock:
            self._files[stored.file_id] = stored
            self._files_by_path[stored.path] = stored
        return stored

    def make_photo_update(
        self,
        user_id: int,
        jpeg: bytes,
        *,
        caption: str | None = None,
        declared_size: int | None = -1,
        chat: dict[str, Any] | None = None,
        reply_to: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A compressed photo as Telegram delivers it: a thumbnail and the full size.

        Bytes that don't decode (hostile-input tests: what a modified client could
        upload) are delivered as the one "full size" version, 1280x1280 declared."""
        sizes: list[dict[str, Any]] = []
        try:
            with Image.open(io.BytesIO(jpeg)) as img:
                w, h = img.size
                thumb = img.convert("RGB")
                thumb.thumbnail((90, 90))
            buf = io.BytesIO()
            thumb.save(buf, format="JPEG", quality=70)
            small = self.add_file(buf.getvalue())
            sizes.append(
                {
                    "file_id": small.file_id,
                    "file_unique_id": small.unique_id,
                    "width": thumb.width,
                    "height": thumb.height,
                    "file_size": small.declared_size,
                }
            )
        except Exception:
            w = h = 1280
        full = self.add_file(jpeg, declared_size=declared_size)
        sizes.append(
            {
                "file_id": full.file_id,
                "file_unique_id": full.unique_id,
                "width": w,
                "height": h,
                **({"file_size": full.declared_size} if full.declared_size is not None else {}),
            }
        )
        content: dict[str, Any] = {"photo": sizes}
        if caption:
            content["caption"] = caption
            content.update(self._mention_entities(caption, "caption_entities"))
        if reply_to is not None:
            content["reply_to_message"] = reply_to
        return {"message": self._message(user_id, chat=chat, **content)}

    def _mention_entities(self, text: str, key: str) -> dict[str, Any]:
        """Entities Telegram would mark: ``@bot`` mentions (offsets in UTF-16 units)."""
        entities = []
        for m in re.finditer(r"@\w{5,32}", text):
            entities.append({"type": "mention", "offset": tg_len(text[: m.start()]), "length": tg_len(m.group())})
        return {key: entities} if entities else {}

    def make_document_update(
        self,
        user_id: int,
        data: bytes,
        *,
        file_name: str = "photo.jpg",
        mime_type: str | None = "image/jpeg",
        declared_size: int | None = -1,
        chat: dict[str, Any] | None = None,
        caption: str | None = None,
    ) -> dict[str, Any]:
        """A file sent "as a file" (uncompressed)."""
        stored = self.add_file(data, declared_size=declared_size, suffix=file_name.rsplit(".", 1)[-1], kind="documents")
        doc: dict[str, Any] = {"file_id": stored.file_id, "file_unique_id": stored.unique_id, "file_name": file_name}
        if mime_type:
            doc["mime_type"] = mime_type
        if stored.declared_size is not None:
            doc["file_size"] = stored.declared_size
        content: dict[str, Any] = {"document": doc}
        if caption:
            content["caption"] = caption
            content.update(self._mention_entities(caption, "caption_entities"))
        return {"message": self._message(user_id, chat=chat, **content)}

    def make_text_update(self, user_id: int, text: str, *, chat: dict[str, Any] | None = None) -> dict[str, Any]:
        content: dict[str, Any] = {"text": text}
        if text.startswith("/"):
            length = len(text.split()[0])
            content["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
        return {"message": self._message(user_id, chat=chat, **content)}

    def make_sticker_update(self, user_id: int) -> dict[str, Any]:
        stored = self.add_file(b"RIFF....WEBP", kind="stickers", suffix="webp")
        sticker = {
            "file_id": stored.file_id,
            "file_unique_id": stored.unique_id,
            "type": "regular",
            "width": 512,
            "height": 512,
            "is_animated": False,
            "is_video": False,
            "emoji": "😀",
        }
        return {"message": self._message(user_id, sticker=sticker)}

    def make_voice_update(self, user_id: int) -> dict[str, Any]:
        stored = self.add_file(b"OggS" + b"\0" * 100, kind="voice", suffix="oga")
        voice = {
            "file_id": stored.file_id,
            "file_unique_id": stored.unique_id,
            "duration": 2,
            "mime_type": "audio/ogg",
            "file_size": stored.declared_size,
        }
        return {"message": self._message(user_id, voice=voice)}

    def make_video_update(self, user_id: int) -> dict[str, Any]:
        stored = self.add_file(b"\0\0\0\x18ftypmp42" + b"\0" * 100, kind="videos", suffix="mp4")
        video = {
            "file_id": stored.file_id,
            "file_unique_id": stored.unique_id,
            "width": 640,
            "height": 360,
            "duration": 3,
            "mime_type": "video/mp4",
            "file_size": stored.declared_size,
        }
        return {"message": self._message(user_id, video=video)}

    def make_callback_update(self, user_id: int, data: str, message: dict[str, Any]) -> dict[str, Any]:
        """A press on an inline button of ``message`` (a message the bot sent)."""
        query_id = str(next(self._query_ids))
        with self._lock:
            self._open_queries[query_id] = user_id
            current = self._messages.get((message["chat"]["id"], message["message_id"]), message)
        return {
            "callback_query": {
                "id": query_id,
                "from": self.user(user_id),
                "chat_instance": f"ci-{user_id}",
                "data": data,
                "message": current,
            }
        }

    # ---- test helpers: what the bot did -----------------------------------------------------------
    def calls_of(self, method: str, chat_id: int | None = None, *, ok: bool | None = True) -> list[Call]:
        with self._lock:
            return [
                c
                for c in self.calls
                if c.method == method
                and (chat_id is None or c.chat_id == chat_id)
                and (ok is None or (c.status == 200) == ok)
            ]

    def texts_to(self, chat_id: int) -> list[str]:
        return [str(c.params.get("text")) for c in self.calls_of("sendMessage", chat_id)]

    async def wait_for(
        self,
        method: str,
        predicate: Callable[[Call], bool] | None = None,
        timeout: float = 15.0,
        *,
        count: int = 1,
        ok: bool | None = True,
    ) -> list[Call]:
        """Wait (polling, from any loop) until ``count`` calls of ``method`` match."""
        deadline = time.monotonic() + timeout
        while True:
            found = [c for c in self.calls_of(method, ok=ok) if predicate is None or predicate(c)]
            if len(found) >= count:
                return found
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{count} × {method} not seen within {timeout}s; got {len(found)}. "
                    f"Calls: {[c.method for c in self.calls][-30:]}; violations: {self.violations}"
                )
            await asyncio.sleep(0.005)

    def fail(
        self,
        method: str,
        code: int,
        description: str,
        *,
        chat_id: int | None = None,
        times: int = 1,
        retry_after: int | None = None,
    ) -> None:
        """Inject an error answer for the next ``times`` matching calls."""
        with self._lock:
            self.faults.append(Fault(method, code, description, chat_id, times, retry_after))

    def fail_with_retry_after(self, method: str, seconds: int = 1, *, chat_id: int | None = None) -> None:
        self.fail(method, 429, f"Too Many Requests: retry after {seconds}", chat_id=chat_id, retry_after=seconds)

    def message(self, chat_id: int, message_id: int) -> dict[str, Any] | None:
        with self._lock:
            return self._messages.get((chat_id, message_id))

    # ---- the server ----------------------------------------------------------------------------------
    def _next_message_id(self, chat_id: int) -> int:
        with self._lock:
            return next(self._message_ids.setdefault(chat_id, itertools.count(1)))

    async def _params(self, request: web.Request) -> tuple[dict[str, Any], dict[str, bytes]]:
        params: dict[str, Any] = dict(request.query)
        files: dict[str, bytes] = {}
        ctype = request.content_type
        if ctype == "application/json":
            params.update(await request.json())
        elif ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
            form = await request.post()
            for key, value in form.items():
                if isinstance(value, web.FileField):
                    files[key] = value.file.read()
                else:
                    params[key] = value
        for key in JSON_FIELDS & params.keys():
            if isinstance(params[key], str):
                try:
                    params[key] = json.loads(params[key])
                except ValueError:
                    raise ApiError(400, f"Bad Request: can't parse {key} JSON object") from None
        return params, files

    async def _api(self, request: web.Request) -> web.Response:
        """One Bot API call. It enters ``calls`` once answered (``at`` is its arrival)."""
        method = request.match_info["method"]
        if request.match_info["token"] != self.token:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        call = Call(method=method, params={}, files={}, at=time.monotonic())
        try:
            call.params, call.files = await self._params(request)
            self._injected_fault(call)
            handler = getattr(self, f"_m_{method}", None)
            if handler is None:
                raise ApiError(404, "Not Found: method not found")
            call.result = await handler(call.params, call.files)
        except ApiError as err:
            call.status, call.error = err.code, err.description
            if err.violation:
                with self._lock:
                    self.violations.append(Violation(method, err.description, call.params))
            body: dict[str, Any] = {"ok": False, "error_code": err.code, "description": err.description}
            if err.retry_after is not None:
                body["parameters"] = {"retry_after": err.retry_after}
            return web.json_response(body, status=err.code)
        finally:
            with self._lock:
                self.calls.append(call)
        return web.json_response({"ok": True, "result": call.result})

    def _injected_fault(self, call: Call) -> None:
        with self._lock:
            for fault in self.faults:
                if (
                    fault.times > 0
                    and fault.method == call.method
                    and (fault.chat_id is None or fault.chat_id == call.chat_id)
                ):
                    fault.times -= 1
                    raise ApiError(fault.code, fault.description, violation=False, retry_after=fault.retry_after)

    async def _download(self, request: web.Request) -> web.StreamResponse:
        if request.match_info["token"] != self.token:
            return web.json_response({"ok": False, "error_code": 401, "description": "Unauthorized"}, status=401)
        path = request.match_info["path"]
        with self._lock:
            stored = self._files_by_path.get(path)
            self.downloads.append(path)
        if stored is None:
            return web.json_response({"ok": False, "error_code": 404, "description": "Not Found"}, status=404)
        return web.Response(body=stored.data, content_type="application/octet-stream")

    # ---- validation helpers ------------------------------------------------------------------------------
    def _chat_id(self, params: dict[str, Any]) -> int:
        try:
            chat_id = int(params["chat_id"])
        except (KeyError, TypeError, ValueError):
            raise ApiError(400, "Bad Request: chat_id is empty") from None
        with self._lock:
            if chat_id not in self._chats:
                raise ApiError(400, "Bad Request: chat not found")
        return chat_id

    def _check_text(self, text: Any, limit: int, what: str) -> None:
        if not isinstance(text, str) or not text.strip():
            raise ApiError(400, f"Bad Request: {what} must be non-empty")
        if tg_len(text) > limit:
            raise ApiError(400, f"Bad Request: {what} is too long")

    def _check_markup(self, markup: Any) -> None:
        if markup is None:
            return
        if not isinstance(markup, dict) or "inline_keyboard" not in markup:
            raise ApiError(400, "Bad Request: unsupported reply_markup")
        rows = markup["inline_keyboard"]
        if not isinstance(rows, list) or sum(len(r) for r in rows) > 100:
            raise ApiError(400, "Bad Request: too many buttons")
        for row in rows:
            if len(row) > 8:
                raise ApiError(400, "Bad Request: too many buttons in a row")
            for button in row:
                if not str(button.get("text", "")).strip():
                    raise ApiError(400, "Bad Request: button text must be non-empty")
                actions = ("url", "callback_data", "switch_inline_query", "pay", "login_url", "web_app")
                kinds = [k for k in actions if k in button]
                if len(kinds) != 1:
                    raise ApiError(400, "Bad Request: can't parse inline keyboard button: exactly one action needed")
                if "callback_data" in button:
                    data = str(button["callback_data"]).encode()
                    if not 1 <= len(data) <= 64:
                        raise ApiError(400, "Bad Request: BUTTON_DATA_INVALID")
                if "url" in button:
                    problem = public_url_problem(button["url"])
                    if problem:
                        raise ApiError(400, f"Bad Request: BUTTON_URL_INVALID ({problem})")

    def _check_reply(self, chat_id: int, params: dict[str, Any]) -> int | None:
        reply = params.get("reply_parameters")
        if isinstance(reply, dict):
            target, lenient = reply.get("message_id"), bool(reply.get("allow_sending_without_reply"))
        else:
            target = params.get("reply_to_message_id")
            lenient = str(params.get("allow_sending_without_reply", "")).lower() == "true"
        if target is None:
            return None
        target = int(target)
        with self._lock:
            exists = (chat_id, target) in self._messages
        if not exists and not lenient:
            raise ApiError(400, "Bad Request: message to be replied not found")
        return target if exists else None

    def _photo_sizes(self, data: bytes) -> list[dict[str, Any]]:
        """Check an uploaded photo as Telegram does and store it, returning its PhotoSizes."""
        if not data:
            raise ApiError(400, "Bad Request: file must be non-empty")
        if len(data) > 10 * 1024 * 1024:
            raise ApiError(400, "Bad Request: photo is too big")
        try:
            with Image.open(io.BytesIO(data)) as img:
                img.load()
                w, h = img.size
        except Exception:
            raise ApiError(400, "Bad Request: IMAGE_PROCESS_FAILED") from None
        if w + h > 10000 or max(w, h) / max(1, min(w, h)) > 20:
            raise ApiError(400, "Bad Request: PHOTO_INVALID_DIMENSIONS")
        stored = self.add_file(data, kind="photos")
        return [
            {
                "file_id": stored.file_id,
                "file_unique_id": stored.unique_id,
                "width": w,
                "height": h,
                "file_size": len(data),
            }
        ]

    def _resolve_photo(self, ref: Any, files: dict[str, bytes], field_name: str) -> list[dict[str, Any]]:
        if isinstance(ref, str) and ref.startswith("attach://"):
            name = ref[len("attach://") :]
            if name not in files:
                raise ApiError(400, f"Bad Request: {field_name}: attached file {name} not found")
            return self._photo_sizes(files[name])
        if isinstance(ref, str) and ref in self._files:
            stored = self._files[ref]
            return self._photo_sizes(stored.data)
        if isinstance(ref, str) and ref.startswith(("http://", "https://")):
            raise ApiError(400, "Bad Request: failed to get HTTP URL content")
        raise ApiError(400, "Bad Request: wrong file identifier/HTTP URL specified")

    def _bot_message(self, chat_id: int, **content: Any) -> dict[str, Any]:
        msg = {
            "message_id": self._next_message_id(chat_id),
            "date": int(time.time()),
            "chat": self._chats[chat_id],
            "from": {"id": self.bot_id, "is_bot": True, "first_name": "FashionBot", "username": self.bot_username},
            **{k: v for k, v in content.items() if v is not None},
        }
        with self._lock:
            self._messages[(chat_id, msg["message_id"])] = msg
        return msg

    # ---- methods ----------------------------------------------------------------------------------------------
    async def _m_getMe(self, params, files):
        return {
            "id": self.bot_id,
            "is_bot": True,
            "first_name": "FashionBot",
            "username": self.bot_username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }

    async def _m_deleteWebhook(self, params, files):
        self.webhook = None
        return True

    async def _m_setWebhook(self, params, files):
        url = params.get("url", "")
        parts = urlsplit(url)
        if parts.scheme != "https":
            raise ApiError(400, "Bad Request: bad webhook: HTTPS url must be provided for webhook")
        if (parts.port or 443) not in (443, 80, 88, 8443):
            raise ApiError(400, "Bad Request: bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443")
        secret = params.get("secret_token")
        if secret is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,256}", secret):
            raise ApiError(400, "Bad Request: secret token contains unallowed characters")
        self.webhook = dict(params)
        return True

    async def _m_getWebhookInfo(self, params, files):
        return {"url": (self.webhook or {}).get("url", ""), "has_custom_certificate": False, "pending_update_count": 0}

    async def _m_setMyCommands(self, params, files):
        commands = params.get("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise ApiError(400, "Bad Request: commands must be a list of at most 100")
        for c in commands:
            if not re.fullmatch(r"[a-z0-9_]{1,32}", str(c.get("command", ""))):
                raise ApiError(400, "Bad Request: BOT_COMMAND_INVALID")
            if not 1 <= len(str(c.get("description", ""))) <= 256:
                raise ApiError(400, "Bad Request: BOT_COMMAND_DESCRIPTION_INVALID")
        self.commands = commands
        return True

    async def _m_setMyDescription(self, params, files):
        text = params.get("description", "")
        if not isinstance(text, str) or len(text) > 512:
            raise ApiError(400, "Bad Request: BOT_DESCRIPTION_INVALID")
        self.description = text
        return True

    async def _m_setMyShortDescription(self, params, files):
        text = params.get("short_description", "")
        if not isinstance(text, str) or len(text) > 120:
            raise ApiError(400, "Bad Request: BOT_SHORT_DESCRIPTION_INVALID")
        self.short_description = text
        return True

    async def _m_getUpdates(self, params, files):
        offset = int(params.get("offset") or 0)
        timeout = float(params.get("timeout") or 0)
        limit = int(params.get("limit") or 100)
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                if offset:
                    self._updates = [u for u in self._updates if u["update_id"] >= offset]
                pending = self._updates[:limit]
            if pending:
                return pending
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._closing:
                return []
            self._new_update.clear()
            with self._lock:
                if any(u["update_id"] >= offset for u in self._updates):
                    continue
            try:
                await asyncio.wait_for(self._new_update.wait(), remaining)
            except TimeoutError:
                return []

    async def _m_sendChatAction(self, params, files):
        self._chat_id(params)
        if params.get("action") not in CHAT_ACTIONS:
            raise ApiError(400, "Bad Request: wrong parameter action in request")
        return True

    async def _m_sendMessage(self, params, files):
        chat_id = self._chat_id(params)
        self._check_text(params.get("text"), 4096, "message text")
        self._check_markup(params.get("reply_markup"))
        reply_to = self._check_reply(chat_id, params)
        return self._bot_message(
            chat_id,
            text=params["text"],
            reply_markup=params.get("reply_markup"),
            reply_to_message=self._messages.get((chat_id, reply_to)) if reply_to else None,
        )

    async def _m_sendPhoto(self, params, files):
        chat_id = self._chat_id(params)
        caption = params.get("caption")
        if caption is not None and tg_len(caption) > 1024:
            raise ApiError(400, "Bad Request: message caption is too long")
        self._check_markup(params.get("reply_markup"))
        self._check_reply(chat_id, params)
        photo = params.get("photo")
        if photo is None and "photo" in files:
            sizes = self._photo_sizes(files["photo"])
        else:
            sizes = self._resolve_photo(photo, files, "photo")
        return self._bot_message(chat_id, photo=sizes, caption=caption, reply_markup=params.get("reply_markup"))

    async def _m_sendMediaGroup(self, params, files):
        chat_id = self._chat_id(params)
        media = params.get("media")
        if not isinstance(media, list) or not 2 <= len(media) <= 10:
            raise ApiError(400, "Bad Request: media must include 2-10 items")
        self._check_reply(chat_id, params)
        kinds = {m.get("type") for m in media}
        if not kinds <= {"photo", "video"}:
            raise ApiError(400, "Bad Request: can't mix these media types in an album")
        resolved = []
        for n, m in enumerate(media):
            caption = m.get("caption")
            if caption is not None and tg_len(caption) > 1024:
                raise ApiError(400, f"Bad Request: media #{n}: caption is too long")
            resolved.append((self._resolve_photo(m.get("media"), files, f"media #{n}"), caption))
        group_id = str(next(self._file_ids) * 7919)
        return [
            self._bot_message(chat_id, photo=sizes, caption=caption, media_group_id=group_id)
            for sizes, caption in resolved
        ]

    async def _m_editMessageText(self, params, files):
        chat_id = self._chat_id(params)
        message_id = int(params.get("message_id") or 0)
        self._check_text(params.get("text"), 4096, "message text")
        self._check_markup(params.get("reply_markup"))
        with self._lock:
            msg = self._messages.get((chat_id, message_id))
            if msg is None or msg["from"].get("id") != self.bot_id:
                raise ApiError(400, "Bad Request: message to edit not found")
            if "text" not in msg:
                raise ApiError(400, "Bad Request: there is no text in the message to edit")
            if msg["text"] == params["text"] and msg.get("reply_markup") == params.get("reply_markup"):
                raise ApiError(400, "Bad Request: message is not modified")
            msg["text"] = params["text"]
            if params.get("reply_markup") is not None:
                msg["reply_markup"] = params["reply_markup"]
            else:
                msg.pop("reply_markup", None)
            msg["edit_date"] = int(time.time())
            return dict(msg)

    async def _m_answerCallbackQuery(self, params, files):
        query_id = str(params.get("callback_query_id"))
        with self._lock:
            if self._open_queries.pop(query_id, None) is None:
                raise ApiError(400, "Bad Request: query is too old and response timeout expired or query ID is invalid")
        text = params.get("text")
        if text is not None and tg_len(text) > 200:
            raise ApiError(400, "Bad Request: MESSAGE_TOO_LONG")
        return True

    async def _m_getFile(self, params, files):
        stored = self._files.get(str(params.get("file_id")))
        if stored is None:
            raise ApiError(400, "Bad Request: invalid file_id")
        if len(stored.data) > DOWNLOAD_CAP or (stored.declared_size or 0) > DOWNLOAD_CAP:
            raise ApiError(400, "Bad Request: file is too big", violation=False)
        result = {"file_id": stored.file_id, "file_unique_id": stored.unique_id, "file_path": stored.path}
        if stored.declared_size is not None:
            result["file_size"] = stored.declared_size
        return result


# ---- running the real bot against the fake ------------------------------------------------------------------
class RunningBot:
    """``async with RunningBot(service, settings): ...``: the real ``run_telegram``
    (long polling, or a webhook) as a task, started and ready, cancelled on exit."""

    def __init__(self, service: Any, settings: Any, **kwargs: Any) -> None:
        self.service, self.settings, self.kwargs = service, settings, kwargs
        self.task: asyncio.Task | None = None

    async def __aenter__(self) -> RunningBot:
        from bot.telegram import run_telegram

        ready = asyncio.Event()
        self.task = asyncio.create_task(run_telegram(self.service, self.settings, ready=ready, **self.kwargs))
        waiter = asyncio.create_task(ready.wait())
        done, _ = await asyncio.wait({self.task, waiter}, timeout=20, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if self.task in done:
            self.task.result()  # raises the startup error
            raise RuntimeError("run_telegram returned without serving")
        if not done:
            self.task.cancel()
            raise TimeoutError("the bot didn't start within 20 s")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass


def bot_settings(service: Any, api: FakeBotAPI, **overrides: Any) -> Any:
    """The service's settings, pointed at the fake (token and both base URLs)."""
    from pydantic import SecretStr

    return service.settings.model_copy(
        update={
            "telegram_bot_token": SecretStr(api.token),
            "telegram_base_url": api.base_url,
            "telegram_base_file_url": api.base_file_url,
            **overrides,
        }
    )


def fake_api_fixture():
    """A started FakeBotAPI; fails the test if the bot sent anything Telegram would refuse."""
    with FakeBotAPI() as fake:
        yield fake
    assert not fake.violations, f"requests Telegram would refuse: {fake.violations}"


# ---- measuring the loop under test ----------------------------------------------------------------------------------
def _runqueue_wait_ns() -> int:
    """Nanoseconds this thread has spent runnable but not running (waiting for a CPU)."""
    try:
        with open("/proc/thread-self/schedstat") as fh:
            return int(fh.read().split()[1])
    except (OSError, IndexError, ValueError):
        return 0


class LoopStallMonitor:
    """A task that sleeps ``period`` in a loop and records how late it wakes up.

    Three views of the worst lateness:

    * ``max_stall``: the raw overshoot, wall clock.
    * ``max_own_stall``: minus the time the loop thread was runnable but waiting for a
      CPU (``/proc/thread-self/schedstat``): on a shared machine that part is other
      processes. What is left is this process: code on the loop, or the GIL held by
      another thread (or by a thread the OS preempted while it held the GIL).
    * ``max_busy_stall``: the part of a stall the loop thread spent *running* (its own
      CPU time): work done on the loop itself, e.g. model or index work called
      synchronously. GIL waits and preemption don't count here.

    A watchdog thread samples where the loop thread is whenever it is more than
    ``report_after`` late (``culprits``: stack summary -> samples).
    """

    def __init__(self, period: float = 0.005, report_after: float = 0.05) -> None:
        self.period = period
        self.report_after = report_after
        self.max_stall = 0.0
        self.max_own_stall = 0.0
        self.max_busy_stall = 0.0
        self.samples = 0
        self.own_stalls: list[float] = []  # every sample's own stall, for ratios
        self.max_gc_pause = 0.0  # longest garbage collection (any thread holds the GIL through it)
        self.gc_full_collections = 0
        self._gc_started: float | None = None
        self.culprits: dict[str, int] = {}
        self._beat = time.perf_counter()
        self._task: asyncio.Task | None = None
        self._stop = threading.Event()
        self._loop_thread = threading.get_ident()

    async def _run(self) -> None:
        while True:
            start, waited, cpu = time.perf_counter(), _runqueue_wait_ns(), time.thread_time()
            self._beat = start
            await asyncio.sleep(self.period)
            stall = time.perf_counter() - start - self.period
            own = stall - (_runqueue_wait_ns() - waited) / 1e9
            busy = min(stall, time.thread_time() - cpu)
            self.max_stall = max(self.max_stall, stall)
            self.max_own_stall = max(self.max_own_stall, own)
            self.max_busy_stall = max(self.max_busy_stall, busy)
            self.own_stalls.append(own)
            self.samples += 1

    def _watch(self) -> None:
        import sys
        import traceback

        while not self._stop.wait(self.report_after / 2):
            if time.perf_counter() - self._beat - self.period < self.report_after:
                continue
            frame = sys._current_frames().get(self._loop_thread)
            if frame is None:
                continue
            stack = traceback.extract_stack(frame)[-4:]
            key = " <- ".join(f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} {f.name}" for f in reversed(stack))
            self.culprits[key] = self.culprits.get(key, 0) + 1

    def share_over(self, threshold: float) -> float:
        """The fraction of samples whose own stall exceeded ``threshold`` seconds."""
        return sum(s > threshold for s in self.own_stalls) / max(1, len(self.own_stalls))

    def figures(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "max_loop_stall_ms": round(self.max_stall * 1000, 1),
            "max_own_loop_stall_ms": round(self.max_own_stall * 1000, 1),
            "max_busy_loop_stall_ms": round(self.max_busy_stall * 1000, 1),
            "p99_own_loop_stall_ms": round(percentile(self.own_stalls, 99) * 1000, 1) if self.own_stalls else 0.0,
            "max_gc_pause_ms": round(self.max_gc_pause * 1000, 1),
            "gc_full_collections": self.gc_full_collections,
            "share_own_over_100ms": round(self.share_over(0.1), 4),
        }

    def top_culprits(self, n: int = 5) -> list[tuple[str, int]]:
        return sorted(self.culprits.items(), key=lambda kv: -kv[1])[:n]

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_started = time.perf_counter()
        elif self._gc_started is not None:
            self.max_gc_pause = max(self.max_gc_pause, time.perf_counter() - self._gc_started)
            self.gc_full_collections += info.get("generation") == 2
            self._gc_started = None

    def __enter__(self) -> LoopStallMonitor:
        import gc

        gc.callbacks.append(self._on_gc)
        self._loop_thread = threading.get_ident()
        self._beat = time.perf_counter()
        self._task = asyncio.get_running_loop().create_task(self._run())
        threading.Thread(target=self._watch, name="loop-stall-watchdog", daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        import gc

        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)
        self._stop.set()
        self._task.cancel()


class PeakRss:
    """The process's peak resident memory while the block runs: the kernel's high-water
    mark (``VmHWM``) reset on entry through ``/proc/self/clear_refs``, plus a sampling
    thread in case the reset isn't allowed. ``baseline`` is the RSS on entry."""

    def __init__(self, period: float = 0.02) -> None:
        self.period = period
        self.baseline = 0
        self.peak = 0
        self.kernel_reset = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @staticmethod
    def _status(field_name: str) -> int:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field_name + ":"):
                    return int(line.split()[1]) * 1024
        return 0

    def _sample(self) -> None:
        while not self._stop.wait(self.period):
            self.peak = max(self.peak, self._status("VmRSS"))

    def __enter__(self) -> PeakRss:
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")  # resets VmHWM to the current RSS
            self.kernel_reset = True
        except OSError:
            self.kernel_reset = False
        self.baseline = self.peak = self._status("VmRSS")
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(1)
        self.peak = max(self.peak, self._status("VmRSS"))
        if self.kernel_reset:
            self.peak = max(self.peak, self._status("VmHWM"))

    @property
    def growth(self) -> int:
        return self.peak - self.baseline

    def figures(self) -> dict[str, Any]:
        mib = 1024 * 1024
        return {
            "rss_baseline_mib": round(self.baseline / mib, 1),
            "rss_peak_mib": round(self.peak / mib, 1),
            "rss_growth_mib": round(self.growth / mib, 1),
            "peak_from_kernel_high_water_mark": self.kernel_reset,
        }


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    rank = int(-(-len(ordered) * q // 100))  # ceil(n q / 100)
    return ordered[min(len(ordered) - 1, max(0, rank - 1))]
